// Loading a run's inputs, training, evaluating and writing the output folder (run.hpp).
#include "host/run.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "host/io/atomic_file.hpp"
#include "host/io/checkpoint.hpp"
#include "eqpm/error.hpp"
#include "host/interrupt.hpp"
#include "host/io/io.hpp"
#include "eqpm/objective.hpp"
#include "host/paper_metric.hpp"
#include "host/regret_scale.hpp"

namespace eqpm {

std::string format_double(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
  return format_number(v);
}

namespace {
std::string json_number(double v) { return std::isfinite(v) ? format_double(v) : "null"; }
}  // namespace

RunInputs load_inputs(const RunConfig& cfg) {
  validate(cfg);
  RunInputs in;
  if (cfg.series.empty()) {
    in.series = synthetic_series(cfg.series_hours, cfg.data_seed);
  } else {
    SeriesLoadInfo info;
    in.series = load_series_csv(cfg.series, cfg.column, cfg.max_gap, &info);
    in.notes.push_back(cfg.series + ": " + std::to_string(info.rows) + " rows" +
                       (info.note.empty() ? "" : "; " + info.note));
  }
  if (!cfg.test_series.empty()) {
    if (cfg.series.empty())
      throw ConfigError("--test-series: needs --series, the file it continues (the synthetic "
                        "series has no file to continue)");
    SeriesLoadInfo info;
    const Series test = load_series_csv(cfg.test_series, cfg.column, cfg.max_gap, &info);
    in.notes.push_back(cfg.test_series + ": " + std::to_string(info.rows) + " rows (test period)" +
                       (info.note.empty() ? "" : "; " + info.note));
    const std::int64_t first = test.utc_seconds.front();
    Series& s = in.series;
    size_t keep = 0;
    while (keep < s.utc_seconds.size() && s.utc_seconds[keep] < first) ++keep;
    if (keep == 0)
      throw InputError(cfg.test_series, 2, 1,
                       "the test period starts at " + utc_text(first) + ", not after the first hour of " +
                           cfg.series + " (" + utc_text(s.utc_seconds.front()) + ")");
    if (s.utc_seconds[keep - 1] != first - 3600)
      throw InputError(cfg.test_series, 2, 1,
                       "the test period starts at " + utc_text(first) + " with " +
                           std::to_string((first - s.utc_seconds[keep - 1]) / 3600 - 1) +
                           " missing hours after " + cfg.series + " ends (" +
                           utc_text(s.utc_seconds[keep - 1]) +
                           "); the forecasts need the hours before it, so the files must be "
                           "contiguous");
    s.values.resize(keep);
    s.hour_of_day.resize(keep);
    s.utc_seconds.resize(keep);
    s.values.insert(s.values.end(), test.values.begin(), test.values.end());
    s.hour_of_day.insert(s.hour_of_day.end(), test.hour_of_day.begin(), test.hour_of_day.end());
    s.utc_seconds.insert(s.utc_seconds.end(), test.utc_seconds.begin(), test.utc_seconds.end());
    s.filled += test.filled;
    s.source += " + " + test.source;
    in.test_series_start = first;
  }
  if (cfg.demand_profile.empty()) {
    in.demand = synthetic_demand_profile();
  } else {
    in.demand = load_demand_profile(cfg.demand_profile);
    in.notes.push_back(cfg.demand_profile + ": demand profile of " +
                       std::to_string(in.demand.size()) + " hours (mean 1)");
  }
  if (!cfg.population.empty()) {
    in.population = read_population_csv(cfg.population, cfg.horizon);
    in.notes.push_back(cfg.population + ": " + std::to_string(in.population.size()) + " agents");
  } else if (cfg.agents > 0) {
    in.population = generate_population(cfg, static_cast<long>(in.demand.size()));
  }
  if (!cfg.ev_sessions.empty()) {
    EvSessionStats st;
    const auto ev = load_ev_sessions(cfg.ev_sessions, cfg.horizon, cfg.ev_sample, cfg.pop_seed, &st);
    in.population.agents.insert(in.population.agents.end(), ev.begin(), ev.end());
    in.notes.push_back(cfg.ev_sessions + ": " + std::to_string(st.total) + " sessions, kept " +
                       std::to_string(st.kept) + " (skipped " +
                       std::to_string(st.skipped_unparseable) + " unparseable, " +
                       std::to_string(st.skipped_inconsistent) + " inconsistent, " +
                       std::to_string(st.skipped_duration) + " outside 3-12 h), using " +
                       std::to_string(ev.size()));
  }
  validate_population(in.population, cfg.horizon,
                      cfg.population.empty() ? std::string("population") : cfg.population);
  in.data = build_dataset(in.series, cfg.lookback, cfg.horizon, input_split(cfg, in), cfg.scaling);
  apply_regret_scale(cfg, in);
  return in;
}

void apply_regret_scale(const RunConfig& cfg, RunInputs& in) {
  in.regret_unit.clear();
  in.relative_population = Population{};
  if (cfg.regret_scale != RegretScale::relative) return;
  in.regret_unit = persistence_regrets(in.population, in.demand, static_cast<float>(cfg.floor),
                                       in.data, cfg.series.empty() ? "synthetic series" : cfg.series);
  in.relative_population = rescale_regrets(in.population, in.regret_unit);
}

bool use_model_normalisation(const std::map<std::string, std::string>& metadata,
                             const RunConfig& cfg, RunInputs& in) {
  const auto off = metadata.find("eqpm.offset"), sc = metadata.find("eqpm.scale");
  if (off == metadata.end() || sc == metadata.end()) return false;
  const double os[2] = {std::strtod(off->second.c_str(), nullptr),
                        std::strtod(sc->second.c_str(), nullptr)};
  if (os[0] != in.data.offset || os[1] != in.data.scale) {
    in.data = build_dataset(in.series, cfg.lookback, cfg.horizon, input_split(cfg, in), cfg.scaling, os);
    apply_regret_scale(cfg, in);
  }
  return true;
}

SplitSpec input_split(const RunConfig& cfg, const RunInputs& in) {
  SplitSpec sp = split_spec(cfg);
  if (in.test_series_start != 0 && !sp.has_test_from && !sp.has_train_until) {
    sp.has_test_from = true;
    sp.test_from = in.test_series_start;
  }
  return sp;
}

Problem make_problem(const RunConfig& cfg, const RunInputs& in) {
  Problem p;
  p.data = &in.data;
  p.population = &in.scored_population();
  p.demand = in.demand;
  p.layout = make_mlp_layout(in.data.input_dim(), cfg.hidden, cfg.horizon, cfg.activation);
  p.samples = cfg.samples;
  p.antithetic = cfg.antithetic;
  p.sigma = static_cast<float>(cfg.sigma);
  p.floor = static_cast<float>(cfg.floor);
  p.estimator = cfg.estimator;
  p.ev_gradient = cfg.ev_gradient;
  p.q = cfg.q;
  p.objective = run_objective(cfg);
  p.rho = cfg.rho;
  p.seed = cfg.seed;
  p.max_batch = cfg.batch;
  p.adam_beta1 = cfg.adam_beta1;
  p.adam_beta2 = cfg.adam_beta2;
  p.adam_eps = cfg.adam_eps;
  p.weight_decay = cfg.weight_decay;
  p.grad_clip = cfg.grad_clip;
  p.cuda_graphs = cfg.cuda_graphs;
  p.regret_path = cfg.regret_path;
  p.reducer = in.reducer;
  p.fast_reduce = cfg.fast_reduce;
  return p;
}

// ------------------------------------------------------------------ progress
ProgressLog::ProgressLog(const RunConfig& cfg, std::string label)
    : cfg_(cfg), label_(std::move(label)), tty_(isatty(STDERR_FILENO) != 0) {}

namespace {
std::string duration_text(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%.0fs", s);
  return buf;
}
double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
thread_local const ProgressObserver::Fn* progress_observer = nullptr;
}  // namespace

ProgressObserver::ProgressObserver(Fn fn) : fn_(std::move(fn)), previous_(progress_observer) {
  progress_observer = &fn_;
}
ProgressObserver::~ProgressObserver() { progress_observer = previous_; }
const ProgressObserver::Fn* ProgressObserver::current() { return progress_observer; }

void ProgressLog::step(const Progress& p) {
  if (const ProgressObserver::Fn* observer = ProgressObserver::current()) (*observer)(label_, p);
  if (cfg_.quiet || cfg_.log_json) return;
  const double now = now_seconds();
  const bool last = p.step == p.total_steps;
  if (!last && now - last_print_ < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  char buf[320];
  // The warm start trains on MSE alone and computes no regrets: show what it optimises.
  if (p.epoch < cfg_.warm_start_epochs)
    std::snprintf(buf, sizeof buf,
                  "%s epoch %d/%d step %ld/%ld warm start: mse %.4g | %.1f steps/s ETA %s",
                  label_.c_str(), p.epoch + 1, p.epochs, p.step, p.total_steps, p.last.mse,
                  p.steps_per_second, duration_text(p.eta_seconds).c_str());
  else
    std::snprintf(buf, sizeof buf,
                  "%s epoch %d/%d step %ld/%ld loss %.4g mean regret %.4g max %.4g | %.1f steps/s "
                  "ETA %s",
                  label_.c_str(), p.epoch + 1, p.epochs, p.step, p.total_steps, p.last.loss,
                  p.last.mean_regret, p.last.max_regret, p.steps_per_second,
                  duration_text(p.eta_seconds).c_str());
  if (tty_) {
    std::fprintf(stderr, "\r\033[K%s", buf);
    dirty_ = true;
  } else {
    std::fprintf(stderr, "%s\n", buf);
  }
}

void ProgressLog::epoch(const EpochMetrics& m) {
  if (cfg_.quiet) return;
  if (cfg_.log_json) {
    std::fprintf(stderr,
                 "{\"run\": \"%s\", \"epoch\": %d, \"step\": %ld, \"loss\": %s, \"power_mean\": %s, "
                 "\"mean\": %s, \"var\": %s, \"max\": %s, \"mse\": %s, \"seconds\": %s, "
                 "\"objective\": %s}\n",
                 label_.c_str(), m.epoch, m.step, json_number(m.loss).c_str(),
                 json_number(m.power_mean).c_str(), json_number(m.mean).c_str(),
                 json_number(m.var).c_str(), json_number(m.max).c_str(),
                 json_number(m.mse).c_str(), json_number(m.seconds).c_str(),
                 json_number(m.objective).c_str());
  }
}

void ProgressLog::note(const std::string& text) {
  if (cfg_.quiet) return;
  if (dirty_) std::fprintf(stderr, "\n");
  dirty_ = false;
  if (cfg_.log_json) {
    std::string esc;
    for (char c : text) esc += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    std::fprintf(stderr, "{\"run\": \"%s\", \"note\": \"%s\"}\n", label_.c_str(), esc.c_str());
  } else {
    std::fprintf(stderr, "%s %s\n", label_.c_str(), text.c_str());
  }
}

void ProgressLog::finish() {
  if (dirty_) std::fprintf(stderr, "\n");
  dirty_ = false;
}

// ------------------------------------------------------------------ output files
std::string agents_csv(const Population& p, const EvalResult& test, const EvalResult& train,
                       const EvalResult* validation, const std::vector<double>& regret_unit) {
  const bool val = validation && validation->regret.size() == static_cast<size_t>(p.size());
  const bool unit = regret_unit.size() == static_cast<size_t>(p.size());
  std::string s = "agent,family,regret,train_regret";
  s += val ? ",val_regret" : "";
  s += unit ? ",naive_regret\n" : "\n";
  for (long n = 0; n < p.size(); ++n) {
    s += std::to_string(n) + "," + family_name(p.agents[static_cast<size_t>(n)].family) + "," +
         format_double(test.regret[static_cast<size_t>(n)]) + "," +
         format_double(train.regret[static_cast<size_t>(n)]);
    if (val) s += "," + format_double(validation->regret[static_cast<size_t>(n)]);
    if (unit) s += "," + format_double(regret_unit[static_cast<size_t>(n)]);
    s += "\n";
  }
  return s;
}

std::string metrics_csv(const std::vector<EpochMetrics>& epochs) {
  std::string s = "epoch,step,loss,power_mean,mean,var,max,mse,seconds,objective\n";
  for (const auto& m : epochs)
    s += std::to_string(m.epoch) + "," + std::to_string(m.step) + "," + format_double(m.loss) +
         "," + format_double(m.power_mean) + "," + format_double(m.mean) + "," +
         format_double(m.var) + "," + format_double(m.max) + "," + format_double(m.mse) + "," +
         format_double(m.seconds) + "," + format_double(m.objective) + "\n";
  return s;
}

std::map<std::string, std::string> model_metadata(const RunConfig& cfg, const Dataset& d) {
  std::map<std::string, std::string> m = {{"eqpm.version", EQPM_VERSION},
          {"eqpm.lookback", std::to_string(cfg.lookback)},
          {"eqpm.horizon", std::to_string(cfg.horizon)},
          {"eqpm.activation", activation_name(cfg.activation)},
          {"eqpm.scaling", cfg.scaling == Scaling::mean ? "mean" : "paper"},
          {"eqpm.offset", format_double(d.offset)},
          {"eqpm.scale", format_double(d.scale)},
          {"eqpm.config", config_to_json(cfg)}};
  // Input paths as a configuration file wrote them (eqpm.config holds them resolved).
  for (const auto& [key, given] : cfg.given_paths) m["eqpm.given_path." + key] = given;
  return m;
}

namespace {

// A stats object (stats_to_json) with the weighted statistics appended: weighted_mean =
// sum w_n R_n / sum w_n, power_mean = M_q at the run's q with the agents' weights, and
// objective_value = the run's objective F (the quantity it minimises; M_q for power:q). The
// other statistics count every agent once.
std::string with_weighted(std::string obj, const std::vector<double>& R, const Population& p,
                          const RunConfig& cfg) {
  const double q = cfg.q;
  std::vector<double> w(p.agents.size());
  double sw = 0, swr = 0;
  for (size_t n = 0; n < w.size() && n < R.size(); ++n) {
    w[n] = p.agents[n].weight;
    sw += w[n];
    swr += w[n] * R[n];
  }
  if (obj.empty() || obj.back() != '}' || R.size() != w.size()) return obj;
  obj.pop_back();
  obj += ", \"weighted_mean\": " + json_number(sw > 0 ? swr / sw : 0.0) + ", \"power_mean\": " +
         json_number(power_mean(R.data(), w.data(), static_cast<long>(w.size()), q)) +
         ", \"objective_value\": " + json_number(objective_of(*run_objective(cfg), R, w, p.groups())) + "}";
  return obj;
}

}  // namespace

std::string summary_json(const RunConfig& cfg, const RunInputs& in, const RunOutcome& o) {
  RegretStats test = o.test_stats, train = o.train_stats;
  std::string s = "{\n  \"config\": " + config_to_json(cfg) + ",\n";
  s += "  \"version\": \"" EQPM_VERSION "\",\n";
  s += "  \"backend\": \"" + o.backend + "\",\n";
  s += "  \"scaling\": \"" + std::string(cfg.scaling == Scaling::mean ? "mean" : "paper") + "\",\n";
  s += "  \"data\": {\"source\": \"" + in.series.source + "\", \"hours\": " +
       std::to_string(in.series.values.size()) + ", \"filled\": " +
       std::to_string(in.series.filled) + ", \"rows\": " + std::to_string(in.data.rows) +
       ", \"train_rows\": " + std::to_string(in.data.train_rows) + ", \"fit_rows\": " +
       std::to_string(in.data.fit_rows) + ", \"train_begin\": " +
       std::to_string(in.data.train_begin) + ", \"test_begin\": " +
       std::to_string(in.data.test_begin) + ", \"test_rows\": " +
       std::to_string(in.data.test_rows()) + ", \"train_first\": \"" +
       utc_text(series_time(in.series, in.data.t[static_cast<size_t>(in.data.train_begin)])) +
       "\", \"train_last\": \"" +
       utc_text(series_time(in.series, in.data.t[static_cast<size_t>(in.data.train_end() - 1)])) +
       "\", \"test_first\": \"" +
       utc_text(series_time(in.series, in.data.t[static_cast<size_t>(in.data.test_begin)])) +
       "\", \"test_last\": \"" +
       utc_text(series_time(in.series, in.data.t[static_cast<size_t>(in.data.test_end - 1)])) +
       "\", \"offset\": " + json_number(in.data.offset) +
       ", \"scale\": " + json_number(in.data.scale) + "},\n";
  s += "  \"population\": {\"agents\": " + std::to_string(in.population.size());
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    s += ", \"" + std::string(F::name) + "\": " + std::to_string(in.population.count(F::tag));
  });
  s += "},\n";
  s += "  \"train\": {\"steps\": " + std::to_string(o.train.steps) + ", \"seconds\": " +
       json_number(o.train.seconds) + ", \"skipped_steps\": " +
       std::to_string(o.train.skipped_steps) + ", \"steps_per_second\": " +
       json_number(o.train.seconds > 0 ? o.train.steps / o.train.seconds : 0) + "},\n";
  s += "  \"metric\": \"" + std::string(o.metric == EvalMetric::paper_mean ? "paper-mean" : "per-hour") +
       "\",\n";
  s += "  \"objective\": \"" + json_escape(objective_spec(cfg)) + "\",\n";
  s += "  \"test\": " + with_weighted(stats_to_json(test), o.test.regret, in.population, cfg) +
       ",\n";
  s += "  \"train_split\": " +
       with_weighted(stats_to_json(train), o.train_split.regret, in.population, cfg) + ",\n";
  // Each input path as given (on the command line, or in a configuration file relative to
  // its folder) and as resolved to an absolute path.
  s += "  \"resolved_paths\": {";
  bool first = true;
  for (const char* key : kInputPathKeys) {
    const std::string used = find_option(key)->get(cfg);
    if (used.empty()) continue;
    const auto g = cfg.given_paths.find(key);
    const std::string given = g != cfg.given_paths.end() ? g->second : used;
    std::error_code ec;
    std::filesystem::path abs = std::filesystem::absolute(used, ec);
    const std::string resolved = ec ? used : abs.lexically_normal().string();
    s += std::string(first ? "" : ", ") + "\"" + key + "\": {\"given\": \"" + json_escape(given) +
         "\", \"resolved\": \"" + json_escape(resolved) + "\"}";
    first = false;
  }
  s += "},\n";
  s += "  \"test_original_units\": {\"mse\": " + json_number(test.mse * in.data.scale * in.data.scale) +
       ", \"mae\": " + json_number(test.mae * in.data.scale) + "}\n}\n";
  return s;
}

