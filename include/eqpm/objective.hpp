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

// The tilted risk T_t = (1/t) log((1/W) sum_n w_n e^{t R_n}) (TERM, DESIGN.md 5.5) with its
// largest regret factored out: every term w e^{t (R - Rmax)} is at most w, and the weight
// omega_n = (w_n / W) e^{t (R_n - T_t)} is at most W / w_n because T_t >= Rmax + log(w_n/W)/t.
// t -> 0 is the mean, t -> infinity the largest regret; t > 0.
struct Tilt {
  double t = 1.0;
  EQPM_HD_INLINE double term(double R, double w, double rmax) const {
    return fp::mul(w, fp::exp(fp::mul(t, fp::sub(R, rmax))));
  }
  EQPM_HD_INLINE double finish(double rmax, double terms, double wsum) const {
    if (!(rmax > 0.0) || !(wsum > 0.0)) return 0.0;
    return fp::add(rmax, fp::div(fp::log(fp::div(terms, wsum)), t));
  }
  EQPM_HD_INLINE double weight(double R, double w_over_W, double value) const {
    return fp::mul(w_over_W, fp::exp(fp::mul(t, fp::sub(R, value))));
  }
};

// The objectives whose value is one max and one sum of per-agent terms and whose weight is a
// function of the agent's own regret and the value: the device kernels and the CPU's fused
// pass run these. A plain struct (no virtual calls) so that it travels to the GPU by value.
struct FlatObjective {
  enum class Kind : int { power, tilt };
  Kind kind = Kind::power;
  double a = 0.0;  // q of the power mean, t of the tilt

  static FlatObjective power(double q) { return {Kind::power, q}; }
  static FlatObjective tilt(double t) { return {Kind::tilt, t}; }
  EQPM_HD_INLINE double term(double R, double w, double rmax) const {
    return kind == Kind::power ? PowerMean{a}.term(R, w, rmax) : Tilt{a}.term(R, w, rmax);
  }
  EQPM_HD_INLINE double finish(double rmax, double terms, double wsum) const {
    return kind == Kind::power ? PowerMean{a}.finish(rmax, terms, wsum)
                               : Tilt{a}.finish(rmax, terms, wsum);
  }
  EQPM_HD_INLINE double weight(double R, double w_over_W, double value) const {
    return kind == Kind::power ? PowerMean{a}.weight(R, w_over_W, value)
                               : Tilt{a}.weight(R, w_over_W, value);
  }
  // The CPU's fused pass runs the power mean only (a tilt's provisional weights
  // e^{t (R - Tprev)} may overflow).
  double rescale(double provisional, double value) const {
    return PowerMean{a}.rescale(provisional, value);
  }
};

// M_q of n regrets held here (reducer.hpp's objective_value in one place). `weight` may be
// null (all ones). Returns 0 when every R is 0.
inline double power_mean(const double* R, const double* weight, long n, double q) {
  LocalReducer here;
  return objective_value(PowerMean{q}, R, weight, n, here);
}

}  // namespace eqpm
