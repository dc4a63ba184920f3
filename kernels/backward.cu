// Back-propagation of g = d loss / d mu through the MLP (DESIGN.md 3, 5.2), in double like the
// CPU reference: cuBLAS DGEMMs for the dense products (dW = delta^T a_in, delta_prev = delta W)
// and small elementwise kernels for the activation derivatives and bias gradients. Then the
// global gradient norm (deterministic two-pass reduction) that clipping and the step's
// finiteness check need, all on the device: nothing in a step waits for the host.
#include <cub/block/block_reduce.cuh>

#include <utility>

#include "stages.cuh"

namespace eqpm::cuda {
namespace {

using BlockSum = cub::BlockReduce<double, kBlock>;

__device__ __forceinline__ long thread_index() {
  return blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
}
__device__ __forceinline__ long grid_stride() {
  return static_cast<long>(gridDim.x) * blockDim.x;
}

__global__ void to_double_kernel(const float* __restrict__ in, long n, double* __restrict__ out) {
  for (long i = thread_index(); i < n; i += grid_stride()) out[i] = static_cast<double>(in[i]);
}

// act = activate(pre) for every pre-activation (the hidden layers' outputs are the next
// layers' inputs).
__global__ void activations_kernel(Activation act, const float* __restrict__ pre, long n,
                                   double* __restrict__ a) {
  for (long i = thread_index(); i < n; i += grid_stride())
    a[i] = activate<double>(act, static_cast<double>(pre[i]));
}

// delta = g * softplus'(pre of the output layer).
__global__ void output_delta_kernel(const float* __restrict__ pre, int B, long A, long off, int H,
                                    const double* __restrict__ g, double* __restrict__ delta) {
  const long n = static_cast<long>(B) * H;
  for (long i = thread_index(); i < n; i += grid_stride()) {
    const long b = i / H;
    const long j = i - b * H;
    delta[i] = __dmul_rn(g[i], softplus_grad<double>(static_cast<double>(pre[b * A + off + j])));
  }
}

// grad_bias[j] = sum over b (in order) of delta[b][j].
__global__ void bias_grad_kernel(const double* __restrict__ delta, int B, int out,
                                 double* __restrict__ grad_bias) {
  for (long j = thread_index(); j < out; j += grid_stride()) {
    double s = 0.0;
    for (int b = 0; b < B; ++b) s = __dadd_rn(s, delta[static_cast<long>(b) * out + j]);
    grad_bias[j] = s;
  }
}

// delta[b][k] *= activate'(pre[b][off + k]).
__global__ void activation_grad_kernel(Activation act, const float* __restrict__ pre, int B,
                                       long A, long off, int width, double* __restrict__ delta) {
  const long n = static_cast<long>(B) * width;
  for (long i = thread_index(); i < n; i += grid_stride()) {
    const long b = i / width;
    const long k = i - b * width;
    delta[i] = __dmul_rn(delta[i], activate_grad<double>(act, static_cast<double>(pre[b * A + off + k])));
  }
}

// Per block: sum of grad^2 and the count of entries that overflow float.
__global__ void __launch_bounds__(kBlock)
    grad_norm_partials_kernel(const double* __restrict__ grad, long P, float* __restrict__ grad_f,
                              double* __restrict__ partials) {
  __shared__ typename BlockSum::TempStorage tmp;
  double s = 0.0, bad = 0.0;
  for (long i = thread_index(); i < P; i += grid_stride()) {
    const double g = grad[i];
    const float gf = static_cast<float>(g);
    grad_f[i] = gf;
    bad += isfinite(gf) ? 0.0 : 1.0;
    s += g * g;
  }
  const double total = BlockSum(tmp).Sum(s);
  __syncthreads();
  const double total_bad = BlockSum(tmp).Sum(bad);
  if (threadIdx.x == 0) {
    partials[blockIdx.x * 2] = total;
    partials[blockIdx.x * 2 + 1] = total_bad;
  }
}

__global__ void __launch_bounds__(kBlock)
    finalize_step_kernel(const double* __restrict__ partials, int blocks, double grad_clip,
                         bool equitable, const StepParams* __restrict__ params,
                         StepScalars* __restrict__ sc) {
  __shared__ typename BlockSum::TempStorage tmp;
  double s = 0.0, bad = 0.0;
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += kBlock) {
    s += partials[b * 2];
    bad += partials[b * 2 + 1];
  }
  const double norm2 = BlockSum(tmp).Sum(s);
  __syncthreads();
  const double total_bad = BlockSum(tmp).Sum(bad);
  if (threadIdx.x != 0) return;
  // A gradient beyond float range counts as non-finite even when its double norm is not.
  const double norm = total_bad == 0.0 ? sqrt(norm2) : static_cast<double>(INFINITY);
  const double beta = params->beta;
  sc->grad_norm = norm;
  sc->clip = step::clip_factor(norm, grad_clip);
  const double loss = step::loss(equitable, beta, sc->mhat, sc->mbar, sc->mse, sc->msebar_new);
  sc->loss = loss;
  const bool finite =
      step::finite_step(loss, norm, sc->mse, equitable, sc->nonfinite == 0.0, sc->mbar);
  sc->finite = finite ? 1 : 0;
}

}  // namespace

