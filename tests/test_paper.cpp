// The paper's setups (issue 5): the datacenter constructions of DESIGN.md 4.4
// (dc_lambda_rule, dc_phase_rule, dc_scale_rule), the ready configs under configs/, and one
// short paper-setup sweep on the real data checking that the optimiser does its job
// (DESIGN.md 6: the model trained at q has the lowest training-split M_q of the sweep).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "host/config.hpp"
#include "host/config_toml.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/population.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

#ifndef EQPM_SOURCE_DIR
#error "EQPM_SOURCE_DIR (the repository root, as a string) must be defined"
#endif

namespace eqpm {
namespace {

// FNV-1a over every parameter of every agent, bit for bit (not through any text format).
std::uint64_t population_checksum(const Population& p) {
  std::uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* data, size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= b[i];
      h *= 1099511628211ULL;
    }
  };
  for (const Agent& a : p.agents) {
    const int family = static_cast<int>(a.family);
    mix(&family, 4);
    mix(&a.weight, 8);
    mix(&a.lambda, 8);
    mix(&a.scale, 8);
    mix(&a.phase, 4);
    mix(&a.hour, 4);
    mix(&a.k, 4);
    mix(&a.window_start, 4);
    mix(&a.window_end, 4);
    mix(&a.energy, 8);
    mix(&a.cu, 8);
    mix(&a.co, 8);
  }
  return h;
}

RunConfig datacenter_only(long agents) {
  RunConfig cfg;
  cfg.agents = agents;
  cfg.mix = "dc=1";
  return cfg;
}

// ================================================================ generator rules

// The checksums were computed with the generator as it was BEFORE the datacenter rules
// were added (commit 1573d94): the default rules must reproduce it bit for bit.
TEST(PopulationRules, DefaultGeneratorUnchanged) {
  const RunConfig def;
  const Population p = generate_population(def);
  ASSERT_EQ(p.size(), 1000);
  EXPECT_EQ(population_checksum(p), 0x294a9d5e87a979e1ULL);
  // The demand length does not matter to the random rules.
  EXPECT_EQ(population_checksum(generate_population(def, 8640)), 0x294a9d5e87a979e1ULL);

  RunConfig other;
  other.agents = 777;
  other.pop_seed = 5;
  other.ev_window_min = 3;
  other.mix = "dc=0.3,ev=0.3,inv=0.4";
  other.dc_phase = {-5, 40};
  other.dc_hour = {0, 3};
  EXPECT_EQ(population_checksum(generate_population(other, 24)), 0x664332942034cfc4ULL);

  EXPECT_EQ(population_checksum(generate_population(datacenter_only(50), 24)),
            0x7baaa49b15efe56bULL);
}

TEST(PopulationRules, LinearLambdaIsTwiceNPlusOne) {
  RunConfig cfg = datacenter_only(50);
  cfg.dc_lambda_rule = DcLambdaRule::linear;
  const Population p = generate_population(cfg, 24);
  ASSERT_EQ(p.size(), 50);
  for (long n = 0; n < p.size(); ++n)
    EXPECT_EQ(p.agents[size_t(n)].lambda, 2.0 * double(n + 1)) << "agent " << n;
}

TEST(PopulationRules, ConstantLambdaIsRangeLow) {
  RunConfig cfg = datacenter_only(20);
  cfg.dc_lambda_rule = DcLambdaRule::constant;
  cfg.dc_lambda = {2.0, 7.0};
  for (const Agent& a : generate_population(cfg, 24).agents) EXPECT_EQ(a.lambda, 2.0);
}

