// MLP forward pass on the GPU (DESIGN.md 3): mu = softplus(W_L act(... act(W_1 x + b_1))).
// Each dot product accumulates in input order with correctly rounded float multiply and add
// (no FMA contraction), the CPU reference's arithmetic, so pre-activations match it bit for
// bit with relu and to an ulp of tanh/gelu/softplus otherwise. Pre-activations are kept for
// the backward pass.
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

constexpr int kFwdPairs = kFwdRows * kFusedMaxWidth / kFwdThreads;  // (row, output) per thread

__device__ __forceinline__ float dot_step(float acc, float w, float a) {
  return __fadd_rn(acc, __fmul_rn(w, a));
}

// One block computes every layer for kFwdRows rows: the rows' activations stay in shared
// memory, each layer's weights pass through shared memory kFwdTileK columns at a time
// (stored transposed so a warp reads consecutive outputs). Thread t owns the (row, output)
// pairs t, t + 256, ... of the layer.
__global__ void __launch_bounds__(kFwdThreads)
    mlp_forward_fused(MlpLayout L, const float* __restrict__ params,
                      const float* __restrict__ x_all, const std::int64_t* __restrict__ rows,
                      int n_rows, int act_stride, int w_stride, long A,
                      float* __restrict__ pre, float* __restrict__ mu) {
  extern __shared__ float smem[];
  // Two activation buffers of kFwdRows x act_stride, then the weight tile.
  const int act_size = kFwdRows * act_stride;
  float* wt = smem + 2 * act_size;
  const int tid = static_cast<int>(threadIdx.x);
  const int r0 = static_cast<int>(blockIdx.x) * kFwdRows;
  const int nr = min(kFwdRows, n_rows - r0);
  const int in0 = L.width[0];
  for (int e = tid; e < kFwdRows * in0; e += kFwdThreads) {
    const int r = e / in0, k = e - r * in0;
    smem[r * act_stride + k] = r < nr ? x_all[rows[r0 + r] * in0 + k] : 0.0f;
  }
  int cur = 0;
  long pre_off = 0;
  for (int l = 0; l < L.layers; ++l) {
    const int in = L.width[l], out = L.width[l + 1];
    const float* W = params + L.weight_offset[l];
    const float* bias = params + L.bias_offset[l];
    const int pairs = kFwdRows * out;
    float acc[kFwdPairs];
    int pr[kFwdPairs], pj[kFwdPairs];
#pragma unroll
    for (int i = 0; i < kFwdPairs; ++i) {
      const int p = tid + i * kFwdThreads;
      pr[i] = p / out;
      pj[i] = p - pr[i] * out;
      acc[i] = p < pairs ? bias[pj[i]] : 0.0f;
    }
    const float* a_in = smem + cur * act_size;
    for (int k0 = 0; k0 < in; k0 += kFwdTileK) {
      const int kt = min(kFwdTileK, in - k0);
      __syncthreads();  // inputs staged / the previous tile consumed
      for (int e = tid; e < kt * out; e += kFwdThreads) {
        const int j = e / kt, kk = e - j * kt;
        wt[kk * w_stride + j] = W[static_cast<long>(j) * in + k0 + kk];
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < kFwdPairs; ++i) {
        if (tid + i * kFwdThreads < pairs) {
          const float* ar = a_in + pr[i] * act_stride + k0;
          for (int kk = 0; kk < kt; ++kk) acc[i] = dot_step(acc[i], wt[kk * w_stride + pj[i]], ar[kk]);
        }
      }
    }
    // The other buffer was last read as layer l-1's input, before this layer's first barrier.
    const bool last = l + 1 == L.layers;
    float* a_out = smem + (cur ^ 1) * act_size;
#pragma unroll
    for (int i = 0; i < kFwdPairs; ++i) {
      if (tid + i * kFwdThreads < pairs) {
        const float z = acc[i];
        const float a = last ? softplus(z) : activate(L.activation, z);
        a_out[pr[i] * act_stride + pj[i]] = a;
        if (pr[i] < nr) {
          const long row = r0 + pr[i];
          pre[row * A + pre_off + pj[i]] = z;
          if (last) mu[row * out + pj[i]] = a;
        }
      }
    }
    cur ^= 1;
    pre_off += out;
  }
}

// Layer l for every (row, output): inputs from the dataset (l = 0) or from the previous
// layer's pre-activations in global memory.
__global__ void mlp_layer_global(MlpLayout L, int l, const float* __restrict__ params,
                                 const float* __restrict__ x_all,
                                 const std::int64_t* __restrict__ rows, int n_rows, long A,
                                 long in_off, long out_off, float* __restrict__ pre,
                                 float* __restrict__ mu) {
  const int in = L.width[l], out = L.width[l + 1];
  const bool last = l + 1 == L.layers;
  const long total = static_cast<long>(n_rows) * out;
  for (long e = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<long>(gridDim.x) * blockDim.x) {
    const long r = e / out;
    const int j = static_cast<int>(e - r * out);
    const float* W = params + L.weight_offset[l] + static_cast<long>(j) * in;
    float z = params[L.bias_offset[l] + j];
    if (l == 0) {
      const float* x = x_all + rows[r] * in;
      for (int k = 0; k < in; ++k) z = dot_step(z, W[k], x[k]);
    } else {
      const float* p = pre + r * A + in_off;
      for (int k = 0; k < in; ++k) z = dot_step(z, W[k], activate(L.activation, p[k]));
    }
    pre[r * A + out_off + j] = z;
    if (last) mu[r * out + j] = softplus(z);
  }
}

}  // namespace

ForwardKernel choose_forward_kernel(const MlpLayout& L) {
  return L.max_width() <= kFusedMaxWidth ? ForwardKernel::fused_shared
                                         : ForwardKernel::per_layer_global;
}

void launch_mlp_forward(ForwardKernel kind, const MlpLayout& L, const float* params,
                        const float* x_all, const std::int64_t* rows, int n_rows, float* pre,
                        float* mu, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (!params || !x_all || !rows || !pre || !mu || L.layers < 1)
    throw Error("launch_mlp_forward: missing buffers or empty layout");
  const long A = L.activation_count();
  if (kind == ForwardKernel::fused_shared) {
    if (L.max_width() > kFusedMaxWidth)
      throw Error("launch_mlp_forward: fused kernel needs every width <= " +
                  std::to_string(kFusedMaxWidth));
    int max_out = 1;
    for (int l = 1; l <= L.layers; ++l) max_out = L.width[l] > max_out ? L.width[l] : max_out;
    // Odd strides keep rows (and transposed weight columns) in different banks.
    const LaunchConfig c = mlp_forward_fused_config(n_rows, L.max_width(), max_out);
    const int act_stride = L.max_width() | 1;
    const int w_stride = max_out | 1;
    mlp_forward_fused<<<static_cast<unsigned>(c.grid_x), c.block, c.dynamic_smem, stream>>>(
        L, params, x_all, rows, n_rows, act_stride, w_stride, A, pre, mu);
    EQPM_CUDA_CHECK_KERNEL(c);
    return;
  }
  long off_prev = 0, off = 0;
  for (int l = 0; l < L.layers; ++l) {
    const long total = static_cast<long>(n_rows) * L.width[l + 1];
    mlp_layer_global<<<grid_for(total), kBlock, 0, stream>>>(L, l, params, x_all, rows, n_rows,
                                                             A, off_prev, off, pre, mu);
    EQPM_CUDA_CHECK_LAUNCH("mlp_layer_global", grid_for(total), kBlock, 0);
    off_prev = off;
    off += L.width[l + 1];
  }
}

}  // namespace eqpm::cuda
