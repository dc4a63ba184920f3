// The reductions of DESIGN.md 5.2 on the GPU, all in double and all deterministic: a
// reduction over n items runs on a grid that depends on n alone, each block reduces with
// cub::BlockReduce, and a single block adds the per-block partials in a fixed order. No
// floating-point atomics anywhere, so two runs give the same bits.
// Stages: smoothed regrets Rbar, the power means M_q of Rhat and Rbar, agent weights omega,
// the per-class weights and sums of the structured path (5.4), the fixed-order sum of
// per-tile partials, the leave-one-out advantages and the gradient g with respect to mu.
#include <cub/block/block_reduce.cuh>

#include "eqpm/objective.hpp"
#include "eqpm/step_algebra.hpp"
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

using BlockSum = cub::BlockReduce<double, kBlock>;
constexpr int kMaxBases = 4;  // basis regrets per class (RegretStructure::bases)

// max that ignores NaN like the CPU's `r > m ? r : m`.
struct MaxOp {
  __device__ double operator()(double a, double b) const { return b > a ? b : a; }
};

__device__ __forceinline__ long thread_index() {
  return blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ long grid_stride() {
  return static_cast<long>(gridDim.x) * blockDim.x;
}

__global__ void __launch_bounds__(kBlock)
    row_sums_kernel(const float* __restrict__ M, long rows, long cols, double* __restrict__ out) {
  __shared__ typename BlockSum::TempStorage tmp;
  for (long r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* row = M + r * cols;
    double s = 0.0;
    for (long c = threadIdx.x; c < cols; c += kBlock) s += static_cast<double>(row[c]);
    const double total = BlockSum(tmp).Sum(s);
    if (threadIdx.x == 0) out[r] = total;
    __syncthreads();  // tmp is reused for the next row
  }
}

__global__ void structured_mean_regret_kernel(const int* __restrict__ class_of,
                                              const double* __restrict__ coef, int J,
                                              const double* __restrict__ class_total, long n,
                                              double scale, double* __restrict__ rhat) {
  for (long i = thread_index(); i < n; i += grid_stride()) {
    const long c = class_of[i];
    double r = 0.0;
    for (int j = 0; j < J; ++j) r += coef[i * J + j] * class_total[c * J + j];
    rhat[i] = r * scale;
  }
}

__global__ void __launch_bounds__(kBlock)
    agent_stats_kernel(long N, const double* __restrict__ rhat, const double* __restrict__ rbar,
                       double rho, const DeviceState* __restrict__ state,
                       double* __restrict__ rbar_new, double* __restrict__ partials) {
  __shared__ typename BlockSum::TempStorage tmp;
  const bool started = state->rbar_started != 0;
  double max_hat = 0.0, max_bar = 0.0, sum = 0.0, bad = 0.0;
  for (long i = thread_index(); i < N; i += grid_stride()) {
    const double r = rhat[i];
    const double rb = step::smooth(started ? rbar[i] : 0.0, r, rho, started);
    rbar_new[i] = rb;
    max_hat = r > max_hat ? r : max_hat;
    max_bar = rb > max_bar ? rb : max_bar;
    sum += r;
    bad += isfinite(r) ? 0.0 : 1.0;
  }
  double v[4] = {max_hat, max_bar, sum, bad};
  double out[4];
  for (int k = 0; k < 4; ++k) {
    out[k] = k < 2 ? BlockSum(tmp).Reduce(v[k], MaxOp()) : BlockSum(tmp).Sum(v[k]);
    __syncthreads();
  }
  if (threadIdx.x == 0)
    for (int k = 0; k < 4; ++k) partials[blockIdx.x * 4 + k] = out[k];
}

__global__ void __launch_bounds__(kBlock)
    finalize_agent_stats_kernel(const double* __restrict__ partials, int blocks,
                                StepScalars* __restrict__ scalars) {
  __shared__ typename BlockSum::TempStorage tmp;
  double v[4] = {0.0, 0.0, 0.0, 0.0};
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += kBlock) {
    const double* p = partials + b * 4;
    v[0] = p[0] > v[0] ? p[0] : v[0];
    v[1] = p[1] > v[1] ? p[1] : v[1];
    v[2] += p[2];
    v[3] += p[3];
  }
  double out[4];
  for (int k = 0; k < 4; ++k) {
    out[k] = k < 2 ? BlockSum(tmp).Reduce(v[k], MaxOp()) : BlockSum(tmp).Sum(v[k]);
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    scalars->rmax_hat = out[0];
    scalars->rmax_bar = out[1];
    scalars->sum_hat = out[2];
    scalars->nonfinite = out[3];
  }
}

