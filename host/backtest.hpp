// Rolling-origin backtest (`eqpm backtest`, DESIGN.md 6 "Out of sample"): the test period
// [from, to) is cut into folds; for each fold every run (plain, and one per q) is trained
// on the rows whose whole target window ends before the fold starts (all earlier data, or
// the last `window_days` of it) and evaluated on the rows that start inside the fold. Each
// agent's pooled regret is its test regret averaged over every test hour of every fold.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "host/config.hpp"
#include "host/metrics.hpp"
#include "host/run.hpp"

namespace eqpm {

// How often the model is refitted: every calendar month (folds end on the 1st), or every
// `days` days.
struct Refit {
  bool month = true;
  int days = 0;
};
// "month", "week" or "<N>d" (N >= 1); ConfigError naming --refit otherwise.
Refit parse_refit(const std::string& text);
std::string refit_name(const Refit& r);

struct Fold {
  int index = 0;              // 1, 2, ...
  std::int64_t start = 0;     // UTC seconds, inclusive
  std::int64_t end = 0;       // UTC seconds, exclusive
};

// Folds covering [from, to): with month refits the first ends at the next 1st of a month
// (UTC) and each later one spans a calendar month; otherwise every fold spans `days` days.
// The last fold ends at `to`.
std::vector<Fold> backtest_folds(std::int64_t from, std::int64_t to, const Refit& refit);

struct BacktestOptions {
  std::int64_t from = 0, to = 0;  // UTC seconds, [from, to)
  Refit refit;
  int window_days = 0;            // 0: expanding window (all data before the fold)
  // The runs' objectives (specs: "power:4", "cvar:0.1"); the plain (beta = 1) run is always
  // added first.
  std::vector<std::string> objectives;
  bool warm_start = true;         // fold k > 1 starts from fold k-1's model of the same run
  std::string out;
};

// The epochs of a warm-started fold: max(2, epochs / 4), at most epochs.
int warm_fold_epochs(int epochs);

// The configuration of one fold of a run: the run's own with the fold's date split (its
// train_from/train_until/test_from/test_until keys), its output folder, and for a
// warm-started fold the shorter schedule: warm_fold_epochs, no MSE warm-start phase, the
// learning-rate decay period scaled by the same factor, and averaging over at most the
// fold's epochs.
RunConfig fold_config(const RunConfig& run, const Fold& fold, const BacktestOptions& opt,
                      const std::string& fold_dir, bool warm);

// The fold's inputs: `base`'s series, population and demand with the dataset of fold_cfg's
// split (scaling fitted on the fold's training rows).
RunInputs fold_inputs(const RunInputs& base, const RunConfig& fold_cfg);

struct FoldResult {
  Fold fold;
  std::string dir;
  long train_rows = 0, test_rows = 0;  // test_rows: the fold's test hours (forecast starts)
  std::int64_t train_last_target = 0;  // UTC of the last hour any training target reaches
  std::int64_t test_first_start = 0;   // UTC of the first test forecast start
  std::vector<double> regret;          // per agent, mean over the fold's test rows
  std::vector<double> val_regret;      // per agent, on the fold's validation rows
  double mse = 0;
  double beta = 1;                     // the model's beta (with --beta auto, the chosen one)
  RegretStats stats;
};

struct BacktestRun {
  std::string name;       // "plain", "q=<v>" or the objective's (sweep_run_name)
  std::string objective;  // its spec; empty for plain
  double q = 0, beta = 1;
  std::vector<FoldResult> folds;
  std::vector<double> pooled;  // per agent, test-hour weighted over the folds
  double pooled_mse = 0;
  RegretStats pooled_stats;
};

// With --beta auto, one row per q run, fold and beta candidate (DIR/beta_auto.csv).
struct BetaAutoRow {
  std::string run;
  std::string objective;
  double q = 0;
  int fold = 0;
  double beta = 0;
  double val_mq = 0, val_se = 0, test_mq = 0;
  bool chosen = false;
};

struct BacktestResult {
  std::vector<Fold> folds;
  std::vector<BacktestRun> runs;       // plain, then one per q (the chosen beta per fold)
  std::vector<BetaAutoRow> beta_auto;  // empty without --beta auto
  bool stopped = false;  // a signal stopped a fold's training (its folder holds a checkpoint)
  RunOutcome stopped_run;
};

// Each agent's regret averaged over all test hours: sum_k hours_k R_{n,k} / sum_k hours_k.
std::vector<double> pool_regrets(const std::vector<std::vector<double>>& per_fold,
                                 const std::vector<long>& hours);

// Trains and evaluates every run on every fold, writing opt.out/<run>/fold-<k>/ (normal
// train output folders). With base.beta_auto, each q run trains one chain of folds per
// beta of the grid below 1 (opt.out/<run>/beta=<b>/fold-<k>/, each warm-started from its
// own previous fold), the plain run standing for beta = 1, and every fold ships into
// opt.out/<run>/fold-<k>/ the candidate with the lowest validation M_q of that fold.
// Does not write backtest.csv (see backtest_csv).
BacktestResult run_backtest(const RunConfig& base, const RunInputs& in, const BacktestOptions& opt);

// backtest.csv: `run,q,beta,fold_start,fold_end,mean,var,p95,max,mse`, one row per run and
// fold, then per run one row with fold_start = all over the pooled regrets (its beta
// "auto" when the folds chose different ones).
std::string backtest_csv(const BacktestResult& r);
// beta_auto.csv: `run,q,fold_start,beta,val_power_mean,val_se,test_power_mean,chosen`.
std::string beta_auto_csv(const BacktestResult& r);
// The table printed on stdout.
std::string backtest_table(const BacktestResult& r, const BacktestOptions& opt);
// Writes dir/backtest.png from dir/backtest.csv with python3 and matplotlib; false (and why
// in *message) when they are missing or the script fails.
bool plot_backtest(const std::string& dir, std::string* message);

// A fold boundary as text: YYYY-MM-DD at midnight UTC, else YYYY-MM-DDTHH:MM:SSZ.
std::string boundary_text(std::int64_t utc_seconds);

}  // namespace eqpm
