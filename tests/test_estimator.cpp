// The gradient estimators of DESIGN.md 5.2 and 5.3 and the power-mean weights of 5.1/5.2.
// (1) The score-function estimator written out for a toy agent with an analytic expected
//     regret, using the real perturbations: unbiased with a leave-one-out baseline and with
//     antithetic pairs, biased by S/(S-1) when the two are combined, and antithetic pairs do
//     not increase the variance.
// (2) Through the CPU backend: pathwise and score-function gradients agree in expectation
//     for datacenter and inventory agents; `auto` picks per family.
// (3) Power-mean weights: ratios (R1/R2)^q, homogeneity, gradients, q = 40 without overflow,
//     and the weights the backend reports.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <vector>

#include "eqpm/backend.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/rng.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

// Mean and standard error of a stream of numbers.
struct Moments {
  double n = 0, sum = 0, sum2 = 0;
  void add(double x) {
    n += 1;
    sum += x;
    sum2 += x * x;
  }
  double mean() const { return sum / n; }
  double var() const { return std::max(0.0, (sum2 - sum * sum / n) / (n - 1)); }
  double se() const { return std::sqrt(var() / n); }
};

// ------------------------------------------------------------------ (1) the toy agent

enum class Baseline { none, leave_one_out };

// One step of the 5.2 estimator for a single agent acting on a single forecast hour (B = 1,
// H = 1): g = (1 / (S sigma)) sum_s (r_s - base_s) eps_s, eps from eqpm::perturbation.
double toy_gradient(std::uint32_t step, int S, double mu, double sigma, bool antithetic,
                    Baseline baseline, const std::function<double(double)>& regret) {
  float eps[kMaxSamples];
  double r[kMaxSamples];
  double total = 0.0;
  for (int s = 0; s < S; ++s) {
    perturbation(2718, step, 0, static_cast<std::uint32_t>(s), 1, antithetic, &eps[s]);
    r[s] = regret(mu + sigma * double(eps[s]));
    total += r[s];
  }
  double g = 0.0;
  for (int s = 0; s < S; ++s) {
    const double base = baseline == Baseline::leave_one_out ? (total - r[s]) / (S - 1) : 0.0;
    g += (r[s] - base) * double(eps[s]);
  }
  return g / (S * sigma);
}

Moments toy_moments(int steps, int S, double mu, double sigma, bool antithetic, Baseline baseline,
                    const std::function<double(double)>& regret) {
  Moments m;
  for (int k = 0; k < steps; ++k)
    m.add(toy_gradient(static_cast<std::uint32_t>(k), S, mu, sigma, antithetic, baseline, regret));
  return m;
}

constexpr double kY = 1.0;
double quadratic(double v) { return (v - kY) * (v - kY); }  // E r = (mu - y)^2 + sigma^2

TEST(EstimatorToy, LeaveOneOutWithoutAntitheticIsUnbiased) {
  for (int S : {2, 4, 16})
    for (double mu : {0.4, 0.97, 1.8}) {
      const auto m = toy_moments(20000, S, mu, 0.1, false, Baseline::leave_one_out, quadratic);
      const double expected = 2.0 * (mu - kY);
      EXPECT_LT(std::abs(m.mean() - expected), 4.0 * m.se())
          << "S=" << S << " mu=" << mu << " mean " << m.mean() << " se " << m.se();
    }
}

TEST(EstimatorToy, AntitheticWithoutBaselineIsUnbiased) {
  for (int S : {2, 4, 16})
    for (double mu : {0.4, 0.97, 1.8}) {
      const auto m = toy_moments(20000, S, mu, 0.1, true, Baseline::none, quadratic);
      const double expected = 2.0 * (mu - kY);
      EXPECT_LT(std::abs(m.mean() - expected), 4.0 * m.se() + 1e-12)
          << "S=" << S << " mu=" << mu << " mean " << m.mean() << " se " << m.se();
    }
}

