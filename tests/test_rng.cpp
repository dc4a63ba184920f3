// Counter-based perturbations (DESIGN.md section 7): Philox4x32-10 against the published
// known-answer vectors, the normals' distribution, independence of generation order, the
// counter layout (seed, step, b, s, h-block), antithetic pairs and horizons that are not a
// multiple of 4.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#include "eqpm/rng.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

std::vector<float> draw(std::uint64_t seed, std::uint32_t step, std::uint32_t b, std::uint32_t s,
                        int H, bool antithetic = false) {
  std::vector<float> eps(static_cast<size_t>(H), std::nanf(""));
  perturbation(seed, step, b, s, H, antithetic, eps.data());
  return eps;
}

using test::bitwise_equal;

double normal_cdf(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

TEST(RngPhilox, KnownAnswerVectors) {
  // Random123's kat_vectors for philox4x32 with 10 rounds; the key is (seed low, seed high).
  auto r = philox_block(0, 0, 0, 0, 0);
  EXPECT_EQ(r.v[0], 0x6627e8d5u);
  EXPECT_EQ(r.v[1], 0xe169c58du);
  EXPECT_EQ(r.v[2], 0xbc57ac4cu);
  EXPECT_EQ(r.v[3], 0x9b00dbd8u);
  r = philox_block(~0ULL, ~0u, ~0u, ~0u, ~0u);
  EXPECT_EQ(r.v[0], 0x408f276du);
  EXPECT_EQ(r.v[1], 0x41c83b0eu);
  EXPECT_EQ(r.v[2], 0xa20bc7c6u);
  EXPECT_EQ(r.v[3], 0x6d5451fdu);
  r = philox_block(0x299f31d0a4093822ULL, 0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u);
  EXPECT_EQ(r.v[0], 0xd16cfe09u);
  EXPECT_EQ(r.v[1], 0x94fdccebu);
  EXPECT_EQ(r.v[2], 0x5001e420u);
  EXPECT_EQ(r.v[3], 0x24126ea1u);
}

TEST(RngPhilox, BoxMullerValuesAndExtremes) {
  float z0, z1;
  // u = 1/2 and w ~ 0: z0 = sqrt(2 ln 2), z1 ~ 0.
  box_muller(0x80000000u, 0u, &z0, &z1);
  EXPECT_NEAR(z0, std::sqrt(2.0 * std::log(2.0)), 1e-6);
  EXPECT_NEAR(z1, 0.0, 1e-6);
  // w = 1/4: all of the radius goes into z1.
  box_muller(0x80000000u, 0x40000000u, &z0, &z1);
  EXPECT_NEAR(z0, 0.0, 1e-6);
  EXPECT_NEAR(z1, std::sqrt(2.0 * std::log(2.0)), 1e-6);
  // The extreme words give finite values: the largest radius is sqrt(-2 ln 2^-33) ~ 6.76.
  for (std::uint32_t a : {0u, 1u, 0xffffffffu})
    for (std::uint32_t b : {0u, 0x3fffffffu, 0xffffffffu}) {
      box_muller(a, b, &z0, &z1);
      EXPECT_TRUE(std::isfinite(z0) && std::isfinite(z1));
      EXPECT_LE(std::hypot(z0, z1), 6.8f);
    }
}

TEST(RngPerturbation, MomentsTailsAndKolmogorovSmirnov) {
  const int H = 16;
  const long calls = 65536;  // 2^20 normals
  std::vector<double> z;
  z.reserve(static_cast<size_t>(calls) * H);
  std::vector<float> eps(H);
  for (long c = 0; c < calls; ++c) {
    perturbation(12345, static_cast<std::uint32_t>(c / 256), static_cast<std::uint32_t>(c % 256 / 16),
                 static_cast<std::uint32_t>(c % 16), H, false, eps.data());
    z.insert(z.end(), eps.begin(), eps.end());
  }
  const double n = static_cast<double>(z.size());
  double sum = 0, sum2 = 0, sum3 = 0, sum4 = 0;
  long beyond2 = 0, beyond3 = 0;
  for (double x : z) {
    sum += x;
    sum2 += x * x;
    sum3 += x * x * x;
    sum4 += x * x * x * x;
    beyond2 += std::abs(x) > 2.0;
    beyond3 += std::abs(x) > 3.0;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_LT(std::abs(mean), 5.0 / std::sqrt(n));
  EXPECT_LT(std::abs(var - 1.0), 5.0 * std::sqrt(2.0 / n));
  EXPECT_LT(std::abs(sum3 / n), 5.0 * std::sqrt(15.0 / n));        // skewness 0, Var(z^3) = 15
  EXPECT_LT(std::abs(sum4 / n - 3.0), 5.0 * std::sqrt(96.0 / n));  // kurtosis 3, Var(z^4) = 96
  // Tails: P(|z| > 2) and P(|z| > 3) within 5 binomial standard errors.
  for (auto [count, x] : {std::pair{beyond2, 2.0}, std::pair{beyond3, 3.0}}) {
    const double p = 2.0 * normal_cdf(-x);
    EXPECT_LT(std::abs(static_cast<double>(count) / n - p), 5.0 * std::sqrt(p * (1 - p) / n))
        << "P(|z| > " << x << ")";
  }
  // Kolmogorov-Smirnov against the standard normal: sqrt(n) D < 1.95 (p = 0.001).
  std::sort(z.begin(), z.end());
  double D = 0.0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double F = normal_cdf(z[i]);
    D = std::max({D, static_cast<double>(i + 1) / n - F, F - static_cast<double>(i) / n});
  }
  EXPECT_LT(std::sqrt(n) * D, 1.95) << "KS statistic D = " << D;
}

TEST(RngPerturbation, ComponentsAndNeighbouringCountersAreUncorrelated) {
  // Correlations that a wrong counter layout would create: between hours of one draw (same
  // Box-Muller pair, neighbouring pairs, neighbouring Philox blocks), and between draws of
  // neighbouring samples, inputs and steps.
  const int H = 8;
  const long n = 100000;
  std::vector<float> e0(H), es(H), eb(H), et(H);
  double c01 = 0, c12 = 0, c34 = 0, c_s = 0, c_b = 0, c_t = 0;
  // Squares too: two normals sharing a Box-Muller radius are uncorrelated but dependent.
  double q01 = 0, q02 = 0, q13 = 0, q04 = 0;
  for (long i = 0; i < n; ++i) {
    const auto step = static_cast<std::uint32_t>(i / 100), b = static_cast<std::uint32_t>(i % 100);
    perturbation(5, step, b, 0, H, false, e0.data());
    perturbation(5, step, b, 1, H, false, es.data());
    perturbation(5, step, b + 100, 0, H, false, eb.data());
    perturbation(5, step + 100000, b, 0, H, false, et.data());
    c01 += double(e0[0]) * e0[1];
    c12 += double(e0[1]) * e0[2];
    c34 += double(e0[3]) * e0[4];
    c_s += double(e0[5]) * es[5];
    c_b += double(e0[6]) * eb[6];
    c_t += double(e0[7]) * et[7];
    auto sq = [&](int h) { return double(e0[static_cast<size_t>(h)]) * e0[static_cast<size_t>(h)]; };
    q01 += sq(0) * sq(1) - 1.0;
    q02 += sq(0) * sq(2) - 1.0;
    q13 += sq(1) * sq(3) - 1.0;
    q04 += sq(0) * sq(4) - 1.0;
  }
  for (double c : {c01, c12, c34, c_s, c_b, c_t}) EXPECT_LT(std::abs(c / n), 5.0 / std::sqrt(double(n)));
  // Var(z_i^2 z_j^2) = 9 - 1 = 8 for independent standard normals.
  for (double q : {q01, q02, q13, q04}) EXPECT_LT(std::abs(q / n), 5.0 * std::sqrt(8.0 / double(n)));
}

TEST(RngPerturbation, SameCounterSameNumbersInAnyOrder) {
  struct Key {
    std::uint64_t seed;
    std::uint32_t step, b, s;
  };
  std::vector<Key> keys;
  for (std::uint64_t seed : {1ULL, 42ULL, 0x123456789abcdefULL})
    for (std::uint32_t step : {0u, 1u, 7u, 100000u})
      for (std::uint32_t b = 0; b < 6; ++b)
        for (std::uint32_t s = 0; s < 6; ++s) keys.push_back({seed, step, b, s});
  const int H = 13;
  std::vector<std::vector<float>> in_order;
  for (const Key& k : keys) in_order.push_back(draw(k.seed, k.step, k.b, k.s, H));

  // Shuffled order, with other draws interleaved.
  std::vector<size_t> perm(keys.size());
  std::iota(perm.begin(), perm.end(), 0);
  SplitMix64 rng(3);
  for (size_t i = perm.size() - 1; i > 0; --i)
    std::swap(perm[i], perm[static_cast<size_t>(rng.integer(0, static_cast<long>(i)))]);
  std::vector<std::vector<float>> shuffled(keys.size());
  for (size_t i : perm) {
    (void)draw(rng.next(), 3, 4, 5, 64);
    const Key& k = keys[i];
    shuffled[i] = draw(k.seed, k.step, k.b, k.s, H);
  }
  // In parallel, in reverse order.
  std::vector<std::vector<float>> parallel(keys.size());
  const long K = static_cast<long>(keys.size());
#pragma omp parallel for num_threads(2) schedule(dynamic, 1)
  for (long i = K - 1; i >= 0; --i) {
    const Key& k = keys[static_cast<size_t>(i)];
    parallel[static_cast<size_t>(i)] = draw(k.seed, k.step, k.b, k.s, H);
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_TRUE(bitwise_equal(in_order[i], shuffled[i])) << "key " << i;
    ASSERT_TRUE(bitwise_equal(in_order[i], parallel[i])) << "key " << i;
  }
}

TEST(RngPerturbation, EveryCounterWordAndBothSeedHalvesMatter) {
  const int H = 12;
  const auto base = draw(42, 10, 3, 5, H);
  const std::vector<std::vector<float>> others = {
      draw(43, 10, 3, 5, H),                     // seed, low half
      draw(42 + (1ULL << 32), 10, 3, 5, H),      // seed, high half
      draw(42, 11, 3, 5, H),                     // step
      draw(42, 10, 4, 5, H),                     // b
      draw(42, 10, 3, 6, H),                     // s
      draw(42, 10, 5, 3, H),                     // b and s swapped
      draw(42, 3, 10, 5, H),                     // step and b swapped
  };
  for (size_t i = 0; i < others.size(); ++i) {
    int same = 0;
    for (int h = 0; h < H; ++h) same += others[i][static_cast<size_t>(h)] == base[static_cast<size_t>(h)];
    EXPECT_EQ(same, 0) << "variant " << i << " repeats " << same << " of " << H << " values";
  }
  // The h-blocks of one draw are different blocks, not repeats.
  for (int h = 0; h < 4; ++h) {
    EXPECT_NE(base[static_cast<size_t>(h)], base[static_cast<size_t>(h + 4)]);
    EXPECT_NE(base[static_cast<size_t>(h)], base[static_cast<size_t>(h + 8)]);
  }
  // The initialisation stream never reproduces perturbations of the same counters.
  float z[4];
  normal4(42, RngStream::init, 10, 3, 5, z);
  for (int h = 0; h < 4; ++h) EXPECT_NE(z[h], base[static_cast<size_t>(h)]);
  normal4(42, RngStream::perturbation, 10, 3, 5, z);
  for (int h = 0; h < 4; ++h) EXPECT_EQ(z[h], base[static_cast<size_t>(h)]);
}

TEST(RngPerturbation, AntitheticPairsAreExactNegatives) {
  for (int H : {1, 3, 4, 12, 64})
    for (std::uint32_t step : {0u, 9u})
      for (std::uint32_t b : {0u, 5u})
        for (std::uint32_t j = 0; j < 8; ++j) {
          const auto even = draw(7, step, b, 2 * j, H, true);
          const auto odd = draw(7, step, b, 2 * j + 1, H, true);
          for (int h = 0; h < H; ++h) {
            ASSERT_EQ(odd[static_cast<size_t>(h)], -even[static_cast<size_t>(h)]);
            ASSERT_TRUE(std::isfinite(even[static_cast<size_t>(h)]));
          }
          // The pair is drawn from the counter of sample 2j (rng.hpp).
          ASSERT_TRUE(bitwise_equal(even, draw(7, step, b, 2 * j, H, false)));
          // Different pairs are different draws.
          const auto next = draw(7, step, b, 2 * j + 2, H, true);
          ASSERT_NE(next[0], even[0]);
        }
}

TEST(RngPerturbation, HorizonsNotAMultipleOfFourAndThePrefixProperty) {
  const auto longest = draw(99, 3, 2, 1, kMaxHorizon);
  for (float x : longest) ASSERT_TRUE(std::isfinite(x));
  for (int H = 1; H <= kMaxHorizon; ++H)
    for (bool anti : {false, true}) {
      // Only H values are written: a guard after them must survive.
      std::vector<float> eps(static_cast<size_t>(H) + 3, 123.0f);
      perturbation(99, 3, 2, 1, H, anti, eps.data());
      for (int i = 0; i < 3; ++i) ASSERT_EQ(eps[static_cast<size_t>(H + i)], 123.0f) << "H=" << H;
      const auto full = draw(99, 3, 2, 1, kMaxHorizon, anti);
      for (int h = 0; h < H; ++h)
        ASSERT_EQ(eps[static_cast<size_t>(h)], full[static_cast<size_t>(h)]) << "H=" << H << " h=" << h;
    }
}

TEST(RngSplitMix64, ReferenceSequenceAndRanges) {
  // The reference SplitMix64 of Steele, Lea and Flood (as in java.util.SplittableRandom).
  SplitMix64 g(0);
  EXPECT_EQ(g.next(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(g.next(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(g.next(), 0x06c45d188009454fULL);
  SplitMix64 r(17);
  bool seen_lo = false, seen_hi = false;
  for (int i = 0; i < 10000; ++i) {
    const double u = r.uniform();
    ASSERT_TRUE(u >= 0.0 && u < 1.0);
    const long k = r.integer(-2, 3);
    ASSERT_TRUE(k >= -2 && k <= 3);
    seen_lo |= k == -2;
    seen_hi |= k == 3;
    ASSERT_TRUE(std::isfinite(r.normal()));
  }
  EXPECT_TRUE(seen_lo && seen_hi);
}

}  // namespace
}  // namespace eqpm
