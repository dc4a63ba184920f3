// The registry of configuration keys: parsing, range checks, and serialisation.
#include "host/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"

namespace eqpm {
namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw ConfigError(where + ": " + what);
}

double parse_double(const std::string& text, const std::string& where) {
  const std::string t = trim(text);
  if (t.empty()) fail(where, "expected a number, got an empty value");
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || errno == ERANGE)
    fail(where, "expected a number, got '" + t + "'");
  if (!std::isfinite(v)) fail(where, "expected a finite number, got '" + t + "'");
  return v;
}

long long parse_integer(const std::string& text, const std::string& where) {
  const std::string t = trim(text);
  if (t.empty()) fail(where, "expected an integer, got an empty value");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(t.c_str(), &end, 10);
  if (end != t.c_str() + t.size() || errno == ERANGE)
    fail(where, "expected an integer, got '" + t + "'");
  return v;
}

bool parse_bool(const std::string& text, const std::string& where) {
  const std::string t = trim(text);
  if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
  if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  fail(where, "expected true or false, got '" + t + "'");
}

std::string format_double(double v) { return format_number(v); }

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// Option builders. Each setter parses the text, checks the range, then assigns.
// An integer option of any width: parsed as long long, range-checked, then narrowed.
template <class T>
OptionSpec integer_option(std::string key, std::string help, T RunConfig::*field, long long lo,
                          long long hi) {
  OptionSpec o;
  o.key = key;
  o.type = "int";
  o.help = std::move(help);
  o.set = [field, lo, hi](RunConfig& c, const std::string& v) {
    const long long x = parse_integer(v, "");
    if (x < lo || x > hi)
      throw ConfigError("expected an integer in [" + std::to_string(lo) + ", " +
                        std::to_string(hi) + "], got " + std::to_string(x));
    c.*field = static_cast<T>(x);
  };
  o.get = [field](const RunConfig& c) { return std::to_string(c.*field); };
  return o;
}

OptionSpec int_option(std::string key, std::string help, int RunConfig::*field, long long lo,
                      long long hi) {
  return integer_option(std::move(key), std::move(help), field, lo, hi);
}

OptionSpec long_option(std::string key, std::string help, long RunConfig::*field, long long lo,
                       long long hi) {
  return integer_option(std::move(key), std::move(help), field, lo, hi);
}

OptionSpec seed_option(std::string key, std::string help, std::uint64_t RunConfig::*field) {
  OptionSpec o;
  o.key = key;
  o.type = "int";
  o.help = std::move(help);
  o.set = [field](RunConfig& c, const std::string& v) {
    const long long x = parse_integer(v, "");
    if (x < 0) throw ConfigError("expected a non-negative integer, got " + std::to_string(x));
    c.*field = static_cast<std::uint64_t>(x);
  };
  o.get = [field](const RunConfig& c) { return std::to_string(c.*field); };
  return o;
}

// lo_open/hi_open: whether the bound itself is excluded.
OptionSpec float_option(std::string key, std::string help, double RunConfig::*field, double lo,
                        double hi, bool lo_open = false, bool hi_open = false) {
  OptionSpec o;
  o.key = key;
  o.type = "float";
  o.help = std::move(help);
  o.set = [field, lo, hi, lo_open, hi_open](RunConfig& c, const std::string& v) {
    const double x = parse_double(v, "");
    const bool ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
    if (!ok)
      throw ConfigError("expected a number in " + std::string(lo_open ? "(" : "[") +
                        format_double(lo) + ", " + format_double(hi) + (hi_open ? ")" : "]") +
                        ", got " + format_double(x));
    c.*field = x;
  };
  o.get = [field](const RunConfig& c) { return format_double(c.*field); };
  return o;
}

OptionSpec bool_option(std::string key, std::string help, bool RunConfig::*field) {
  OptionSpec o;
  o.key = key;
  o.type = "bool";
  o.help = std::move(help);
  o.set = [field](RunConfig& c, const std::string& v) { c.*field = parse_bool(v, ""); };
  o.get = [field](const RunConfig& c) { return std::string(c.*field ? "true" : "false"); };
  return o;
}

