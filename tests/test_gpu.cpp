// The CUDA backend (kernels/) against the CPU reference (host/cpu/cpu_backend.cpp, general path):
// perturbations bit for bit; per-agent Rhat, Rbar, omega, the advantages, g and the parameter
// gradient of a step within 1e-5 relative (1e-4 for N >= 1e5) over every family, mixed
// populations, sizes that are no multiple of any block size, B = 1, S = 2, H = 1, antithetic
// on and off, every estimator, q = 0 and q = 19, both regret paths of the GPU (generic and
// the structured one of DESIGN.md 5.4) and both forward kernels; plain-MSE steps; evaluation;
// state round trips; the NaN guard; 50 training steps; and bitwise reproducibility (two runs,
// graph replay against eager launches). Plain C++: everything goes through eqpm::Backend.
// Every test skips when no CUDA device is visible (CI, CPU-only machines).
//
// "Relative" for vectors whose entries cancel (advantages, g, gradients) means relative to
// the largest reference entry: a sum of float regrets carries float rounding of its largest
// terms, not of the (possibly tiny) result.
#include <gtest/gtest.h>

#include <ostream>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/rng.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

using test::kFloatRtol;
using test::kLargeSumRtol;

// The regret path of a test case's name: auto, generic, structured or reference.
RegretPath regret_path_of(const std::string& name) {
  if (name == "generic") return RegretPath::generic;
  if (name == "structured") return RegretPath::structured;
  if (name == "reference") return RegretPath::reference;
  return RegretPath::automatic;
}

struct Case {
  std::string name;
  std::string mix = "dc=0.4,ev=0.4,inv=0.2";
  long agents = 1000;
  int batch = 16;
  int samples = 8;
  int horizon = 6;
  int ev_window_min = 2;
  bool antithetic = true;
  Estimator estimator = Estimator::automatic;
  double q = 4.0;
  std::vector<int> hidden{16, 8};
  Activation activation = Activation::tanh;
  std::string path = "auto";  // the GPU backend's Problem::regret_path (regret_path_of)
  std::string objective = "";  // RunConfig::objective; empty: power:q
  EvGradient ev_gradient = EvGradient::score;
};

RunConfig config_of(const Case& c) {
  RunConfig cfg;
  cfg.series_hours = 24 * 60;
  cfg.lookback = 12;
  cfg.horizon = c.horizon;
  cfg.hidden = c.hidden;
  cfg.activation = c.activation;
  cfg.agents = c.agents;
  cfg.mix = c.mix;
  cfg.dc_hour = {0, static_cast<double>(c.horizon - 1)};
  cfg.inv_hour = {0, static_cast<double>(c.horizon - 1)};
  cfg.ev_k = {1, static_cast<double>(std::min(4, c.horizon))};
  cfg.ev_window_min = c.ev_window_min;
  cfg.samples = c.samples;
  cfg.antithetic = c.antithetic;
  cfg.estimator = c.estimator;
  cfg.ev_gradient = c.ev_gradient;
  cfg.sigma = 0.05;
  cfg.batch = c.batch;
  cfg.q = c.q;
  if (!c.objective.empty()) set_option(cfg, "objective", c.objective, "test");
  cfg.rho = 0.9;
  cfg.beta = 0.3;
  cfg.seed = 42;
  cfg.grad_clip = 1.0;
  return cfg;
}

// The same problem on the CPU reference (general path) and on the GPU.
struct Pair {
  RunConfig cfg;
  RunInputs in;
  Problem problem;
  std::unique_ptr<Backend> cpu, gpu;
};

