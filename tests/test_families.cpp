// Agent families (DESIGN.md section 4): each closed-form regret against the definition it
// stands for (decision, then cost under the truth, minus the cost of the perfect-information
// decision), derivatives against finite differences, the floor, and extreme inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "eqpm/families.hpp"
#include "eqpm/rng.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

constexpr float kFloor = 1e-3f;

// A context whose demand profile is the single value 1, so that d = scale exactly.
struct UnitDemand {
  float one = 1.0f;
  RegretContext ctx() const {
    RegretContext c;
    c.demand = &one;
    c.demand_length = 1;
    c.floor = kFloor;
    return c;
  }
};

double dc_regret(double v, double y, float lambda, float d, int H = 1, int hour = 0) {
  UnitDemand u;
  const Datacenter::Params p{lambda, d, 0, hour};
  std::vector<double> vv(static_cast<size_t>(H), 1.0), yy(static_cast<size_t>(H), 1.0);
  vv[static_cast<size_t>(hour)] = v;
  yy[static_cast<size_t>(hour)] = y;
  return Datacenter::regret<double>(p, vv.data(), yy.data(), u.ctx(), 0);
}

double dc_dregret(double v, double y, float lambda, float d, double weight = 1.0) {
  UnitDemand u;
  const Datacenter::Params p{lambda, d, 0, 0};
  double g = 0.0;
  Datacenter::add_dregret<double>(p, &v, &y, u.ctx(), 0, weight, &g);
  return g;
}

// ------------------------------------------------------------------ datacenter (4.1)

TEST(FamiliesDatacenter, ClosedFormEqualsDirectCostDifference) {
  const std::vector<double> values = {1e-3, 3e-3, 0.02, 0.1, 0.37, 0.9, 1.0, 1.3, 2.5, 7.0, 40.0, 300.0};
  const std::vector<float> lambdas = {1e-3f, 0.1f, 1.0f, 3.7f, 10.0f, 1e3f};
  const std::vector<float> demands = {0.01f, 0.5f, 1.0f, 5.0f, 100.0f};
  long checked = 0;
  for (float lambda : lambdas)
    for (float d : demands)
      for (double v : values)
        for (double y : values) {
          const long double L = lambda, D = d;  // the parameters as the family stores them
          // Decisions use max(v, floor) with the floor as the family stores it (a float).
          const long double vd = std::max(v, double(kFloor)), yd = y;
          // 4.1 by definition, in extended precision: a - d cancels digits when
          // sqrt(lambda d / v) << d, which double cannot afford here.
          const long double a_v = D + std::sqrt(L * D / vd), a_y = D + std::sqrt(L * D / yd);
          const long double cost_v = a_v * yd + L * D / (a_v - D);
          const long double cost_y = a_y * yd + L * D / (a_y - D);
          const double direct = static_cast<double>(cost_v - cost_y);
          const double closed = dc_regret(v, y, lambda, d);
          const double tol = 1e-13 * direct + 1e-16 * static_cast<double>(cost_v + cost_y);
          ASSERT_NEAR(closed, direct, tol)
              << "v=" << v << " y=" << y << " lambda=" << lambda << " d=" << d;
          // The family's own decision and cost say the same (double, so a looser check).
          const double a_fam = Datacenter::decision(double(vd), double(D), double(L));
          ASSERT_NEAR(a_fam, double(a_v), 1e-14 * double(a_v));
          ASSERT_NEAR(Datacenter::cost(a_fam, y, double(D), double(L)), double(cost_v),
                      1e-9 * double(cost_v));
          ASSERT_GE(closed, 0.0);
          ++checked;
        }
  EXPECT_EQ(checked, 6L * 5 * 12 * 12);
}

