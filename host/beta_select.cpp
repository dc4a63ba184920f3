// --beta auto (beta_select.hpp).
#include "host/beta_select.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "host/io/atomic_file.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

BetaChoice choose_beta(const std::vector<BetaCandidate>& candidates,
                       const std::vector<double>& weights, double q, int replicates) {
  return choose_beta(candidates, weights, *power_objective(q), {}, replicates);
}

BetaChoice choose_beta(const std::vector<BetaCandidate>& candidates,
                       const std::vector<double>& weights, const Objective& f,
                       const std::vector<int>& groups, int replicates) {
  if (candidates.empty()) throw Error("choose_beta: no candidates");
  BetaChoice c;
  const long n = static_cast<long>(weights.size());
  for (const auto& k : candidates) {
    if (k.val_regret.size() != weights.size() ||
        (!k.test_regret.empty() && k.test_regret.size() != weights.size()))
      throw Error("choose_beta: candidate beta " + format_double(k.beta) + " has " +
                  std::to_string(k.val_regret.size()) + " regrets for " + std::to_string(n) +
                  " agents");
    c.val_mq.push_back(objective_of(f, k.val_regret, weights, groups));
    c.test_mq.push_back(k.test_regret.empty() ? NAN : objective_of(f, k.test_regret, weights, groups));
  }
  // The lowest validation M_q; ties to the larger beta.
  auto better = [&](size_t i, size_t j) {
    const double a = c.val_mq[i], b = c.val_mq[j];
    const double tol = 1e-12 * std::max(std::fabs(a), std::fabs(b));
    return a < b - tol || (std::fabs(a - b) <= tol && candidates[i].beta > candidates[j].beta);
  };
  for (size_t i = 1; i < candidates.size(); ++i)
    if (better(i, c.lowest)) c.lowest = i;
  c.index = c.lowest;
  c.val_se.assign(candidates.size(), NAN);

  // Days, when every candidate has the same ones.
  const size_t D = candidates.front().day_rows.size();
  bool days = D >= 2 && replicates >= 2;
  for (const auto& k : candidates) {
    days = days && k.day_rows == candidates.front().day_rows && k.val_days.size() == D;
    for (size_t d = 0; days && d < D; ++d) days = k.val_days[d].size() == weights.size();
  }
  if (!days) return c;

  // Paired bootstrap over days: the same resampled days for every candidate.
  const size_t K = candidates.size();
  std::vector<std::vector<double>> mq(static_cast<size_t>(replicates), std::vector<double>(K));
  std::vector<size_t> pick(D);
  std::vector<double> r(weights.size());
  SplitMix64 rng(0x9E3779B97F4A7C15ull);  // a fixed seed: the choice is deterministic
  for (int b = 0; b < replicates; ++b) {
    long rows = 0;
    for (size_t d = 0; d < D; ++d) {
      pick[d] = static_cast<size_t>(rng.next() % D);
      rows += candidates.front().day_rows[pick[d]];
    }
    for (size_t i = 0; i < K; ++i) {
      std::fill(r.begin(), r.end(), 0.0);
      for (size_t d = 0; d < D; ++d) {
        const double wd = static_cast<double>(candidates[i].day_rows[pick[d]]);
        const std::vector<double>& v = candidates[i].val_days[pick[d]];
        for (size_t a = 0; a < r.size(); ++a) r[a] += wd * v[a];
      }
      for (double& x : r) x /= static_cast<double>(rows);
      mq[static_cast<size_t>(b)][i] = objective_of(f, r, weights, groups);
    }
  }
  for (size_t i = 0; i < K; ++i) {
    double sum = 0, sum2 = 0;
    for (int b = 0; b < replicates; ++b) {
      const double g = mq[static_cast<size_t>(b)][i] - mq[static_cast<size_t>(b)][c.lowest];
      sum += g;
      sum2 += g * g;
    }
    const double mean = sum / replicates;
    c.val_se[i] = std::sqrt(std::max(0.0, (sum2 - replicates * mean * mean) / (replicates - 1)));
  }
  for (size_t i = 0; i < K; ++i)
    if (c.val_mq[i] - c.val_mq[c.lowest] <= c.val_se[i] &&
        candidates[i].beta > candidates[c.index].beta)
      c.index = i;
  return c;
}

