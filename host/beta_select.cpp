// --beta auto (beta_select.hpp).
#include "eqpm/beta_select.hpp"

#include <cmath>
#include <filesystem>

#include "eqpm/atomic_file.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objective.hpp"

namespace eqpm {

BetaChoice choose_beta(const std::vector<BetaCandidate>& candidates,
                       const std::vector<double>& weights, double q) {
  if (candidates.empty()) throw Error("choose_beta: no candidates");
  BetaChoice c;
  const long n = static_cast<long>(weights.size());
  for (const auto& k : candidates) {
    if (k.val_regret.size() != weights.size() ||
        (!k.test_regret.empty() && k.test_regret.size() != weights.size()))
      throw Error("choose_beta: candidate beta " + format_double(k.beta) + " has " +
                  std::to_string(k.val_regret.size()) + " regrets for " + std::to_string(n) +
                  " agents");
    c.val_mq.push_back(power_mean(k.val_regret.data(), weights.data(), n, q));
    c.test_mq.push_back(k.test_regret.empty()
                            ? NAN
                            : power_mean(k.test_regret.data(), weights.data(), n, q));
  }
  for (size_t i = 1; i < candidates.size(); ++i) {
    const double a = c.val_mq[i], b = c.val_mq[c.index];
    const double tol = 1e-12 * std::max(std::fabs(a), std::fabs(b));
    if (a < b - tol || (std::fabs(a - b) <= tol && candidates[i].beta > candidates[c.index].beta))
      c.index = i;
  }
  return c;
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
  std::vector<BetaCandidate> cands;
  for (double b : cfg.beta_grid) {
    if (b >= 1.0 && plain) {
      outcomes.push_back(*plain);
    } else {
      const RunConfig c = candidate_config(cfg, b);
      std::string from;
      if (!c.out.empty()) {
        std::filesystem::create_directories(c.out);
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
    cands.push_back({b, outcomes.back().validation.regret, outcomes.back().test.regret});
  }
  std::vector<double> w(in.population.agents.size());
  for (size_t n = 0; n < w.size(); ++n) w[n] = in.population.agents[n].weight;
  const BetaChoice ch = choose_beta(cands, w, cfg.q);
  RunConfig shipped = cfg;
  shipped.beta_auto = false;
  shipped.beta = cands[ch.index].beta;
  RunOutcome o = outcomes[ch.index];
  o.out_dir = cfg.out;
  if (!cfg.out.empty()) {
    write_run_outputs(shipped, in, o);
    std::string csv = "beta,val_power_mean,test_power_mean,chosen\n";
    for (size_t i = 0; i < cands.size(); ++i)
      csv += format_double(cands[i].beta) + "," + format_double(ch.val_mq[i]) + "," +
             format_double(ch.test_mq[i]) + "," + (i == ch.index ? "1" : "0") + "\n";
    write_file_atomic((std::filesystem::path(cfg.out) / "beta_auto.csv").string(), csv);
  }
  if (!cfg.quiet)
    std::fprintf(stderr, "[beta auto] q=%s: validation M_q picks beta %s\n",
                 format_double(cfg.q).c_str(), format_double(shipped.beta).c_str());
  if (chosen_beta) *chosen_beta = shipped.beta;
  if (candidates) *candidates = std::move(outcomes);
  return o;
}

}  // namespace eqpm
