// The CPU reference backend (host/cpu/cpu_backend.cpp) against DESIGN.md 5.2/5.3 written out
// independently here: the step's regrets, weights, advantages and g; the plain-MSE step;
// Adam with clipping; smoothing; the NaN guard; evaluation and prediction; results that do
// not depend on the number of threads; and training that reduces the objective.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "eqpm/backend.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/rng.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

struct Fixture {
  RunConfig cfg;
  RunInputs in;
  Problem problem;
  std::unique_ptr<Backend> backend;
};

// A small mixed population: datacenter, ev_charging (some with windows narrower than the
// horizon) and inventory agents acting on several hours.
RunConfig small_config() {
  RunConfig c;
  c.series_hours = 24 * 60;
  c.lookback = 12;
  c.horizon = 6;
  c.hidden = {16, 8};
  c.activation = Activation::tanh;
  c.agents = 300;
  c.mix = "dc=0.4,ev=0.4,inv=0.2";
  c.dc_hour = {0, 5};
  c.inv_hour = {0, 5};
  c.ev_k = {1, 4};
  c.ev_window_min = 2;
  c.samples = 8;
  c.sigma = 0.05;
  c.batch = 16;
  c.q = 4.0;
  c.rho = 0.9;
  c.beta = 0.3;
  c.seed = 42;
  return c;
}

// `structured`: the structured paths of DESIGN.md 5.4 (RegretPath::automatic); false: the reference.
std::unique_ptr<Fixture> make_fixture(const RunConfig& cfg, int threads = 1, bool structured = true) {
  auto f = std::make_unique<Fixture>();
  f->cfg = cfg;
  f->in.series = synthetic_series(cfg.series_hours, cfg.data_seed);
  f->in.demand = synthetic_demand_profile();
  f->in.population = generate_population(cfg);
  validate_population(f->in.population, cfg.horizon, "test population");
  f->in.data = build_dataset(f->in.series, cfg.lookback, cfg.horizon, cfg.train_fraction,
                             cfg.val_fraction, cfg.scaling);
  f->problem = make_problem(cfg, f->in);
  f->problem.regret_path = structured ? RegretPath::automatic : RegretPath::reference;
  f->backend = make_backend("cpu", threads);
  f->backend->setup(f->problem);
  return f;
}

std::vector<long> random_rows(SplitMix64& rng, long B, long limit) {
  std::vector<long> rows(static_cast<size_t>(B));
  for (auto& r : rows) r = rng.integer(0, limit - 1);
  return rows;
}

using test::bitwise_equal;
using test::expect_same_state;

// The regret of agent `a` by its family, dispatched through the registry.
template <class T>
T agent_regret(const Agent& a, const T* v, const T* y, const RegretContext& c, long t) {
  T r = T(0);
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    if (a.family == F::tag) r = F::template regret<T>(F::params(a), v, y, c, t);
  });
  return r;
}

// d regret / dv of agent `a` into grad, for differentiable families; false otherwise.
template <class T>
bool agent_dregret(const Agent& a, const T* v, const T* y, const RegretContext& c, long t, T w,
                   T* grad) {
  bool done = false;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    if constexpr (F::differentiable) {
      if (a.family == F::tag) {
        F::template add_dregret<T>(F::params(a), v, y, c, t, w, grad);
        done = true;
      }
    }
  });
  return done;
}

// How large agent a's costs are at (v, y): float rounding of its regret is relative to this,
// not to the regret (which is a difference of two costs and can be much smaller).
double cost_scale(const Agent& a, const double* v, const double* y, const RegretContext& c, long t,
                  int H) {
  switch (a.family) {
    case Family::datacenter: {
      const double vv = std::max(v[a.hour], double(c.floor));
      const auto prm = Datacenter::params(a);
      return std::sqrt(double(prm.lambda) * Datacenter::demand<double>(prm, c, t)) * (y[a.hour] + vv) / std::sqrt(vv);
    }
    case Family::ev_charging: {
      double sum = 0.0;
      for (int h = a.window_start; h < a.window_end; ++h) sum += y[h];
      return a.energy * sum;
    }
    case Family::inventory: return (a.cu + a.co) * (y[a.hour] + std::abs(v[a.hour]));
  }
  (void)H;
  return 0.0;
}

RegretContext context_of(const Problem& p) {
  RegretContext c;
  c.demand = p.demand.data();
  c.demand_length = static_cast<long>(p.demand.size());
  c.floor = p.floor;
  return c;
}

// ------------------------------------------------------------------ determinism

void run_steps(const RunConfig& cfg, int threads, std::vector<StepStats>* stats,
               std::vector<StepTrace>* traces, BackendState* final_state, EvalResult* eval,
               std::vector<float>* predictions) {
  auto f = make_fixture(cfg, threads);
  SplitMix64 rng(9);
  for (std::uint32_t k = 0; k < 5; ++k) {
    StepSpec spec;
    spec.step = k;
    spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
    spec.beta = k == 0 ? 1.0 : cfg.beta;  // a warm-start step first, as the trainer does
    spec.lr = 1e-2;
    StepTrace t;
    stats->push_back(f->backend->step(spec, &t));
    traces->push_back(t);
  }
  *final_state = f->backend->state();
  std::vector<long> test_rows;
  for (long r = f->in.data.train_rows; r < f->in.data.rows; ++r) test_rows.push_back(r);
  *eval = f->backend->evaluate(test_rows);
  *predictions = f->backend->predict(test_rows);
}

