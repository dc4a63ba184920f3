// The backend-agnostic training loop (DESIGN.md 5.2, 5.3a): epochs of shuffled
// minibatches, warm start on plain MSE, step decay of the learning rate, per-epoch
// metrics on the held-out slice of the training split, the numerical guard, and
// checkpoint hooks. A step's minibatch depends only on (seed, step), so a run resumed
// from a checkpoint continues exactly where it stopped.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/config.hpp"
#include "eqpm/data.hpp"

namespace eqpm {

// What the training loop itself carries across steps (besides the backend's state): the
// running sum of the weights over the averaging window and the best epoch's weights.
struct TrainerState {
  std::vector<double> param_sum;   // empty: averaging not started
  std::uint64_t param_count = 0;
  std::vector<float> best_params;  // empty: no epoch selected yet
  double best_score = 0.0;
  int best_epoch = -1;
};

struct EpochMetrics {
  int epoch = 0;
  long step = 0;          // optimiser steps completed at the end of the epoch
  double loss = 0;        // mean step loss over the epoch
  double power_mean = 0;  // M_q of per-agent regrets on the validation slice
  double mean = 0, var = 0, max = 0;
  double mse = 0;         // forecast MSE on the validation slice
  double seconds = 0;     // wall time of the epoch's steps
  // The un-normalised training objective on the validation slice, (1 - beta) M_q +
  // beta MSE with the epoch's beta (1 during the warm start, so there it is the MSE).
  double objective = 0;
};

struct Progress {
  int epoch = 0;
  int epochs = 0;
  long step = 0;          // steps completed
  long total_steps = 0;
  StepStats last;
  double steps_per_second = 0;
  double eta_seconds = 0;
  double step_seconds = 0;  // wall time of this step inside Backend::step
};

// Sums over the steps done so far of the epoch in progress; a checkpoint carries them so
// that a resumed epoch reports the same mean loss as an uninterrupted one.
struct EpochTally {
  double loss = 0;     // sum of the finite steps' losses
  long steps = 0;      // finite steps
  double seconds = 0;  // wall time of the steps
};

// What the caller wants after a step (asked before the next one).
enum class StepAction { next, checkpoint, stop };

struct TrainResult {
  long steps = 0;          // optimiser steps taken in this call (skipped ones excluded)
  long skipped_steps = 0;  // non-finite steps skipped
  double seconds = 0;      // wall time inside Backend::step
  std::vector<EpochMetrics> epochs;
  bool stopped = false;    // ended early because the control asked to stop
  long end_step = 0;       // global steps completed when run() returned
};

// The first step of the annealing phase at which a sweep exchanges models
// (AnnealStart::best), or -1 when the configuration has none: another schedule, `own`, or
// no regret-phase step before the annealing (every model is then still the warm start).
long anneal_exchange_step(const RunConfig& cfg, const Dataset& data);

// Optimiser steps per epoch (minibatches of cfg.batch fit rows, the last one shorter), and
// the first step of the anneal schedule's fall (0 when it covers the whole run).
long epoch_steps(const RunConfig& cfg, const Dataset& data);
long anneal_first_step(const RunConfig& cfg, const Dataset& data);

class Trainer {
 public:
  Trainer(const RunConfig& cfg, const Dataset& data, const Population& population,
          Backend& backend);

  long steps_per_epoch() const { return steps_per_epoch_; }
  long total_steps() const { return steps_per_epoch_ * cfg_.epochs; }

  // Minibatch rows, beta and learning rate of global step `step`.
  std::vector<long> batch_rows(long step) const;
  double beta_at(long step) const;
  double lr_at(long step) const;
  float sigma_at(long step) const;
  // First step of the averaging window (cfg.average_epochs), or -1 without one.
  long averaging_start() const;

  // Runs steps [first_step, total_steps()). `on_step` is called after every step,
  // `on_checkpoint(steps_done)` every cfg.checkpoint_every steps (never at the end: the
  // caller writes the final state). Throws Error after max_bad_steps non-finite steps in
  // a row, before changing anything else.
  TrainResult run(long first_step, const std::function<void(const Progress&)>& on_step,
                  const std::function<void(long)>& on_checkpoint,
                  const std::function<void(const EpochMetrics&)>& on_epoch = nullptr);

  // The weights a run ships as its model: the last iterate's, the average over the last
  // cfg.average_epochs epochs, or the best epoch's (cfg.select = val). The backend keeps
  // the last iterate (a resumed or extended run continues from it).
  std::vector<float> final_params() const;

  // The loop's own state, for checkpoints: set it before run() when resuming.
  const TrainerState& state() const { return ts_; }
  void set_state(TrainerState s) { ts_ = std::move(s); }

  // Asked after every step but the last, with the steps completed: `checkpoint` calls
  // on_checkpoint now, `stop` calls it and ends run() (TrainResult::stopped).
  void set_control(std::function<StepAction(long)> control) { control_ = std::move(control); }

  // The partial epoch at the current step (see EpochTally); set it before resuming.
  const EpochTally& epoch_tally() const { return tally_; }
  void set_epoch_tally(const EpochTally& t) { tally_ = t; }

  // Rows of the splits.
  std::vector<long> train_rows() const;       // the whole training split
  std::vector<long> validation_rows() const;  // held-out tail of it (or the fit rows if empty)
  std::vector<long> test_rows() const;

 private:
  EpochMetrics evaluate_epoch(int epoch, long step);

  TrainerState ts_;

  RunConfig cfg_;
  const Dataset& data_;
  const Population& population_;
  Backend& backend_;
  long steps_per_epoch_ = 0;
  std::function<StepAction(long)> control_;
  EpochTally tally_;
};

}  // namespace eqpm
