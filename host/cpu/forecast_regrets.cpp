// Regrets and the equitable gradient for a caller's forecasts (forecast_regrets.hpp).
#include "forecast_regrets.hpp"

#include <omp.h>

#include <algorithm>
#include <type_traits>

#include "chunks.hpp"
#include "cpu_lanes.hpp"
#include "eqpm/error.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/reducer.hpp"
#include "eqpm/rng.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm {
namespace {

int thread_count(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

RegretContext regret_context(const Population& p, const std::vector<float>& demand, float floor) {
  if (demand.empty() && p.count(Family::datacenter) > 0)
    throw Error("datacenter agents need a demand profile (none given)");
  RegretContext ctx;
  ctx.demand = demand.data();
  ctx.demand_length = static_cast<long>(demand.size());
  ctx.floor = floor;
  return ctx;
}

// Sum of n row values in four interleaved partial sums (row k into k % 4): the order of
// CpuBackend::evaluate_impl, so that a model's regrets here equal its evaluation's.
template <class Value>
double row_sum(long n, Value value) {
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  long k = 0;
  for (; k + 4 <= n; k += 4)
    for (int l = 0; l < 4; ++l) part[l] += static_cast<double>(value(k + l));
  for (; k < n; ++k) part[k % 4] += static_cast<double>(value(k));
  return (part[0] + part[1]) + (part[2] + part[3]);
}

}  // namespace

std::vector<double> forecast_regrets(const Population& population, const std::vector<float>& demand,
                                     const float* pred, const float* target, const long* t, long R,
                                     int H, float floor, int threads) {
  const RegretContext ctx = regret_context(population, demand, floor);
  std::vector<double> regret(static_cast<size_t>(population.size()), 0.0);
  if (R == 0) return regret;
  const FamilyGroups groups = group_population(population);
  lanes::LaneBuffer buffer;
  const lanes::Lanes X = buffer.fill(pred, target, t, R, 1, H);
  const int nt = thread_count(threads);
  // EV agents with the same k and window share chosen - best on every row: computed once
  // per class, then scaled by each agent's energy (as the backend's evaluation does).
  {
    const auto& g = std::get<FamilyGroup<EvCharging>>(groups);
    const AgentClasses cls = classes_of<EvCharging>(g.params);
    const long n_classes = static_cast<long>(cls.count());
    std::vector<float> r;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1) firstprivate(r)
    for (long c = 0; c < n_classes; ++c) {
      EvCharging::Params unit = g.params[cls.order[cls.begin[static_cast<size_t>(c)]]];
      unit.energy = 1.0f;
      r.resize(static_cast<size_t>(R));
      lanes::regrets<EvCharging>(unit, X, ctx, r.data());
      for (size_t m = cls.begin[static_cast<size_t>(c)]; m < cls.begin[static_cast<size_t>(c) + 1]; ++m) {
        const size_t i = cls.order[m];
        const float energy = g.params[i].energy;
        regret[static_cast<size_t>(g.index[i])] =
            row_sum(R, [&](long k) { return energy * r[static_cast<size_t>(k)]; }) / static_cast<double>(R);
      }
    }
  }
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    if constexpr (!std::is_same_v<F, EvCharging>) {
      const auto& g = std::get<FamilyGroup<F>>(groups);
      const long n_agents = static_cast<long>(g.index.size());
      std::vector<float> r;
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16) firstprivate(r)
      for (long i = 0; i < n_agents; ++i) {
        r.resize(static_cast<size_t>(R));
        lanes::regrets<F>(g.params[static_cast<size_t>(i)], X, ctx, r.data());
        regret[static_cast<size_t>(g.index[static_cast<size_t>(i)])] =
            row_sum(R, [&](long k) { return r[static_cast<size_t>(k)]; }) / static_cast<double>(R);
      }
    }
  });
  return regret;
}

ForecastEstimator::ForecastEstimator(Population population, std::vector<float> demand,
                                     GradientSettings settings)
    : population_(std::move(population)), settings_(std::move(settings)) {
  const int S = settings_.samples;
  if (S < 2 || S > kMaxSamples || (settings_.antithetic && S % 2))
    throw ConfigError("--samples: expected an" + std::string(settings_.antithetic ? " even" : "") +
                      " integer in [2, " + std::to_string(kMaxSamples) + "], got '" + std::to_string(S) + "'");
  if (!settings_.objective) settings_.objective = power_objective(0.0);
  problem_.population = &population_;
  problem_.demand = std::move(demand);
  problem_.samples = S;
  problem_.antithetic = settings_.antithetic;
  problem_.sigma = settings_.sigma;
  problem_.floor = settings_.floor;
  problem_.estimator = settings_.estimator;
  problem_.ev_gradient = settings_.ev_gradient;
  problem_.rho = settings_.rho;
  problem_.seed = settings_.seed;
  ctx_ = regret_context(population_, problem_.demand, settings_.floor);
  weight_ = population_.weights();
  group_ = population_.groups();
}

