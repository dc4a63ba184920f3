// Rolling-origin backtest (backtest.hpp).
#include "host/backtest.hpp"
#include "host/sweep.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "host/beta_select.hpp"
#include "eqpm/error.hpp"
#include "host/io/io.hpp"

namespace eqpm {

Refit parse_refit(const std::string& text) {
  Refit r;
  if (text == "month") return r;
  r.month = false;
  if (text == "week") {
    r.days = 7;
    return r;
  }
  if (text.size() >= 2 && text.back() == 'd') {
    const std::string n = text.substr(0, text.size() - 1);
    if (n.find_first_not_of("0123456789") == std::string::npos && n.size() <= 5) {
      r.days = std::stoi(n);
      if (r.days >= 1) return r;
    }
  }
  throw ConfigError("--refit: expected month, week or a number of days such as 14d, got '" +
                    text + "'");
}

std::string refit_name(const Refit& r) {
  if (r.month) return "month";
  if (r.days == 7) return "week";
  return std::to_string(r.days) + "d";
}

std::string boundary_text(std::int64_t utc) {
  const std::string t = utc_text(utc);
  return t.compare(10, 10, "T00:00:00Z") == 0 ? t.substr(0, 10) : t;
}

std::vector<Fold> backtest_folds(std::int64_t from, std::int64_t to, const Refit& refit) {
  std::vector<Fold> folds;
  std::int64_t start = from;
  while (start < to) {
    std::int64_t end;
    if (refit.month) {
      const std::int64_t day = (start >= 0 ? start : start - 86399) / 86400;
      int y;
      unsigned m, d;
      civil_from_days(day, &y, &m, &d);
      const int ny = m == 12 ? y + 1 : y;
      const unsigned nm = m == 12 ? 1 : m + 1;
      end = days_from_civil(ny, nm, 1) * 86400;
    } else {
      end = start + static_cast<std::int64_t>(refit.days) * 86400;
    }
    end = std::min(end, to);
    folds.push_back({static_cast<int>(folds.size()) + 1, start, end});
    start = end;
  }
  return folds;
}

int warm_fold_epochs(int epochs) { return std::min(epochs, std::max(2, epochs / 4)); }

RunConfig fold_config(const RunConfig& run, const Fold& fold, const BacktestOptions& opt,
                      const std::string& fold_dir, bool warm) {
  RunConfig c = run;
  c.train_from = opt.window_days > 0
                     ? utc_text(fold.start - static_cast<std::int64_t>(opt.window_days) * 86400)
                     : std::string();
  c.train_until = utc_text(fold.start);
  c.test_from = utc_text(fold.start);
  c.test_until = utc_text(fold.end - 1);  // forecast starts t < end
  c.out = fold_dir;
  if (warm) {
    const int e = warm_fold_epochs(run.epochs);
    // The schedules' epoch counts shrink with the fold's epochs.
    const auto scaled = [&](int epochs) {
      return std::max(1, static_cast<int>(std::lround(double(epochs) * e / run.epochs)));
    };
    if (run.lr_decay_epochs > 0) c.lr_decay_epochs = scaled(run.lr_decay_epochs);
    c.lr_anneal_epochs = scaled(run.lr_anneal_epochs);
    c.epochs = e;
    c.warm_start_epochs = 0;
    c.average_epochs = std::min(run.average_epochs, e);
  }
  return c;
}

RunInputs fold_inputs(const RunInputs& base, const RunConfig& fold_cfg) {
  RunInputs in;
  in.series = base.series;
  in.population = base.population;
  in.demand = base.demand;
  in.reducer = base.reducer;
  in.data = build_dataset(in.series, fold_cfg.lookback, fold_cfg.horizon, split_spec(fold_cfg),
                          fold_cfg.scaling);
  apply_regret_scale(fold_cfg, in);  // relative regrets: units from this fold's training rows
  return in;
}

std::vector<double> pool_regrets(const std::vector<std::vector<double>>& per_fold,
                                 const std::vector<long>& hours) {
  if (per_fold.size() != hours.size() || per_fold.empty())
    throw Error("pool_regrets: " + std::to_string(per_fold.size()) + " folds of regrets, " +
                std::to_string(hours.size()) + " of hours");
  std::vector<double> pooled(per_fold[0].size(), 0.0);
  double total = 0;
  for (size_t k = 0; k < per_fold.size(); ++k) {
    if (per_fold[k].size() != pooled.size()) throw Error("pool_regrets: folds of different sizes");
    total += static_cast<double>(hours[k]);
    for (size_t n = 0; n < pooled.size(); ++n)
      pooled[n] += static_cast<double>(hours[k]) * per_fold[k][n];
  }
  for (double& v : pooled) v /= total;
  return pooled;
}

namespace {

// Pools a run's folds: each agent's regret averaged over every test hour.
void pool_run(BacktestRun& run) {
  std::vector<std::vector<double>> per_fold;
  std::vector<long> hours;
  double mse = 0;
  long total = 0;
  for (const auto& f : run.folds) {
    per_fold.push_back(f.regret);
    hours.push_back(f.test_rows);
    mse += f.mse * static_cast<double>(f.test_rows);
    total += f.test_rows;
  }
  run.pooled = pool_regrets(per_fold, hours);
  run.pooled_mse = mse / static_cast<double>(total);
  run.pooled_stats = regret_stats(run.pooled);
  run.pooled_stats.mse = run.pooled_mse;
}

// One chain of folds of one configuration, each fold warm-started from the previous one.
struct Chain {
  BacktestRun run;
  std::vector<RunOutcome> outcomes;  // per fold
  std::vector<RunConfig> configs;    // per fold
};

}  // namespace

BacktestResult run_backtest(const RunConfig& base, const RunInputs& in, const BacktestOptions& opt) {
  namespace fs = std::filesystem;
  BacktestResult res;
  const long T = static_cast<long>(in.series.values.size());
  // The last forecast start whose targets lie inside the series.
  const std::int64_t last_start = series_time(in.series, T - base.horizon);
  const std::int64_t to = std::min(opt.to, last_start + 3600);
  if (opt.from >= to)
    throw ConfigError("--from " + boundary_text(opt.from) + ": no forecast starts in [--from, --to) " +
                      "inside the series (its last forecast start is " + utc_text(last_start) + ")");
  res.folds = backtest_folds(opt.from, to, opt.refit);

  // Trains `cfg` on every fold into opt.out/<dir_name>/fold-<k>/; false when a signal
  // stopped it (res.stopped_run then holds that fold's outcome).
  auto train_chain = [&](const std::string& name, const std::string& dir_name,
                         const RunConfig& run_cfg, Chain* chain) {
    chain->run.name = name;
    chain->run.q = run_cfg.q;
    chain->run.beta = run_cfg.beta;
    std::vector<float> previous;
    for (const Fold& fold : res.folds) {
      const bool warm = opt.warm_start && !previous.empty();
      const std::string dir =
          (fs::path(opt.out) / dir_name / ("fold-" + std::to_string(fold.index))).string();
      const RunConfig cfg = fold_config(run_cfg, fold, opt, dir, warm);
      RunInputs fin;
      try {
        fin = fold_inputs(in, cfg);
      } catch (const Error& e) {
        throw Error("fold " + std::to_string(fold.index) + " (" + boundary_text(fold.start) +
                    " to " + boundary_text(fold.end) + "): " + e.what());
      }
      if (in.writes_files()) fs::create_directories(dir);
      if (!cfg.quiet)
        std::fprintf(stderr, "[backtest] %s fold %d/%zu: test %s to %s (%ld hours), %ld training rows%s\n",
                     dir_name.c_str(), fold.index, res.folds.size(),
                     boundary_text(fold.start).c_str(), boundary_text(fold.end).c_str(),
                     fin.data.test_rows(), fin.data.train_rows,
                     warm ? (", warm start: " + std::to_string(cfg.epochs) + " epochs").c_str() : "");
      RunOutcome o = train_run(cfg, fin, "", warm ? previous : std::vector<float>());
      if (o.interrupted_at >= 0) {
        res.stopped = true;
        res.stopped_run = std::move(o);
        return false;
      }
      FoldResult fr;
      fr.fold = fold;
      fr.dir = dir;
      fr.train_rows = fin.data.train_rows;
      fr.test_rows = fin.data.test_rows();
      fr.train_last_target = series_time(
          in.series, fin.data.t[static_cast<size_t>(fin.data.train_end() - 1)] + cfg.horizon - 1);
      fr.test_first_start =
          series_time(in.series, fin.data.t[static_cast<size_t>(fin.data.test_begin)]);
      fr.regret = o.test.regret;
      fr.val_regret = o.validation.regret;
      fr.mse = o.test.mse;
      fr.beta = cfg.beta;
      fr.stats = o.test_stats;
      chain->run.folds.push_back(std::move(fr));
      previous = o.params;
      chain->outcomes.push_back(std::move(o));
      chain->configs.push_back(cfg);
    }
    pool_run(chain->run);
    return true;
  };

  Chain plain;
  {
    RunConfig c = base;
    c.beta_auto = false;
    c.beta = 1.0;
    c.q = 0.0;
    if (!train_chain("plain", "plain", c, &plain)) return res;
    res.runs.push_back(plain.run);
  }
  const std::vector<double> weights = in.population.weights();
  const std::vector<int> groups = in.population.groups();
  for (const std::string& spec : opt.objectives) {
    const std::string name = sweep_run_name(spec);
    RunConfig c = base;
    set_option(c, "objective", spec, "--objective");
    const double q = c.q;
    const auto objective = run_objective(c);
    if (!base.beta_auto) {
      Chain chain;
      if (!train_chain(name, name, c, &chain)) return res;
      chain.run.objective = spec;
      res.runs.push_back(std::move(chain.run));
      continue;
    }
    // One chain per beta below 1; plain stands for beta = 1.
    std::vector<Chain> chains;
    std::vector<const Chain*> cands;
    for (double b : base.beta_grid) {
      if (b >= 1.0) continue;
      chains.emplace_back();
      if (!train_chain(name, (fs::path(name) / beta_folder(b)).string(), candidate_config(c, b),
                       &chains.back()))
        return res;
    }
    for (const auto& ch : chains) cands.push_back(&ch);
    for (double b : base.beta_grid)
      if (b >= 1.0) cands.push_back(&plain);
    BacktestRun run;
    run.name = name;
    run.objective = spec;
    run.q = q;
    run.beta = -1;  // per fold
    for (size_t k = 0; k < res.folds.size(); ++k) {
      std::vector<BetaCandidate> bc;
      for (const Chain* ch : cands)
        bc.push_back(beta_candidate(ch->run.folds[k].beta, ch->outcomes[k]));
      const BetaChoice choice = choose_beta(bc, weights, *objective, groups);
      for (size_t i = 0; i < bc.size(); ++i)
        res.beta_auto.push_back({name, spec, q, res.folds[k].index, bc[i].beta, choice.val_mq[i],
                                 choice.val_se[i], choice.test_mq[i], i == choice.index});
      const Chain& best = *cands[choice.index];
      // Ship the chosen model into <run>/fold-<k>/ under the run's own q and the chosen beta.
      RunConfig shipped = best.configs[k];
      shipped.q = q;
      shipped.objective = c.objective;
      shipped.beta_auto = false;
      shipped.out = (fs::path(opt.out) / name / ("fold-" + std::to_string(k + 1))).string();
      write_run_outputs(shipped, fold_inputs(in, shipped), best.outcomes[k]);
      FoldResult fr = best.run.folds[k];
      fr.dir = shipped.out;
      run.folds.push_back(std::move(fr));
    }
    pool_run(run);
    res.runs.push_back(std::move(run));
  }
  return res;
}

std::string backtest_csv(const BacktestResult& r) {
  std::string s = "run,q,beta,fold_start,fold_end,mean,var,p95,max,mse,objective\n";
  auto row = [&](const BacktestRun& run, const std::string& beta, const std::string& start,
                 const std::string& end, const RegretStats& st, double mse) {
    const bool power = run.objective.rfind("power:", 0) == 0;
    s += run.name + "," + (power ? format_double(run.q) : std::string()) + "," + beta + "," +
         start + "," + end + "," + format_double(st.mean) + "," + format_double(st.var) + "," +
         format_double(st.p95) + "," + format_double(st.max) + "," + format_double(mse) + "," +
         run.objective + "\n";
  };
  for (const auto& run : r.runs) {
    bool same = true;
    for (const auto& f : run.folds) {
      row(run, format_double(f.beta), boundary_text(f.fold.start), boundary_text(f.fold.end),
          f.stats, f.mse);
      same = same && f.beta == run.folds.front().beta;
    }
    row(run, same && !run.folds.empty() ? format_double(run.folds.front().beta) : "auto", "all",
        "", run.pooled_stats, run.pooled_mse);
  }
  return s;
}

std::string beta_auto_csv(const BacktestResult& r) {
  std::string s = "run,q,fold_start,beta,val_power_mean,val_se,test_power_mean,chosen,objective\n";
  for (const auto& b : r.beta_auto)
    s += b.run + "," + (b.objective.rfind("power:", 0) == 0 ? format_double(b.q) : std::string()) +
         "," + boundary_text(r.folds[static_cast<size_t>(b.fold - 1)].start) + "," +
         format_double(b.beta) + "," + format_double(b.val_mq) + "," + format_double(b.val_se) +
         "," + format_double(b.test_mq) + "," + (b.chosen ? "1" : "0") + "," + b.objective + "\n";
  return s;
}

std::string backtest_table(const BacktestResult& r, const BacktestOptions& opt) {
  std::string s;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "\nbacktest: %zu folds from %s to %s, refit every %s, %s training window, %s\n",
                r.folds.size(), boundary_text(r.folds.front().start).c_str(),
                boundary_text(r.folds.back().end).c_str(), refit_name(opt.refit).c_str(),
                opt.window_days > 0 ? (std::to_string(opt.window_days) + "-day sliding").c_str()
                                    : "expanding",
                opt.warm_start ? "later folds warm-started" : "every fold trained from scratch");
  s += buf;
  s += "\nper-fold test regret (mean / max):\n";
  std::snprintf(buf, sizeof buf, "%-12s %7s", "fold", "hours");
  s += buf;
  for (const auto& run : r.runs) {
    std::snprintf(buf, sizeof buf, " %23s", run.name.c_str());
    s += buf;
  }
  s += "\n";
  for (size_t k = 0; k < r.folds.size(); ++k) {
    const long hours = r.runs.empty() ? 0 : r.runs[0].folds[k].test_rows;
    std::snprintf(buf, sizeof buf, "%-12s %7ld", boundary_text(r.folds[k].start).c_str(), hours);
    s += buf;
    for (const auto& run : r.runs) {
      std::snprintf(buf, sizeof buf, " %11.5g / %9.5g", run.folds[k].stats.mean, run.folds[k].stats.max);
      s += buf;
    }
    s += "\n";
  }
  s += "\npooled over all test hours (each agent's regret averaged over every fold's hours;\n"
       "change against plain in brackets):\n";
  int width = 8;  // as wide as the longest run name ("group-power=4")
  for (const auto& run : r.runs) width = std::max(width, static_cast<int>(run.name.size()));
  std::snprintf(buf, sizeof buf, "%-*s %11s %10s %11s %10s %11s %11s %11s\n", width, "run", "mean",
                "", "max", "", "p95", "var", "mse");
  s += buf;
  const RegretStats* plain = nullptr;
  for (const auto& run : r.runs)
    if (run.name == "plain") plain = &run.pooled_stats;
  auto rel = [](double v, double ref) {
    char b[32];
    if (ref > 0) std::snprintf(b, sizeof b, "(%+.1f%%)", 100.0 * (v / ref - 1.0));
    else b[0] = '\0';
    return std::string(b);
  };
  for (const auto& run : r.runs) {
    const RegretStats& st = run.pooled_stats;
    const bool is_plain = &st == plain || !plain;
    std::snprintf(buf, sizeof buf, "%-*s %11.5g %10s %11.5g %10s %11.5g %11.5g %11.5g\n", width,
                  run.name.c_str(), st.mean, is_plain ? "" : rel(st.mean, plain->mean).c_str(),
                  st.max, is_plain ? "" : rel(st.max, plain->max).c_str(), st.p95, st.var, st.mse);
    s += buf;
  }
  if (!r.beta_auto.empty()) {
    // Which beta each fold's validation chose, and whether the test month agreed: the
    // chosen candidate the best on the test month's objective, and at least as good as
    // plain there.
    s += "\nbeta auto (the validation objective picks per fold; test: its rank on the test "
         "month's objective):\n";
    std::vector<std::string> names;
    for (const auto& b : r.beta_auto)
      if (std::find(names.begin(), names.end(), b.run) == names.end()) names.push_back(b.run);
    for (const auto& name : names) {
      std::string picks;
      int best_on_test = 0, not_worse = 0, folds = 0;
      for (const auto& f : r.folds) {
        const BetaAutoRow* chosen = nullptr;
        double best_test = INFINITY, plain_test = NAN;
        for (const auto& b : r.beta_auto) {
          if (b.run != name || b.fold != f.index) continue;
          if (b.chosen) chosen = &b;
          best_test = std::min(best_test, b.test_mq);
          if (b.beta >= 1.0) plain_test = b.test_mq;
        }
        if (!chosen) continue;
        ++folds;
        picks += (picks.empty() ? "" : " ") + format_double(chosen->beta);
        best_on_test += chosen->test_mq <= best_test;
        not_worse += !(chosen->test_mq > plain_test);
      }
      std::snprintf(buf, sizeof buf,
                    "%-*s betas by fold: %s; best on test in %d of %d folds, no worse than "
                    "plain in %d of %d\n",
                    width, name.c_str(), picks.c_str(), best_on_test, folds, not_worse, folds);
      s += buf;
    }
  }
  return s;
}

