// The fairness objectives of DESIGN.md 5.5 (objectives.hpp).
#include "eqpm/objectives.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <numeric>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"

namespace eqpm {

namespace {

double weight_at(const AgentSet& a, long i) { return a.weight ? a.weight[i] : 1.0; }
int group_at(const AgentSet& a, long i) { return a.group ? a.group[i] : 0; }

// "a,b,,c" -> {"a", "b", "", "c"}: the numbers of a spec and the items of a sweep's list.
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return parts;
    start = comma + 1;
  }
}

class Flat final : public Objective {
 public:
  Flat(FlatObjective f, std::string spec) : f_(f), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }
  double evaluate(const double* R, const AgentSet& a, Reducer& reducer,
                  double* omega) const override {
    return evaluate_flat(f_, R, a, reducer, omega);
  }
  const FlatObjective* flat() const override { return &f_; }

 private:
  FlatObjective f_;
  std::string spec_;
};

// Two levels: each group's regret G_g is the inner objective of its agents' regrets (with
// the weights w_n / W_g), and F is the outer objective of the G_g (with the weights W_g / W).
// dF/dR_n = dF/dG_g * dG_g/dR_n, each factor a flat objective's weight.
class Grouped final : public Objective {
 public:
  Grouped(FlatObjective inner, FlatObjective outer, std::string spec)
      : inner_(inner), outer_(outer), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }

  double evaluate(const double* R, const AgentSet& a, Reducer& reducer,
                  double* omega) const override {
    const int K = a.groups;
    std::vector<double> rmax(static_cast<size_t>(K), 0.0), wsum(static_cast<size_t>(K), 0.0),
        terms(static_cast<size_t>(K), 0.0), G(static_cast<size_t>(K), 0.0);
    for (long i = 0; i < a.n; ++i) {
      const size_t g = static_cast<size_t>(group_at(a, i));
      rmax[g] = R[i] > rmax[g] ? R[i] : rmax[g];
      wsum[g] += weight_at(a, i);
    }
    reducer.max(rmax.data(), K);
    reducer.sum(wsum.data(), K);
    for (long i = 0; i < a.n; ++i) {
      const size_t g = static_cast<size_t>(group_at(a, i));
      if (rmax[g] > 0.0) terms[g] += inner_.term(R[i], weight_at(a, i), rmax[g]);
    }
    reducer.sum(terms.data(), K);
    for (size_t g = 0; g < G.size(); ++g) G[g] = inner_.finish(rmax[g], terms[g], wsum[g]);
    // The outer objective over the groups, which every place now holds in full.
    LocalReducer here;
    const double value = objective_value(outer_, G.data(), wsum.data(), K, here);
    if (omega) {
      double W = 0.0;
      for (double w : wsum) W += w;
      for (long i = 0; i < a.n; ++i) {
        const size_t g = static_cast<size_t>(group_at(a, i));
        const double outer = outer_.weight(G[g], wsum[g] / W, value);
        const double inner = inner_.weight(R[i], weight_at(a, i) / wsum[g], G[g]);
        omega[i] = outer * inner;
      }
    }
    return value;
  }

 private:
  FlatObjective inner_, outer_;
  std::string spec_;
};

// The mean of the worst alpha share of weight: the agents sorted by regret, largest first
// (ties by population index), each counted with its weight until alpha W is reached.
class CVaR final : public Objective {
 public:
  CVaR(double alpha, std::string spec) : alpha_(alpha), spec_(std::move(spec)) {}
  std::string spec() const override { return spec_; }

  double evaluate(const double* R, const AgentSet& a, Reducer& reducer,
                  double* omega) const override {
    if (reducer.size() > 1)
      throw Error("objective " + spec_ + ": CVaR needs every agent's regret in one place");
    std::vector<long> order(static_cast<size_t>(a.n));
    std::iota(order.begin(), order.end(), 0L);
    const auto index = [&](long i) { return a.index ? a.index[i] : i; };
    std::sort(order.begin(), order.end(), [&](long x, long y) {
      return R[x] != R[y] ? R[x] > R[y] : index(x) < index(y);
    });
    const double target = alpha_ * a.total_weight;
    if (omega) std::fill(omega, omega + a.n, 0.0);
    double taken = 0.0, sum = 0.0;
    for (long i : order) {
      const double take = std::min(weight_at(a, i), target - taken);
      if (!(take > 0.0)) break;
      sum += take * R[i];
      taken += take;
      if (omega) omega[i] = take / target;
    }
    return target > 0.0 ? sum / target : 0.0;
  }

 private:
  double alpha_;
  std::string spec_;
};

[[noreturn]] void bad(const std::string& flag, const std::string& spec, const std::string& why) {
  throw ConfigError((flag.empty() ? std::string() : flag + ": ") + why + " in '" + spec +
                    "'; expected power:q, tilt:t, maxmin:tau, cvar:alpha, group-power:q or "
                    "tilt-groups:t_in,t_out");
}

// The numbers after the colon.
std::vector<double> numbers(const std::string& flag, const std::string& spec, const std::string& text) {
  std::vector<double> out;
  for (const std::string& part : split_commas(text)) {
    char* end = nullptr;
    errno = 0;
    const double v = part.empty() ? NAN : std::strtod(part.c_str(), &end);
    if (part.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v))
      bad(flag, spec, "'" + part + "' is not a number");
    out.push_back(v);
  }
  return out;
}