OptionSpec string_option(std::string key, std::string help, std::string RunConfig::*field) {
  OptionSpec o;
  o.key = key;
  o.type = "string";
  o.help = std::move(help);
  o.set = [field](RunConfig& c, const std::string& v) { c.*field = v; };
  o.get = [field](const RunConfig& c) { return c.*field; };
  return o;
}

// "LO,HI" with lo <= hi inside [min, max]; log_scale additionally requires lo > 0.
OptionSpec range_option(std::string key, std::string help, Range RunConfig::*field, double min,
                        double max, bool integer, bool log_scale) {
  OptionSpec o;
  o.key = key;
  o.type = "range";
  o.help = std::move(help);
  o.set = [field, min, max, integer, log_scale](RunConfig& c, const std::string& v) {
    const auto parts = split(v, ',');
    if (parts.size() != 2) throw ConfigError("expected LO,HI, got '" + v + "'");
    Range r;
    if (integer) {
      r.lo = double(parse_integer(parts[0], ""));
      r.hi = double(parse_integer(parts[1], ""));
    } else {
      r.lo = parse_double(parts[0], "");
      r.hi = parse_double(parts[1], "");
    }
    if (r.lo > r.hi) throw ConfigError("expected LO <= HI, got '" + v + "'");
    if (r.lo < min || r.hi > max || (log_scale && r.lo <= 0))
      throw ConfigError("expected values in " + std::string(log_scale ? "(" : "[") +
                        format_double(min) + ", " + format_double(max) + "], got '" + v + "'");
    c.*field = r;
  };
  o.get = [field](const RunConfig& c) {
    return format_double((c.*field).lo) + "," + format_double((c.*field).hi);
  };
  return o;
}

// A date YYYY-MM-DD or a timestamp (io.hpp); empty: not set.
OptionSpec date_option(std::string key, std::string help, std::string RunConfig::*field) {
  OptionSpec o;
  o.key = key;
  o.type = "date";
  o.help = std::move(help);
  o.set = [field](RunConfig& c, const std::string& v) {
    const std::string t = trim(v);
    if (!t.empty()) {
      std::int64_t utc = 0;
      std::string why;
      if (!parse_date(t, &utc, nullptr, &why))
        throw ConfigError("expected a date YYYY-MM-DD or a timestamp such as '2022-07-01 "
                          "00:00', got '" + t + "' (" + why + ")");
    }
    c.*field = t;
  };
  o.get = [field](const RunConfig& c) { return c.*field; };
  return o;
}

template <class E>
OptionSpec enum_option(std::string key, std::string help, E RunConfig::*field,
                       std::vector<std::pair<std::string, E>> values) {
  OptionSpec o;
  o.key = key;
  std::string type;
  for (const auto& [n, e] : values) type += (type.empty() ? "" : "|") + n;
  o.type = type;
  o.help = std::move(help);
  o.set = [field, values, type](RunConfig& c, const std::string& v) {
    const std::string t = trim(v);
    for (const auto& [n, e] : values)
      if (n == t) {
        c.*field = e;
        return;
      }
    throw ConfigError("expected one of " + type + ", got '" + t + "'");
  };
  o.get = [field, values](const RunConfig& c) {
    for (const auto& [n, e] : values)
      if (e == c.*field) return n;
    return std::string();
  };
  return o;
}

OptionSpec run_setting(OptionSpec o) {
  o.is_run_setting = true;
  return o;
}

