// Agent families (DESIGN.md section 4). Each family is a type with a tag, its compact
// parameters, and its regret (and, where it has one, the derivative of the regret with
// respect to the prediction) as EQPM_HD_INLINE templates: the same code runs in the CPU
// reference backend and in the CUDA kernels. The prediction v, truth y and gradient
// arguments are anything indexable by hour (v[h]): plain pointers in the reference and
// the kernels, strided views in the CPU fast path, which evaluates one agent for many
// samples at once with the samples in SIMD lanes (host/cpu/cpu_lanes.hpp). Backends
// iterate over the type list `Families`; adding a family means writing one struct like
// these and appending it there, never touching the training loop.
#pragma once

#include <cmath>
#include <cstdint>

#include "eqpm/hd.hpp"

namespace eqpm {

enum class Family : std::uint8_t { datacenter = 0, ev_charging = 1, inventory = 2 };
inline constexpr int kFamilyCount = 3;

// One agent as users see it (the columns of population.csv, DESIGN.md 8.1). Fields that
// do not apply to the agent's family are ignored.
struct Agent {
  Family family = Family::datacenter;
  double weight = 1.0;
  // datacenter
  double lambda = 0.0;
  double scale = 0.0;
  int phase = 0;
  // datacenter, inventory: which forecast hour the agent acts on
  int hour = 0;
  // ev_charging
  int k = 0;
  int window_start = 0;
  int window_end = 0;
  double energy = 0.0;
  // inventory
  double cu = 0.0;
  double co = 0.0;
};

// What a regret needs besides the agent and the (prediction, truth) pair.
struct RegretContext {
  const float* demand = nullptr;  // datacenter demand profile D (DESIGN.md 4.1)
  long demand_length = 0;
  float floor = 1e-3f;            // decisions use max(prediction, floor)
  // Optional: `demand` already repeated periodically over every index t + phase that will
  // be asked for, so the lookup needs no remainder (which has no vector instruction). A
  // backend sets it only after checking the range; the values are the same.
  bool demand_unwrapped = false;
};

template <class T>
EQPM_HD_INLINE T clamp_floor(T v, float floor) {
  return v < T(floor) ? T(floor) : v;
}

// ---------------------------------------------------------------- datacenter (4.1)
struct Datacenter {
  static constexpr Family tag = Family::datacenter;
  static constexpr const char* name = "datacenter";
  static constexpr const char* short_name = "dc";  // in --mix
  static constexpr bool differentiable = true;
  struct Params {
    float lambda;
    float scale;
    int phase;
    int hour;
  };
  static Params params(const Agent& a) {
    return {float(a.lambda), float(a.scale), a.phase, a.hour};
  }
  // Rescales the agent's costs so that its regret is multiplied by f > 0 (the regret goes
  // as sqrt(lambda), and lambda enters nothing else that the regret depends on).
  static void scale_regret(Agent& a, double f) { a.lambda *= f * f; }