std::unique_ptr<Pair> make_pair(const Case& c) {
  auto f = std::make_unique<Pair>();
  f->cfg = config_of(c);
  f->in.series = synthetic_series(f->cfg.series_hours, f->cfg.data_seed);
  f->in.demand = synthetic_demand_profile();
  f->in.population = generate_population(f->cfg);
  validate_population(f->in.population, f->cfg.horizon, "test population");
  f->in.data = build_dataset(f->in.series, f->cfg.lookback, f->cfg.horizon,
                             f->cfg.train_fraction, f->cfg.val_fraction, f->cfg.scaling);
  f->problem = make_problem(f->cfg, f->in);
  // A failed capture fails the test, never hides; objectives without a flat form are
  // evaluated on the host within the step, which no graph can hold.
  f->problem.cuda_graphs = f->problem.objective->flat() ? CudaGraphs::on : CudaGraphs::off;
  Problem reference = f->problem;
  reference.regret_path = RegretPath::reference;  // the plain general path is the spec
  f->cpu = make_backend("cpu");
  f->cpu->setup(reference);
  f->problem.regret_path = regret_path_of(c.path);
  f->gpu = make_backend("cuda");
  f->gpu->setup(f->problem);
  return f;
}

std::unique_ptr<Backend> make_gpu(const Problem& p, const std::string& path = "auto",
                                  CudaGraphs graphs = CudaGraphs::on) {
  Problem q = p;
  q.regret_path = regret_path_of(path);
  q.cuda_graphs = graphs;
  auto g = make_backend("cuda");
  g->setup(q);
  return g;
}

StepSpec make_spec(std::uint32_t step, int B, long fit_rows, double beta = 0.3) {
  StepSpec s;
  s.step = step;
  s.beta = beta;
  s.lr = 1e-3;
  SplitMix64 rng(1000 + step);
  for (int b = 0; b < B; ++b) s.rows.push_back(rng.integer(0, fit_rows - 1));
  return s;
}

using test::bitwise_equal;
using test::max_abs;

// Elementwise relative, with an absolute floor far below the vector's scale (exact zeros).
#define EXPECT_CLOSE_ELEMENTWISE(got, ref, rtol) \
  EXPECT_ALL_CLOSE((got), (ref), 1e-9 * max_abs(ref) + 1e-300, (rtol))
// Relative to the largest reference entry (for sums whose terms cancel).
#define EXPECT_CLOSE_SCALED(got, ref, rtol) \
  EXPECT_ALL_CLOSE((got), (ref), (rtol) * max_abs(ref) + 1e-300, (rtol))

using test::expect_same_state;

void expect_stats_close(const StepStats& g, const StepStats& c, double rtol, const std::string& what) {
  EXPECT_EQ(g.finite, c.finite) << what;
  auto near = [&](double a, double b, const char* name) {
    EXPECT_NEAR(a, b, rtol * std::abs(b) + 1e-300) << what << ": " << name;
  };
  near(g.loss, c.loss, "loss");
  near(g.power_mean, c.power_mean, "power_mean");
  near(g.smoothed_power_mean, c.smoothed_power_mean, "smoothed_power_mean");
  near(g.mean_regret, c.mean_regret, "mean_regret");
  near(g.max_regret, c.max_regret, "max_regret");
  near(g.mse, c.mse, "mse");
  near(g.grad_norm, c.grad_norm, "grad_norm");
}

// One step on both backends from the same state, stage by stage.
void expect_step_matches(Pair& f, const StepSpec& spec, double rtol, const std::string& what) {
  StepTrace tc, tg;
  const StepStats sc = f.cpu->step(spec, &tc);
  const StepStats sg = f.gpu->step(spec, &tg);
  ASSERT_TRUE(sc.finite) << what;
  expect_stats_close(sg, sc, rtol, what);
  EXPECT_ALL_CLOSE(tg.mu, tc.mu, test::kFloatAtol, kFloatRtol) << what << ": mu";
  EXPECT_TRUE(bitwise_equal(tg.eps, tc.eps)) << what << ": perturbations differ";
  EXPECT_CLOSE_ELEMENTWISE(tg.rhat, tc.rhat, rtol) << what << ": rhat";
  EXPECT_CLOSE_ELEMENTWISE(tg.rbar, tc.rbar, rtol) << what << ": rbar";
  EXPECT_CLOSE_ELEMENTWISE(tg.omega, tc.omega, rtol) << what << ": omega";
  EXPECT_CLOSE_SCALED(tg.advantage, tc.advantage, rtol) << what << ": advantage";
  EXPECT_CLOSE_SCALED(tg.g, tc.g, rtol) << what << ": g";
  EXPECT_CLOSE_SCALED(tg.grad, tc.grad, rtol) << what << ": grad";
}

