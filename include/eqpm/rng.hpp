// Counter-based random numbers (DESIGN.md section 7). The perturbation eps of input b,
// sample s at optimiser step `step` comes from Philox4x32-10 keyed by the seed with
// counter (step, b, s, h-block): any thread, on any device, in any order, draws the
// same numbers, so CPU and GPU runs can be compared sample for sample and a resumed run
// continues exactly where it stopped.
#pragma once

#include <cmath>
#include <cstdint>

#include <Random123/philox.h>

#include "eqpm/hd.hpp"

namespace eqpm {

// Counter word 3 carries the h-block in its low 16 bits and a stream id above, so that
// draws for other purposes (weight initialisation) never collide with perturbations.
enum class RngStream : std::uint32_t { perturbation = 0, init = 1 };

EQPM_HD_INLINE r123::Philox4x32::ctr_type philox_block(std::uint64_t seed, std::uint32_t c0,
                                                       std::uint32_t c1, std::uint32_t c2,
                                                       std::uint32_t c3) {
  r123::Philox4x32 rng;
  r123::Philox4x32::ctr_type ctr = {{c0, c1, c2, c3}};
  r123::Philox4x32::key_type key = {{static_cast<std::uint32_t>(seed),
                                     static_cast<std::uint32_t>(seed >> 32)}};
  return rng(ctr, key);
}

// Two standard normals from two 32-bit words by Box-Muller in double precision, rounded
// to float. Only sqrt, log, cos, sin and exact scalings are used, with no expression the
// compiler could contract into an FMA, so host and device agree bit for bit (their
// double log/sin/cos differ by at most an ulp, far below float rounding).
EQPM_HD_INLINE void box_muller(std::uint32_t a, std::uint32_t b, float* z0, float* z1) {
  const double two_pi = 6.283185307179586476925286766559;
  const double u = (static_cast<double>(a) + 0.5) * 2.3283064365386962890625e-10;  // 2^-32
  const double w = (static_cast<double>(b) + 0.5) * 2.3283064365386962890625e-10;
  const double r = sqrt(-2.0 * log(u));
  const double theta = two_pi * w;
  const double c = cos(theta);
  const double s = sin(theta);
  *z0 = static_cast<float>(r * c);
  *z1 = static_cast<float>(r * s);
}

// eps[0..H) for (step, b, s). With antithetic sampling, samples 2j and 2j+1 are the pair
// (eps, -eps) drawn from the counter of sample 2j.
EQPM_HD_INLINE void perturbation(std::uint64_t seed, std::uint32_t step, std::uint32_t b,
                                 std::uint32_t s, int horizon, bool antithetic, float* eps) {
  const std::uint32_t s0 = antithetic ? (s & ~1u) : s;
  const bool negate = antithetic && (s & 1u);
  for (int hb = 0; hb * 4 < horizon; ++hb) {
    const auto r = philox_block(seed, step, b, s0,
                                static_cast<std::uint32_t>(hb) |
                                    (static_cast<std::uint32_t>(RngStream::perturbation) << 16));
    float z[4];
    box_muller(r.v[0], r.v[1], &z[0], &z[1]);
    box_muller(r.v[2], r.v[3], &z[2], &z[3]);
    for (int i = 0; i < 4 && hb * 4 + i < horizon; ++i) eps[hb * 4 + i] = negate ? -z[i] : z[i];
  }
}

// Uniform in (0, 1) and standard normals for other streams (host-side set-up).
EQPM_HD_INLINE void normal4(std::uint64_t seed, RngStream stream, std::uint32_t c0,
                            std::uint32_t c1, std::uint32_t c2, float* z) {
  const auto r = philox_block(seed, c0, c1, c2, static_cast<std::uint32_t>(stream) << 16);
  box_muller(r.v[0], r.v[1], &z[0], &z[1]);
  box_muller(r.v[2], r.v[3], &z[2], &z[3]);
}

// SplitMix64: a tiny, portable generator for host-side set-up (population and series
// generation, epoch shuffles) whose output does not depend on the standard library.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [lo, hi] (inclusive); the modulo bias is negligible for small ranges.
  long integer(long lo, long hi) {
    return lo + static_cast<long>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  double normal() {
    const double u = (static_cast<double>(next() >> 11) + 0.5) * 0x1.0p-53;
    const double w = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(6.283185307179586 * w);
  }

 private:
  std::uint64_t state_;
};

}  // namespace eqpm
