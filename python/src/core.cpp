// eqpm._core: the C++ library as a Python module (nanobind). The pure-Python package
// python/eqpm wraps it: it turns keyword arguments into configuration text, checks array
// shapes and dtypes, and shapes the results; everything that computes is here.
//
// Configuration keys go through the CLI's own registry (config.hpp), so a Python keyword
// and a command-line flag are parsed, range-checked and reported alike. Training and
// sweeps run with the GIL released; a ProgressObserver takes the GIL back once per step
// to call the caller's progress callback and to notice Ctrl-C (a stop request the trainer
// honours after the step in progress, as with SIGINT on the command line).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cpu/forecast_regrets.hpp"
#include "host/io/atomic_file.hpp"
#include "eqpm/backend.hpp"
#include "host/beta_select.hpp"
#include "host/build_info.hpp"
#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "eqpm/data.hpp"
#include "eqpm/error.hpp"
#include "host/interrupt.hpp"
#include "host/io/io.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/population.hpp"
#include "host/predict.hpp"
#include "host/run.hpp"
#include "host/sweep.hpp"
#include "host/sweep_check.hpp"
#include "host/trainer.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace eqpm {
namespace {

// ---------------------------------------------------------------- arrays
template <class T>
using Array = nb::ndarray<nb::numpy, T>;
template <class T>
using In1 = nb::ndarray<const T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T>
using In2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// A numpy array that owns `v`.
template <class T>
Array<T> to_numpy(std::vector<T> v, std::vector<size_t> shape = {}) {
  if (shape.empty()) shape = {v.size()};
  auto* owned = new std::vector<T>(std::move(v));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return Array<T>(owned->data(), shape.size(), shape.data(), owner);
}

template <class T>
std::vector<T> to_vector(const In1<T>& a) {
  return std::vector<T>(a.data(), a.data() + a.shape(0));
}

// ---------------------------------------------------------------- configuration
using Keys = std::vector<std::pair<std::string, std::string>>;

std::string flag_of(std::string key) {
  std::replace(key.begin(), key.end(), '_', '-');
  return "--" + key;
}

// The configuration of `keys` (registry keys with their text), each set as the command
// line sets a flag, so that errors read as the CLI's ("--lr: expected ..."). An unknown
// key is reported as the CLI reports an unknown flag, with the nearest key.
RunConfig make_config(const Keys& keys, const std::string& command) {
  RunConfig cfg;
  for (const auto& [key, value] : keys) {
    const OptionSpec* spec = find_option(key);
    if (!spec) {
      const std::string flag = flag_of(key).substr(2);
      std::string best;
      size_t best_d = std::max<size_t>(2, flag.size() / 3) + 1;
      for (const auto& o : option_registry()) {
        const std::string name = flag_of(o.key).substr(2);
        if (const size_t d = edit_distance(flag, name); d < best_d) {
          best_d = d;
          best = name;
        }
      }
      throw ConfigError("--" + flag + ": unknown flag" +
                        (best.empty() ? "" : "; did you mean --" + best + "?") + " (see eqpm " +
                        command + " --help)");
    }
    set_option(cfg, spec->key, value, flag_of(spec->key));
  }
  // As the CLI reconciles: a default warm start longer than the run gives way.
  const bool warm_given = std::any_of(keys.begin(), keys.end(), [](const auto& kv) {
    const OptionSpec* s = find_option(kv.first);
    return s && s->key == "warm_start_epochs";
  });
  if (cfg.warm_start_epochs > cfg.epochs && !warm_given)
    cfg.warm_start_epochs = std::max(0, cfg.epochs - 1);
  return cfg;
}

// The registry keys of `keys` (checked by make_config), in order: what a command line's
// flags would have given.
std::vector<std::string> given_keys(const Keys& keys) {
  std::vector<std::string> given;
  for (const auto& kv : keys) given.push_back(find_option(kv.first)->key);
  return given;
}

// ---------------------------------------------------------------- populations
// A population with the demand profile its datacenter agents see.
struct PyPopulation {
  Population population;
  std::vector<float> demand;
};

PyPopulation generate(const Keys& keys) {
  const RunConfig cfg = make_config(keys, "generate");
  RunInputs in;
  {
    nb::gil_scoped_release unlocked;
    in = load_inputs(cfg);
  }
  return {std::move(in.population), std::move(in.demand)};
}

nb::dict population_table(const PyPopulation& p) {
  const long N = p.population.size();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  std::vector<std::int64_t> agent(static_cast<size_t>(N));
  nb::list family;
  std::vector<double> weight(N), lambda(N, nan), scale(N, nan), phase(N, nan), hour(N, nan), k(N, nan),
      ws(N, nan), we(N, nan), energy(N, nan), cu(N, nan), co(N, nan);
  for (long n = 0; n < N; ++n) {
    const Agent& a = p.population.agents[static_cast<size_t>(n)];
    const size_t i = static_cast<size_t>(n);
    agent[i] = n;
    family.append(family_name(a.family));
    weight[i] = a.weight;
    switch (a.family) {
      case Family::datacenter:
        lambda[i] = a.lambda;
        scale[i] = a.scale;
        phase[i] = a.phase;
        hour[i] = a.hour;
        break;
      case Family::ev_charging:
        k[i] = a.k;
        ws[i] = a.window_start;
        we[i] = a.window_end;
        energy[i] = a.energy;
        break;
      case Family::inventory:
        cu[i] = a.cu;
        co[i] = a.co;
        hour[i] = a.hour;
        break;
    }
  }
  nb::dict t;
  t["agent"] = to_numpy(std::move(agent));
  t["family"] = family;
  t["weight"] = to_numpy(std::move(weight));
  t["lambda"] = to_numpy(std::move(lambda));
  t["scale"] = to_numpy(std::move(scale));
  t["phase"] = to_numpy(std::move(phase));
  t["hour"] = to_numpy(std::move(hour));
  t["k"] = to_numpy(std::move(k));
  t["window_start"] = to_numpy(std::move(ws));
  t["window_end"] = to_numpy(std::move(we));
  t["energy"] = to_numpy(std::move(energy));
  t["cu"] = to_numpy(std::move(cu));
  t["co"] = to_numpy(std::move(co));
  if (!p.population.group_names.empty()) {
    nb::list group;
    for (long n = 0; n < N; ++n)
      group.append(p.population.group_name(p.population.agent_group[static_cast<size_t>(n)]));
    t["group"] = group;
  }
  return t;
}

// Agents must fit forecasts of H hours (hours, windows).
void check_horizon(const Population& p, int H, const char* what) {
  for (long n = 0; n < p.size(); ++n)
    if (const std::string why = check_agent(p.agents[static_cast<size_t>(n)], H); !why.empty())
      throw ConfigError(std::string(what) + ": agent " + std::to_string(n) + " does not fit forecasts of " +
                        std::to_string(H) + " hours: " + why);
}

// ---------------------------------------------------------------- models
Array<float> predict(const ModelFile& m, const In1<double>& values, const std::optional<In1<std::int32_t>>& hours) {
  Series s;
  s.values = to_vector(values);
  s.source = "series_values";
  if (hours) {
    if (hours->shape(0) != values.shape(0))
      throw ConfigError("hours: " + std::to_string(hours->shape(0)) + " values for a series of " +
                        std::to_string(values.shape(0)));
    for (size_t i = 0; i < hours->shape(0); ++i) {
      const int h = hours->data()[i];
      if (h < 0 || h > 23) throw ConfigError("hours: expected hours of day in [0, 23], got " + std::to_string(h));
      s.hour_of_day.push_back(h);
    }
  }
  std::string csv;
  {
    nb::gil_scoped_release unlocked;
    csv = predict_csv(m, s, PredictRange{});
  }
  // The CLI's text, shortest round-trip numbers: parsing it back gives its values exactly.
  const int H = m.layout.output_dim();
  std::vector<float> out;
  std::istringstream in(csv);
  std::string line;
  std::getline(in, line);
  long rows = 0;
  while (std::getline(in, line)) {
    size_t at = line.find(',');
    for (int h = 0; h < H; ++h) {
      const size_t next = line.find(',', at + 1);
      out.push_back(static_cast<float>(std::strtod(line.c_str() + at + 1, nullptr)));
      at = next;
    }
    ++rows;
  }
  return to_numpy(std::move(out), {static_cast<size_t>(rows), static_cast<size_t>(H)});
}

nb::dict state_dict(const ModelFile& m) {
  nb::dict d;
  const MlpLayout& L = m.layout;
  for (int l = 0; l < L.layers; ++l) {
    const size_t out = static_cast<size_t>(L.width[l + 1]), in = static_cast<size_t>(L.width[l]);
    const float* w = m.params.data() + L.weight_offset[l];
    const float* b = m.params.data() + L.bias_offset[l];
    d[("net." + std::to_string(l) + ".weight").c_str()] = to_numpy(std::vector<float>(w, w + out * in), {out, in});
    d[("net." + std::to_string(l) + ".bias").c_str()] = to_numpy(std::vector<float>(b, b + out));
  }
  return d;
}

// ---------------------------------------------------------------- runs
// Calls the caller's progress function once per step with the GIL held, and turns Ctrl-C
// (or an exception in the callback) into a stop request; the error is raised once the run
// has stopped and let go of everything.
class PythonProgress {
 public:
  explicit PythonProgress(nb::object callback) : callback_(std::move(callback)) {}

