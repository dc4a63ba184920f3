// The run configuration: every setting of a run in one struct, and a registry of its
// keys. Each key is a TOML key (`warm_start_epochs`) and a command-line flag
// (`--warm-start-epochs`); both go through the same parser and range checks, so a file
// and the command line can never disagree on what a value means.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "eqpm/families.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/settings.hpp"

namespace eqpm {

// Which weights a run keeps as its model: those after the last step, or those of the
// regret-phase epoch with the lowest objective on the validation slice (DESIGN.md 6).
enum class Select : int { last = 0, val = 1 };

// Learning-rate schedule: `anneal` holds lr, then lowers it geometrically over the last
// lr_anneal_epochs epochs to lr x lr_final at the last step (DESIGN.md 5.3a); `step`
// multiplies lr by lr_decay_gamma every lr_decay_epochs; `cosine` follows
// lr (1 + cos(pi t / T)) / 2 over the T steps of the run, to 0 at its end.
enum class LrSchedule : int { step = 0, cosine = 1, anneal = 2 };

// Where a sweep's models begin their annealing (DESIGN.md 5.3a): `best` trains every model
// to the first annealing step, then starts each objective's model from whichever model of
// the sweep (plain included, same beta) has the lowest training-split value of that
// objective there; `own` lets each continue from its own weights. Only sweeps with the
// anneal schedule exchange; a single run has no other model to start from.
enum class AnnealStart : int { own = 0, best = 1 };

// How the generator sets datacenter parameters (DESIGN.md 4.4). `random` draws from the
// configured range (the synthetic generator); the others are the paper's constructions,
// indexed by n = 0..N_dc-1 over the datacenter agents in population order.
enum class DcLambdaRule : int {
  random = 0,    // log-uniform over dc_lambda
  linear = 1,    // lambda_n = 2 (n + 1)
  constant = 2,  // lambda_n = dc_lambda lo
};
enum class DcSpreadRule : int {
  random = 0,  // uniform (phase) or log-uniform (scale) over the configured range
  spread = 1,  // phase_n = floor(n T_D / N_dc); scale_n = lo (hi/lo)^(n / (N_dc - 1))
};

struct Range {
  double lo = 0.0;
  double hi = 0.0;
};

struct RunConfig {
  // --- data
  std::string series;           // CSV path; empty: the embedded synthetic series
  std::string test_series;      // CSV of the test period, continuing `series` (run.hpp)
  std::string column = "avg_CI";
  int max_gap = 3;              // longest run of missing hours filled by interpolation
  long series_hours = 8760;     // length of the synthetic series
  std::uint64_t data_seed = 7;  // seed of the synthetic series
  std::string demand_profile;   // CSV trace for the datacenter demand; empty: synthetic
  Scaling scaling = Scaling::mean;
  double train_fraction = 0.7;
  // The validation slice (metrics.csv, --select val, --beta auto): the training rows of the
  // last val_days days, at most val_fraction of the training rows (val_days 0: the fraction).
  double val_fraction = 0.1;
  int val_days = 14;
  // Date splits (DESIGN.md 2.1; data.hpp's SplitSpec): dates YYYY-MM-DD or timestamps,
  // UTC; empty strings leave the split to train_fraction.
  std::string train_from;
  std::string train_until;
  std::string test_from;
  std::string test_until;

  // --- population
  std::string population;       // population.csv to read; empty: generate
  long agents = 1000;
  std::string mix = "dc=0.4,ev=0.4,inv=0.2";
  std::uint64_t pop_seed = 1;
  Range dc_lambda{0.1, 10.0};   // log-uniform
  Range dc_scale{0.2, 5.0};     // log-uniform
  Range dc_phase{0, 23};        // uniform integer hours
  Range dc_hour{0, 0};          // uniform integer decision hour, clamped to [0, H)
  DcLambdaRule dc_lambda_rule = DcLambdaRule::random;
  DcSpreadRule dc_phase_rule = DcSpreadRule::random;
  DcSpreadRule dc_scale_rule = DcSpreadRule::random;
  Range ev_k{1, 6};             // uniform integer hours needed
  int ev_window_min = 0;        // 0: every EV agent may charge over the whole horizon
  Range ev_energy{0.5, 2.0};    // uniform
  Range inv_cu{1.0, 10.0};      // log-uniform: most inventory agents fear running short...
  Range inv_co{0.1, 1.0};       // ...by different amounts, so they want different quantiles
  Range inv_hour{0, 11};        // uniform integer, clamped to [0, H)
  std::string ev_sessions;      // Caltech-style sessions CSV: one EV agent per kept session
  long ev_sample = 0;           // keep a seeded sample of this many sessions (0: all)

  // --- model
  int lookback = 24;
  int horizon = 12;
  std::vector<int> hidden{64, 64};
  Activation activation = Activation::relu;