TEST(FamiliesDatacenter, ZeroAtTruthAndNeverNegative) {
  SplitMix64 rng(11);
  for (int i = 0; i < 20000; ++i) {
    const float lambda = static_cast<float>(std::exp(rng.uniform(std::log(1e-4), std::log(1e4))));
    const float d = static_cast<float>(std::exp(rng.uniform(std::log(1e-3), std::log(1e3))));
    const double y = std::exp(rng.uniform(std::log(2e-3), std::log(1e3)));
    const double v = rng.uniform(-2.0, 20.0);  // includes predictions below the floor
    EXPECT_EQ(dc_regret(y, y, lambda, d), 0.0);
    const float yf = static_cast<float>(y);
    const UnitDemand u;
    EXPECT_EQ(Datacenter::regret<float>({lambda, d, 0, 0}, &yf, &yf, u.ctx(), 0), 0.0f);
    const double r = dc_regret(v, y, lambda, d);
    ASSERT_TRUE(std::isfinite(r));
    ASSERT_GE(r, 0.0) << "v=" << v << " y=" << y;
  }
}

TEST(FamiliesDatacenter, UsesTheAgentsHourAndDemandPhase) {
  // Demand profile 1..5; agent acts on hour 2 with phase 3 at t = 4: D[(4 + 3) mod 5] = 3.
  const float D[5] = {1, 2, 3, 4, 5};
  RegretContext c;
  c.demand = D;
  c.demand_length = 5;
  c.floor = kFloor;
  const Datacenter::Params p{2.0f, 1.5f, 3, 2};
  EXPECT_DOUBLE_EQ(Datacenter::demand<double>(p, c, 4), 1.5 * 3.0);
  EXPECT_DOUBLE_EQ(Datacenter::demand<double>(p, c, 4 + 5 * 1000), 1.5 * 3.0);
  const double v[4] = {9.0, 9.0, 0.8, 9.0}, y[4] = {0.1, 0.1, 1.2, 0.1};
  const double d = 4.5, lambda = 2.0;
  const double expected = std::sqrt(lambda * d) * std::pow(std::sqrt(1.2) - std::sqrt(0.8), 2) /
                          std::sqrt(0.8);
  EXPECT_NEAR(Datacenter::regret<double>(p, v, y, c, 4), expected, 1e-14 * expected);
  double g[4] = {10, 20, 30, 40};
  Datacenter::add_dregret<double>(p, v, y, c, 4, 0.5, g);
  EXPECT_EQ(g[0], 10);
  EXPECT_EQ(g[1], 20);
  EXPECT_EQ(g[3], 40);
  EXPECT_NEAR(g[2] - 30, 0.5 * std::sqrt(lambda * d) * (0.8 - 1.2) / (2 * std::pow(0.8, 1.5)), 1e-12);
}

TEST(FamiliesDatacenter, DerivativeMatchesCentralDifferences) {
  const std::vector<double> values = {0.005, 0.05, 0.3, 0.8, 1.0, 1.4, 3.0, 25.0};
  for (float lambda : {0.01f, 1.0f, 50.0f})
    for (float d : {0.2f, 1.0f, 8.0f})
      for (double v : values)
        for (double y : values) {
          const double h = 1e-6 * v;
          const double fd = (dc_regret(v + h, y, lambda, d) - dc_regret(v - h, y, lambda, d)) / (2 * h);
          const double an = dc_dregret(v, y, lambda, d);
          const double scale = std::sqrt(double(lambda) * d) * (1 + y / v) / std::sqrt(v);
          ASSERT_NEAR(an, fd, 1e-7 * scale) << "v=" << v << " y=" << y << " lambda=" << lambda;
        }
  // The derivative is exactly zero at v = y and the weight scales it.
  EXPECT_EQ(dc_dregret(0.7, 0.7, 2.0f, 3.0f), 0.0);
  EXPECT_DOUBLE_EQ(dc_dregret(0.5, 0.7, 2.0f, 3.0f, 3.0), 3.0 * dc_dregret(0.5, 0.7, 2.0f, 3.0f));
}

