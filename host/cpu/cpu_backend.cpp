// CPU reference backend (see cpu_backend.hpp).
#include "cpu_backend.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <type_traits>

#include "cpu_lanes.hpp"
#include "eqpm/error.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/rng.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm {
namespace {

// The CPU's reading of RegretPath: every path but the reference evaluates agents in SIMD
// sample lanes; automatic and structured also take the datacenter and EV factorisations.
bool in_lanes(RegretPath r) { return r != RegretPath::reference; }
bool structured_path(RegretPath r) { return r == RegretPath::automatic || r == RegretPath::structured; }

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}


// Orders each family group of the fast path so that agents reading the same forecast hour
// (families whose parameters have an `hour`) are adjacent: consecutive agents then reuse
// the same rows of the hour-major samples and derivative buffers from L1 cache.
template <class F>
void order_group(FamilyGroup<F>& g) {
  if constexpr (requires(const typename F::Params& prm) { prm.hour; }) {
    std::vector<size_t> order(g.index.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return g.params[a].hour < g.params[b].hour; });
    FamilyGroup<F> sorted;
    for (size_t i : order) {
      sorted.index.push_back(g.index[i]);
      sorted.weight.push_back(g.weight[i]);
      sorted.params.push_back(g.params[i]);
    }
    g = std::move(sorted);
  }
}

void order_for_locality(FamilyGroups& groups) {
  Families::for_each([&](auto fam) { order_group(std::get<FamilyGroup<decltype(fam)>>(groups)); });
}

bool all_finite(const double* v, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i])) return false;
  return true;
}

}  // namespace

int CpuBackend::thread_count() const { return threads_ > 0 ? threads_ : omp_get_max_threads(); }

void CpuBackend::setup_impl() {
  const Problem& p = problem_;
  all_groups_ = group_population(*p.population);
  groups_ = all_groups_;
  objective_ = p.objective ? p.objective : power_objective(p.q);
  flat_ = objective_->flat();
  reducer_ = p.reducer ? p.reducer : &local_reducer_;
  place_ = reducer_->rank();
  places_ = reducer_->size();
  if (p.fast_reduce) require_flat_for_fast_reduce(*objective_);
  fast_ = p.fast_reduce && places_ > 1;
  offsets_.assign(static_cast<size_t>(places_) + 1, 0);
  structured_ = CpuStructured();
  if (structured_path(p.regret_path)) structured_.setup(groups_, p);
  ev_conditional_ = EvConditional();
  if (p.ev_conditional())
    ev_conditional_.setup(*p.population, p.max_batch, p.layout.output_dim());
  ctx_.demand = p.demand.data();
  ctx_.demand_length = static_cast<long>(p.demand.size());
  ctx_.floor = p.floor;
  unwrap_demand();
  const long P = p.layout.parameter_count;
  state_.params = init_mlp_parameters(p.layout, p.seed);
  state_.adam_m.assign(static_cast<size_t>(P), 0.0f);
  state_.adam_v.assign(static_cast<size_t>(P), 0.0f);
  state_.adam_step = 0;
  state_.rbar.clear();
  state_.msebar = 0.0;
  rbar_mean_valid_ = false;

  const size_t B = static_cast<size_t>(p.max_batch), S = static_cast<size_t>(p.samples),
               H = static_cast<size_t>(p.layout.output_dim()), N = static_cast<size_t>(p.population->size());
  mu_.resize(B * H);
  pre_.resize(B * static_cast<size_t>(p.layout.activation_count()));
  yhat_.resize(B * S * H);
  eps_.resize(B * S * H);
  ybatch_.resize(B * H);
  tbatch_.resize(B);
  rhat_.resize(N);
  rbar_new_.resize(N);
  omega_.resize(N);
  omega_score_.resize(N);
  A_.resize(B * S);
  G_.resize(B * H);
  g_.resize(B * H);
  partial_A_.resize(static_cast<size_t>(kReductionChunks) * Families::size * B * S);
  partial_G_.resize(static_cast<size_t>(kReductionChunks) * Families::size * B * H);
  grad_acc_.resize(static_cast<size_t>(P));
  x_double_.resize(static_cast<size_t>(p.layout.input_dim()));
  pre_double_.resize(static_cast<size_t>(p.layout.activation_count()));
  // W and N: every place holds the whole population (only the general path's per-sample
  // regrets are shared out).
  total_weight_ = p.population->total_weight();
  agent_total_ = static_cast<double>(N);
  weight_.resize(N);
  for (size_t n = 0; n < N; ++n) weight_[n] = p.population->agents[n].weight;
  group_ = p.population->groups();
  agent_set_ = AgentSet{weight_.data(), group_.data(), nullptr, static_cast<long>(N),
                        p.population->group_count(), total_weight_};
  A_fused_.resize(B * S);
  G_fused_.resize(B * H);
  scratch_.resize(static_cast<size_t>(thread_count()) * B * S);
  dscratch_.resize(static_cast<size_t>(thread_count()) * B * S * H);
  lanes_.reserve(static_cast<long>(B * S), static_cast<int>(H));
  if (in_lanes(p.regret_path)) order_for_locality(groups_);
  size_t largest = 0;
  Families::for_each([&](auto fam) {
    largest = std::max(largest, std::get<FamilyGroup<decltype(fam)>>(groups_).index.size());
  });
  shared_.resize(places_ > 1 && !fast_ ? largest : 0);
  counted_.clear();
  if (fast_) {
    counted_ = counted_agents(place_);
    omega_own_.assign(N, 0.0);
    sums_.resize(B * S + B * H);
  }
  counted_weight_.resize(counted_.size());
  counted_r_.resize(counted_.size());
  counted_wsum_ = 0.0;
  for (size_t k = 0; k < counted_.size(); ++k) {
    counted_weight_[k] = weight_[static_cast<size_t>(counted_[k])];
    counted_wsum_ += counted_weight_[k];
  }
  if (fast_) reducer_->fast_sum(&counted_wsum_, 1);
  grad_.resize(static_cast<size_t>(P));
}