// ------------------------------------------------------------------ one step, many shapes

std::vector<Case> step_cases() {
  std::vector<Case> base;
  auto add = [&](Case c) { base.push_back(std::move(c)); };
  add(Case{.name = "mixed"});
  add(Case{.name = "mixed_N7_B5_S2_loo",
           .agents = 7, .batch = 5, .samples = 2, .antithetic = false, .q = 0.0});
  add(Case{.name = "N1_B1_S2_H1_score",
           .agents = 1, .batch = 1, .samples = 2, .horizon = 1, .antithetic = false,
           .estimator = Estimator::score, .hidden = {8}});
  add(Case{.name = "dc_pathwise_q19_B1_S2_H1", .mix = "dc=1", .batch = 1, .samples = 2,
           .horizon = 1, .antithetic = false, .estimator = Estimator::pathwise, .q = 19.0});
  add(Case{.name = "dc_score_q19", .mix = "dc=1", .estimator = Estimator::score, .q = 19.0});
  add(Case{.name = "ev_whole_horizon_q19", .mix = "ev=1", .ev_window_min = 0, .q = 19.0});
  add(Case{.name = "ev_windows_loo", .mix = "ev=1", .agents = 999, .antithetic = false, .q = 0.0});
  add(Case{.name = "inv_pathwise_q0", .mix = "inv=1", .estimator = Estimator::pathwise, .q = 0.0});
  add(Case{.name = "inv_score_loo", .mix = "inv=1", .antithetic = false, .estimator = Estimator::score});
  add(Case{.name = "mixed_score_q19_loo", .antithetic = false, .estimator = Estimator::score, .q = 19.0});
  add(Case{.name = "mixed_H12_B33_S6_relu", .agents = 1013, .batch = 33, .samples = 6,
           .horizon = 12, .activation = Activation::relu});
  add(Case{.name = "mixed_gelu", .agents = 257, .activation = Activation::gelu});
  add(Case{.name = "mixed_wide_layers_global_forward", .agents = 200, .batch = 9,
           .hidden = {300, 20}, .activation = Activation::relu});
  add(Case{.name = "mixed_N100003", .agents = 100003, .batch = 32, .samples = 8, .horizon = 12});
  // The longest horizon: class_regrets_kernel runs smaller blocks (launch_config.hpp).
  add(Case{.name = "mixed_H64", .agents = 601, .batch = 7, .samples = 4, .horizon = 64,
           .ev_window_min = 8});
  // The objectives of DESIGN.md 5.5: tilts on the device, the others on the host.
  add(Case{.name = "mixed_tilt", .agents = 1001, .objective = "tilt:2"});
  add(Case{.name = "mixed_maxmin", .agents = 500, .antithetic = false, .objective = "maxmin:0.05"});
  add(Case{.name = "mixed_cvar", .agents = 1001, .objective = "cvar:0.1"});
  add(Case{.name = "mixed_group_power", .agents = 700, .objective = "group-power:4"});
  add(Case{.name = "mixed_tilt_groups", .agents = 700, .antithetic = false,
           .objective = "tilt-groups:1,10"});
  // EV agents under the conditional gradient: per class on the CPU, per class (structured)
  // or per agent (generic) on the GPU, at the step's sigma read on the device.
  add(Case{.name = "ev_conditional_windows", .mix = "ev=1", .agents = 999, .horizon = 12,
           .ev_window_min = 3, .ev_gradient = EvGradient::conditional});
  add(Case{.name = "mixed_conditional_loo_q0", .agents = 1001, .antithetic = false, .q = 0.0,
           .ev_gradient = EvGradient::conditional});
  std::vector<Case> out;
  for (const Case& c : base)
    for (const char* path : {"generic", "structured"}) {
      Case d = c;
      d.path = path;
      d.name = c.name + "_" + path;
      out.push_back(d);
    }
  return out;
}

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class GpuStep : public ::testing::TestWithParam<Case> {};

