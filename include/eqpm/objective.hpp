// The equitable objective (DESIGN.md 5.1, 5.2): the weighted power mean
// M_q = ((1/W) sum_n w_n R_n^{q+1})^{1/(q+1)} and its gradient weights
// omega_n = (w_n / W) (R_n / M_q)^q. Everything in double; the ratio R_n / M_q is at most
// (W / w_n)^{1/(q+1)}, so omega_n <= 1 and nothing overflows even for q = 40.
#pragma once

#include <cmath>

#include "eqpm/hd.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm {

// Numerically safe power mean: factor out the largest R so every term is <= 1, with the
// pieces of step_algebra.hpp that the kernels use. `weight` may be null (all ones).
// Returns 0 when every R is 0.
inline double power_mean(const double* R, const double* weight, long n, double q) {
  double rmax = 0.0, wsum = 0.0;
  for (long i = 0; i < n; ++i) {
    rmax = R[i] > rmax ? R[i] : rmax;
    wsum += weight ? weight[i] : 1.0;
  }
  if (rmax <= 0.0 || wsum <= 0.0) return 0.0;
  const double p = q + 1.0;
  double acc = 0.0;
  for (long i = 0; i < n; ++i) acc += step::power_term(R[i], weight ? weight[i] : 1.0, rmax, p);
  return step::power_mean_finish(rmax, acc, wsum, p);
}

// omega_n = (w_n / W) (R_n / M)^q for a precomputed power mean M > 0.
EQPM_HD_INLINE double agent_weight(double R, double w_over_W, double M, double q) {
  if (q == 0.0) return w_over_W;
  if (M <= 0.0) return 0.0;
  return fp::mul(w_over_W, fp::pow(fp::div(R, M), q));
}

}  // namespace eqpm