TEST(FamiliesDatacenter, FlatAndZeroDerivativeBelowTheFloor) {
  for (double v : {-5.0, -1e-9, 0.0, 1e-7, 5e-4, 0.00099}) {
    EXPECT_EQ(dc_regret(v, 1.3, 2.0f, 1.5f), dc_regret(double(kFloor), 1.3, 2.0f, 1.5f)) << v;
    EXPECT_EQ(dc_dregret(v, 1.3, 2.0f, 1.5f), 0.0) << v;
  }
  // Just above the floor the derivative is the analytic one (and large and negative).
  EXPECT_LT(dc_dregret(0.0011, 1.3, 2.0f, 1.5f), -1e3);
}

TEST(FamiliesDatacenter, FloatAgreesWithDouble) {
  SplitMix64 rng(3);
  UnitDemand u;
  for (int i = 0; i < 5000; ++i) {
    const float lambda = static_cast<float>(rng.uniform(0.1, 10.0));
    const float d = static_cast<float>(rng.uniform(0.2, 5.0));
    const float y = static_cast<float>(rng.uniform(0.3, 3.0));
    const float v = static_cast<float>(rng.uniform(0.3, 3.0));
    if (std::abs(v / y - 1.0f) < 0.05f) continue;  // float cancellation in sqrt(y) - sqrt(v)
    const Datacenter::Params p{lambda, d, 0, 0};
    const float rf = Datacenter::regret<float>(p, &v, &y, u.ctx(), 0);
    const double vd = v, yd = y;
    const double rd = Datacenter::regret<double>(p, &vd, &yd, u.ctx(), 0);
    ASSERT_NEAR(rf, rd, 2e-5 * rd) << "v=" << v << " y=" << y;
  }
}

// ------------------------------------------------------------------ ev_charging (4.2)

// The decision by definition: hours of the window sorted by (clamped prediction, index),
// the first k of them.
std::vector<int> chosen_by_sort(const std::vector<double>& v, int a, int b, int k) {
  std::vector<int> hours(static_cast<size_t>(b - a));
  std::iota(hours.begin(), hours.end(), a);
  auto key = [&](int h) { return std::max(v[static_cast<size_t>(h)], double(kFloor)); };
  std::stable_sort(hours.begin(), hours.end(), [&](int i, int j) { return key(i) < key(j); });
  hours.resize(static_cast<size_t>(k));
  std::sort(hours.begin(), hours.end());
  return hours;
}

// Brute force over all k-subsets of [a, b): the subsets of minimal predicted sum, of those
// the lexicographically smallest index set. `v` must hold values whose sums are exact.
std::vector<int> chosen_by_enumeration(const std::vector<double>& v, int a, int b, int k,
                                       double* min_pred_sum) {
  double best = std::numeric_limits<double>::infinity();
  std::vector<int> best_set;
  for (unsigned mask = 0; mask < (1u << (b - a)); ++mask) {
    if (std::popcount(mask) != k) continue;
    std::vector<int> set;
    double sum = 0.0;
    for (int i = 0; i < b - a; ++i)
      if (mask & (1u << i)) {
        set.push_back(a + i);
        sum += std::max(v[static_cast<size_t>(a + i)], double(kFloor));
      }
    if (sum < best || (sum == best && set < best_set)) {
      best = sum;
      best_set = set;
    }
  }
  *min_pred_sum = best;
  return best_set;
}

// Lowest sum of k TRUE prices in the window, by enumeration.
double best_true_cost(const std::vector<double>& y, int a, int b, int k) {
  double best = std::numeric_limits<double>::infinity();
  for (unsigned mask = 0; mask < (1u << (b - a)); ++mask) {
    if (std::popcount(mask) != k) continue;
    double sum = 0.0;
    for (int i = 0; i < b - a; ++i)
      if (mask & (1u << i)) sum += y[static_cast<size_t>(a + i)];
    best = std::min(best, sum);
  }
  return best;
}

double ev_regret(const std::vector<double>& v, const std::vector<double>& y, int k, int a, int b,
                 float energy) {
  RegretContext c;
  c.floor = kFloor;
  return EvCharging::regret<double>({k, a, b, energy}, v.data(), y.data(), c, 0);
}

