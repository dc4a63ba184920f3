// The training loop (see trainer.hpp).
#include "host/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "eqpm/error.hpp"
#include "host/metrics.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

Trainer::Trainer(const RunConfig& cfg, const Dataset& data, const Population& population,
                 Backend& backend)
    : cfg_(cfg), data_(data), population_(population), backend_(backend) {
  steps_per_epoch_ = epoch_steps(cfg_, data_);
}

long epoch_steps(const RunConfig& cfg, const Dataset& data) {
  return (data.fit_rows + cfg.batch - 1) / cfg.batch;
}

long anneal_first_step(const RunConfig& cfg, const Dataset& data) {
  return epoch_steps(cfg, data) * std::max(0, cfg.epochs - cfg.lr_anneal_epochs);
}

long anneal_exchange_step(const RunConfig& cfg, const Dataset& data) {
  if (cfg.lr_schedule != LrSchedule::anneal || cfg.anneal_start != AnnealStart::best) return -1;
  return cfg.epochs - cfg.lr_anneal_epochs > cfg.warm_start_epochs ? anneal_first_step(cfg, data)
                                                                    : -1;
}

std::vector<long> Trainer::batch_rows(long step) const {
  const long epoch = step / steps_per_epoch_;
  const long j = step % steps_per_epoch_;
  // Fisher-Yates permutation of the fit rows, seeded by (seed, epoch).
  std::vector<long> perm(static_cast<size_t>(data_.fit_rows));
  std::iota(perm.begin(), perm.end(), 0L);
  SplitMix64 rng(cfg_.seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(epoch) + 1);
  for (long i = data_.fit_rows - 1; i > 0; --i)
    std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(rng.integer(0, i))]);
  const long begin = j * cfg_.batch;
  const long end = std::min(begin + cfg_.batch, data_.fit_rows);
  std::vector<long> rows(perm.begin() + begin, perm.begin() + end);
  for (long& r : rows) r += data_.train_begin;
  return rows;
}

double Trainer::beta_at(long step) const {
  return step / steps_per_epoch_ < cfg_.warm_start_epochs ? 1.0 : cfg_.beta;
}

double Trainer::lr_at(long step) const {
  if (cfg_.lr_schedule == LrSchedule::cosine) {
    const double x = static_cast<double>(step) / static_cast<double>(total_steps());
    return cfg_.lr * 0.5 * (1.0 + std::cos(3.14159265358979323846 * x));
  }
  if (cfg_.lr_schedule == LrSchedule::anneal) {
    // Held, then geometric from lr at the first closing step to lr x lr_final at the last.
    const long total = total_steps();
    const long start = anneal_first_step(cfg_, data_);
    if (step < start) return cfg_.lr;
    const double x = double(step - start) / double(std::max(1L, total - 1 - start));
    return cfg_.lr * std::pow(cfg_.lr_final, x);
  }
  if (cfg_.lr_decay_epochs <= 0) return cfg_.lr;
  const long epoch = step / steps_per_epoch_;
  return cfg_.lr * std::pow(cfg_.lr_decay_gamma, static_cast<double>(epoch / cfg_.lr_decay_epochs));
}

long Trainer::averaging_start() const {
  // The last average_epochs epochs, never the warm start (another objective).
  const int epochs = std::min(cfg_.average_epochs, cfg_.epochs - cfg_.warm_start_epochs);
  return epochs > 0 ? steps_per_epoch_ * (cfg_.epochs - epochs) : -1;
}

float Trainer::sigma_at(long step) const {
  if (cfg_.sigma_decay == 1.0) return static_cast<float>(cfg_.sigma);
  const long warm = steps_per_epoch_ * cfg_.warm_start_epochs;
  const long span = total_steps() - warm;
  const double x =
      span > 1 ? std::clamp(double(step - warm) / double(span - 1), 0.0, 1.0) : 1.0;
  return static_cast<float>(cfg_.sigma * std::pow(cfg_.sigma_decay, x));
}

std::vector<long> Trainer::train_rows() const {
  std::vector<long> r(static_cast<size_t>(data_.train_rows));
  std::iota(r.begin(), r.end(), data_.train_begin);
  return r;
}

std::vector<long> Trainer::validation_rows() const {
  std::vector<long> r;
  for (long i = data_.fit_end(); i < data_.train_end(); ++i) r.push_back(i);
  if (r.empty())  // no held-out slice: every 4th fit row
    for (long i = data_.train_begin; i < data_.fit_end(); i += 4) r.push_back(i);
  return r;
}

std::vector<long> Trainer::test_rows() const {
  std::vector<long> r(static_cast<size_t>(data_.test_rows()));
  std::iota(r.begin(), r.end(), data_.test_begin);
  return r;
}

EpochMetrics Trainer::evaluate_epoch(int epoch, long step) {
  const EvalResult e = backend_.evaluate(validation_rows());
  const RegretStats s = regret_stats(e.regret);
  const std::vector<double> w = population_.weights();
  EpochMetrics m;
  m.epoch = epoch;
  m.step = step;
  const Problem& p = backend_.problem();
  m.power_mean = p.objective ? objective_of(*p.objective, e.regret, w, population_.groups())
                             : power_mean(e.regret.data(), w.data(), static_cast<long>(w.size()), p.q);
  m.mean = s.mean;
  m.var = s.var;
  m.max = s.max;
  m.mse = e.mse;
  const double beta = beta_at(step - 1);
  m.objective = (1.0 - beta) * m.power_mean + beta * m.mse;
  return m;
}