  void operator()(const std::string& label, const Progress& p) {
    if (error_) return;
    nb::gil_scoped_acquire locked;
    try {
      if (!callback_.is_none()) {
        nb::dict d;
        d["run"] = label;
        d["epoch"] = p.epoch;
        d["epochs"] = p.epochs;
        d["step"] = p.step;
        d["total_steps"] = p.total_steps;
        d["loss"] = p.last.loss;
        d["mean_regret"] = p.last.mean_regret;
        d["max_regret"] = p.last.max_regret;
        d["mse"] = p.last.mse;
        d["steps_per_second"] = p.steps_per_second;
        d["eta_seconds"] = p.eta_seconds;
        callback_(d);
      }
      if (PyErr_CheckSignals() != 0) throw nb::python_error();
    } catch (nb::python_error& e) {
      error_.emplace(std::move(e));
      request_interrupt(SIGINT);
    }
  }
  void raise_if_failed() {
    if (error_) {
      nb::python_error e = std::move(*error_);
      error_.reset();
      throw e;
    }
  }

 private:
  nb::object callback_;
  std::optional<nb::python_error> error_;
};

ModelFile model_of(const RunConfig& shipped, const RunInputs& in, const RunOutcome& o) {
  ModelFile m;
  m.layout = make_mlp_layout(in.data.input_dim(), shipped.hidden, shipped.horizon, shipped.activation);
  m.params = o.params;
  m.metadata = model_metadata(shipped, in.data);
  return m;
}

nb::dict run_dict(const RunConfig& shipped, const RunInputs& in, const RunOutcome& o) {
  nb::dict r;
  r["summary_json"] = summary_json(shipped, in, o);
  nb::dict agents;
  const long N = in.population.size();
  std::vector<std::int64_t> index(static_cast<size_t>(N));
  nb::list family;
  for (long n = 0; n < N; ++n) {
    index[static_cast<size_t>(n)] = n;
    family.append(family_name(in.population.agents[static_cast<size_t>(n)].family));
  }
  agents["agent"] = to_numpy(std::move(index));
  agents["family"] = family;
  agents["regret"] = to_numpy(o.test.regret);
  agents["train_regret"] = to_numpy(o.train_split.regret);
  if (o.validation.regret.size() == static_cast<size_t>(N)) agents["val_regret"] = to_numpy(o.validation.regret);
  r["agents"] = agents;
  const auto& E = o.train.epochs;
  auto column = [&](auto get) {
    std::vector<double> v;
    for (const auto& m : E) v.push_back(static_cast<double>(get(m)));
    return to_numpy(std::move(v));
  };
  nb::dict metrics;
  std::vector<std::int64_t> epoch, step;
  for (const auto& m : E) {
    epoch.push_back(m.epoch);
    step.push_back(m.step);
  }
  metrics["epoch"] = to_numpy(std::move(epoch));
  metrics["step"] = to_numpy(std::move(step));
  metrics["loss"] = column([](const EpochMetrics& m) { return m.loss; });
  metrics["power_mean"] = column([](const EpochMetrics& m) { return m.power_mean; });
  metrics["mean"] = column([](const EpochMetrics& m) { return m.mean; });
  metrics["var"] = column([](const EpochMetrics& m) { return m.var; });
  metrics["max"] = column([](const EpochMetrics& m) { return m.max; });
  metrics["mse"] = column([](const EpochMetrics& m) { return m.mse; });
  metrics["seconds"] = column([](const EpochMetrics& m) { return m.seconds; });
  metrics["objective"] = column([](const EpochMetrics& m) { return m.objective; });
  r["metrics"] = metrics;
  r["model"] = nb::cast(model_of(shipped, in, o));
  r["population"] = nb::cast(PyPopulation{in.population, in.demand});
  r["backend"] = o.backend;
  r["beta"] = shipped.beta;
  return r;
}

void prepare_out(const RunConfig& cfg) {
  if (cfg.out.empty()) return;
  ensure_output_dir(cfg.out, cfg.overwrite);
}

// eqpm train: the CLI's cmd_train. With `resume` (a run's folder), eqpm train --resume:
// the run's stored configuration, with epochs and run settings from `keys`.
nb::dict train(const Keys& keys, nb::object progress, const std::string& resume) {
  RunConfig cfg;
  std::string checkpoint;
  if (resume.empty()) {
    cfg = make_config(keys, "train");
    validate(cfg);
    prepare_out(cfg);
  } else {
    const ResumedRun r = resumed_run(resume, make_config(keys, "train"), given_keys(keys));
    cfg = r.cfg;
    checkpoint = r.checkpoint;
    if (!checkpoint.empty() &&
        std::filesystem::weakly_canonical(cfg.out) != std::filesystem::weakly_canonical(resume))
      ensure_output_dir(cfg.out, cfg.overwrite);
  }
  PythonProgress watch(std::move(progress));
  RunInputs in;
  RunOutcome o;
  double chosen = cfg.beta;
  {
    nb::gil_scoped_release unlocked;
    clear_interrupt();
    const ProgressObserver observer([&](const std::string& label, const Progress& p) { watch(label, p); });
    in = load_inputs(cfg);
    o = cfg.beta_auto ? train_beta_auto(cfg, in, nullptr, &chosen, nullptr, !resume.empty())
                      : train_run(cfg, in, checkpoint);
    clear_interrupt();
  }
  watch.raise_if_failed();
  if (o.interrupted_at >= 0) throw Error("the run was stopped after step " + std::to_string(o.interrupted_at));
  return run_dict(shipped_config(cfg, chosen), in, o);
}

// eqpm sweep: the CLI's cmd_sweep (the plain baseline, then one run per objective; with an
// output folder, each run's folder, sweep.csv and mq_check.csv). With `resume` (the
// sweep's folder), a stopped sweep continues: each begun run from its checkpoint.
nb::list sweep(const Keys& keys, const std::vector<std::string>& specs, double check_tol, nb::object progress,
               const std::string& resume) {
  RunConfig base = make_config(keys, "sweep");
  if (specs.empty()) throw ConfigError("--q: expected a list such as 0,1,4,19");
  for (const auto& s : specs) make_objective(s, "--objective");
  if (resume.empty()) {
    validate(base);
    prepare_out(base);
  } else {
    base = resumed_sweep_config(base, given_keys(keys), specs, resume);
  }
  PythonProgress watch(std::move(progress));
  Sweep sw;
  RunInputs in;
  {
    nb::gil_scoped_release unlocked;
    clear_interrupt();
    const ProgressObserver observer([&](const std::string& label, const Progress& p) { watch(label, p); });
    in = load_inputs(base);
    sw = run_sweep(base, specs, in, !resume.empty());
    clear_interrupt();
    if (!sw.interrupted && !base.out.empty()) {
      const SweepCheck train_check = check_sweep(sw, in, check_tol, false);
      SweepCheck val_check;
      if (base.select == Select::val) val_check = check_sweep(sw, in, check_tol, true);
      write_sweep_tables(base.out, sw, train_check, base.select == Select::val ? &val_check : nullptr);
    }
  }
  const bool stopped = sw.interrupted;
  watch.raise_if_failed();
  if (stopped) throw Error("the sweep was stopped; its remaining runs were not started");
  nb::list out;
  for (const auto& r : sw.runs) out.append(nb::make_tuple(r.name, run_dict(r.config, in, r.outcome)));
  return out;
}

// ---------------------------------------------------------------- regrets and gradients
Array<double> regrets(const PyPopulation& pop, const In2<float>& pred, const In2<float>& target,
                      const In1<std::int64_t>& t, const In1<float>& demand, float floor, int threads) {
  const long R = static_cast<long>(pred.shape(0));
  const int H = static_cast<int>(pred.shape(1));
  if (target.shape(0) != pred.shape(0) || target.shape(1) != pred.shape(1) || t.shape(0) != pred.shape(0))
    throw ConfigError("pred, target and t: expected (T, H), (T, H) and (T,)");
  if (H < 1 || H > kMaxHorizon) throw ConfigError("pred: expected 1.." + std::to_string(kMaxHorizon) + " hours");
  check_horizon(pop.population, H, "pred");
  std::vector<long> times(t.data(), t.data() + t.shape(0));
  std::vector<float> profile(demand.data(), demand.data() + demand.shape(0));
  std::vector<double> r;
  {
    nb::gil_scoped_release unlocked;
    r = forecast_regrets(pop.population, profile, pred.data(), target.data(), times.data(), R, H, floor,
                         threads);
  }
  return to_numpy(std::move(r));
}

Estimator parse_estimator(const std::string& s) {
  if (s == "score") return Estimator::score;
  if (s == "pathwise") return Estimator::pathwise;
  if (s == "auto") return Estimator::automatic;
  throw ConfigError("--estimator: expected score|pathwise|auto, got '" + s + "'");
}

nb::dict estimate_dict(GradientEstimate e, int B, int H) {
  nb::dict d;
  d["value"] = e.value;
  d["objective"] = e.objective;
  d["smoothed"] = e.smoothed;
  d["mse"] = e.mse;
  d["msebar"] = e.msebar;
  d["rhat"] = to_numpy(std::move(e.rhat));
  d["rbar"] = to_numpy(std::move(e.rbar));
  d["omega"] = to_numpy(std::move(e.omega));
  d["grad"] = to_numpy(std::move(e.grad), {static_cast<size_t>(B), static_cast<size_t>(H)});
  return d;
}

GradientSettings gradient_settings(const std::string& objective, float sigma, int samples, bool antithetic,
                                   float floor, const std::string& estimator, double rho, std::uint64_t seed,
                                   int threads, const std::string& ev_gradient) {
  GradientSettings g;
  RunConfig cfg;  // --ev-gradient's own parsing and message
  set_option(cfg, "ev_gradient", ev_gradient, "ev_gradient");
  g.ev_gradient = cfg.ev_gradient;
  g.objective = make_objective(objective, "--objective");
  g.sigma = sigma;
  g.samples = samples;
  g.antithetic = antithetic;
  g.floor = floor;
  g.estimator = parse_estimator(estimator);
  g.rho = rho;
  g.seed = seed;
  g.threads = threads;
  return g;
}

nb::dict estimate(ForecastEstimator& est, const In2<float>& mu, const In2<float>& target,
                  const In1<std::int64_t>& t, std::uint32_t step, double beta, const In1<double>& rbar,
                  double msebar) {
  const int B = static_cast<int>(mu.shape(0)), H = static_cast<int>(mu.shape(1));
  if (target.shape(0) != mu.shape(0) || target.shape(1) != mu.shape(1) || t.shape(0) != mu.shape(0))
    throw ConfigError("pred, target and start_hour: expected (B, H), (B, H) and (B,)");
  if (rbar.shape(0) != 0 && static_cast<long>(rbar.shape(0)) != est.population().size())
    throw ConfigError("rbar: expected one smoothed regret per agent");
  check_horizon(est.population(), H, "pred");
  std::vector<long> times(t.data(), t.data() + t.shape(0));
  std::vector<double> prev = to_vector(rbar);
  GradientEstimate e;
  {
    nb::gil_scoped_release unlocked;
    e = est.estimate(mu.data(), target.data(), times.data(), B, H, step, beta, prev, msebar);
  }
  return estimate_dict(std::move(e), B, H);
}

// The CPU backend's first `steps` training steps of a configuration at beta = 0, each
// with its trace: what the tests compare the estimator for given predictions against.
nb::dict backend_steps(const Keys& keys, int steps) {
  const RunConfig cfg = make_config(keys, "train");
  validate(cfg);
  const RunInputs in = load_inputs(cfg);
  auto backend = make_backend("cpu", cfg.threads);
  const Problem problem = make_problem(cfg, in);
  backend->setup(problem);
  Trainer trainer(cfg, in.data, in.population, *backend);
  nb::list out;
  for (int k = 0; k < steps; ++k) {
    StepSpec spec;
    spec.step = static_cast<std::uint32_t>(k);
    spec.rows = trainer.batch_rows(k);
    spec.beta = 0.0;
    spec.lr = cfg.lr;
    const BackendState before = backend->state();
    StepTrace trace;
    const StepStats st = backend->step(spec, &trace);
    const int B = static_cast<int>(spec.rows.size()), H = in.data.horizon;
    std::vector<float> y;
    std::vector<std::int64_t> t;
    for (long row : spec.rows) {
      y.insert(y.end(), in.data.y_row(row), in.data.y_row(row) + H);
      t.push_back(in.data.t[static_cast<size_t>(row)]);
    }
    nb::dict d;
    d["step"] = k;
    d["mu"] = to_numpy(trace.mu, {static_cast<size_t>(B), static_cast<size_t>(H)});
    d["target"] = to_numpy(std::move(y), {static_cast<size_t>(B), static_cast<size_t>(H)});
    d["t"] = to_numpy(std::move(t));
    d["g"] = to_numpy(trace.g, {static_cast<size_t>(B), static_cast<size_t>(H)});
    d["rhat"] = to_numpy(trace.rhat);
    d["rbar"] = to_numpy(trace.rbar);
    d["omega"] = to_numpy(trace.omega);
    d["rbar_before"] = to_numpy(before.rbar);
    d["power_mean"] = st.power_mean;
    d["smoothed_power_mean"] = st.smoothed_power_mean;
    d["finite"] = st.finite;
    out.append(d);
  }
  nb::dict r;
  r["steps"] = out;
  r["population"] = nb::cast(PyPopulation{in.population, in.demand});
  return r;
}

}  // namespace
}  // namespace eqpm