TEST(PopulationRules, SpreadPhasesCoverTheDemandProfile) {
  RunConfig cfg = datacenter_only(50);
  cfg.dc_phase_rule = DcSpreadRule::spread;
  const long TD = 8640;  // the Azure trace, hourly
  const Population p = generate_population(cfg, TD);
  for (long n = 0; n < p.size(); ++n) {
    const long expected = static_cast<long>(std::floor(double(n) * double(TD) / 50.0));
    EXPECT_EQ(p.agents[size_t(n)].phase, expected) << "agent " << n;
  }
  EXPECT_EQ(p.agents[0].phase, 0);
  EXPECT_EQ(p.agents[1].phase, 172);   // floor(8640 / 50) = floor(172.8)
  EXPECT_EQ(p.agents[49].phase, 8467);  // floor(49 * 172.8) = floor(8467.2)
  // More agents than hours: floor(n T_D / N) is still non-decreasing and below T_D.
  cfg.agents = 100;
  const Population q = generate_population(cfg, 24);
  for (long n = 1; n < q.size(); ++n) {
    EXPECT_LE(q.agents[size_t(n - 1)].phase, q.agents[size_t(n)].phase);
    EXPECT_EQ(q.agents[size_t(n)].phase, n * 24 / 100);
  }
  EXPECT_LT(q.agents.back().phase, 24);
}

TEST(PopulationRules, SpreadPhasesNeedTheDemandLength) {
  RunConfig cfg = datacenter_only(5);
  cfg.dc_phase_rule = DcSpreadRule::spread;
  EXPECT_THROW(generate_population(cfg), ConfigError);
  EXPECT_THROW(generate_population(cfg, 0), ConfigError);
  // Without datacenter agents the demand length is not needed.
  cfg.mix = "inv=1";
  EXPECT_EQ(generate_population(cfg).size(), 5);
}

TEST(PopulationRules, SpreadScalesAreLogSpaced) {
  RunConfig cfg = datacenter_only(50);
  cfg.dc_scale_rule = DcSpreadRule::spread;
  cfg.dc_scale = {0.2, 5.0};
  const Population p = generate_population(cfg, 24);
  EXPECT_EQ(p.agents.front().scale, 0.2);
  EXPECT_EQ(p.agents.back().scale, 5.0);
  for (long n = 0; n < p.size(); ++n) {
    const double expected = 0.2 * std::pow(25.0, double(n) / 49.0);
    EXPECT_NEAR(p.agents[size_t(n)].scale, expected, 1e-12 * expected) << "agent " << n;
  }
  // Log-spaced: a constant ratio between neighbours.
  const double ratio = std::pow(25.0, 1.0 / 49.0);
  for (long n = 1; n < p.size(); ++n)
    EXPECT_NEAR(p.agents[size_t(n)].scale / p.agents[size_t(n - 1)].scale, ratio, 1e-12);
  // One agent: the low end; a degenerate range: every scale exactly that value.
  cfg.agents = 1;
  EXPECT_EQ(generate_population(cfg, 24).agents[0].scale, 0.2);
  cfg.agents = 50;
  cfg.dc_scale = {1.0, 1.0};
  for (const Agent& a : generate_population(cfg, 24).agents) EXPECT_EQ(a.scale, 1.0);
}

// In a mixed population the rules index the datacenter agents only, and every other
// parameter (of every family) is what the random rules give.
TEST(PopulationRules, RulesChangeOnlyTheirParameter) {
  RunConfig base;
  base.agents = 300;
  base.mix = "ev=0.3,dc=0.4,inv=0.3";
  base.dc_hour = {0, 11};
  const Population random = generate_population(base, 100);
  RunConfig ruled = base;
  ruled.dc_lambda_rule = DcLambdaRule::linear;
  ruled.dc_phase_rule = DcSpreadRule::spread;
  ruled.dc_scale_rule = DcSpreadRule::spread;
  const Population p = generate_population(ruled, 100);
  ASSERT_EQ(p.size(), random.size());
  const long n_dc = p.count(Family::datacenter);
  ASSERT_EQ(n_dc, 120);
  long n = 0;
  for (size_t i = 0; i < p.agents.size(); ++i) {
    Agent a = p.agents[i];
    const Agent& r = random.agents[i];
    ASSERT_EQ(a.family, r.family);
    if (a.family == Family::datacenter) {
      EXPECT_EQ(a.lambda, 2.0 * double(n + 1));
      EXPECT_EQ(a.phase, int(n * 100 / n_dc));
      ++n;
      a.lambda = r.lambda;
      a.phase = r.phase;
      a.scale = r.scale;
    }
    EXPECT_TRUE(a.weight == r.weight && a.lambda == r.lambda && a.scale == r.scale &&
                a.phase == r.phase && a.hour == r.hour && a.k == r.k &&
                a.window_start == r.window_start && a.window_end == r.window_end &&
                a.energy == r.energy && a.cu == r.cu && a.co == r.co)
        << "agent " << i;
  }
  EXPECT_EQ(n, n_dc);
}