// The datacenter lookup D[(t + phase) mod L] with the remainder taken once here: when
// every t of the data plus every phase of the population lies in a modest range [0, E),
// D is repeated periodically up to E and the lanes read it directly (RegretContext).
void CpuBackend::unwrap_demand() {
  const Problem& p = problem_;
  const long L = static_cast<long>(p.demand.size());
  demand_unwrapped_.clear();
  const auto& dc = std::get<FamilyGroup<Datacenter>>(all_groups_);
  if (L <= 0 || dc.index.empty() || p.data->t.empty()) return;
  const auto [tmin, tmax] = std::minmax_element(p.data->t.begin(), p.data->t.end());
  long pmin = 0, pmax = 0;
  for (const auto& prm : dc.params) {
    pmin = std::min<long>(pmin, prm.phase);
    pmax = std::max<long>(pmax, prm.phase);
  }
  constexpr long kMaxUnwrapped = 1L << 22;  // 16 MB of floats
  if (*tmin + pmin < 0 || *tmax + pmax >= kMaxUnwrapped) return;
  const long E = *tmax + pmax + 1;
  demand_unwrapped_.resize(static_cast<size_t>(E));
  for (long i = 0; i < E; ++i) demand_unwrapped_[static_cast<size_t>(i)] = p.demand[static_cast<size_t>(i % L)];
  ctx_.demand = demand_unwrapped_.data();
  ctx_.demand_unwrapped = true;
}

void CpuBackend::set_state_impl(const BackendState& s) {
  state_ = s;
  rbar_mean_valid_ = false;
}

void CpuBackend::forward(const std::vector<long>& rows, std::vector<float>& mu,
                         std::vector<float>* pre) {
  const MlpLayout& L = problem_.layout;
  const Dataset& d = *problem_.data;
  const long R = static_cast<long>(rows.size());
  const int H = L.output_dim();
  const long A = L.activation_count();
  if (static_cast<long>(mu.size()) < R * H) mu.resize(static_cast<size_t>(R * H));
  std::vector<float> scratch;
#pragma omp parallel for num_threads(thread_count()) schedule(static) firstprivate(scratch)
  for (long r = 0; r < R; ++r) {
    float* pr;
    if (pre) {
      pr = pre->data() + r * A;
    } else {
      scratch.resize(static_cast<size_t>(A));
      pr = scratch.data();
    }
    mlp_forward<float>(L, state_.params.data(), d.x_row(rows[static_cast<size_t>(r)]), pr,
                       mu.data() + r * H);
  }
}

std::pair<long, long> CpuBackend::owned_chunks(long n_chunks) const {
  if (fast_) return {0, n_chunks};
  return {chunks::first_owned(n_chunks, place_, places_),
          chunks::first_owned(n_chunks, place_ + 1, places_)};
}

std::pair<long, long> CpuBackend::share(long n, int place) const {
  return {n * place / places_, n * (place + 1) / places_};
}

std::pair<long, long> CpuBackend::own_agents(long n) const {
  if (!fast_) return {0, n};
  return share(n, place_);
}

std::vector<long> CpuBackend::counted_agents(int place) const {
  std::vector<long> out;
  Families::for_each([&](auto fam) {
    const auto& g = std::get<FamilyGroup<decltype(fam)>>(groups_);
    const auto [first, last] = share(static_cast<long>(g.index.size()), place);
    for (long i = first; i < last; ++i) out.push_back(g.index[static_cast<size_t>(i)]);
  });
  // Every place evaluates the factorised agents; place 0 counts them.
  if (place == 0) out.insert(out.end(), structured_.agents().begin(), structured_.agents().end());
  std::sort(out.begin(), out.end());
  return out;
}

BackendState CpuBackend::state_impl() const {
  if (!fast_ || state_.rbar.empty()) return state_;
  // Each place holds its own agents' Rbar only; a state (a checkpoint, a sweep's annealing
  // hand-over) gathers every agent's, so that it continues like one process's. Every place
  // asks for it at the same point (a collective, on checkpoints only).
  std::vector<std::vector<long>> lists;
  std::vector<long> offsets{0};
  for (int r = 0; r < places_; ++r) {
    lists.push_back(counted_agents(r));
    offsets.push_back(offsets.back() + static_cast<long>(lists.back().size()));
  }
  std::vector<double> packed(static_cast<size_t>(offsets.back()));
  const auto& own = lists[static_cast<size_t>(place_)];
  for (size_t k = 0; k < own.size(); ++k)
    packed[static_cast<size_t>(offsets[static_cast<size_t>(place_)]) + k] =
        state_.rbar[static_cast<size_t>(own[k])];
  reducer_->gather(packed.data(), offsets.data());
  BackendState s = state_;
  for (int r = 0; r < places_; ++r)
    for (size_t k = 0; k < lists[static_cast<size_t>(r)].size(); ++k)
      s.rbar[static_cast<size_t>(lists[static_cast<size_t>(r)][k])] =
          packed[static_cast<size_t>(offsets[static_cast<size_t>(r)]) + k];
  return s;
}

double CpuBackend::flat_value(const std::vector<double>& R) {
  if (!fast_) return objective_value(*flat_, R.data(), weight_.data(), problem_.population->size(), local_reducer_);
  for (size_t k = 0; k < counted_.size(); ++k) counted_r_[k] = R[static_cast<size_t>(counted_[k])];
  FastReducer native(*reducer_);
  return objective_value(*flat_, counted_r_.data(), counted_weight_.data(),
                         static_cast<long>(counted_.size()), native);
}