// The reduction seam (reducer.hpp) with several places: tests/test_places.cpp runs K
// backends joined by an in-process Reducer against one backend, bit for bit.

// Decoupled weight decay: the step with decay is the step without, minus lr x decay x the
// weights before it, exactly; the Adam moments do not see it.
TEST(CpuBackend, WeightDecayShrinksTheWeightsBeforeTheStep) {
  RunConfig cfg;
  cfg.agents = 40;
  cfg.series_hours = 1200;
  cfg.hidden = {8};
  cfg.samples = 4;
  cfg.batch = 16;
  auto plain = make_fixture(cfg);
  cfg.weight_decay = 0.25;
  auto decayed = make_fixture(cfg);
  ASSERT_EQ(decayed->problem.weight_decay, 0.25);
  SplitMix64 rng(3);
  for (std::uint32_t k = 0; k < 3; ++k) {
    decayed->backend->set_state(plain->backend->state());
    const BackendState before = plain->backend->state();
    StepSpec spec;
    spec.step = k;
    spec.rows = random_rows(rng, cfg.batch, plain->in.data.fit_rows);
    spec.beta = k == 0 ? 1.0 : 0.1;
    spec.lr = 1e-2;
    plain->backend->step(spec);
    decayed->backend->step(spec);
    const BackendState a = plain->backend->state(), b = decayed->backend->state();
    const float decay = static_cast<float>(spec.lr * 0.25);
    ASSERT_EQ(a.params.size(), b.params.size());
    for (size_t i = 0; i < a.params.size(); ++i)
      ASSERT_EQ(b.params[i], a.params[i] - decay * before.params[i]) << "step " << k << " weight " << i;
    EXPECT_EQ(a.adam_m, b.adam_m);
    EXPECT_EQ(a.adam_v, b.adam_v);
  }
  // Zero decay is the plain Adam step, bit for bit (the default).
  EXPECT_EQ(RunConfig().weight_decay, 0.0);
}

TEST(CpuBackend, ResultsDoNotDependOnTheThreadCount) {
  RunConfig score = small_config();
  score.estimator = Estimator::score;
  score.antithetic = false;  // the leave-one-out path
  RunConfig even = small_config();
  even.q = 0.0;  // at q = 4 the largest regrets dominate and hide the others' rounding
  for (const RunConfig& cfg : {small_config(), score, even}) {
    std::vector<StepStats> s1, s2;
    std::vector<StepTrace> t1, t2;
    BackendState b1, b2;
    EvalResult e1, e2;
    std::vector<float> p1, p2;
    run_steps(cfg, 1, &s1, &t1, &b1, &e1, &p1);
    run_steps(cfg, 2, &s2, &t2, &b2, &e2, &p2);
    for (size_t k = 0; k < s1.size(); ++k) {
      const StepStats &a = s1[k], &b = s2[k];
      EXPECT_TRUE(a.finite && b.finite);
      for (auto [x, y] : {std::pair{a.loss, b.loss}, std::pair{a.power_mean, b.power_mean},
                          std::pair{a.smoothed_power_mean, b.smoothed_power_mean},
                          std::pair{a.mean_regret, b.mean_regret}, std::pair{a.max_regret, b.max_regret},
                          std::pair{a.mse, b.mse}, std::pair{a.grad_norm, b.grad_norm}})
        EXPECT_TRUE(bitwise_equal(x, y)) << "step " << k << ": " << x << " vs " << y;
    }
    for (size_t k = 0; k < t1.size(); ++k) {
      const StepTrace &a = t1[k], &b = t2[k];
      EXPECT_TRUE(bitwise_equal(a.mu, b.mu)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.eps, b.eps)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.rhat, b.rhat)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.rbar, b.rbar)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.omega, b.omega)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.advantage, b.advantage)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.g, b.g)) << "step " << k;
      EXPECT_TRUE(bitwise_equal(a.grad, b.grad)) << "step " << k;
    }
    expect_same_state(b1, b2, "2 threads");
    EXPECT_TRUE(bitwise_equal(e1.regret, e2.regret));
    EXPECT_TRUE(bitwise_equal(e1.mse, e2.mse) && bitwise_equal(e1.mae, e2.mae));
    EXPECT_TRUE(bitwise_equal(p1, p2));
    // The run did something: the trace of an equitable step is complete.
    ASSERT_EQ(t1.size(), 5u);
    EXPECT_EQ(t1[4].rhat.size(), static_cast<size_t>(cfg.agents));
    EXPECT_FALSE(t1[4].advantage.empty());
  }
}

// ------------------------------------------------------------------ one step by hand