// Values on a grid of 1/8 (exactly representable, exact sums) so that ties are frequent
// and compared exactly; some below the floor so that the clamp creates ties too.
double grid_value(SplitMix64& rng, int levels) {
  return static_cast<double>(rng.integer(-2, levels)) / 8.0;
}

TEST(FamiliesEvCharging, RegretEqualsBruteForceOverAllKSubsets) {
  SplitMix64 rng(2024);
  long cases = 0, ties = 0;
  for (int rep = 0; rep < 3000; ++rep) {
    const int H = static_cast<int>(rng.integer(1, 12));
    const int a = static_cast<int>(rng.integer(0, H - 1));
    const int b = static_cast<int>(rng.integer(a + 1, H));
    const int k = static_cast<int>(rng.integer(1, b - a));
    const float energy = static_cast<float>(rng.uniform(0.25, 3.0));
    const int levels = rep % 3 == 0 ? 3 : 40;  // few levels: many ties
    std::vector<double> v(static_cast<size_t>(H)), y(static_cast<size_t>(H));
    for (auto& x : v) x = grid_value(rng, levels);
    for (auto& x : y) x = static_cast<double>(rng.integer(1, 40)) / 8.0;
    double min_pred = 0.0;
    const std::vector<int> by_sort = chosen_by_sort(v, a, b, k);
    const std::vector<int> by_enum = chosen_by_enumeration(v, a, b, k, &min_pred);
    ASSERT_EQ(by_sort, by_enum) << "the two definitions of the decision disagree (test bug)";
    double pred_sum = 0.0, chosen_true = 0.0;
    for (int h : by_enum) {
      pred_sum += std::max(v[static_cast<size_t>(h)], double(kFloor));
      chosen_true += y[static_cast<size_t>(h)];
    }
    ASSERT_EQ(pred_sum, min_pred);
    const double expected = double(energy) * (chosen_true - best_true_cost(y, a, b, k));
    const double got = ev_regret(v, y, k, a, b, energy);
    ASSERT_NEAR(got, expected, 1e-12 * (1 + std::abs(expected)))
        << "H=" << H << " window [" << a << "," << b << ") k=" << k;
    ASSERT_GE(got, 0.0);
    // Float version: sums of values on a 1/8 grid are exact in float as well.
    std::vector<float> vf(v.begin(), v.end()), yf(y.begin(), y.end());
    RegretContext c;
    c.floor = kFloor;
    ASSERT_NEAR(EvCharging::regret<float>({k, a, b, energy}, vf.data(), yf.data(), c, 0), expected,
                1e-6 * (1 + expected));
    ++cases;
    // Count cases where the tie rule decides the outcome.
    std::vector<double> sorted;
    for (int h = a; h < b; ++h) sorted.push_back(std::max(v[static_cast<size_t>(h)], double(kFloor)));
    std::sort(sorted.begin(), sorted.end());
    if (k < b - a && sorted[static_cast<size_t>(k - 1)] == sorted[static_cast<size_t>(k)]) ++ties;
  }
  EXPECT_EQ(cases, 3000);
  EXPECT_GT(ties, 150) << "the random windows should exercise the tie rule often";
}

TEST(FamiliesEvCharging, ContinuousRandomPredictions) {
  SplitMix64 rng(77);
  for (int rep = 0; rep < 2000; ++rep) {
    const int H = 12;
    const int a = static_cast<int>(rng.integer(0, 6));
    const int b = static_cast<int>(rng.integer(a + 1, H));
    const int k = static_cast<int>(rng.integer(1, b - a));
    std::vector<double> v(H), y(H);
    for (auto& x : v) x = rng.uniform(0.2, 2.0);
    for (auto& x : y) x = rng.uniform(0.2, 2.0);
    double min_pred = 0.0;
    const auto chosen = chosen_by_enumeration(v, a, b, k, &min_pred);
    ASSERT_EQ(chosen, chosen_by_sort(v, a, b, k));
    double cost = 0.0;
    for (int h : chosen) cost += y[static_cast<size_t>(h)];
    const double expected = 1.5 * (cost - best_true_cost(y, a, b, k));
    ASSERT_NEAR(ev_regret(v, y, k, a, b, 1.5f), expected, 1e-12);
  }
}

