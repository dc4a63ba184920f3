// Numerical guards of training (issue 7, DESIGN.md 9): extreme but valid settings (q = 40,
// lambda from 1e-6 to 1e6, sigma of 1e-6 and 10, k equal to the window width, predictions
// at the floor, min-max scaling with a zero in the truth) train without a single
// non-finite step and end with finite metrics and parameters; and a run whose regrets are
// forced to infinity stops after max_bad_steps with a clear message, leaving the last
// good checkpoint loadable and no results written.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "host/io/atomic_file.hpp"
#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

// Small enough for a couple of seconds on one core: 50 agents, 1500 hours, 2 epochs.
RunConfig small_run() {
  RunConfig cfg;
  cfg.beta_auto = false;  // train_run trains one beta
  cfg.agents = 50;
  cfg.series_hours = 1500;
  cfg.epochs = 2;
  cfg.warm_start_epochs = 0;
  cfg.hidden = {8};
  cfg.backend = "cpu";
  cfg.threads = 1;
  cfg.quiet = true;
  cfg.out.clear();
  return cfg;
}

struct Extreme {
  std::string name;
  std::function<void(RunConfig&)> apply;
};

void PrintTo(const Extreme& e, std::ostream* os) { *os << e.name; }

::testing::AssertionResult all_finite(const RegretStats& s, const char* which) {
  const double v[] = {s.mean, s.var, s.std, s.min, s.p5, s.p50, s.p95, s.max,
                      s.jain, s.gini, s.cv,  s.entropy, s.mse, s.mae};
  const char* names[] = {"mean", "var", "std", "min", "p5", "p50", "p95", "max",
                         "jain", "gini", "cv", "entropy", "mse", "mae"};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; ++i)
    if (!std::isfinite(v[i]))
      return ::testing::AssertionFailure() << which << "." << names[i] << " = " << v[i];
  return ::testing::AssertionSuccess();
}

class NumericsExtreme : public ::testing::TestWithParam<Extreme> {};

TEST_P(NumericsExtreme, TrainsWithoutNonFiniteStepsOrMetrics) {
  RunConfig cfg = small_run();
  GetParam().apply(cfg);
  ASSERT_NO_THROW(validate(cfg)) << "the extreme setting must be a valid configuration";
  const RunInputs in = load_inputs(cfg);
  RunOutcome o;
  try {
    o = train_run(cfg, in);
  } catch (const Error& e) {
    FAIL() << "training stopped: " << e.what();
  }
  EXPECT_EQ(o.train.skipped_steps, 0);
  EXPECT_GT(o.train.steps, 0);
  ASSERT_EQ(o.train.epochs.size(), size_t(cfg.epochs));
  for (const EpochMetrics& m : o.train.epochs) {
    SCOPED_TRACE("epoch " + std::to_string(m.epoch));
    for (const double v : {m.loss, m.power_mean, m.mean, m.var, m.max, m.mse})
      EXPECT_TRUE(std::isfinite(v)) << "loss " << m.loss << " power_mean " << m.power_mean
                                    << " mean " << m.mean << " var " << m.var << " max " << m.max
                                    << " mse " << m.mse;
  }
  EXPECT_TRUE(all_finite(o.test_stats, "test"));
  EXPECT_TRUE(all_finite(o.train_stats, "train_split"));
  for (const auto* regrets : {&o.test.regret, &o.train_split.regret})
    for (size_t n = 0; n < regrets->size(); ++n)
      ASSERT_TRUE(std::isfinite((*regrets)[n]) && (*regrets)[n] >= 0)
          << "agent " << n << " regret " << (*regrets)[n];
  ASSERT_EQ(o.params.size(), size_t(make_problem(cfg, in).layout.parameter_count));
  for (size_t i = 0; i < o.params.size(); ++i)
    ASSERT_TRUE(std::isfinite(o.params[i])) << "parameter " << i << " = " << o.params[i];
}

// k equal to the window width (and to H) leaves an EV agent no choice at all.
void k_is_the_window(RunConfig& c) {
  c.horizon = 12;
  c.ev_k = {12, 12};
  c.ev_window_min = 12;
}
void extreme_lambda(RunConfig& c) { c.dc_lambda = {1e-6, 1e6}; }

