// `eqpm report` (report.hpp): re-evaluation by test day, bootstrap intervals, tables, plots.
#include "host/report/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <random>

#include "host/io/atomic_file.hpp"
#include "eqpm/backend.hpp"
#include "host/io/checkpoint.hpp"
#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "host/metrics.hpp"
#include "eqpm/objectives.hpp"
#include "host/run.hpp"
#include "host/trainer.hpp"
#include "report/plot.hpp"

namespace eqpm {
namespace {

namespace fs = std::filesystem;

// One model, evaluated on every test day.
struct ModelDays {
  std::string name, objective, beta;
  std::vector<std::vector<double>> day_regret;  // [day][agent]
  std::vector<double> day_mse;                  // [day]
  std::string agents_csv_note;                  // a disagreement with its agents.csv
};

// What every model of the folder shares: the agents and the test days.
struct Shared {
  bool set = false;
  std::string source;  // the run that defined it
  Population population;
  std::vector<double> weights;
  std::vector<int> groups;
  int group_count = 0;
  std::vector<std::string> group_names;
  std::vector<long> group_size;
  std::vector<double> day_rows;              // forecasts per test day
  std::int64_t first_day = 0, last_day = 0;  // UTC seconds of midnight
  long rows = 0;
  std::string regret_scale = "absolute";
  std::string series = "synthetic";
};

// The run folders of `dir`, named as sweep.csv names them (or the folder itself).
std::vector<std::pair<std::string, fs::path>> find_runs(const fs::path& dir) {
  std::vector<std::pair<std::string, fs::path>> runs;
  const fs::path sweep = dir / "sweep.csv";
  if (fs::exists(sweep)) {
    CsvReader csv(sweep.string());
    const int col = csv.require_column("run");
    CsvRow row;
    while (csv.next(&row)) {
      const CsvCell& cell = row.cells[static_cast<size_t>(col)];
      const fs::path run = dir / cell.text;
      if (cell.text.empty() || cell.text.find('/') != std::string::npos ||
          !fs::exists(run / "model.safetensors"))
        throw InputError(
            sweep.string(), cell.line, cell.column,
            "run " + quote_cell(cell.text) + ": no " + (run / "model.safetensors").string());
      runs.emplace_back(cell.text, run);
    }
    csv.require_data();
    return runs;
  }
  if (fs::exists(dir / "model.safetensors")) {
    runs.emplace_back(fs::absolute(dir).lexically_normal().filename().string(), dir);
    if (runs.back().first.empty()) runs.back().first = "model";
    return runs;
  }
  throw InputError(dir.string(), 0, 0,
                   "not a sweep folder (no sweep.csv) nor a run folder (no model.safetensors)");
}

std::int64_t utc_day(std::int64_t seconds) {
  return (seconds >= 0 ? seconds : seconds - 86399) / 86400 * 86400;
}

ModelDays evaluate_run(const std::string& name, const fs::path& run, const ReportOptions& opt,
                       Shared& shared) {
  const std::string model_path = (run / "model.safetensors").string();
  const ModelFile m = load_model(model_path);
  const auto config = m.metadata.find("eqpm.config");
  if (config == m.metadata.end())
    throw InputError(model_path, 0, 0, "no eqpm.config metadata: not written by eqpm train");
  RunConfig cfg = config_from_json(config->second, model_path);
  cfg.out.clear();
  cfg.quiet = true;
  cfg.threads = opt.threads;
  if (fs::exists(run / "population.csv")) {
    cfg.population = (run / "population.csv").string();
    cfg.ev_sessions.clear();  // its agents are in the saved file
  }
  RunInputs in = load_inputs(cfg);
  use_model_normalisation(m.metadata, cfg, in);
  auto backend = make_backend("cpu", opt.threads);
  backend->setup(make_problem(cfg, in));
  BackendState st = backend->state();
  if (st.params.size() != m.params.size())
    throw InputError(model_path, 0, 0,
                     "the model has " + std::to_string(m.params.size()) +
                         " parameters, its configuration " + std::to_string(st.params.size()));
  st.params = m.params;
  backend->set_state(st);
  Trainer trainer(cfg, in.data, in.population, *backend);

  // The test rows by UTC day of their forecast's first hour.
  std::vector<std::vector<long>> days;
  std::vector<std::int64_t> day_start;
  for (long r : trainer.test_rows()) {
    const std::int64_t d = utc_day(series_time(in.series, in.data.t[static_cast<size_t>(r)]));
    if (day_start.empty() || day_start.back() != d) {
      day_start.push_back(d);
      days.emplace_back();
    }
    days.back().push_back(r);
  }
  if (days.empty()) throw InputError(model_path, 0, 0, "its configuration has no test rows");

  ModelDays md;
  md.name = name;
  md.objective = objective_spec(cfg);
  md.beta = cfg.beta_auto ? "auto" : format_double(cfg.beta);
  for (const auto& rows : days) {
    const EvalResult e = backend->evaluate(rows);
    md.day_regret.push_back(e.regret);
    md.day_mse.push_back(e.mse);
  }

  std::vector<double> day_rows;
  for (const auto& rows : days) day_rows.push_back(static_cast<double>(rows.size()));
  if (!shared.set) {
    shared.set = true;
    shared.source = model_path;
    shared.population = in.population;
    shared.weights = in.population.weights();
    shared.groups = in.population.groups();
    shared.group_count = in.population.group_count();
    shared.group_size.assign(static_cast<size_t>(shared.group_count), 0);
    for (int g : shared.groups) ++shared.group_size[static_cast<size_t>(g)];
    for (int g = 0; g < shared.group_count; ++g)
      shared.group_names.push_back(in.population.group_name(g));
    shared.day_rows = day_rows;
    shared.first_day = day_start.front();
    shared.last_day = day_start.back();
    for (double c : day_rows) shared.rows += static_cast<long>(c);
    shared.regret_scale = cfg.regret_scale == RegretScale::relative ? "relative" : "absolute";
    shared.series = cfg.series.empty() ? "synthetic" : cfg.series;
  } else if (in.population.size() != shared.population.size() || day_rows != shared.day_rows ||
             day_start.front() != shared.first_day) {
    throw InputError(model_path, 0, 0,
                     "its agents or test days differ from those of " + shared.source +
                         ": a report compares models on the same population and test split");
  }

  // The saved per-agent test regrets should be what the days pool to.
  const fs::path agents = run / "agents.csv";
  if (fs::exists(agents)) {
    CsvReader csv(agents.string());
    const int col = csv.require_column("regret");
    CsvRow row;
    std::vector<double> saved;
    while (csv.next(&row))
      saved.push_back(
          parse_number_cell(row.cells[static_cast<size_t>(col)], agents.string(), "regret"));
    double worst = 0;
    if (saved.size() == static_cast<size_t>(in.population.size())) {
      for (size_t n = 0; n < saved.size(); ++n) {
        double sum = 0;
        for (size_t d = 0; d < days.size(); ++d) sum += day_rows[d] * md.day_regret[d][n];
        const double pooled = sum / static_cast<double>(shared.rows);
        worst =
            std::max(worst, std::fabs(pooled - saved[n]) / std::max(1e-12, std::fabs(saved[n])));
      }
    }
    if (saved.size() != static_cast<size_t>(in.population.size()) || worst > 1e-5) {
      char buf[160];
      std::snprintf(buf, sizeof buf,
                    "%s: its saved test regrets differ from the re-evaluation "
                    "(by up to %.2g relative); have its inputs changed?",
                    agents.string().c_str(), worst);
      md.agents_csv_note = buf;
    }
  }
  return md;
}

// ------------------------------------------------------------------ figures
// The figures of one model on one sample of days, in a flat vector (the bootstrap keeps
// every resample's): fixed fields, then per group the mean regret, its change against
// plain (%) and the share of its agents better off.
enum Field : int {
  kMean,
  kWorst,
  kMax,
  kGini,
  kMse,
  kOwn,
  kDMean,
  kDWorst,
  kBetter,
  kMedianChange,
  kP10,
  kP90,
  kFields
};
size_t group_mean(int g) { return kFields + 3 * static_cast<size_t>(g); }
size_t group_change(int g) { return group_mean(g) + 1; }
size_t group_better(int g) { return group_mean(g) + 2; }

double gini(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  double sum = 0, acc = 0;
  const double n = static_cast<double>(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    sum += x[i];
    acc += (2.0 * (i + 1) - n - 1) * x[i];
  }
  return sum > 0 ? acc / (n * sum) : 0.0;
}

std::vector<double> figures(const std::vector<double>& R, double mse, const Objective& own,
                            const Objective& mean, const Objective& worst, const Shared& s,
                            const std::vector<double>* plain,
                            const std::vector<double>* plain_figures) {
  const int G = s.group_count;
  std::vector<double> f(kFields + 3 * static_cast<size_t>(G), NAN);
  f[kMean] = objective_of(mean, R, s.weights, s.groups);
  f[kWorst] = objective_of(worst, R, s.weights, s.groups);
  f[kMax] = *std::max_element(R.begin(), R.end());
  f[kGini] = gini(R);
  f[kMse] = mse;
  f[kOwn] = objective_of(own, R, s.weights, s.groups);
  std::vector<double> gsum(static_cast<size_t>(G), 0), gw(static_cast<size_t>(G), 0);
  for (size_t n = 0; n < R.size(); ++n) {
    gsum[static_cast<size_t>(s.groups[n])] += s.weights[n] * R[n];
    gw[static_cast<size_t>(s.groups[n])] += s.weights[n];
  }
  for (int g = 0; g < G; ++g)
    f[group_mean(g)] = gw[static_cast<size_t>(g)] > 0
                           ? gsum[static_cast<size_t>(g)] / gw[static_cast<size_t>(g)]
                           : NAN;
  if (!plain) return f;
  const std::vector<double>& P = *plain;
  f[kDMean] = 100.0 * (f[kMean] / (*plain_figures)[kMean] - 1.0);
  f[kDWorst] = 100.0 * (f[kWorst] / (*plain_figures)[kWorst] - 1.0);
  std::vector<double> change;
  std::vector<double> gp(static_cast<size_t>(G), 0), gbetter(static_cast<size_t>(G), 0);
  long better = 0;
  for (size_t n = 0; n < R.size(); ++n) {
    const size_t g = static_cast<size_t>(s.groups[n]);
    gp[g] += s.weights[n] * P[n];
    if (R[n] < P[n]) {
      ++better;
      gbetter[g] += 1;
    }
    if (P[n] > 0) change.push_back(100.0 * (R[n] / P[n] - 1.0));
  }
  f[kBetter] = 100.0 * static_cast<double>(better) / static_cast<double>(R.size());
  if (!change.empty()) {
    f[kMedianChange] = percentile(change, 50);
    f[kP10] = percentile(change, 10);
    f[kP90] = percentile(change, 90);
  }
  for (int g = 0; g < G; ++g) {
    const size_t k = static_cast<size_t>(g);
    if (gp[k] > 0) f[group_change(g)] = 100.0 * (gsum[k] / gp[k] - 1.0);
    if (s.group_size[k] > 0)
      f[group_better(g)] = 100.0 * gbetter[k] / static_cast<double>(s.group_size[k]);
  }
  return f;
}

// Per-agent regrets and MSE pooled over days with multiplicities `k` (all ones: the split).
void pool(const ModelDays& m, const Shared& s, const std::vector<double>& k, std::vector<double>& R,
          double& mse) {
  const size_t N = m.day_regret.front().size();
  R.assign(N, 0.0);
  double rows = 0, mse_sum = 0;
  for (size_t d = 0; d < k.size(); ++d) {
    if (k[d] == 0) continue;
    const double c = k[d] * s.day_rows[d];
    rows += c;
    mse_sum += c * m.day_mse[d];
    const std::vector<double>& r = m.day_regret[d];
    for (size_t n = 0; n < N; ++n) R[n] += c * r[n];
  }
  for (double& v : R) v /= rows;
  mse = mse_sum / rows;
}

// ------------------------------------------------------------------ text
std::string num(double v) {
  if (!std::isfinite(v)) return "–";
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-3))
    std::snprintf(buf, sizeof buf, "%.3e", v);
  else
    std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}