void CpuBackend::fast_values(StepWork& w) {
  StepStats& st = w.st;
  const size_t n = counted_.size();
  // objective_value's two passes for Rbar and Rhat at once, with the statistics alongside;
  // the maximum of Rhat is also its statistic.
  double mx[3] = {0.0, 0.0, 0.0};  // max Rbar, max Rhat, a non-finite Rhat
  for (size_t k = 0; k < n; ++k) {
    const size_t i = static_cast<size_t>(counted_[k]);
    mx[0] = rbar_new_[i] > mx[0] ? rbar_new_[i] : mx[0];
    mx[1] = rhat_[i] > mx[1] ? rhat_[i] : mx[1];
    mx[2] = std::isfinite(rhat_[i]) ? mx[2] : 1.0;
  }
  reducer_->fast_max(mx, 3);
  double sums[3] = {0.0, 0.0, 0.0};  // terms of Rbar, terms of Rhat, sum of Rhat
  for (size_t k = 0; k < n; ++k) {
    const size_t i = static_cast<size_t>(counted_[k]);
    if (mx[0] > 0.0) sums[0] += flat_->term(rbar_new_[i], counted_weight_[k], mx[0]);
    if (mx[1] > 0.0) sums[1] += flat_->term(rhat_[i], counted_weight_[k], mx[1]);
    sums[2] += rhat_[i];
  }
  reducer_->fast_sum(sums, 3);
  auto value = [&](double rmax, double terms) {
    return rmax <= 0.0 || counted_wsum_ <= 0.0 ? 0.0 : flat_->finish(rmax, terms, counted_wsum_);
  };
  w.mbar = value(mx[0], sums[0]);
  st.power_mean = value(mx[1], sums[1]);
  st.mean_regret = sums[2] / agent_total_;
  st.max_regret = mx[1];
  w.regrets_finite = mx[2] == 0.0;
}

template <class F>
void CpuBackend::share_regrets(const FamilyGroup<F>& g, long n_chunks, std::vector<double>& rhat) {
  if (places_ == 1 || fast_) return;
  const long n = static_cast<long>(g.index.size());
  for (int r = 0; r <= places_; ++r)
    offsets_[static_cast<size_t>(r)] = chunks::begin(n, chunks::first_owned(n_chunks, r, places_), n_chunks);
  const long i0 = offsets_[static_cast<size_t>(place_)], i1 = offsets_[static_cast<size_t>(place_) + 1];
  for (long i = i0; i < i1; ++i)
    shared_[static_cast<size_t>(i)] = rhat[static_cast<size_t>(g.index[static_cast<size_t>(i)])];
  reducer_->gather(shared_.data(), offsets_.data());
  for (long i = 0; i < n; ++i)
    rhat[static_cast<size_t>(g.index[static_cast<size_t>(i)])] = shared_[static_cast<size_t>(i)];
}

void CpuBackend::share_partials(double* partials, long n_chunks, long chunk_len) {
  if (places_ == 1 || fast_) return;
  for (int r = 0; r <= places_; ++r)
    offsets_[static_cast<size_t>(r)] = chunks::first_owned(n_chunks, r, places_) * chunk_len;
  reducer_->gather(partials, offsets_.data());
}

// Each place evaluates the agents of its own chunks (the reference path's chunking, the
// one pass 2 uses); the values are then shared.
void CpuBackend::mean_regrets(int B, std::vector<double>& rhat) {
  const int S = problem_.samples, H = problem_.layout.output_dim();
  const float* yhat = yhat_.data();
  const float* y = ybatch_.data();
  const long* t = tbatch_.data();
  const RegretContext ctx = ctx_;
  const double inv = 1.0 / (static_cast<double>(B) * S);
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    const auto& g = std::get<FamilyGroup<F>>(groups_);
    const long n_agents = static_cast<long>(g.index.size());
    if (n_agents == 0) return;
    const long n_chunks = chunks::count(n_agents);
    const auto [c0, c1] = owned_chunks(n_chunks);
    const auto [a0, a1] = own_agents(n_agents);
    const long i0 = std::max(a0, chunks::begin(n_agents, c0, n_chunks)),
               i1 = std::min(a1, chunks::begin(n_agents, c1, n_chunks));
#pragma omp parallel for num_threads(thread_count()) schedule(dynamic, 64)
    for (long i = i0; i < i1; ++i) {
      const auto& prm = g.params[static_cast<size_t>(i)];
      double sum = 0.0;
      for (int b = 0; b < B; ++b)
        for (int s = 0; s < S; ++s)
          sum += F::template regret<float>(prm, yhat + (static_cast<long>(b) * S + s) * H,
                                           y + static_cast<long>(b) * H, ctx, t[b]);
      rhat[static_cast<size_t>(g.index[static_cast<size_t>(i)])] = sum * inv;
    }
    share_regrets(g, n_chunks, rhat);
  });
}