// One step of the backend against 5.2/5.3 written out here. Regrets are recomputed in
// double from the backend's float samples; the backend evaluates them in float (general
// path) or double (structured path), hence float tolerances. Works for the first step (no
// smoothing yet) and later ones (Rbar and MSEbar smoothed with rho).
void check_step_formulas(Fixture& f, const StepSpec& spec, const std::string& what) {
  const RunConfig& cfg = f.cfg;
  const Problem& P = f.problem;
  const Dataset& d = f.in.data;
  const Population& pop = f.in.population;
  const RegretContext ctx = context_of(P);
  const int B = static_cast<int>(spec.rows.size()), S = cfg.samples, H = cfg.horizon;
  const long N = pop.size();
  const bool antithetic = cfg.antithetic;
  const Estimator est = cfg.estimator;
  const BackendState before = f.backend->state();
  StepTrace t;
  const StepStats st = f.backend->step(spec, &t);
  ASSERT_TRUE(st.finite) << what;

  // Forward pass on the parameters before the step, and the perturbations.
  for (int b = 0; b < B; ++b) {
    std::vector<float> pre(static_cast<size_t>(P.layout.activation_count())), mu(static_cast<size_t>(H));
    mlp_forward<float>(P.layout, before.params.data(), d.x_row(spec.rows[static_cast<size_t>(b)]), pre.data(), mu.data());
    for (int h = 0; h < H; ++h) ASSERT_EQ(t.mu[static_cast<size_t>(b * H + h)], mu[static_cast<size_t>(h)]) << what;
  }
  ASSERT_EQ(t.eps.size(), static_cast<size_t>(B * S * H));
  std::vector<float> yhat(t.eps.size());
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s) {
      float e[kMaxHorizon];
      perturbation(P.seed, spec.step, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(s), H,
                   antithetic, e);
      for (int h = 0; h < H; ++h) {
        const size_t i = static_cast<size_t>((b * S + s) * H + h);
        ASSERT_EQ(t.eps[i], e[h]) << what;
        yhat[i] = t.mu[static_cast<size_t>(b * H + h)] + P.sigma * e[h];
      }
    }

  // Regrets and their means.
  std::vector<double> r(static_cast<size_t>(N * B * S)), rhat(static_cast<size_t>(N), 0.0);
  std::vector<double> scale(r.size());
  for (long n = 0; n < N; ++n)
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s) {
        const long row = spec.rows[static_cast<size_t>(b)];
        const std::vector<double> v(yhat.begin() + (b * S + s) * H, yhat.begin() + (b * S + s + 1) * H);
        const std::vector<double> y(d.y_row(row), d.y_row(row) + H);
        const Agent& a = pop.agents[static_cast<size_t>(n)];
        const long tb = d.t[static_cast<size_t>(row)];
        const size_t i = static_cast<size_t>((n * B + b) * S + s);
        r[i] = agent_regret<double>(a, v.data(), y.data(), ctx, tb);
        scale[i] = cost_scale(a, v.data(), y.data(), ctx, tb, H);
        rhat[static_cast<size_t>(n)] += r[i] / (B * S);
      }
  ASSERT_EQ(t.rhat.size(), static_cast<size_t>(N)) << what;
  const double rmax = *std::max_element(rhat.begin(), rhat.end());
  EXPECT_ALL_CLOSE(t.rhat, rhat, 1e-6 * rmax, 1e-5) << what;

  // Smoothing (exact, from the backend's own Rhat), then weights.
  const bool started = !before.rbar.empty();
  std::vector<double> rbar(static_cast<size_t>(N));
  for (long n = 0; n < N; ++n) {
    const size_t i = static_cast<size_t>(n);
    ASSERT_EQ(t.rbar[i], started ? P.rho * before.rbar[i] + (1 - P.rho) * t.rhat[i] : t.rhat[i]) << what;
    rbar[i] = started ? P.rho * before.rbar[i] + (1 - P.rho) * rhat[i] : rhat[i];
  }
  EXPECT_TRUE(bitwise_equal(f.backend->state().rbar, t.rbar)) << what;
  std::vector<double> w(static_cast<size_t>(N));
  for (long n = 0; n < N; ++n) w[static_cast<size_t>(n)] = pop.agents[static_cast<size_t>(n)].weight;
  const double W = pop.total_weight();
  const double Mbar = power_mean(rbar.data(), w.data(), N, cfg.q);
  EXPECT_NEAR(st.smoothed_power_mean, Mbar, 1e-5 * Mbar) << what;
  EXPECT_NEAR(st.power_mean, power_mean(rhat.data(), w.data(), N, cfg.q), 1e-5 * Mbar) << what;
  std::vector<double> omega(static_cast<size_t>(N));
  for (long n = 0; n < N; ++n)
    omega[static_cast<size_t>(n)] =
        w[static_cast<size_t>(n)] / W * std::pow(rbar[static_cast<size_t>(n)] / Mbar, cfg.q);
  EXPECT_ALL_CLOSE(t.omega, omega, 1e-9, 1e-4) << what;
  for (long n = 0; n < N; ++n)  // exactly the weights of the backend's own Rbar
    EXPECT_NEAR(t.omega[static_cast<size_t>(n)],
                agent_weight(t.rbar[static_cast<size_t>(n)], w[static_cast<size_t>(n)] / W,
                             st.smoothed_power_mean, cfg.q),
                1e-13 * t.omega[static_cast<size_t>(n)]) << what;

  // Advantages of the score-function agents, pathwise terms of the others.
  std::vector<double> A(static_cast<size_t>(B * S), 0.0), Aabs(A.size(), 0.0);
  std::vector<double> G(static_cast<size_t>(B * H), 0.0);
  for (long n = 0; n < N; ++n) {
    const Agent& a = pop.agents[static_cast<size_t>(n)];
    const double om = omega[static_cast<size_t>(n)];
    const bool pathwise = a.family != Family::ev_charging && est != Estimator::score;
    for (int b = 0; b < B; ++b) {
      const long row = spec.rows[static_cast<size_t>(b)];
      if (pathwise) {
        for (int s = 0; s < S; ++s) {
          double dv[kMaxHorizon] = {};
          std::vector<double> v(yhat.begin() + (b * S + s) * H, yhat.begin() + (b * S + s + 1) * H);
          std::vector<double> y(d.y_row(row), d.y_row(row) + H);
          ASSERT_TRUE(agent_dregret<double>(a, v.data(), y.data(), ctx, d.t[static_cast<size_t>(row)], 1.0, dv));
          for (int h = 0; h < H; ++h) G[static_cast<size_t>(b * H + h)] += om * dv[h] / (B * S);
        }
        continue;
      }
      double total = 0.0;
      for (int s = 0; s < S; ++s) total += r[static_cast<size_t>((n * B + b) * S + s)];
      for (int s = 0; s < S; ++s) {
        const size_t i = static_cast<size_t>((n * B + b) * S + s);
        const double base = antithetic ? 0.0 : (total - r[i]) / (S - 1);
        A[static_cast<size_t>(b * S + s)] += om * (r[i] - base);
        Aabs[static_cast<size_t>(b * S + s)] += om * (std::abs(r[i]) + std::abs(base) + 0.1 * scale[i]);
      }
    }
  }
  ASSERT_EQ(t.advantage.size(), A.size()) << what;
  for (size_t i = 0; i < A.size(); ++i)
    EXPECT_NEAR(t.advantage[i], A[i], 1e-5 * Aabs[i] + 1e-300) << what << " advantage " << i;

  // g = (1 - beta) / Mbar (score + pathwise) + beta 2 (mu - y) / (B H MSEbar).
  double mse = 0.0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const double e = double(t.mu[static_cast<size_t>(b * H + h)]) - d.y_row(spec.rows[static_cast<size_t>(b)])[h];
      mse += e * e / (B * H);
    }
  EXPECT_NEAR(st.mse, mse, 1e-12 * mse) << what;
  const double msebar = before.msebar > 0 ? P.rho * before.msebar + (1 - P.rho) * st.mse : st.mse;
  EXPECT_DOUBLE_EQ(f.backend->state().msebar, msebar) << what;
  std::vector<double> g(static_cast<size_t>(B * H));
  double gmax = 0.0;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      double score = 0.0;
      for (int s = 0; s < S; ++s)
        score += A[static_cast<size_t>(b * S + s)] * t.eps[static_cast<size_t>((b * S + s) * H + h)];
      const double acc = double(t.mu[static_cast<size_t>(b * H + h)]) - d.y_row(spec.rows[static_cast<size_t>(b)])[h];
      g[static_cast<size_t>(b * H + h)] =
          (1 - spec.beta) / Mbar * (score / (B * S * double(P.sigma)) + G[static_cast<size_t>(b * H + h)]) +
          spec.beta * 2.0 * acc / (B * H * msebar);
      gmax = std::max(gmax, std::abs(g[static_cast<size_t>(b * H + h)]));
    }
  EXPECT_ALL_CLOSE(t.g, g, 1e-5 * gmax, 1e-4) << what;
  EXPECT_NEAR(st.loss, (1 - spec.beta) * st.power_mean / st.smoothed_power_mean + spec.beta * st.mse / msebar,
              1e-12) << what;

  // Back-propagation of g through the model.
  std::vector<double> grad(static_cast<size_t>(P.layout.parameter_count), 0.0);
  for (int b = 0; b < B; ++b) {
    const float* xr = d.x_row(spec.rows[static_cast<size_t>(b)]);
    std::vector<float> pre(static_cast<size_t>(P.layout.activation_count())), mu(static_cast<size_t>(H));
    mlp_forward<float>(P.layout, before.params.data(), xr, pre.data(), mu.data());
    std::vector<double> xd(xr, xr + P.layout.input_dim()), pred(pre.begin(), pre.end());
    mlp_backward<double>(P.layout, before.params.data(), xd.data(), pred.data(), t.g.data() + b * H, grad.data());
  }
  double gnorm = 0.0;
  for (double x : grad) gnorm += x * x;
  EXPECT_ALL_CLOSE(t.grad, grad, 1e-6 * std::sqrt(gnorm), 1e-5) << what;
  EXPECT_NEAR(st.grad_norm, std::sqrt(gnorm), 1e-9 * std::sqrt(gnorm)) << what;
}