TrainResult Trainer::run(long first_step, const std::function<void(const Progress&)>& on_step,
                         const std::function<void(long)>& on_checkpoint,
                         const std::function<void(const EpochMetrics&)>& on_epoch) {
  using Clock = std::chrono::steady_clock;
  TrainResult res;
  const long total = total_steps();
  int bad_in_a_row = 0;
  double& epoch_loss = tally_.loss;
  double& epoch_seconds = tally_.seconds;
  long& epoch_steps = tally_.steps;
  res.end_step = first_step;
  // A run extended with more epochs (--resume --epochs) has a later averaging window: a
  // sum that holds steps from before the window's start is stale and starts again.
  const long window = averaging_start();
  if (ts_.param_count > 0 &&
      (window < 0 || static_cast<long>(ts_.param_count) > first_step - window)) {
    ts_.param_sum.clear();
    ts_.param_count = 0;
  }
  const auto wall0 = Clock::now();
  for (long step = first_step; step < total; ++step) {
    StepSpec spec;
    spec.step = static_cast<std::uint32_t>(step);
    spec.rows = batch_rows(step);
    spec.beta = beta_at(step);
    spec.lr = lr_at(step);
    spec.sigma = sigma_at(step);
    const auto t0 = Clock::now();
    const StepStats st = backend_.step(spec);
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    res.seconds += dt;
    epoch_seconds += dt;
    if (!st.finite) {
      ++res.skipped_steps;
      if (++bad_in_a_row >= cfg_.max_bad_steps)
        throw Error("training stopped at step " + std::to_string(step) + ": " +
                    std::to_string(bad_in_a_row) +
                    " non-finite steps in a row (loss, regrets or gradient NaN/Inf); the last "
                    "checkpoint is intact. Try a smaller --lr or --sigma, or check the inputs");
    } else {
      bad_in_a_row = 0;
      ++res.steps;
      if (window >= 0 && step >= window) {
        const std::vector<float> params = backend_.params();
        if (ts_.param_sum.empty()) ts_.param_sum.assign(params.size(), 0.0);
        for (size_t i = 0; i < params.size(); ++i) ts_.param_sum[i] += params[i];
        ++ts_.param_count;
      }
      epoch_loss += st.loss;
      ++epoch_steps;
    }
    if (on_step) {
      Progress p;
      p.epoch = static_cast<int>(step / steps_per_epoch_);
      p.epochs = cfg_.epochs;
      p.step = step + 1;
      p.total_steps = total;
      p.last = st;
      p.step_seconds = dt;
      const double wall = std::chrono::duration<double>(Clock::now() - wall0).count();
      p.steps_per_second = wall > 0 ? static_cast<double>(step + 1 - first_step) / wall : 0;
      p.eta_seconds = p.steps_per_second > 0 ? (total - step - 1) / p.steps_per_second : 0;
      on_step(p);
    }
    if ((step + 1) % steps_per_epoch_ == 0) {
      EpochMetrics m = evaluate_epoch(static_cast<int>(step / steps_per_epoch_), step + 1);
      m.loss = epoch_steps ? epoch_loss / static_cast<double>(epoch_steps) : NAN;
      m.seconds = epoch_seconds;
      res.epochs.push_back(m);
      if (cfg_.select == Select::val && m.epoch >= cfg_.warm_start_epochs) {
        // The objective the run trains for: M_q for a regret model, MSE for plain.
        const double score = cfg_.beta >= 1.0 ? m.mse : m.power_mean;
        if (ts_.best_epoch < 0 || score < ts_.best_score) {
          ts_.best_score = score;
          ts_.best_epoch = m.epoch;
          ts_.best_params = backend_.params();
        }
      }
      if (on_epoch) on_epoch(m);
      epoch_loss = 0;
      epoch_seconds = 0;
      epoch_steps = 0;
    }
    if (on_checkpoint && cfg_.checkpoint_every > 0 && (step + 1) % cfg_.checkpoint_every == 0 &&
        step + 1 < total)
      on_checkpoint(step + 1);
    res.end_step = step + 1;
    if (control_ && step + 1 < total) {
      const StepAction a = control_(step + 1);
      if (a != StepAction::next && on_checkpoint) on_checkpoint(step + 1);
      if (a == StepAction::stop) {
        res.stopped = true;
        break;
      }
    }
  }
  return res;
}

std::vector<float> Trainer::final_params() const {
  std::vector<float> params = backend_.params();
  if (cfg_.select == Select::val && !ts_.best_params.empty()) return ts_.best_params;
  if (ts_.param_count > 0)
    for (size_t i = 0; i < params.size(); ++i)
      params[i] = static_cast<float>(ts_.param_sum[i] / static_cast<double>(ts_.param_count));
  return params;
}

}  // namespace eqpm