TEST(EstimatorToy, AsymmetricKinkedRegretIsUnbiasedBothWays) {
  // Newsvendor-like r = cu (y - v)+ + co (v - y)+: d/dmu E r = co - (cu + co) Phi((y - mu)/sigma).
  const double cu = 3.0, co = 0.5, sigma = 0.2;
  auto r = [&](double v) { return v < kY ? cu * (kY - v) : co * (v - kY); };
  for (double mu : {0.8, 1.05}) {
    const double Phi = 0.5 * std::erfc(-((kY - mu) / sigma) / std::sqrt(2.0));
    const double expected = co - (cu + co) * Phi;
    for (bool anti : {false, true}) {
      const auto m = toy_moments(20000, 8, mu, sigma, anti,
                                 anti ? Baseline::none : Baseline::leave_one_out, r);
      EXPECT_LT(std::abs(m.mean() - expected), 4.0 * m.se())
          << "mu=" << mu << " antithetic=" << anti << " mean " << m.mean() << " se " << m.se();
    }
  }
}

TEST(EstimatorToy, LeaveOneOutBaselineWithAntitheticPairsIsBiasedBySOverSMinusOne) {
  const double mu = 1.5, sigma = 0.1, expected = 2.0 * (mu - kY);
  for (int S : {2, 4}) {
    const auto right = toy_moments(20000, S, mu, sigma, true, Baseline::none, quadratic);
    const auto wrong = toy_moments(20000, S, mu, sigma, true, Baseline::leave_one_out, quadratic);
    const double factor = static_cast<double>(S) / (S - 1);
    // The combination is detectably off ...
    EXPECT_GT(std::abs(wrong.mean() - expected), 4.0 * wrong.se()) << "S=" << S;
    // ... by the factor S/(S-1): within a pair the partner's regret sits in the baseline.
    EXPECT_LT(std::abs(wrong.mean() - factor * expected), 4.0 * wrong.se()) << "S=" << S;
    EXPECT_LT(std::abs(right.mean() - expected), 4.0 * right.se()) << "S=" << S;
    // Step by step it is exactly the unbiased estimate scaled (the eps of a pair sum to 0).
    for (std::uint32_t k = 0; k < 50; ++k) {
      const double a = toy_gradient(k, S, mu, sigma, true, Baseline::none, quadratic);
      const double b = toy_gradient(k, S, mu, sigma, true, Baseline::leave_one_out, quadratic);
      ASSERT_NEAR(b, factor * a, 1e-12 * (1 + std::abs(b)));
    }
  }
}

TEST(EstimatorToy, AntitheticSamplingDoesNotIncreaseTheVariance) {
  // Against independent sampling at the same S without a baseline: always (for this toy the
  // variances are 16 delta^2 / S and (delta^4 / sigma^2 + 14 delta^2 + 15 sigma^2) / S).
  // Against independent sampling with the leave-one-out baseline: near the optimum
  // (delta <= sigma), where the pairs cancel the even part of r exactly. Far from it the
  // order reverses: for delta >> sigma the variances tend to 16 delta^2 / S (pairs: S/2
  // independent directions) and 8 delta^2 / (S - 1) (leave-one-out), so pairs cost up to
  // 2 (S - 1) / S times the variance; not asserted, since it is a property of the method.
  const int S = 8, steps = 20000;
  const double sigma = 0.1;
  for (double delta : {0.0, 0.05, 0.1, 0.3, 1.0}) {
    const double mu = kY + delta;
    const auto anti = toy_moments(steps, S, mu, sigma, true, Baseline::none, quadratic);
    const auto plain = toy_moments(steps, S, mu, sigma, false, Baseline::none, quadratic);
    EXPECT_LE(anti.var(), plain.var()) << "delta=" << delta;
    if (delta <= sigma) {
      const auto loo = toy_moments(steps, S, mu, sigma, false, Baseline::leave_one_out, quadratic);
      EXPECT_LE(anti.var(), loo.var()) << "delta=" << delta;
    }
    // The analytic variance of the antithetic estimator: 16 delta^2 / S (exact up to float eps).
    EXPECT_NEAR(anti.var(), 16.0 * delta * delta / S, 0.08 * 16.0 * delta * delta / S + 1e-10)
        << "delta=" << delta;
  }
}

// ------------------------------------------------------------------ (2) through the backend

// A tiny problem whose inputs live as long as the backend.
struct Fixture {
  RunConfig cfg;
  RunInputs in;
  Problem problem;
  std::unique_ptr<Backend> backend;
  BackendState initial;
};

