// The shared step algebra (include/eqpm/step_algebra.hpp) against the formulas of DESIGN.md
// 5.1-5.2 written out independently: the leave-one-out baseline applied once to X equals
// the per-agent baseline; the power mean is scale-safe and matches the plain formula; the
// gradient assembly, loss, guard, clipping and Adam update are the textbook expressions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "eqpm/objective.hpp"
#include "eqpm/rng.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm {
namespace {

TEST(StepAlgebra, BaselineAppliedOnceEqualsThePerAgentLeaveOneOut) {
  // Three agents, S = 5 samples of one input: sum_n omega_n (r_ns - mean_{s' != s} r_ns').
  const int S = 5;
  const double omega[3] = {0.2, 0.5, 0.3};
  double r[3][S];
  SplitMix64 rng(7);
  for (auto& row : r)
    for (double& v : row) v = static_cast<double>(rng.next() % 1000) / 100.0;
  double X[S] = {};
  for (int n = 0; n < 3; ++n)
    for (int s = 0; s < S; ++s) X[s] += omega[n] * r[n][s];
  double total = 0.0;
  for (int s = 0; s < S; ++s) total += X[s];
  for (int s = 0; s < S; ++s) {
    double per_agent = 0.0;
    for (int n = 0; n < 3; ++n) {
      double others = 0.0;
      for (int t = 0; t < S; ++t)
        if (t != s) others += r[n][t];
      per_agent += omega[n] * (r[n][s] - others / (S - 1));
    }
    EXPECT_NEAR(step::advantage(X[s], total, S, false), per_agent, 1e-12);
    EXPECT_EQ(step::advantage(X[s], total, S, true), X[s]);  // antithetic: no baseline
  }
  // The advantages of one input sum to zero: the baseline removes the common level.
  double sum = 0.0;
  for (int s = 0; s < S; ++s) sum += step::advantage(X[s], total, S, false);
  EXPECT_NEAR(sum, 0.0, 1e-12);
}

TEST(StepAlgebra, PowerMeanIsThePlainFormulaAndSafeAtExtremeScales) {
  const std::vector<double> R = {0.5, 2.0, 1.0, 4.0};
  const std::vector<double> w = {1.0, 2.0, 1.0, 0.5};
  for (double q : {0.0, 1.0, 4.0, 19.0}) {
    double num = 0.0, W = 0.0;
    for (size_t i = 0; i < R.size(); ++i) {
      num += w[i] * std::pow(R[i], q + 1);
      W += w[i];
    }
    const double plain = std::pow(num / W, 1.0 / (q + 1));
    EXPECT_NEAR(power_mean(R.data(), w.data(), 4, q), plain, 1e-12 * plain) << "q " << q;
  }
  // Regrets of 1e300 at q = 40 overflow the plain formula, not the factored one.
  const std::vector<double> huge = {1e300, 5e299};
  const double m = power_mean(huge.data(), nullptr, 2, 40.0);
  EXPECT_TRUE(std::isfinite(m));
  EXPECT_GT(m, 5e299);
  EXPECT_LE(m, 1e300);
  EXPECT_EQ(step::power_mean_finish(0.0, 1.0, 1.0, 2.0), 0.0);
  EXPECT_EQ(step::power_mean_finish(1.0, 1.0, 0.0, 2.0), 0.0);
  // Gradient weights stay at most w/W for any q and sum to 1 at q = 0.
  const double M = power_mean(R.data(), w.data(), 4, 19.0);
  for (size_t i = 0; i < R.size(); ++i) EXPECT_LE(agent_weight(R[i], w[i] / 4.5, M, 19.0), 1.0);
  EXPECT_EQ(agent_weight(3.0, 0.25, 0.0, 0.0), 0.25);
}

TEST(StepAlgebra, GradientWithRespectToMuHasBothTerms) {
  const int B = 4, S = 8, H = 3;
  const float sigma = 0.05f;
  const double beta = 0.1, mbar = 2.0, msebar = 0.5;
  const auto c = step::grad_coefficients(true, beta, mbar, msebar, B, S, H, sigma);
  const double score = 1.5, G = -0.25;
  const float mu = 1.25f, y = 1.0f;
  const double expect = (1 - beta) / mbar * (score / (B * S * double(sigma)) + G) +
                        beta * 2 * (double(mu) - y) / (B * H * msebar);
  EXPECT_NEAR(step::grad_mu(c, score, G, mu, y), expect, 1e-12 * std::abs(expect));
  // Plain MSE (beta = 1, not equitable): the accuracy term alone.
  const auto plain = step::grad_coefficients(false, 1.0, 0.0, msebar, B, S, H, sigma);
  EXPECT_EQ(step::grad_mu(plain, 123.0, 456.0, mu, y), 2 * (double(mu) - y) / (B * H * msebar));
  // Before MSEbar starts there is no accuracy term.
  const auto first = step::grad_coefficients(true, beta, mbar, 0.0, B, S, H, sigma);
  EXPECT_FALSE(first.accurate);
  // The score accumulates advantage x eps.
  EXPECT_EQ(step::score_add(1.0, 2.0, 0.5f), 2.0);
}

TEST(StepAlgebra, LossGuardAndClipping) {
  EXPECT_DOUBLE_EQ(step::loss(true, 0.25, 3.0, 2.0, 1.0, 4.0), 0.75 * 1.5 + 0.25 * 0.25);
  EXPECT_DOUBLE_EQ(step::loss(false, 1.0, 3.0, 2.0, 1.0, 4.0), 0.25);
  EXPECT_EQ(step::loss(true, 0.5, 3.0, 0.0, 1.0, 0.0), 0.0);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(step::finite_step(1.0, 1.0, 1.0, true, true, 1.0));
  EXPECT_FALSE(step::finite_step(inf, 1.0, 1.0, false, true, 1.0));
  EXPECT_FALSE(step::finite_step(1.0, NAN, 1.0, false, true, 1.0));
  EXPECT_FALSE(step::finite_step(1.0, 1.0, 1.0, true, false, 1.0));
  EXPECT_TRUE(step::finite_step(1.0, 1.0, 1.0, false, false, NAN));  // no regrets in a plain step
  EXPECT_FLOAT_EQ(step::clip_factor(4.0, 1.0), 0.25f);
  EXPECT_EQ(step::clip_factor(0.5, 1.0), 1.0f);
  EXPECT_EQ(step::clip_factor(4.0, 0.0), 1.0f);
}

TEST(StepAlgebra, AdamUpdateIsTheTextbookStep) {
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 1e-3;
  float theta = 0.5f, m = 0.0f, v = 0.0f;
  double theta_d = 0.5, m_d = 0.0, v_d = 0.0;
  const float grads[3] = {0.3f, -0.1f, 0.2f};
  for (int t = 1; t <= 3; ++t) {
    const auto a = step::adam_step(b1, b2, eps, lr, 0.0, t);
    step::adam_update(a, grads[t - 1], 1.0f, theta, m, v);
    m_d = b1 * m_d + (1 - b1) * grads[t - 1];
    v_d = b2 * v_d + (1 - b2) * grads[t - 1] * grads[t - 1];
    theta_d -= lr * (m_d / (1 - std::pow(b1, t))) / (std::sqrt(v_d / (1 - std::pow(b2, t))) + eps);
    EXPECT_NEAR(theta, theta_d, 1e-6) << "step " << t;
  }
  // Decoupled weight decay subtracts lr x wd x the weight before the step, clipping scales g.
  float th = 2.0f, mm = 0.0f, vv = 0.0f;
  const auto a = step::adam_step(b1, b2, eps, lr, 0.5, 1.0);
  step::adam_update(a, 1.0f, 0.5f, th, mm, vv);
  EXPECT_NEAR(th, 2.0 - lr * 1.0 - lr * 0.5 * 2.0, 1e-6);
  EXPECT_FLOAT_EQ(mm, 0.1f * 0.5f);
}

TEST(StepAlgebra, SmoothingStartsAtTheFirstValue) {
  EXPECT_EQ(step::smooth(123.0, 2.0, 0.99, false), 2.0);
  EXPECT_DOUBLE_EQ(step::smooth(1.0, 2.0, 0.75, true), 0.75 + 0.5);
}

}  // namespace
}  // namespace eqpm
