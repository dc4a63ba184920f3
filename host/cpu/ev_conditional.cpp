// EV agents' conditional Monte Carlo gradient (ev_conditional.hpp).
#include "ev_conditional.hpp"

#include <algorithm>

#include "chunks.hpp"
#include "eqpm/regret_structure.hpp"

namespace eqpm {

void EvConditional::setup(const Population& population, int max_batch, int horizon) {
  *this = EvConditional();
  for (long n = 0; n < population.size(); ++n)
    if (population.agents[static_cast<size_t>(n)].family == Family::ev_charging)
      agents_.push_back(n);
  members_ = agents_;
  using Structure = RegretStructure<EvCharging>;  // classes (k, window), energy the coefficient
  auto params = [&](long n) { return EvCharging::params(population.agents[static_cast<size_t>(n)]); };
  auto cls = [&](long n) { return Structure::key(params(n)); };
  std::stable_sort(members_.begin(), members_.end(),
                   [&](long a, long b) { return cls(a) < cls(b); });
  for (size_t i = 0; i < members_.size(); ++i) {
    const EvCharging::Params p = params(members_[i]);
    if (i == 0 || cls(members_[i]) != cls(members_[i - 1])) {
      begin_.push_back(i);
      unit_.push_back(Structure::unit(p, 0));
    }
    energy_.push_back(Structure::coef(p, 0));  // the energy as the regret paths' float
  }
  begin_.push_back(members_.size());
  partial_.assign(static_cast<size_t>(chunks::kMax) * static_cast<size_t>(max_batch) *
                      static_cast<size_t>(horizon),
                  0.0);
}

void EvConditional::add(int B, int S, int H, const float* yhat, const float* mu, const float* y,
                        const RegretContext& ctx, float sigma, const std::vector<double>& omega,
                        double* G, int threads) {
  if (empty()) return;
  const long BS = static_cast<long>(B) * S, BH = static_cast<long>(B) * H;
  // Every sample's hours in key order (ties by hour), once for all classes; a class's window
  // order is this order filtered, the same as add_dregret_conditional's own sort.
  key_.resize(static_cast<size_t>(BS * H));
  order_.resize(static_cast<size_t>(BS * H));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long j = 0; j < BS; ++j) {
    double* key = key_.data() + j * H;
    int* order = order_.data() + j * H;
    for (int h = 0; h < H; ++h) {
      key[h] = clamp_floor(double(yhat[j * H + h]), ctx.floor);
      int i = h;
      for (; i > 0 && key[order[i - 1]] > key[h]; --i) order[i] = order[i - 1];
      order[i] = h;
    }
  }
  const long classes = static_cast<long>(unit_.size());
  const long n_chunks = chunks::count(classes);
  const double inv_bs = 1.0 / static_cast<double>(BS);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (long c = 0; c < n_chunks; ++c) {
    double* Gc = partial_.data() + c * BH;
    std::fill(Gc, Gc + BH, 0.0);
    double g[kMaxHorizon];
    int window[kMaxHorizon];
    const long end = chunks::begin(classes, c + 1, n_chunks);
    for (long k = chunks::begin(classes, c, n_chunks); k < end; ++k) {
      double weight = 0.0;
      for (size_t i = begin_[static_cast<size_t>(k)]; i < begin_[static_cast<size_t>(k) + 1]; ++i)
        weight += omega[static_cast<size_t>(members_[i])] * energy_[i];
      const EvCharging::Params& p = unit_[static_cast<size_t>(k)];
      if (weight == 0.0 || p.k >= p.window_end - p.window_start) continue;
      for (int b = 0; b < B; ++b) {
        std::fill(g, g + H, 0.0);
        for (int s = 0; s < S; ++s) {
          const long j = static_cast<long>(b) * S + s;
          const int* order = order_.data() + j * H;
          const int* sorted = order;  // a whole-horizon window is the sample's order itself
          if (p.window_start > 0 || p.window_end < H) {
            int m = 0;
            for (int i = 0; i < H; ++i)
              if (order[i] >= p.window_start && order[i] < p.window_end) window[m++] = order[i];
            sorted = window;
          }
          EvCharging::add_dregret_conditional_sorted<double>(
              p, sorted, key_.data() + j * H, mu + static_cast<long>(b) * H,
              y + static_cast<long>(b) * H, ctx, double(sigma), 1.0, g);
        }
        for (int h = p.window_start; h < p.window_end; ++h) Gc[b * H + h] += weight * inv_bs * g[h];
      }
    }
  }
  for (long c = 0; c < n_chunks; ++c)
    for (long i = 0; i < BH; ++i) G[i] += partial_[static_cast<size_t>(c * BH + i)];
}

}  // namespace eqpm