TEST_P(GpuStep, MatchesCpuStageByStage) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  const Case& c = GetParam();
  auto f = make_pair(c);
  const double rtol = c.agents >= 100000 ? kLargeSumRtol : kFloatRtol;
  const long fit = f->in.data.fit_rows;
  // Step 1: Rbar starts at Rhat. Steps 2 and 3 (same shape: step 3 is a CUDA graph replay on
  // the GPU) from the CPU's state, so smoothing and set_state are covered too.
  expect_step_matches(*f, make_spec(0, c.batch, fit), rtol, c.name + " step 1");
  f->gpu->set_state(f->cpu->state());
  expect_step_matches(*f, make_spec(1, c.batch, fit), rtol, c.name + " step 2");
  f->gpu->set_state(f->cpu->state());
  expect_step_matches(*f, make_spec(2, c.batch, fit), rtol, c.name + " step 3");
}

INSTANTIATE_TEST_SUITE_P(Gpu, GpuStep, ::testing::ValuesIn(step_cases()),
                         [](const ::testing::TestParamInfo<Case>& p) { return p.param.name; });

// ------------------------------------------------------------------ single properties

TEST(GpuBackend, PerturbationsEqualTheCpusBitForBit) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  for (bool antithetic : {true, false})
    for (int H : {1, 5, 12}) {
      Case c{.name = "eps", .agents = 30, .batch = 7, .samples = 6, .horizon = H,
             .antithetic = antithetic};
      auto f = make_pair(c);
      for (std::uint32_t step : {0u, 1u, 77u}) {
        const StepSpec spec = make_spec(step, c.batch, f->in.data.fit_rows);
        StepTrace tc, tg;
        f->cpu->step(spec, &tc);
        f->gpu->step(spec, &tg);
        ASSERT_EQ(tg.eps.size(), static_cast<size_t>(c.batch * c.samples * H));
        EXPECT_TRUE(bitwise_equal(tg.eps, tc.eps))
            << "H=" << H << " antithetic=" << antithetic << " step=" << step;
        f->gpu->set_state(f->cpu->state());
      }
    }
}

TEST(GpuBackend, PlainMseStepMatchesCpu) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "plain", .agents = 101, .batch = 11};
  auto f = make_pair(c);
  for (std::uint32_t k = 0; k < 3; ++k) {
    const StepSpec spec = make_spec(k, c.batch, f->in.data.fit_rows, 1.0);
    StepTrace tc, tg;
    const StepStats sc = f->cpu->step(spec, &tc);
    const StepStats sg = f->gpu->step(spec, &tg);
    const std::string what = "plain step " + std::to_string(k);
    expect_stats_close(sg, sc, kFloatRtol, what);
    EXPECT_TRUE(tg.eps.empty() && tg.rhat.empty() && tg.omega.empty() && tg.advantage.empty()) << what;
    EXPECT_CLOSE_SCALED(tg.g, tc.g, kFloatRtol) << what;
    EXPECT_CLOSE_SCALED(tg.grad, tc.grad, kFloatRtol) << what;
    const BackendState a = f->gpu->state(), b = f->cpu->state();
    EXPECT_ALL_CLOSE(a.params, b.params, 1e-6, kFloatRtol) << what;
    EXPECT_TRUE(a.rbar.empty()) << what << ": a plain step must not start the smoothing of Rbar";
    f->gpu->set_state(b);
  }
}

