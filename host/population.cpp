// Populations: the seeded synthetic generator of DESIGN.md 4.4 and agent validation.
#include "eqpm/population.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

const char* family_name(Family f) {
  const char* name = "?";
  Families::for_each([&](auto fam) {
    if (decltype(fam)::tag == f) name = decltype(fam)::name;
  });
  return name;
}

bool parse_family(const char* text, Family* out) {
  bool found = false;
  Families::for_each([&](auto fam) {
    if (!found && std::strcmp(text, decltype(fam)::name) == 0) {
      *out = decltype(fam)::tag;
      found = true;
    }
  });
  return found;
}

double Population::total_weight() const {
  double w = 0;
  for (const auto& a : agents) w += a.weight;
  return w;
}

std::vector<double> Population::weights() const {
  std::vector<double> w(agents.size());
  for (size_t n = 0; n < w.size(); ++n) w[n] = agents[n].weight;
  return w;
}

std::vector<int> Population::groups() const {
  if (!group_names.empty()) return agent_group;
  std::vector<int> g(agents.size());
  for (size_t n = 0; n < g.size(); ++n) g[n] = static_cast<int>(agents[n].family);
  return g;
}

int Population::group_count() const {
  return group_names.empty() ? kFamilyCount : static_cast<int>(group_names.size());
}

std::string Population::group_name(int g) const {
  return group_names.empty() ? family_name(static_cast<Family>(g)) : group_names[static_cast<size_t>(g)];
}

long Population::count(Family f) const {
  return static_cast<long>(std::count_if(agents.begin(), agents.end(),
                                         [f](const Agent& a) { return a.family == f; }));
}

std::string check_agent(const Agent& a, int H) {
  // Backends compute regrets in float: a parameter must be finite as a float, and one that
  // must be positive must stay positive when rounded to float.
  auto bad = [](double v) { return !std::isfinite(v) || std::abs(v) > 3.4e38; };
  auto not_positive = [&](double v) { return bad(v) || !(static_cast<float>(v) > 0.0f); };
  if (bad(a.weight) || a.weight <= 0) return "weight must be a positive number";
  const std::string horizon = std::to_string(H);
  switch (a.family) {
    case Family::datacenter:
      if (not_positive(a.lambda)) return "lambda must be > 0 and within float range";
      if (not_positive(a.scale)) return "scale must be > 0 and within float range";
      if (a.phase < 0) return "phase must be >= 0 (hours into the demand profile)";
      if (a.hour < 0 || a.hour >= H) return "hour must lie in [0, " + horizon + ")";
      return "";
    case Family::ev_charging:
      if (a.k < 1 || a.k > H) return "k must lie in [1, " + horizon + "]";
      if (a.window_start < 0 || a.window_end > H || a.window_start >= a.window_end)
        return "window [window_start, window_end) must lie within [0, " + horizon + ")";
      if (a.window_end - a.window_start < a.k)
        return "k = " + std::to_string(a.k) + " exceeds the window width " +
               std::to_string(a.window_end - a.window_start);
      if (not_positive(a.energy)) return "energy must be > 0 and within float range";
      return "";
    case Family::inventory:
      if (bad(a.cu) || a.cu < 0) return "cu must be >= 0 and within float range";
      if (bad(a.co) || a.co < 0) return "co must be >= 0 and within float range";
      if (a.hour < 0 || a.hour >= H) return "hour must lie in [0, " + horizon + ")";
      return "";
  }
  return "unknown family";
}

void validate_population(const Population& p, int H, const std::string& source) {
  if (p.agents.empty()) throw InputError(source, 0, 0, "the population has no agents");
  for (long n = 0; n < p.size(); ++n) {
    const std::string why = check_agent(p.agents[static_cast<size_t>(n)], H);
    if (!why.empty())
      throw InputError(source, 0, 0, "agent " + std::to_string(n) + ": " + why);
  }
}

namespace {

double log_uniform(SplitMix64& rng, const Range& r) {
  return std::exp(rng.uniform(std::log(r.lo), std::log(r.hi)));
}
long int_uniform(SplitMix64& rng, const Range& r) {
  return rng.integer(static_cast<long>(std::lround(r.lo)), static_cast<long>(std::lround(r.hi)));
}

}  // namespace

