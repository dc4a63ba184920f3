// The conditional Monte Carlo gradient of the EV-charging agents (--ev-gradient
// conditional; an extension of DESIGN.md 5.3, README "How it trains") on the CPU. An
// agent's gradient is its energy times a value that depends only on its class (k, window),
// so each class's gradient is computed once per sample (EvCharging::
// add_dregret_conditional_sorted with unit energy) and enters G with the class's weight
// sum_n omega_n e_n. Classes are split into fixed chunks whose partial sums are added in
// chunk order, so the result does not depend on the thread count.
#pragma once

#include <vector>

#include "eqpm/families.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

class EvConditional {
 public:
  // Collects the population's EV agents and their classes.
  void setup(const Population& population, int max_batch, int horizon);
  bool empty() const { return agents_.empty(); }
  // Population indices of the EV agents.
  const std::vector<long>& agents() const { return agents_; }

  // G (B x H) += sum over classes c of W_c / (B S) sum_s g_c(yhat_{b,s}), where
  // W_c = sum_{n in c} omega_n e_n. yhat: B x S x H samples of the forecasts mu (B x H)
  // with noise sigma; y: B x H truths.
  void add(int B, int S, int H, const float* yhat, const float* mu, const float* y,
           const RegretContext& ctx, float sigma, const std::vector<double>& omega, double* G,
           int threads);

 private:
  std::vector<EvCharging::Params> unit_;  // per class, energy 1
  std::vector<size_t> begin_;             // class c: members_[begin_[c] .. begin_[c + 1])
  std::vector<long> members_;             // population indices, class by class
  std::vector<double> energy_;            // per member
  std::vector<long> agents_;              // population order
  std::vector<double> partial_;           // per chunk, B x H
  std::vector<double> key_;               // per sample: each hour's key (clamped forecast)
  std::vector<int> order_;                // per sample: the hours in key order
};

}  // namespace eqpm