namespace {

// Reads DIR/backtest.csv; one panel of per-fold mean regret and one of max per run.
const char* kPlotScript = R"PY(
import csv, os, sys
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit(3)
d = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(d, "backtest.csv"))))
runs = []
for r in rows:
    if r["run"] not in runs:
        runs.append(r["run"])
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, key in zip(axes, ["mean", "max"]):
    for run in runs:
        pts = [r for r in rows if r["run"] == run and r["fold_start"] != "all"]
        ax.plot([p["fold_start"] for p in pts], [float(p[key]) for p in pts], marker="o",
                label=run, linestyle="--" if run == "plain" else "-")
    ax.set_title("per-agent test regret: " + key + " per fold")
    ax.set_xlabel("fold start")
    ax.set_ylabel(key + " regret")
    ax.tick_params(axis="x", rotation=45)
    ax.grid(alpha=0.3)
axes[0].legend()
fig.tight_layout()
out = os.path.join(d, "backtest.png")
fig.savefig(out, dpi=120, metadata={"Software": None})
print(out)
)PY";

}  // namespace

bool plot_backtest(const std::string& dir, std::string* message) {
  namespace fs = std::filesystem;
  const fs::path script = fs::path(dir) / ".plot_backtest.py";
  {
    FILE* f = std::fopen(script.c_str(), "w");
    if (!f) {
      *message = "cannot write " + script.string();
      return false;
    }
    std::fputs(kPlotScript, f);
    std::fclose(f);
  }
  auto quoted = [](const std::string& text) {
    std::string q = "'";
    for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  // The system's Python first: tools/setup.sh installs matplotlib for it (Debian's
  // python3-matplotlib), which a python3 earlier on PATH (a virtual environment) may lack.
  // EQPM_PYTHON names another interpreter.
  const char* env = std::getenv("EQPM_PYTHON");
  const std::string python = env && *env ? env : fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
  const std::string cmd = quoted(python) + " " + quoted(script.string()) + " " + quoted(dir) + " >/dev/null 2>&1";
  const int rc = std::system(cmd.c_str());
  std::error_code ec;
  fs::remove(script, ec);
  const int status = rc == -1 ? -1 : WEXITSTATUS(rc);
  if (status == 0) return true;
  if (status == 3) *message = "python3 cannot import matplotlib (Debian: python3-matplotlib)";
  else if (status == 127) *message = "python3 was not found";
  else *message = "the plotting script failed (exit status " + std::to_string(status) + ")";
  return false;
}

}  // namespace eqpm