INSTANTIATE_TEST_SUITE_P(
    Numerics, NumericsExtreme,
    ::testing::Values(
        Extreme{"q40", [](RunConfig& c) { c.q = 40; }},
        Extreme{"lambda_1e-6_to_1e6", [](RunConfig& c) { extreme_lambda(c); c.mix = "dc=1"; }},
        Extreme{"lambda_1e-6_to_1e6_q40", [](RunConfig& c) { extreme_lambda(c); c.mix = "dc=1"; c.q = 40; }},
        Extreme{"sigma_1e-6", [](RunConfig& c) { c.sigma = 1e-6; }},
        Extreme{"sigma_10", [](RunConfig& c) { c.sigma = 10; }},
        Extreme{"sigma_10_q40", [](RunConfig& c) { c.sigma = 10; c.q = 40; }},
        Extreme{"k_equals_window", [](RunConfig& c) { k_is_the_window(c); c.mix = "ev=1"; }},
        Extreme{"k_equals_window_q40", [](RunConfig& c) { k_is_the_window(c); c.q = 40; }},
        Extreme{"floor_0.5", [](RunConfig& c) { c.floor = 0.5; }},
        Extreme{"floor_above_all_data", [](RunConfig& c) { c.floor = 5; }},
        Extreme{"inventory_costs_1e-6_to_1e6",
                [](RunConfig& c) { c.inv_cu = {1e-6, 1e6}; c.inv_co = {1e-6, 1e6}; c.mix = "inv=1"; }},
        Extreme{"paper_scaling_zero_truth", [](RunConfig& c) { c.scaling = Scaling::paper; c.q = 40; }},
        Extreme{"all_at_once_score",
                [](RunConfig& c) {
                  c.q = 40;
                  extreme_lambda(c);
                  k_is_the_window(c);
                  c.sigma = 1e-6;
                  c.floor = 0.5;
                  c.estimator = Estimator::score;
                }},
        Extreme{"all_at_once_pathwise",
                [](RunConfig& c) {
                  // pathwise needs derivatives: datacenter and inventory agents only.
                  c.q = 40;
                  extreme_lambda(c);
                  c.inv_cu = {1e-6, 1e6};
                  c.mix = "dc=0.5,inv=0.5";
                  c.sigma = 10;
                  c.floor = 0.5;
                  c.estimator = Estimator::pathwise;
                }},
        Extreme{"lr_10_without_clipping",
                [](RunConfig& c) { c.lr = 10; c.grad_clip = 0; c.q = 40; extreme_lambda(c); }}),
    [](const ::testing::TestParamInfo<Extreme>& p) {
      std::string n = p.param.name;
      for (char& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// Regrets made infinite behind validation's back (a datacenter agent with lambda = Inf):
// the warm-start epoch (plain MSE) trains and checkpoints, then every equitable step is
// non-finite; after max_bad_steps in a row the run stops with a clear message, the
// checkpoint on disk is the last good state and no results are written.
TEST(Numerics, ForcedNonFiniteRegretsStopAfterMaxBadStepsAndKeepTheLastGoodCheckpoint) {
  test::TempDir dir;
  RunConfig cfg = small_run();
  cfg.epochs = 3;
  cfg.warm_start_epochs = 1;
  cfg.max_bad_steps = 3;
  cfg.checkpoint_every = 2;
  cfg.out = dir.file("run");
  ensure_output_dir(cfg.out, false);
  RunInputs in = load_inputs(cfg);
  ASSERT_EQ(in.population.agents[0].family, Family::datacenter);
  in.population.agents[0].lambda = INFINITY;
  try {
    train_run(cfg, in);
    FAIL() << "training with infinite regrets finished";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("non-finite"), std::string::npos) << what;
    EXPECT_NE(what.find("3 non-finite steps in a row"), std::string::npos) << what;
  }
  const std::string ckpt = cfg.out + "/checkpoint.safetensors";
  ASSERT_TRUE(std::filesystem::exists(ckpt));
  const CheckpointData c = load_checkpoint(ckpt);
  EXPECT_GT(c.step, 0u);
  for (const float v : c.state.params) ASSERT_TRUE(std::isfinite(v));
  for (const char* result : {"model.safetensors", "summary.json", "agents.csv"})
    EXPECT_FALSE(std::filesystem::exists(cfg.out + "/" + result)) << result;
}

// The same without an output folder: a clean eqpm::Error, nothing else.
TEST(Numerics, ForcedNonFiniteFromTheFirstStepIsAnError) {
  RunConfig cfg = small_run();
  cfg.max_bad_steps = 1;
  RunInputs in = load_inputs(cfg);
  in.population.agents[0].lambda = NAN;
  EXPECT_THROW(train_run(cfg, in), Error);
}

}  // namespace
}  // namespace eqpm