  template <class T>
  EQPM_HD_INLINE static T demand(const Params& p, const RegretContext& c, long t) {
    long i = t + p.phase;
    if (!c.demand_unwrapped) {  // the same for every sample: compilers hoist the test
      i %= c.demand_length;
      if (i < 0) i += c.demand_length;
    }
    return T(p.scale) * T(c.demand[i]);
  }
  // Capacity decision for a predicted carbon intensity v and its cost under truth y.
  template <class T>
  EQPM_HD_INLINE static T decision(T v, T d, T lambda) {
    return d + sqrt(lambda * d / v);
  }
  template <class T>
  EQPM_HD_INLINE static T cost(T a, T y, T d, T lambda) {
    return a * y + lambda * d / (a - d);
  }
  // Closed form of cost(decision(v)) - cost(decision(y)); stable for any v, y > 0.
  template <class T, class V, class Y>
  EQPM_HD_INLINE static T regret(const Params& p, V v, Y y,
                                 const RegretContext& c, long t) {
    const T vv = clamp_floor(T(v[p.hour]), c.floor);
    const T yy = T(y[p.hour]);
    const T d = demand<T>(p, c, t);
    const T diff = sqrt(yy) - sqrt(vv);
    return sqrt(T(p.lambda) * d) * diff * diff / sqrt(vv);
  }
  // grad[h] += weight * d regret / d v[h]; zero below the floor (the decision is flat).
  // Branch-free (a select, then one unconditional add) so that it vectorises over samples.
  template <class T, class V, class Y, class G>
  EQPM_HD_INLINE static void add_dregret(const Params& p, V v, Y y,
                                         const RegretContext& c, long t, T weight, G grad) {
    const T raw = T(v[p.hour]);
    const T vv = clamp_floor(raw, c.floor);
    const T yy = T(y[p.hour]);
    const T d = demand<T>(p, c, t);
    const T slope = sqrt(T(p.lambda) * d) * (vv - yy) / (T(2) * vv * sqrt(vv));
    grad[p.hour] += raw < T(c.floor) ? T(0) : weight * slope;
  }
};

// -------------------------------------------------------------- ev_charging (4.2)
struct EvCharging {
  static constexpr Family tag = Family::ev_charging;
  static constexpr const char* name = "ev_charging";
  static constexpr const char* short_name = "ev";
  static constexpr bool differentiable = false;
  struct Params {
    int k;
    int window_start;
    int window_end;
    float energy;
  };
  static Params params(const Agent& a) {
    return {a.k, a.window_start, a.window_end, float(a.energy)};
  }
  static void scale_regret(Agent& a, double f) { a.energy *= f; }

  // Sum of truth[h] over the k hours of [a, b) with the lowest key[h] (ties: lower h).
  // O(width^2) rank counting: no branches, no sorting, no scratch memory, so it runs the
  // same in a CUDA thread and in a SIMD lane (the loop bounds are the agent's, not the
  // sample's).
  template <class T, class K, class Y>
  EQPM_HD_INLINE static T cost_of_k_lowest(const K& key, Y truth, int a, int b, int k) {
    T total = T(0);
    for (int h = a; h < b; ++h) {
      int rank = 0;
      for (int j = a; j < h; ++j) rank += key[j] <= key[h];
      for (int j = h + 1; j < b; ++j) rank += key[j] < key[h];
      total += rank < k ? T(truth[h]) : T(0);
    }
    return total;
  }
  template <class T, class V, class Y>
  EQPM_HD_INLINE static T regret(const Params& p, V v, Y y,
                                 const RegretContext& c, long /*t*/) {
    // Clamping to the floor is monotone, so the chosen hours are those of the clamped
    // prediction: ties created by the clamp resolve to the lower hour, as required.
    T key[kMaxHorizon];
    for (int h = p.window_start; h < p.window_end; ++h) key[h] = clamp_floor(T(v[h]), c.floor);
    const T chosen = cost_of_k_lowest<T>(key, y, p.window_start, p.window_end, p.k);
    const T best = cost_of_k_lowest<T>(y, y, p.window_start, p.window_end, p.k);
    return T(p.energy) * (chosen - best);
  }

