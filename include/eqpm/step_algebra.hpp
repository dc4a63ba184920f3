// The algebra of one training step (DESIGN.md 5.2), written once: the pieces that the CPU
// backend (host/cpu/cpu_backend.cpp) and the CUDA kernels (kernels/reductions.cu, backward.cu,
// adam.cu) both call, so the two executors cannot drift apart. A backend only decides how
// a stage runs (loops and threads, or kernels); the expressions, their order of operations
// and their rounding are these.
//
// Rounding: host code is built without floating-point contraction (CMakeLists.txt), and
// nvcc contracts a * b + c into one fused multiply-add unless told not to. Every product
// and sum below therefore goes through fp::, which is the plain operator on the host and
// the correctly rounded intrinsic (__dmul_rn, __fadd_rn, ...) on the device: the same
// expression gives the same bits on both.
#pragma once

#include <cmath>

#include "eqpm/hd.hpp"

namespace eqpm {

namespace fp {
#if defined(__CUDA_ARCH__)
EQPM_HD_INLINE double add(double a, double b) { return __dadd_rn(a, b); }
EQPM_HD_INLINE double sub(double a, double b) { return __dsub_rn(a, b); }
EQPM_HD_INLINE double mul(double a, double b) { return __dmul_rn(a, b); }
EQPM_HD_INLINE double div(double a, double b) { return __ddiv_rn(a, b); }
EQPM_HD_INLINE float add(float a, float b) { return __fadd_rn(a, b); }
EQPM_HD_INLINE float sub(float a, float b) { return __fsub_rn(a, b); }
EQPM_HD_INLINE float mul(float a, float b) { return __fmul_rn(a, b); }
EQPM_HD_INLINE float div(float a, float b) { return __fdiv_rn(a, b); }
EQPM_HD_INLINE float sqrt(float a) { return __fsqrt_rn(a); }
EQPM_HD_INLINE double pow(double a, double b) { return ::pow(a, b); }
EQPM_HD_INLINE double exp(double a) { return ::exp(a); }
EQPM_HD_INLINE double log(double a) { return ::log(a); }
EQPM_HD_INLINE bool finite(double a) { return isfinite(a); }
#else
EQPM_HD_INLINE double add(double a, double b) { return a + b; }
EQPM_HD_INLINE double sub(double a, double b) { return a - b; }
EQPM_HD_INLINE double mul(double a, double b) { return a * b; }
EQPM_HD_INLINE double div(double a, double b) { return a / b; }
EQPM_HD_INLINE float add(float a, float b) { return a + b; }
EQPM_HD_INLINE float sub(float a, float b) { return a - b; }
EQPM_HD_INLINE float mul(float a, float b) { return a * b; }
EQPM_HD_INLINE float div(float a, float b) { return a / b; }
EQPM_HD_INLINE float sqrt(float a) { return std::sqrt(a); }
EQPM_HD_INLINE double pow(double a, double b) { return std::pow(a, b); }
EQPM_HD_INLINE double exp(double a) { return std::exp(a); }
EQPM_HD_INLINE double log(double a) { return std::log(a); }
EQPM_HD_INLINE bool finite(double a) { return std::isfinite(a); }
#endif
}  // namespace fp

namespace step {

// ---- smoothing ----------------------------------------------------------------------------

// Rbar_n <- rho Rbar_n + (1 - rho) Rhat_n; the first equitable step takes Rhat_n as is.
EQPM_HD_INLINE double smooth(double previous, double current, double rho, bool started) {
  return started ? fp::add(fp::mul(rho, previous), fp::mul(1.0 - rho, current)) : current;
}

// ---- the power mean M_q = ((1/W) sum_n w_n R_n^p)^(1/p), p = q + 1 (objective.hpp) -------
// Two passes over the agents: the largest R (any order: max is exact), then the sum of the
// terms below in a fixed order, then `power_mean_finish`. Each term is at most w_n.

EQPM_HD_INLINE double power_term(double R, double w, double rmax, double p) {
  const double x = fp::div(R, rmax);
  return fp::mul(w, p == 1.0 ? x : fp::pow(x, p));
}

// 0 when every R is 0 (rmax = 0) or the weights sum to 0.
EQPM_HD_INLINE double power_mean_finish(double rmax, double term_sum, double wsum, double p) {
  if (!(rmax > 0.0) || !(wsum > 0.0)) return 0.0;
  return fp::mul(rmax, fp::pow(fp::div(term_sum, wsum), 1.0 / p));
}

// ---- advantages ---------------------------------------------------------------------------

// A_{b,s} from X_{b,s} = sum_n omega_n r_{n,b,s} and the row total T_b = sum_s' X_{b,s'}
// (summed s' = 0 .. S-1 from 0.0). The leave-one-out baseline is linear in r, so it is
// applied once here, to X, rather than agent by agent: sum_n omega_n (r - base) =
// X - (T - X) / (S - 1). With antithetic pairs there is no baseline (5.2).
EQPM_HD_INLINE double advantage(double x, double row_total, int S, bool antithetic) {
  if (antithetic) return x;
  return fp::sub(x, fp::div(fp::sub(row_total, x), static_cast<double>(S - 1)));
}

// One row X_{b,0..S-1} of independent samples turned into its advantages in place: the row
// total summed s = 0 .. S-1 from 0.0, then advantage() of each sample.
EQPM_HD_INLINE void advantage_row(double* row, int S) {
  double total = 0.0;
  for (int s = 0; s < S; ++s) total += row[s];
  for (int s = 0; s < S; ++s) row[s] = advantage(row[s], total, S, false);
}

// ---- the gradient with respect to mu --------------------------------------------------------

// g_{b,h} = (1 - beta) / Mbar * (score_{b,h} / (B S sigma) + G_{b,h})
//           + beta * 2 (mu - y) / (B H MSEbar),
// score_{b,h} = sum_s A_{b,s} eps_{b,s,h} (accumulated with `score_add`, s in order).
struct GradCoefficients {
  double regret = 0.0;    // (1 - beta) / Mbar; 0 without a regret term
  double inv_bss = 0.0;   // 1 / (B S sigma)
  double accuracy = 0.0;  // beta 2 / (B H MSEbar)
  bool equitable = false; // a regret term (beta < 1)
  bool accurate = false;  // an accuracy term (beta > 0, MSEbar started)
};

EQPM_HD_INLINE GradCoefficients grad_coefficients(bool equitable, double beta, double mbar,
                                                  double msebar, int B, int S, int H,
                                                  float sigma) {
  GradCoefficients c;
  c.equitable = equitable;
  if (equitable) {
    c.regret = mbar > 0 ? (1.0 - beta) / mbar : 0.0;
    c.inv_bss = 1.0 / (static_cast<double>(B) * S * static_cast<double>(sigma));
  }
  if (beta > 0 && msebar > 0) {
    c.accurate = true;
    c.accuracy = beta * 2.0 / (static_cast<double>(B) * H * msebar);
  }
  return c;
}

EQPM_HD_INLINE double score_add(double score, double advantage, float eps) {
  return fp::add(score, fp::mul(advantage, static_cast<double>(eps)));
}

EQPM_HD_INLINE double grad_mu(const GradCoefficients& c, double score, double G, float mu, float y) {
  double g = 0.0;
  if (c.equitable) g = fp::mul(c.regret, fp::add(fp::mul(score, c.inv_bss), G));
  if (c.accurate)
    g = fp::add(g, fp::mul(c.accuracy, fp::sub(static_cast<double>(mu), static_cast<double>(y))));
  return g;
}

// ---- loss, the numerical guard and clipping -------------------------------------------------

// (1 - beta) Mhat / Mbar + beta MSE / MSEbar, each term only where it is defined.
EQPM_HD_INLINE double loss(bool equitable, double beta, double mhat, double mbar, double mse,
                           double msebar) {
  return (equitable && mbar > 0 ? (1 - beta) * mhat / mbar : 0.0) +
         (msebar > 0 ? beta * mse / msebar : 0.0);
}

// A step may change the state only when everything it would commit is finite.
EQPM_HD_INLINE bool finite_step(double loss, double grad_norm, double mse, bool equitable,
                                bool regrets_finite, double mbar) {
  return fp::finite(loss) && fp::finite(grad_norm) && fp::finite(mse) &&
         (!equitable || (regrets_finite && fp::finite(mbar)));
}

// Global-norm clipping factor; 1 when clipping is off (grad_clip = 0) or not needed.
EQPM_HD_INLINE float clip_factor(double grad_norm, double grad_clip) {
  return grad_norm > grad_clip && grad_clip > 0 ? static_cast<float>(grad_clip / grad_norm) : 1.0f;
}

// ---- Adam (with decoupled weight decay), in float ------------------------------------------

// The per-step constants, rounded to float once (on the host, for both backends).
struct AdamStep {
  float beta1 = 0.9f, beta2 = 0.999f, one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;
  float eps = 1e-8f;
  float lr = 0.0f;
  float c1 = 1.0f, c2 = 1.0f;  // bias corrections 1 / (1 - beta^t)
  float decay = 0.0f;          // lr x weight decay; 0: none
};

// `t` is the Adam step count after this step (1 for the first).
inline AdamStep adam_step(double beta1, double beta2, double eps, double lr, double weight_decay,
                          double t) {
  AdamStep a;
  a.beta1 = static_cast<float>(beta1);
  a.beta2 = static_cast<float>(beta2);
  a.one_minus_beta1 = 1.0f - a.beta1;
  a.one_minus_beta2 = 1.0f - a.beta2;
  a.eps = static_cast<float>(eps);
  a.lr = static_cast<float>(lr);
  a.c1 = static_cast<float>(1.0 / (1.0 - std::pow(beta1, t)));
  a.c2 = static_cast<float>(1.0 / (1.0 - std::pow(beta2, t)));
  a.decay = static_cast<float>(lr * weight_decay);
  return a;
}

// m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;
// theta -= lr (m c1) / (sqrt(v c2) + eps), then theta -= decay x the theta before the step.
EQPM_HD_INLINE void adam_update(const AdamStep& a, float grad, float clip, float& theta, float& m,
                                float& v) {
  const float g = fp::mul(grad, clip);
  m = fp::add(fp::mul(a.beta1, m), fp::mul(a.one_minus_beta1, g));
  v = fp::add(fp::mul(a.beta2, v), fp::mul(fp::mul(a.one_minus_beta2, g), g));
  const float num = fp::mul(a.lr, fp::mul(m, a.c1));
  const float den = fp::add(fp::sqrt(fp::mul(v, a.c2)), a.eps);
  const float before = theta;
  const float after = fp::sub(before, fp::div(num, den));
  theta = a.decay != 0.0f ? fp::sub(after, fp::mul(a.decay, before)) : after;
}

}  // namespace step
}  // namespace eqpm
