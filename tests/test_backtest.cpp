// Date splits, the rolling-origin backtest and the paper's mean-forecast metric: folds
// have the right boundaries, no fold's model sees an hour of its test period (checked on
// the rows its trainer actually draws), the pooled rows are the test-hour weighted
// combination of the per-fold regrets, date splits select the right rows, bad dates are
// refused naming the flag, and paper-mean scores a hand-computable case.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "eqpm/backend.hpp"
#include "host/backtest.hpp"
#include "host/io/checkpoint.hpp"
#include "eqpm/data.hpp"
#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "eqpm/objectives.hpp"
#include "host/paper_metric.hpp"
#include "host/run.hpp"
#include "host/trainer.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

std::int64_t at(const std::string& text) {
  std::int64_t utc = 0;
  std::string why;
  EXPECT_TRUE(parse_date(text, &utc, nullptr, &why)) << text << ": " << why;
  return utc;
}

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.push_back("");
  return cells;
}

// ------------------------------------------------------------------ folds
TEST(BacktestFolds, MonthlyFoldsEndOnTheFirstOfTheMonth) {
  const auto folds = backtest_folds(at("2022-07-15"), at("2022-10-01"), parse_refit("month"));
  ASSERT_EQ(folds.size(), 3u);
  EXPECT_EQ(folds[0].start, at("2022-07-15"));
  EXPECT_EQ(folds[0].end, at("2022-08-01"));
  EXPECT_EQ(folds[1].start, at("2022-08-01"));
  EXPECT_EQ(folds[1].end, at("2022-09-01"));
  EXPECT_EQ(folds[2].end, at("2022-10-01"));
  for (size_t k = 0; k < folds.size(); ++k) EXPECT_EQ(folds[k].index, static_cast<int>(k) + 1);
  // December rolls over into January.
  const auto dec = backtest_folds(at("2022-12-01"), at("2023-02-01"), parse_refit("month"));
  ASSERT_EQ(dec.size(), 2u);
  EXPECT_EQ(dec[0].end, at("2023-01-01"));
}

TEST(BacktestFolds, WeeklyAndDayFoldsAndATruncatedLastFold) {
  const auto weeks = backtest_folds(at("2022-07-01"), at("2022-07-20"), parse_refit("week"));
  ASSERT_EQ(weeks.size(), 3u);
  EXPECT_EQ(weeks[1].start, at("2022-07-08"));
  EXPECT_EQ(weeks[2].start, at("2022-07-15"));
  EXPECT_EQ(weeks[2].end, at("2022-07-20"));
  const auto days = backtest_folds(at("2022-07-01"), at("2022-07-10"), parse_refit("3d"));
  ASSERT_EQ(days.size(), 3u);
  for (const auto& f : days) EXPECT_EQ(f.end - f.start, 3 * 86400);
  for (const char* bad : {"fortnight", "0d", "d", "-3d", "3", "3.5d", ""})
    EXPECT_THROW(parse_refit(bad), ConfigError) << bad;
}