void CpuBackend::advantages(int B, const std::vector<double>& omega, std::vector<double>& A,
                            std::vector<double>& G) {
  const Problem& p = problem_;
  const int S = p.samples, H = p.layout.output_dim();
  const long BS = static_cast<long>(B) * S, BH = static_cast<long>(B) * H;
  const float* yhat = yhat_.data();
  const float* y = ybatch_.data();
  const long* t = tbatch_.data();
  const RegretContext ctx = ctx_;
  const double inv_bs = 1.0 / static_cast<double>(BS);
  std::fill(A.begin(), A.begin() + BS, 0.0);
  std::fill(G.begin(), G.begin() + BH, 0.0);
  int family_slot = 0;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    const auto& g = std::get<FamilyGroup<F>>(groups_);
    const long n_agents = static_cast<long>(g.index.size());
    const int slot = family_slot++;
    if (n_agents == 0) return;
    const bool pathwise = uses_pathwise<F>(p.estimator);
    const long n_chunks = chunks::count(n_agents);
    double* pa = partial_A_.data() + static_cast<long>(slot) * kReductionChunks * BS;
    double* pg = partial_G_.data() + static_cast<long>(slot) * kReductionChunks * BH;
    const auto [c_first, c_last] = owned_chunks(n_chunks);
    const auto [a0, a1] = own_agents(n_agents);
#pragma omp parallel for num_threads(thread_count()) schedule(dynamic, 1)
    for (long c = c_first; c < c_last; ++c) {
      double* Ac = pa + c * BS;
      double* Gc = pg + c * BH;
      std::fill(Ac, Ac + BS, 0.0);
      std::fill(Gc, Gc + BH, 0.0);
      float r[kMaxSamples];
      float dv[kMaxHorizon];
      const long i_end = std::min(a1, chunks::begin(n_agents, c + 1, n_chunks));
      for (long i = std::max(a0, chunks::begin(n_agents, c, n_chunks)); i < i_end; ++i) {
        const auto& prm = g.params[static_cast<size_t>(i)];
        const double w = omega[static_cast<size_t>(g.index[static_cast<size_t>(i)])];
        if (w == 0.0) continue;
        for (int b = 0; b < B; ++b) {
          const float* yb = y + static_cast<long>(b) * H;
          const float* yh = yhat + static_cast<long>(b) * S * H;
          if constexpr (F::differentiable) {
            if (pathwise) {
              std::fill(dv, dv + H, 0.0f);
              for (int s = 0; s < S; ++s)
                F::template add_dregret<float>(prm, yh + static_cast<long>(s) * H, yb, ctx, t[b],
                                               1.0f, dv);
              for (int h = 0; h < H; ++h) Gc[b * H + h] += w * inv_bs * dv[h];
              continue;
            }
          }
          for (int s = 0; s < S; ++s) {
            r[s] = F::template regret<float>(prm, yh + static_cast<long>(s) * H, yb, ctx, t[b]);
            Ac[b * S + s] += w * r[s];
          }
        }
      }
    }
    share_partials(pa, n_chunks, BS);
    share_partials(pg, n_chunks, BH);
    for (long c = 0; c < n_chunks; ++c) {
      for (long i = 0; i < BS; ++i) A[static_cast<size_t>(i)] += pa[c * BS + i];
      for (long i = 0; i < BH; ++i) G[static_cast<size_t>(i)] += pg[c * BH + i];
    }
  });
}

// Steady-state fusion of passes 1 and 2 (DESIGN.md 5.2) for the general-path agents.
// omega_n = (w_n/W) (Rbar_n/Mbar)^q needs Mbar, which needs every agent's Rbar_n, so the
// reference computes all regrets twice. Here each agent's regrets over the minibatch are
// computed once; its contribution enters with the provisional weight
// (w_n/W) (Rbar_n/Mref)^q, Mref the power mean of the previous smoothed regrets, and the
// caller rescales the sums by (Mref/Mbar)^q once Mbar is known.
// Layout (cpu_lanes.hpp): each agent is evaluated for all B S samples at once in SIMD
// lanes. Its contributions are accumulated per sample, in double, in per-thread buffers:
// X_j = sum_n u_n r_{n,j} for the score function (its baseline is applied once, to the
// total: stage_advantages), and the pathwise derivatives hour-major, summed over s once per
// chunk. Chunks are fixed by the family size alone and added in chunk order, so the
// result does not depend on the thread count.
long CpuBackend::fast_chunk_count(long n) {
  return std::clamp(n / kFastChunkAgents, 1L, kReductionChunks);
}

