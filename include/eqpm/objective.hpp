// The equitable objective (DESIGN.md 5.1, 5.2) as a type: the weighted power mean
// M_q = ((1/W) sum_n w_n R_n^{q+1})^{1/(q+1)} and its gradient weights
// omega_n = (w_n / W) (R_n / M_q)^q. Everything in double; the ratio R_n / M_q is at most
// (W / w_n)^{1/(q+1)}, so omega_n <= 1 and nothing overflows even for q = 40.
//
// An objective is computed from two reductions over the agents, so that any executor (a
// loop, a grid of blocks, later several processes) gets the same value: the largest regret
// (a max: exact in any order), then the sum of each agent's `term` relative to it (a sum in
// a fixed order), which `finish` turns into the objective's value; `weight` is then each
// agent's dF/dR_n. The CPU backend and the CUDA kernels call these pieces and nothing else.
#pragma once

#include <cmath>

#include "eqpm/hd.hpp"
#include "eqpm/reducer.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm {

// omega_n = (w_n / W) (R_n / M)^q for a precomputed power mean M > 0.
EQPM_HD_INLINE double agent_weight(double R, double w_over_W, double M, double q) {
  if (q == 0.0) return w_over_W;
  if (M <= 0.0) return 0.0;
  return fp::mul(w_over_W, fp::pow(fp::div(R, M), q));
}

struct PowerMean {
  double q = 0.0;
  // w (R / Rmax)^(q+1): at most w.
  EQPM_HD_INLINE double term(double R, double w, double rmax) const {
    return step::power_term(R, w, rmax, q + 1.0);
  }
  // The value from the largest regret, the sum of the terms and the sum of the weights.
  EQPM_HD_INLINE double finish(double rmax, double terms, double wsum) const {
    return step::power_mean_finish(rmax, terms, wsum, q + 1.0);
  }
  // dM_q / dR_n for the agent's weight share w_n / W and the value M_q.
  EQPM_HD_INLINE double weight(double R, double w_over_W, double value) const {
    return agent_weight(R, w_over_W, value, q);
  }
  // weight(R, w, value) / weight(R, w, provisional) for every agent: the CPU's fused pass
  // weighs agents with a provisional value (the previous step's) and rescales the sums.
  double rescale(double provisional, double value) const {
    return q == 0.0 ? 1.0 : std::pow(provisional / value, q);
  }
};

// M_q of n regrets held here (reducer.hpp's objective_value in one place). `weight` may be
// null (all ones). Returns 0 when every R is 0.
inline double power_mean(const double* R, const double* weight, long n, double q) {
  LocalReducer here;
  return objective_value(PowerMean{q}, R, weight, n, here);
}

}  // namespace eqpm