namespace {

std::string write_text(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  write_file_atomic(path, text);
  return path;
}

void evaluate_splits(Backend& backend, const Trainer& trainer, RunOutcome& o,
                     const RunConfig& cfg, const RunInputs& in) {
  o.test = backend.evaluate(trainer.test_rows());
  o.train_split = backend.evaluate(trainer.train_rows());
  o.validation = backend.evaluate(trainer.validation_rows());
  {
    const std::vector<long> val = trainer.validation_rows();
    o.validation_days.clear();
    o.validation_day_rows.clear();
    for (size_t b = 0; b < val.size(); b += 24) {
      const std::vector<long> day(val.begin() + static_cast<long>(b),
                                  val.begin() + static_cast<long>(std::min(val.size(), b + 24)));
      o.validation_days.push_back(backend.evaluate(day).regret);
      o.validation_day_rows.push_back(static_cast<long>(day.size()));
    }
  }
  if (o.metric == EvalMetric::paper_mean) {
    // Same forecasts, each agent scored on the split's mean forecast (MSE and MAE stay
    // those of the per-hour forecasts).
    auto paper = [&](const std::vector<long>& rows, EvalResult& e) {
      e.regret = paper_mean_regrets(in.scored_population(), in.demand, static_cast<float>(cfg.floor),
                                    in.data, rows, backend.predict(rows));
    };
    paper(trainer.test_rows(), o.test);
    paper(trainer.train_rows(), o.train_split);
    paper(trainer.validation_rows(), o.validation);
  }
  o.test_stats = regret_stats(o.test.regret);
  o.test_stats.mse = o.test.mse;
  o.test_stats.mae = o.test.mae;
  o.train_stats = regret_stats(o.train_split.regret);
  o.train_stats.mse = o.train_split.mse;
  o.train_stats.mae = o.train_split.mae;
}

void write_outputs(const RunConfig& cfg, const RunInputs& in, const RunOutcome& o,
                   const MlpLayout& layout) {
  const std::string& dir = cfg.out;
  save_model((std::filesystem::path(dir) / "model.safetensors").string(), layout, o.params,
             model_metadata(cfg, in.data));
  std::ostringstream pop, dem;
  write_population_csv(in.population, pop);
  write_text(dir, "population.csv", pop.str());
  write_demand_profile_csv(in.demand, dem);
  write_text(dir, "demand_profile.csv", dem.str());
  write_text(dir, "agents.csv", agents_csv(in.population, o.test, o.train_split, &o.validation, in.regret_unit));
  write_text(dir, "summary.json", summary_json(cfg, in, o));
}

}  // namespace