TEST(GpuBackend, AdamAndClippingMatchCpuExactlyFromTheSameGradient) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  // relu, generic path: the forward pass, regrets and Rhat are computed as on the CPU (up to
  // an ulp of the output softplus, which the CPU evaluates through the C library's double
  // functions), so the state after a step agrees to float rounding.
  Case c{.name = "adam", .mix = "inv=1", .agents = 64, .batch = 8,
         .activation = Activation::relu, .path = "generic"};
  auto f = make_pair(c);
  for (std::uint32_t k = 0; k < 4; ++k) {
    f->cpu->step(make_spec(k, c.batch, f->in.data.fit_rows));
    f->gpu->step(make_spec(k, c.batch, f->in.data.fit_rows));
    const BackendState a = f->gpu->state(), b = f->cpu->state();
    EXPECT_EQ(a.adam_step, b.adam_step);
    EXPECT_ALL_CLOSE(a.params, b.params, 1e-7, kFloatRtol) << "step " << k;
    EXPECT_ALL_CLOSE(a.adam_m, b.adam_m, 1e-9, 1e-4) << "step " << k;
    EXPECT_ALL_CLOSE(a.adam_v, b.adam_v, 1e-12, 1e-4) << "step " << k;
    EXPECT_CLOSE_ELEMENTWISE(a.rbar, b.rbar, kFloatRtol) << "step " << k;
    EXPECT_NEAR(a.msebar, b.msebar, 1e-6 * b.msebar) << "step " << k;
    f->gpu->set_state(b);
  }
}

TEST(GpuBackend, EvaluateAndPredictMatchCpu) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  for (const char* mix : {"dc=0.4,ev=0.4,inv=0.2", "ev=1"}) {
    Case c{.name = "eval", .mix = mix, .agents = 777, .horizon = 12};
    auto f = make_pair(c);
    for (std::uint32_t k = 0; k < 3; ++k) f->cpu->step(make_spec(k, c.batch, f->in.data.fit_rows));
    f->gpu->set_state(f->cpu->state());
    std::vector<long> rows;
    for (long r = f->in.data.train_rows; r < f->in.data.rows; ++r) rows.push_back(r);
    rows.push_back(0);  // any order, repeats allowed
    rows.push_back(0);
    EXPECT_ALL_CLOSE(f->gpu->predict(rows), f->cpu->predict(rows), test::kFloatAtol, kFloatRtol) << mix;
    const EvalResult eg = f->gpu->evaluate(rows), ec = f->cpu->evaluate(rows);
    EXPECT_CLOSE_ELEMENTWISE(eg.regret, ec.regret, kFloatRtol) << mix;
    EXPECT_NEAR(eg.mse, ec.mse, kFloatRtol * ec.mse) << mix;
    EXPECT_NEAR(eg.mae, ec.mae, kFloatRtol * ec.mae) << mix;
    const EvalResult empty = f->gpu->evaluate({});
    EXPECT_EQ(empty.regret.size(), static_cast<size_t>(f->in.population.size()));
    EXPECT_EQ(empty.mse, 0.0);
  }
}

TEST(GpuBackend, StateRoundTripIsExact) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "state", .agents = 503};
  auto f = make_pair(c);
  const BackendState fresh = f->gpu->state();
  EXPECT_TRUE(bitwise_equal(fresh.params, f->cpu->state().params)) << "initialisation differs";
  EXPECT_TRUE(fresh.rbar.empty());
  EXPECT_EQ(fresh.adam_step, 0u);
  for (std::uint32_t k = 0; k < 3; ++k) f->cpu->step(make_spec(k, c.batch, f->in.data.fit_rows));
  const BackendState s = f->cpu->state();
  f->gpu->set_state(s);
  expect_same_state(f->gpu->state(), s, "after set_state");
  // params() (what iterate averaging reads every step) is the state's weights.
  EXPECT_TRUE(bitwise_equal(f->gpu->params(), s.params));
  // An empty Rbar restarts the smoothing.
  BackendState restart = s;
  restart.rbar.clear();
  f->gpu->set_state(restart);
  f->cpu->set_state(restart);
  expect_step_matches(*f, make_spec(9, c.batch, f->in.data.fit_rows), kFloatRtol, "after restart");
  // A step at a scheduled policy noise (StepSpec.sigma, read from the step's parameter
  // block on the device) matches the CPU's step at the same noise.
  StepSpec annealed = make_spec(10, c.batch, f->in.data.fit_rows);
  annealed.sigma = 0.013f;
  expect_step_matches(*f, annealed, kFloatRtol, "scheduled sigma");
}