bool CpuBackend::fused_general(int B, const lanes::Lanes& X, double mref, std::vector<double>& rhat,
                               std::vector<double>& A, std::vector<double>& G) {
  const Problem& p = problem_;
  const int S = p.samples, H = p.layout.output_dim();
  const long BS = static_cast<long>(B) * S, BH = static_cast<long>(B) * H;
  const RegretContext ctx = ctx_;
  const double inv_bs = 1.0 / static_cast<double>(BS);
  const double rho = p.rho;
  const std::vector<double>& rbar_old = state_.rbar;
  const size_t r_stride = static_cast<size_t>(p.max_batch) * static_cast<size_t>(S);
  const size_t g_stride = r_stride * static_cast<size_t>(H);
  std::fill(A.begin(), A.begin() + BS, 0.0);
  std::fill(G.begin(), G.begin() + BH, 0.0);
  bool finite = true;
  int family_slot = 0;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    const auto& g = std::get<FamilyGroup<F>>(groups_);
    const long n_agents = static_cast<long>(g.index.size());
    const int slot = family_slot++;
    if (n_agents == 0) return;
    const bool pathwise = uses_pathwise<F>(p.estimator);
    // EV agents under the conditional gradient: regrets here, gradient in ev_conditional_.
    const bool regrets_only = F::tag == Family::ev_charging && !ev_conditional_.empty();
    const long n_chunks = fast_chunk_count(n_agents);
    double* pa = partial_A_.data() + static_cast<long>(slot) * kReductionChunks * BS;
    double* pg = partial_G_.data() + static_cast<long>(slot) * kReductionChunks * BH;
    bool family_finite = true;
    const auto [c_first, c_last] = owned_chunks(n_chunks);
    const auto [a0, a1] = own_agents(n_agents);
#pragma omp parallel for num_threads(thread_count()) schedule(dynamic, 1) reduction(&& : family_finite)
    for (long c = c_first; c < c_last; ++c) {
      const size_t thread = static_cast<size_t>(omp_get_thread_num());
      float* r = scratch_.data() + thread * r_stride;
      // Pathwise: derivatives hour-major (H x B S); score: P (B S).
      double* acc = dscratch_.data() + thread * g_stride;
      const long acc_size = pathwise ? static_cast<long>(H) * BS : BS;
      std::fill(acc, acc + acc_size, 0.0);
      const long i_end = std::min(a1, chunks::begin(n_agents, c + 1, n_chunks));
      for (long i = std::max(a0, chunks::begin(n_agents, c, n_chunks)); i < i_end; ++i) {
        const auto& prm = g.params[static_cast<size_t>(i)];
        const long n = g.index[static_cast<size_t>(i)];
        const double rh = lanes::regrets<F>(prm, X, ctx, pathwise || regrets_only ? nullptr : r) * inv_bs;
        rhat[static_cast<size_t>(n)] = rh;
        if (regrets_only) continue;
        const double rb = step::smooth(rbar_old[static_cast<size_t>(n)], rh, rho, true);
        const double u = flat_->weight(rb, weight_[static_cast<size_t>(n)] / total_weight_, mref);
        if (!std::isfinite(u)) {
          family_finite = false;
          continue;
        }
        if (u == 0.0) continue;
        if constexpr (F::differentiable) {
          if (pathwise) {
            lanes::add_dregrets<F>(prm, X, ctx, static_cast<float>(u * inv_bs), acc);
            continue;
          }
        }
        lanes::axpy(u, r, acc, BS);
      }
      if (pathwise) {
        lanes::sum_samples<false>(acc, B, S, H, pg + c * BH);
      } else {
        std::copy(acc, acc + BS, pa + c * BS);
      }
    }
    finite = finite && family_finite;
    share_regrets(g, n_chunks, rhat);
    if (pathwise) share_partials(pg, n_chunks, BH);
    else share_partials(pa, n_chunks, BS);
    for (long c = 0; c < n_chunks; ++c) {
      if (pathwise) {
        for (long j = 0; j < BH; ++j) G[static_cast<size_t>(j)] += pg[c * BH + j];
      } else {
        for (long j = 0; j < BS; ++j) A[static_cast<size_t>(j)] += pa[c * BS + j];
      }
    }
  });
  // A weight that overflowed on any place sends every place to the two-pass route.
  if (places_ > 1) {
    double overflow = finite ? 0.0 : 1.0;
    reducer_->max(&overflow, 1);
    finite = overflow == 0.0;
  }
  return finite;
}

// A training step: the stages of step_stages.hpp in their order, each one piece of DESIGN.md
// 5.2; the algebra inside them is step_algebra.hpp's, shared with the CUDA kernels.
StepStats CpuBackend::step_impl(const StepSpec& spec, StepTrace* trace) {
  const Problem& p = problem_;
  StepWork w;
  w.spec = &spec;
  w.trace = trace;
  w.B = static_cast<int>(spec.rows.size());
  w.S = p.samples;
  w.H = p.layout.output_dim();
  w.equitable = spec.beta < 1.0;
  w.sigma = spec.sigma > 0 ? spec.sigma : p.sigma;
  run_step(*this, w);
  return w.st;
}

// Forward pass, the minibatch's truths and times, its MSE and the smoothed MSEbar.
void CpuBackend::stage_forward(StepWork& w) {
  const Problem& p = problem_;
  const StepSpec& spec = *w.spec;
  const Dataset& d = *p.data;
  const int B = w.B, H = w.H;
  const auto t0 = Clock::now();
  forward(spec.rows, mu_, &pre_);
  for (int b = 0; b < B; ++b) {
    const long row = spec.rows[static_cast<size_t>(b)];
    std::copy(d.y_row(row), d.y_row(row) + H, ybatch_.begin() + static_cast<long>(b) * H);
    tbatch_[static_cast<size_t>(b)] = d.t[static_cast<size_t>(row)];
  }
  double mse = 0.0;
  for (long i = 0; i < static_cast<long>(B) * H; ++i) {
    const double e = double(mu_[static_cast<size_t>(i)]) - double(ybatch_[static_cast<size_t>(i)]);
    mse += e * e;
  }
  mse /= static_cast<double>(B) * H;
  w.st.mse = mse;
  w.msebar = step::smooth(state_.msebar, mse, p.rho, state_.msebar > 0);
  std::fill(g_.begin(), g_.begin() + static_cast<long>(B) * H, 0.0);
  times_.forward += seconds_since(t0);
}

// Perturbations from the counter (seed, step, b, s, h-block) and the samples
// yhat = mu + sigma eps; the fast paths read the samples hour-major (cpu_lanes.hpp).
void CpuBackend::stage_sample(StepWork& w) {
  const Problem& p = problem_;
  const StepSpec& spec = *w.spec;
  const int B = w.B, S = w.S, H = w.H;
  const auto t0 = Clock::now();
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s) {
      const long off = (static_cast<long>(b) * S + s) * H;
      perturbation(p.seed, spec.step, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(s), H,
                   p.antithetic, eps_.data() + off);
      for (int h = 0; h < H; ++h)
        yhat_[static_cast<size_t>(off + h)] =
            mu_[static_cast<size_t>(b * H + h)] + w.sigma * eps_[static_cast<size_t>(off + h)];
    }
  w.X = in_lanes(p.regret_path) ? lanes_.fill(yhat_.data(), ybatch_.data(), tbatch_.data(), B, S, H)
                                : lanes::Lanes{};
  times_.sampling += seconds_since(t0);
}