void write_run_outputs(const RunConfig& cfg, const RunInputs& in, const RunOutcome& o) {
  if (cfg.out.empty()) throw Error("write_run_outputs: no output folder");
  if (!in.writes_files()) return;
  std::filesystem::create_directories(cfg.out);
  write_outputs(cfg, in, o,
                make_mlp_layout(in.data.input_dim(), cfg.hidden, cfg.horizon, cfg.activation));
  write_text(cfg.out, "metrics.csv", metrics_csv(o.train.epochs));
}

RunOutcome train_run(const RunConfig& cfg, const RunInputs& in, const std::string& resume_from,
                     const std::vector<float>& initial_params) {
  RunStart start;
  start.checkpoint = resume_from;
  start.initial_params = initial_params;
  return train_run(cfg, in, start);
}

RunOutcome train_run(const RunConfig& cfg, const RunInputs& in, const RunStart& start) {
  const std::string& resume_from = start.checkpoint;
  const std::vector<float>& initial_params = start.initial_params;
  const bool resuming = !resume_from.empty() || start.state;
  if (cfg.beta_auto)  // a run trains one beta; beta_select.hpp trains the grid
    throw ConfigError("--beta auto: train_run takes one beta (see train_beta_auto)");
  RunOutcome o;
  o.out_dir = cfg.out;
  auto backend = make_backend(cfg.backend, cfg.threads);
  o.backend = backend->name();
  const Problem problem = make_problem(cfg, in);
  const bool shared = problem.reducer && problem.reducer->size() > 1;
  if (shared && o.backend != "cpu")
    throw ConfigError("--backend " + cfg.backend + ": across MPI ranks only the cpu backend "
                      "shares out agents (not yet the " + o.backend + " backend); give --backend cpu");
  backend->setup(problem);
  // Every rank trains a replica of the model from the same seed and the same gradients, so
  // the replicas must be equal bit for bit; a difference means the ranks run different
  // programs or inputs, and would silently make the result depend on the rank count.
  auto check_replicas = [&](const std::vector<float>& params, const std::string& when) {
    if (shared && !same_everywhere(*problem.reducer, params.data(), params.size() * sizeof(float)))
      throw Error("MPI ranks hold different model parameters " + when +
                  " (every rank must run the same eqpm on the same inputs)");
  };
  if (!initial_params.empty() && !resuming) {
    BackendState st = backend->state();
    if (initial_params.size() != st.params.size())
      throw Error("initial weights: " + std::to_string(initial_params.size()) +
                  " parameters, the configuration's model has " + std::to_string(st.params.size()));
    st.params = initial_params;
    backend->set_state(st);
  }
  Trainer trainer(cfg, in.data, in.population, *backend);
  // "[q=4]", or "[q=4 beta=0.1]" for a --beta auto candidate (its folder's parent names the run).
  std::string label = "[train]";
  if (!cfg.out.empty()) {
    const std::filesystem::path out(cfg.out);
    label = out.filename().string();
    const std::string parent = out.parent_path().filename().string();
    if (label.rfind("beta=", 0) == 0 && !parent.empty()) label = parent + " " + label;
    label = "[" + label + "]";
  }
  ProgressLog log(cfg, label);
  long first_step = 0;
  std::vector<EpochMetrics> history;
  // Totals over the whole run, the part before a resume included.
  long steps_done = 0, skipped = 0;
  double seconds = 0;
  const std::string ckpt_path = cfg.out.empty() || !in.writes_files()
                                    ? std::string()
                                    : (std::filesystem::path(cfg.out) / "checkpoint.safetensors").string();
  if (resuming) {
    const std::string source = start.state ? std::string("checkpoint") : resume_from;
    CheckpointData loaded;
    if (!start.state) loaded = load_checkpoint(resume_from);
    const CheckpointData& ck = start.state ? *start.state : loaded;
    auto same_shape = [&](const MlpLayout& layout) {
      bool same = layout.layers == problem.layout.layers &&
                  layout.activation == problem.layout.activation;
      for (int l = 0; same && l <= problem.layout.layers; ++l)
        same = layout.width[l] == problem.layout.width[l];
      return same;
    };
    if (!same_shape(ck.layout)) throw InputError(source, 0, 0, "checkpoint holds a model of another shape");
    if (start.adopt) {
      // Another model's state at the same step: its weights, moments, smoothed regrets and
      // averaging sums; this run's own step, metrics and best epoch.
      if (!same_shape(start.adopt->layout) || start.adopt->step != ck.step)
        throw Error("train_run: the adopted state is of another shape or step");
      backend->set_state(start.adopt->state);
      TrainerState ts = ck.trainer;
      ts.param_sum = start.adopt->trainer.param_sum;
      ts.param_count = start.adopt->trainer.param_count;
      trainer.set_state(ts);
    } else {
      backend->set_state(ck.state);
      trainer.set_state(ck.trainer);
    }
    first_step = static_cast<long>(ck.step);
    // Metrics of the epochs already done travel in the checkpoint's metadata.
    if (auto it = ck.metadata.find("eqpm.metrics_csv"); it != ck.metadata.end()) {
      std::istringstream ss(it->second);
      std::string line;
      std::getline(ss, line);  // header
      while (std::getline(ss, line)) {
        EpochMetrics m;
        const int got = std::sscanf(line.c_str(), "%d,%ld,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf",
                                    &m.epoch, &m.step, &m.loss, &m.power_mean, &m.mean, &m.var,
                                    &m.max, &m.mse, &m.seconds, &m.objective);
        if (got == 9) {  // a checkpoint written before the objective column
          const double beta = trainer.beta_at(m.step - 1);
          m.objective = (1.0 - beta) * m.power_mean + beta * m.mse;
        }
        if (got >= 9) history.push_back(m);
      }
    }
    // So do the partial epoch and the step totals (older checkpoints lack them: every
    // step before the checkpoint then counts as taken).
    steps_done = first_step;
    if (auto it = ck.metadata.find("eqpm.epoch_tally"); it != ck.metadata.end()) {
      EpochTally t;
      if (std::sscanf(it->second.c_str(), "%lf,%ld,%lf", &t.loss, &t.steps, &t.seconds) != 3)
        throw InputError(source, 0, 0, "eqpm.epoch_tally: expected LOSS,STEPS,SECONDS");
      trainer.set_epoch_tally(t);
    }
    if (auto it = ck.metadata.find("eqpm.train_totals"); it != ck.metadata.end())
      if (std::sscanf(it->second.c_str(), "%ld,%ld,%lf", &steps_done, &skipped, &seconds) != 3)
        throw InputError(source, 0, 0, "eqpm.train_totals: expected STEPS,SKIPPED,SECONDS");
    if (first_step > trainer.total_steps())
      throw ConfigError("epochs: the checkpoint is at step " + std::to_string(first_step) +
                        ", past the " + std::to_string(trainer.total_steps()) + " steps of " +
                        std::to_string(cfg.epochs) + " epochs; give more --epochs");
    const std::string at = std::to_string(first_step) + " of " + std::to_string(trainer.total_steps());
    if (!start.state) log.note("resuming at step " + at);
    else if (start.adopt) log.note("annealing from step " + at + " with " + start.adopt_name + "'s weights");
    else log.note("annealing from step " + at);
  }
  const double minutes = cfg.checkpoint_minutes;
  double last_save = now_seconds();
  auto make_ckpt = [&](long step) {
    CheckpointData ck;
    ck.layout = problem.layout;
    ck.state = backend->state();
    ck.trainer = trainer.state();
    ck.step = static_cast<std::uint64_t>(step);
    ck.metadata = model_metadata(cfg, in.data);
    ck.metadata["eqpm.metrics_csv"] = metrics_csv(history);
    const EpochTally& t = trainer.epoch_tally();
    ck.metadata["eqpm.epoch_tally"] =
        format_double(t.loss) + "," + std::to_string(t.steps) + "," + format_double(t.seconds);
    ck.metadata["eqpm.train_totals"] = std::to_string(steps_done) + "," +
                                       std::to_string(skipped) + "," + format_double(seconds);
    return ck;
  };
  auto save_ckpt = [&](long step) {
    last_save = now_seconds();
    // Every rank builds it: a backend's state may be a collective (--fast-reduce gathers
    // the smoothed regrets), so ranks that write nothing take part too.
    if (ckpt_path.empty() && !shared) return;
    const CheckpointData ck = make_ckpt(step);
    if (ckpt_path.empty()) return;
    save_checkpoint(ckpt_path, ck);
    write_text(cfg.out, "metrics.csv", metrics_csv(history));
  };
  if (start.pause_at >= 0 && first_step > start.pause_at)
    throw Error("train_run: asked to pause at step " + std::to_string(start.pause_at) +
                ", before the start at step " + std::to_string(first_step));
  trainer.set_control([&](long done) {
    // Ranks meet in every step's gather, so they must stop after the same step: a signal
    // that reached any rank (mpirun forwards one to each, not at the same instant) stops
    // them all here, where one process would look at its own.
    // So must a checkpoint that one rank's clock calls for (a checkpoint can be collective).
    int sig = interrupt_signal();
    bool due = minutes > 0 && now_seconds() - last_save >= 60 * minutes;
    if (shared) {
      double v[2] = {static_cast<double>(sig), due ? 1.0 : 0.0};
      problem.reducer->max(v, 2);
      sig = static_cast<int>(v[0]);
      due = v[1] > 0.0;
      if (sig != 0 && interrupt_signal() == 0) request_interrupt(sig);
    }
    if (sig != 0 || done == start.pause_at) return StepAction::stop;
    if (due) return StepAction::checkpoint;
    return StepAction::next;
  });
  for (const auto& n : in.notes) log.note(n);
  check_replicas(backend->params(), "at the start");
  if (shared && resuming) {
    // Every rank read the checkpoint itself: the whole state it restored must agree too
    // (moments, step, smoothed regrets), or the ranks would drift apart from here.
    const BackendState st = backend->state();
    const bool same =
        same_everywhere(*problem.reducer, st.adam_m.data(), st.adam_m.size() * sizeof(float)) &&
        same_everywhere(*problem.reducer, st.adam_v.data(), st.adam_v.size() * sizeof(float)) &&
        same_everywhere(*problem.reducer, st.rbar.data(), st.rbar.size() * sizeof(double)) &&
        same_everywhere(*problem.reducer, &st.adam_step, sizeof st.adam_step) &&
        same_everywhere(*problem.reducer, &first_step, sizeof first_step);
    if (!same)
      throw Error("MPI ranks restored different states from " + resume_from +
                  " (every rank must read the same checkpoint: one shared file system)");
  }
  if (first_step == start.pause_at) {  // already there
    o.train.end_step = first_step;
    o.train.epochs = history;
    o.paused = std::make_shared<const CheckpointData>(make_ckpt(first_step));
    return o;
  }
  o.train = trainer.run(
      first_step,
      [&](const Progress& p) {
        if (p.last.finite) ++steps_done;
        else ++skipped;
        seconds += p.step_seconds;
        log.step(p);
      },
      save_ckpt,
      [&](const EpochMetrics& m) {
        history.push_back(m);
        log.epoch(m);
        check_replicas(backend->params(), "after epoch " + std::to_string(m.epoch));
      });
  log.finish();
  o.train.epochs = history;
  o.train.steps = steps_done;
  o.train.skipped_steps = skipped;
  o.train.seconds = seconds;
  if (o.train.stopped && interrupt_signal() == 0 && o.train.end_step == start.pause_at) {
    o.paused = std::make_shared<const CheckpointData>(make_ckpt(o.train.end_step));
    return o;
  }
  if (o.train.stopped) {
    // The trainer wrote the checkpoint at the step it stopped after.
    o.interrupted_at = o.train.end_step;
    o.total_steps = trainer.total_steps();
    return o;
  }
  save_ckpt(trainer.total_steps());
  o.params = trainer.final_params();
  check_replicas(o.params, "in the model shipped");
  {
    BackendState s = backend->state();
    s.params = o.params;
    backend->set_state(s);
  }
  evaluate_splits(*backend, trainer, o, cfg, in);
  o.stages = backend->stage_times();
  if (!cfg.out.empty() && in.writes_files()) write_outputs(cfg, in, o, problem.layout);
  return o;
}