std::string pct(double v) {
  if (!std::isfinite(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.1f%%", v);
  return buf;
}
std::string share(double v) {
  if (!std::isfinite(v)) return "–";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f%%", v);
  return buf;
}

struct Interval {
  double lo = NAN, hi = NAN;
};

std::string with_ci(double v, const Interval& ci, std::string (*fmt)(double)) {
  if (!std::isfinite(ci.lo)) return fmt(v);
  return fmt(v) + " [" + fmt(ci.lo) + ", " + fmt(ci.hi) + "]";
}

std::string day_text(std::int64_t s) { return utc_text(s).substr(0, 10); }

}  // namespace

std::vector<std::string> write_report(const std::string& dir_text, const ReportOptions& opt) {
  if (opt.bootstrap < 0 || opt.bootstrap > 100000)
    throw ConfigError("--bootstrap: expected 0 to 100000 resamples, got " +
                      std::to_string(opt.bootstrap));
  const fs::path dir(dir_text);
  const auto runs = find_runs(dir);
  Shared shared;
  std::vector<ModelDays> models;
  for (const auto& [name, path] : runs) {
    if (!opt.quiet) std::fprintf(stderr, "report: evaluating %s by test day\n", name.c_str());
    models.push_back(evaluate_run(name, path, opt, shared));
  }
  const size_t M = models.size(), D = shared.day_rows.size();
  int plain = -1;
  for (size_t i = 0; i < M; ++i)
    if (models[i].name == "plain" || models[i].beta == "1") {
      plain = static_cast<int>(i);
      break;
    }

  const auto mean = power_objective(0.0), worst = make_objective("cvar:0.1", "report");
  std::vector<std::shared_ptr<const Objective>> own;
  for (const ModelDays& m : models) own.push_back(make_objective(m.objective, "report"));

  // Point estimates on the whole split, then the resamples.
  auto all_figures = [&](const std::vector<double>& k, std::vector<std::vector<double>>* regrets) {
    std::vector<std::vector<double>> R(M);
    std::vector<double> mse(M);
    for (size_t i = 0; i < M; ++i) pool(models[i], shared, k, R[i], mse[i]);
    // Plain's figures first: every other model's changes are against its mean and worst decile.
    std::vector<std::vector<double>> f(M);
    const size_t p = static_cast<size_t>(std::max(plain, 0));
    if (plain >= 0) f[p] = figures(R[p], mse[p], *own[p], *mean, *worst, shared, nullptr, nullptr);
    for (size_t i = 0; i < M; ++i)
      if (static_cast<int>(i) != plain)
        f[i] = figures(R[i], mse[i], *own[i], *mean, *worst, shared, plain >= 0 ? &R[p] : nullptr,
                       plain >= 0 ? &f[p] : nullptr);
    if (regrets) *regrets = std::move(R);
    return f;
  };
  std::vector<std::vector<double>> regret;
  const std::vector<std::vector<double>> point = all_figures(std::vector<double>(D, 1.0), &regret);
  const size_t F = point.front().size();
  std::vector<std::vector<Interval>> ci(M, std::vector<Interval>(F));
  if (opt.bootstrap > 0 && D > 1) {
    std::mt19937_64 rng(opt.seed);
    std::vector<std::vector<std::vector<double>>> samples(M, std::vector<std::vector<double>>(F));
    std::vector<double> k(D);
    for (int b = 0; b < opt.bootstrap; ++b) {
      std::fill(k.begin(), k.end(), 0.0);
      for (size_t d = 0; d < D; ++d) k[rng() % D] += 1.0;
      const auto f = all_figures(k, nullptr);
      for (size_t i = 0; i < M; ++i)
        for (size_t j = 0; j < F; ++j)
          if (std::isfinite(f[i][j])) samples[i][j].push_back(f[i][j]);
    }
    for (size_t i = 0; i < M; ++i)
      for (size_t j = 0; j < F; ++j)
        if (samples[i][j].size() * 10 >= static_cast<size_t>(opt.bootstrap) * 9)
          ci[i][j] = {percentile(samples[i][j], 2.5), percentile(samples[i][j], 97.5)};
  }

  // Pareto-efficient models (both coordinates lower is better).
  auto efficient = [&](int a, int b) {
    std::vector<std::string> names;
    for (size_t i = 0; i < M; ++i) {
      bool dominated = false;
      for (size_t j = 0; j < M && !dominated; ++j)
        dominated = j != i && point[j][a] <= point[i][a] && point[j][b] <= point[i][b] &&
                    (point[j][a] < point[i][a] || point[j][b] < point[i][b]);
      if (!dominated) names.push_back(models[i].name);
    }
    std::string s;
    for (const auto& n : names) s += (s.empty() ? "" : ", ") + n;
    return s;
  };

  // ---------------------------------------------------------------- plots
  std::vector<std::string> written;
  auto save = [&](const std::string& name, const std::string& bytes) {
    const std::string path = (dir / name).string();
    write_file_atomic(path, bytes);
    written.push_back(path);
  };
  const bool intervals = opt.bootstrap > 0 && D > 1;
  // One labelled point per model at (figure x, figure y), with both intervals.
  auto scatter = [&](const char* file, const char* title, const char* x_label,
                     const char* y_label, int x, int y) {
    report::Plot p;
    p.title = title;
    p.x_label = x_label;
    p.y_label = y_label;
    p.legend = false;
    for (size_t i = 0; i < M; ++i) {
      report::PlotSeries s;
      s.x = {point[i][static_cast<size_t>(x)]};
      s.y = {point[i][static_cast<size_t>(y)]};
      s.lines = false;
      s.markers = true;
      s.point_labels = {models[i].name};
      if (intervals) {
        s.x_lo = {ci[i][static_cast<size_t>(x)].lo};
        s.x_hi = {ci[i][static_cast<size_t>(x)].hi};
        s.y_lo = {ci[i][static_cast<size_t>(y)].lo};
        s.y_hi = {ci[i][static_cast<size_t>(y)].hi};
      }
      p.series.push_back(s);
    }
    save(file, report::render_png(p));
  };
  scatter("pareto.png", "Mean against worst-decile regret (test split, 95% intervals)",
          "mean regret", "worst 10% of agents: mean regret (CVaR 0.1)", kMean, kWorst);
  scatter("pareto_mse.png", "Accuracy against mean regret (test split)", "MSE (normalised units)",
          "mean regret", kMse, kMean);
  {
    report::Plot p;
    p.title = "Lorenz curves of per-agent test regret";
    p.x_label = "share of agents, lowest regret first";
    p.y_label = "share of total regret";
    p.x_from_zero = p.y_from_zero = true;
    for (size_t i = 0; i < M; ++i) {
      std::vector<double> r = regret[i];
      std::sort(r.begin(), r.end());
      double total = 0;
      for (double v : r) total += v;
      report::PlotSeries s;
      char label[96];
      std::snprintf(label, sizeof label, "%s (Gini %.3f)", models[i].name.c_str(), point[i][kGini]);
      s.label = label;
      const size_t step = std::max<size_t>(1, r.size() / 400);
      double acc = 0;
      s.x.push_back(0);
      s.y.push_back(0);
      for (size_t n = 0; n < r.size(); ++n) {
        acc += r[n];
        if ((n + 1) % step == 0 || n + 1 == r.size()) {
          s.x.push_back(double(n + 1) / double(r.size()));
          s.y.push_back(total > 0 ? acc / total : 0);
        }
      }
      p.series.push_back(s);
    }
    report::PlotSeries eq;
    eq.label = "equality";
    eq.x = {0, 1};
    eq.y = {0, 1};
    eq.dashed = true;
    eq.color = 6;
    p.series.push_back(eq);
    save("lorenz.png", report::render_png(p));
  }
  if (plain >= 0 && M > 1) {
    report::Plot p;
    p.title = "Who gains, who pays: each agent's test regret against plain, sorted";
    p.x_label = "share of agents";
    p.y_label = "change in regret against plain (%)";
    const std::vector<double>& P = regret[static_cast<size_t>(plain)];
    for (size_t i = 0; i < M; ++i) {
      if (static_cast<int>(i) == plain) continue;
      std::vector<double> change;
      for (size_t n = 0; n < P.size(); ++n)
        if (P[n] > 0) change.push_back(100.0 * (regret[i][n] / P[n] - 1.0));
      std::sort(change.begin(), change.end());
      report::PlotSeries s;
      s.label = models[i].name;
      s.color = static_cast<int>(i);
      const size_t step = std::max<size_t>(1, change.size() / 400);
      for (size_t n = 0; n < change.size(); n += step) {
        s.x.push_back((n + 0.5) / double(change.size()));
        s.y.push_back(change[n]);
      }
      if (!change.empty()) {
        s.x.push_back(1.0);
        s.y.push_back(change.back());
      }
      p.series.push_back(s);
    }
    report::PlotSeries zero;
    zero.x = {0, 1};
    zero.y = {0, 0};
    zero.dashed = true;
    zero.color = 7;
    p.series.push_back(zero);
    save("gains.png", report::render_png(p));
  }

  // ---------------------------------------------------------------- report.md
  std::string md = "# eqpm report\n\n";
  long families[kFamilyCount] = {};
  for (const Agent& a : shared.population.agents) ++families[static_cast<int>(a.family)];
  std::string fam;
  for (int f = 0; f < kFamilyCount; ++f)
    if (families[f] > 0)
      fam += (fam.empty() ? "" : ", ") + std::to_string(families[f]) + " " +
             family_name(static_cast<Family>(f));
  md += "Folder `" + dir_text + "`: " + std::to_string(M) + " model" + (M == 1 ? "" : "s") + ", " +
        std::to_string(shared.population.size()) + " agents (" + fam + "), series " +
        shared.series + ".\n\n";
  md += "Test split: " + day_text(shared.first_day) + " to " + day_text(shared.last_day) +
        " UTC, " + std::to_string(D) + " days, " + std::to_string(shared.rows) +
        " forecasts. Each agent's regret is its mean per-hour regret over them, in " +
        (shared.regret_scale == "relative"
             ? "relative units (divided by its regret under the 24-hour persistence forecast)"
             : "cost units") +
        ". Means are weighted by the agents' weights; the worst decile is the weighted mean "
        "regret of the worst 10% of agents (CVaR 0.1).\n\n";
  if (intervals) {
    md += "Intervals: 95% percentile bootstrap over the " + std::to_string(D) + " test days (" +
          std::to_string(opt.bootstrap) + " resamples, seed " + std::to_string(opt.seed) +
          "). Every model is scored on the same resamples, so the changes against plain are "
          "paired. Days are the unit because an hour's regrets are correlated across agents "
          "and across nearby hours.\n\n";
  } else {
    md += "No intervals (" + std::string(D > 1 ? "--bootstrap 0" : "a single test day") + ").\n\n";
  }
  for (const ModelDays& m : models)
    if (!m.agents_csv_note.empty()) md += "> Note: " + m.agents_csv_note + "\n\n";

  md +=
      "## Models\n\n| model | objective | beta | own objective | mean regret | worst 10% | max | "
      "Gini | MSE |\n|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < M; ++i) {
    const auto& f = point[i];
    md += "| " + models[i].name + " | " +
          (static_cast<int>(i) == plain ? "mse" : models[i].objective) + " | " + models[i].beta +
          " | " + (static_cast<int>(i) == plain ? "–" : with_ci(f[kOwn], ci[i][kOwn], num)) +
          " | " + with_ci(f[kMean], ci[i][kMean], num) + " | " +
          with_ci(f[kWorst], ci[i][kWorst], num) + " | " + with_ci(f[kMax], ci[i][kMax], num) +
          " | " + with_ci(f[kGini], ci[i][kGini], num) + " | " +
          with_ci(f[kMse], ci[i][kMse], num) + " |\n";
  }
  md += "\nPareto-efficient on mean and worst-decile regret: " + efficient(kMean, kWorst) +
        ". On mean regret and MSE: " + efficient(kMean, kMse) + ".\n\n";
  md +=
      "![mean against worst-decile regret](pareto.png)\n\n![MSE against mean "
      "regret](pareto_mse.png)\n\n";
  if (intervals && M > 1)
    md += "The models' intervals move together (a test day that is hard for one model is hard "
          "for all), so overlapping intervals in these plots do not mean that two models are "
          "alike: the paired changes against plain below say whether a difference is more than "
          "day-to-day noise.\n\n";

  if (plain >= 0 && M > 1) {
    md +=
        "## Against plain\n\nChanges in the test split's figures against the plain model "
        "(`" +
        models[static_cast<size_t>(plain)].name +
        "`, trained on MSE alone). Negative is better. An interval that excludes 0 is a "
        "change the test days support.\n\n"
        "| model | mean regret | worst 10% | agents better off | median agent | 10th / 90th "
        "percentile agent |\n|---|---|---|---|---|---|\n";
    for (size_t i = 0; i < M; ++i) {
      if (static_cast<int>(i) == plain) continue;
      const auto& f = point[i];
      md += "| " + models[i].name + " | " + with_ci(f[kDMean], ci[i][kDMean], pct) + " | " +
            with_ci(f[kDWorst], ci[i][kDWorst], pct) + " | " +
            with_ci(f[kBetter], ci[i][kBetter], share) + " | " +
            with_ci(f[kMedianChange], ci[i][kMedianChange], pct) + " | " + pct(f[kP10]) + " / " +
            pct(f[kP90]) + " |\n";
    }
    md +=
        "\n### Who gains, who pays\n\nBy group: the change in the group's mean regret against "
        "plain, and the share of its agents better off.\n\n| group | agents | plain mean regret |";
    std::string rule = "|---|---|---|";
    for (size_t i = 0; i < M; ++i)
      if (static_cast<int>(i) != plain) {
        md += " " + models[i].name + " |";
        rule += "---|";
      }
    md += "\n" + rule + "\n";
    for (int g = 0; g < shared.group_count; ++g) {
      if (shared.group_size[static_cast<size_t>(g)] == 0) continue;
      md += "| " + shared.group_names[static_cast<size_t>(g)] + " | " +
            std::to_string(shared.group_size[static_cast<size_t>(g)]) + " | " +
            with_ci(point[static_cast<size_t>(plain)][group_mean(g)],
                    ci[static_cast<size_t>(plain)][group_mean(g)], num) +
            " |";
      for (size_t i = 0; i < M; ++i)
        if (static_cast<int>(i) != plain)
          md += " " + with_ci(point[i][group_change(g)], ci[i][group_change(g)], pct) + ", " +
                share(point[i][group_better(g)]) + " better |";
      md += "\n";
    }
    md += "\n![each agent's change against plain](gains.png)\n\n";
  }

  md += "## Mean regret by group\n\n| group | agents |";
  std::string rule = "|---|---|";
  for (const ModelDays& m : models) {
    md += " " + m.name + " |";
    rule += "---|";
  }
  md += "\n" + rule + "\n";
  for (int g = 0; g < shared.group_count; ++g) {
    if (shared.group_size[static_cast<size_t>(g)] == 0) continue;
    md += "| " + shared.group_names[static_cast<size_t>(g)] + " | " +
          std::to_string(shared.group_size[static_cast<size_t>(g)]) + " |";
    for (size_t i = 0; i < M; ++i)
      md += " " + with_ci(point[i][group_mean(g)], ci[i][group_mean(g)], num) + " |";
    md += "\n";
  }
  md +=
      "\n## Inequality\n\nThe Lorenz curve of each model's per-agent test regret: the closer "
      "to the diagonal, the more evenly the regret is shared (Gini in the legend and in the "
      "models table).\n\n![Lorenz curves](lorenz.png)\n";
  const std::string path = (dir / "report.md").string();
  write_file_atomic(path, md);
  written.insert(written.begin(), path);
  return written;
}

}  // namespace eqpm