// ------------------------------------------------------------------ date splits
TEST(DateSplit, SelectsTheRowsOfTheDatesWithoutLookAhead) {
  const Series s = synthetic_series(24 * 60, 3);  // 2022-01-01 .. 2022-03-01 (synthetic calendar)
  RunConfig cfg;
  set_option(cfg, "train_until", "2022-01-20", "--train-until");
  set_option(cfg, "test_from", "2022-01-25", "--test-from");
  set_option(cfg, "test_until", "2022-01-31", "--test-until");
  const int L = cfg.lookback, H = cfg.horizon;
  const Dataset d = build_dataset(s, L, H, split_spec(cfg), Scaling::mean);
  EXPECT_EQ(d.train_begin, 0);
  for (long r = d.train_begin; r < d.train_end(); ++r)
    EXPECT_LT(series_time(s, d.t[size_t(r)] + H - 1), at("2022-01-20")) << r;
  // The split is maximal: the next row's targets reach train_until.
  EXPECT_GE(series_time(s, d.t[size_t(d.train_end())] + H - 1), at("2022-01-20"));
  // A date-only test_until covers that whole day.
  EXPECT_EQ(series_time(s, d.t[size_t(d.test_begin)]), at("2022-01-25"));
  EXPECT_EQ(series_time(s, d.t[size_t(d.test_end - 1)]), at("2022-01-31 23:00"));
  EXPECT_EQ(d.test_rows(), 7 * 24);
  EXPECT_EQ(d.fit_rows, d.train_rows - static_cast<long>(std::floor(0.1 * d.train_rows)));
  // Scaling from the hours the training rows read, nothing later.
  double sum = 0;
  const long last = d.t[size_t(d.train_end() - 1)] + H - 1;
  for (long i = 0; i <= last; ++i) sum += s.values[size_t(i)];
  EXPECT_NEAR(d.scale, sum / double(last + 1), 1e-12 * d.scale);

  // A timestamp test_until is that hour, inclusive; train_from moves the first row and
  // the scaling window with it; test_from alone also ends the training rows.
  RunConfig c2;
  set_option(c2, "train_from", "2022-01-10", "--train-from");
  set_option(c2, "test_from", "2022-02-01", "--test-from");
  set_option(c2, "test_until", "2022-02-01 05:00", "--test-until");
  const Dataset d2 = build_dataset(s, L, H, split_spec(c2), Scaling::mean);
  EXPECT_EQ(series_time(s, d2.t[size_t(d2.train_begin)]), at("2022-01-10"));
  EXPECT_LT(series_time(s, d2.t[size_t(d2.train_end() - 1)] + H - 1), at("2022-02-01"));
  EXPECT_GE(series_time(s, d2.t[size_t(d2.train_end())] + H - 1), at("2022-02-01"));
  EXPECT_EQ(d2.test_rows(), 6);
  sum = 0;
  const long first2 = d2.t[size_t(d2.train_begin)] - L, last2 = d2.t[size_t(d2.train_end() - 1)] + H - 1;
  for (long i = first2; i <= last2; ++i) sum += s.values[size_t(i)];
  EXPECT_NEAR(d2.scale, sum / double(last2 - first2 + 1), 1e-12 * d2.scale);

  // Without dates the split is the fraction's, as before.
  const Dataset f = build_dataset(s, L, H, RunConfig().train_fraction, RunConfig().val_fraction,
                                  Scaling::mean);
  EXPECT_EQ(f.train_begin, 0);
  EXPECT_EQ(f.test_begin, f.train_rows);
  EXPECT_EQ(f.test_end, f.rows);
}

TEST(DateSplit, UsesTheTimestampsOfACsvSeries) {
  test::TempDir tmp;
  std::string csv = "timestamp,avg_CI\n";
  const std::int64_t t0 = at("2022-03-01 00:00");
  for (int h = 0; h < 24 * 20; ++h)
    csv += utc_text(t0 + 3600LL * h) + "," + std::to_string(200 + (h * 37) % 50) + "\n";
  const Series s = load_series_csv(tmp.write("s.csv", csv), "avg_CI", 3, nullptr);
  RunConfig cfg;
  set_option(cfg, "train_until", "2022-03-10", "--train-until");
  const Dataset d = build_dataset(s, cfg.lookback, cfg.horizon, split_spec(cfg), Scaling::mean);
  EXPECT_EQ(series_time(s, d.t[size_t(d.test_begin)]), at("2022-03-10"));
  EXPECT_EQ(d.test_end, d.rows);
  EXPECT_EQ(series_time(s, d.t[size_t(d.train_end() - 1)] + cfg.horizon - 1), at("2022-03-09 23:00"));
}

// A call that must throw ConfigError or Error whose message names `flag`.
template <class F>
void expect_error_naming(F&& f, const std::string& flag) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming " << flag;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(flag), std::string::npos) << e.what();
  }
}