RunConfig tiny_config(const std::string& mix, long agents) {
  RunConfig c;
  c.series_hours = 24 * 40;
  c.lookback = 6;
  c.horizon = 4;
  c.hidden = {5};
  c.activation = Activation::tanh;
  c.agents = agents;
  c.mix = mix;
  c.dc_hour = {0, 3};
  c.inv_hour = {0, 3};
  c.ev_k = {1, 3};
  c.samples = 8;
  c.sigma = 0.05;
  c.batch = 4;
  c.q = 0.0;
  c.rho = 0.0;
  c.beta = 0.0;
  c.seed = 42;
  return c;
}

std::unique_ptr<Fixture> make_fixture(const RunConfig& cfg, int threads = 1,
                                      const Population* population = nullptr) {
  auto f = std::make_unique<Fixture>();
  f->cfg = cfg;
  f->in.series = synthetic_series(cfg.series_hours, cfg.data_seed);
  f->in.demand = synthetic_demand_profile();
  f->in.population = population ? *population : generate_population(cfg);
  f->in.data = build_dataset(f->in.series, cfg.lookback, cfg.horizon, cfg.train_fraction,
                             cfg.val_fraction, cfg.scaling);
  f->problem = make_problem(cfg, f->in);
  f->backend = make_backend("cpu", threads);
  f->backend->setup(f->problem);
  f->initial = f->backend->state();
  return f;
}

// Per (b, h): the numerator of g (g times Mbar, which is the same for both estimators at the
// same step since they see the same perturbations), averaged over `steps` steps of a model
// held fixed.
struct GradientStats {
  std::vector<Moments> score, path, diff, biased_diff;
};

GradientStats compare_estimators(const RunConfig& base, int steps) {
  RunConfig cs = base, cp = base;
  cs.estimator = Estimator::score;
  cp.estimator = Estimator::pathwise;
  auto fs = make_fixture(cs), fp = make_fixture(cp);
  const std::vector<long> rows = {3, 150, 322, 601};
  const size_t BH = rows.size() * static_cast<size_t>(base.horizon);
  const double bias = static_cast<double>(base.samples) / (base.samples - 1);
  GradientStats st;
  st.score.resize(BH);
  st.path.resize(BH);
  st.diff.resize(BH);
  st.biased_diff.resize(BH);
  for (int k = 0; k < steps; ++k) {
    StepSpec spec;
    spec.step = static_cast<std::uint32_t>(k);
    spec.rows = rows;
    spec.beta = 0.0;
    spec.lr = 0.0;
    StepTrace ts, tp;
    fs->backend->set_state(fs->initial);
    fp->backend->set_state(fp->initial);
    const StepStats ss = fs->backend->step(spec, &ts);
    const StepStats sp = fp->backend->step(spec, &tp);
    EXPECT_EQ(ss.smoothed_power_mean, sp.smoothed_power_mean);
    for (size_t i = 0; i < BH; ++i) {
      const double a = ts.g[i] * ss.smoothed_power_mean, b = tp.g[i] * sp.smoothed_power_mean;
      st.score[i].add(a);
      st.path[i].add(b);
      st.diff[i].add(a - b);
      st.biased_diff[i].add(a - bias * b);
    }
  }
  return st;
}

void expect_agreement(const GradientStats& st, const std::string& what) {
  double most_significant = 0.0, power = 0.0;
  for (size_t i = 0; i < st.diff.size(); ++i) {
    EXPECT_LT(std::abs(st.diff[i].mean()), 4.0 * st.diff[i].se())
        << what << " entry " << i << ": score " << st.score[i].mean() << " pathwise "
        << st.path[i].mean() << " (se of the difference " << st.diff[i].se() << ")";
    most_significant = std::max(most_significant, std::abs(st.path[i].mean()) / st.diff[i].se());
    power = std::max(power, std::abs(st.biased_diff[i].mean()) / st.biased_diff[i].se());
  }
  // The comparison has power: the gradient is far from zero in units of the standard error,
  // and a gradient off by S/(S-1) would have been caught.
  EXPECT_GT(most_significant, 20.0) << what;
  EXPECT_GT(power, 6.0) << what << ": a S/(S-1) bias would go unnoticed";
}

TEST(EstimatorBackend, PathwiseAndScoreAgreeForDatacenterAgents) {
  for (bool anti : {true, false}) {
    RunConfig c = tiny_config("dc=1", 20);
    c.antithetic = anti;
    expect_agreement(compare_estimators(c, 3000),
                     std::string("datacenter, antithetic=") + (anti ? "true" : "false"));
  }
}