namespace {

// A backend set up for the configuration, holding `params` as its model.
std::unique_ptr<Backend> backend_with_params(const RunConfig& cfg, const RunInputs& in,
                                             const std::vector<float>& params) {
  auto backend = make_backend(cfg.backend, cfg.threads);
  backend->setup(make_problem(cfg, in));
  BackendState st = backend->state();
  if (params.size() != st.params.size())
    throw Error("model has " + std::to_string(params.size()) + " parameters, the configuration " +
                std::to_string(st.params.size()));
  st.params = params;
  backend->set_state(st);
  return backend;
}

}  // namespace

RunOutcome evaluate_model(const RunConfig& cfg, const RunInputs& in, const std::vector<float>& params,
                          EvalMetric metric) {
  RunOutcome o;
  o.out_dir = cfg.out;
  o.metric = metric;
  const auto backend = backend_with_params(cfg, in, params);
  o.backend = backend->name();
  Trainer trainer(cfg, in.data, in.population, *backend);
  o.params = params;
  evaluate_splits(*backend, trainer, o, cfg, in);
  if (!cfg.out.empty() && in.writes_files()) {
    write_text(cfg.out, "agents.csv",
               agents_csv(in.population, o.test, o.train_split, &o.validation, in.regret_unit));
    write_text(cfg.out, "summary.json", summary_json(cfg, in, o));
  }
  return o;
}