TEST(PopulationRules, ConfigKeys) {
  RunConfig cfg;
  set_option(cfg, "dc-lambda-rule", "linear", "--dc-lambda-rule");
  set_option(cfg, "dc_phase_rule", "spread", "test");
  set_option(cfg, "dc_scale_rule", "spread", "test");
  EXPECT_EQ(cfg.dc_lambda_rule, DcLambdaRule::linear);
  EXPECT_EQ(cfg.dc_phase_rule, DcSpreadRule::spread);
  EXPECT_EQ(cfg.dc_scale_rule, DcSpreadRule::spread);
  set_option(cfg, "dc_lambda_rule", "constant", "test");
  EXPECT_EQ(cfg.dc_lambda_rule, DcLambdaRule::constant);
  for (const char* key : {"dc_lambda_rule", "dc_phase_rule", "dc_scale_rule"}) {
    try {
      set_option(cfg, key, "uniform", "--x");
      ADD_FAILURE() << key << " accepted 'uniform'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("expected one of"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("random"), std::string::npos) << e.what();
    }
  }
  // The keys travel through the model's JSON configuration.
  const RunConfig back = config_from_json(config_to_json(cfg), "test");
  EXPECT_EQ(config_to_json(back), config_to_json(cfg));
  EXPECT_EQ(back.dc_lambda_rule, DcLambdaRule::constant);
  EXPECT_EQ(back.dc_phase_rule, DcSpreadRule::spread);
}

// ================================================================ the configs

std::string config_path(const std::string& name) {
  return std::string(EQPM_SOURCE_DIR) + "/configs/" + name;
}

// A config of configs/, with its ../../shared/data paths (relative to configs/, so the
// data folder beside the checkout) pointed at the data folder found by the tests.
RunConfig load_repo_config(const std::string& name, const std::string& data_dir) {
  RunConfig cfg;
  load_config_toml(config_path(name), cfg);
  const std::string prefix =
      (std::filesystem::path(EQPM_SOURCE_DIR) / "configs" / "../../shared/data")
          .lexically_normal()
          .string();
  for (std::string* path : {&cfg.series, &cfg.demand_profile, &cfg.ev_sessions}) {
    EXPECT_TRUE(path->empty() || path->rfind(prefix, 0) == 0) << *path;
    if (path->rfind(prefix, 0) == 0) *path = data_dir + path->substr(prefix.size());
  }
  return cfg;
}

TEST(PaperConfigs, DefaultTomlIsTheEmbeddedDefault) {
  RunConfig cfg;
  load_config_toml(config_path("default.toml"), cfg);
  EXPECT_EQ(config_to_json(cfg), config_to_json(RunConfig{}));
}

TEST(PaperConfigs, EveryConfigLoadsAndValidates) {
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(EQPM_SOURCE_DIR) + "/configs")) {
    if (entry.path().extension() != ".toml") continue;
    ++seen;
    RunConfig cfg;
    EXPECT_NO_THROW({
      load_config_toml(entry.path().string(), cfg);
      validate(cfg);
    }) << entry.path();
  }
  EXPECT_GE(seen, 7);
  RunConfig gpu;
  load_config_toml(config_path("gpu-100k.toml"), gpu);
  EXPECT_EQ(gpu.agents, 100000);
  EXPECT_EQ(gpu.backend, "cuda");
  EXPECT_EQ(gpu.batch, 256);
  EXPECT_EQ(gpu.samples, 32);
}