std::vector<OptionSpec> build_registry() {
  std::vector<OptionSpec> r;
  constexpr long long kMaxAgents = 100'000'000;
  // data
  r.push_back(string_option("series", "hourly series CSV (timestamp first); empty: synthetic",
                            &RunConfig::series));
  r.push_back(string_option("column", "value column of --series", &RunConfig::column));
  r.push_back(int_option("max_gap", "longest run of missing hours filled by interpolation",
                         &RunConfig::max_gap, 0, 24 * 7));
  r.push_back(long_option("series_hours", "length of the synthetic series (hours)",
                          &RunConfig::series_hours, 100, 10'000'000));
  r.push_back(seed_option("data_seed", "seed of the synthetic series", &RunConfig::data_seed));
  r.push_back(string_option("test_series",
                            "CSV of the test period (same column), continuing --series hour by "
                            "hour; the test split starts at its first hour",
                            &RunConfig::test_series));
  r.push_back(string_option("demand_profile", "demand trace CSV for datacenter agents",
                            &RunConfig::demand_profile));
  r.push_back(enum_option<Scaling>("scaling", "normalisation: mean (z/c) or paper (min-max to [0,10])",
                                   &RunConfig::scaling,
                                   {{"mean", Scaling::mean}, {"paper", Scaling::paper}}));
  r.push_back(float_option("train_fraction", "chronological share of rows used for training",
                           &RunConfig::train_fraction, 0.0, 1.0, true, true));
  r.push_back(float_option("val_fraction",
                           "largest share of the training split held out for validation "
                           "(metrics, --select val, --beta auto)",
                           &RunConfig::val_fraction, 0.0, 0.5, false, false));
  r.push_back(int_option("val_days",
                         "validation slice: the last N days of the training split, at most "
                         "val_fraction of its rows (0: the fraction alone)",
                         &RunConfig::val_days, 0, 3650));
  r.push_back(date_option("train_from",
                          "first forecast start of the training split (empty: the series' "
                          "first usable hour)",
                          &RunConfig::train_from));
  r.push_back(date_option("train_until",
                          "training rows are those whose whole target window ends before this "
                          "time (empty: train_fraction, or test_from when that is set)",
                          &RunConfig::train_until));
  r.push_back(date_option("test_from",
                          "first forecast start of the test split (empty: train_until, or the "
                          "row after the training split)",
                          &RunConfig::test_from));
  r.push_back(date_option("test_until",
                          "last forecast start of the test split, inclusive (a date: through its "
                          "last hour; empty: the end of the series)",
                          &RunConfig::test_until));
  // population
  r.push_back(string_option("population", "population CSV (the population.csv format)",
                            &RunConfig::population));
  r.push_back(long_option("agents", "number of generated agents", &RunConfig::agents, 0,
                          kMaxAgents));
  r.push_back(string_option("mix", "family mix, e.g. dc=0.4,ev=0.4,inv=0.2", &RunConfig::mix));
  r.push_back(seed_option("pop_seed", "seed of the population generator", &RunConfig::pop_seed));
  r.push_back(range_option("dc_lambda", "datacenter lambda range (log-uniform)",
                           &RunConfig::dc_lambda, 1e-9, 1e9, false, true));
  r.push_back(range_option("dc_scale", "datacenter demand scale range (log-uniform)",
                           &RunConfig::dc_scale, 1e-9, 1e9, false, true));
  r.push_back(range_option("dc_phase", "datacenter demand phase range (hours)",
                           &RunConfig::dc_phase, 0, 1e6, true, false));
  r.push_back(range_option("dc_hour", "datacenter decision hour range", &RunConfig::dc_hour, 0,
                           kMaxHorizon - 1, true, false));
  r.push_back(enum_option<DcLambdaRule>(
      "dc_lambda_rule",
      "datacenter lambda: random (log-uniform over dc_lambda), linear (lambda_n = 2(n+1), "
      "n = 0..N_dc-1, the paper's) or constant (dc_lambda lo)",
      &RunConfig::dc_lambda_rule,
      {{"random", DcLambdaRule::random},
       {"linear", DcLambdaRule::linear},
       {"constant", DcLambdaRule::constant}}));
  r.push_back(enum_option<DcSpreadRule>(
      "dc_phase_rule",
      "datacenter phase: random (uniform over dc_phase) or spread (phase_n = floor(n T_D / "
      "N_dc), T_D the demand profile length: the paper's shifted groups)",
      &RunConfig::dc_phase_rule,
      {{"random", DcSpreadRule::random}, {"spread", DcSpreadRule::spread}}));
  r.push_back(enum_option<DcSpreadRule>(
      "dc_scale_rule",
      "datacenter demand scale: random (log-uniform over dc_scale) or spread (log-spaced "
      "from dc_scale lo to hi over the datacenter agents)",
      &RunConfig::dc_scale_rule,
      {{"random", DcSpreadRule::random}, {"spread", DcSpreadRule::spread}}));
  r.push_back(range_option("ev_k", "EV hours-needed range", &RunConfig::ev_k, 1, kMaxHorizon,
                           true, false));
  r.push_back(int_option("ev_window_min",
                         "minimum EV availability window (hours); 0: whole horizon",
                         &RunConfig::ev_window_min, 0, kMaxHorizon));
  r.push_back(range_option("ev_energy", "EV energy per hour range", &RunConfig::ev_energy, 1e-9,
                           1e9, false, false));
  r.push_back(range_option("inv_cu", "inventory underage cost range (log-uniform)",
                           &RunConfig::inv_cu, 1e-9, 1e9, false, true));
  r.push_back(range_option("inv_co", "inventory overage cost range (log-uniform)",
                           &RunConfig::inv_co, 1e-9, 1e9, false, true));
  r.push_back(range_option("inv_hour", "inventory decision hour range", &RunConfig::inv_hour, 0,
                           kMaxHorizon - 1, true, false));
  r.push_back(string_option("ev_sessions", "EV charging sessions CSV: one agent per kept session",
                            &RunConfig::ev_sessions));
  r.push_back(long_option("ev_sample", "keep a seeded sample of this many sessions (0: all)",
                          &RunConfig::ev_sample, 0, kMaxAgents));
  // model
  r.push_back(int_option("lookback", "L: past hours in the input", &RunConfig::lookback, 1, 512));
  r.push_back(int_option("horizon", "H: hours predicted", &RunConfig::horizon, 1, kMaxHorizon));
  {
    OptionSpec o;
    o.key = "hidden";
    o.type = "int-list";
    o.help = "hidden layer widths, e.g. 64,64 (empty: linear model)";
    o.set = [](RunConfig& c, const std::string& v) {
      std::vector<int> w;
      if (!trim(v).empty()) {
        for (const auto& p : split(v, ',')) {
          const long long x = parse_integer(p, "");
          if (x < 1 || x > kMaxWidth)
            throw ConfigError("expected widths in [1, " + std::to_string(kMaxWidth) + "], got '" +
                              v + "'");
          w.push_back(int(x));
        }
      }
      if (int(w.size()) + 1 > kMaxLayers)
        throw ConfigError("at most " + std::to_string(kMaxLayers - 1) + " hidden layers");
      c.hidden = w;
    };
    o.get = [](const RunConfig& c) {
      std::string s;
      for (size_t i = 0; i < c.hidden.size(); ++i) s += (i ? "," : "") + std::to_string(c.hidden[i]);
      return s;
    };
    r.push_back(o);
  }
  r.push_back(enum_option<Activation>(
      "activation", "hidden activation", &RunConfig::activation,
      {{"relu", Activation::relu}, {"tanh", Activation::tanh}, {"gelu", Activation::gelu}}));
  // objective
  r.push_back(float_option("q", "fairness exponent (0: mean regret)", &RunConfig::q, 0, 1000));
  {
    OptionSpec o = string_option("objective",
                                 "fairness objective: power:q (the default, as --q), tilt:t, "
                                 "maxmin:tau, cvar:alpha, group-power:q or tilt-groups:t_in,t_out "
                                 "(groups: population.csv's group column, else the families)",
                                 &RunConfig::objective);
    o.set = [](RunConfig& c, const std::string& v) {
      const std::string text = trim(v);
      if (text.empty()) {
        c.objective.clear();
        return;
      }
      const auto f = make_objective(text, "");
      c.objective = f->spec();
      if (const FlatObjective* flat = f->flat();
          flat && flat->kind == FlatObjective::Kind::power && c.objective.rfind("power:", 0) == 0)
        c.q = flat->a;
    };
    r.push_back(o);
  }
  r.push_back(enum_option<RegretScale>(
      "regret_scale",
      "absolute: regrets in cost units; relative: each agent's regret divided by its regret "
      "under the 24-hour persistence forecast on the training split",
      &RunConfig::regret_scale,
      {{"absolute", RegretScale::absolute}, {"relative", RegretScale::relative}}));
  {
    // A number in [0, 1], or "auto": one model per beta_grid value, kept by validation M_q.
    OptionSpec o = float_option("beta", "accuracy weight (1: plain MSE), or auto: the beta of "
                                        "beta_grid with the lowest validation M_q",
                                &RunConfig::beta, 0, 1);
    o.type = "float-or-auto";
    auto set_number = o.set;
    o.set = [set_number](RunConfig& c, const std::string& v) {
      if (trim(v) == "auto") {
        c.beta_auto = true;
        return;
      }
      try {
        set_number(c, v);
      } catch (const ConfigError& e) {
        throw ConfigError(std::string(e.what()) + " (or auto)");
      }
      c.beta_auto = false;
    };
    o.get = [](const RunConfig& c) { return c.beta_auto ? std::string("auto") : format_double(c.beta); };
    r.push_back(o);
  }
  {
    OptionSpec o;
    o.key = "beta_grid";
    o.type = "float-list";
    o.help = "the betas --beta auto chooses from, in [0, 1] (1: the plain model)";
    o.set = [](RunConfig& c, const std::string& v) {
      std::vector<double> g;
      for (const auto& p : split(v, ',')) {
        const double x = parse_double(p, "");
        if (!(x >= 0 && x <= 1))
          throw ConfigError("expected betas in [0, 1], got '" + v + "'");
        if (std::find(g.begin(), g.end(), x) != g.end())
          throw ConfigError("beta " + format_double(x) + " is listed twice in '" + v + "'");
        g.push_back(x);
      }
      if (g.size() < 2) throw ConfigError("expected at least two betas, got '" + v + "'");
      c.beta_grid = g;
    };
    o.get = [](const RunConfig& c) {
      std::string s;
      for (size_t i = 0; i < c.beta_grid.size(); ++i) s += (i ? "," : "") + format_double(c.beta_grid[i]);
      return s;
    };
    r.push_back(o);
  }
  r.push_back(enum_option<Estimator>("estimator", "gradient estimator", &RunConfig::estimator,
                                     {{"score", Estimator::score},
                                      {"pathwise", Estimator::pathwise},
                                      {"auto", Estimator::automatic}}));
  r.push_back(enum_option<EvGradient>(
      "ev_gradient",
      "EV agents' gradient: conditional (each hour's noise integrated out; lower variance) "
      "or score (the score function; also what estimator = score means for them)",
      &RunConfig::ev_gradient, {{"score", EvGradient::score}, {"conditional", EvGradient::conditional}}));
  r.push_back(float_option("sigma", "policy noise (normalised units)", &RunConfig::sigma, 0, 1e3,
                           true, false));
  r.push_back(float_option("sigma_decay",
                           "policy noise at the end of the regret phase as a fraction of sigma, "
                           "reached geometrically (1: sigma throughout)",
                           &RunConfig::sigma_decay, 0, 1, true, false));
  r.push_back(int_option("samples", "S: perturbations per input", &RunConfig::samples, 2,
                         kMaxSamples));
  r.push_back(bool_option("antithetic", "antithetic pairs (eps, -eps)", &RunConfig::antithetic));
  r.push_back(float_option("floor", "decisions use max(prediction, floor)", &RunConfig::floor,
                           0, 1e3, true, false));
  r.push_back(float_option("rho", "smoothing of per-agent regrets across steps", &RunConfig::rho,
                           0, 1, false, true));
  // optimisation
  r.push_back(seed_option("seed", "seed of initialisation, shuffles and perturbations",
                          &RunConfig::seed));
  r.push_back(int_option("epochs", "total epochs", &RunConfig::epochs, 1, 100000));
  r.push_back(int_option("warm_start_epochs", "first epochs trained on plain MSE",
                         &RunConfig::warm_start_epochs, 0, 100000));
  r.push_back(enum_option<Select>(
      "select", "model kept: the last weights, or the epoch best on the validation objective",
      &RunConfig::select, {{"last", Select::last}, {"val", Select::val}}));
  r.push_back(int_option("average_epochs",
                         "the model is the average of the weights over the last N epochs (0: "
                         "the last iterate)",
                         &RunConfig::average_epochs, 0, 100000));
  r.push_back(int_option("batch", "B: inputs per step", &RunConfig::batch, 1, 65536));
  r.push_back(float_option("lr", "Adam learning rate", &RunConfig::lr, 0, 10, true, false));
  r.push_back(enum_option<LrSchedule>(
      "lr_schedule",
      "anneal: lr held, then lowered geometrically to lr x lr_final over the last "
      "lr_anneal_epochs epochs; step: x lr_decay_gamma every lr_decay_epochs; cosine: to 0 at "
      "the end",
      &RunConfig::lr_schedule,
      {{"anneal", LrSchedule::anneal}, {"step", LrSchedule::step}, {"cosine", LrSchedule::cosine}}));
  r.push_back(int_option("lr_anneal_epochs",
                         "anneal: the closing epochs over which lr falls (all of them when "
                         "the run is shorter)",
                         &RunConfig::lr_anneal_epochs, 1, 100000));
  r.push_back(enum_option<AnnealStart>(
      "anneal_start",
      "sweeps with the anneal schedule: best (each objective's model starts its annealing "
      "from the sweep's model lowest on that objective on the training split, plain "
      "included) or own (from its own weights)",
      &RunConfig::anneal_start, {{"best", AnnealStart::best}, {"own", AnnealStart::own}}));
  r.push_back(float_option("lr_final", "anneal: the last step's lr as a fraction of lr",
                           &RunConfig::lr_final, 0, 1, true, false));
  r.push_back(float_option("lr_decay_gamma", "step: learning-rate factor per decay",
                           &RunConfig::lr_decay_gamma, 0, 1, true, false));
  r.push_back(int_option("lr_decay_epochs", "step: epochs between decays (0: none)",
                         &RunConfig::lr_decay_epochs, 0, 100000));
  r.push_back(float_option("adam_beta1", "Adam beta1", &RunConfig::adam_beta1, 0, 1, false, true));
  r.push_back(float_option("adam_beta2", "Adam beta2", &RunConfig::adam_beta2, 0, 1, false, true));
  r.push_back(float_option("adam_eps", "Adam epsilon", &RunConfig::adam_eps, 0, 1, true, false));
  r.push_back(float_option("weight_decay",
                           "decoupled weight decay (AdamW): each step shrinks the weights by "
                           "lr x this (0: none)",
                           &RunConfig::weight_decay, 0, 1, false, true));
  r.push_back(float_option("grad_clip", "global gradient-norm clip (0: off)",
                           &RunConfig::grad_clip, 0, 1e12));
  r.push_back(int_option("max_bad_steps", "stop after this many non-finite steps in a row",
                         &RunConfig::max_bad_steps, 1, 1000000));
  // run settings
  r.push_back(run_setting(string_option("backend", "cpu | cuda | auto", &RunConfig::backend)));
  r.push_back(run_setting(int_option("threads", "CPU threads (0: OpenMP default)",
                                     &RunConfig::threads, 0, 4096)));
  r.push_back(run_setting(string_option("out", "output folder", &RunConfig::out)));
  r.push_back(run_setting(long_option("checkpoint_every", "steps between checkpoints (0: end only)",
                                      &RunConfig::checkpoint_every, 0, 1LL << 40)));
  r.push_back(run_setting(float_option("checkpoint_minutes",
                                       "minutes between checkpoints (0: by steps only)",
                                       &RunConfig::checkpoint_minutes, 0, 1e9)));
  r.push_back(run_setting(bool_option("quiet", "no progress output", &RunConfig::quiet)));
  r.push_back(run_setting(bool_option("log_json", "progress as JSON lines", &RunConfig::log_json)));
  r.push_back(run_setting(bool_option("profile", "print time per stage", &RunConfig::profile)));
  r.push_back(run_setting(bool_option("overwrite", "replace an existing output folder",
                                      &RunConfig::overwrite)));
  r.push_back(run_setting(enum_option<CudaGraphs>(
      "cuda_graphs", "CUDA graphs for the steady-state step: auto (fall back to eager launches, "
      "with a warning, when capture fails), on (capture failure is an error), off",
      &RunConfig::cuda_graphs,
      {{"auto", CudaGraphs::automatic}, {"on", CudaGraphs::on}, {"off", CudaGraphs::off}})));
  r.push_back(run_setting(enum_option<RegretPath>(
      "regret_path", "how regrets are computed (equal to float rounding): auto, structured "
      "(CUDA: force the factorised kernels), generic (no factorisation), reference (the plain "
      "loop of DESIGN.md 5.2)",
      &RunConfig::regret_path,
      {{"auto", RegretPath::automatic}, {"structured", RegretPath::structured},
       {"generic", RegretPath::generic}, {"reference", RegretPath::reference}})));
  r.push_back(run_setting(bool_option(
      "fast_reduce",
      "across MPI ranks (cpu backend, flat objectives: power, tilt, maxmin): each rank keeps "
      "its own agents' regrets and the step's sums are added by MPI_Allreduce instead of "
      "gathering every agent's regret; results reproduce run after run for a given rank "
      "count and equal the default's to rounding, but are not bit-identical across rank "
      "counts; in one process it changes nothing "
      "(other objectives are refused there too)",
      &RunConfig::fast_reduce)));
  // backend names are checked here rather than through an enum so that the help text
  // can say which ones this build has.
  return r;
}

}  // namespace