TEST(CpuBackend, EquitableStepMatchesTheFormulasOfDesign52) {
  for (double q : {0.0, 4.0})
    for (bool structured : {true, false})
      for (bool antithetic : {true, false})
        for (Estimator est : {Estimator::automatic, Estimator::score}) {
          RunConfig cfg = small_config();
          cfg.q = q;  // at q = 4 a few agents dominate the weights; q = 0 weighs all alike
          cfg.antithetic = antithetic;
          cfg.estimator = est;
          cfg.ev_gradient = EvGradient::score;  // the formulas of 5.2 (test_ev_conditional.cpp has the other)
          cfg.agents = 60;
          cfg.batch = 5;
          auto f = make_fixture(cfg, 1, structured);
          const std::string what = "q=" + std::to_string(q) + " structured=" + (structured ? "1" : "0") +
                                   " antithetic=" + (antithetic ? "1" : "0") +
                                   " estimator=" + (est == Estimator::score ? "score" : "auto");
          StepSpec spec;
          spec.rows = {0, 40, 41, 300, f->in.data.fit_rows - 1};
          spec.beta = 0.3;
          spec.lr = 1e-3;
          // The first step (nothing smoothed yet), then two in the steady state.
          for (std::uint32_t k : {17u, 18u, 19u}) {
            spec.step = k;
            check_step_formulas(*f, spec, what + " step " + std::to_string(k));
            spec.rows = {k * 11L, k * 13L, 5, 6, 7};
          }
        }
}