Population generate_population(const RunConfig& cfg, long demand_length) {
  const int H = cfg.horizon;
  const auto mix = parse_mix(cfg.mix);
  // Largest-remainder apportionment of N agents over the families of the mix.
  std::vector<long> counts(mix.size());
  long assigned = 0;
  std::vector<std::pair<double, size_t>> remainders;
  for (size_t i = 0; i < mix.size(); ++i) {
    const double exact = mix[i].second * static_cast<double>(cfg.agents);
    counts[i] = static_cast<long>(std::floor(exact));
    assigned += counts[i];
    remainders.emplace_back(exact - std::floor(exact), i);
  }
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; assigned < cfg.agents; ++i, ++assigned) ++counts[remainders[i].second];

  long n_dc = 0;
  for (size_t i = 0; i < mix.size(); ++i)
    if (mix[i].first == Family::datacenter) n_dc += counts[i];
  if (n_dc > 0 && cfg.dc_phase_rule == DcSpreadRule::spread && demand_length <= 0)
    throw ConfigError("dc_phase_rule = spread needs the length of the demand profile (got " +
                      std::to_string(demand_length) + ")");
  // The paper's constructions (DESIGN.md 4.4) for datacenter agent n = 0..n_dc-1. They are
  // applied after the random draws, which every agent makes whatever the rules.
  auto apply_dc_rules = [&](Agent& a, long n) {
    switch (cfg.dc_lambda_rule) {
      case DcLambdaRule::random: break;
      case DcLambdaRule::linear: a.lambda = 2.0 * static_cast<double>(n + 1); break;
      case DcLambdaRule::constant: a.lambda = cfg.dc_lambda.lo; break;
    }
    if (cfg.dc_phase_rule == DcSpreadRule::spread) {
      // floor(n T_D / N_dc) in exact integer arithmetic (n < 1e8 agents, T_D < 1e7 hours).
      a.phase = static_cast<int>((static_cast<long long>(n) * demand_length) / n_dc);
    }
    if (cfg.dc_scale_rule == DcSpreadRule::spread) {
      const double lo = cfg.dc_scale.lo, hi = cfg.dc_scale.hi;
      if (n == 0 || n_dc == 1) a.scale = lo;
      else if (n == n_dc - 1) a.scale = hi;
      else a.scale = lo * std::pow(hi / lo, static_cast<double>(n) / static_cast<double>(n_dc - 1));
    }
  };
  long dc_index = 0;

  Population p;
  p.agents.reserve(static_cast<size_t>(cfg.agents));
  SplitMix64 rng(cfg.pop_seed * 0x2545f4914f6cdd1dULL + 17);
  auto clamp_hour = [H](long h) { return static_cast<int>(std::clamp<long>(h, 0, H - 1)); };
  for (size_t i = 0; i < mix.size(); ++i) {
    for (long j = 0; j < counts[i]; ++j) {
      Agent a;
      a.family = mix[i].first;
      switch (a.family) {
        case Family::datacenter:
          a.lambda = log_uniform(rng, cfg.dc_lambda);
          a.scale = log_uniform(rng, cfg.dc_scale);
          a.phase = static_cast<int>(int_uniform(rng, cfg.dc_phase));
          a.hour = clamp_hour(int_uniform(rng, cfg.dc_hour));
          apply_dc_rules(a, dc_index++);
          break;
        case Family::ev_charging: {
          a.k = static_cast<int>(std::clamp<long>(int_uniform(rng, cfg.ev_k), 1, H));
          if (cfg.ev_window_min <= 0) {
            a.window_start = 0;
            a.window_end = H;
          } else {
            const long min_width = std::max<long>(cfg.ev_window_min, a.k);
            const long width = rng.integer(std::min<long>(min_width, H), H);
            a.window_start = static_cast<int>(rng.integer(0, H - width));
            a.window_end = a.window_start + static_cast<int>(width);
          }
          a.energy = rng.uniform(cfg.ev_energy.lo, cfg.ev_energy.hi);
          break;
        }
        case Family::inventory:
          a.cu = log_uniform(rng, cfg.inv_cu);
          a.co = log_uniform(rng, cfg.inv_co);
          a.hour = clamp_hour(int_uniform(rng, cfg.inv_hour));
          break;
      }
      p.agents.push_back(a);
    }
  }
  return p;
}

}  // namespace eqpm