TEST(EstimatorBackend, PathwiseAndScoreAgreeForInventoryAgents) {
  for (bool anti : {true, false}) {
    RunConfig c = tiny_config("inv=1", 20);
    c.antithetic = anti;
    expect_agreement(compare_estimators(c, 3000),
                     std::string("inventory, antithetic=") + (anti ? "true" : "false"));
  }
}

TEST(EstimatorBackend, AutoChoosesPathwiseOrScorePerFamily) {
  auto run = [](const std::string& mix, Estimator e,
                EvGradient ev = EvGradient::score) {
    RunConfig c = tiny_config(mix, 12);
    c.estimator = e;
    c.ev_gradient = ev;
    auto f = make_fixture(c);
    StepSpec spec;
    spec.step = 5;
    spec.rows = {1, 2, 3, 4};
    spec.beta = 0.0;
    StepTrace t;
    f->backend->step(spec, &t);
    return t.g;
  };
  EXPECT_EQ(run("dc=1", Estimator::automatic), run("dc=1", Estimator::pathwise));
  EXPECT_EQ(run("inv=1", Estimator::automatic), run("inv=1", Estimator::pathwise));
  EXPECT_EQ(run("ev=1", Estimator::automatic), run("ev=1", Estimator::score));
  EXPECT_NE(run("dc=1", Estimator::automatic), run("dc=1", Estimator::score));
  // A mixed population: auto = score for the EV agents plus pathwise for the rest, which
  // is neither estimator alone.
  const auto mixed = run("dc=0.3,ev=0.4,inv=0.3", Estimator::automatic);
  EXPECT_NE(mixed, run("dc=0.3,ev=0.4,inv=0.3", Estimator::score));
  // With the conditional EV gradient (the default) EV agents take it under auto and under
  // pathwise alike, and estimator = score overrules it.
  EXPECT_EQ(run("ev=1", Estimator::automatic, EvGradient::conditional),
            run("ev=1", Estimator::pathwise, EvGradient::conditional));
  EXPECT_NE(run("ev=1", Estimator::automatic, EvGradient::conditional),
            run("ev=1", Estimator::automatic));
  EXPECT_EQ(run("ev=1", Estimator::score, EvGradient::conditional),
            run("ev=1", Estimator::score));
  // Pathwise with EV agents under the score function is a configuration error.
  RunConfig c = tiny_config("ev=1", 4);
  c.estimator = Estimator::pathwise;
  c.ev_gradient = EvGradient::score;
  EXPECT_THROW(make_fixture(c), ConfigError);
}

// ------------------------------------------------------------------ (3) power-mean weights

TEST(PowerMean, QZeroIsTheWeightedMeanAndItGrowsTowardTheMax) {
  const std::vector<double> R = {0.2, 1.5, 0.7, 3.0, 0.05};
  const std::vector<double> w = {1.0, 2.0, 0.5, 1.0, 3.0};
  const double W = std::accumulate(w.begin(), w.end(), 0.0);
  double wmean = 0.0;
  for (size_t i = 0; i < R.size(); ++i) wmean += w[i] * R[i] / W;
  EXPECT_NEAR(power_mean(R.data(), w.data(), 5, 0.0), wmean, 1e-15);
  EXPECT_NEAR(power_mean(R.data(), nullptr, 5, 0.0), (0.2 + 1.5 + 0.7 + 3.0 + 0.05) / 5, 1e-15);
  // The definition ((1/W) sum w R^{q+1})^{1/(q+1)} for moderate q.
  for (double q : {0.5, 1.0, 4.0, 19.0}) {
    double acc = 0.0;
    for (size_t i = 0; i < R.size(); ++i) acc += w[i] * std::pow(R[i], q + 1) / W;
    EXPECT_NEAR(power_mean(R.data(), w.data(), 5, q), std::pow(acc, 1 / (q + 1)), 1e-13) << q;
  }
  double previous = 0.0;
  for (double q : {0.0, 0.5, 1.0, 2.0, 4.0, 10.0, 19.0, 40.0, 100.0, 1000.0}) {
    const double m = power_mean(R.data(), w.data(), 5, q);
    EXPECT_GE(m, previous) << q;
    EXPECT_LE(m, 3.0) << q;
    previous = m;
  }
  EXPECT_GT(previous, 0.99 * 3.0);
  // Scale-free in the weights, homogeneous in R, zero for zero regrets.
  std::vector<double> w2 = w, R2 = R;
  for (auto& x : w2) x *= 7.0;
  for (auto& x : R2) x *= 1e-6;
  EXPECT_NEAR(power_mean(R.data(), w2.data(), 5, 4.0), power_mean(R.data(), w.data(), 5, 4.0), 1e-14);
  EXPECT_NEAR(power_mean(R2.data(), w.data(), 5, 4.0), 1e-6 * power_mean(R.data(), w.data(), 5, 4.0),
              1e-19);
  const std::vector<double> zeros(4, 0.0);
  EXPECT_EQ(power_mean(zeros.data(), nullptr, 4, 3.0), 0.0);
}