void ForecastEstimator::setup(int B, int H) {
  if (B <= ready_B_ && H == ready_H_) return;
  problem_.max_batch = std::max(B, ready_B_);
  problem_.layout = make_mlp_layout(1, {}, H, Activation::relu);  // the structured path reads H
  groups_ = group_population(population_);
  structured_ = std::make_unique<CpuStructured>();
  structured_->setup(groups_, problem_);
  ev_conditional_ = EvConditional();
  if (problem_.ev_conditional()) ev_conditional_.setup(population_, problem_.max_batch, H);
  ready_B_ = problem_.max_batch;
  ready_H_ = H;
}

GradientEstimate ForecastEstimator::estimate(const float* mu, const float* target, const long* t, int B,
                                             int H, std::uint32_t step, double beta,
                                             const std::vector<double>& rbar, double msebar) {
  const long N = population_.size();
  const int S = settings_.samples;
  if (B < 1 || H < 1 || H > kMaxHorizon) throw Error("estimate: shapes out of range");
  if (!rbar.empty() && static_cast<long>(rbar.size()) != N)
    throw Error("estimate: the smoothed regrets hold " + std::to_string(rbar.size()) +
                " agents, the population " + std::to_string(N));
  setup(B, H);
  const RegretContext ctx = ctx_;
  const int nt = thread_count(settings_.threads);
  const long BS = static_cast<long>(B) * S, BH = static_cast<long>(B) * H;
  const double inv_bs = 1.0 / static_cast<double>(BS);

  // Perturbations and samples yhat = mu + sigma eps, as a backend's sampling stage draws them.
  std::vector<float> eps(static_cast<size_t>(BS * H)), yhat(static_cast<size_t>(BS * H));
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s) {
      const long off = (static_cast<long>(b) * S + s) * H;
      perturbation(settings_.seed, step, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(s), H,
                   settings_.antithetic, eps.data() + off);
      for (int h = 0; h < H; ++h)
        yhat[static_cast<size_t>(off + h)] =
            mu[static_cast<long>(b) * H + h] + settings_.sigma * eps[static_cast<size_t>(off + h)];
    }
  lanes::LaneBuffer buffer;
  const lanes::Lanes X = buffer.fill(yhat.data(), target, t, B, S, H);

  GradientEstimate e;
  e.rhat.assign(static_cast<size_t>(N), 0.0);
  // Pass 1: Rhat_n, the mean regret over the B S samples.
  std::vector<long> times(t, t + B);
  if (!structured_->empty()) {
    structured_->prepare(B, yhat.data(), target, times.data(), X, ctx_, nt);
    structured_->mean_regrets(e.rhat, nt);
  }
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    const auto& g = std::get<FamilyGroup<F>>(groups_);
    const long n_agents = static_cast<long>(g.index.size());