TEST(CpuBackend, StructuredPathEqualsTheGeneralPath) {
  // Every family the structured path of DESIGN.md 5.4 handles (datacenter, EV agents over the
  // whole horizon or by window class, inventory by hour), alone and mixed; with 120 agents the
  // mixed population's inventory agents are too few per hour and stay on the general path.
  for (const char* mix : {"dc=1", "ev=1", "inv=1", "dc=0.4,ev=0.4,inv=0.2"})
    for (int window_min : {0, 2})
      for (bool antithetic : {true, false})
        for (Estimator est : {Estimator::automatic, Estimator::score}) {
          RunConfig cfg = small_config();
          cfg.mix = mix;
          cfg.agents = 120;
          cfg.ev_window_min = window_min;
          cfg.antithetic = antithetic;
          cfg.estimator = est;
          const std::string what = std::string(mix) + " window_min=" + std::to_string(window_min) +
                                   " antithetic=" + (antithetic ? "1" : "0") +
                                   " estimator=" + (est == Estimator::score ? "score" : "auto");
          auto fast = make_fixture(cfg, 1, true), ref = make_fixture(cfg, 1, false);
          SplitMix64 rng(6);
          for (std::uint32_t k = 0; k < 3; ++k) {
            StepSpec spec;
            spec.step = k;
            spec.rows = random_rows(rng, cfg.batch, fast->in.data.fit_rows);
            spec.beta = 0.3;
            spec.lr = 1e-3;
            StepTrace a, b;
            fast->backend->set_state(ref->backend->state());  // same model and Rbar
            const StepStats sa = fast->backend->step(spec, &a);
            const StepStats sb = ref->backend->step(spec, &b);
            ASSERT_TRUE(sa.finite && sb.finite) << what;
            const double rmax = *std::max_element(b.rhat.begin(), b.rhat.end());
            EXPECT_ALL_CLOSE(a.rhat, b.rhat, 1e-6 * rmax, 1e-5) << what << " step " << k;
            EXPECT_ALL_CLOSE(a.omega, b.omega, 1e-9, 1e-4) << what << " step " << k;
            double amax = 0.0, gmax = 0.0;
            for (double x : b.advantage) amax = std::max(amax, std::abs(x));
            for (double x : b.g) gmax = std::max(gmax, std::abs(x));
            EXPECT_ALL_CLOSE(a.advantage, b.advantage, 1e-4 * amax + 1e-300, 1e-4) << what << " step " << k;
            EXPECT_ALL_CLOSE(a.g, b.g, 1e-5 * gmax + 1e-300, 1e-4) << what << " step " << k;
            EXPECT_NEAR(sa.loss, sb.loss, 1e-5 * sb.loss) << what;
          }
          // Evaluation evaluates every regret exactly as the reference does (in SIMD lanes
          // on the fast path) and sums them in the same order: equal bit for bit.
          fast->backend->set_state(ref->backend->state());
          std::vector<long> rows = {0, 9, 99};
          EXPECT_TRUE(bitwise_equal(fast->backend->evaluate(rows).regret, ref->backend->evaluate(rows).regret))
              << what;
        }
}

TEST(CpuBackend, SmoothingOfRegretsAndMseAcrossSteps) {
  RunConfig cfg = small_config();
  cfg.agents = 40;
  cfg.rho = 0.75;
  auto f = make_fixture(cfg);
  SplitMix64 rng(1);
  StepSpec spec;
  spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
  spec.beta = 0.3;
  spec.lr = 1e-3;
  StepTrace t1, t2;
  spec.step = 0;
  const StepStats s1 = f->backend->step(spec, &t1);
  EXPECT_TRUE(bitwise_equal(f->backend->state().rbar, t1.rhat));
  EXPECT_TRUE(bitwise_equal(f->backend->state().msebar, s1.mse));
  spec.step = 1;
  spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
  const StepStats s2 = f->backend->step(spec, &t2);
  for (size_t n = 0; n < t2.rbar.size(); ++n)
    EXPECT_DOUBLE_EQ(t2.rbar[n], 0.75 * t1.rhat[n] + 0.25 * t2.rhat[n]) << n;
  EXPECT_NEAR(s2.smoothed_power_mean, power_mean(t2.rbar.data(), nullptr, 40, cfg.q), 1e-14);
  // The weights follow the smoothed regrets, not this minibatch's.
  for (size_t n = 0; n < t2.rbar.size(); ++n)
    EXPECT_EQ(t2.omega[n], agent_weight(t2.rbar[n], 1.0 / 40, s2.smoothed_power_mean, cfg.q)) << n;
  EXPECT_DOUBLE_EQ(f->backend->state().msebar, 0.75 * s1.mse + 0.25 * s2.mse);
  EXPECT_TRUE(bitwise_equal(f->backend->state().rbar, t2.rbar));
}