TEST(PowerMean, WeightsAreTheGradientAndTheirRatiosArePowersOfRegretRatios) {
  const std::vector<double> R = {0.3, 0.9, 0.05, 2.0};
  const std::vector<double> w = {1.0, 1.0, 2.0, 0.5};
  const double W = 4.5;
  for (double q : {0.0, 1.0, 4.0, 19.0, 40.0}) {
    const double M = power_mean(R.data(), w.data(), 4, q);
    std::vector<double> omega(4);
    for (int i = 0; i < 4; ++i) omega[static_cast<size_t>(i)] = agent_weight(R[static_cast<size_t>(i)], w[static_cast<size_t>(i)] / W, M, q);
    // omega_n / omega_m = (w_n / w_m) (R_n / R_m)^q.
    EXPECT_NEAR(omega[0] / omega[1], std::pow(0.3 / 0.9, q), 1e-12 * std::pow(0.3 / 0.9, q)) << q;
    EXPECT_NEAR(omega[3] / omega[1], 0.5 * std::pow(2.0 / 0.9, q), 1e-12 * 0.5 * std::pow(2.0 / 0.9, q)) << q;
    // Euler: M_q is homogeneous of degree 1, so sum_n omega_n R_n = M_q.
    double euler = 0.0;
    for (int i = 0; i < 4; ++i) euler += omega[static_cast<size_t>(i)] * R[static_cast<size_t>(i)];
    EXPECT_NEAR(euler, M, 1e-12 * M) << q;
    // omega_n = d M_q / d R_n (central differences).
    for (int i = 0; i < 4; ++i) {
      std::vector<double> up = R, down = R;
      const double h = 1e-6 * R[static_cast<size_t>(i)];
      up[static_cast<size_t>(i)] += h;
      down[static_cast<size_t>(i)] -= h;
      const double fd = (power_mean(up.data(), w.data(), 4, q) - power_mean(down.data(), w.data(), 4, q)) / (2 * h);
      EXPECT_NEAR(omega[static_cast<size_t>(i)], fd, 1e-6 * (std::abs(fd) + 1e-3)) << "q=" << q << " n=" << i;
    }
  }
}

TEST(PowerMean, QFortyWithRegretsOverThreeDecadesStaysFinite) {
  const long N = 1000;
  std::vector<double> R(static_cast<size_t>(N));
  for (long i = 0; i < N; ++i) R[static_cast<size_t>(i)] = std::pow(10.0, -3.0 + 3.0 * i / (N - 1));
  const double q = 40.0;
  const double M = power_mean(R.data(), nullptr, N, q);
  ASSERT_TRUE(std::isfinite(M));
  EXPECT_GT(M, 0.5);
  EXPECT_LE(M, 1.0);
  double sum = 0.0;
  for (long i = 0; i < N; ++i) {
    const double o = agent_weight(R[static_cast<size_t>(i)], 1.0 / N, M, q);
    ASSERT_TRUE(std::isfinite(o)) << i;
    ASSERT_GE(o, 0.0);
    ASSERT_LE(o, 1.0) << i;
    sum += o * R[static_cast<size_t>(i)];
  }
  EXPECT_NEAR(sum, M, 1e-10 * M);
  EXPECT_NEAR(agent_weight(R[N - 1], 1.0 / N, M, q) / agent_weight(R[N - 2], 1.0 / N, M, q),
              std::pow(R[N - 1] / R[N - 2], q), 1e-10);
  // Regrets whose (q+1)-th powers overflow or underflow a double.
  const std::vector<double> big = {1e10, 2e10, 5e9}, tiny = {1e-300, 3e-300};
  const double Mb = power_mean(big.data(), nullptr, 3, q), Mt = power_mean(tiny.data(), nullptr, 2, q);
  EXPECT_TRUE(std::isfinite(Mb) && Mb > 1.5e10 && Mb <= 2e10);
  EXPECT_TRUE(Mt > 2e-300 && Mt <= 3e-300);
  EXPECT_LE(agent_weight(2e10, 1.0 / 3, Mb, q), 1.0);
}

