// The CPU fast path's sample-lane evaluation (host/cpu/cpu_lanes.hpp) against the families'
// scalar code: every lane must compute the same float regret and derivative, bit for bit,
// whatever the family, the batch length (full vectors and a remainder), ties between hours
// and predictions below the floor.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/cpu_lanes.hpp"
#include "eqpm/families.hpp"
#include "eqpm/rng.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

constexpr int kH = 12;

struct Batch {
  std::vector<float> v, y;  // row-major: m groups of `per` samples x kH, truths m x kH
  std::vector<long> t;
  long m, per;
};

// Values on a coarse grid (many exact ties), some below the floor, some negative.
Batch random_batch(std::uint64_t seed, long m, long per) {
  SplitMix64 rng(seed);
  Batch b{{}, {}, {}, m, per};
  b.v.resize(static_cast<size_t>(m * per * kH));
  b.y.resize(static_cast<size_t>(m * kH));
  b.t.resize(static_cast<size_t>(m));
  for (auto& x : b.v) x = static_cast<float>(std::floor(rng.uniform(-2, 40))) / 16.0f;
  for (auto& x : b.y) x = static_cast<float>(std::floor(rng.uniform(1, 40))) / 16.0f;
  for (auto& x : b.t) x = static_cast<long>(rng.uniform(0, 1000));
  return b;
}

struct Demand {
  std::vector<float> d = {0.5f, 1.0f, 2.0f, 0.75f, 1.5f};
  RegretContext ctx() const {
    RegretContext c;
    c.demand = d.data();
    c.demand_length = static_cast<long>(d.size());
    c.floor = 1e-3f;
    return c;
  }
};

template <class F>
std::vector<typename F::Params> agents();

template <>
std::vector<Datacenter::Params> agents<Datacenter>() {
  std::vector<Datacenter::Params> a;
  for (int h : {0, 5, 11})
    for (int phase : {0, 3}) a.push_back({0.7f + h * 0.1f, 1.3f, phase, h});
  return a;
}
template <>
std::vector<EvCharging::Params> agents<EvCharging>() {
  std::vector<EvCharging::Params> a;
  for (auto [k, s, e] : {std::array{1, 0, 12}, std::array{3, 0, 12}, std::array{2, 4, 9},
                         std::array{5, 2, 7}, std::array{1, 11, 12}, std::array{12, 0, 12}})
    a.push_back({k, s, e, 2.5f});
  return a;
}
template <>
std::vector<Inventory::Params> agents<Inventory>() {
  return {{3.0f, 0.5f, 0}, {1.0f, 1.0f, 6}, {0.2f, 4.0f, 11}};
}

template <class F>
class Lanes : public ::testing::Test {};
using AllFamilies = ::testing::Types<Datacenter, EvCharging, Inventory>;
TYPED_TEST_SUITE(Lanes, AllFamilies);

TYPED_TEST(Lanes, RegretsEqualTheScalarCodeBitForBit) {
  using F = TypeParam;
  const Demand dem;
  const RegretContext ctx = dem.ctx();
  // 7 x 5 = 35 samples: two full 16-lane blocks and a remainder; 40 x 16: several blocks.
  for (auto [m, per] : {std::pair{7L, 5L}, std::pair{40L, 16L}, std::pair{1L, 1L}}) {
    const Batch b = random_batch(static_cast<std::uint64_t>(m * 100 + per), m, per);
    lanes::LaneBuffer buf;
    const lanes::Lanes x = buf.fill(b.v.data(), b.y.data(), b.t.data(), m, per, kH);
    for (const auto& prm : agents<F>()) {
      std::vector<float> r(static_cast<size_t>(m * per), -1.0f);
      const double sum = lanes::regrets<F>(prm, x, ctx, r.data());
      double ref_sum = 0.0;
      for (long j = 0; j < m * per; ++j) {
        const long g = j / per;
        const float ref = F::template regret<float>(prm, b.v.data() + j * kH, b.y.data() + g * kH, ctx, b.t[g]);
        ASSERT_EQ(std::memcmp(&r[static_cast<size_t>(j)], &ref, sizeof ref), 0)
            << "sample " << j << ": " << r[static_cast<size_t>(j)] << " vs " << ref;
        ref_sum += ref;
      }
      // The sum is blocked differently, so close rather than equal; without r the same sum.
      EXPECT_NEAR(sum, ref_sum, 1e-6 * std::abs(ref_sum) + 1e-12);
      EXPECT_EQ(lanes::regrets<F>(prm, x, ctx, nullptr), sum);
    }
  }
}

template <class F>
class LanesDerivative : public ::testing::Test {};
using DifferentiableFamilies = ::testing::Types<Datacenter, Inventory>;
TYPED_TEST_SUITE(LanesDerivative, DifferentiableFamilies);

TYPED_TEST(LanesDerivative, EqualsTheScalarCodeBitForBit) {
  using F = TypeParam;
  {
    const Demand dem;
    const RegretContext ctx = dem.ctx();
    const long m = 9, per = 6, n = m * per;
    const Batch b = random_batch(7, m, per);
    lanes::LaneBuffer buf;
    const lanes::Lanes x = buf.fill(b.v.data(), b.y.data(), b.t.data(), m, per, kH);
    std::vector<double> g(static_cast<size_t>(kH * n), 0.25), ref(static_cast<size_t>(kH * n), 0.25);
    for (const auto& prm : agents<F>()) {
      lanes::add_dregrets<F>(prm, x, ctx, 0.375f, g.data());
      for (long j = 0; j < n; ++j) {
        double gj[kH];
        for (int h = 0; h < kH; ++h) gj[h] = ref[static_cast<size_t>(h * n + j)];
        F::template add_dregret<float>(prm, b.v.data() + j * kH, b.y.data() + (j / per) * kH, ctx,
                                       b.t[static_cast<size_t>(j / per)], 0.375f, gj);
        for (int h = 0; h < kH; ++h) ref[static_cast<size_t>(h * n + j)] = gj[h];
      }
    }
    EXPECT_TRUE(test::bitwise_equal(g, ref));
    // Something was accumulated: the test would pass trivially otherwise.
    int changed = 0;
    for (double v : g) changed += v != 0.25;
    EXPECT_GT(changed, n);
  }
}

TEST(LanesLayout, FillIsHourMajorWithTruthsAndTimesPerSample) {
  const long m = 3, per = 2;
  const Batch b = random_batch(1, m, per);
  lanes::LaneBuffer buf;
  const lanes::Lanes x = buf.fill(b.v.data(), b.y.data(), b.t.data(), m, per, kH);
  ASSERT_EQ(x.n, m * per);
  for (long j = 0; j < x.n; ++j) {
    EXPECT_EQ(x.t[j], b.t[static_cast<size_t>(j / per)]);
    for (int h = 0; h < kH; ++h) {
      EXPECT_EQ(x.v[h * x.n + j], b.v[static_cast<size_t>(j * kH + h)]);
      EXPECT_EQ(x.y[h * x.n + j], b.y[static_cast<size_t>((j / per) * kH + h)]);
    }
  }
  // Refilling with a longer batch grows the buffer; a shorter one reuses it.
  const Batch big = random_batch(2, 10, 4);
  EXPECT_EQ(buf.fill(big.v.data(), big.y.data(), big.t.data(), 10, 4, kH).n, 40);
  EXPECT_EQ(buf.fill(b.v.data(), b.y.data(), b.t.data(), m, per, kH).n, m * per);
}

}  // namespace
}  // namespace eqpm
