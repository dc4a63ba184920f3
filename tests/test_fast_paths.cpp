// Every CPU fast path (DESIGN.md 5.4 factorisations, the fused steady-state pass over
// sample lanes) against the plain reference path (RegretPath::reference), step by
// step from equal states.
#include <gtest/gtest.h>

#include <ostream>

#include <algorithm>
#include <cmath>

#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

struct Case {
  const char* name;
  const char* mix;
  int horizon;
  int ev_window_min;
  Estimator estimator;
  bool antithetic;
  double q;
  bool factorise = true;  // false: every agent on the sample-lane general path
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class FastPaths : public ::testing::TestWithParam<Case> {};

using test::max_abs;

TEST_P(FastPaths, MatchReferenceStepByStep) {
  const Case c = GetParam();
  RunConfig cfg;
  cfg.agents = 257;  // not a multiple of any chunk size
  cfg.mix = c.mix;
  cfg.horizon = c.horizon;
  cfg.ev_k = {1, static_cast<double>(std::min(c.horizon, 4))};
  cfg.ev_window_min = c.ev_window_min;
  cfg.inv_hour = {0, static_cast<double>(c.horizon - 1)};
  cfg.dc_hour = {0, static_cast<double>(c.horizon - 1)};
  cfg.series_hours = 24 * 60;
  cfg.estimator = c.estimator;
  cfg.antithetic = c.antithetic;
  cfg.samples = 6;
  cfg.batch = 9;
  cfg.q = c.q;
  cfg.rho = 0.5;
  const RunInputs in = load_inputs(cfg);
  Problem p = make_problem(cfg, in);
  auto fast = make_backend("cpu", 2), ref = make_backend("cpu", 1);
  p.regret_path = c.factorise ? RegretPath::automatic : RegretPath::generic;
  fast->setup(p);
  p.regret_path = RegretPath::reference;
  ref->setup(p);
  for (std::uint32_t step = 0; step < 4; ++step) {
    ref->set_state(fast->state());
    StepSpec spec;
    spec.step = step;
    spec.beta = 0.2;
    spec.lr = 1e-3;
    for (long b = 0; b < cfg.batch; ++b) spec.rows.push_back((b * 53 + step * 7) % in.data.fit_rows);
    StepTrace tf, tr;
    const StepStats sf = fast->step(spec, &tf);
    const StepStats sr = ref->step(spec, &tr);
    ASSERT_TRUE(sf.finite && sr.finite);
    SCOPED_TRACE("step " + std::to_string(step));
    EXPECT_EQ(tf.eps, tr.eps);
    EXPECT_ALL_CLOSE(tf.rhat, tr.rhat, 1e-6 * max_abs(tr.rhat), 1e-5);
    EXPECT_ALL_CLOSE(tf.omega, tr.omega, 1e-9, 1e-5);
    EXPECT_ALL_CLOSE(tf.advantage, tr.advantage, 1e-5 * max_abs(tr.advantage), 1e-4);
    EXPECT_ALL_CLOSE(tf.g, tr.g, 1e-5 * max_abs(tr.g), 1e-4);
    EXPECT_NEAR(sf.loss, sr.loss, 1e-6 * std::abs(sr.loss));
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, FastPaths,
    ::testing::Values(
        Case{"mixed_auto_antithetic", "dc=0.4,ev=0.4,inv=0.2", 12, 0, Estimator::automatic, true, 4},
        Case{"mixed_score_loo", "dc=0.4,ev=0.4,inv=0.2", 12, 0, Estimator::score, false, 19},
        Case{"datacenter_h1_pathwise", "dc=1", 1, 0, Estimator::pathwise, true, 1},
        Case{"datacenter_score_loo", "dc=1", 5, 0, Estimator::score, false, 0},
        Case{"ev_whole_horizon_loo", "ev=1", 12, 0, Estimator::automatic, false, 4},
        Case{"ev_windows", "ev=1", 12, 3, Estimator::automatic, true, 4},
        // Few (k, window) classes: windowed EV agents share one rank count per class.
        Case{"ev_window_classes_loo", "ev=1", 5, 3, Estimator::automatic, false, 4},
        Case{"ev_window_classes_mixed", "dc=0.3,ev=0.5,inv=0.2", 4, 2, Estimator::automatic, true, 1},
        Case{"inventory_score_q40", "inv=1", 12, 0, Estimator::score, false, 40},
        // The general sample-lane path alone, for every family (what a custom family gets).
        Case{"mixed_lanes_auto", "dc=0.4,ev=0.4,inv=0.2", 12, 0, Estimator::automatic, true, 4, false},
        Case{"mixed_lanes_score_loo", "dc=0.4,ev=0.4,inv=0.2", 12, 2, Estimator::score, false, 1, false},
        Case{"datacenter_lanes_pathwise_loo", "dc=1", 6, 0, Estimator::pathwise, false, 0, false}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

}  // namespace
}  // namespace eqpm
