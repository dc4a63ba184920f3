// Shared per-(b, s) work for datacenter, EV and inventory agents (cpu_structured.hpp).
#include "cpu_structured.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <omp.h>

#include "chunks.hpp"
#include "eqpm/regret_structure.hpp"

namespace eqpm {

template <class F>
void ClassTable<F>::take(FamilyGroup<F>& g, const Problem& p) {
  *this = ClassTable<F>();
  AgentClasses cls = classes_of<F>(g.params);
  const size_t classes = cls.count(), units = classes * J;
  B_ = p.max_batch;
  S_ = p.samples;
  H_ = p.layout.output_dim();
  const size_t BS = static_cast<size_t>(B_) * static_cast<size_t>(S_);
  if (classes == 0 || 4 * units > cls.order.size() || units * BS > (size_t{16} << 20)) return;
  for (size_t i : cls.order) {
    group_.index.push_back(g.index[i]);
    group_.weight.push_back(g.weight[i]);
    group_.params.push_back(g.params[i]);
  }
  g = FamilyGroup<F>();
  begin_ = std::move(cls.begin);
  for (size_t c = 0; c < classes; ++c)
    for (int j = 0; j < J; ++j) units_.push_back(Structure::unit(group_.params[begin_[c]], j));
  if constexpr (F::differentiable) pathwise_ = uses_pathwise<F>(p.estimator);
  Usum_.resize(units);
  W_.resize(units);
  if (pathwise_) scratch_.resize(static_cast<size_t>(H_) * BS);
  else U_.resize(units * BS);
}

template <class F>
void ClassTable<F>::prepare(const lanes::Lanes& X, const RegretContext& ctx, int B, int threads) {
  if (empty()) return;
  B_ = B;
  X_ = X;
  ctx_ = ctx;
  const long BS = static_cast<long>(B) * S_;
  const long n_units = static_cast<long>(units());
  // A pathwise family needs only the sums here (its gradient comes from the derivatives);
  // the score function needs every sample's unit regret.
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (long u = 0; u < n_units; ++u)
    Usum_[static_cast<size_t>(u)] =
        lanes::regrets<F>(units_[static_cast<size_t>(u)], X, ctx, pathwise_ ? nullptr : U_.data() + u * BS);
}

template <class F>
void ClassTable<F>::mean_regrets(std::vector<double>& rhat, double inv_bs) const {
  for (size_t c = 0; c + 1 < begin_.size(); ++c)
    for (size_t m = begin_[c]; m < begin_[c + 1]; ++m) {
      double r = Structure::coef(group_.params[m], 0) * Usum_[c * J];
      for (int j = 1; j < J; ++j) r += Structure::coef(group_.params[m], j) * Usum_[c * J + static_cast<size_t>(j)];
      rhat[static_cast<size_t>(group_.index[m])] = r * inv_bs;
    }
}

template <class F>
void ClassTable<F>::advantages(const std::vector<double>& omega, double* A, double* G, double inv_bs,
                               int threads) {
  if (empty()) return;
  // W_{c,j} in class order: the same sums whatever the thread count.
  for (size_t c = 0; c + 1 < begin_.size(); ++c)
    for (int j = 0; j < J; ++j) {
      double w = 0.0;
      for (size_t m = begin_[c]; m < begin_[c + 1]; ++m)
        w += omega[static_cast<size_t>(group_.index[m])] * Structure::coef(group_.params[m], j);
      W_[c * J + static_cast<size_t>(j)] = w;
    }
  const int B = B_, S = S_, H = H_;
  const long BS = static_cast<long>(B) * S;
  const long n_units = static_cast<long>(units());
  if constexpr (F::differentiable) {
    if (pathwise_) {
      // Each unit's derivatives, weighted by its class's W, into one hour-major table
      // (H x B S, as the general path accumulates an agent's), then summed over s.
      double* acc = scratch_.data();
      std::fill(acc, acc + static_cast<long>(H) * BS, 0.0);
      for (long u = 0; u < n_units; ++u) {
        const double w = W_[static_cast<size_t>(u)] * inv_bs;
        if (w == 0.0) continue;
        lanes::add_dregrets<F>(units_[static_cast<size_t>(u)], X_, ctx_, static_cast<float>(w), acc);
      }
      lanes::sum_samples<true>(acc, B, S, H, G);
      return;
    }
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int b = 0; b < B; ++b) {
    double Ab[kMaxSamples];
    std::fill(Ab, Ab + S, 0.0);
    for (long u = 0; u < n_units; ++u) {
      const double w = W_[static_cast<size_t>(u)];
      if (w == 0.0) continue;
      const float* Ub = U_.data() + u * BS + static_cast<long>(b) * S;
      for (int s = 0; s < S; ++s) Ab[s] += w * Ub[s];
    }
    for (int s = 0; s < S; ++s) A[static_cast<long>(b) * S + s] += Ab[s];
  }
}

template class ClassTable<EvCharging>;
template class ClassTable<Inventory>;

void CpuStructured::setup(FamilyGroups& groups, const Problem& p) {
  p_ = &p;
  auto& dc = std::get<FamilyGroup<Datacenter>>(groups);
  dc_ = std::move(dc);
  dc = FamilyGroup<Datacenter>();
  dc_pathwise_ = uses_pathwise<Datacenter>(p.estimator);
  // EV agents over the whole horizon move here, and those with a window when they fall
  // into few enough classes (k, window); the rest stay on the general path.
  auto& ev = std::get<FamilyGroup<EvCharging>>(groups);
  FamilyGroup<EvCharging> windowed;
  const int H = p.layout.output_dim();
  for (size_t i = 0; i < ev.index.size(); ++i) {
    const bool whole = ev.params[i].window_start == 0 && ev.params[i].window_end == H;
    FamilyGroup<EvCharging>& dst = whole ? ev_ : windowed;
    dst.index.push_back(ev.index[i]);
    dst.weight.push_back(ev.weight[i]);
    dst.params.push_back(ev.params[i]);
  }
  const size_t B = static_cast<size_t>(p.max_batch), S = static_cast<size_t>(p.samples),
               Hs = static_cast<size_t>(H);
  evw_.take(windowed, p);
  ev = std::move(windowed);
  inv_.take(std::get<FamilyGroup<Inventory>>(groups), p);
  agents_ = dc_.index;
  agents_.insert(agents_.end(), ev_.index.begin(), ev_.index.end());
  agents_.insert(agents_.end(), evw_.index().begin(), evw_.index().end());
  agents_.insert(agents_.end(), inv_.index().begin(), inv_.index().end());
  F_.resize(B * S * Hs);
  Fsum_.resize(B * Hs);
  Dsum_.resize(B * Hs);
  K_.resize(B * Hs);
  Kpart_.resize(static_cast<size_t>(chunks::kMax) * B * Hs);
  Gk_.resize(B * S * Hs);
  Gsum_.resize(B * Hs);
  Gtot_.resize(Hs);
  E_.resize(Hs);
  Epart_.resize(static_cast<size_t>(chunks::kMax) * Hs);
  t_.resize(B);
}

double CpuStructured::demand_root(long i, long t) const {
  const auto& prm = dc_.params[static_cast<size_t>(i)];
  RegretContext c;
  c.demand = p_->demand.data();
  c.demand_length = static_cast<long>(p_->demand.size());
  const float d = Datacenter::demand<float>(prm, c, t);
  return std::sqrt(static_cast<double>(prm.lambda * d));
}

void CpuStructured::prepare(int B, const float* yhat, const float* y, const long* t,
                           const lanes::Lanes& X, const RegretContext& ctx, int threads) {
  const int S = p_->samples, H = p_->layout.output_dim();
  B_ = B;
  S_ = S;
  H_ = H;
  std::copy(t, t + B, t_.begin());
  if (!dc_.index.empty()) {
    // A datacenter agent's regret (and its derivative) is sqrt(lambda d) times that of a unit
    // agent deciding at the same hour (lambda d = 1): the family's own formulas evaluated for
    // that unit agent, once per input, sample and hour, in double.
    const float one = 1.0f;
    RegretContext unit;
    unit.demand = &one;
    unit.demand_length = 1;
    unit.floor = p_->floor;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < B; ++b) {
      const float* yb = y + static_cast<long>(b) * H;
      double ds[kMaxHorizon] = {};
      for (int h = 0; h < H; ++h) {
        const Datacenter::Params at_h{1.0f, 1.0f, 0, h};
        double fs = 0.0;
        for (int s = 0; s < S; ++s) {
          const float* v = yhat + (static_cast<long>(b) * S + s) * H;
          const double f = Datacenter::regret<double>(at_h, v, yb, unit, 0);
          F_[(static_cast<size_t>(b) * S + s) * H + h] = f;
          fs += f;
          Datacenter::add_dregret<double>(at_h, v, yb, unit, 0, 1.0, ds);
        }
        Fsum_[static_cast<size_t>(b * H + h)] = fs;
        Dsum_[static_cast<size_t>(b * H + h)] = ds[h];
      }
    }
  }
  if (!ev_.index.empty()) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < B; ++b) {
      const float* yb = y + static_cast<long>(b) * H;
      int order[kMaxHorizon];
      // Cheapest true hours: the optimum shared by every sample of this input.
      double best[kMaxHorizon + 1];
      std::iota(order, order + H, 0);
      std::stable_sort(order, order + H, [&](int i, int j) { return yb[i] < yb[j]; });
      best[0] = 0.0;
      for (int k = 0; k < H; ++k) best[k + 1] = best[k] + yb[order[k]];
      for (int k = 0; k < H; ++k) Gsum_[static_cast<size_t>(b * H + k)] = 0.0;
      for (int s = 0; s < S; ++s) {
        const float* v = yhat + (static_cast<long>(b) * S + s) * H;
        float key[kMaxHorizon];
        for (int h = 0; h < H; ++h) key[h] = v[h] < p_->floor ? p_->floor : v[h];
        std::iota(order, order + H, 0);
        // Lowest predicted price first, ties to the lower hour (stable sort on index order).
        std::stable_sort(order, order + H, [&](int i, int j) { return key[i] < key[j]; });
        double chosen = 0.0;
        for (int k = 0; k < H; ++k) {
          chosen += yb[order[k]];
          const double g = chosen - best[k + 1];
          Gk_[(static_cast<size_t>(b) * S + s) * H + k] = g;
          Gsum_[static_cast<size_t>(b * H + k)] += g;
        }
      }
    }
    for (int k = 0; k < H; ++k) {
      double tot = 0.0;
      for (int b = 0; b < B; ++b) tot += Gsum_[static_cast<size_t>(b * H + k)];
      Gtot_[static_cast<size_t>(k)] = tot;
    }
  }
  evw_.prepare(X, ctx, B, threads);
  inv_.prepare(X, ctx, B, threads);
}

