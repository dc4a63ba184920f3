// DESIGN.md 5.4: families whose regret is linear in a few per-agent coefficients,
//     r_n(v, y, t) = sum_j coef_j(n) * r(unit_j(n))(v, y, t),
// where unit_j(n) are the parameters of a class representative that every agent with the same
// key shares. The per-sample work (one call of the family's own regret / add_dregret with the
// unit parameters) is then done once per class and shared by all its agents: per agent, a
// step costs O(bases) instead of O(B S). The CUDA backend's structured path is built on it
// (the kernels see unit parameters and coefficients, never this trait), and the CPU groups
// EV agents into the same classes (cpu_structured.cpp, ev_conditional.cpp). A family without
// a specialisation (a custom family) takes the generic path, which evaluates every agent on
// every sample.
#pragma once

#include <array>
#include <cmath>

#include "eqpm/families.hpp"

namespace eqpm {

template <class F>
struct RegretStructure {
  static constexpr bool available = false;
};

// r = sqrt(lambda s D[(t + phase) mod T_D]) (sqrt(y) - sqrt(v))^2 / sqrt(v) (4.1): with
// lambda = s = 1 the representative carries sqrt(D) and the agent the factor
// sqrt(lambda s); the derivative scales the same way.
template <>
struct RegretStructure<Datacenter> {
  static constexpr bool available = true;
  static constexpr int bases = 1;
  using Key = std::array<long, 2>;
  static Key key(const Datacenter::Params& p) { return {p.hour, p.phase}; }
  static Datacenter::Params unit(const Datacenter::Params& p, int /*j*/) {
    return {1.0f, 1.0f, p.phase, p.hour};
  }
  static double coef(const Datacenter::Params& p, int /*j*/) {
    return std::sqrt(static_cast<double>(p.lambda) * static_cast<double>(p.scale));
  }
};

// r = e (cost of the k cheapest predicted hours of [a, b) - best possible) (4.2): the chosen
// hours depend on (k, a, b) alone, the energy only scales. With whole-horizon windows there
// is one class per k.
template <>
struct RegretStructure<EvCharging> {
  static constexpr bool available = true;
  static constexpr int bases = 1;
  using Key = std::array<long, 3>;
  static Key key(const EvCharging::Params& p) { return {p.k, p.window_start, p.window_end}; }
  static EvCharging::Params unit(const EvCharging::Params& p, int /*j*/) {
    return {p.k, p.window_start, p.window_end, 1.0f};
  }
  static double coef(const EvCharging::Params& p, int /*j*/) {
    return static_cast<double>(p.energy);
  }
};

// r = cu max(y - a, 0) + co max(a - y, 0) (4.3): two representatives per hour, (cu, co) =
// (1, 0) and (0, 1); dr/dv splits the same way.
template <>
struct RegretStructure<Inventory> {
  static constexpr bool available = true;
  static constexpr int bases = 2;
  using Key = std::array<long, 1>;
  static Key key(const Inventory::Params& p) { return {p.hour}; }
  static Inventory::Params unit(const Inventory::Params& p, int j) {
    return j == 0 ? Inventory::Params{1.0f, 0.0f, p.hour} : Inventory::Params{0.0f, 1.0f, p.hour};
  }
  static double coef(const Inventory::Params& p, int j) {
    return static_cast<double>(j == 0 ? p.cu : p.co);
  }
};

}  // namespace eqpm