BetaCandidate beta_candidate(double beta, const RunOutcome& o) {
  return {beta, o.validation.regret, o.test.regret, o.validation_days, o.validation_day_rows};
}

std::string beta_folder(double beta) { return "beta=" + format_double(beta); }

RunConfig candidate_config(const RunConfig& cfg, double beta) {
  RunConfig c = cfg;
  c.beta_auto = false;
  c.beta = beta;
  c.out = cfg.out.empty() ? std::string()
                          : (std::filesystem::path(cfg.out) / beta_folder(beta)).string();
  return c;
}

RunOutcome train_beta_auto(const RunConfig& cfg, const RunInputs& in, const RunOutcome* plain,
                           double* chosen_beta, std::vector<RunOutcome>* candidates,
                           bool resume) {
  std::vector<RunOutcome> outcomes;
  for (double b : cfg.beta_grid) {
    if (b >= 1.0 && plain) {
      outcomes.push_back(*plain);
    } else {
      const RunConfig c = candidate_config(cfg, b);
      std::string from;
      if (!c.out.empty()) {
        if (in.writes_files()) std::filesystem::create_directories(c.out);
        const auto ckpt = std::filesystem::path(c.out) / "checkpoint.safetensors";
        if (resume && std::filesystem::exists(ckpt)) from = ckpt.string();
      }
      RunOutcome o = train_run(c, in, from);
      if (o.interrupted_at >= 0) {
        o.out_dir = cfg.out;  // resumed as a whole: eqpm train --resume <run>
        return o;
      }
      outcomes.push_back(std::move(o));
    }
  }
  RunOutcome o = ship_beta_auto(cfg, in, outcomes, chosen_beta);
  if (candidates) *candidates = std::move(outcomes);
  return o;
}

RunOutcome ship_beta_auto(const RunConfig& cfg, const RunInputs& in,
                          const std::vector<RunOutcome>& outcomes, double* chosen_beta) {
  if (outcomes.size() != cfg.beta_grid.size())
    throw Error("ship_beta_auto: " + std::to_string(outcomes.size()) + " outcomes for " +
                std::to_string(cfg.beta_grid.size()) + " betas");
  std::vector<BetaCandidate> cands;
  for (size_t i = 0; i < outcomes.size(); ++i)
    cands.push_back(beta_candidate(cfg.beta_grid[i], outcomes[i]));
  const BetaChoice ch = choose_beta(cands, in.population.weights(), *run_objective(cfg),
                                    in.population.groups());
  RunConfig shipped = cfg;
  shipped.beta_auto = false;
  shipped.beta = cands[ch.index].beta;
  RunOutcome o = outcomes[ch.index];
  o.out_dir = cfg.out;
  if (!cfg.out.empty() && in.writes_files()) {
    write_run_outputs(shipped, in, o);
    std::string csv = "beta,val_power_mean,val_se,test_power_mean,chosen\n";
    for (size_t i = 0; i < cands.size(); ++i)
      csv += format_double(cands[i].beta) + "," + format_double(ch.val_mq[i]) + "," +
             format_double(ch.val_se[i]) + "," + format_double(ch.test_mq[i]) + "," +
             (i == ch.index ? "1" : "0") + "\n";
    write_file_atomic((std::filesystem::path(cfg.out) / "beta_auto.csv").string(), csv);
  }
  if (!cfg.quiet)
    std::fprintf(stderr, "[beta auto] %s: the validation objective picks beta %s\n",
                 objective_spec(cfg).c_str(), format_double(shipped.beta).c_str());
  if (chosen_beta) *chosen_beta = shipped.beta;
  return o;
}

}  // namespace eqpm
