// End-to-end properties of training (issue: the equitable trainer on the CPU): the
// optimiser minimises what it claims (M_q optimality across a sweep), the equitable
// models beat the plain model on a population whose agents conflict, and the output
// folder has exactly the layout of DESIGN.md 8.1.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "host/io/checkpoint.hpp"
#include "eqpm/objective.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

// The default (conflicting) population, scaled down so a sweep takes seconds.
RunConfig small_sweep_config() {
  RunConfig cfg;
  cfg.beta_auto = false;  // train_run trains one beta
  cfg.agents = 300;
  cfg.series_hours = 24 * 200;
  cfg.epochs = 16;
  cfg.warm_start_epochs = 4;
  cfg.threads = 2;
  cfg.quiet = true;
  return cfg;
}

struct SmallSweep {
  RunInputs in;
  std::map<std::string, RunOutcome> runs;  // "plain", "q=0", "q=19"
  std::vector<double> w;
};

const SmallSweep& small_sweep() {
  static const std::unique_ptr<SmallSweep> sweep = [] {
    auto s = std::make_unique<SmallSweep>();
    const RunConfig base = small_sweep_config();
    s->in = load_inputs(base);
    RunConfig plain = base;
    plain.beta = 1.0;
    s->runs["plain"] = train_run(plain, s->in);
    for (double q : {0.0, 19.0}) {
      RunConfig cfg = base;
      cfg.q = q;
      s->runs["q=" + format_double(q)] = train_run(cfg, s->in);
    }
    for (const auto& a : s->in.population.agents) s->w.push_back(a.weight);
    return s;
  }();
  return *sweep;
}

double train_mq(const SmallSweep& s, const std::string& run, double q) {
  const auto& R = s.runs.at(run).train_split.regret;
  return power_mean(R.data(), s.w.data(), static_cast<long>(R.size()), q);
}

// One test (one process under ctest) so the sweep is trained once.
TEST(SweepSlow, OptimiserAndEquity) {
  const SmallSweep& s = small_sweep();
  // Per-epoch validation power mean falls from the first to the last epoch.
  for (const char* run : {"q=0", "q=19"}) {
    const auto& epochs = s.runs.at(run).train.epochs;
    ASSERT_GE(epochs.size(), 2u);
    EXPECT_LT(epochs.back().power_mean, epochs.front().power_mean) << run;
  }

  // The optimiser does its job: the model trained at q has the lowest training-split M_q
  // of the sweep's models. Tolerance: 1% (seed-to-seed noise of M_q on this problem is a
  // few tenths of a percent).
  for (double q : {0.0, 19.0}) {
    const std::string own = "q=" + format_double(q);
    const double own_mq = train_mq(s, own, q);
    for (const auto& [name, outcome] : s.runs) {
      if (name == own) continue;
      EXPECT_LE(own_mq, train_mq(s, name, q) * 1.01)
          << "M_" << q << " of " << own << " vs " << name;
    }
  }

  // On the default population (inventory agents that fear shortage by different amounts,
  // datacenter agents whose regret explodes under low forecasts), equitable training
  // beats plain MSE on both the mean and the worst agent of the test split, and the
  // worst training-split agent improves from q = 0 to q = 19.
  const RegretStats& plain = s.runs.at("plain").test_stats;
  for (const char* run : {"q=0", "q=19"}) {
    const RegretStats& eq = s.runs.at(run).test_stats;
    EXPECT_LT(eq.mean, plain.mean) << run;
    EXPECT_LT(eq.max, plain.max) << run;
  }
  // On the training split (what the optimiser sees) the worst agent improves with q.
  EXPECT_LT(s.runs.at("q=19").train_stats.max, s.runs.at("q=0").train_stats.max);
  // ... and spreads regret more evenly.
  EXPECT_GT(s.runs.at("q=19").test_stats.jain, plain.jain);
}

std::string first_line(const std::string& path) {
  std::istringstream ss(test::read_file(path));
  std::string line;
  std::getline(ss, line);
  return line;
}