  // --- objective and estimator
  double q = 0.0;
  // The fairness objective (objectives.hpp, DESIGN.md 5.5) as written: "cvar:0.1", ... ;
  // empty: power:q. Setting power:q sets q too.
  std::string objective;
  RegretScale regret_scale = RegretScale::absolute;
  double beta = 0.1;            // see README: 0.3 left the q = 0 model short of its M_0 optimum
  // beta = "auto": train one model per beta of beta_grid (1 is the plain model) and keep
  // the one with the lowest validation M_q (beta_select.hpp); beta is then unused.
  bool beta_auto = true;
  std::vector<double> beta_grid{0.1, 0.5, 1.0};
  Estimator estimator = Estimator::automatic;
  EvGradient ev_gradient = EvGradient::conditional;
  double sigma = 0.05;
  double sigma_decay = 0.2;     // sigma at the end of the regret phase, as a fraction of sigma
  int samples = 16;
  bool antithetic = true;
  double floor = 1e-3;
  double rho = 0.99;

  // --- optimisation
  std::uint64_t seed = 42;
  int epochs = 20;
  int warm_start_epochs = 5;
  Select select = Select::last;
  int average_epochs = 6;       // Polyak average of the weights over the last epochs (0: last iterate)
  int batch = 64;
  double lr = 1e-3;
  LrSchedule lr_schedule = LrSchedule::anneal;
  int lr_anneal_epochs = 8;     // anneal: the closing epochs over which lr falls
  AnnealStart anneal_start = AnnealStart::best;  // sweeps: see AnnealStart
  double lr_final = 0.01;       // anneal: the last step's lr over lr
  double lr_decay_gamma = 0.5;  // step
  int lr_decay_epochs = 4;      // step
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double weight_decay = 0.0;    // decoupled weight decay (AdamW), per unit of lr
  double grad_clip = 1.0;       // global-norm clipping; 0 disables it
  int max_bad_steps = 10;

  // --- run
  std::string backend = "auto";  // cpu | cuda | auto
  int threads = 0;               // 0: OpenMP's default
  std::string out;
  long checkpoint_every = 0;     // steps; 0: only at the end
  double checkpoint_minutes = 10;  // also at least this often (0: never by time)
  bool quiet = false;
  bool log_json = false;
  bool profile = false;
  bool overwrite = false;
  CudaGraphs cuda_graphs = CudaGraphs::automatic;
  RegretPath regret_path = RegretPath::automatic;
  // Across MPI ranks: reduce the step's sums natively instead of gathering every agent's
  // regret (Problem::fast_reduce); reproducible for a given rank count, not across counts.
  bool fast_reduce = false;
  // The input paths (series, demand_profile, population, ev_sessions) as a configuration
  // file wrote them, for those it gave relative to its own folder; the fields above hold
  // them resolved (relative to the working folder). Not part of the option registry.
  std::map<std::string, std::string> given_paths;
};

// The option keys that name input files; a configuration file's relative paths for
// these are relative to the file's folder.
inline constexpr const char* kInputPathKeys[] = {"series", "test_series", "demand_profile",
                                                 "population", "ev_sessions"};

// One key of the registry.
struct OptionSpec {
  std::string key;    // TOML key, snake_case
  std::string type;   // "int", "float", "bool", "string", "date", "range", "int-list", or "a|b|c"
  std::string help;
  std::function<void(RunConfig&, const std::string&)> set;  // parses and range-checks
  std::function<std::string(const RunConfig&)> get;         // canonical text
  bool is_run_setting = false;  // not part of the model's identity (out, threads, ...)
};

const std::vector<OptionSpec>& option_registry();
const OptionSpec* find_option(const std::string& key);  // accepts dashes or underscores

// Sets a key from its text; throws ConfigError naming `where` (e.g. "--lr" or
// "run.toml:3:1 (lr)") and what was expected.
void set_option(RunConfig& cfg, const std::string& key, const std::string& value,
                const std::string& where);

// Cross-field checks (horizon limits, window vs k, warm start <= epochs, ...).
void validate(const RunConfig& cfg);

// Parsed mix "dc=0.4,ev=0.4,inv=0.2" as fractions per family (summing to 1).
std::vector<std::pair<Family, double>> parse_mix(const std::string& text);

// Levenshtein distance between two keys, for "did you mean" hints (flags and TOML keys).
std::size_t edit_distance(const std::string& a, const std::string& b);

// The whole configuration as a JSON object (stable key order) and as TOML.
std::string config_to_json(const RunConfig& cfg);
std::string config_to_toml(const RunConfig& cfg);
// A JSON string's content: quotes, backslashes and control characters escaped.
std::string json_escape(const std::string& s);

// The run's objective: `objective`, or power:q when it is empty.
std::shared_ptr<const Objective> run_objective(const RunConfig& cfg);
// Its spec ("power:4", "cvar:0.1").
std::string objective_spec(const RunConfig& cfg);

}  // namespace eqpm