void CpuStructured::mean_regrets(std::vector<double>& rhat, int threads) const {
  const int B = B_, H = H_;
  const double inv = 1.0 / (static_cast<double>(B_) * S_);
  const long n_dc = static_cast<long>(dc_.index.size());
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long i = 0; i < n_dc; ++i) {
    const int h = dc_.params[static_cast<size_t>(i)].hour;
    double sum = 0.0;
    for (int b = 0; b < B; ++b)
      sum += demand_root(i, t_[static_cast<size_t>(b)]) * Fsum_[static_cast<size_t>(b * H + h)];
    rhat[static_cast<size_t>(dc_.index[static_cast<size_t>(i)])] = sum * inv;
  }
  const long n_ev = static_cast<long>(ev_.index.size());
  for (long i = 0; i < n_ev; ++i) {
    const auto& prm = ev_.params[static_cast<size_t>(i)];
    rhat[static_cast<size_t>(ev_.index[static_cast<size_t>(i)])] =
        static_cast<double>(prm.energy) * Gtot_[static_cast<size_t>(prm.k - 1)] * inv;
  }
  evw_.mean_regrets(rhat, inv);
  inv_.mean_regrets(rhat, inv);
}

void CpuStructured::advantages(const std::vector<double>& omega, double* A, double* G, int threads) {
  const int B = B_, S = S_, H = H_;
  const long BH = static_cast<long>(B) * H;
  // K_{b,h} = sum over datacenter agents deciding at hour h of omega_n sqrt(lambda_n d_n(t_b)).
  const long n_dc = static_cast<long>(dc_.index.size());
  if (n_dc > 0) {
    const long n_chunks = chunks::count(n_dc);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (long c = 0; c < n_chunks; ++c) {
      double* Kc = Kpart_.data() + c * BH;
      std::fill(Kc, Kc + BH, 0.0);
      for (long i = chunks::begin(n_dc, c, n_chunks); i < chunks::begin(n_dc, c + 1, n_chunks); ++i) {
        const double w = omega[static_cast<size_t>(dc_.index[static_cast<size_t>(i)])];
        if (w == 0.0) continue;
        const int h = dc_.params[static_cast<size_t>(i)].hour;
        for (int b = 0; b < B; ++b) Kc[b * H + h] += w * demand_root(i, t_[static_cast<size_t>(b)]);
      }
    }
    std::fill(K_.begin(), K_.begin() + BH, 0.0);
    for (long c = 0; c < n_chunks; ++c)
      for (long j = 0; j < BH; ++j) K_[static_cast<size_t>(j)] += Kpart_[static_cast<size_t>(c * BH + j)];
    if (dc_pathwise_) {
      const double inv_bs = 1.0 / (static_cast<double>(B) * S);
      for (long j = 0; j < BH; ++j) G[j] += K_[static_cast<size_t>(j)] * inv_bs * Dsum_[static_cast<size_t>(j)];
    } else {
      for (int b = 0; b < B; ++b)
        for (int s = 0; s < S; ++s) {
          double a = 0.0;
          for (int h = 0; h < H; ++h) {
            const double f = F_[(static_cast<size_t>(b) * S + s) * H + h];
            a += K_[static_cast<size_t>(b * H + h)] * f;
          }
          A[b * S + s] += a;
        }
    }
  }
  // E_k = sum over whole-horizon EV agents needing k hours of omega_n e_n.
  const long n_ev = static_cast<long>(ev_.index.size());
  if (n_ev > 0) {
    const long n_chunks = chunks::count(n_ev);
    for (long c = 0; c < n_chunks; ++c) {
      double* Ec = Epart_.data() + c * H;
      std::fill(Ec, Ec + H, 0.0);
      for (long i = chunks::begin(n_ev, c, n_chunks); i < chunks::begin(n_ev, c + 1, n_chunks); ++i) {
        const auto& prm = ev_.params[static_cast<size_t>(i)];
        Ec[prm.k - 1] += omega[static_cast<size_t>(ev_.index[static_cast<size_t>(i)])] *
                         static_cast<double>(prm.energy);
      }
    }
    std::fill(E_.begin(), E_.end(), 0.0);
    for (long c = 0; c < n_chunks; ++c)
      for (int k = 0; k < H; ++k) E_[static_cast<size_t>(k)] += Epart_[static_cast<size_t>(c * H + k)];
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s) {
        double a = 0.0;
        for (int k = 0; k < H; ++k) {
          if (E_[static_cast<size_t>(k)] == 0.0) continue;
          const double g = Gk_[(static_cast<size_t>(b) * S + s) * H + k];
          a += E_[static_cast<size_t>(k)] * g;
        }
        A[b * S + s] += a;
      }
  }
  // Windowed EV classes and inventory hours.
  const double inv_bs = 1.0 / (static_cast<double>(B) * S);
  evw_.advantages(omega, A, G, inv_bs, threads);
  inv_.advantages(omega, A, G, inv_bs, threads);
}

}  // namespace eqpm