struct Kind {
  const char* name;
  int arity;
};
constexpr Kind kKinds[] = {{"power", 1}, {"tilt", 1},        {"maxmin", 1},
                           {"cvar", 1},  {"group-power", 1}, {"tilt-groups", 2}};

const Kind* find_kind(const std::string& name) {
  for (const Kind& k : kKinds)
    if (name == k.name) return &k;
  return nullptr;
}

}  // namespace

double evaluate_flat(const FlatObjective& f, const double* R, const AgentSet& a,
                     Reducer& reducer, double* omega) {
  const double value = objective_value(f, R, a.weight, a.n, reducer);
  if (omega)
    for (long i = 0; i < a.n; ++i) omega[i] = f.weight(R[i], weight_at(a, i) / a.total_weight, value);
  return value;
}

void require_flat_for_fast_reduce(const Objective& f) {
  if (!f.flat())
    throw ConfigError("--fast-reduce: the objective " + f.spec() +
                      " needs every agent's regret in one place; only the flat objectives "
                      "(power, tilt, maxmin) reduce natively across ranks. Leave out "
                      "--fast-reduce for it");
}

std::shared_ptr<const Objective> power_objective(double q) {
  return std::make_shared<Flat>(FlatObjective::power(q), "power:" + format_number(q));
}

std::shared_ptr<const Objective> make_objective(const std::string& spec, const std::string& flag) {
  const size_t colon = spec.find(':');
  if (colon == std::string::npos) bad(flag, spec, "no ':'");
  const std::string name = spec.substr(0, colon);
  const Kind* kind = find_kind(name);
  if (!kind) bad(flag, spec, "unknown objective '" + name + "'");
  const std::vector<double> v = numbers(flag, spec, spec.substr(colon + 1));
  if (static_cast<int>(v.size()) != kind->arity)
    bad(flag, spec, name + " takes " + std::to_string(kind->arity) + " number" +
                        (kind->arity > 1 ? "s" : "") + ", got " + std::to_string(v.size()));
  const auto positive = [&](double x, const char* what, double most) {
    if (!(x > 0.0) || x > most)
      bad(flag, spec, std::string(what) + " must lie in (0, " + format_number(most) + "]");
  };
  std::string canonical = name + ":" + format_number(v[0]);
  if (kind->arity == 2) canonical += "," + format_number(v[1]);
  if (name == "power" || name == "group-power") {
    if (!(v[0] >= 0.0) || v[0] > 1000.0) bad(flag, spec, "q must lie in [0, 1000]");
    if (name == "power") return std::make_shared<Flat>(FlatObjective::power(v[0]), canonical);
    return std::make_shared<Grouped>(FlatObjective::power(0.0), FlatObjective::power(v[0]), canonical);
  }
  if (name == "tilt") {
    positive(v[0], "t", 1e6);
    return std::make_shared<Flat>(FlatObjective::tilt(v[0]), canonical);
  }
  if (name == "maxmin") {
    positive(v[0], "tau", 1e6);
    if (!(1.0 / v[0] <= 1e6)) bad(flag, spec, "tau must be at least 1e-06");
    return std::make_shared<Flat>(FlatObjective::tilt(1.0 / v[0]), canonical);
  }
  if (name == "cvar") {
    positive(v[0], "alpha", 1.0);
    return std::make_shared<CVaR>(v[0], canonical);
  }
  positive(v[0], "t_in", 1e6);
  positive(v[1], "t_out", 1e6);
  return std::make_shared<Grouped>(FlatObjective::tilt(v[0]), FlatObjective::tilt(v[1]), canonical);
}

std::vector<std::string> split_objectives(const std::string& list, const std::string& flag) {
  const std::vector<std::string> parts = split_commas(list);
  std::vector<std::string> out;
  const Kind* kind = nullptr;
  std::string name;
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string first = parts[i];
    const size_t colon = first.find(':');
    if (colon != std::string::npos) {
      name = first.substr(0, colon);
      kind = find_kind(name);
      if (!kind) bad(flag, list, "unknown objective '" + name + "'");
      first = first.substr(colon + 1);
    } else if (!kind) {
      bad(flag, list, "'" + first + "' has no kind");
    }
    std::string spec = name + ":" + first;
    for (int k = 1; k < kind->arity; ++k) {
      if (++i >= parts.size()) bad(flag, list, name + " takes " + std::to_string(kind->arity) + " numbers");
      spec += "," + parts[i];
    }
    out.push_back(make_objective(spec, flag)->spec());
  }
  return out;
}

double objective_of(const Objective& f, const std::vector<double>& regret,
                    const std::vector<double>& weights, const std::vector<int>& groups) {
  AgentSet a;
  a.n = static_cast<long>(regret.size());
  a.weight = weights.empty() ? nullptr : weights.data();
  a.group = groups.empty() ? nullptr : groups.data();
  a.groups = groups.empty() ? 1 : *std::max_element(groups.begin(), groups.end()) + 1;
  a.total_weight = weights.empty() ? static_cast<double>(a.n)
                                   : std::accumulate(weights.begin(), weights.end(), 0.0);
  LocalReducer here;
  return f.evaluate(regret.data(), a, here, nullptr);
}

}  // namespace eqpm
