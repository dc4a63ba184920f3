// Model selection on validation (DESIGN.md 6): the validation window in days, --beta auto
// (its configuration, the choice, the shipped run folder) and the backtest that chooses a
// beta per fold. The choice must be the candidate with the lowest validation M_q, and
// what ships must be that candidate's model, evaluated under the run's own q.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "host/backtest.hpp"
#include "host/beta_select.hpp"
#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "host/config_toml.hpp"
#include "eqpm/data.hpp"
#include "eqpm/error.hpp"
#include "host/interrupt.hpp"
#include "host/io/io.hpp"
#include "eqpm/objective.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

std::int64_t at(const std::string& text) {
  std::int64_t utc = 0;
  std::string why;
  EXPECT_TRUE(parse_date(text, &utc, nullptr, &why)) << text << ": " << why;
  return utc;
}

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) cells.push_back(cell);
    rows.push_back(cells);
  }
  return rows;
}

// ------------------------------------------------------------------ validation window
TEST(ValDays, HoldsOutTheRowsOfTheLastDaysOfTheTrainingSplit) {
  const Series s = synthetic_series(24 * 60, 7);  // 2022-01-01 .. 2022-03-01
  SplitSpec sp;
  sp.has_train_until = true;
  sp.train_until = at("2022-02-15");
  sp.val_days = 5;
  sp.val_fraction = 0.5;  // the cap is not reached
  const int L = 24, H = 12;
  const Dataset d = build_dataset(s, L, H, sp, Scaling::mean);
  // Hourly rows: the last 5 * 24 training forecast starts validate.
  EXPECT_EQ(d.train_rows - d.fit_rows, 5 * 24);
  const std::int64_t last_train = series_time(s, d.t[size_t(d.train_end() - 1)]);
  const std::int64_t first_val = series_time(s, d.t[size_t(d.fit_end())]);
  const std::int64_t last_fit = series_time(s, d.t[size_t(d.fit_end() - 1)]);
  EXPECT_EQ(last_train - first_val, 5 * 86400 - 3600);
  EXPECT_EQ(first_val - last_fit, 3600);
  // The days win while they are fewer rows than the fraction; without days, the fraction.
  sp.val_fraction = 0.3;
  EXPECT_EQ(build_dataset(s, L, H, sp, Scaling::mean).fit_rows, d.fit_rows);
  sp.val_days = 0;
  const Dataset f = build_dataset(s, L, H, sp, Scaling::mean);
  EXPECT_EQ(f.fit_rows, f.train_rows - long(std::floor(0.3 * f.train_rows)));
}

TEST(ValDays, TheWindowIsCappedByTheFraction) {
  const Series s = synthetic_series(24 * 30, 7);
  SplitSpec sp;
  sp.has_train_until = true;
  sp.train_until = at("2022-01-20");
  sp.val_days = 12;  // more than 10% of the rows
  const Dataset d = build_dataset(s, 24, 12, sp, Scaling::mean);
  EXPECT_EQ(d.train_rows - d.fit_rows, long(std::floor(0.1 * d.train_rows)));
  sp.val_fraction = 0;  // no validation at all
  EXPECT_EQ(build_dataset(s, 24, 12, sp, Scaling::mean).fit_rows, d.train_rows);
  // --beta auto needs a validation slice.
  RunConfig cfg;
  cfg.val_fraction = 0;
  EXPECT_THROW(validate(cfg), ConfigError);
  cfg.beta_auto = false;
  EXPECT_NO_THROW(validate(cfg));
}

// ------------------------------------------------------------------ configuration
TEST(BetaAuto, ParsesFromFlagsTomlAndTheStoredConfiguration) {
  RunConfig cfg;
  set_option(cfg, "beta", "auto", "--beta");
  EXPECT_TRUE(cfg.beta_auto);
  set_option(cfg, "beta_grid", "0,0.3,1", "--beta-grid");
  EXPECT_EQ(cfg.beta_grid, (std::vector<double>{0, 0.3, 1}));
  // The stored configuration (JSON in models, TOML from --print-config) round-trips.
  const RunConfig back = config_from_json(config_to_json(cfg), "test");
  EXPECT_TRUE(back.beta_auto);
  EXPECT_EQ(back.beta_grid, cfg.beta_grid);
  test::TempDir dir;
  RunConfig from_toml;
  load_config_toml(dir.write("a.toml", config_to_toml(cfg)), from_toml);
  EXPECT_TRUE(from_toml.beta_auto);
  EXPECT_EQ(from_toml.beta_grid, cfg.beta_grid);
  // A number again turns auto off.
  set_option(cfg, "beta", "0.4", "--beta");
  EXPECT_FALSE(cfg.beta_auto);
  EXPECT_EQ(cfg.beta, 0.4);
  EXPECT_EQ(config_from_json(config_to_json(cfg), "test").beta_auto, false);
}