const std::vector<OptionSpec>& option_registry() {
  static const std::vector<OptionSpec> registry = build_registry();
  return registry;
}

const OptionSpec* find_option(const std::string& key) {
  std::string k = key;
  for (char& c : k)
    if (c == '-') c = '_';
  for (const auto& o : option_registry())
    if (o.key == k) return &o;
  return nullptr;
}

void set_option(RunConfig& cfg, const std::string& key, const std::string& value,
                const std::string& where) {
  const OptionSpec* o = find_option(key);
  if (!o) throw ConfigError(where + ": unknown key '" + key + "'");
  try {
    o->set(cfg, value);
  } catch (const ConfigError& e) {
    std::string msg = e.what();
    if (msg.rfind(": ", 0) == 0) msg = msg.substr(2);
    throw ConfigError(where + ": " + o->key + ": " + msg);
  }
}

std::vector<std::pair<Family, double>> parse_mix(const std::string& text) {
  std::vector<std::pair<Family, double>> out;
  double total = 0;
  for (const auto& part : split(text, ',')) {
    const auto kv = split(part, '=');
    if (kv.size() != 2) throw ConfigError("--mix: expected NAME=FRACTION items, got '" + part + "'");
    const std::string name = trim(kv[0]);
    Family f{};
    bool known = false;
    std::string expected;
    Families::for_each([&](auto fam) {
      using F = decltype(fam);
      expected += std::string(expected.empty() ? "" : ", ") + F::short_name;
      if (!known && (name == F::short_name || name == F::name)) {
        f = F::tag;
        known = true;
      }
    });
    if (!known) throw ConfigError("--mix: unknown family '" + name + "' (expected one of " + expected + ")");
    for (const auto& [g, w] : out)
      if (g == f) throw ConfigError("--mix: family '" + name + "' given twice");
    const double w = parse_double(kv[1], "--mix");
    if (w < 0) throw ConfigError("--mix: fraction of '" + name + "' must be >= 0");
    out.emplace_back(f, w);
    total += w;
  }
  if (total <= 0) throw ConfigError("--mix: fractions must sum to a positive number");
  for (auto& [f, w] : out) w /= total;
  return out;
}

