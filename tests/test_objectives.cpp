// The fairness objectives of DESIGN.md 5.5 (objectives.hpp): each weight is the derivative
// of its objective (central finite differences), the limits (tilt t -> 0, cvar alpha = 1,
// power q = 0 are the mean; large t and small tau approach the largest regret), finite
// weights at extreme settings, deterministic ties, the spec grammar, and a toy objective
// that a backend trains with no change to either backend's step.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objectives.hpp"
#include "host/regret_scale.hpp"
#include "eqpm/rng.hpp"
#include "host/run.hpp"

namespace eqpm {
namespace {

struct Agents {
  std::vector<double> R, w;
  std::vector<int> group;
  int groups = 3;
  AgentSet set() const {
    AgentSet a;
    a.weight = w.data();
    a.group = group.data();
    a.n = static_cast<long>(R.size());
    a.groups = groups;
    a.total_weight = std::accumulate(w.begin(), w.end(), 0.0);
    return a;
  }
};

// Regrets log-uniform in [lo, hi], weights in [0.5, 2], three groups of unequal size.
Agents random_agents(long n, double lo, double hi, std::uint64_t seed) {
  SplitMix64 rng(seed);
  Agents a;
  for (long i = 0; i < n; ++i) {
    a.R.push_back(lo * std::pow(hi / lo, rng.uniform()));
    a.w.push_back(0.5 + 1.5 * rng.uniform());
    a.group.push_back(i % 5 == 0 ? 0 : (i % 5 < 3 ? 1 : 2));
  }
  return a;
}

double value(const Objective& f, const Agents& a, const std::vector<double>& R) {
  LocalReducer here;
  return f.evaluate(R.data(), a.set(), here, nullptr);
}

const char* const kSpecs[] = {"power:0",         "power:4",     "power:19",
                              "tilt:0.5",        "tilt:3",      "maxmin:0.2",
                              "cvar:0.3",        "cvar:1",      "group-power:0",
                              "group-power:4",   "tilt-groups:1,5"};

TEST(Objectives, WeightsAreTheDerivativesOfTheObjective) {
  const Agents a = random_agents(23, 0.2, 3.0, 7);
  for (const char* spec : kSpecs) {
    const auto f = make_objective(spec);
    std::vector<double> omega(a.R.size());
    LocalReducer here;
    const double F = f->evaluate(a.R.data(), a.set(), here, omega.data());
    EXPECT_NEAR(F, value(*f, a, a.R), 1e-15 * F) << spec;
    for (size_t n = 0; n < a.R.size(); ++n) {
      const double h = 1e-6 * a.R[n];
      std::vector<double> up = a.R, down = a.R;
      up[n] += h;
      down[n] -= h;
      const double fd = (value(*f, a, up) - value(*f, a, down)) / (2 * h);
      EXPECT_NEAR(omega[n], fd, 1e-6 * std::max(1e-3, std::fabs(fd))) << spec << " agent " << n;
    }
  }
}

TEST(Objectives, SumRulesOfTheWeights) {
  // Translation-equivariant objectives (tilts, CVaR) have weights summing to 1; the
  // homogeneous ones (power means, CVaR) have sum_n omega_n R_n = F (Euler).
  const Agents a = random_agents(101, 0.01, 10.0, 11);
  for (const char* spec : kSpecs) {
    const auto f = make_objective(spec);
    std::vector<double> omega(a.R.size());
    LocalReducer here;
    const double F = f->evaluate(a.R.data(), a.set(), here, omega.data());
    double sum = 0, euler = 0;
    for (size_t n = 0; n < omega.size(); ++n) {
      EXPECT_GE(omega[n], 0.0) << spec;
      sum += omega[n];
      euler += omega[n] * a.R[n];
    }
    const std::string s = spec;
    if (s.rfind("power", 0) == 0 || s.rfind("group-power", 0) == 0 || s.rfind("cvar", 0) == 0) {
      EXPECT_NEAR(euler, F, 1e-12 * F) << spec;
    }
    if (s.rfind("tilt", 0) == 0 || s.rfind("maxmin", 0) == 0 || s.rfind("cvar", 0) == 0) {
      EXPECT_NEAR(sum, 1.0, 1e-12) << spec;
    }
  }
}

TEST(Objectives, Limits) {
  const Agents a = random_agents(57, 0.1, 5.0, 3);
  double sw = 0, swr = 0, rmax = 0;
  for (size_t n = 0; n < a.R.size(); ++n) {
    sw += a.w[n];
    swr += a.w[n] * a.R[n];
    rmax = std::max(rmax, a.R[n]);
  }
  const double mean = swr / sw;
  EXPECT_NEAR(value(*make_objective("power:0"), a, a.R), mean, 1e-13 * mean);
  EXPECT_NEAR(value(*make_objective("cvar:1"), a, a.R), mean, 1e-13 * mean);
  EXPECT_NEAR(value(*make_objective("group-power:0"), a, a.R), mean, 1e-13 * mean);
  EXPECT_NEAR(value(*make_objective("tilt:1e-07"), a, a.R), mean, 1e-6 * mean);
  EXPECT_NEAR(value(*make_objective("tilt-groups:1e-07,1e-07"), a, a.R), mean, 1e-6 * mean);
  // Towards the worst agent: within log(W / w_max) / t of it.
  EXPECT_NEAR(value(*make_objective("tilt:10000"), a, a.R), rmax, 1e-3 * rmax);
  EXPECT_NEAR(value(*make_objective("maxmin:0.0001"), a, a.R), rmax, 1e-3 * rmax);
  // The worst alpha share: alpha W below the largest weight is the largest regret alone.
  EXPECT_DOUBLE_EQ(value(*make_objective("cvar:0.001"), a, a.R), rmax);
  // Every objective of a population whose regrets are all equal is that regret.
  const std::vector<double> equal(a.R.size(), 0.7);
  for (const char* spec : kSpecs)
    EXPECT_NEAR(value(*make_objective(spec), a, equal), 0.7, 1e-12) << spec;
}

TEST(Objectives, FiniteAtExtremeSettings) {
  // Regrets from 1e-6 to 1e3, t = 100, alpha = 0.001, q = 40, and all-zero regrets.
  const Agents a = random_agents(10000, 1e-6, 1e3, 5);
  for (const char* spec : {"tilt:100", "maxmin:0.01", "cvar:0.001", "power:40", "group-power:40",
                           "tilt-groups:100,100", "tilt:1000000"}) {
    const auto f = make_objective(spec);
    std::vector<double> omega(a.R.size());
    LocalReducer here;
    const double F = f->evaluate(a.R.data(), a.set(), here, omega.data());
    EXPECT_TRUE(std::isfinite(F) && F > 0) << spec << ": " << F;
    for (double o : omega) ASSERT_TRUE(std::isfinite(o) && o >= 0.0 && o <= 1.0 + 1e-9) << spec << ": " << o;
    const std::vector<double> zero(a.R.size(), 0.0);
    EXPECT_EQ(f->evaluate(zero.data(), a.set(), here, omega.data()), 0.0) << spec;
    for (double o : omega) ASSERT_TRUE(std::isfinite(o)) << spec;
  }
}

TEST(Objectives, CvarBreaksTiesByAgentIndex) {
  Agents a;
  a.R = {1.0, 2.0, 2.0, 2.0, 0.5};
  a.w = {1, 1, 1, 1, 1};
  a.group = {0, 0, 0, 0, 0};
  a.groups = 1;
  std::vector<double> omega(5);
  LocalReducer here;
  // alpha W = 1.5: agent 1 in full, half of agent 2, none of agent 3 (same regret).
  const double F = make_objective("cvar:0.3")->evaluate(a.R.data(), a.set(), here, omega.data());
  EXPECT_DOUBLE_EQ(F, 2.0);
  EXPECT_EQ(omega, (std::vector<double>{0.0, 1.0 / 1.5, 0.5 / 1.5, 0.0, 0.0}));
  // With population indices given, the order follows them, not the position.
  const long index[] = {4, 3, 2, 1, 0};
  AgentSet s = a.set();
  s.index = index;
  make_objective("cvar:0.3")->evaluate(a.R.data(), s, here, omega.data());
  EXPECT_EQ(omega, (std::vector<double>{0.0, 0.0, 0.5 / 1.5, 1.0 / 1.5, 0.0}));
}

TEST(Objectives, GroupObjectivesWeighGroupsNotAgents) {
  // Group 0: one agent with regret 4; group 1: nine agents with regret 1. The group power
  // mean at q = 1 sees two groups of weights 0.1 and 0.9 with means 4 and 1.
  Agents a;
  a.R = {4, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  a.w.assign(10, 1.0);
  a.group = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  a.groups = 2;
  const double expect = std::sqrt((0.1 * 16 + 0.9 * 1) / 1.0);
  EXPECT_NEAR(value(*make_objective("group-power:1"), a, a.R), expect, 1e-15);
  // An empty group (index 2 unused) changes nothing.
  a.groups = 3;
  EXPECT_NEAR(value(*make_objective("group-power:1"), a, a.R), expect, 1e-15);
}

TEST(Objectives, SpecsAndLists) {
  EXPECT_EQ(make_objective("power:4")->spec(), "power:4");
  EXPECT_EQ(make_objective("cvar:0.10")->spec(), "cvar:0.1");
  EXPECT_EQ(make_objective("tilt-groups:1,10")->spec(), "tilt-groups:1,10");
  EXPECT_EQ(power_objective(0.5)->spec(), "power:0.5");
  EXPECT_NE(make_objective("tilt:2")->flat(), nullptr);
  EXPECT_NE(make_objective("maxmin:0.5")->flat(), nullptr);
  EXPECT_EQ(make_objective("cvar:0.5")->flat(), nullptr);
  EXPECT_EQ(make_objective("group-power:2")->flat(), nullptr);
  EXPECT_EQ(split_objectives("cvar:0.5,0.2,0.05"),
            (std::vector<std::string>{"cvar:0.5", "cvar:0.2", "cvar:0.05"}));
  EXPECT_EQ(split_objectives("power:0,4,tilt-groups:1,5,2,8,cvar:0.1"),
            (std::vector<std::string>{"power:0", "power:4", "tilt-groups:1,5", "tilt-groups:2,8",
                                      "cvar:0.1"}));
  for (const char* bad : {"cvar", "cvar:", "cvar:0", "cvar:1.5", "tilt:-1", "power:x", "foo:1",
                          "tilt-groups:1", "power:1,2", "maxmin:0", "tilt:inf"}) {
    try {
      make_objective(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--objective: ", 0), 0u) << e.what();
    }
  }
  EXPECT_THROW(split_objectives("0.5,cvar:0.1"), ConfigError);
  EXPECT_THROW(split_objectives("tilt-groups:1,5,2"), ConfigError);
  // The run configuration: power:q sets q; the flag's name is in the message.
  RunConfig cfg;
  set_option(cfg, "objective", "power:7", "--objective");
  EXPECT_EQ(cfg.q, 7.0);
  EXPECT_EQ(objective_spec(cfg), "power:7");
  set_option(cfg, "objective", "cvar:0.25", "--objective");
  EXPECT_EQ(objective_spec(cfg), "cvar:0.25");
  EXPECT_THROW(set_option(cfg, "objective", "cvar:2", "--objective"), ConfigError);
}

RunInputs small_inputs(RunConfig& cfg) {
  cfg.series_hours = 24 * 40;
  cfg.lookback = 12;
  cfg.horizon = 4;
  cfg.hidden = {8};
  cfg.agents = 60;
  cfg.dc_hour = {0, 3};
  cfg.inv_hour = {0, 3};
  cfg.ev_k = {1, 3};
  cfg.batch = 8;
  cfg.samples = 6;
  cfg.rho = 0.5;
  return load_inputs(cfg);
}

// Every objective through the CPU's fast paths (lanes, structured families, the fused pass
// where it applies) gives the reference path's weights and gradients.
TEST(Objectives, FastPathsAgreeWithTheReferenceForEveryObjective) {
  for (const char* spec : kSpecs) {
    RunConfig cfg;
    RunInputs in = small_inputs(cfg);
    set_option(cfg, "objective", spec, "test");
    const Problem p = make_problem(cfg, in);
    std::vector<StepTrace> traces;
    for (RegretPath path : {RegretPath::reference, RegretPath::automatic}) {
      Problem q = p;
      q.regret_path = path;
      auto b = make_backend("cpu");
      b->setup(q);
      StepSpec st;
      st.beta = 0.2;
      StepTrace t;
      for (std::uint32_t step = 0; step < 3; ++step) {
        st.step = step;
        st.rows = {1, 4, 9, 16, 25, 36, 49, 64};
        ASSERT_TRUE(b->step(st, &t).finite) << spec;
      }
      traces.push_back(t);
    }
    for (size_t n = 0; n < traces[0].omega.size(); ++n)
      ASSERT_NEAR(traces[1].omega[n], traces[0].omega[n], 1e-4 * std::fabs(traces[0].omega[n]) + 1e-9)
          << spec << " agent " << n;
    double gmax = 0;
    for (double g : traces[0].g) gmax = std::max(gmax, std::fabs(g));
    for (size_t i = 0; i < traces[0].g.size(); ++i)
      ASSERT_NEAR(traces[1].g[i], traces[0].g[i], 1e-5 * gmax) << spec;
  }
}

// A toy objective written here, in the test: the weighted mean of squared regrets,
// F = (1/W) sum w_n R_n^2, omega_n = 2 w_n R_n / W. Neither backend knows it.
class MeanSquare final : public Objective {
 public:
  std::string spec() const override { return "mean-square"; }
  double evaluate(const double* R, const AgentSet& a, Reducer& reducer,
                  double* omega) const override {
    double s = 0;
    for (long i = 0; i < a.n; ++i) s += a.weight[i] * R[i] * R[i];
    reducer.sum(&s, 1);
    if (omega)
      for (long i = 0; i < a.n; ++i) omega[i] = 2 * a.weight[i] * R[i] / a.total_weight;
    return s / a.total_weight;
  }
};

TEST(Objectives, AToyObjectiveTrainsOnEveryBackendWithoutChangingThem) {
  RunConfig cfg;
  RunInputs in = small_inputs(cfg);
  Problem p = make_problem(cfg, in);
  p.objective = std::make_shared<MeanSquare>();
  std::vector<std::string> names = {"cpu"};
  if (cuda_device_count() > 0) names.push_back("cuda");
  std::vector<StepTrace> traces;
  for (const std::string& name : names) {
    Problem q = p;
    if (name == "cuda") q.cuda_graphs = CudaGraphs::off;
    auto b = make_backend(name);
    b->setup(q);
    StepSpec spec;
    spec.beta = 0.2;
    for (std::uint32_t step = 0; step < 3; ++step) {
      spec.step = step;
      spec.rows = {0, 5, 9, 17, 30, 31, 44, 60};
      StepTrace t;
      const StepStats st = b->step(spec, &t);
      ASSERT_TRUE(st.finite) << name;
      // The step used the toy's value and weights: F(Rbar) and 2 w R / W.
      double s = 0, W = 0;
      for (size_t n = 0; n < t.rbar.size(); ++n) {
        s += in.population.agents[n].weight * t.rbar[n] * t.rbar[n];
        W += in.population.agents[n].weight;
      }
      EXPECT_NEAR(st.smoothed_power_mean, s / W, 1e-12 * s / W) << name;
      for (size_t n = 0; n < t.rbar.size(); ++n)
        EXPECT_NEAR(t.omega[n], 2 * in.population.agents[n].weight * t.rbar[n] / W, 1e-15) << name;
      if (step == 2) traces.push_back(t);
    }
  }
  if (traces.size() == 2) {
    for (size_t n = 0; n < traces[0].omega.size(); ++n)
      EXPECT_NEAR(traces[1].omega[n], traces[0].omega[n], 1e-5 * std::fabs(traces[0].omega[n]) + 1e-12);
  }
}


// --regret-scale relative (regret_scale.hpp): the naive forecast scores exactly 1 for every
// agent, each agent's unit is its persistence regret (checked by hand for the newsvendor),
// and any model's relative regret is its absolute regret over the unit, on every family.
TEST(RelativeRegret, NaiveForecastScoresOneAndModelsScoreTheirRatio) {
  RunConfig cfg;
  cfg.regret_scale = RegretScale::relative;
  const RunInputs in = small_inputs(cfg);
  const Dataset& d = in.data;
  ASSERT_EQ(in.regret_unit.size(), static_cast<size_t>(in.population.size()));
  for (Family f : {Family::datacenter, Family::ev_charging, Family::inventory})
    ASSERT_GT(in.population.count(f), 0);

  // By hand: an inventory agent's mean newsvendor regret of y_{t+h-24} on the training rows.
  const auto inv = std::find_if(in.population.agents.begin(), in.population.agents.end(),
                                [](const Agent& a) { return a.family == Family::inventory; });
  double sum = 0.0;
  long count = 0;
  for (long r = d.train_begin; r < d.train_end(); ++r) {
    const long before = r - 24;  // rows are hourly and gap-free on the synthetic series
    if (before < 0) continue;
    ASSERT_EQ(d.t[static_cast<size_t>(before)], d.t[static_cast<size_t>(r)] - 24);
    const double a = std::max<double>(d.y_row(before)[inv->hour], cfg.floor);
    const double y = d.y_row(r)[inv->hour];
    sum += a < y ? float(inv->cu) * (y - a) : float(inv->co) * (a - y);
    ++count;
  }
  const size_t n_inv = static_cast<size_t>(inv - in.population.agents.begin());
  EXPECT_NEAR(in.regret_unit[n_inv], sum / static_cast<double>(count), 1e-9 * sum / count);

  const std::vector<double> naive = persistence_regrets(
      in.relative_population, in.demand, static_cast<float>(cfg.floor), d, "test");
  const double largest = *std::max_element(in.regret_unit.begin(), in.regret_unit.end());
  for (size_t n = 0; n < naive.size(); ++n)
    if (in.regret_unit[n] > 1e-3 * largest) {
      EXPECT_NEAR(naive[n], 1.0, 1e-5) << "agent " << n;
    }

  // A model's regrets: relative times the unit is absolute, agent by agent.
  RunConfig abs_cfg = cfg;
  abs_cfg.regret_scale = RegretScale::absolute;
  RunInputs abs_in = in;
  apply_regret_scale(abs_cfg, abs_in);
  ASSERT_TRUE(abs_in.regret_unit.empty());
  std::vector<long> rows;
  for (long r = d.test_begin; r < d.test_end; ++r) rows.push_back(r);
  auto regrets = [&](const RunConfig& c, const RunInputs& i) {
    auto backend = make_backend("cpu", 1);
    backend->setup(make_problem(c, i));
    return backend->evaluate(rows).regret;
  };
  const std::vector<double> rel = regrets(cfg, in), abs = regrets(abs_cfg, abs_in);
  for (size_t n = 0; n < rel.size(); ++n)
    EXPECT_NEAR(rel[n] * in.regret_unit[n], abs[n], 1e-5 * abs[n] + 1e-12) << "agent " << n;
}

TEST(RelativeRegret, NeedsADayOfTrainingRows) {
  RunConfig cfg;
  cfg.regret_scale = RegretScale::relative;
  cfg.series_hours = 40;
  cfg.lookback = 12;
  cfg.horizon = 4;
  cfg.agents = 10;
  cfg.dc_hour = {0, 3};
  cfg.inv_hour = {0, 3};
  cfg.ev_k = {1, 3};
  try {
    load_inputs(cfg);
    ADD_FAILURE() << "a training split shorter than a day was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("24 hours earlier"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace eqpm