// Pass 1: every agent's mean regret Rhat_n over the minibatch's samples. In the steady
// state the fast path fuses passes 1 and 2 for the general-path agents (fused_general).
void CpuBackend::stage_regrets(StepWork& w) {
  const Problem& p = problem_;
  const lanes::Lanes& X = w.X;
  const auto t0 = Clock::now();
  if (!structured_.empty()) {
    structured_.prepare(w.B, yhat_.data(), ybatch_.data(), tbatch_.data(), X, ctx_, thread_count());
    structured_.mean_regrets(rhat_, thread_count());
  }
  // Mref, the power mean of the current smoothed regrets, is the previous step's Mbar (same
  // values, same function) unless the state was replaced since.
  const bool started = !state_.rbar.empty();
  // The fused pass weighs with the previous value: only the power mean's weights stay in
  // range that way (a tilt's e^{t (R - Tprev)} may overflow), so only it is fused.
  const bool fusable = flat_ && flat_->kind == FlatObjective::Kind::power;
  w.mref = !started || !in_lanes(p.regret_path) || !fusable ? 0.0
           : rbar_mean_valid_                   ? rbar_mean_
                                                : flat_value(state_.rbar);
  w.fused = w.mref > 0 && std::isfinite(w.mref) && fused_general(w.B, X, w.mref, rhat_, A_fused_, G_fused_);
  if (!w.fused) mean_regrets(w.B, rhat_);
  times_.regrets += seconds_since(t0);
}

// Smoothed regrets Rbar_n, the power means of Rhat and Rbar (Mbar), the step's statistics
// and the agent weights omega_n (all of them, or only the factorised agents').
void CpuBackend::stage_weights(StepWork& w) {
  const Problem& p = problem_;
  StepStats& st = w.st;
  // The fused pass has already weighted its own agents, so unless a trace asks for all of
  // them only the factorised agents need weights here.
  const bool all = !w.fused || w.trace;
  const long N = p.population->size();
  const auto t0 = Clock::now();
  const bool started = !state_.rbar.empty();
  for (long n = 0; n < N; ++n)
    rbar_new_[static_cast<size_t>(n)] = step::smooth(started ? state_.rbar[static_cast<size_t>(n)] : 0.0,
                                                     rhat_[static_cast<size_t>(n)], p.rho, started);
  if (fast_) {
    fast_values(w);
  } else if (flat_) {
    w.mbar = flat_value(rbar_new_);
    st.power_mean = flat_value(rhat_);
  } else {
    // Every agent's weight comes with the value (objectives.hpp).
    w.mbar = objective_->evaluate(rbar_new_.data(), agent_set_, local_reducer_, omega_.data());
    st.power_mean = objective_->evaluate(rhat_.data(), agent_set_, local_reducer_, nullptr);
  }
  st.smoothed_power_mean = w.mbar;
  if (!fast_) {
    double sum = 0.0, mx = 0.0;
    for (long n = 0; n < N; ++n) {
      sum += rhat_[static_cast<size_t>(n)];
      mx = std::max(mx, rhat_[static_cast<size_t>(n)]);
    }
    st.mean_regret = sum / agent_total_;
    st.max_regret = mx;
  }
  // A flat objective weighs here (all agents, or only the factorised ones); any other has
  // weighed every agent with its value above.
  if (flat_ && all) {
    for (long n = 0; n < N; ++n) weigh(n, w.mbar);
  } else if (flat_) {
    for (long n : structured_.agents()) weigh(n, w.mbar);
  }
  w.all_weights = all || !flat_;
  times_.reductions += seconds_since(t0);
}

// omega_n from the smoothed regret and the objective's value.
void CpuBackend::weigh(long n, double value) {
  const size_t i = static_cast<size_t>(n);
  omega_[i] = flat_->weight(rbar_new_[i], weight_[i] / total_weight_, value);
}

// Pass 2: X_{b,s} = sum_n omega_n r_{n,b,s} over the score-function agents and the pathwise
// sums G_{b,h}, then the baseline, applied once to X (step::advantage).
void CpuBackend::stage_advantages(StepWork& w) {
  const Problem& p = problem_;
  const int B = w.B, S = w.S, H = w.H;
  const long N = p.population->size();
  const auto t0 = Clock::now();
  const double rescale = w.fused ? flat_->rescale(w.mref, w.mbar) : 1.0;
  if (w.fused && std::isfinite(rescale)) {
    for (long i = 0; i < static_cast<long>(B) * S; ++i)
      A_[static_cast<size_t>(i)] = rescale * A_fused_[static_cast<size_t>(i)];
    for (long i = 0; i < static_cast<long>(B) * H; ++i)
      G_[static_cast<size_t>(i)] = rescale * G_fused_[static_cast<size_t>(i)];
  } else if (!w.all_weights) {
    for (long n = 0; n < N; ++n) weigh(n, w.mbar);
  }
  // EV agents under the conditional gradient enter G through ev_conditional_ alone.
  const std::vector<double>* score_omega = &omega_;
  if (!ev_conditional_.empty()) {
    if (!w.all_weights && w.fused)  // the fused pass leaves their weights unset
      for (long n : ev_conditional_.agents()) weigh(n, w.mbar);
    omega_score_ = omega_;
    for (long n : ev_conditional_.agents()) omega_score_[static_cast<size_t>(n)] = 0.0;
    score_omega = &omega_score_;
  }
  if (!(w.fused && std::isfinite(rescale))) advantages(B, *score_omega, A_, G_);
  if (fast_) {
    // This place's own agents' sums, EV conditional ones included (each EV agent's weight
    // on the place that counts it), added over places natively; then the factorised
    // agents, which every place evaluates, on every place.
    if (!ev_conditional_.empty()) {
      for (long n : ev_conditional_.agents()) omega_own_[static_cast<size_t>(n)] = 0.0;
      for (long n : counted_) omega_own_[static_cast<size_t>(n)] = omega_[static_cast<size_t>(n)];
      ev_conditional_.add(B, S, H, yhat_.data(), mu_.data(), ybatch_.data(), ctx_, w.sigma,
                          omega_own_, G_.data(), thread_count());
    }
    const long BS = static_cast<long>(B) * S, BH = static_cast<long>(B) * H;
    std::copy(A_.begin(), A_.begin() + BS, sums_.begin());
    std::copy(G_.begin(), G_.begin() + BH, sums_.begin() + BS);
    reducer_->fast_sum(sums_.data(), BS + BH);
    std::copy(sums_.begin(), sums_.begin() + BS, A_.begin());
    std::copy(sums_.begin() + BS, sums_.begin() + BS + BH, G_.begin());
    if (!structured_.empty()) structured_.advantages(*score_omega, A_.data(), G_.data(), thread_count());
  } else {
    if (!structured_.empty()) structured_.advantages(*score_omega, A_.data(), G_.data(), thread_count());
    ev_conditional_.add(B, S, H, yhat_.data(), mu_.data(), ybatch_.data(), ctx_, w.sigma, omega_,
                        G_.data(), thread_count());
  }
  if (!p.antithetic)
    for (int b = 0; b < B; ++b) step::advantage_row(A_.data() + static_cast<long>(b) * S, S);
  times_.reductions += seconds_since(t0);
}

