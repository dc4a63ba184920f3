// The EV agents' conditional Monte Carlo gradient (--ev-gradient conditional; an extension
// of DESIGN.md 5.3, README "How it trains"): unbiased for the same smoothed-regret gradient the
// score function estimates, with far lower variance; the CPU's class-shared fast path equals the
// reference; configuration rules.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/families.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

struct Moments {
  std::vector<double> mean, var;  // per hour, of the per-sample estimate
};

// The conditional estimator and the score function (with the exact mean regret as its
// baseline, which keeps it unbiased) over `draws` samples of eps.
void estimate(const EvCharging::Params& p, const std::vector<float>& mu,
              const std::vector<float>& y, float sigma, long draws, Moments* cond, Moments* score) {
  const int H = static_cast<int>(mu.size());
  RegretContext ctx;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  std::vector<double> eps(static_cast<size_t>(H)), v(static_cast<size_t>(H));
  // Baseline: the smoothed regret itself, from an independent run.
  double base = 0;
  for (long d = 0; d < draws; ++d) {
    std::vector<float> vf(static_cast<size_t>(H));
    for (int h = 0; h < H; ++h)
      vf[static_cast<size_t>(h)] = mu[static_cast<size_t>(h)] + sigma * float(normal(rng));
    base += EvCharging::regret<double>(p, vf.data(), y.data(), ctx, 0);
  }
  base /= static_cast<double>(draws);
  for (Moments* m : {cond, score}) {
    m->mean.assign(static_cast<size_t>(H), 0.0);
    m->var.assign(static_cast<size_t>(H), 0.0);
  }
  std::vector<double> sum_c(static_cast<size_t>(H), 0), sq_c(static_cast<size_t>(H), 0),
      sum_s(static_cast<size_t>(H), 0), sq_s(static_cast<size_t>(H), 0);
  for (long d = 0; d < draws; ++d) {
    std::vector<float> vf(static_cast<size_t>(H));
    for (int h = 0; h < H; ++h) {
      eps[static_cast<size_t>(h)] = static_cast<float>(normal(rng));
      vf[static_cast<size_t>(h)] =
          mu[static_cast<size_t>(h)] + sigma * float(eps[static_cast<size_t>(h)]);
    }
    double g[kMaxHorizon] = {};
    EvCharging::add_dregret_conditional<double>(p, vf.data(), mu.data(), y.data(), ctx,
                                                double(sigma), 1.0, g);
    const double r = EvCharging::regret<double>(p, vf.data(), y.data(), ctx, 0);
    for (int h = 0; h < H; ++h) {
      const size_t i = static_cast<size_t>(h);
      const double s = (r - base) * eps[i] / sigma;
      sum_c[i] += g[h];
      sq_c[i] += g[h] * g[h];
      sum_s[i] += s;
      sq_s[i] += s * s;
    }
  }
  const double n = static_cast<double>(draws);
  for (int h = 0; h < H; ++h) {
    const size_t i = static_cast<size_t>(h);
    cond->mean[i] = sum_c[i] / n;
    cond->var[i] = sq_c[i] / n - cond->mean[i] * cond->mean[i];
    score->mean[i] = sum_s[i] / n;
    score->var[i] = sq_s[i] / n - score->mean[i] * score->mean[i];
  }
}

TEST(EvConditional, UnbiasedForTheScoreFunctionsGradientWithLowerVariance) {
  // A window of 6 of 8 hours, 2 to charge; forecasts close enough that ranks flip.
  const std::vector<float> mu = {1.0f, 0.92f, 0.95f, 1.01f, 0.97f, 1.10f, 0.99f, 1.2f};
  const std::vector<float> y = {1.05f, 0.90f, 1.00f, 0.93f, 0.98f, 1.02f, 0.94f, 1.1f};
  EvCharging::Params p{2, 1, 7, 1.7f};
  const long draws = 400000;
  Moments cond, score;
  estimate(p, mu, y, 0.05f, draws, &cond, &score);
  double var_c = 0, var_s = 0, norm = 0;
  for (size_t h = 0; h < mu.size(); ++h) {
    // Both estimate d/dmu_h E[r(mu + sigma eps)]: equal within 5 standard errors.
    const double se = std::sqrt((cond.var[h] + score.var[h]) / draws);
    EXPECT_NEAR(cond.mean[h], score.mean[h], 5 * se + 1e-12) << "hour " << h;
    var_c += cond.var[h];
    var_s += score.var[h];
    norm += std::fabs(cond.mean[h]);
  }
  EXPECT_GT(norm, 0.5);          // the gradient is not trivially zero here
  EXPECT_EQ(cond.mean[0], 0.0);  // outside the window
  EXPECT_EQ(cond.mean[7], 0.0);
  EXPECT_LT(var_c, var_s / 4) << "conditional " << var_c << ", score function " << var_s;
}