  // The conditional Monte Carlo gradient of the smoothed regret E[r(mu + sigma eps)] (an
  // extension of DESIGN.md 5.3; README, "How it trains"), added times `weight` into
  // grad[h]: an unbiased estimate from one sample v = mu + sigma eps of the hours' keys.
  // Hour h's own noise is integrated out exactly: given the other hours' keys, h is
  // charged when mu_h + sigma eps_h is below the k-th lowest of them (key `thr`, truth
  // y_thr); charging h instead of that hour changes the cost by y_h - y_thr, which happens
  // with probability Phi((thr - mu_h) / sigma), so d/dmu_h E[r | others] = -energy phi(z)
  // / sigma (y_h - y_thr) with z = (thr - mu_h) / sigma. Its variance is far lower than
  // the score function's, whose eps multiplies every hour's rank flips at once. Terms with z^2 > 60
  // (phi below 1e-13 of its peak) are skipped.
  template <class T, class V, class M, class Y, class G>
  EQPM_HD_INLINE static void add_dregret_conditional(const Params& p, V v, M mu, Y y,
                                                     const RegretContext& c, T sigma, T weight,
                                                     G grad) {
    const int a = p.window_start, m = p.window_end - p.window_start;
    if (p.k >= m || !(sigma > T(0))) return;  // every hour is charged: nothing to decide
    T key[kMaxHorizon];
    int order[kMaxHorizon];
    for (int i = 0; i < m; ++i) {  // the window's hours by key, ties by hour (insertion sort)
      const int h = a + i;
      key[h] = clamp_floor(T(v[h]), c.floor);
      int j = i;
      for (; j > 0 && key[order[j - 1]] > key[h]; --j) order[j] = order[j - 1];
      order[j] = h;
    }
    add_dregret_conditional_sorted<T>(p, order, key, mu, y, c, sigma, weight, grad);
  }
  // The same from the window's hours already in key order (ties by hour) and their keys
  // (clamped to the floor); the CPU sorts all hours once per sample and filters windows.
  template <class T, class K, class M, class Y, class G>
  EQPM_HD_INLINE static void add_dregret_conditional_sorted(const Params& p, const int* order,
                                                            K key, M mu, Y y,
                                                            const RegretContext& c, T sigma,
                                                            T weight, G grad) {
    const int m = p.window_end - p.window_start;
    if (p.k >= m || !(sigma > T(0))) return;
    const T scale = weight * T(p.energy) * T(-0.3989422804014327) / sigma;  // -1/sqrt(2 pi)
    for (int i = 0; i < m; ++i) {
      const int h = order[i];
      const int other = order[i < p.k ? p.k : p.k - 1];  // the k-th lowest of the others
      const T thr = T(key[other]);
      if (thr <= T(c.floor)) continue;  // h's key never goes below the floor
      const T z = (thr - T(mu[h])) / sigma;
      if (z * z > T(60)) continue;
      // The density in float (expf on the host and the device): its rounding is far below
      // the estimator's noise, and float exp costs a fraction of double exp.
      const T density = T(expf(static_cast<float>(T(-0.5) * z * z)));
      grad[h] += scale * density * (T(y[h]) - T(y[other]));
    }
  }
};

// ---------------------------------------------------------------- inventory (4.3)
struct Inventory {
  static constexpr Family tag = Family::inventory;
  static constexpr const char* name = "inventory";
  static constexpr const char* short_name = "inv";
  static constexpr bool differentiable = true;
  struct Params {
    float cu;
    float co;
    int hour;
  };
  static Params params(const Agent& a) { return {float(a.cu), float(a.co), a.hour}; }
  // Both costs by f: the same critical quantile, so the same decisions, regret times f.
  static void scale_regret(Agent& a, double f) {
    a.cu *= f;
    a.co *= f;
  }

  template <class T, class V, class Y>
  EQPM_HD_INLINE static T regret(const Params& p, V v, Y y,
                                 const RegretContext& c, long /*t*/) {
    const T a = clamp_floor(T(v[p.hour]), c.floor);
    const T yy = T(y[p.hour]);
    return a < yy ? T(p.cu) * (yy - a) : T(p.co) * (a - yy);
  }
  template <class T, class V, class Y, class G>
  EQPM_HD_INLINE static void add_dregret(const Params& p, V v, Y y,
                                         const RegretContext& c, long /*t*/, T weight, G grad) {
    const T a = T(v[p.hour]);
    const T yy = T(y[p.hour]);
    // Branch-free, as Datacenter's: -cu under, +co over, zero at the truth or below the floor.
    const T slope = a < yy ? -T(p.cu) : (a > yy ? T(p.co) : T(0));
    grad[p.hour] += a < T(c.floor) ? T(0) : weight * slope;
  }
};

// The registry every backend iterates over.
template <class... F>
struct FamilyList {
  static constexpr int size = sizeof...(F);
  template <class Fn>
  static void for_each(Fn&& fn) {
    (fn(F{}), ...);
  }
};
using Families = FamilyList<Datacenter, EvCharging, Inventory>;

const char* family_name(Family f);
// Parses "datacenter" | "ev_charging" | "inventory"; returns false when unknown.
bool parse_family(const char* text, Family* out);

enum class Estimator : std::uint8_t { score, pathwise, automatic };

// Whether agents of family F contribute through the pathwise estimator (5.3).
template <class F>
constexpr bool uses_pathwise(Estimator e) {
  return F::differentiable && e != Estimator::score;
}

}  // namespace eqpm