// sum_i w_i (R_i / Rmax)^(q+1) for Rhat and Rbar (step::power_term): every term is at most w_i.
__global__ void __launch_bounds__(kBlock)
    power_sums_kernel(long N, const double* __restrict__ rhat,
                      const double* __restrict__ rbar_new, const double* __restrict__ w,
                      FlatObjective f, const StepScalars* __restrict__ scalars,
                      double* __restrict__ partials) {
  __shared__ typename BlockSum::TempStorage tmp;
  const double mh = scalars->rmax_hat, mb = scalars->rmax_bar;
  double ah = 0.0, ab = 0.0;
  for (long i = thread_index(); i < N; i += grid_stride()) {
    if (mh > 0.0) ah += f.term(rhat[i], w[i], mh);
    if (mb > 0.0) ab += f.term(rbar_new[i], w[i], mb);
  }
  const double sh = BlockSum(tmp).Sum(ah);
  __syncthreads();
  const double sb = BlockSum(tmp).Sum(ab);
  if (threadIdx.x == 0) {
    partials[blockIdx.x * 2] = sh;
    partials[blockIdx.x * 2 + 1] = sb;
  }
}

__global__ void __launch_bounds__(kBlock)
    finalize_power_means_kernel(const double* __restrict__ partials, int blocks, double wsum,
                                FlatObjective f, StepScalars* __restrict__ scalars) {
  __shared__ typename BlockSum::TempStorage tmp;
  double ah = 0.0, ab = 0.0;
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += kBlock) {
    ah += partials[b * 2];
    ab += partials[b * 2 + 1];
  }
  const double sh = BlockSum(tmp).Sum(ah);
  __syncthreads();
  const double sb = BlockSum(tmp).Sum(ab);
  if (threadIdx.x == 0) {
    scalars->mhat = f.finish(scalars->rmax_hat, sh, wsum);
    scalars->mbar = f.finish(scalars->rmax_bar, sb, wsum);
  }
}

__global__ void agent_weights_kernel(long N, const double* __restrict__ rbar_new,
                                     const double* __restrict__ w_over_W, FlatObjective f,
                                     const StepScalars* __restrict__ scalars,
                                     double* __restrict__ omega) {
  const double mbar = scalars->mbar;
  for (long i = thread_index(); i < N; i += grid_stride())
    omega[i] = f.weight(rbar_new[i], w_over_W[i], mbar);
}

// Wpart[c][j][split] = sum over the split-th fixed slice of class c's agents of omega * coef_j:
// large classes spread over `splits` blocks, and the slices are added in order below.
__global__ void __launch_bounds__(kBlock)
    class_weight_partials_kernel(const std::int64_t* __restrict__ seg, int classes, int J,
                                 int splits, const double* __restrict__ omega,
                                 const double* __restrict__ coef, double* __restrict__ Wpart) {
  __shared__ typename BlockSum::TempStorage tmp;
  const long work = static_cast<long>(classes) * splits;
  for (long item = blockIdx.x; item < work; item += gridDim.x) {
    const int c = static_cast<int>(item / splits);
    const int split = static_cast<int>(item - static_cast<long>(c) * splits);
    const long size = seg[c + 1] - seg[c];
    const long i0 = seg[c] + size * split / splits;
    const long i1 = seg[c] + size * (split + 1) / splits;
    double s[kMaxBases] = {0.0, 0.0, 0.0, 0.0};
    for (long i = i0 + threadIdx.x; i < i1; i += kBlock) {
      const double w = omega[i];
      for (int j = 0; j < J; ++j) s[j] += w * coef[i * J + j];
    }
    for (int j = 0; j < J; ++j) {
      const double total = BlockSum(tmp).Sum(s[j]);
      if (threadIdx.x == 0) Wpart[(static_cast<long>(c) * J + j) * splits + split] = total;
      __syncthreads();
    }
  }
}

__global__ void class_weights_kernel(const double* __restrict__ Wpart, long K, int splits,
                                     double* __restrict__ Wc) {
  for (long k = thread_index(); k < K; k += grid_stride()) {
    double s = 0.0;
    for (int split = 0; split < splits; ++split) s += Wpart[k * splits + split];
    Wc[k] = s;
  }
}

__global__ void combine_classes_kernel(const double* __restrict__ Wc, int K,
                                       const float* __restrict__ M, long L, double scale,
                                       int chunks, double* __restrict__ partial) {
  const int chunk = static_cast<int>(blockIdx.y);
  const long k0 = static_cast<long>(K) * chunk / chunks, k1 = static_cast<long>(K) * (chunk + 1) / chunks;
  for (long l = thread_index(); l < L; l += grid_stride()) {
    double acc = 0.0;
    for (long k = k0; k < k1; ++k) acc += Wc[k] * static_cast<double>(M[k * L + l]);
    partial[chunk * L + l] = scale * acc;
  }
}