TEST(CpuBackend, BetaMixesTheTwoGradientsLinearly) {
  RunConfig cfg = small_config();
  cfg.agents = 40;
  auto f = make_fixture(cfg);
  const BackendState s0 = f->backend->state();
  StepSpec spec;
  spec.step = 4;
  spec.rows = {1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 611, 612};
  auto g_at = [&](double beta) {
    f->backend->set_state(s0);
    spec.beta = beta;
    StepTrace t;
    f->backend->step(spec, &t);
    return t.g;
  };
  const auto g0 = g_at(0.0), g1 = g_at(1.0), g3 = g_at(0.3);
  for (size_t i = 0; i < g0.size(); ++i)
    EXPECT_NEAR(g3[i], 0.7 * g0[i] + 0.3 * g1[i], 1e-12 * (std::abs(g0[i]) + std::abs(g1[i])));
}

// ------------------------------------------------------------------ plain MSE

TEST(CpuBackend, PlainMseStepTouchesOnlyTheAccuracyTerm) {
  RunConfig cfg = small_config();
  cfg.agents = 50;
  cfg.hidden = {7};
  cfg.batch = 6;
  auto f = make_fixture(cfg);
  const Problem& P = f->problem;
  const Dataset& d = f->in.data;
  StepSpec spec;
  spec.step = 2;
  spec.rows = {4, 8, 15, 16, 23, 42};
  spec.beta = 1.0;
  spec.lr = 1e-3;
  StepTrace t;
  const BackendState before = f->backend->state();
  const StepStats st = f->backend->step(spec, &t);
  ASSERT_TRUE(st.finite);
  EXPECT_TRUE(t.rhat.empty());
  EXPECT_TRUE(t.rbar.empty());
  EXPECT_TRUE(t.omega.empty());
  EXPECT_TRUE(t.eps.empty());
  EXPECT_TRUE(t.advantage.empty());
  EXPECT_EQ(st.power_mean, 0.0);
  EXPECT_DOUBLE_EQ(st.loss, 1.0);  // MSE / MSEbar with MSEbar = this MSE on the first step
  EXPECT_TRUE(f->backend->state().rbar.empty()) << "smoothing of regrets must not start";
  EXPECT_DOUBLE_EQ(f->backend->state().msebar, st.mse);

  // The parameter gradient is that of MSE / MSEbar: central differences in double.
  const int B = 6, H = cfg.horizon;
  const std::vector<double> p0(before.params.begin(), before.params.end());
  auto mse_of = [&](const std::vector<double>& p) {
    double s = 0.0;
    std::vector<double> pre(static_cast<size_t>(P.layout.activation_count())), mu(static_cast<size_t>(H));
    for (int b = 0; b < B; ++b) {
      const long row = spec.rows[static_cast<size_t>(b)];
      std::vector<double> x(d.x_row(row), d.x_row(row) + P.layout.input_dim());
      mlp_forward<double>(P.layout, p.data(), x.data(), pre.data(), mu.data());
      for (int h = 0; h < H; ++h) s += (mu[static_cast<size_t>(h)] - d.y_row(row)[h]) * (mu[static_cast<size_t>(h)] - d.y_row(row)[h]);
    }
    return s / (B * H);
  };
  const double mse0 = mse_of(p0);
  EXPECT_NEAR(st.mse, mse0, 1e-5 * mse0);
  std::vector<double> fd(p0.size());
  std::vector<double> p = p0;
  double fmax = 0.0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double h = 1e-6;
    p[i] = p0[i] + h;
    const double up = mse_of(p);
    p[i] = p0[i] - h;
    const double down = mse_of(p);
    p[i] = p0[i];
    fd[i] = (up - down) / (2 * h) / st.mse;
    fmax = std::max(fmax, std::abs(fd[i]));
  }
  EXPECT_ALL_CLOSE(t.grad, fd, 1e-4 * fmax, 1e-3);

  // The first Adam step moves each parameter by ~lr against its gradient (bias-corrected
  // m / sqrt(v) = g / |g|), whatever the clipping.
  const BackendState after = f->backend->state();
  EXPECT_EQ(after.adam_step, 1u);
  for (size_t i = 0; i < p0.size(); ++i) {
    const double g = t.grad[i] * std::min(1.0, P.grad_clip > 0 ? P.grad_clip / st.grad_norm : 1.0);
    const double expected = p0[i] - spec.lr * g / (std::abs(g) + P.adam_eps);
    ASSERT_NEAR(after.params[i], expected, 1e-7 * std::abs(p0[i]) + 1e-4 * spec.lr) << i;
  }
}