std::vector<double> training_split_regret(const RunConfig& cfg, const RunInputs& in,
                                          const std::vector<float>& params) {
  const auto backend = backend_with_params(cfg, in, params);
  const Trainer trainer(cfg, in.data, in.population, *backend);
  return backend->evaluate(trainer.train_rows()).regret;
}

// ------------------------------------------------------------------ config from JSON
namespace {

struct FlatJsonParser {
  const std::string& s;
  const std::string& source;
  size_t i = 0;

  [[noreturn]] void fail(const std::string& what) {
    throw InputError(source, 0, 0, "eqpm.config at byte " + std::to_string(i) + ": " + what);
  }
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  void expect(char c) {
    ws();
    if (i >= s.size() || s[i] != c) fail(std::string("expected '") + c + "'");
    ++i;
  }
  std::string string_value() {
    expect('"');
    std::string out;
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c == '\\') {
        if (i >= s.size()) fail("unterminated escape");
        const char e = s[i++];
        switch (e) {
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          case 'r': out += '\r'; break;
          case 'u': {
            // Four hex digits, then UTF-8 (the writer escapes only control characters).
            if (i + 4 > s.size()) fail("bad \\u escape");
            unsigned code = 0;
            for (int k = 0; k < 4; ++k) {
              const char h = s[i + static_cast<size_t>(k)];
              const int d = h >= '0' && h <= '9' ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
              if (d < 0) fail("bad \\u escape");
              code = code * 16 + static_cast<unsigned>(d);
            }
            i += 4;
            if (code < 0x80) {
              out += static_cast<char>(code);
            } else if (code < 0x800) {
              out += static_cast<char>(0xC0 | (code >> 6));
              out += static_cast<char>(0x80 | (code & 0x3F));
            } else {
              out += static_cast<char>(0xE0 | (code >> 12));
              out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
              out += static_cast<char>(0x80 | (code & 0x3F));
            }
            break;
          }
          default: out += e;
        }
      } else {
        out += c;
      }
    }
    if (i >= s.size()) fail("unterminated string");
    ++i;
    return out;
  }
  std::string scalar() {
    ws();
    const size_t b = i;
    while (i < s.size() && s[i] != ',' && s[i] != ']' && s[i] != '}' &&
           !std::isspace(static_cast<unsigned char>(s[i])))
      ++i;
    if (b == i) fail("expected a value");
    return s.substr(b, i - b);
  }
  std::string value() {
    ws();
    if (i < s.size() && s[i] == '"') return string_value();
    if (i < s.size() && s[i] == '[') {
      ++i;
      std::string out;
      ws();
      if (i < s.size() && s[i] == ']') {
        ++i;
        return out;
      }
      for (;;) {
        out += (out.empty() ? "" : ",") + scalar();
        ws();
        if (i < s.size() && s[i] == ',') {
          ++i;
          continue;
        }
        expect(']');
        return out;
      }
    }
    return scalar();
  }
};

}  // namespace

