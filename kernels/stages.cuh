// The stages of a CUDA training step (DESIGN.md 5.2, 5.3, 5.4) as launchers, and the small
// structs they share. Each stage lives in its own .cu (kernels first, launchers after); a
// launcher takes the stream last, checks its arguments, launches and checks the launch.
// Families are addressed by their slot in the `Families` list: the launchers dispatch to the
// kernel templates of that family, so adding a family to the list instantiates every kernel
// for it without touching this file.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.hpp"
#include "launch_config.hpp"
#include "eqpm/families.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/step_algebra.hpp"

namespace eqpm::cuda {

// ------------------------------------------------------------------ shared device structs

// What changes from one step to the next, uploaded before the step's kernels run, so a
// captured CUDA graph replays with new values. The batch's row indices follow the struct in
// the same allocation (see step_rows()).
struct StepParams {
  std::uint32_t step = 0;  // RNG counter of the perturbations
  std::int32_t batch = 0;  // B
  double beta = 0.0;       // accuracy weight
  step::AdamStep adam;     // Adam's constants for the step being taken (step_algebra.hpp)
  float sigma = 0.0f;      // policy noise of this step (DESIGN.md 5.3a schedule)
};
inline constexpr std::size_t kStepRowsOffset = 64;  // bytes; rows are std::int64_t
static_assert(sizeof(StepParams) <= kStepRowsOffset);

// Results of a step, produced on the device and read back once at its end.
struct StepScalars {
  double mse = 0, msebar_new = 0;                 // minibatch MSE and the smoothed MSEbar
  double rmax_hat = 0, rmax_bar = 0, sum_hat = 0;  // max of Rhat, of Rbar, sum of Rhat
  double nonfinite = 0;                            // count of non-finite Rhat
  double mhat = 0, mbar = 0;                       // power means of Rhat and Rbar
  double grad_norm = 0, loss = 0;
  float clip = 1.0f;                               // global-norm clipping factor
  std::int32_t finite = 1;                         // 0: nothing may be committed
};

// Smoothing state that lives on the device between steps.
struct DeviceState {
  double msebar = 0.0;           // 0: not started
  std::int32_t rbar_started = 0;  // 0: the first equitable step sets Rbar = Rhat
  std::int32_t reserved = 0;
};

// The (input, sample) pairs a regret stage evaluates: samples rows of H predictions per input
// (row b * samples + s of v), one truth row and one time index per input. Evaluation uses
// samples = 1 with the deterministic predictions.
struct SampleSet {
  const float* v = nullptr;
  const float* y = nullptr;
  const std::int64_t* t = nullptr;
  int inputs = 0;
  int samples = 0;
  int horizon = 0;
  // For EV agents under --ev-gradient conditional (EvCharging::add_dregret_conditional): the
  // mean forecasts (inputs x horizon) and the step's sigma, read on the device because it
  // changes from one replay of a graph to the next. Null when EV agents learn otherwise.
  const float* mu = nullptr;
  const float* sigma = nullptr;
  __host__ __device__ long pairs() const { return static_cast<long>(inputs) * samples; }
  __host__ __device__ bool conditional() const { return mu != nullptr && sigma != nullptr; }
};

// ------------------------------------------------------------------ launch helpers

// kBlock, grid_for, reduction_blocks and the shape-dependent configurations live in
// launch_config.hpp (plain C++, checked by a host test).

// Calls fn(F{}) for the family in slot `slot` of the registry.
template <class Fn>
void for_family(int slot, Fn&& fn) {
  int i = 0;
  bool found = false;
  Families::for_each([&](auto fam) {
    if (i++ == slot) {
      fn(fam);
      found = true;
    }
  });
  if (!found) throw Error("CUDA backend: no family in slot " + std::to_string(slot));
}

// ------------------------------------------------------------------ MLP forward (mlp_forward.cu)

// fused_shared: one kernel for all layers, activations and weight tiles in shared memory
// (every width <= kFusedMaxWidth). per_layer_global: one simple kernel per layer reading
// global memory, for wider layers. Both accumulate each dot product in input order with
// correctly rounded float operations, like the CPU reference.
enum class ForwardKernel { fused_shared, per_layer_global };
ForwardKernel choose_forward_kernel(const MlpLayout& L);

// mu (n_rows x H) and pre (n_rows x activation_count, layer by layer) of dataset rows rows[].
void launch_mlp_forward(ForwardKernel kind, const MlpLayout& L, const float* params,
                        const float* x_all, const std::int64_t* rows, int n_rows, float* pre,
                        float* mu, cudaStream_t stream);

// ------------------------------------------------------------------ sampling (sampling.cu)

// y (B x H), t (B) and, when x_b is non-null, the inputs in double (B x in_dim) of rows[].
void launch_gather_rows(const std::int64_t* rows, int n_rows, const float* x_all,
                        const float* y_all, const std::int64_t* t_all, int in_dim, int H,
                        float* y_b, std::int64_t* t_b, double* x_b, cudaStream_t stream);

// eps (B x S x H) from Philox with the CPU's counters and yhat = mu + sigma eps.
void launch_perturbations(std::uint64_t seed, const StepParams* params, int B, int S, int H,
                          bool antithetic, const float* mu, float* eps, float* yhat,
                          cudaStream_t stream);

// scalars->mse and ->msebar_new from mu and y (B x H).
void launch_batch_mse(const float* mu, const float* y, int B, int H, double rho,
                      const DeviceState* state, StepScalars* scalars, cudaStream_t stream);

// ------------------------------------------------------------------ regrets (regrets.cu)

// out[i] = (mul * sum over pairs of regret_i) / div for the n agents of `family`; sums in
// double in pair order (the CPU's order), one thread per agent.
void launch_mean_regret(int family, const void* params, long n, const SampleSet& set,
                        const RegretContext& ctx, double mul, double div, double* out,
                        cudaStream_t stream);

// Score-function partials: partial[tile][pair] = sum over the tile's agents of
// omega_i * regret_i(pair); agents split into `tiles` fixed contiguous ranges.
void launch_score_partials(int family, const void* params, long n, const double* omega,
                           int tiles, const SampleSet& set, const RegretContext& ctx,
                           double* partial, cudaStream_t stream);

// Pathwise partials: partial[tile][b][h] = sum over the tile's agents of
// omega_i * scale * sum_s d regret_i / d v_h at (b, s); for EV agents (set.conditional()
// only) the conditional gradient in place of the derivative they do not have.
void launch_pathwise_partials(int family, const void* params, long n, const double* omega,
                              int tiles, double scale, const SampleSet& set,
                              const RegretContext& ctx, double* partial, cudaStream_t stream);

// 5.4: regrets of the K class representatives ("unit" agents): E[k][pair].
void launch_class_regrets(int family, const void* units, int K, const SampleSet& set,
                          const RegretContext& ctx, float* E, cudaStream_t stream);
// dE[k][b][h] = sum_s d regret_k / d v_h at (b, s), in sample order (in float; for EV
// classes, set.conditional() only, the conditional gradient summed in double).
void launch_class_dregrets(int family, const void* units, int K, const SampleSet& set,
                           const RegretContext& ctx, float* dE, cudaStream_t stream);

// ------------------------------------------------------------------ reductions (reductions.cu)

// out[r] = sum over c of M[r][c] in double (rows x cols, one block per row).
void launch_row_sums(const float* M, long rows, long cols, double* out, cudaStream_t stream);

// rhat[i] = scale * sum_j coef[i][j] * class_total[class_of[i]][j].
void launch_structured_mean_regret(const int* class_of, const double* coef, int J,
                                   const double* class_total, long n, double scale,
                                   double* rhat, cudaStream_t stream);

// Rbar_new (smoothing), and per-block partials of max Rhat, max Rbar, sum Rhat, #non-finite.
void launch_agent_stats(long N, const double* rhat, const double* rbar, double rho,
                        const DeviceState* state, double* rbar_new, double* partials,
                        cudaStream_t stream);
void launch_finalize_agent_stats(const double* partials, int blocks, StepScalars* scalars,
                                 cudaStream_t stream);
// A flat objective (power mean or tilt, objective.hpp) of Rhat and Rbar (weights w, sum wsum),
// with their maxima factored out.
void launch_power_sums(long N, const double* rhat, const double* rbar_new, const double* w,
                       FlatObjective f, const StepScalars* scalars, double* partials,
                       cudaStream_t stream);
void launch_finalize_power_means(const double* partials, int blocks, double wsum, FlatObjective f,
                                 StepScalars* scalars, cudaStream_t stream);
// omega_i = f.weight(Rbar_i, w_i / W, Mbar).
void launch_agent_weights(long N, const double* rbar_new, const double* w_over_W, FlatObjective f,
                          const StepScalars* scalars, double* omega, cudaStream_t stream);
// Wc[c][j] = sum over the agents of class c (the range seg[c] .. seg[c+1]) of omega * coef_j,
// each class cut into `splits` fixed slices whose partials Wpart (classes x J x splits) are
// added in order: large classes spread over many blocks.
inline constexpr int kMaxClassSplits = 32;
void launch_class_weights(const std::int64_t* seg, int classes, int J, int splits,
                          const double* omega, const double* coef, double* Wpart, double* Wc,
                          cudaStream_t stream);
// partial[chunk][l] = scale * sum over k in chunk of Wc[k] * M[k][l] (K rows split in chunks).
void launch_combine_classes(const double* Wc, int K, const float* M, long L, double scale,
                            int chunks, double* partial, cudaStream_t stream);
// out[l] = sum over slabs (in slab order) of partial[slab][l]; zero when slabs == 0.
void launch_sum_partials(const double* partial, int slabs, long L, double* out,
                         cudaStream_t stream);
// A = X minus the leave-one-out baseline (none with antithetic pairs).
void launch_advantages(const double* X, int B, int S, bool antithetic, double* A,
                       cudaStream_t stream);
// g = d loss / d mu (B x H): the regret terms (when equitable) plus the accuracy term.
void launch_assemble_g(int B, int S, int H, bool equitable, const double* A,
                       const float* eps, const double* G, const float* mu, const float* y,
                       const StepParams* params, const StepScalars* scalars, double* g,
                       cudaStream_t stream);

// ------------------------------------------------------------------ backward (backward.cu)

// Scratch of the backward pass, all in double: activations act (B x activation_count, the
// layout of pre), two delta buffers (B x max width) and the parameters as doubles.
struct BackwardBuffers {
  const double* x = nullptr;  // B x input_dim
  double* act = nullptr;
  double* delta0 = nullptr;
  double* delta1 = nullptr;
  double* params = nullptr;
};
// grad (P, double) = d loss / d theta for g = d loss / d mu; cuBLAS for the dense products.
void mlp_backward(cublasHandle_t handle, const MlpLayout& L, int B, const float* params_f,
                  const float* pre, const double* g, const BackwardBuffers& buf, double* grad,
                  cudaStream_t stream);
// grad_f = float(grad) and per-block partials (sum of grad^2, count of entries beyond float).
void launch_grad_norm_partials(const double* grad, long P, float* grad_f, double* partials,
                               cudaStream_t stream);
// grad_norm (infinite when a float gradient overflowed), clip factor, loss and the step's
// finite flag.
void launch_finalize_step(const double* partials, int blocks, double grad_clip, bool equitable,
                          const StepParams* params, StepScalars* scalars, cudaStream_t stream);

// ------------------------------------------------------------------ optimiser (adam.cu)

// Adam on the clipped float gradient, skipped when the step is not finite.
void launch_adam(long P, const StepParams* params,
                 const StepScalars* scalars, const float* grad, float* theta, float* m, float* v,
                 cudaStream_t stream);
// Commits Rbar and MSEbar of a finite step.
void launch_commit(long N, bool equitable, const StepScalars* scalars, const double* rbar_new,
                   double* rbar, DeviceState* state, cudaStream_t stream);

// ------------------------------------------------------------------ evaluation (evaluate.cu)

// Per-block partials of sum (mu - y)^2 and sum |mu - y| over n values.
void launch_error_partials(const float* mu, const float* y, long n, double* partials,
                           cudaStream_t stream);
// out[0] = sum of squared errors, out[1] = sum of absolute errors.
void launch_finalize_errors(const double* partials, int blocks, double* out,
                            cudaStream_t stream);

}  // namespace eqpm::cuda
