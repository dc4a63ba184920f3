// A whole run as the `eqpm` program performs it: loading the inputs a configuration
// names, training on a backend, evaluating both splits, and writing the output folder of
// DESIGN.md 8.1 (every file atomically). Sweeps reuse the loaded inputs across runs.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "eqpm/data.hpp"
#include "eqpm/error.hpp"
#include "host/metrics.hpp"
#include "eqpm/population.hpp"
#include "host/trainer.hpp"

namespace eqpm {

struct RunInputs {
  // With --test-series, `series` is the training file's hours before the test file's first
  // hour followed by every hour of the test file; test_series_start is that first hour (UTC
  // seconds; 0 without a test file).
  Series series;
  std::int64_t test_series_start = 0;
  Dataset data;
  Population population;
  std::vector<float> demand;
  std::vector<std::string> notes;  // what loading did (filled gaps, skipped sessions, ...)
  // --regret-scale relative (regret_scale.hpp): each agent's persistence-forecast regret on
  // the training split, and `population` with its costs divided by it. Empty otherwise.
  std::vector<double> regret_unit;
  Population relative_population;
  // Where a training step's per-agent work is shared out (reducer.hpp): the MPI ranks of
  // `mpirun eqpm train`; null: this process does it all. Must outlive the runs.
  Reducer* reducer = nullptr;

  // Whether this process writes the output folders: every run and sweep computes the same
  // on every rank, and rank 0 alone writes (checkpoints, models, tables), so that the files
  // are those of one process and no two ranks write one file.
  bool writes_files() const { return reducer == nullptr || reducer->rank() == 0; }

  // The population whose regrets are trained on and reported.
  const Population& scored_population() const {
    return regret_unit.empty() ? population : relative_population;
  }
};

// Loads or generates the series, demand profile and population of `cfg` and builds the
// dataset. Throws InputError / ConfigError with positions.
RunInputs load_inputs(const RunConfig& cfg);

// The split of `cfg` on `in`: split_spec(cfg), and with a test file and no date keys, the
// test split from the test file's first hour (training targets end before it).
// Sets regret_unit and relative_population from `population` and `data` when `cfg` asks
// for relative regrets, clears them otherwise. load_inputs calls it; call it again after
// rebuilding `data`.
void apply_regret_scale(const RunConfig& cfg, RunInputs& in);

// A saved model's inputs use its own normalisation (metadata eqpm.offset and eqpm.scale),
// never one recomputed on another series: rebuilds in.data with it when it differs, and the
// relative regrets with it. False when the metadata holds none (`in` is then unchanged).
bool use_model_normalisation(const std::map<std::string, std::string>& metadata,
                             const RunConfig& cfg, RunInputs& in);

SplitSpec input_split(const RunConfig& cfg, const RunInputs& in);

Problem make_problem(const RunConfig& cfg, const RunInputs& in);

// Where progress goes; by default stderr, a rewritten line on a terminal, periodic lines
// otherwise, JSON lines with log_json, nothing with quiet.
class ProgressLog {
 public:
  ProgressLog(const RunConfig& cfg, std::string label);
  void step(const Progress& p);
  void epoch(const EpochMetrics& m);
  void note(const std::string& text);
  void finish();

 private:
  RunConfig cfg_;
  std::string label_;
  bool tty_ = false;
  double last_print_ = -1e9;
  bool dirty_ = false;
};

// While a ProgressObserver lives, every ProgressLog on its thread also hands each step's
// progress (with the log's label, "[q=4]") to it, whatever `quiet` says: how a caller that
// embeds eqpm (the Python package) shows progress and notices a stop request.
class ProgressObserver {
 public:
  using Fn = std::function<void(const std::string& label, const Progress& p)>;
  explicit ProgressObserver(Fn fn);
  ~ProgressObserver();
  ProgressObserver(const ProgressObserver&) = delete;
  ProgressObserver& operator=(const ProgressObserver&) = delete;
  static const Fn* current();