__global__ void sum_partials_kernel(const double* __restrict__ partial, int slabs, long L,
                                    double* __restrict__ out) {
  for (long l = thread_index(); l < L; l += grid_stride()) {
    double s = 0.0;
    for (int k = 0; k < slabs; ++k) s += partial[k * L + l];
    out[l] = s;
  }
}

// A[b, s] from X = sum_n omega_n r (step::advantage: the baseline applied once, to X).
__global__ void advantages_kernel(const double* __restrict__ X, int B, int S, bool antithetic,
                                  double* __restrict__ A) {
  const long n = static_cast<long>(B) * S;
  for (long i = thread_index(); i < n; i += grid_stride()) {
    const double* row = X + (i / S) * S;
    double total = 0.0;
    if (!antithetic)
      for (int s = 0; s < S; ++s) total = fp::add(total, row[s]);
    A[i] = step::advantage(X[i], total, S, antithetic);
  }
}

// g = d loss / d mu (step::grad_mu), the CPU's expressions in the CPU's order.
__global__ void assemble_g_kernel(int B, int S, int H, bool equitable,
                                  const double* __restrict__ A, const float* __restrict__ eps,
                                  const double* __restrict__ G, const float* __restrict__ mu,
                                  const float* __restrict__ y,
                                  const StepParams* __restrict__ params,
                                  const StepScalars* __restrict__ scalars,
                                  double* __restrict__ g) {
  const step::GradCoefficients c = step::grad_coefficients(
      equitable, params->beta, scalars->mbar, scalars->msebar_new, B, S, H, params->sigma);
  const long n = static_cast<long>(B) * H;
  for (long i = thread_index(); i < n; i += grid_stride()) {
    const long b = i / H;
    const long h = i - b * H;
    double score = 0.0;
    if (equitable)
      for (int s = 0; s < S; ++s)
        score = step::score_add(score, A[b * S + s], eps[(b * S + s) * H + h]);
    g[i] = step::grad_mu(c, score, equitable ? G[i] : 0.0, mu[i], y[i]);
  }
}

}  // namespace

void launch_row_sums(const float* M, long rows, long cols, double* out, cudaStream_t stream) {
  if (rows <= 0) return;
  if (!M || !out || cols < 1) throw Error("launch_row_sums: bad arguments");
  const unsigned blocks = static_cast<unsigned>(rows < 4096 ? rows : 4096);
  row_sums_kernel<<<blocks, kBlock, 0, stream>>>(M, rows, cols, out);
  EQPM_CUDA_CHECK_LAUNCH("row_sums_kernel", blocks, kBlock, 0);
}

void launch_structured_mean_regret(const int* class_of, const double* coef, int J,
                                   const double* class_total, long n, double scale,
                                   double* rhat, cudaStream_t stream) {
  if (n <= 0) return;
  if (!class_of || !coef || !class_total || !rhat || J < 1 || J > kMaxBases)
    throw Error("launch_structured_mean_regret: bad arguments");
  structured_mean_regret_kernel<<<grid_for(n), kBlock, 0, stream>>>(class_of, coef, J,
                                                                    class_total, n, scale, rhat);
  EQPM_CUDA_CHECK_LAUNCH("structured_mean_regret_kernel", grid_for(n), kBlock, 0);
}

void launch_agent_stats(long N, const double* rhat, const double* rbar, double rho,
                        const DeviceState* state, double* rbar_new, double* partials,
                        cudaStream_t stream) {
  if (N < 1 || !rhat || !rbar || !state || !rbar_new || !partials)
    throw Error("launch_agent_stats: bad arguments");
  agent_stats_kernel<<<reduction_blocks(N), kBlock, 0, stream>>>(N, rhat, rbar, rho, state,
                                                                 rbar_new, partials);
  EQPM_CUDA_CHECK_LAUNCH("agent_stats_kernel", reduction_blocks(N), kBlock, 0);
}

void launch_finalize_agent_stats(const double* partials, int blocks, StepScalars* scalars,
                                 cudaStream_t stream) {
  if (!partials || !scalars || blocks < 1) throw Error("launch_finalize_agent_stats: bad arguments");
  finalize_agent_stats_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, scalars);
  EQPM_CUDA_CHECK_LAUNCH("finalize_agent_stats_kernel", 1, kBlock, 0);
}

void launch_power_sums(long N, const double* rhat, const double* rbar_new, const double* w,
                       FlatObjective f, const StepScalars* scalars, double* partials,
                       cudaStream_t stream) {
  if (N < 1 || !rhat || !rbar_new || !w || !scalars || !partials || !(f.a >= 0))
    throw Error("launch_power_sums: bad arguments");
  power_sums_kernel<<<reduction_blocks(N), kBlock, 0, stream>>>(N, rhat, rbar_new, w,
                                                                f, scalars, partials);
  EQPM_CUDA_CHECK_LAUNCH("power_sums_kernel", reduction_blocks(N), kBlock, 0);
}