RunConfig config_from_json(const std::string& json, const std::string& source) {
  RunConfig cfg;
  // Keys newer than the file take the behaviour it was written under.
  cfg.anneal_start = AnnealStart::own;
  FlatJsonParser p{json, source};
  p.expect('{');
  p.ws();
  if (p.i < json.size() && json[p.i] == '}') return cfg;
  for (;;) {
    const std::string key = p.string_value();
    p.expect(':');
    const std::string v = p.value();
    set_option(cfg, key, v, source + " (eqpm.config)");
    p.ws();
    if (p.i < json.size() && json[p.i] == ',') {
      ++p.i;
      continue;
    }
    p.expect('}');
    break;
  }
  return cfg;
}

// ------------------------------------------------------------------ resuming
ConfigError resume_refusal(const std::string& key, const std::string& value, const std::string& stored) {
  std::string flag = "--" + key;
  for (char& c : flag)
    if (c == '_') c = '-';
  return ConfigError(flag + " " + value + ": cannot change when resuming (the run was started with " +
                     stored + "); with --resume only --epochs and run settings (--out, --threads, " +
                     "--backend, --quiet, ...) may be given. Start a new run with --out to change it");
}

RunConfig resumed_config(const std::string& ckpt, const RunConfig& flags,
                         const std::vector<std::string>& given, const std::string& dir) {
  const CheckpointData ck = load_checkpoint(ckpt);
  auto it = ck.metadata.find("eqpm.config");
  if (it == ck.metadata.end()) throw InputError(ckpt, 0, 0, "no eqpm.config in the metadata");
  RunConfig saved = config_from_json(it->second, ckpt);
  bool out_given = false;
  for (const std::string& key : given) {
    const OptionSpec* o = find_option(key);
    out_given = out_given || o->key == "out";
    if (o->is_run_setting || o->key == "epochs")
      o->set(saved, o->get(flags));
    else if (o->get(flags) != o->get(saved))
      throw resume_refusal(o->key, o->get(flags), o->get(saved));
  }
  if (!out_given) saved.out = dir;
  for (const char* key : kInputPathKeys)
    if (auto g = ck.metadata.find(std::string("eqpm.given_path.") + key); g != ck.metadata.end())
      saved.given_paths[key] = g->second;
  return saved;
}