void validate(const RunConfig& c) {
  // Here rather than in a backend, so that every backend and rank count refuses the same
  // configurations.
  if (c.fast_reduce) require_flat_for_fast_reduce(*run_objective(c));
  if (c.beta_auto && !(c.val_fraction > 0))
    throw ConfigError("--beta auto chooses on the validation slice; --val-fraction 0 leaves "
                      "none (give --val-fraction > 0, or a fixed --beta)");
  if (c.warm_start_epochs > c.epochs)
    throw ConfigError("warm_start_epochs (" + std::to_string(c.warm_start_epochs) +
                      ") exceeds epochs (" + std::to_string(c.epochs) + ")");
  if (c.backend != "cpu" && c.backend != "cuda" && c.backend != "auto")
    throw ConfigError("backend: expected cpu, cuda or auto, got '" + c.backend + "'");
  if (c.antithetic && c.samples % 2 != 0)
    throw ConfigError("samples: antithetic sampling needs an even number of samples, got " +
                      std::to_string(c.samples));
  // A family's generator keys matter only when that family is generated.
  bool generates_ev = false;
  if (c.population.empty() && c.agents > 0)
    for (const auto& [f, w] : parse_mix(c.mix))
      generates_ev = generates_ev || (f == Family::ev_charging && w > 0);
  if (generates_ev && c.ev_k.hi > c.horizon)
    throw ConfigError("ev_k: upper bound " + format_double(c.ev_k.hi) + " exceeds horizon " +
                      std::to_string(c.horizon));
  if (generates_ev && c.ev_window_min > c.horizon)
    throw ConfigError("ev_window_min: " + std::to_string(c.ev_window_min) + " exceeds horizon " +
                      std::to_string(c.horizon));
  parse_mix(c.mix);
  if (c.series.empty() && c.series_hours < c.lookback + c.horizon + 10)
    throw ConfigError("series_hours: too short for lookback + horizon");
}