TEST(BetaAuto, BadValuesAreErrorsNamingTheFlag) {
  RunConfig cfg;
  for (const char* bad : {"automatic", "1.5", "-0.1", ""}) {
    try {
      set_option(cfg, "beta", bad, "--beta");
      FAIL() << "accepted --beta '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--beta"), std::string::npos) << e.what();
    }
  }
  for (const char* bad : {"0.1", "0.1,0.1", "0.1,2", "0.1,x"}) {
    try {
      set_option(cfg, "beta_grid", bad, "--beta-grid");
      FAIL() << "accepted --beta-grid '" << bad << "'";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("--beta-grid"), std::string::npos) << e.what();
    }
  }
  test::TempDir dir;
  RunConfig t;
  try {
    load_config_toml(dir.write("b.toml", "[objective]\nbeta = true\n"), t);
    FAIL() << "accepted beta = true";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("b.toml:2:"), std::string::npos) << e.what();
  }
}

// ------------------------------------------------------------------ the choice
TEST(BetaAuto, ChoosesTheLowestValidationPowerMeanAndBreaksTiesTowardsPlain) {
  const std::vector<double> w{1, 1, 2};
  auto cand = [](double beta, std::vector<double> val, std::vector<double> test) {
    BetaCandidate c;
    c.beta = beta;
    c.val_regret = std::move(val);
    c.test_regret = std::move(test);
    return c;
  };
  std::vector<BetaCandidate> c = {
      cand(0.1, {1.0, 1.0, 4.0}, {1, 1, 1}),  // mean 2.5 (weighted), max 4
      cand(0.5, {2.0, 2.0, 2.5}, {1, 1, 1}),  // mean 2.25, max 2.5
      cand(1.0, {0.5, 0.5, 3.0}, {1, 1, 1}),  // mean 1.75, max 3
  };
  EXPECT_EQ(choose_beta(c, w, 0).index, 2u);   // the mean
  EXPECT_EQ(choose_beta(c, w, 50).index, 1u);  // near the max
  const BetaChoice ch = choose_beta(c, w, 1);
  ASSERT_EQ(ch.val_mq.size(), 3u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_DOUBLE_EQ(ch.val_mq[i], power_mean(c[i].val_regret.data(), w.data(), 3, 1));
  EXPECT_LE(ch.val_mq[ch.index], *std::min_element(ch.val_mq.begin(), ch.val_mq.end()));
  // Equal validation objectives: the larger beta.
  std::vector<BetaCandidate> tie = {cand(0.1, {1, 2, 3}, {}), cand(1.0, {1, 2, 3}, {}),
                                    cand(0.5, {1, 2, 3}, {})};
  EXPECT_EQ(choose_beta(tie, w, 4).index, 1u);
  EXPECT_THROW(choose_beta({}, w, 0), Error);
  EXPECT_TRUE(std::isnan(ch.val_se[0]));  // no days: no standard error
  EXPECT_THROW(choose_beta({cand(0.1, {1, 2}, {})}, w, 0), Error);
}

// With validation days, a regret model ships only when its gap to plain is larger than the
// day-to-day noise: a small average gain made of a few good days loses to plain, a
// consistent one wins.
TEST(BetaAuto, OneStandardErrorRuleKeepsPlainUnlessTheGainIsConsistent) {
  const std::vector<double> w{1, 1};
  const int D = 10;
  auto candidate = [&](double beta, const std::vector<double>& per_day) {
    BetaCandidate c;
    c.beta = beta;
    double sum = 0;
    for (int d = 0; d < D; ++d) {
      c.val_days.push_back({per_day[size_t(d)], per_day[size_t(d)]});
      c.day_rows.push_back(24);
      sum += per_day[size_t(d)];
    }
    c.val_regret = {sum / D, sum / D};
    return c;
  };
  const std::vector<double> plain_days(D, 1.0);
  // Noisy: much better on two days, worse on the others; 4% better on average.
  std::vector<double> noisy(D, 1.05);
  noisy[2] = noisy[7] = 0.6;
  // Consistent: 4% better every day.
  const std::vector<double> steady(D, 0.96);
  for (double q : {0.0, 4.0}) {
    const BetaChoice a = choose_beta({candidate(0.1, noisy), candidate(1.0, plain_days)}, w, q);
    EXPECT_EQ(a.lowest, 0u);
    EXPECT_EQ(a.index, 1u) << "q " << q;
    EXPECT_GT(a.val_se[1], a.val_mq[1] - a.val_mq[0]);
    EXPECT_EQ(a.val_se[0], 0.0);
    const BetaChoice b = choose_beta({candidate(0.1, steady), candidate(1.0, plain_days)}, w, q);
    EXPECT_EQ(b.index, 0u) << "q " << q;
    EXPECT_LT(b.val_se[1], b.val_mq[1] - b.val_mq[0]);
    // Deterministic: the same days give the same standard errors.
    EXPECT_EQ(choose_beta({candidate(0.1, noisy), candidate(1.0, plain_days)}, w, q).val_se, a.val_se);
  }
}

RunConfig small_config() {
  RunConfig cfg;
  cfg.series_hours = 24 * 100;
  cfg.agents = 60;
  cfg.hidden = {8};
  cfg.epochs = 4;
  cfg.warm_start_epochs = 1;
  cfg.average_epochs = 2;
  cfg.batch = 128;
  cfg.samples = 4;
  cfg.threads = 2;
  cfg.quiet = true;
  cfg.q = 4;
  cfg.beta_auto = true;
  cfg.beta_grid = {0.1, 0.5, 1};
  cfg.val_days = 7;
  return cfg;
}

TEST(BetaAuto, TrainShipsTheCandidateWithTheLowestValidationObjective) {
  test::TempDir dir;
  RunConfig cfg = small_config();
  cfg.out = dir.file("run");
  std::filesystem::create_directories(cfg.out);
  const RunInputs in = load_inputs(cfg);
  double chosen = -1;
  const RunOutcome o = train_beta_auto(cfg, in, nullptr, &chosen);
  ASSERT_LT(o.interrupted_at, 0);
  // Every candidate is a whole run folder; beta_auto.csv holds one row each, one chosen:
  // the largest beta within one standard error of the lowest validation M_q.
  const auto rows = read_csv(dir.file("run/beta_auto.csv"));
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"beta", "val_power_mean", "val_se",
                                               "test_power_mean", "chosen"}));
  double best = INFINITY, chosen_val = NAN;
  int n_chosen = 0;
  for (size_t i = 1; i < rows.size(); ++i) best = std::min(best, std::stod(rows[i][1]));
  for (size_t i = 1; i < rows.size(); ++i) {
    const double b = std::stod(rows[i][0]), v = std::stod(rows[i][1]), se = std::stod(rows[i][2]);
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(cfg.out) / beta_folder(b) / "model.safetensors"));
    EXPECT_GE(se, 0.0);
    if (rows[i][4] == "1") {
      ++n_chosen;
      chosen_val = v;
      EXPECT_EQ(b, chosen);
      EXPECT_LE(v - best, se);
    } else if (v - best <= se) {
      EXPECT_LT(b, chosen) << "a larger beta within one standard error was not chosen";
    }
  }
  EXPECT_EQ(n_chosen, 1);
  // The shipped model is the chosen candidate's, stored with the run's q and that beta.
  const ModelFile shipped = load_model(dir.file("run/model.safetensors"));
  const ModelFile cand = load_model(
      (std::filesystem::path(cfg.out) / beta_folder(chosen) / "model.safetensors").string());
  EXPECT_EQ(shipped.params, cand.params);
  const RunConfig stored = config_from_json(shipped.metadata.at("eqpm.config"), "shipped");
  EXPECT_FALSE(stored.beta_auto);
  EXPECT_EQ(stored.beta, chosen);
  EXPECT_EQ(stored.q, 4);
  // Its validation regrets (agents.csv's val_regret) give the chosen validation M_q.
  const auto agents = read_csv(dir.file("run/agents.csv"));
  ASSERT_EQ(agents.size(), in.population.agents.size() + 1);
  ASSERT_EQ(agents[0].back(), "val_regret");
  std::vector<double> val, w;
  for (size_t n = 1; n < agents.size(); ++n) {
    val.push_back(std::stod(agents[n][4]));
    w.push_back(in.population.agents[n - 1].weight);
  }
  EXPECT_NEAR(power_mean(val.data(), w.data(), long(val.size()), 4), chosen_val, 1e-9 * chosen_val);
}