TEST(FamiliesEvCharging, TiesGoToTheLowerHour) {
  // All predictions equal: the first k hours of the window are charged.
  const std::vector<double> flat(8, 1.0);
  const std::vector<double> y = {5, 4, 3, 2, 1, 9, 9, 9};
  // window [1, 6), k = 2: charges hours 1, 2 (true 4 + 3); best is hours 3, 4 (2 + 1).
  EXPECT_DOUBLE_EQ(ev_regret(flat, y, 2, 1, 6, 1.0f), (4.0 + 3.0) - (2.0 + 1.0));
  // A tie at the boundary only: hours 2 and 4 tie for the second place.
  const std::vector<double> v = {3, 3, 1, 3, 1.5, 1.5, 3, 3};
  const std::vector<double> y2 = {1, 1, 1, 1, 10, 0, 1, 1};
  // window [0, 8), k = 2: hour 2 (1), then hour 4 before hour 5 -> true 1 + 10.
  EXPECT_DOUBLE_EQ(ev_regret(v, y2, 2, 0, 8, 2.0f), 2.0 * ((1.0 + 10.0) - (0.0 + 1.0)));
  // Ties created by the floor: hours 5 (-1) and 1 (-2) both clamp to the floor, so the
  // lower hour 1 is charged although its raw prediction is lower only by accident.
  const std::vector<double> v3 = {2, -1, 2, 2, 2, -2, 2, 2};
  const std::vector<double> y3 = {1, 7, 1, 1, 1, 3, 1, 1};
  EXPECT_DOUBLE_EQ(ev_regret(v3, y3, 1, 0, 8, 1.0f), 7.0 - 1.0);
  const std::vector<double> v4 = {2, -2, 2, 2, 2, -1, 2, 2};
  EXPECT_DOUBLE_EQ(ev_regret(v4, y3, 1, 0, 8, 1.0f), 7.0 - 1.0);
}

TEST(FamiliesEvCharging, ChargingTheWholeWindowHasNoRegret) {
  SplitMix64 rng(5);
  for (int rep = 0; rep < 200; ++rep) {
    const int H = static_cast<int>(rng.integer(1, 12));
    const int a = static_cast<int>(rng.integer(0, H - 1));
    const int b = static_cast<int>(rng.integer(a + 1, H));
    std::vector<double> v(static_cast<size_t>(H)), y(static_cast<size_t>(H));
    for (auto& x : v) x = rng.uniform(-1.0, 3.0);
    for (auto& x : y) x = rng.uniform(0.1, 3.0);
    EXPECT_EQ(ev_regret(v, y, b - a, a, b, 1.0f), 0.0);
  }
}

TEST(FamiliesEvCharging, CostIsEvaluatedOnTheTruthNotThePrediction) {
  // The released reference code summed predicted prices over the chosen hours (DESIGN 4.2);
  // here the prediction is wrong by a constant offset, which leaves the decision (and so
  // the regret) unchanged: a predicted-price cost would not be zero.
  const std::vector<double> y = {0.5, 2.0, 1.0, 3.0};
  std::vector<double> v = y;
  for (auto& x : v) x += 10.0;
  EXPECT_EQ(ev_regret(v, y, 2, 0, 4, 1.0f), 0.0);
}

// ------------------------------------------------------------------ inventory (4.3)

double inv_regret(double v, double y, float cu, float co) {
  RegretContext c;
  c.floor = kFloor;
  return Inventory::regret<double>({cu, co, 0}, &v, &y, c, 0);
}
double inv_dregret(double v, double y, float cu, float co) {
  RegretContext c;
  c.floor = kFloor;
  double g = 0.0;
  Inventory::add_dregret<double>({cu, co, 0}, &v, &y, c, 0, 1.0, &g);
  return g;
}