TEST(CpuBackend, AdamWithClippingMatchesAReference) {
  RunConfig cfg = small_config();
  cfg.agents = 30;
  cfg.grad_clip = 0.05;  // small enough to clip every step
  auto f = make_fixture(cfg);
  const Problem& P = f->problem;
  const BackendState s0 = f->backend->state();
  std::vector<double> p(s0.params.begin(), s0.params.end()), m(p.size(), 0.0), v(p.size(), 0.0);
  SplitMix64 rng(5);
  int clipped = 0;
  for (std::uint32_t k = 0; k < 4; ++k) {
    StepSpec spec;
    spec.step = k;
    spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
    spec.beta = k < 2 ? 1.0 : 0.3;
    spec.lr = 1e-2 / (k + 1);
    StepTrace t;
    const StepStats st = f->backend->step(spec, &t);
    ASSERT_TRUE(st.finite);
    const double c = st.grad_norm > P.grad_clip ? P.grad_clip / st.grad_norm : 1.0;
    clipped += c < 1.0;
    const double tt = k + 1.0;
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = double(t.grad[i]) * c;
      m[i] = P.adam_beta1 * m[i] + (1 - P.adam_beta1) * g;
      v[i] = P.adam_beta2 * v[i] + (1 - P.adam_beta2) * g * g;
      const double mh = m[i] / (1 - std::pow(P.adam_beta1, tt)), vh = v[i] / (1 - std::pow(P.adam_beta2, tt));
      p[i] -= spec.lr * mh / (std::sqrt(vh) + P.adam_eps);
    }
    const BackendState s = f->backend->state();
    EXPECT_EQ(s.adam_step, k + 1);
    for (size_t i = 0; i < p.size(); ++i)
      ASSERT_NEAR(s.params[i], p[i], 1e-6 * std::abs(p[i]) + 1e-4 * spec.lr) << "step " << k << " param " << i;
  }
  EXPECT_EQ(clipped, 4);
}

// ------------------------------------------------------------------ the NaN guard

TEST(CpuBackend, NonFiniteStepChangesNothing) {
  RunConfig cfg = small_config();
  cfg.agents = 40;
  auto f = make_fixture(cfg);
  SplitMix64 rng(3);
  StepSpec spec;
  spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
  spec.lr = 1e-2;
  // A few good steps first, so that Adam moments, Rbar and MSEbar are all started.
  for (std::uint32_t k = 0; k < 3; ++k) {
    spec.step = k;
    spec.beta = k == 0 ? 1.0 : 0.3;
    ASSERT_TRUE(f->backend->step(spec).finite);
  }
  const BackendState good = f->backend->state();
  ASSERT_FALSE(good.rbar.empty());
  const long P = f->problem.layout.parameter_count;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // A state holding NaN or infinity is refused outright: an infinite hidden weight can be
  // absorbed by a saturating activation and would slip past every later step's guard.
  for (float bad : {nan, inf, -inf})
    for (long where : {0L, P / 2, P - 1}) {
      BackendState poisoned = good;
      poisoned.params[static_cast<size_t>(where)] = bad;
      EXPECT_THROW(f->backend->set_state(poisoned), Error) << bad << " at " << where;
      expect_same_state(f->backend->state(), good, "after refusing a poisoned state");
    }
  // Finite but huge output-layer weights overflow the forward pass (mu = +inf): the step
  // is non-finite, is skipped, and changes nothing.
  for (double beta : {0.3, 1.0, 0.0}) {
    BackendState huge = good;
    const MlpLayout& L = f->problem.layout;
    const int last = L.layers - 1;
    // Hidden unit 0 of the last hidden layer saturates at +1 (zero weights, huge bias) ...
    const int in = L.width[last - 1];
    for (int i = 0; i < in; ++i) huge.params[static_cast<size_t>(L.weight_offset[last - 1] + i)] = 0.0f;
    huge.params[static_cast<size_t>(L.bias_offset[last - 1])] = 3e38f;
    // ... and feeds every output with weight 3e38 on top of a bias of 3e38: 6e38 = +inf.
    for (int j = 0; j < L.width[last + 1]; ++j) {
      huge.params[static_cast<size_t>(L.weight_offset[last] + static_cast<long>(j) * L.width[last])] = 3e38f;
      huge.params[static_cast<size_t>(L.bias_offset[last] + j)] = 3e38f;
    }
    f->backend->set_state(huge);
    spec.step = 10;
    spec.beta = beta;
    const StepStats st = f->backend->step(spec);
    EXPECT_FALSE(st.finite) << "beta " << beta;
    expect_same_state(f->backend->state(), huge, "after a non-finite step");
  }
  // Restoring the good state, steps are finite again.
  f->backend->set_state(good);
  spec.beta = 0.3;
  EXPECT_TRUE(f->backend->step(spec).finite);
}

// ------------------------------------------------------------------ evaluation

