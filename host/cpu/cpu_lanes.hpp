// The CPU fast path's sample-major layout: one agent evaluated for many samples at once,
// the samples in SIMD lanes. A `Lanes` batch stores its n samples hour-major,
// v[h * n + j] for sample j, and the truth and time of each sample beside them, so that
// hour h of consecutive samples is contiguous: a family's regret, written for one sample
// against an indexable prediction (families.hpp), vectorises over j under `omp simd` with
// unit-stride loads, because the agent's parameters (and the hours it reads) are the same
// in every lane. Nothing here is family-specific; custom families get it for free.
//
// Arguments are taken by value on purpose: local copies of the parameters and the context
// cannot alias the outputs, so the compiler keeps them in registers and the lane loads stay
// unit-stride instead of turning into gathers.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "eqpm/families.hpp"

namespace eqpm::lanes {

// Hour h of one sample in the hour-major layout.
struct View {
  const float* p;
  long stride;
  float operator[](int h) const { return p[static_cast<long>(h) * stride]; }
};

// The per-sample gradient slots of one sample, hour-major, accumulated in double.
struct Grad {
  double* p;
  long stride;
  double& operator[](int h) const { return p[static_cast<long>(h) * stride]; }
};

// n samples hour-major: predictions v and truths y (H x n each) and times t (n).
struct Lanes {
  const float* v = nullptr;
  const float* y = nullptr;
  const long* t = nullptr;
  long n = 0;
};

// Owns the storage of a Lanes batch, sized once (no allocation when refilled).
class LaneBuffer {
 public:
  void reserve(long n, int H) {
    v_.resize(static_cast<size_t>(n * H));
    y_.resize(static_cast<size_t>(n * H));
    t_.resize(static_cast<size_t>(n));
  }
  // From m groups of `per` samples sharing one truth row and time (a minibatch: m = B
  // inputs, per = S samples): v_in is (m per) x H, y_in m x H, t_in m.
  Lanes fill(const float* v_in, const float* y_in, const long* t_in, long m, long per, int H) {
    const long n = m * per;
    reserve_at_least(n, H);
    for (int h = 0; h < H; ++h) {
      float* vh = v_.data() + static_cast<long>(h) * n;
      float* yh = y_.data() + static_cast<long>(h) * n;
      for (long j = 0; j < n; ++j) vh[j] = v_in[j * H + h];
      for (long g = 0; g < m; ++g) std::fill(yh + g * per, yh + (g + 1) * per, y_in[g * H + h]);
    }
    for (long g = 0; g < m; ++g) std::fill(t_.begin() + g * per, t_.begin() + (g + 1) * per, t_in[g]);
    return {v_.data(), y_.data(), t_.data(), n};
  }