TEST(FamiliesInventory, RegretEqualsDirectFormula) {
  SplitMix64 rng(8);
  for (int i = 0; i < 20000; ++i) {
    const float cu = static_cast<float>(rng.uniform(0.0, 5.0));
    const float co = static_cast<float>(rng.uniform(0.0, 5.0));
    const double y = rng.uniform(0.01, 4.0);
    const double v = rng.uniform(-1.0, 5.0);
    const double a = std::max(v, double(kFloor));  // the order placed
    const double direct = double(cu) * std::max(y - a, 0.0) + double(co) * std::max(a - y, 0.0);
    const double r = inv_regret(v, y, cu, co);
    ASSERT_NEAR(r, direct, 1e-14 * (1 + direct)) << "v=" << v << " y=" << y;
    ASSERT_GE(r, 0.0);
    EXPECT_EQ(inv_regret(y, y, cu, co), 0.0);
  }
  // Which forecast hour the agent reads.
  const double v[3] = {1.0, 2.0, 0.5}, y[3] = {1.0, 1.0, 1.0};
  RegretContext c;
  EXPECT_DOUBLE_EQ(Inventory::regret<double>({3.0f, 5.0f, 1}, v, y, c, 0), 5.0);
  EXPECT_DOUBLE_EQ(Inventory::regret<double>({3.0f, 5.0f, 2}, v, y, c, 0), 1.5);
}

TEST(FamiliesInventory, DerivativeSignsAndFiniteDifferences) {
  const float cu = 2.5f, co = 0.75f;
  for (double y : {0.2, 1.0, 3.0}) {
    for (double v : {0.01, 0.1, 0.5, 0.9, 1.5, 2.9, 3.2, 5.0}) {
      if (std::abs(v - y) < 1e-3) continue;
      const double g = inv_dregret(v, y, cu, co);
      EXPECT_EQ(g, v < y ? -double(cu) : double(co)) << "v=" << v << " y=" << y;
      const double h = 1e-6;
      const double fd = (inv_regret(v + h, y, cu, co) - inv_regret(v - h, y, cu, co)) / (2 * h);
      EXPECT_NEAR(g, fd, 1e-6) << "v=" << v << " y=" << y;
    }
  }
  // Below the floor the order does not move: flat regret, zero derivative.
  for (double v : {-3.0, 0.0, 5e-4}) {
    EXPECT_EQ(inv_dregret(v, 1.0, cu, co), 0.0);
    EXPECT_EQ(inv_regret(v, 1.0, cu, co), inv_regret(double(kFloor), 1.0, cu, co));
  }
  // Accumulates with the weight into the agent's hour only.
  const double v[2] = {2.0, 2.0}, y[2] = {1.0, 3.0};
  double g[2] = {1.0, 1.0};
  RegretContext c;
  Inventory::add_dregret<double>({cu, co, 1}, v, y, c, 0, 4.0, g);
  EXPECT_EQ(g[0], 1.0);
  EXPECT_DOUBLE_EQ(g[1], 1.0 - 4.0 * cu);
}

// ------------------------------------------------------------------ all families

TEST(FamiliesAll, RegretIsNonNegativeOnRandomInputs) {
  SplitMix64 rng(99);
  const int H = 12;
  std::vector<float> demand(24);
  for (auto& d : demand) d = static_cast<float>(rng.uniform(0.3, 2.0));
  RegretContext c;
  c.demand = demand.data();
  c.demand_length = 24;
  c.floor = kFloor;
  for (int i = 0; i < 20000; ++i) {
    float v[H], y[H];
    for (int h = 0; h < H; ++h) {
      v[h] = static_cast<float>(rng.uniform(-0.5, 4.0));
      y[h] = static_cast<float>(rng.uniform(0.01, 4.0));
    }
    const long t = static_cast<long>(rng.integer(0, 100000));
    const Datacenter::Params dc{static_cast<float>(rng.uniform(0.01, 100.0)),
                                static_cast<float>(rng.uniform(0.1, 10.0)),
                                static_cast<int>(rng.integer(0, 23)), static_cast<int>(rng.integer(0, H - 1))};
    const int a = static_cast<int>(rng.integer(0, H - 1));
    const int b = static_cast<int>(rng.integer(a + 1, H));
    const EvCharging::Params ev{static_cast<int>(rng.integer(1, b - a)), a, b,
                                static_cast<float>(rng.uniform(0.1, 3.0))};
    const Inventory::Params inv{static_cast<float>(rng.uniform(0, 4)),
                                static_cast<float>(rng.uniform(0, 4)), static_cast<int>(rng.integer(0, H - 1))};
    const float r1 = Datacenter::regret<float>(dc, v, y, c, t);
    const float r2 = EvCharging::regret<float>(ev, v, y, c, t);
    const float r3 = Inventory::regret<float>(inv, v, y, c, t);
    ASSERT_TRUE(std::isfinite(r1) && std::isfinite(r2) && std::isfinite(r3));
    ASSERT_GE(r1, 0.0f);
    ASSERT_GE(r2, 0.0f);
    ASSERT_GE(r3, 0.0f);
  }
}