TEST(CpuBackend, EvaluateEqualsAHandComputedLoop) {
  RunConfig cfg = small_config();
  cfg.agents = 90;
  auto f = make_fixture(cfg, 1);
  // Move away from the initialisation a little so predictions are not trivial.
  SplitMix64 rng(2);
  for (std::uint32_t k = 0; k < 3; ++k) {
    StepSpec spec;
    spec.step = k;
    spec.rows = random_rows(rng, cfg.batch, f->in.data.fit_rows);
    spec.lr = 1e-2;
    f->backend->step(spec);
  }
  const Dataset& d = f->in.data;
  const Problem& P = f->problem;
  const int H = cfg.horizon;
  std::vector<long> rows;
  for (long r = d.train_rows; r < d.rows; r += 3) rows.push_back(r);
  const long R = static_cast<long>(rows.size());
  const std::vector<float> mu = f->backend->predict(rows);
  ASSERT_EQ(mu.size(), static_cast<size_t>(R * H));
  // predict() is the model's forward pass on the state's parameters.
  const std::vector<float> params = f->backend->state().params;
  for (long r = 0; r < R; ++r) {
    std::vector<float> pre(static_cast<size_t>(P.layout.activation_count())), out(static_cast<size_t>(H));
    mlp_forward<float>(P.layout, params.data(), d.x_row(rows[static_cast<size_t>(r)]), pre.data(), out.data());
    for (int h = 0; h < H; ++h) ASSERT_EQ(mu[static_cast<size_t>(r * H + h)], out[static_cast<size_t>(h)]);
  }
  const EvalResult e = f->backend->evaluate(rows);
  const RegretContext ctx = context_of(P);
  std::vector<double> regret(static_cast<size_t>(f->in.population.size()), 0.0);
  for (size_t n = 0; n < regret.size(); ++n) {
    double sum = 0.0;
    for (long r = 0; r < R; ++r) {
      const long row = rows[static_cast<size_t>(r)];
      sum += agent_regret<float>(f->in.population.agents[n], mu.data() + r * H, d.y_row(row), ctx,
                                 d.t[static_cast<size_t>(row)]);
    }
    regret[n] = sum / static_cast<double>(R);
  }
  EXPECT_ALL_CLOSE(e.regret, regret, 1e-15, 1e-12);
  double se = 0.0, ae = 0.0;
  for (long r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) {
      const double err = double(mu[static_cast<size_t>(r * H + h)]) - d.y_row(rows[static_cast<size_t>(r)])[h];
      se += err * err;
      ae += std::abs(err);
    }
  EXPECT_NEAR(e.mse, se / (R * H), 1e-12 * e.mse);
  EXPECT_NEAR(e.mae, ae / (R * H), 1e-12 * e.mae);
  // Every family contributes and regrets are non-negative.
  for (double x : e.regret) EXPECT_GE(x, 0.0);
  EXPECT_GT(f->in.population.count(Family::ev_charging), 0);
}

// ------------------------------------------------------------------ training

TEST(CpuBackend, TrainingReducesTheObjective) {
  RunConfig cfg = small_config();
  cfg.agents = 60;
  cfg.hidden = {16};
  cfg.horizon = 4;
  cfg.q = 2.0;
  // 50 warm-start steps of plain MSE, then 250 steps at `beta`, lr halved twice; returns
  // M_q of the per-agent regrets on the training rows before and after.
  auto train = [&](double beta) {
    auto f = make_fixture(cfg, 1);
    const Dataset& d = f->in.data;
    std::vector<long> fit;
    for (long r = 0; r < d.fit_rows; ++r) fit.push_back(r);
    auto objective = [&]() {
      const EvalResult e = f->backend->evaluate(fit);
      return power_mean(e.regret.data(), nullptr, static_cast<long>(e.regret.size()), cfg.q);
    };
    const double before = objective();
    SplitMix64 rng(4);
    for (std::uint32_t k = 0; k < 300; ++k) {
      StepSpec spec;
      spec.step = k;
      spec.rows = random_rows(rng, cfg.batch, d.fit_rows);
      spec.beta = k < 50 ? 1.0 : beta;
      spec.lr = k < 150 ? 3e-3 : (k < 225 ? 1.5e-3 : 7.5e-4);
      EXPECT_TRUE(f->backend->step(spec).finite) << "step " << k;
    }
    return std::pair{before, objective()};
  };
  const auto [before, equitable] = train(0.3);
  EXPECT_LT(equitable, 0.5 * before) << "M_q on the training rows: before " << before << ", after " << equitable;
  // And the regret-aware objective beats plain MSE training on its own measure (measured:
  // about 0.040 against 0.073).
  const auto [before_plain, plain] = train(1.0);
  EXPECT_EQ(before, before_plain);
  EXPECT_LT(equitable, 0.8 * plain) << "equitable " << equitable << ", plain " << plain;
}

// ------------------------------------------------------------------ argument checks

TEST(CpuBackend, RejectsBadArguments) {
  RunConfig cfg = small_config();
  cfg.agents = 10;
  auto f = make_fixture(cfg);
  StepSpec spec;
  EXPECT_THROW(f->backend->step(spec), Error);  // no rows
  spec.rows.assign(static_cast<size_t>(cfg.batch) + 1, 0);
  EXPECT_THROW(f->backend->step(spec), Error);  // more than max_batch
  spec.rows = {0, f->in.data.rows};
  EXPECT_THROW(f->backend->step(spec), Error);
  EXPECT_THROW(f->backend->evaluate({-1}), Error);
  EXPECT_THROW(f->backend->predict({f->in.data.rows}), Error);
  BackendState s = f->backend->state();
  s.params.pop_back();
  EXPECT_THROW(f->backend->set_state(s), Error);
  s = f->backend->state();
  s.rbar.assign(3, 1.0);
  EXPECT_THROW(f->backend->set_state(s), Error);
  RunConfig odd = cfg;
  odd.samples = 7;  // antithetic pairs need an even S
  EXPECT_THROW(make_fixture(odd), Error);
  EXPECT_THROW(make_backend("tpu"), ConfigError);
}

}  // namespace
}  // namespace eqpm