// g = d loss / d mu (B x H): the regret term (score function and pathwise) and the accuracy
// term; and the loss.
void CpuBackend::stage_gradient(StepWork& w) {
  const StepSpec& spec = *w.spec;
  const int B = w.B, S = w.S, H = w.H;
  const auto t0 = Clock::now();
  const step::GradCoefficients c =
      step::grad_coefficients(w.equitable, spec.beta, w.mbar, w.msebar, B, S, H, w.sigma);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      double score = 0.0;
      if (w.equitable)
        for (int s = 0; s < S; ++s)
          score = step::score_add(score, A_[static_cast<size_t>(b * S + s)],
                                  eps_[static_cast<size_t>((static_cast<long>(b) * S + s) * H + h)]);
      const size_t i = static_cast<size_t>(b * H + h);
      g_[i] = step::grad_mu(c, score, w.equitable ? G_[i] : 0.0, mu_[i], ybatch_[i]);
    }
  w.st.loss = step::loss(w.equitable, spec.beta, w.st.power_mean, w.mbar, w.st.mse, w.msebar);
  times_.reductions += seconds_since(t0);
}

// Backward pass through the MLP, accumulated in double in sample order, and the gradient's
// global norm (infinite when any entry is beyond float range); the trace, when asked for; and
// the numerical guard: a non-finite step changes nothing (stage_update).
void CpuBackend::stage_backward(StepWork& w) {
  const StepSpec& spec = *w.spec;
  StepStats& st = w.st;
  const MlpLayout& L = problem_.layout;
  const Dataset& d = *problem_.data;
  const int B = w.B, H = w.H;
  const long P = L.parameter_count;
  const auto t0 = Clock::now();
  std::fill(grad_acc_.begin(), grad_acc_.end(), 0.0);
  const long Aw = L.activation_count();
  double gb[kMaxHorizon];
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < H; ++h) gb[h] = g_[static_cast<size_t>(b * H + h)];
    const float* xr = d.x_row(spec.rows[static_cast<size_t>(b)]);
    std::copy(xr, xr + L.input_dim(), x_double_.begin());
    std::copy(pre_.begin() + b * Aw, pre_.begin() + (b + 1) * Aw, pre_double_.begin());
    mlp_backward<double>(L, state_.params.data(), x_double_.data(), pre_double_.data(), gb,
                         grad_acc_.data());
  }
  double norm2 = 0.0;
  bool grad_finite = true;
  for (long i = 0; i < P; ++i) {
    grad_[static_cast<size_t>(i)] = static_cast<float>(grad_acc_[static_cast<size_t>(i)]);
    grad_finite = grad_finite && std::isfinite(grad_[static_cast<size_t>(i)]);
    norm2 += grad_acc_[static_cast<size_t>(i)] * grad_acc_[static_cast<size_t>(i)];
  }
  st.grad_norm = grad_finite ? std::sqrt(norm2) : INFINITY;
  times_.backward += seconds_since(t0);
  if (w.trace) fill_trace(w, *w.trace);

  bool regrets_finite =
      !w.equitable || all_finite(rhat_.data(), static_cast<size_t>(problem_.population->size()));
  // Only own agents' regrets are this place's: every place must skip the same steps.
  if (fast_ && w.equitable) regrets_finite = w.regrets_finite;
  st.finite = step::finite_step(st.loss, st.grad_norm, st.mse, w.equitable, regrets_finite, w.mbar);
}

// Adam with global-norm clipping, then the commit of the smoothing state.
void CpuBackend::stage_update(StepWork& w) {
  if (!w.st.finite) return;
  const Problem& p = problem_;
  const StepSpec& spec = *w.spec;
  const StepStats& st = w.st;
  const long P = p.layout.parameter_count;
  const auto t0 = Clock::now();
  const float clip = step::clip_factor(st.grad_norm, p.grad_clip);
  state_.adam_step += 1;
  const step::AdamStep a = step::adam_step(p.adam_beta1, p.adam_beta2, p.adam_eps, spec.lr,
                                           p.weight_decay, static_cast<double>(state_.adam_step));
  for (long i = 0; i < P; ++i) {
    const size_t k = static_cast<size_t>(i);
    step::adam_update(a, grad_[k], clip, state_.params[k], state_.adam_m[k], state_.adam_v[k]);
  }
  state_.msebar = w.msebar;
  if (w.equitable) {
    state_.rbar = rbar_new_;
    rbar_mean_ = w.mbar;
    rbar_mean_valid_ = true;
  }
  times_.optimiser += seconds_since(t0);
}