NB_MODULE(_core, m) {
  using namespace eqpm;
  m.doc() = "eqpm's C++ library (use the package eqpm, which wraps it)";
  m.attr("__version__") = EQPM_VERSION;
  m.attr("build_type") = EQPM_BUILD_TYPE;
  m.attr("commit") = build_commit();
  m.def("cuda_compiled", &cuda_compiled);
  m.def("cuda_devices", &cuda_device_descriptions);
  m.attr("max_horizon") = kMaxHorizon;
  m.attr("max_samples") = kMaxSamples;

  // Every error eqpm reports about what it was given is a ValueError with its message.
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const eqpm::Error& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  m.def("option_keys", [] {
    std::vector<std::pair<std::string, std::string>> keys;
    for (const auto& o : option_registry()) keys.emplace_back(o.key, o.type);
    return keys;
  });
  m.def("config_json", [](const Keys& keys) { return config_to_json(make_config(keys, "train")); });
  m.def("split_objectives", [](const std::string& list) { return split_objectives(list, "--objective"); });
  m.def("objective_spec", [](const std::string& spec) { return make_objective(spec, "--objective")->spec(); });

  nb::class_<PyPopulation>(m, "Population")
      .def_static("generate", &generate, "keys"_a)
      .def_static(
          "from_csv",
          [](const std::string& path, int horizon) {
            PyPopulation p;
            p.population = read_population_csv(path, horizon);
            p.demand = synthetic_demand_profile();
            return p;
          },
          "path"_a, "horizon"_a)
      .def("to_csv",
           [](const PyPopulation& p, const std::string& path) {
             std::ostringstream os;
             write_population_csv(p.population, os);
             write_file_atomic(path, os.str());
           })
      .def("to_csv_text",
           [](const PyPopulation& p) {
             std::ostringstream os;
             write_population_csv(p.population, os);
             return os.str();
           })
      .def("__len__", [](const PyPopulation& p) { return p.population.size(); })
      .def("table", &population_table)
      .def("demand", [](const PyPopulation& p) { return to_numpy(p.demand); })
      .def("with_demand", [](const PyPopulation& p, const In1<float>& d) {
        PyPopulation q = p;
        q.demand = to_vector(d);
        return q;
      })
      .def("count", [](const PyPopulation& p, const std::string& family) {
        Family f;
        if (!parse_family(family.c_str(), &f)) throw ConfigError("unknown family '" + family + "'");
        return p.population.count(f);
      });

  nb::class_<ModelFile>(m, "Model")
      .def_static("load", [](const std::string& path) { return load_model(path); }, "path"_a)
      .def("predict", &predict, "values"_a, "hours"_a = nb::none())
      .def("state_dict", &state_dict)
      .def_prop_ro("metadata", [](const ModelFile& f) { return f.metadata; })
      .def_prop_ro("activation", [](const ModelFile& f) { return std::string(activation_name(f.layout.activation)); })
      .def_prop_ro("widths", [](const ModelFile& f) {
        return std::vector<int>(f.layout.width, f.layout.width + f.layout.layers + 1);
      })
      .def("save", [](const ModelFile& f, const std::string& path) { save_model(path, f.layout, f.params, f.metadata); });

  m.def("train", &train, "keys"_a, "progress"_a = nb::none(), "resume"_a = "");
  m.def("sweep", &sweep, "keys"_a, "objectives"_a, "check_tol"_a, "progress"_a = nb::none(), "resume"_a = "");
  m.def("regrets", &regrets, "population"_a, "pred"_a, "target"_a, "t"_a, "demand"_a, "floor"_a, "threads"_a);
  nb::class_<ForecastEstimator>(m, "Estimator")
      .def("__init__",
           [](ForecastEstimator* self, const PyPopulation& pop, const In1<float>& demand,
              const std::string& objective, float sigma, int samples, bool antithetic, float floor,
              const std::string& estimator, double rho, std::uint64_t seed, int threads,
              const std::string& ev_gradient) {
             new (self) ForecastEstimator(pop.population, to_vector(demand),
                                          gradient_settings(objective, sigma, samples, antithetic, floor,
                                                            estimator, rho, seed, threads, ev_gradient));
           },
           "population"_a, "demand"_a, "objective"_a, "sigma"_a, "samples"_a, "antithetic"_a, "floor"_a,
           "estimator"_a, "rho"_a, "seed"_a, "threads"_a, "ev_gradient"_a = "conditional")
      .def("estimate", &estimate, "mu"_a, "target"_a, "t"_a, "step"_a, "beta"_a, "rbar"_a, "msebar"_a);
  // One estimate with a fresh estimator (tests).
  m.def(
      "gradient",
      [](const PyPopulation& pop, const In1<float>& demand, const std::string& objective, float sigma,
         int samples, bool antithetic, float floor, const std::string& estimator, double rho,
         std::uint64_t seed, int threads, const In2<float>& mu, const In2<float>& target,
         const In1<std::int64_t>& t, std::uint32_t step, double beta, const In1<double>& rbar, double msebar,
         const std::string& ev_gradient) {
        ForecastEstimator est(pop.population, to_vector(demand),
                              gradient_settings(objective, sigma, samples, antithetic, floor, estimator, rho,
                                                seed, threads, ev_gradient));
        return eqpm::estimate(est, mu, target, t, step, beta, rbar, msebar);
      },
      "population"_a, "demand"_a, "objective"_a, "sigma"_a, "samples"_a, "antithetic"_a, "floor"_a,
      "estimator"_a, "rho"_a, "seed"_a, "threads"_a, "mu"_a, "target"_a, "t"_a, "step"_a, "beta"_a, "rbar"_a,
      "msebar"_a, "ev_gradient"_a = "conditional");
  m.def("backend_steps", &backend_steps, "keys"_a, "steps"_a);
}