 private:
  void reserve_at_least(long n, int H) {
    if (static_cast<long>(t_.size()) < n || static_cast<long>(v_.size()) < n * H) reserve(n, H);
  }
  std::vector<float> v_, y_;
  std::vector<long> t_;
};

// Sum over the batch of agent prm's regrets; writes each into r[j] when r is not null.
// Blocks of kBlock samples are summed in float lanes (at most kBlock / 16 terms per lane),
// the block sums in double: no conversions in the inner loop, and an error far below the
// float rounding of each regret itself.
inline constexpr long kBlock = 256;

// EvCharging's regret for kEvLanes samples j0 .. j0 + kEvLanes - 1, written with explicit
// vectors: its loops over the window nest inside the lane loop, which compilers do not
// vectorise across lanes by themselves. Every lane performs exactly the scalar code's
// operations in the same order (families.hpp), so the results are identical, not just
// close. The vectors are as wide as the machine's registers: a vector wider than the
// target's (16 floats on a machine without AVX-512) is lowered by the compiler into scalar
// code for the compares and selects below, 15-60x slower. They travel through references,
// never by value, so that no vector crosses a call boundary (GCC's -Wpsabi).
#if defined(__AVX512F__)
inline constexpr int kEvLanes = 16;
#elif defined(__AVX__)
inline constexpr int kEvLanes = 8;
#else
inline constexpr int kEvLanes = 4;
#endif
using fvec = float __attribute__((vector_size(4 * kEvLanes)));
using ivec = int __attribute__((vector_size(4 * kEvLanes)));

inline void load_lanes(fvec& v, const float* p) { __builtin_memcpy(&v, p, sizeof v); }

inline void ev_regret_lanes(const EvCharging::Params& prm, const Lanes& x, const RegretContext& ctx,
                            long j0, fvec& out) {
  const int a = prm.window_start, e = prm.window_end;
  fvec key[kMaxHorizon], yv[kMaxHorizon];
  const fvec floor = fvec{} + ctx.floor;
  for (int h = a; h < e; ++h) {
    fvec v;
    load_lanes(v, x.v + static_cast<long>(h) * x.n + j0);
    key[h] = v < floor ? floor : v;
    load_lanes(yv[h], x.y + static_cast<long>(h) * x.n + j0);
  }
  fvec chosen = fvec{}, best = fvec{};
  const ivec one = ivec{} + 1;
  for (int h = a; h < e; ++h) {
    // Count the hours ranked before h (a compare and a masked add per pair).
    ivec rank_v = ivec{}, rank_y = ivec{};
    for (int j = a; j < h; ++j) {
      rank_v = key[j] <= key[h] ? rank_v + one : rank_v;
      rank_y = yv[j] <= yv[h] ? rank_y + one : rank_y;
    }
    for (int j = h + 1; j < e; ++j) {
      rank_v = key[j] < key[h] ? rank_v + one : rank_v;
      rank_y = yv[j] < yv[h] ? rank_y + one : rank_y;
    }
    chosen += rank_v < prm.k ? yv[h] : fvec{};
    best += rank_y < prm.k ? yv[h] : fvec{};
  }
  out = prm.energy * (chosen - best);
}

template <class F>
double regrets(const typename F::Params prm, const Lanes x, const RegretContext ctx,
               float* __restrict r) {
  const long n = x.n;
  double sum = 0.0;
  if constexpr (std::is_same_v<F, EvCharging>) {
    // Blocks of 16 samples summed in float, whatever the vector width, so that the sums
    // are the same on every machine.
    long j0 = 0;
    for (; j0 + 16 <= n; j0 += 16) {
      float v[16];
      for (int k = 0; k < 16; k += kEvLanes) {
        fvec part;
        ev_regret_lanes(prm, x, ctx, j0 + k, part);
        __builtin_memcpy(v + k, &part, sizeof part);
      }
      if (r) __builtin_memcpy(r + j0, v, sizeof v);
      float part = 0.0f;
      for (int l = 0; l < 16; ++l) part += v[l];
      sum += static_cast<double>(part);
    }
    for (; j0 < n; ++j0) {
      const float v = F::template regret<float>(prm, View{x.v + j0, n}, View{x.y + j0, n}, ctx, x.t[j0]);
      if (r) r[j0] = v;
      sum += static_cast<double>(v);
    }
    return sum;
  }
  for (long j0 = 0; j0 < n; j0 += kBlock) {
    const long j1 = std::min(n, j0 + kBlock);
    float part = 0.0f;
    if (r) {
#pragma omp simd reduction(+ : part)
      for (long j = j0; j < j1; ++j) {
        const float v = F::template regret<float>(prm, View{x.v + j, n}, View{x.y + j, n}, ctx, x.t[j]);
        r[j] = v;
        part += v;
      }
    } else {
#pragma omp simd reduction(+ : part)
      for (long j = j0; j < j1; ++j)
        part += F::template regret<float>(prm, View{x.v + j, n}, View{x.y + j, n}, ctx, x.t[j]);
    }
    sum += static_cast<double>(part);
  }
  return sum;
}

// g[h * n + j] += weight * d r / d v_h at every sample j (hour-major, like x.v).
template <class F>
void add_dregrets(const typename F::Params prm, const Lanes x, const RegretContext ctx,
                  float weight, double* __restrict g) {
  const long n = x.n;
#pragma omp simd
  for (long j = 0; j < n; ++j)
    F::template add_dregret<float>(prm, View{x.v + j, n}, View{x.y + j, n}, ctx, x.t[j], weight,
                                   Grad{g + j, n});
}

// Per-sample values hour-major (g[h * B S + b S + s], as add_dregrets writes them) summed
// over each input's S samples in sample order: out[b H + h] = that sum, or += with Add.
template <bool Add>
void sum_samples(const double* g, int B, int S, int H, double* out) {
  const long BS = static_cast<long>(B) * S;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const double* d = g + static_cast<long>(h) * BS + static_cast<long>(b) * S;
      double sum = 0.0;
      for (int s = 0; s < S; ++s) sum += d[s];
      if constexpr (Add) out[b * H + h] += sum;
      else out[b * H + h] = sum;
    }
}

// acc[j] += w * r[j].
inline void axpy(double w, const float* __restrict r, double* __restrict acc, long n) {
#pragma omp simd
  for (long j = 0; j < n; ++j) acc[j] += w * static_cast<double>(r[j]);
}

}  // namespace eqpm::lanes
