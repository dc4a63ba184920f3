// The Backend interface: the steps of one training step of DESIGN.md 5.2 (forward,
// perturbation sampling, regrets, weights and advantages, backward, Adam) and the
// evaluation of section 6, behind one seam. The training loop calls it and knows
// nothing of devices; `make_backend` is the only place that knows which backends exist.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eqpm/data.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/population.hpp"
#include "eqpm/reducer.hpp"
#include "eqpm/settings.hpp"

namespace eqpm {

// Everything fixed for the life of a backend.
struct Problem {
  const Dataset* data = nullptr;
  const Population* population = nullptr;
  std::vector<float> demand;   // datacenter demand profile D
  MlpLayout layout;
  int samples = 16;            // S
  bool antithetic = true;
  float sigma = 0.05f;
  float floor = 1e-3f;
  Estimator estimator = Estimator::automatic;
  EvGradient ev_gradient = EvGradient::conditional;  // how EV agents learn (settings.hpp)
  double q = 0.0;
  // The objective F of DESIGN.md 5.5 (objectives.hpp); null: power:q.
  std::shared_ptr<const Objective> objective;
  double rho = 0.99;
  std::uint64_t seed = 42;
  int max_batch = 64;          // largest B a step will be given
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double weight_decay = 0.0;   // decoupled (AdamW), per unit of lr; 0: none
  double grad_clip = 1.0;      // global-norm clipping; 0 disables it (RunConfig's default)
  // How regrets are computed (config.hpp's RegretPath); tests compare every path with the
  // reference.
  RegretPath regret_path = RegretPath::automatic;
  // How the CUDA backend launches steps (never changes results); the CPU ignores it.
  CudaGraphs cuda_graphs = CudaGraphs::automatic;
  // Where the cross-agent sums and maxima of a step are combined (reducer.hpp); null: one
  // process holds every agent. Must outlive the backend. The CPU backend calls it.
  Reducer* reducer = nullptr;
  // --fast-reduce: with more than one place the CPU backend keeps its own agents'
  // per-agent values only and reduces the step's sums with the Reducer's fast_sum and
  // fast_max (reducer.hpp). Flat objectives only. No effect in one place.
  bool fast_reduce = false;

  // Whether EV agents learn through the conditional gradient: asked for, and not overruled
  // by estimator = score, which means the score function for every family.
  bool ev_conditional() const {
    return ev_gradient == EvGradient::conditional && estimator != Estimator::score;
  }
};

// One optimiser step.
struct StepSpec {
  std::uint32_t step = 0;      // global step number (the RNG counter)
  std::vector<long> rows;      // dataset rows of the minibatch (B of them)
  double beta = 0.3;           // accuracy weight; 1 = plain MSE, no regrets needed
  double lr = 1e-3;
  float sigma = 0.0f;          // policy noise of this step; 0: the Problem's sigma
};

struct StepStats {
  double loss = 0.0;           // (1 - beta) Mhat / Mbar + beta MSE / MSEbar
  double power_mean = 0.0;     // the objective (M_q by default) of this minibatch's Rhat
  double smoothed_power_mean = 0.0;  // Mbar: the objective of Rbar
  double mean_regret = 0.0;    // mean over agents of Rhat
  double max_regret = 0.0;
  double mse = 0.0;            // minibatch MSE of mu (normalised units)
  double grad_norm = 0.0;      // before clipping
  bool finite = true;          // false: the step was skipped, no state changed
};

// Optional capture of one step's intermediates, for comparing backends stage by stage.
// Per-agent arrays are in population order.
struct StepTrace {
  std::vector<float> mu;         // B x H
  std::vector<float> eps;        // B x S x H
  std::vector<double> rhat;      // N
  std::vector<double> rbar;      // N
  std::vector<double> omega;     // N
  std::vector<double> advantage; // B x S (score-function agents)
  std::vector<double> g;         // B x H, d loss / d mu
  std::vector<float> grad;       // P, before clipping
};

// What a checkpoint must hold to continue a run exactly.
struct BackendState {
  std::vector<float> params;
  std::vector<float> adam_m;
  std::vector<float> adam_v;
  std::uint64_t adam_step = 0;
  std::vector<double> rbar;      // N; empty: smoothing not started
  double msebar = 0.0;           // 0: not started
};

struct EvalResult {
  std::vector<double> regret;    // per agent, population order: mean over rows
  double mse = 0.0;              // normalised units, mean over rows and hours
  double mae = 0.0;
};

// What a backend did besides the maths, for tests and the device check: CUDA graph captures
// (a capture that failed under `auto` falls back to eager launches, so it is counted here and
// warned about, never silent). The CPU backend leaves everything at zero.
struct BackendDiagnostics {
  long graph_captures = 0;          // graphs captured and instantiated
  long graph_capture_failures = 0;  // captures that failed (steps then ran eagerly)
  long graph_replays = 0;           // steps run by replaying a graph
  long eager_steps = 0;             // steps whose kernels were launched one by one
  std::string last_capture_error;   // why the last capture failed; empty if none did
};

// Wall time per stage, accumulated over steps (seconds).
struct StageTimes {
  double forward = 0, sampling = 0, regrets = 0, reductions = 0, backward = 0,
         optimiser = 0, evaluation = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // Binds the problem; must be called once before anything else. The Problem's data and
  // population must outlive the backend.
  void setup(const Problem& p);
  const Problem& problem() const { return problem_; }

  void set_state(const BackendState& s);
  BackendState state() const { return state_impl(); }
  // The model's weights alone (what iterate averaging reads after every step).
  std::vector<float> params() const { return params_impl(); }

  // One training step (5.2 and 5.3); fills `trace` when non-null.
  StepStats step(const StepSpec& spec, StepTrace* trace = nullptr);

  // Deterministic predictions mu on the given rows: per-agent mean regret, MSE and MAE.
  EvalResult evaluate(const std::vector<long>& rows);

  // Predictions mu (rows x H) for the given rows.
  std::vector<float> predict(const std::vector<long>& rows);

  const StageTimes& stage_times() const { return times_; }
  const BackendDiagnostics& diagnostics() const { return diagnostics_; }

 protected:
  virtual void setup_impl() = 0;
  virtual void set_state_impl(const BackendState& s) = 0;
  virtual BackendState state_impl() const = 0;
  virtual std::vector<float> params_impl() const { return state_impl().params; }
  virtual StepStats step_impl(const StepSpec& spec, StepTrace* trace) = 0;
  virtual EvalResult evaluate_impl(const std::vector<long>& rows) = 0;
  virtual std::vector<float> predict_impl(const std::vector<long>& rows) = 0;

  Problem problem_;
  StageTimes times_;
  BackendDiagnostics diagnostics_;
};

// "cpu", "cuda" or "auto" (cuda when compiled in and a device is visible, else cpu).
// Throws ConfigError for an unknown name or when CUDA is not available.
std::unique_ptr<Backend> make_backend(const std::string& name, int threads = 0);

bool cuda_compiled();
// Number of visible CUDA devices (0 without CUDA support or driver).
int cuda_device_count();
// One line per visible GPU: name and memory.
std::vector<std::string> cuda_device_descriptions();

}  // namespace eqpm