TEST(GpuBackend, NonFiniteStepChangesNothing) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "nan", .agents = 50};
  auto f = make_pair(c);
  for (std::uint32_t k = 0; k < 3; ++k) {
    const StepSpec spec = make_spec(k, c.batch, f->in.data.fit_rows, k == 0 ? 1.0 : 0.3);
    ASSERT_TRUE(f->cpu->step(spec).finite);
  }
  const BackendState good = f->cpu->state();
  // Finite but huge output-layer weights overflow the forward pass (mu = +inf), as in the CPU
  // backend's test: hidden unit 0 of the last hidden layer saturates at +1 (tanh of a huge
  // bias) and feeds every output with weight 3e38 on top of a bias of 3e38.
  BackendState huge = good;
  const MlpLayout& L = f->problem.layout;
  const int last = L.layers - 1;
  for (int i = 0; i < L.width[last - 1]; ++i)
    huge.params[static_cast<size_t>(L.weight_offset[last - 1] + i)] = 0.0f;
  huge.params[static_cast<size_t>(L.bias_offset[last - 1])] = 3e38f;
  for (int j = 0; j < L.width[last + 1]; ++j) {
    huge.params[static_cast<size_t>(L.weight_offset[last] + static_cast<long>(j) * L.width[last])] = 3e38f;
    huge.params[static_cast<size_t>(L.bias_offset[last] + j)] = 3e38f;
  }
  for (double beta : {0.3, 1.0, 0.0}) {
    f->gpu->set_state(huge);
    f->cpu->set_state(huge);
    const StepSpec spec = make_spec(10, c.batch, f->in.data.fit_rows, beta);
    EXPECT_FALSE(f->cpu->step(spec).finite) << "beta " << beta;
    EXPECT_FALSE(f->gpu->step(spec).finite) << "beta " << beta;
    expect_same_state(f->gpu->state(), huge, "after a non-finite step");
  }
  // Restoring the good state, steps are finite again and match the CPU.
  f->gpu->set_state(good);
  f->cpu->set_state(good);
  expect_step_matches(*f, make_spec(11, c.batch, f->in.data.fit_rows), kFloatRtol, "after recovery");
}

TEST(GpuBackend, FiftyTrainingStepsEndWithTheCpusTestMetrics) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "trajectory", .agents = 2000, .batch = 32, .samples = 8, .horizon = 12,
         .hidden = {32, 32}, .activation = Activation::relu};
  auto f = make_pair(c);
  const long fit = f->in.data.fit_rows;
  for (std::uint32_t k = 0; k < 50; ++k) {
    // Warm start on plain MSE, then the equitable objective; a partial batch now and then.
    const int B = k % 10 == 9 ? 7 : c.batch;
    const StepSpec spec = make_spec(k, B, fit, k < 10 ? 1.0 : 0.3);
    const StepStats sc = f->cpu->step(spec), sg = f->gpu->step(spec);
    ASSERT_TRUE(sc.finite && sg.finite) << "step " << k;
  }
  std::vector<long> rows;
  for (long r = f->in.data.train_rows; r < f->in.data.rows; ++r) rows.push_back(r);
  const EvalResult eg = f->gpu->evaluate(rows), ec = f->cpu->evaluate(rows);
  double mg = 0, mc = 0;
  for (size_t i = 0; i < eg.regret.size(); ++i) {
    mg += eg.regret[i];
    mc += ec.regret[i];
  }
  EXPECT_NEAR(eg.mse, ec.mse, 1e-3 * ec.mse);
  EXPECT_NEAR(eg.mae, ec.mae, 1e-3 * ec.mae);
  EXPECT_NEAR(mg, mc, 1e-3 * mc) << "mean test regret";
  EXPECT_CLOSE_ELEMENTWISE(eg.regret, ec.regret, 1e-2) << "per-agent test regrets";
}