TEST(FamiliesAll, ExtremeValidInputsGiveFiniteResults) {
  const std::vector<float> lambdas = {1e-6f, 1.0f, 1e6f};
  const std::vector<float> scales = {1e-4f, 1.0f, 1e4f};
  const std::vector<float> values = {kFloor, 1e-3f, 2e-3f, 1.0f, 1e3f, 1e4f};
  UnitDemand u;
  for (float lambda : lambdas)
    for (float d : scales)
      for (float v : values)
        for (float y : values) {
          const Datacenter::Params p{lambda, d, 0, 0};
          const float rf = Datacenter::regret<float>(p, &v, &y, u.ctx(), 0);
          const double vd = v, yd = y;
          const double rd = Datacenter::regret<double>(p, &vd, &yd, u.ctx(), 0);
          float gf = 0.0f;
          double gd = 0.0;
          Datacenter::add_dregret<float>(p, &v, &y, u.ctx(), 0, 1.0f, &gf);
          Datacenter::add_dregret<double>(p, &vd, &yd, u.ctx(), 0, 1.0, &gd);
          ASSERT_TRUE(std::isfinite(rf) && std::isfinite(rd) && std::isfinite(gf) && std::isfinite(gd))
              << "lambda=" << lambda << " d=" << d << " v=" << v << " y=" << y;
          ASSERT_GE(rf, 0.0f);
          const Inventory::Params ip{lambda, d, 0};
          ASSERT_TRUE(std::isfinite(Inventory::regret<float>(ip, &v, &y, u.ctx(), 0)));
        }
  // ev_charging with the whole horizon at the floor and huge true prices.
  float v[kMaxHorizon], y[kMaxHorizon];
  for (int h = 0; h < kMaxHorizon; ++h) {
    v[h] = h % 2 ? kFloor : -1e6f;
    y[h] = h % 3 ? 1e4f : 1e-3f;
  }
  RegretContext c;
  c.floor = kFloor;
  const float r = EvCharging::regret<float>({kMaxHorizon / 2, 0, kMaxHorizon, 1e3f}, v, y, c, 0);
  EXPECT_TRUE(std::isfinite(r));
  EXPECT_GE(r, 0.0f);
}

TEST(FamiliesAll, RegistryNamesAndEstimatorChoice) {
  EXPECT_EQ(Families::size, kFamilyCount);
  int seen = 0;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    EXPECT_EQ(static_cast<int>(F::tag), seen++);
    Family parsed;
    ASSERT_TRUE(parse_family(F::name, &parsed));
    EXPECT_EQ(parsed, F::tag);
    EXPECT_STREQ(family_name(F::tag), F::name);
  });
  Family f;
  EXPECT_FALSE(parse_family("windfarm", &f));
  EXPECT_TRUE(uses_pathwise<Datacenter>(Estimator::automatic));
  EXPECT_TRUE(uses_pathwise<Inventory>(Estimator::pathwise));
  EXPECT_FALSE(uses_pathwise<Datacenter>(Estimator::score));
  EXPECT_FALSE(uses_pathwise<EvCharging>(Estimator::automatic));
}

}  // namespace
}  // namespace eqpm