void CpuBackend::fill_trace(const StepWork& w, StepTrace& trace) const {
  const long BH = static_cast<long>(w.B) * w.H, BS = static_cast<long>(w.B) * w.S;
  trace.mu.assign(mu_.begin(), mu_.begin() + BH);
  trace.eps.assign(eps_.begin(), eps_.begin() + (w.equitable ? BS * w.H : 0));
  trace.rhat = w.equitable ? rhat_ : std::vector<double>();
  trace.rbar = w.equitable ? rbar_new_ : std::vector<double>();
  trace.omega = w.equitable ? omega_ : std::vector<double>();
  trace.advantage.assign(A_.begin(), A_.begin() + (w.equitable ? BS : 0));
  trace.g.assign(g_.begin(), g_.begin() + BH);
  trace.grad = grad_;
}

std::vector<float> CpuBackend::predict_impl(const std::vector<long>& rows) {
  std::vector<float> mu(rows.size() * static_cast<size_t>(problem_.layout.output_dim()));
  forward(rows, mu, nullptr);
  return mu;
}

EvalResult CpuBackend::evaluate_impl(const std::vector<long>& rows) {
  const Problem& p = problem_;
  const Dataset& d = *p.data;
  const int H = p.layout.output_dim();
  const long R = static_cast<long>(rows.size());
  const std::vector<float> mu = predict_impl(rows);
  EvalResult e;
  e.regret.assign(static_cast<size_t>(p.population->size()), 0.0);
  if (R == 0) return e;
  double se = 0.0, ae = 0.0;
  for (long r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) {
      const double err = double(mu[static_cast<size_t>(r * H + h)]) - double(d.y_row(rows[static_cast<size_t>(r)])[h]);
      se += err * err;
      ae += std::abs(err);
    }
  e.mse = se / (static_cast<double>(R) * H);
  e.mae = ae / (static_cast<double>(R) * H);
  const RegretContext ctx = ctx_;
  // The fast path evaluates each agent over many rows at once (cpu_lanes.hpp).
  const bool fast = in_lanes(p.regret_path);
  lanes::LaneBuffer buffer;
  lanes::Lanes X;
  if (fast) {
    std::vector<float> y(static_cast<size_t>(R * H));
    std::vector<long> t(static_cast<size_t>(R));
    for (long r = 0; r < R; ++r) {
      const long row = rows[static_cast<size_t>(r)];
      std::copy(d.y_row(row), d.y_row(row) + H, y.begin() + r * H);
      t[static_cast<size_t>(r)] = d.t[static_cast<size_t>(row)];
    }
    X = buffer.fill(mu.data(), y.data(), t.data(), R, 1, H);
  }
  // Sum of the R row values into four interleaved partial sums (row k into k % 4), so
  // that the additions pipeline; every path below uses this order.
  auto row_sum = [R](auto value) {
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    long k = 0;
    for (; k + 4 <= R; k += 4)
      for (int l = 0; l < 4; ++l) part[l] += static_cast<double>(value(k + l));
    for (; k < R; ++k) part[k % 4] += static_cast<double>(value(k));
    return (part[0] + part[1]) + (part[2] + part[3]);
  };
  if (fast) {
    // EV agents with the same k and window share chosen - best on every row; the agent's
    // regret is energy times it, the float product the scalar code forms: compute the
    // shared part once per (k, window), then each agent's sum costs O(R).
    const auto& g = std::get<FamilyGroup<EvCharging>>(all_groups_);
    const AgentClasses cls = classes_of<EvCharging>(g.params);
    const long n_classes = static_cast<long>(cls.count());
    std::vector<float> r;
#pragma omp parallel for num_threads(thread_count()) schedule(dynamic, 1) firstprivate(r)
    for (long c = 0; c < n_classes; ++c) {
      EvCharging::Params unit = g.params[cls.order[cls.begin[static_cast<size_t>(c)]]];
      unit.energy = 1.0f;  // 1 * (chosen - best) is chosen - best exactly
      r.resize(static_cast<size_t>(R));
      lanes::regrets<EvCharging>(unit, X, ctx, r.data());
      for (size_t m = cls.begin[static_cast<size_t>(c)]; m < cls.begin[static_cast<size_t>(c) + 1]; ++m) {
        const size_t i = cls.order[m];
        const float energy = g.params[i].energy;
        const double sum = row_sum([&](long k) { return energy * r[static_cast<size_t>(k)]; });
        e.regret[static_cast<size_t>(g.index[i])] = sum / static_cast<double>(R);
      }
    }
  }
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    if constexpr (std::is_same_v<F, EvCharging>) {
      if (fast) return;  // done above
    }
    const auto& g = std::get<FamilyGroup<F>>(all_groups_);
    const long n_agents = static_cast<long>(g.index.size());
    std::vector<float> r;
#pragma omp parallel for num_threads(thread_count()) schedule(dynamic, 16) firstprivate(r)
    for (long i = 0; i < n_agents; ++i) {
      const auto& prm = g.params[static_cast<size_t>(i)];
      r.resize(static_cast<size_t>(R));
      if (fast) {
        // Each lane computes the same float regret as the scalar code: equal bit for bit.
        lanes::regrets<F>(prm, X, ctx, r.data());
      } else {
        for (long k = 0; k < R; ++k) {
          const long row = rows[static_cast<size_t>(k)];
          r[static_cast<size_t>(k)] = F::template regret<float>(prm, mu.data() + k * H, d.y_row(row),
                                                                ctx, d.t[static_cast<size_t>(row)]);
        }
      }
      const double sum = row_sum([&](long k) { return r[static_cast<size_t>(k)]; });
      e.regret[static_cast<size_t>(g.index[static_cast<size_t>(i)])] = sum / static_cast<double>(R);
    }
  });
  return e;
}

}  // namespace eqpm
