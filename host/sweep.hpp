// A sweep as `eqpm sweep` and eqpm.sweep run it: the plain baseline (beta = 1), then one run
// per objective of the list, each in its own folder under the sweep's (DESIGN.md 8.1); then
// the objective check (sweep_check.hpp) and the tables sweep.csv and mq_check.csv.
#pragma once

#include <string>
#include <vector>

#include "host/config.hpp"
#include "host/run.hpp"
#include "host/sweep_check.hpp"

namespace eqpm {

struct SweepRun {
  std::string name;       // "plain", "q=4", "cvar=0.1" (sweep_run_name)
  double q = 0.0;         // the run's q (power objectives)
  double beta = 1.0;      // the beta it ships (with --beta auto, the one validation chose)
  RunConfig config;       // the configuration it ships (shipped_config)
  RunOutcome outcome;
  std::string objective;  // its spec; empty for plain
};

struct Sweep {
  std::vector<SweepRun> runs;  // plain first, then one per objective, in the list's order
  // With --beta auto, the check is of the optimiser: it compares plain and the model each
  // run trained at the grid's smallest beta, not the ones validation shipped. Empty
  // otherwise (the check then compares `runs`).
  std::vector<SweepRun> fixed_beta;
  // A signal stopped the sweep: the outcome of the run it stopped (its folder holds the
  // checkpoint to resume from); the runs after it were not started.
  bool interrupted = false;
  RunOutcome stopped;

  const std::vector<SweepRun>& checked() const { return fixed_beta.empty() ? runs : fixed_beta; }
};

// A run's folder name: q=4 for power:4 (as --q names them), else the spec with '=' for ':'
// (cvar=0.1, tilt-groups=1,10).
std::string sweep_run_name(const std::string& spec);

// The configuration a finished run ships: with --beta auto, the chosen beta (as
// train_beta_auto writes it).
RunConfig shipped_config(RunConfig cfg, double chosen);

// The configuration of the sweep stopped in `dir`, continued over `specs` (`eqpm sweep
// --resume DIR`): its plain run's stored one, with epochs and run settings from `flags` for
// the registry keys `given` and any other given key refused when it differs, as for a
// resumed run (resumed_config). Beta, which the plain run does not record, is that of the
// first objective run begun (as given when none has begun). The runs begun must be the
// first of the list; a longer list continues into the new runs.
RunConfig resumed_sweep_config(const RunConfig& flags, const std::vector<std::string>& given,
                               const std::vector<std::string>& specs, const std::string& dir);

// Trains the sweep of `base` over `specs` (objective specs) on `in`. With base.out set, each
// run writes base.out/<name>/ (created here); the caller has prepared base.out. With
// `resume`, a run whose folder holds a checkpoint continues from it (a finished one only
// re-evaluates; --beta auto candidates likewise), so a stopped sweep ends as one never
// stopped.
Sweep run_sweep(const RunConfig& base, const std::vector<std::string>& specs, const RunInputs& in,
                bool resume = false);

// The objective check on the training split (or the validation slice): the models of
// sweep.checked(), each measured on every objective of the sweep.
struct SweepCheck {
  std::vector<SweepModel> models;
  std::vector<ObjectiveCheckRow> rows;
  bool pass() const;
};
SweepCheck check_sweep(const Sweep& sweep, const RunInputs& in, double tol, bool validation);

// sweep.csv (DESIGN.md 8.1 plus mq_margin, mq_beaten_by and objective from `train`) and
// mq_check.csv, and mq_check_val.csv when `validation` is given, each written atomically
// into `dir`.
void write_sweep_tables(const std::string& dir, const Sweep& sweep, const SweepCheck& train,
                        const SweepCheck* validation);

}  // namespace eqpm