// `eqpm train` writes exactly the folder of DESIGN.md 8.1.
TEST(OutputFolder, MatchesDesignLayout) {
  test::TempDir tmp;
  const std::string out = tmp.file("run");
  const std::string cmd = std::string(EQPM_BINARY) +
                          " train --agents 60 --series-hours 2000 --epochs 2 --warm-start-epochs 1"
                          " --hidden 16,8 --quiet --threads 1 --out " + out + " > " +
                          tmp.file("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(tmp.file("log"));
  for (const char* f : {"model.safetensors", "population.csv", "demand_profile.csv", "agents.csv",
                        "summary.json", "metrics.csv", "beta_auto.csv"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  // --beta auto (the default): one whole run folder per candidate, each with its checkpoint.
  EXPECT_EQ(first_line(out + "/beta_auto.csv"), "beta,val_power_mean,val_se,test_power_mean,chosen");
  for (const char* b : {"beta=0.1", "beta=0.5", "beta=1"})
    for (const char* f : {"model.safetensors", "agents.csv", "summary.json", "metrics.csv",
                          "checkpoint.safetensors"})
      EXPECT_TRUE(std::filesystem::exists(out + "/" + b + "/" + f)) << b << "/" << f;
  // A fixed beta: one run, its checkpoint at the top.
  const std::string fixed = tmp.file("fixed");
  ASSERT_EQ(std::system((std::string(EQPM_BINARY) +
                         " train --agents 60 --series-hours 2000 --epochs 2 --warm-start-epochs 1"
                         " --beta 0.1 --quiet --threads 1 --out " + fixed + " > " +
                         tmp.file("log2") + " 2>&1").c_str()),
            0)
      << test::read_file(tmp.file("log2"));
  for (const char* f : {"model.safetensors", "population.csv", "demand_profile.csv", "agents.csv",
                        "summary.json", "metrics.csv", "checkpoint.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(fixed + "/" + f)) << f;
  EXPECT_FALSE(std::filesystem::exists(fixed + "/beta_auto.csv"));
  EXPECT_EQ(first_line(out + "/population.csv"),
            "agent,family,weight,lambda,scale,phase,hour,k,window_start,window_end,energy,cu,co");
  EXPECT_EQ(first_line(out + "/demand_profile.csv"), "demand");
  EXPECT_EQ(first_line(out + "/agents.csv"), "agent,family,regret,train_regret,val_regret");
  EXPECT_EQ(first_line(out + "/metrics.csv"),
            "epoch,step,loss,power_mean,mean,var,max,mse,seconds,objective");
  const std::string summary = test::read_file(out + "/summary.json");
  for (const char* key : {"\"config\"", "\"train\"", "\"steps\"", "\"seconds\"", "\"test\"",
                          "\"train_split\"", "\"agents\"", "\"mean\"", "\"var\"", "\"std\"",
                          "\"min\"", "\"p5\"", "\"p50\"", "\"p95\"", "\"max\"", "\"jain\"",
                          "\"gini\"", "\"cv\"", "\"entropy\"", "\"mse\"", "\"mae\"",
                          "\"weighted_mean\"", "\"power_mean\""})
    EXPECT_NE(summary.find(key), std::string::npos) << key;
  // 61 lines in agents.csv: header + one per agent.
  std::istringstream agents(test::read_file(out + "/agents.csv"));
  std::string line;
  int lines = 0;
  while (std::getline(agents, line)) ++lines;
  EXPECT_EQ(lines, 61);

  const SafetensorsFile st = read_safetensors(out + "/model.safetensors");
  const std::vector<std::vector<long long>> shapes = {{16, 26}, {16}, {8, 16}, {8}, {12, 8}, {12}};
  for (int i = 0; i < 3; ++i) {
    const Tensor* w = st.find("net." + std::to_string(i) + ".weight");
    const Tensor* b = st.find("net." + std::to_string(i) + ".bias");
    ASSERT_TRUE(w && b) << "layer " << i;
    EXPECT_EQ(w->dtype, "F32");
    EXPECT_EQ(w->shape, shapes[static_cast<size_t>(2 * i)]);
    EXPECT_EQ(b->shape, shapes[static_cast<size_t>(2 * i + 1)]);
  }
  EXPECT_EQ(st.tensors.size(), 6u);
  for (const char* key : {"eqpm.version", "eqpm.lookback", "eqpm.horizon", "eqpm.activation",
                          "eqpm.scaling", "eqpm.offset", "eqpm.scale", "eqpm.config"})
    EXPECT_TRUE(st.metadata.count(key)) << key;
  EXPECT_EQ(st.metadata.at("eqpm.lookback"), "24");
  EXPECT_EQ(st.metadata.at("eqpm.horizon"), "12");
  EXPECT_EQ(st.metadata.at("eqpm.activation"), "relu");
  EXPECT_EQ(st.metadata.at("eqpm.scaling"), "mean");
}

// A sweep folder has q=<v>/, plain/ and sweep.csv with the 8.1 header and one row per run.
TEST(OutputFolder, SweepWritesOneFolderPerRun) {
  test::TempDir tmp;
  const std::string out = tmp.file("sweep");
  const std::string cmd = std::string(EQPM_BINARY) +
                          " sweep --q 0,4 --agents 40 --series-hours 1500 --epochs 2"
                          " --warm-start-epochs 1 --hidden 8 --quiet --threads 1 --out " + out +
                          " > " + tmp.file("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(tmp.file("log"));
  for (const char* d : {"plain", "q=0", "q=4"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + d + "/summary.json")) << d;
  const std::string csv = test::read_file(out + "/sweep.csv");
  // DESIGN.md 8.1's columns, then the objective check's margin and the models beating it.
  EXPECT_EQ(csv.rfind("run,q,beta,mean,var,p95_p5,max,jain,mse,mq_margin,mq_beaten_by,objective\n", 0), 0u);
  const std::string check = test::read_file(out + "/mq_check.csv");
  EXPECT_EQ(check.rfind("measure_q,plain,q=0,q=4,lowest,own_excess,beaten_by,pass\n", 0), 0u) << check;
  EXPECT_NE(csv.find("\nplain,"), std::string::npos);
  EXPECT_NE(csv.find("\nq=0,0,"), std::string::npos);
  EXPECT_NE(csv.find("\nq=4,4,"), std::string::npos);
  EXPECT_NE(csv.find(",power:4\n"), std::string::npos) << csv;
}

// A sweep over objectives of several kinds (DESIGN.md 5.5): one folder per objective, its
// spec in sweep.csv and summary.json, and the check measures each model by its own objective.
TEST(OutputFolder, SweepOverObjectives) {
  test::TempDir tmp;
  const std::string out = tmp.file("sweep");
  const std::string cmd = std::string(EQPM_BINARY) +
                          " sweep --objective cvar:0.2,tilt:2,group-power:2 --beta 0.3"
                          " --agents 40 --series-hours 1500 --epochs 2 --warm-start-epochs 1"
                          " --hidden 8 --quiet --threads 1 --out " + out + " > " + tmp.file("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(tmp.file("log"));
  for (const char* d : {"plain", "cvar=0.2", "tilt=2", "group-power=2"})
    EXPECT_TRUE(std::filesystem::exists(out + "/" + d + "/summary.json")) << d;
  EXPECT_NE(test::read_file(out + "/cvar=0.2/summary.json").find("\"objective\": \"cvar:0.2\""),
            std::string::npos);
  const std::string csv = test::read_file(out + "/sweep.csv");
  EXPECT_NE(csv.find("\ncvar=0.2,,0.3,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",group-power:2\n"), std::string::npos) << csv;
  const std::string check = test::read_file(out + "/mq_check.csv");
  EXPECT_EQ(check.rfind("measure,plain,cvar=0.2,tilt=2,group-power=2,lowest,", 0), 0u) << check;
  EXPECT_NE(check.find("\ncvar:0.2,"), std::string::npos) << check;
  EXPECT_NE(check.find("\ngroup-power:2,"), std::string::npos) << check;
  // --q and --objective together are ambiguous.
  const std::string both = std::string(EQPM_BINARY) + " sweep --q 0 --objective cvar:0.1 --out " +
                           tmp.file("x") + " > " + tmp.file("log2") + " 2>&1";
  EXPECT_NE(std::system(both.c_str()), 0);
  EXPECT_NE(test::read_file(tmp.file("log2")).find("--objective"), std::string::npos);
}

// An existing output folder is never overwritten without --overwrite.
TEST(OutputFolder, RefusesToOverwriteResults) {
  test::TempDir tmp;
  const std::string out = tmp.file("run");
  std::filesystem::create_directories(out);
  tmp.write("run/summary.json", "{\"precious\": true}");
  const std::string cmd = std::string(EQPM_BINARY) + " train --agents 10 --epochs 1 --warm-start-epochs 0 --quiet --out " +
                          out + " > " + tmp.file("log") + " 2>&1";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_EQ(test::read_file(out + "/summary.json"), "{\"precious\": true}");
  EXPECT_NE(test::read_file(tmp.file("log")).find("--overwrite"), std::string::npos);
}

// metrics.csv's objective column is the un-normalised objective on the validation slice,
// (1 - beta) M_q + beta MSE (the MSE alone in warm-start epochs), and summary.json's
// weighted_mean and power_mean use the agents' weights.
TEST(OutputFolder, ObjectiveColumnAndWeightedStatistics) {
  test::TempDir tmp;
  const std::string pop = tmp.write("pop.csv",
                                    "agent,family,weight,cu,co,hour\n"
                                    "a,inventory,1,1,1,0\n"
                                    "b,inventory,3,2,0.5,5\n"
                                    "c,inventory,0.5,0.5,2,11\n");
  const std::string out = tmp.file("run");
  const std::string cmd = std::string(EQPM_BINARY) +
                          " train --population " + pop +
                          " --series-hours 1500 --epochs 3 --warm-start-epochs 1 --beta 0.3 --q 2"
                          " --hidden 8 --quiet --threads 1 --out " + out + " > " +
                          tmp.file("log") + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << test::read_file(tmp.file("log"));
  auto cells = [](const std::string& line) {
    std::vector<std::string> c;
    std::stringstream ss(line);
    std::string x;
    while (std::getline(ss, x, ',')) c.push_back(x);
    return c;
  };
  std::istringstream metrics(test::read_file(out + "/metrics.csv"));
  std::string line;
  std::getline(metrics, line);
  const auto head = cells(line);
  ASSERT_EQ(head.size(), 10u);
  ASSERT_EQ(head[9], "objective");
  int rows = 0;
  while (std::getline(metrics, line)) {
    const auto c = cells(line);
    ASSERT_EQ(c.size(), 10u) << line;
    const int epoch = std::stoi(c[0]);
    const double pm = std::stod(c[3]), mse = std::stod(c[7]), objective = std::stod(c[9]);
    if (epoch < 1)
      EXPECT_EQ(objective, mse) << line;
    else
      EXPECT_NEAR(objective, 0.7 * pm + 0.3 * mse, 1e-12 * (pm + mse)) << line;
    EXPECT_GT(objective, 0.0);
    ++rows;
  }
  EXPECT_EQ(rows, 3);

  std::istringstream agents(test::read_file(out + "/agents.csv"));
  std::getline(agents, line);
  const std::vector<double> w = {1, 3, 0.5};
  std::vector<double> r;
  while (std::getline(agents, line)) r.push_back(std::stod(cells(line)[2]));
  ASSERT_EQ(r.size(), 3u);
  double sw = 0, swr = 0, swr3 = 0;
  for (size_t n = 0; n < 3; ++n) {
    sw += w[n];
    swr += w[n] * r[n];
    swr3 += w[n] * r[n] * r[n] * r[n];
  }
  const std::string summary = test::read_file(out + "/summary.json");
  const size_t test_at = summary.find("\"test\": {");
  ASSERT_NE(test_at, std::string::npos);
  const std::string test_obj = summary.substr(test_at, summary.find('}', test_at) - test_at);
  auto value = [&](const std::string& key) {
    const size_t at = test_obj.find("\"" + key + "\": ");
    EXPECT_NE(at, std::string::npos) << key << " in " << test_obj;
    return at == std::string::npos ? NAN : std::stod(test_obj.substr(at + key.size() + 4));
  };
  EXPECT_NEAR(value("weighted_mean"), swr / sw, 1e-12 * swr / sw);
  EXPECT_NEAR(value("power_mean"), std::cbrt(swr3 / sw), 1e-9 * std::cbrt(swr3 / sw));
  EXPECT_NEAR(value("mean"), (r[0] + r[1] + r[2]) / 3, 1e-12);
}

}  // namespace
}  // namespace eqpm