// The datacenter configs build exactly the paper's populations from the real Azure trace.
TEST(PaperConfigs, DatacenterPopulations) {
  EQPM_REQUIRE_SHARED_DATA(data);
  struct Expect {
    const char* config;
    bool linear_lambda;
    double scale_lo, scale_hi;
  };
  for (const Expect& e : {Expect{"paper-dc-lambda.toml", true, 1.0, 1.0},
                          Expect{"paper-dc-groups.toml", false, 0.2, 5.0},
                          Expect{"paper-dc-both.toml", true, 0.2, 5.0}}) {
    SCOPED_TRACE(e.config);
    const RunConfig cfg = load_repo_config(e.config, data);
    EXPECT_EQ(cfg.horizon, 1);
    EXPECT_EQ(cfg.lookback, 12);
    const RunInputs in = load_inputs(cfg);
    ASSERT_EQ(in.demand.size(), 8640u);
    ASSERT_EQ(in.population.size(), 50);
    for (long n = 0; n < 50; ++n) {
      const Agent& a = in.population.agents[size_t(n)];
      ASSERT_EQ(a.family, Family::datacenter);
      EXPECT_EQ(a.lambda, e.linear_lambda ? 2.0 * double(n + 1) : 2.0);
      EXPECT_EQ(a.phase, n * 8640 / 50);
      EXPECT_NEAR(a.scale, e.scale_lo * std::pow(e.scale_hi / e.scale_lo, double(n) / 49.0),
                  1e-12);
    }
  }
}

// ================================================================ a paper-setup sweep

// The paper's datacenter experiment (a) on the real data (CISO 2022, Azure demand),
// shortened for CI: the plain baseline and q = 0, 4, 19, a few epochs each. The model
// trained at the largest q must have the lowest training-split M_q of the sweep's models.
// Tolerance 1%, as in SweepSlow (on this population every agent wants the same forecast,
// so the models differ by little more than optimisation noise: DESIGN.md 6).
TEST(PaperSlow, DatacenterLambdaSweepLargestQIsMqOptimal) {
  EQPM_REQUIRE_SHARED_DATA(data);
  RunConfig base = load_repo_config("paper-dc-lambda.toml", data);
  base.beta_auto = false;  // train_run trains one beta
  base.epochs = 4;
  base.warm_start_epochs = 1;
  base.lr_decay_epochs = 1;
  base.threads = 1;
  base.quiet = true;
  base.out.clear();
  const RunInputs in = load_inputs(base);
  ASSERT_EQ(in.population.size(), 50);

  const std::vector<double> qs = {0.0, 4.0, 19.0};
  std::map<std::string, RunOutcome> runs;
  {
    RunConfig plain = base;
    plain.beta = 1.0;
    plain.q = 0.0;
    runs["plain"] = train_run(plain, in);
  }
  for (double q : qs) {
    RunConfig cfg = base;
    cfg.q = q;
    runs["q=" + format_double(q)] = train_run(cfg, in);
  }
  std::vector<double> w;
  for (const Agent& a : in.population.agents) w.push_back(a.weight);
  auto train_mq = [&](const std::string& run, double q) {
    const auto& R = runs.at(run).train_split.regret;
    EXPECT_EQ(R.size(), w.size());
    return power_mean(R.data(), w.data(), static_cast<long>(R.size()), q);
  };
  const double q_max = qs.back();
  const std::string own = "q=" + format_double(q_max);
  const double own_mq = train_mq(own, q_max);
  EXPECT_TRUE(std::isfinite(own_mq) && own_mq > 0);
  for (const auto& [name, outcome] : runs) {
    if (name == own) continue;
    EXPECT_LE(own_mq, train_mq(name, q_max) * 1.01)
        << "training-split M_" << q_max << " of " << own << " (" << own_mq << ") vs " << name;
  }
}

}  // namespace
}  // namespace eqpm