// An auto run stopped inside its first candidate resumes into the same shipped model as
// a run never stopped (each candidate resumes bit-identically or starts afresh).
TEST(BetaAuto, AnInterruptedRunResumesToTheSameModel) {
  test::TempDir dir;
  RunConfig cfg = small_config();
  cfg.out = dir.file("whole");
  std::filesystem::create_directories(cfg.out);
  const RunInputs in = load_inputs(cfg);
  double chosen_whole = -1, chosen_resumed = -2;
  const RunOutcome whole = train_beta_auto(cfg, in, nullptr, &chosen_whole);
  ASSERT_LT(whole.interrupted_at, 0);

  cfg.out = dir.file("stopped");
  std::filesystem::create_directories(cfg.out);
  request_interrupt(2);
  const RunOutcome stopped = train_beta_auto(cfg, in);
  clear_interrupt();
  ASSERT_EQ(stopped.interrupted_at, 1);
  EXPECT_EQ(stopped.out_dir, cfg.out);
  EXPECT_TRUE(std::filesystem::exists(dir.file("stopped/beta=0.1/checkpoint.safetensors")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("stopped/beta=0.5")));
  EXPECT_FALSE(std::filesystem::exists(dir.file("stopped/model.safetensors")));
  const RunOutcome resumed = train_beta_auto(cfg, in, nullptr, &chosen_resumed, nullptr, true);
  ASSERT_LT(resumed.interrupted_at, 0);
  EXPECT_EQ(chosen_resumed, chosen_whole);
  EXPECT_EQ(resumed.params, whole.params);
  EXPECT_EQ(load_model(dir.file("stopped/model.safetensors")).params,
            load_model(dir.file("whole/model.safetensors")).params);
  EXPECT_EQ(test::read_file(dir.file("stopped/beta_auto.csv")),
            test::read_file(dir.file("whole/beta_auto.csv")));
}