std::size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string config_to_json(const RunConfig& cfg) {
  std::string s = "{";
  bool first = true;
  for (const auto& o : option_registry()) {
    s += first ? "" : ", ";
    first = false;
    s += "\"" + o.key + "\": ";
    const std::string v = o.get(cfg);
    if (o.type == "int" || o.type == "float" || o.type == "bool" ||
        (o.type == "float-or-auto" && v != "auto")) {
      s += v;
    } else if (o.type == "range" || o.type == "int-list" || o.type == "float-list") {
      s += "[" + v + "]";
    } else {
      s += "\"" + json_escape(v) + "\"";
    }
  }
  return s + "}";
}

std::string config_to_toml(const RunConfig& cfg) {
  std::string s;
  for (const auto& o : option_registry()) {
    const std::string v = o.get(cfg);
    s += o.key + " = ";
    if (o.type == "int" || o.type == "bool") {
      s += v;
    } else if (o.type == "float" || (o.type == "float-or-auto" && v != "auto")) {
      // TOML floats need a fraction or exponent.
      s += (v.find_first_of(".eEn") == std::string::npos) ? v + ".0" : v;
    } else if (o.type == "float-list") {
      std::string list;
      for (const auto& x : split(v, ','))
        list += (list.empty() ? "" : ", ") +
                ((x.find_first_of(".eEn") == std::string::npos) ? x + ".0" : x);
      s += "[" + list + "]";
    } else if (o.type == "range" || o.type == "int-list") {
      s += "[" + v + "]";
    } else {
      s += "\"" + json_escape(v) + "\"";
    }
    s += "\n";
  }
  return s;
}

// The one JSON string escaper (config.hpp): every writer of JSON text uses it, the
// safetensors headers included. The short escapes where JSON has them, \u00XX for the
// other control characters and DEL.
std::shared_ptr<const Objective> run_objective(const RunConfig& cfg) {
  return cfg.objective.empty() ? power_objective(cfg.q) : make_objective(cfg.objective, "objective");
}

std::string objective_spec(const RunConfig& cfg) { return run_objective(cfg)->spec(); }

std::string json_escape(const std::string& s) {
  static const char* const hex = "0123456789abcdef";
  std::string o;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      case '\b': o += "\\b"; break;
      case '\f': o += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7F) {
          o += "\\u00";
          o += hex[c >> 4];
          o += hex[c & 15];
        } else {
          o += ch;
        }
    }
  }
  return o;
}

}  // namespace eqpm