TEST(EvConditional, NothingToDecideGivesNoGradient) {
  const std::vector<float> mu = {1.0f, 0.9f, 1.1f}, y = {1.0f, 1.2f, 0.8f},
                           v = {1.01f, 0.95f, 1.2f};
  RegretContext ctx;
  double g[kMaxHorizon] = {};
  EvCharging::add_dregret_conditional<double>(EvCharging::Params{3, 0, 3, 1.0f}, v.data(),
                                              mu.data(), y.data(), ctx, 0.05, 1.0, g);
  EvCharging::add_dregret_conditional<double>(EvCharging::Params{1, 0, 3, 1.0f}, v.data(),
                                              mu.data(), y.data(), ctx, 0.0, 1.0, g);
  for (int h = 0; h < 3; ++h) EXPECT_EQ(g[h], 0.0);
}

RunInputs ev_inputs(RunConfig& cfg) {
  cfg.series_hours = 24 * 40;
  cfg.lookback = 12;
  cfg.horizon = 6;
  cfg.hidden = {8};
  cfg.agents = 80;
  cfg.mix = "dc=0.25,ev=0.5,inv=0.25";
  cfg.dc_hour = {0, 5};
  cfg.inv_hour = {0, 5};
  cfg.ev_k = {1, 4};
  cfg.batch = 8;
  cfg.samples = 6;
  cfg.rho = 0.5;
  cfg.ev_gradient = EvGradient::conditional;
  return load_inputs(cfg);
}

// The fast paths (lanes, structured EV classes, the fused pass) and the reference give the
// same weights and gradients under the conditional EV gradient, and it changes the
// gradient (EV agents no longer enter through the score function).
TEST(EvConditional, FastPathsAgreeWithTheReference) {
  RunConfig cfg;
  const RunInputs in = ev_inputs(cfg);
  const Problem p = make_problem(cfg, in);
  std::vector<StepTrace> traces;
  for (auto [path, gradient] : {std::pair{RegretPath::reference, EvGradient::conditional},
                                std::pair{RegretPath::automatic, EvGradient::conditional},
                                std::pair{RegretPath::reference, EvGradient::score}}) {
    Problem q = p;
    q.regret_path = path;
    q.ev_gradient = gradient;
    auto b = make_backend("cpu", 2);
    b->setup(q);
    StepSpec st;
    st.beta = 0.2;
    StepTrace t;
    for (std::uint32_t step = 0; step < 3; ++step) {  // the later steps take the fused pass
      st.step = step;
      st.rows = {1, 4, 9, 16, 25, 36, 49, 64};
      ASSERT_TRUE(b->step(st, &t).finite);
    }
    traces.push_back(t);
  }
  for (size_t n = 0; n < traces[0].omega.size(); ++n)
    ASSERT_NEAR(traces[1].omega[n], traces[0].omega[n], 1e-4 * std::fabs(traces[0].omega[n]) + 1e-9)
        << "agent " << n;
  double gmax = 0, diff = 0;
  for (double g : traces[0].g) gmax = std::max(gmax, std::fabs(g));
  for (size_t i = 0; i < traces[0].g.size(); ++i) {
    ASSERT_NEAR(traces[1].g[i], traces[0].g[i], 1e-5 * gmax) << i;
    diff = std::max(diff, std::fabs(traces[2].g[i] - traces[0].g[i]));
  }
  EXPECT_GT(diff, 1e-3 * gmax);
}

TEST(EvConditional, ConfigurationRules) {
  RunConfig defaults;
  EXPECT_EQ(defaults.ev_gradient, EvGradient::conditional);
  EXPECT_EQ(Problem{}.ev_gradient, EvGradient::conditional);
  RunConfig cfg;
  const RunInputs in = ev_inputs(cfg);
  Problem p = make_problem(cfg, in);
  EXPECT_TRUE(p.ev_conditional());
  // estimator = score means the score function for every family: the same step as
  // --ev-gradient score, bit for bit.
  auto step_g = [&](Problem q) {
    auto b = make_backend("cpu", 2);
    b->setup(q);
    StepSpec st;
    st.beta = 0.2;
    st.rows = {1, 4, 9, 16, 25, 36, 49, 64};
    StepTrace t;
    EXPECT_TRUE(b->step(st, &t).finite);
    return t.g;
  };
  p.estimator = Estimator::score;
  EXPECT_FALSE(p.ev_conditional());
  Problem score = p;
  score.ev_gradient = EvGradient::score;
  EXPECT_TRUE(test::bitwise_equal(step_g(p), step_g(score)));
  p.estimator = Estimator::pathwise;  // every family then has a pathwise-type gradient
  EXPECT_NO_THROW(make_backend("cpu")->setup(p));
  p.ev_gradient = EvGradient::score;
  EXPECT_THROW(make_backend("cpu")->setup(p), ConfigError);
  set_option(cfg, "ev_gradient", "score", "--ev-gradient");
  EXPECT_EQ(cfg.ev_gradient, EvGradient::score);
  EXPECT_THROW(set_option(cfg, "ev_gradient", "pathwise", "--ev-gradient"), ConfigError);
}

}  // namespace
}  // namespace eqpm