// A population of inventory agents with cu = co = c_n (powers of two) acting on the same
// hour: their regrets are c_n times one common value, exactly, in float and double.
Population scaled_inventory_population(const std::vector<double>& c, const std::vector<double>& w) {
  Population p;
  for (size_t i = 0; i < c.size(); ++i) {
    Agent a;
    a.family = Family::inventory;
    a.cu = a.co = c[i];
    a.hour = 1;
    a.weight = w[i];
    p.agents.push_back(a);
  }
  return p;
}

TEST(PowerMean, BackendWeightsFollowKnownRegretRatios) {
  const std::vector<double> c = {0.25, 0.5, 1.0, 2.0, 4.0};
  const std::vector<double> w = {1.0, 2.0, 1.0, 0.5, 1.0};
  const double W = 5.5;
  const Population pop = scaled_inventory_population(c, w);
  for (double q : {0.0, 1.0, 4.0, 19.0}) {
    RunConfig cfg = tiny_config("inv=1", 5);
    cfg.q = q;
    cfg.rho = 0.0;
    auto f = make_fixture(cfg, 1, &pop);
    StepSpec spec;
    spec.step = 3;
    spec.rows = {10, 20, 30, 40};
    spec.beta = 0.0;
    StepTrace t;
    const StepStats st = f->backend->step(spec, &t);
    ASSERT_TRUE(st.finite);
    ASSERT_EQ(t.omega.size(), 5u);
    ASSERT_GT(t.rhat[0], 0.0);
    for (size_t n = 0; n < 5; ++n) {
      // The regrets are known up to one common factor; with rho = 0 they are not smoothed.
      EXPECT_NEAR(t.rhat[n] / t.rhat[0], c[n] / c[0], 1e-12) << n;
      EXPECT_EQ(t.rbar[n], t.rhat[n]);
      EXPECT_NEAR(t.omega[n] / t.omega[2], (w[n] / w[2]) * std::pow(c[n] / c[2], q),
                  1e-10 * (w[n] / w[2]) * std::pow(c[n] / c[2], q))
          << "q=" << q << " n=" << n;
      EXPECT_NEAR(t.omega[n],
                  agent_weight(t.rbar[n], w[n] / W, power_mean(t.rbar.data(), w.data(), 5, q), q),
                  1e-14)
          << "q=" << q << " n=" << n;
      EXPECT_LE(t.omega[n], 1.0);
    }
    EXPECT_NEAR(st.smoothed_power_mean, power_mean(t.rbar.data(), w.data(), 5, q), 1e-15);
    EXPECT_NEAR(st.power_mean, power_mean(t.rhat.data(), w.data(), 5, q), 1e-15);
  }
}

TEST(PowerMean, BackendStepWithQFortyAndRegretsOverThreeDecadesIsFinite) {
  std::vector<double> c, w;
  for (int i = 0; i < 13; ++i) {
    c.push_back(std::pow(2.0, -10.0 + 10.0 * i / 12.0));  // 1e-3 .. 1
    w.push_back(1.0);
  }
  const Population pop = scaled_inventory_population(c, w);
  RunConfig cfg = tiny_config("inv=1", 13);
  cfg.q = 40.0;
  auto f = make_fixture(cfg, 1, &pop);
  StepSpec spec;
  spec.rows = {7, 70, 140, 280};
  spec.beta = 0.0;
  for (std::uint32_t k = 0; k < 3; ++k) {
    spec.step = k;
    StepTrace t;
    const StepStats st = f->backend->step(spec, &t);
    ASSERT_TRUE(st.finite);
    for (double o : t.omega) {
      ASSERT_TRUE(std::isfinite(o));
      ASSERT_LE(o, 1.0);
      ASSERT_GE(o, 0.0);
    }
    for (double g : t.g) ASSERT_TRUE(std::isfinite(g));
    // The weights span (2^-10)^40 = 1e-120: tiny but representable, never NaN or inf.
    EXPECT_GT(t.omega.back(), 1e30 * t.omega.front());
  }
}

}  // namespace
}  // namespace eqpm