TEST(DateSplit, BadDatesAreErrorsNamingTheFlag) {
  RunConfig cfg;
  for (const char* bad : {"2022-13-01", "2022-02-30", "yesterday", "2022-07", "07/01/2022"})
    expect_error_naming([&] { set_option(cfg, "train_until", bad, "--train-until"); }, "--train-until");
  expect_error_naming([&] { set_option(cfg, "test_from", "2022-7-1x", "--test-from"); }, "--test-from");
  const Series s = synthetic_series(24 * 60, 3);
  auto build = [&](const RunConfig& c) {
    return build_dataset(s, c.lookback, c.horizon, split_spec(c), Scaling::mean);
  };
  {  // the test period would overlap the training targets
    RunConfig c;
    c.train_until = "2022-02-01";
    c.test_from = "2022-01-20";
    expect_error_naming([&] { build(c); }, "--test-from");
  }
  {  // no training row before the series starts
    RunConfig c;
    c.train_until = "2021-06-01";
    c.test_from = "2022-01-20";
    expect_error_naming([&] { build(c); }, "--train-until");
  }
  {  // no test row after the series ends
    RunConfig c;
    c.test_from = "2023-01-01";
    expect_error_naming([&] { build(c); }, "--test-from");
  }
  {
    RunConfig c;
    c.test_from = "2022-02-01";
    c.test_until = "2022-01-25";
    expect_error_naming([&] { build(c); }, "--test-until");
  }
}

// --test-series: a second file continues the first; the split and the scaling are those of
// one file holding both with --test-from at the second file's first hour.
TEST(DateSplit, TestSeriesContinuesTheSeries) {
  test::TempDir tmp;
  const Series syn = synthetic_series(24 * 50, 3);
  auto csv = [&](long from, long to, double factor = 1.0) {
    std::string text = "timestamp,avg_CI\n";
    for (long t = from; t < to; ++t) {
      const std::string when = utc_text(series_time(syn, t));  // 2022-01-01T00:00:00Z
      text += when.substr(0, 10) + " " + when.substr(11, 8) + "+00:00," +
              format_double(factor * syn.values[size_t(t)]) + "\n";
    }
    return text;
  };
  RunConfig split;
  split.beta_auto = false;
  split.agents = 20;
  split.series = tmp.write("train.csv", csv(0, 24 * 40));
  split.test_series = tmp.write("test.csv", csv(24 * 40, 24 * 50));
  RunConfig whole = split;
  whole.series = tmp.write("whole.csv", csv(0, 24 * 50));
  whole.test_series.clear();
  whole.test_from = "2022-02-10";
  const RunInputs a = load_inputs(split), b = load_inputs(whole);
  EXPECT_EQ(a.test_series_start, at("2022-02-10"));
  EXPECT_EQ(a.series.values, b.series.values);
  EXPECT_EQ(a.data.train_rows, b.data.train_rows);
  EXPECT_EQ(a.data.fit_rows, b.data.fit_rows);
  EXPECT_EQ(a.data.test_begin, b.data.test_begin);
  EXPECT_EQ(a.data.test_end, b.data.test_end);
  EXPECT_EQ(a.data.offset, b.data.offset);
  EXPECT_EQ(a.data.scale, b.data.scale);
  EXPECT_EQ(a.data.x, b.data.x);
  // The scaling comes from the training hours only: the test file's values do not move it.
  RunConfig other = split;
  other.test_series = tmp.write("test2.csv", csv(24 * 40, 24 * 50, 10.0));
  const RunInputs c = load_inputs(other);
  EXPECT_EQ(c.data.scale, a.data.scale);
  EXPECT_NE(c.series.values.back(), a.series.values.back());
  // A gap between the files, or a test file that does not start after the training file,
  // is an error naming the test file.
  RunConfig gap = split;
  gap.test_series = tmp.write("gap.csv", csv(24 * 40 + 3, 24 * 50));
  try {
    load_inputs(gap);
    FAIL() << "a gap was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gap.csv"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("3 missing hours"), std::string::npos) << e.what();
  }
  RunConfig early = split;
  early.series = tmp.write("late.csv", csv(24 * 45, 24 * 50));
  early.test_series = split.test_series;
  EXPECT_THROW(load_inputs(early), InputError);
  RunConfig synthetic = split;
  synthetic.series.clear();
  EXPECT_THROW(load_inputs(synthetic), ConfigError);
}

