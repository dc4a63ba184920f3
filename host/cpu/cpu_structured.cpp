// Shared per-(b, s) work for datacenter and whole-horizon EV agents (cpu_structured.hpp).
#include "cpu_structured.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "chunks.hpp"
#include "eqpm/regret_structure.hpp"

namespace eqpm {

EvClasses ev_classes(const std::vector<EvCharging::Params>& params) {
  auto key = [&](size_t i) { return RegretStructure<EvCharging>::key(params[i]); };
  EvClasses c;
  c.order.resize(params.size());
  std::iota(c.order.begin(), c.order.end(), size_t{0});
  std::stable_sort(c.order.begin(), c.order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  for (size_t m = 0; m < c.order.size(); ++m)
    if (m == 0 || key(c.order[m]) != key(c.order[m - 1])) c.begin.push_back(m);
  c.begin.push_back(c.order.size());
  return c;
}

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
  {
    const EvClasses cls = ev_classes(windowed.params);
    const size_t classes = cls.count();
    // Pays off when classes average at least 4 agents; the table stays under 64 MB.
    if (classes > 0 && 4 * classes <= cls.order.size() && classes * B * S <= (size_t{16} << 20)) {
      for (size_t i : cls.order) {
        evw_.index.push_back(windowed.index[i]);
        evw_.weight.push_back(windowed.weight[i]);
        evw_.params.push_back(windowed.params[i]);
      }
      class_begin_ = cls.begin;
      windowed = FamilyGroup<EvCharging>();
      C_.resize(classes * B * S);
      Csum_.resize(classes);
      Cweight_.resize(classes);
    }
  }
  ev = std::move(windowed);
  agents_ = dc_.index;
  agents_.insert(agents_.end(), ev_.index.begin(), ev_.index.end());
  agents_.insert(agents_.end(), evw_.index.begin(), evw_.index.end());
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
                           const lanes::Lanes& X, int threads) {
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
  if (!evw_.index.empty()) {
    // C_{c,j} = (chosen - best) of class c at sample j: the regret of an agent of energy 1.
    RegretContext ctx;
    ctx.floor = p_->floor;
    const long BS = static_cast<long>(B) * S;
    const long classes = static_cast<long>(class_begin_.size()) - 1;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (long c = 0; c < classes; ++c) {
      EvCharging::Params unit = evw_.params[class_begin_[static_cast<size_t>(c)]];
      unit.energy = 1.0f;
      Csum_[static_cast<size_t>(c)] = lanes::regrets<EvCharging>(unit, X, ctx, C_.data() + c * BS);
    }
  }
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
  for (size_t c = 0; c + 1 < class_begin_.size(); ++c)
    for (size_t m = class_begin_[c]; m < class_begin_[c + 1]; ++m)
      rhat[static_cast<size_t>(evw_.index[m])] = static_cast<double>(evw_.params[m].energy) * Csum_[c] * inv;
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
  // Windowed EV classes: A_{b,s} += sum_c W_c C_{c,b,s}, W_c = sum_n omega_n e_n.
  const long classes = static_cast<long>(class_begin_.size()) - 1;
  if (classes > 0) {
    for (long c = 0; c < classes; ++c) {
      double w = 0.0;
      for (size_t m = class_begin_[static_cast<size_t>(c)]; m < class_begin_[static_cast<size_t>(c) + 1]; ++m)
        w += omega[static_cast<size_t>(evw_.index[m])] * static_cast<double>(evw_.params[m].energy);
      Cweight_[static_cast<size_t>(c)] = w;
    }
    const long BS = static_cast<long>(B) * S;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int b = 0; b < B; ++b) {
      double Ab[kMaxSamples];
      std::fill(Ab, Ab + S, 0.0);
      for (long c = 0; c < classes; ++c) {
        const double w = Cweight_[static_cast<size_t>(c)];
        if (w == 0.0) continue;
        const float* Cb = C_.data() + c * BS + static_cast<long>(b) * S;
        for (int s = 0; s < S; ++s) Ab[s] += w * Cb[s];
      }
      for (int s = 0; s < S; ++s) A[static_cast<long>(b) * S + s] += Ab[s];
    }
  }
}

}  // namespace eqpm