TEST(BetaAuto, BacktestChoosesPerFoldByValidationAndPoolsTheChosenModels) {
  test::TempDir dir;
  RunConfig base = small_config();
  base.series_hours = 24 * 110;
  const RunInputs in = load_inputs(base);
  BacktestOptions opt;
  opt.from = at("2022-03-15");
  opt.to = at("2022-04-15");
  opt.refit = parse_refit("14d");
  opt.objectives = {"power:4"};
  opt.out = dir.path().string();
  const BacktestResult r = run_backtest(base, in, opt);
  ASSERT_FALSE(r.stopped);
  ASSERT_EQ(r.folds.size(), 3u);
  ASSERT_EQ(r.runs.size(), 2u);
  ASSERT_EQ(r.beta_auto.size(), 3u * 3u);  // folds x candidates
  const BacktestRun& run = r.runs[1];
  EXPECT_EQ(run.name, "q=4");
  std::vector<double> w(in.population.agents.size());
  for (size_t n = 0; n < w.size(); ++n) w[n] = in.population.agents[n].weight;
  for (size_t k = 0; k < r.folds.size(); ++k) {
    SCOPED_TRACE("fold " + std::to_string(k + 1));
    double best = INFINITY;
    const BetaAutoRow* chosen = nullptr;
    for (const auto& b : r.beta_auto)
      if (b.fold == int(k + 1)) {
        best = std::min(best, b.val_mq);
        if (b.chosen) chosen = &b;
      }
    ASSERT_NE(chosen, nullptr);
    EXPECT_LE(chosen->val_mq - best, chosen->val_se);
    for (const auto& b : r.beta_auto) {
      if (b.fold == int(k + 1) && b.val_mq - best <= b.val_se) {
        EXPECT_LE(b.beta, chosen->beta);
      }
    }
    const FoldResult& f = run.folds[k];
    EXPECT_EQ(f.beta, chosen->beta);
    EXPECT_NEAR(power_mean(f.val_regret.data(), w.data(), long(w.size()), 4), chosen->val_mq,
                1e-12 * chosen->val_mq);
    EXPECT_NEAR(power_mean(f.regret.data(), w.data(), long(w.size()), 4), chosen->test_mq,
                1e-12 * chosen->test_mq);
    // The run's fold folder ships the chosen candidate's model (plain's for beta = 1).
    const std::string cand_dir =
        chosen->beta >= 1 ? (dir.path() / "plain" / ("fold-" + std::to_string(k + 1))).string()
                          : (dir.path() / "q=4" / beta_folder(chosen->beta) /
                             ("fold-" + std::to_string(k + 1))).string();
    EXPECT_EQ(load_model(f.dir + "/model.safetensors").params,
              load_model(cand_dir + "/model.safetensors").params);
    // Validation rows end before the fold starts, like every training row.
    EXPECT_LT(f.train_last_target, f.fold.start);
  }
  // The pooled row is over the chosen models' test regrets.
  std::vector<std::vector<double>> per_fold;
  std::vector<long> hours;
  for (const auto& f : run.folds) {
    per_fold.push_back(f.regret);
    hours.push_back(f.test_rows);
  }
  EXPECT_ALL_CLOSE(run.pooled, pool_regrets(per_fold, hours), 0.0, 1e-15);
  // beta_auto.csv has a row per candidate and fold; backtest.csv the chosen beta per fold.
  std::istringstream csv(beta_auto_csv(r));
  std::string line;
  long lines = 0;
  while (std::getline(csv, line)) ++lines;
  EXPECT_EQ(lines, 1 + 9);
  EXPECT_NE(backtest_table(r, opt).find("beta auto"), std::string::npos);
}

}  // namespace
}  // namespace eqpm