// ------------------------------------------------------------------ the backtest
RunConfig small_backtest_config() {
  RunConfig cfg;
  cfg.series_hours = 24 * 130;  // 2022-01-01 .. 2022-05-11
  cfg.agents = 40;
  cfg.hidden = {8};
  cfg.epochs = 4;
  cfg.warm_start_epochs = 1;
  cfg.batch = 128;
  cfg.samples = 4;
  cfg.threads = 2;
  cfg.quiet = true;
  return cfg;
}

struct SmallBacktest {
  test::TempDir dir;
  RunConfig base = small_backtest_config();
  RunInputs in;
  BacktestOptions opt;
  BacktestResult result;
};

const SmallBacktest& small_backtest() {
  static const std::unique_ptr<SmallBacktest> bt = [] {
    auto b = std::make_unique<SmallBacktest>();
    b->in = load_inputs(b->base);
    b->opt.from = at("2022-03-20");
    b->opt.to = at("2022-05-01");
    b->opt.refit = parse_refit("14d");
    b->opt.objectives = {"power:4"};
    b->opt.out = b->dir.path().string();
    b->result = run_backtest(b->base, b->in, b->opt);
    return b;
  }();
  return *bt;
}

TEST(Backtest, FoldsCoverThePeriodForEveryRun) {
  const auto& b = small_backtest();
  ASSERT_FALSE(b.result.stopped);
  ASSERT_EQ(b.result.folds.size(), 3u);  // 14 + 14 + 14 days
  EXPECT_EQ(b.result.folds.front().start, b.opt.from);
  EXPECT_EQ(b.result.folds.back().end, b.opt.to);
  ASSERT_EQ(b.result.runs.size(), 2u);
  EXPECT_EQ(b.result.runs[0].name, "plain");
  EXPECT_EQ(b.result.runs[1].name, "q=4");
  for (const auto& run : b.result.runs) {
    ASSERT_EQ(run.folds.size(), 3u);
    for (size_t k = 0; k < run.folds.size(); ++k) {
      const FoldResult& f = run.folds[k];
      EXPECT_EQ(f.fold.start, b.result.folds[k].start);
      // Every hour of the fold is a test forecast start, and nothing else.
      EXPECT_EQ(f.test_rows, (f.fold.end - f.fold.start) / 3600);
      EXPECT_EQ(f.test_first_start, f.fold.start);
      for (const char* file : {"model.safetensors", "agents.csv", "summary.json", "metrics.csv"})
        EXPECT_TRUE(std::filesystem::exists(std::filesystem::path(f.dir) / file)) << f.dir << "/" << file;
    }
  }
}

TEST(Backtest, NoFoldModelSeesAnHourOfItsTestPeriod) {
  const auto& b = small_backtest();
  const int H = b.base.horizon;
  for (const auto& run : b.result.runs)
    for (const FoldResult& f : run.folds) {
      SCOPED_TRACE(run.name + " fold " + std::to_string(f.fold.index));
      EXPECT_LT(f.train_last_target, f.fold.start);
      // The configuration the fold was trained with (stored in its model), its inputs and
      // the rows its trainer uses: every row it steps on, validates on or reports as
      // training has its last target hour before the fold.
      const ModelFile m = load_model((std::filesystem::path(f.dir) / "model.safetensors").string());
      const RunConfig cfg = config_from_json(m.metadata.at("eqpm.config"), f.dir);
      const RunInputs in = fold_inputs(b.in, cfg);
      auto backend = make_backend("cpu", 1);
      backend->setup(make_problem(cfg, in));
      const Trainer trainer(cfg, in.data, in.population, *backend);
      std::vector<long> seen = trainer.train_rows();
      for (long r : trainer.validation_rows()) seen.push_back(r);
      for (long step = 0; step < trainer.total_steps(); ++step)
        for (long r : trainer.batch_rows(step)) seen.push_back(r);
      ASSERT_FALSE(seen.empty());
      long last_seen_hour = -1;
      for (long r : seen) last_seen_hour = std::max(last_seen_hour, in.data.t[size_t(r)] + H - 1);
      EXPECT_LT(series_time(in.series, last_seen_hour), f.fold.start);
      // ...and its test rows start inside the fold, all of them.
      const std::vector<long> test = trainer.test_rows();
      ASSERT_EQ(static_cast<long>(test.size()), f.test_rows);
      for (long r : test) {
        const std::int64_t when = series_time(in.series, in.data.t[size_t(r)]);
        EXPECT_GE(when, f.fold.start);
        EXPECT_LT(when, f.fold.end);
      }
      EXPECT_EQ(in.data.train_rows, f.train_rows);
      // Later folds start from the previous fold's model with the shorter schedule.
      if (f.fold.index > 1) {
        EXPECT_EQ(cfg.epochs, warm_fold_epochs(b.base.epochs));
        EXPECT_EQ(cfg.warm_start_epochs, 0);
      } else {
        EXPECT_EQ(cfg.epochs, b.base.epochs);
      }
    }
}