std::string run_checkpoint(const std::string& dir, bool* beta_auto) {
  namespace fs = std::filesystem;
  *beta_auto = false;
  const fs::path own = fs::path(dir) / "checkpoint.safetensors";
  if (fs::exists(own)) return own.string();
  std::vector<std::string> cands;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().rfind("beta=", 0) == 0 &&
        fs::exists(e.path() / "checkpoint.safetensors"))
      cands.push_back((e.path() / "checkpoint.safetensors").string());
  if (cands.empty()) return "";
  std::sort(cands.begin(), cands.end());
  *beta_auto = true;
  return cands.front();
}

ResumedRun resumed_run(const std::string& dir, const RunConfig& flags,
                       const std::vector<std::string>& given) {
  bool beta_auto = false;
  const std::string ckpt = run_checkpoint(dir, &beta_auto);
  if (ckpt.empty()) throw ConfigError("--resume " + dir + ": no checkpoint.safetensors in that folder");
  if (beta_auto)
    for (const std::string& key : given)
      if (find_option(key)->key == "out")
        throw ConfigError("--out: a --beta auto run resumes in its own folder (" + dir + "); drop --out");
  ResumedRun r;
  r.cfg = resumed_config(ckpt, flags, given, dir);
  if (beta_auto) r.cfg.beta_auto = true;
  else r.checkpoint = ckpt;
  validate(r.cfg);
  return r;
}

}  // namespace eqpm