TEST(GpuBackend, TwoRunsAreBitwiseEqual) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "repro", .agents = 100003, .batch = 32, .horizon = 12};
  auto f = make_pair(c);
  auto other = make_gpu(f->problem);
  const long fit = f->in.data.fit_rows;
  for (std::uint32_t k = 0; k < 8; ++k) {
    const int B = k == 5 ? 13 : c.batch;
    const StepSpec spec = make_spec(k, B, fit, k < 2 ? 1.0 : 0.3);
    StepTrace ta, tb;
    const StepStats a = f->gpu->step(spec, &ta), b = other->step(spec, &tb);
    EXPECT_TRUE(bitwise_equal(a.loss, b.loss) && bitwise_equal(a.grad_norm, b.grad_norm) &&
                bitwise_equal(a.smoothed_power_mean, b.smoothed_power_mean))
        << "step " << k;
    EXPECT_TRUE(bitwise_equal(ta.rhat, tb.rhat) && bitwise_equal(ta.omega, tb.omega) &&
                bitwise_equal(ta.advantage, tb.advantage) && bitwise_equal(ta.g, tb.g) &&
                bitwise_equal(ta.grad, tb.grad))
        << "step " << k;
  }
  expect_same_state(f->gpu->state(), other->state(), "two runs");
  std::vector<long> rows = {0, 5, 17, fit - 1};
  EXPECT_TRUE(bitwise_equal(f->gpu->evaluate(rows).regret, other->evaluate(rows).regret));
}

TEST(GpuBackend, GraphReplayEqualsEagerLaunches) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  Case c{.name = "graphs", .agents = 4099, .batch = 16};
  auto f = make_pair(c);
  for (const char* path : {"generic", "structured"}) {
    auto graphs = make_gpu(f->problem, path, CudaGraphs::on);
    auto eager = make_gpu(f->problem, path, CudaGraphs::off);
    for (std::uint32_t k = 0; k < 8; ++k) {
      const StepSpec spec = make_spec(k, k == 4 ? 3 : c.batch, f->in.data.fit_rows, k == 1 ? 1.0 : 0.3);
      const StepStats a = graphs->step(spec), b = eager->step(spec);
      EXPECT_TRUE(bitwise_equal(a.loss, b.loss)) << path << " step " << k;
    }
    expect_same_state(graphs->state(), eager->state(), path);
    // Replays happened (a silent fall-back to eager launches would make the test trivial).
    EXPECT_GE(graphs->diagnostics().graph_captures, 1) << path;
    EXPECT_GE(graphs->diagnostics().graph_replays, 3) << path;
    EXPECT_EQ(graphs->diagnostics().graph_capture_failures, 0)
        << path << ": " << graphs->diagnostics().last_capture_error;
    EXPECT_EQ(eager->diagnostics().graph_replays, 0) << path;
    EXPECT_EQ(eager->diagnostics().eager_steps, 8) << path;
  }
}

// --cuda-graphs: a run setting (not part of the model's identity) with three values; runs
// without a device.
TEST(GpuSettings, CudaGraphsIsARunSettingWithThreeValues) {
  const OptionSpec* o = find_option("cuda-graphs");
  ASSERT_NE(o, nullptr);
  EXPECT_TRUE(o->is_run_setting);
  RunConfig cfg;
  EXPECT_EQ(cfg.cuda_graphs, CudaGraphs::automatic);
  EXPECT_EQ(o->get(cfg), "auto");
  for (const auto& [text, value] : {std::pair{"on", CudaGraphs::on}, std::pair{"off", CudaGraphs::off},
                                    std::pair{"auto", CudaGraphs::automatic}}) {
    set_option(cfg, "cuda_graphs", text, "--cuda-graphs");
    EXPECT_EQ(cfg.cuda_graphs, value) << text;
    EXPECT_EQ(o->get(cfg), text);
  }
  EXPECT_THROW(set_option(cfg, "cuda_graphs", "1", "--cuda-graphs"), ConfigError);
}

TEST(GpuBackend, CudaBackendReportsItsNameAndDevices) {
  if (eqpm::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device visible";
  EXPECT_EQ(make_backend("cuda")->name(), "cuda");
  EXPECT_EQ(make_backend("auto")->name(), "cuda");
  const auto devices = cuda_device_descriptions();
  ASSERT_EQ(static_cast<int>(devices.size()), cuda_device_count());
  EXPECT_NE(devices[0].find("sm_"), std::string::npos) << devices[0];
}

}  // namespace
}  // namespace eqpm