 private:
  Fn fn_;
  const Fn* previous_;
};

// How eval scores agents: per-hour (DESIGN.md 6, the default) or the paper's mean
// forecast (paper_metric.hpp).
enum class EvalMetric : int { per_hour = 0, paper_mean = 1 };

struct RunOutcome {
  std::string out_dir;
  TrainResult train;
  EvalResult test, train_split;
  EvalResult validation;  // the held-out tail of the training split (model selection)
  // The validation rows in consecutive days (blocks of 24 rows, the last one possibly
  // shorter): per block, each agent's mean regret over its rows, and its row count. What
  // --beta auto resamples to judge whether a validation gap is more than noise.
  std::vector<std::vector<double>> validation_days;
  std::vector<long> validation_day_rows;
  RegretStats test_stats, train_stats;
  std::vector<float> params;
  std::string backend;
  StageTimes stages;
  // A run that a signal stopped (interrupt.hpp) leaves its checkpoint and metrics.csv
  // only; interrupted_at is the step it stopped after (-1: it finished).
  long interrupted_at = -1;
  long total_steps = 0;
  EvalMetric metric = EvalMetric::per_hour;
  // A run paused at RunStart::pause_at: the checkpoint it wrote there (nothing is
  // evaluated and only the checkpoint and metrics.csv are written).
  std::shared_ptr<const CheckpointData> paused;
};

// Where train_run starts and stops, besides the configuration.
struct RunStart {
  std::string checkpoint;                 // continue from this checkpoint file
  const CheckpointData* state = nullptr;  // or from this one (instead of a file)
  // With a checkpoint: take the model's state from this one instead (weights, optimiser
  // moments, smoothed regrets, the averaging window's sums), keeping the run's own step,
  // metrics and epoch-selection state. How a sweep starts one model's annealing from
  // another's weights (AnnealStart::best); both must be at the same step.
  const CheckpointData* adopt = nullptr;
  std::string adopt_name;  // the adopted state's model, for the progress log
  // Without a checkpoint: start from these weights instead of the seeded initialisation,
  // with fresh optimiser moments and the full schedule of cfg.
  std::vector<float> initial_params;
  long pause_at = -1;  // stop after this many steps (RunOutcome::paused); -1: run to the end
};

// Trains one model and writes `cfg.out` (which must already be prepared: see
// ensure_output_dir). With resume_from non-empty, continues from that checkpoint file.
// Writes a checkpoint every cfg.checkpoint_every steps and every cfg.checkpoint_minutes,
// and stops after the step in progress when interrupt_signal() is set. With
// initial_params non-empty (and no resume), training starts from those weights instead of
// the seeded initialisation, with fresh optimiser moments and the full schedule of cfg.
RunOutcome train_run(const RunConfig& cfg, const RunInputs& in, const std::string& resume_from = "",
                     const std::vector<float>& initial_params = {});
RunOutcome train_run(const RunConfig& cfg, const RunInputs& in, const RunStart& start);

// Writes the whole output folder cfg.out (model, population, demand profile, agents.csv,
// summary.json, metrics.csv) for an outcome already trained and evaluated: how
// --beta auto ships the chosen candidate under its run's configuration.
void write_run_outputs(const RunConfig& cfg, const RunInputs& in, const RunOutcome& o);

// Evaluates parameters on both splits (with `metric`) and writes agents.csv and
// summary.json into out_dir (when non-empty).
RunOutcome evaluate_model(const RunConfig& cfg, const RunInputs& in, const std::vector<float>& params,
                          EvalMetric metric = EvalMetric::per_hour);

// Each agent's mean regret over the training split under `params` (as RunOutcome::
// train_split), nothing written.
std::vector<double> training_split_regret(const RunConfig& cfg, const RunInputs& in,
                                          const std::vector<float>& params);

// Text of the output files (exposed for tests).
// agents.csv: agent,family,regret,train_regret[,val_regret][,naive_regret]: val_regret when
// `validation` holds one regret per agent, naive_regret (the unit of a relative regret,
// RunInputs::regret_unit) when `regret_unit` does.
std::string agents_csv(const Population& p, const EvalResult& test, const EvalResult& train_split,
                       const EvalResult* validation = nullptr,
                       const std::vector<double>& regret_unit = {});
std::string metrics_csv(const std::vector<EpochMetrics>& epochs);
std::string summary_json(const RunConfig& cfg, const RunInputs& in, const RunOutcome& o);

// Model metadata of DESIGN.md 8.1.
std::map<std::string, std::string> model_metadata(const RunConfig& cfg, const Dataset& d);

// A configuration from the eqpm.config JSON object written into models and checkpoints.
RunConfig config_from_json(const std::string& json, const std::string& source);

// The configuration of a run continued from the checkpoint `ckpt` (`eqpm train --resume
// DIR`): the one the checkpoint stores, with epochs and the run settings (out, threads,
// backend, quiet, ...) taken from `flags` for the keys of `given` (registry keys); any
// other given key whose value differs from the stored one is refused (resume_refusal).
// Without a given out, the run finishes in `dir`.
RunConfig resumed_config(const std::string& ckpt, const RunConfig& flags,
                         const std::vector<std::string>& given, const std::string& dir);

// The error for a key given as `value` to a resumed run started with `stored`.
ConfigError resume_refusal(const std::string& key, const std::string& value, const std::string& stored);

// The checkpoint a run in `dir` continues from: DIR/checkpoint.safetensors, or for a --beta
// auto run, which keeps one per candidate (DIR/beta=<b>/), the first candidate's, with
// *beta_auto set. Empty when there is none.
std::string run_checkpoint(const std::string& dir, bool* beta_auto);

// The run in `dir` to continue, as `eqpm train --resume DIR` finds it: `cfg` is the
// resumed_config of its run_checkpoint, validated, and `checkpoint` that checkpoint. For
// a --beta auto run `cfg` has beta auto and `checkpoint` is empty (each candidate
// continues from its own, see train_beta_auto); such a run resumes in DIR only.
struct ResumedRun {
  RunConfig cfg;
  std::string checkpoint;
};
ResumedRun resumed_run(const std::string& dir, const RunConfig& flags,
                       const std::vector<std::string>& given);

// Shortest round-trip text of a double.
std::string format_double(double v);

}  // namespace eqpm