void mlp_backward(cublasHandle_t handle, const MlpLayout& L, int B, const float* params_f,
                  const float* pre, const double* g, const BackwardBuffers& buf, double* grad,
                  cudaStream_t stream) {
  if (!handle || B < 1 || L.layers < 1 || !params_f || !pre || !g || !grad || !buf.x ||
      !buf.act || !buf.delta0 || !buf.delta1 || !buf.params)
    throw Error("mlp_backward: bad arguments");
  cudaStream_t bound = nullptr;
  EQPM_CUBLAS_CHECK(cublasGetStream(handle, &bound));
  if (bound != stream) throw Error("mlp_backward: the cuBLAS handle is bound to another stream");
  const long A = L.activation_count();
  const long P = L.parameter_count;
  long off[kMaxLayers + 1];  // offset of layer l's pre-activations in a row of pre
  off[0] = 0;
  for (int l = 0; l < L.layers; ++l) off[l + 1] = off[l] + L.width[l + 1];

  to_double_kernel<<<grid_for(P), kBlock, 0, stream>>>(params_f, P, buf.params);
  EQPM_CUDA_CHECK_LAUNCH("to_double_kernel", grid_for(P), kBlock, 0);
  if (L.layers > 1) {
    activations_kernel<<<grid_for(static_cast<long>(B) * A), kBlock, 0, stream>>>(
        L.activation, pre, static_cast<long>(B) * A, buf.act);
    EQPM_CUDA_CHECK_LAUNCH("activations_kernel", grid_for(static_cast<long>(B) * A), kBlock, 0);
  }
  const int H = L.width[L.layers];
  double* delta = buf.delta0;
  double* next = buf.delta1;
  output_delta_kernel<<<grid_for(static_cast<long>(B) * H), kBlock, 0, stream>>>(
      pre, B, A, off[L.layers - 1], H, g, delta);
  EQPM_CUDA_CHECK_LAUNCH("output_delta_kernel", grid_for(static_cast<long>(B) * H), kBlock, 0);

  const double one = 1.0, zero = 0.0;
  for (int l = L.layers - 1; l >= 0; --l) {
    const int in = L.width[l], out = L.width[l + 1];
    // Row-major [B x in] inputs are column-major [in x B] with leading dimension = row stride.
    const double* a_in = l == 0 ? buf.x : buf.act + off[l - 1];
    const int lda = l == 0 ? in : static_cast<int>(A);
    // dW (row-major [out x in] = column-major [in x out]) = a_in^T-view * delta.
    EQPM_CUBLAS_CHECK(cublasDgemm(handle, CUBLAS_OP_N, CUBLAS_OP_T, in, out, B, &one, a_in, lda,
                                  delta, out, &zero, grad + L.weight_offset[l], in));
    bias_grad_kernel<<<grid_for(out), kBlock, 0, stream>>>(delta, B, out, grad + L.bias_offset[l]);
    EQPM_CUDA_CHECK_LAUNCH("bias_grad_kernel", grid_for(out), kBlock, 0);
    if (l == 0) break;
    // delta_prev (row-major [B x in] = column-major [in x B]) = W (column-major [in x out]) delta.
    EQPM_CUBLAS_CHECK(cublasDgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, in, B, out, &one,
                                  buf.params + L.weight_offset[l], in, delta, out, &zero, next, in));
    activation_grad_kernel<<<grid_for(static_cast<long>(B) * in), kBlock, 0, stream>>>(
        L.activation, pre, B, A, off[l - 1], in, next);
    EQPM_CUDA_CHECK_LAUNCH("activation_grad_kernel", grid_for(static_cast<long>(B) * in), kBlock, 0);
    std::swap(delta, next);
  }
}

void launch_grad_norm_partials(const double* grad, long P, float* grad_f, double* partials,
                               cudaStream_t stream) {
  if (P < 1 || !grad || !grad_f || !partials) throw Error("launch_grad_norm_partials: bad arguments");
  grad_norm_partials_kernel<<<reduction_blocks(P), kBlock, 0, stream>>>(grad, P, grad_f, partials);
  EQPM_CUDA_CHECK_LAUNCH("grad_norm_partials_kernel", reduction_blocks(P), kBlock, 0);
}

void launch_finalize_step(const double* partials, int blocks, double grad_clip, bool equitable,
                          const StepParams* params, StepScalars* scalars, cudaStream_t stream) {
  if (!partials || blocks < 1 || !params || !scalars) throw Error("launch_finalize_step: bad arguments");
  finalize_step_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, grad_clip, equitable, params,
                                                 scalars);
  EQPM_CUDA_CHECK_LAUNCH("finalize_step_kernel", 1, kBlock, 0);
}

}  // namespace eqpm::cuda