TEST(Backtest, PooledRowsAreTheHourWeightedFoldRegrets) {
  const auto& b = small_backtest();
  // backtest.csv as the command writes it.
  std::map<std::string, std::vector<std::string>> all_rows;
  std::istringstream csv(backtest_csv(b.result));
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line, "run,q,beta,fold_start,fold_end,mean,var,p95,max,mse,objective");
  long fold_rows = 0;
  while (std::getline(csv, line)) {
    const auto cells = split_csv_line(line);
    ASSERT_EQ(cells.size(), 11u) << line;
    EXPECT_EQ(cells[10], cells[0] == "plain" ? "" : "power:4") << line;
    if (cells[3] == "all") all_rows[cells[0]] = cells;
    else ++fold_rows;
  }
  EXPECT_EQ(fold_rows, 6);
  for (const auto& run : b.result.runs) {
    SCOPED_TRACE(run.name);
    // Per-agent regrets from each fold's agents.csv, weighted by the fold's test hours.
    std::vector<double> pooled;
    double hours = 0, mse = 0;
    for (const FoldResult& f : run.folds) {
      std::ifstream in(std::filesystem::path(f.dir) / "agents.csv");
      std::string row;
      std::getline(in, row);
      std::vector<double> regret;
      while (std::getline(in, row)) regret.push_back(std::stod(split_csv_line(row)[2]));
      ASSERT_EQ(regret.size(), b.in.population.agents.size());
      if (pooled.empty()) pooled.assign(regret.size(), 0.0);
      for (size_t n = 0; n < regret.size(); ++n) pooled[n] += double(f.test_rows) * regret[n];
      hours += double(f.test_rows);
      mse += double(f.test_rows) * f.mse;
    }
    for (double& v : pooled) v /= hours;
    EXPECT_ALL_CLOSE(run.pooled, pooled, 0.0, 1e-12);
    const RegretStats st = regret_stats(pooled);
    const auto& row = all_rows.at(run.name);
    EXPECT_EQ(row[4], "");
    EXPECT_NEAR(std::stod(row[5]), st.mean, 1e-12 * st.mean);
    EXPECT_NEAR(std::stod(row[6]), st.var, 1e-12 * st.var);
    EXPECT_NEAR(std::stod(row[7]), st.p95, 1e-12 * st.p95);
    EXPECT_NEAR(std::stod(row[8]), st.max, 1e-12 * st.max);
    EXPECT_NEAR(std::stod(row[9]), mse / hours, 1e-12 * mse / hours);
  }
  // pool_regrets on its own: hours weight the folds.
  EXPECT_ALL_CLOSE(pool_regrets({{1.0, 2.0}, {4.0, 8.0}}, {3, 1}), (std::vector<double>{1.75, 3.5}),
                   0.0, 1e-15);
}