#pragma omp parallel for num_threads(nt) schedule(dynamic, 16)
    for (long i = 0; i < n_agents; ++i)
      e.rhat[static_cast<size_t>(g.index[static_cast<size_t>(i)])] =
          lanes::regrets<F>(g.params[static_cast<size_t>(i)], X, ctx, nullptr) * inv_bs;
  });

  // Smoothing, the objective of Rhat and of Rbar, and the weights omega_n = dF/dR_n at Rbar.
  const bool started = !rbar.empty();
  e.rbar.resize(static_cast<size_t>(N));
  for (long n = 0; n < N; ++n)
    e.rbar[static_cast<size_t>(n)] = step::smooth(started ? rbar[static_cast<size_t>(n)] : 0.0,
                                                  e.rhat[static_cast<size_t>(n)], settings_.rho, started);
  const AgentSet agents{weight_.data(), group_.data(), nullptr, N, population_.group_count(),
                        population_.total_weight()};
  LocalReducer here;
  e.omega.assign(static_cast<size_t>(N), 0.0);
  e.objective = settings_.objective->evaluate(e.rhat.data(), agents, here, nullptr);
  e.smoothed = settings_.objective->evaluate(e.rbar.data(), agents, here, e.omega.data());

  // Pass 2: X_{b,s} = sum_n omega_n r_{n,b,s} (score-function agents) and the pathwise sums
  // G_{b,h}, per fixed chunk of agents, the chunks added in order (deterministic). EV agents
  // under the conditional gradient enter G through ev_conditional_ alone.
  std::vector<double> A(static_cast<size_t>(BS), 0.0), G(static_cast<size_t>(BH), 0.0);
  std::vector<double> omega_score = e.omega;
  for (long n : ev_conditional_.agents()) omega_score[static_cast<size_t>(n)] = 0.0;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    const auto& g = std::get<FamilyGroup<F>>(groups_);
    const long n_agents = static_cast<long>(g.index.size());
    if (n_agents == 0) return;
    const bool pathwise = uses_pathwise<F>(settings_.estimator);
    const long n_chunks = chunks::count(n_agents);
    const long width = pathwise ? BS * H : BS;
    std::vector<double> partial(static_cast<size_t>(n_chunks * width), 0.0);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (long c = 0; c < n_chunks; ++c) {
      double* acc = partial.data() + c * width;
      std::vector<float> r(pathwise ? 0 : static_cast<size_t>(BS));
      const long i_end = chunks::begin(n_agents, c + 1, n_chunks);
      for (long i = chunks::begin(n_agents, c, n_chunks); i < i_end; ++i) {
        const double w = omega_score[static_cast<size_t>(g.index[static_cast<size_t>(i)])];
        if (w == 0.0) continue;
        const auto& prm = g.params[static_cast<size_t>(i)];
        if constexpr (F::differentiable) {
          if (pathwise) {
            lanes::add_dregrets<F>(prm, X, ctx, static_cast<float>(w), acc);
            continue;
          }
        }
        lanes::regrets<F>(prm, X, ctx, r.data());
        lanes::axpy(w, r.data(), acc, BS);
      }
    }
    for (long c = 0; c < n_chunks; ++c) {
      const double* acc = partial.data() + c * width;
      if (!pathwise) {
        for (long j = 0; j < BS; ++j) A[static_cast<size_t>(j)] += acc[j];
        continue;
      }
      // Hour-major per sample: fold the S samples of each input.
      for (int h = 0; h < H; ++h)
        for (int b = 0; b < B; ++b) {
          double sum = 0.0;
          for (int s = 0; s < S; ++s) sum += acc[static_cast<long>(h) * BS + static_cast<long>(b) * S + s];
          G[static_cast<size_t>(b * H + h)] += sum * inv_bs;
        }
    }
  });
  if (!structured_->empty()) structured_->advantages(omega_score, A.data(), G.data(), nt);
  ev_conditional_.add(B, S, H, yhat.data(), mu, target, ctx, settings_.sigma, e.omega, G.data(), nt);
  if (!settings_.antithetic)
    for (int b = 0; b < B; ++b) step::advantage_row(A.data() + static_cast<long>(b) * S, S);

  double mse = 0.0;
  for (long i = 0; i < BH; ++i) {
    const double d = double(mu[i]) - double(target[i]);
    mse += d * d;
  }
  e.mse = mse / static_cast<double>(BH);
  e.msebar = step::smooth(msebar, e.mse, settings_.rho, msebar > 0);

  // g = d value / d mu: with beta = 0 the regret term unnormalised (the estimate of dF/dmu),
  // else the training step's combination (DESIGN.md 5.1).
  step::GradCoefficients c =
      step::grad_coefficients(true, beta, e.smoothed, e.msebar, B, S, H, settings_.sigma);
  if (beta == 0.0) c.regret = 1.0;
  e.grad.resize(static_cast<size_t>(BH));
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      double score = 0.0;
      for (int s = 0; s < S; ++s)
        score = step::score_add(score, A[static_cast<size_t>(b * S + s)],
                                eps[static_cast<size_t>((static_cast<long>(b) * S + s) * H + h)]);
      const size_t i = static_cast<size_t>(b * H + h);
      e.grad[i] = step::grad_mu(c, score, G[i], mu[i], target[i]);
    }
  e.value = beta == 0.0 ? e.objective : step::loss(true, beta, e.objective, e.smoothed, e.mse, e.msebar);
  return e;
}

}  // namespace eqpm