void launch_finalize_power_means(const double* partials, int blocks, double wsum, FlatObjective f,
                                 StepScalars* scalars, cudaStream_t stream) {
  if (!partials || !scalars || blocks < 1) throw Error("launch_finalize_power_means: bad arguments");
  finalize_power_means_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, wsum, f,
                                                        scalars);
  EQPM_CUDA_CHECK_LAUNCH("finalize_power_means_kernel", 1, kBlock, 0);
}

void launch_agent_weights(long N, const double* rbar_new, const double* w_over_W, FlatObjective f,
                          const StepScalars* scalars, double* omega, cudaStream_t stream) {
  if (N < 1 || !rbar_new || !w_over_W || !scalars || !omega)
    throw Error("launch_agent_weights: bad arguments");
  agent_weights_kernel<<<grid_for(N), kBlock, 0, stream>>>(N, rbar_new, w_over_W, f,
                                                           scalars, omega);
  EQPM_CUDA_CHECK_LAUNCH("agent_weights_kernel", grid_for(N), kBlock, 0);
}

void launch_class_weights(const std::int64_t* seg, int classes, int J, int splits,
                          const double* omega, const double* coef, double* Wpart, double* Wc,
                          cudaStream_t stream) {
  if (classes <= 0) return;
  if (!seg || !omega || !coef || !Wpart || !Wc || J < 1 || J > kMaxBases || splits < 1 ||
      splits > kMaxClassSplits)
    throw Error("launch_class_weights: bad arguments");
  const long work = static_cast<long>(classes) * splits;
  const unsigned blocks = static_cast<unsigned>(work < 8192 ? work : 8192);
  class_weight_partials_kernel<<<blocks, kBlock, 0, stream>>>(seg, classes, J, splits, omega,
                                                              coef, Wpart);
  EQPM_CUDA_CHECK_LAUNCH("class_weight_partials_kernel", blocks, kBlock, 0);
  const long K = static_cast<long>(classes) * J;
  class_weights_kernel<<<grid_for(K), kBlock, 0, stream>>>(Wpart, K, splits, Wc);
  EQPM_CUDA_CHECK_LAUNCH("class_weights_kernel", grid_for(K), kBlock, 0);
}

void launch_combine_classes(const double* Wc, int K, const float* M, long L, double scale,
                            int chunks, double* partial, cudaStream_t stream) {
  if (K <= 0 || L <= 0) return;
  if (!Wc || !M || !partial || chunks < 1 || chunks > K || chunks > 65535)
    throw Error("launch_combine_classes: bad arguments");
  const dim3 grid(grid_for(L), static_cast<unsigned>(chunks));
  combine_classes_kernel<<<grid, kBlock, 0, stream>>>(Wc, K, M, L, scale, chunks, partial);
  EQPM_CUDA_CHECK_LAUNCH("combine_classes_kernel", grid, kBlock, 0);
}

void launch_sum_partials(const double* partial, int slabs, long L, double* out,
                         cudaStream_t stream) {
  if (L <= 0) return;
  if (!out || slabs < 0 || (slabs > 0 && !partial)) throw Error("launch_sum_partials: bad arguments");
  sum_partials_kernel<<<grid_for(L), kBlock, 0, stream>>>(partial, slabs, L, out);
  EQPM_CUDA_CHECK_LAUNCH("sum_partials_kernel", grid_for(L), kBlock, 0);
}

void launch_advantages(const double* X, int B, int S, bool antithetic, double* A,
                       cudaStream_t stream) {
  if (!X || !A || B < 1 || S < 2) throw Error("launch_advantages: bad arguments");
  advantages_kernel<<<grid_for(static_cast<long>(B) * S), kBlock, 0, stream>>>(X, B, S,
                                                                               antithetic, A);
  EQPM_CUDA_CHECK_LAUNCH("advantages_kernel", grid_for(static_cast<long>(B) * S), kBlock, 0);
}

void launch_assemble_g(int B, int S, int H, bool equitable, const double* A,
                       const float* eps, const double* G, const float* mu, const float* y,
                       const StepParams* params, const StepScalars* scalars, double* g,
                       cudaStream_t stream) {
  if (B < 1 || H < 1 || !mu || !y || !params || !scalars || !g ||
      (equitable && (S < 1 || !A || !eps || !G)))
    throw Error("launch_assemble_g: bad arguments");
  assemble_g_kernel<<<grid_for(static_cast<long>(B) * H), kBlock, 0, stream>>>(
      B, S, H, equitable, A, eps, G, mu, y, params, scalars, g);
  EQPM_CUDA_CHECK_LAUNCH("assemble_g_kernel", grid_for(static_cast<long>(B) * H), kBlock, 0);
}

}  // namespace eqpm::cuda