// ------------------------------------------------------------------ paper-mean metric
TEST(PaperMetric, ScoresTheMeanForecastAgainstTheMeanTruth) {
  // Two rows, H = 2. Mean forecast vbar = (4, 2), mean truth ybar = (2, 3).
  Dataset d;
  d.horizon = 2;
  d.rows = 2;
  d.y = {1, 4, 3, 2};
  d.t = {0, 1};
  const std::vector<float> mu = {3, 1, 5, 3};
  const std::vector<float> demand = {1, 4};  // d(t) = 1 at t = 0, 4 at t = 1
  Population p;
  Agent inv;
  inv.family = Family::inventory;
  inv.cu = 2;
  inv.co = 1;
  inv.hour = 1;  // orders 2, needs 3: cu * 1
  p.agents.push_back(inv);
  Agent dc;
  dc.family = Family::datacenter;
  dc.lambda = 4;
  dc.scale = 1;
  dc.phase = 0;
  dc.hour = 1;  // v = 2, y = 3; sqrt(lambda d) is 2 and 4 over the rows: mean 3
  p.agents.push_back(dc);
  Agent ev;
  ev.family = Family::ev_charging;
  ev.k = 1;
  ev.window_start = 0;
  ev.window_end = 2;
  ev.energy = 1.5;  // charges at hour 1 (forecast 2 < 4) paying 3, best is 2
  p.agents.push_back(ev);
  const std::vector<double> r = paper_mean_regrets(p, demand, 1e-3f, d, {0, 1}, mu);
  const double s2 = std::sqrt(2.0), s3 = std::sqrt(3.0);
  const std::vector<double> expected = {2.0, 3.0 * (s3 - s2) * (s3 - s2) / s2, 1.5};
  EXPECT_ALL_CLOSE(r, expected, 1e-6, 1e-5);
  EXPECT_THROW(paper_mean_regrets(p, demand, 1e-3f, d, {0, 1}, {1, 2, 3}), Error);
}


// A backtest over another objective: each run is trained at it, each fold's beta is chosen
// on it (the chosen candidate's validation value is that objective of the shipped model's
// validation regrets), and the tables name it.
TEST(Backtest, ObjectivesOtherThanThePowerMean) {
  test::TempDir dir;
  RunConfig base = small_backtest_config();
  const RunInputs in = load_inputs(base);
  BacktestOptions opt;
  opt.from = at("2022-04-03");
  opt.to = at("2022-05-01");
  opt.refit = parse_refit("14d");
  opt.objectives = {"cvar:0.2"};
  opt.out = dir.path().string();
  const BacktestResult r = run_backtest(base, in, opt);
  ASSERT_FALSE(r.stopped);
  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_EQ(r.runs[1].name, "cvar=0.2");
  EXPECT_EQ(r.runs[1].objective, "cvar:0.2");
  const auto cvar = make_objective("cvar:0.2");
  int chosen = 0;
  for (const BetaAutoRow& row : r.beta_auto) {
    EXPECT_EQ(row.objective, "cvar:0.2");
    if (!row.chosen) continue;
    ++chosen;
    const FoldResult& f = r.runs[1].folds[static_cast<size_t>(row.fold - 1)];
    const ModelFile m = load_model((std::filesystem::path(f.dir) / "model.safetensors").string());
    const RunConfig cfg = config_from_json(m.metadata.at("eqpm.config"), f.dir);
    EXPECT_EQ(objective_spec(cfg), "cvar:0.2");
    EXPECT_EQ(cfg.beta, row.beta);
    const std::vector<double> w(f.val_regret.size(), 1.0);
    EXPECT_NEAR(row.val_mq, objective_of(*cvar, f.val_regret, w, in.population.groups()),
                1e-12 * row.val_mq);
  }
  EXPECT_EQ(chosen, 2);  // one per fold
  const std::string csv = backtest_csv(r);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "run,q,beta,fold_start,fold_end,mean,var,p95,max,mse,objective");
  EXPECT_NE(csv.find("\ncvar=0.2,,"), std::string::npos);  // no q for a CVaR run
  EXPECT_NE(csv.find(",cvar:0.2\n"), std::string::npos);
}

}  // namespace
}  // namespace eqpm
