// Forecast errors for evaluation (DESIGN.md 6): sums of squared and absolute errors of the
// deterministic predictions mu over rows x hours, in double with a fixed-order two-pass
// reduction. The per-agent regrets of an evaluation reuse the generic mean-regret kernel of
// regrets.cu with one "sample" per row (agents x rows, double accumulation in row order).
#include <cub/block/block_reduce.cuh>

#include "stages.cuh"

namespace eqpm::cuda {
namespace {

using BlockSum = cub::BlockReduce<double, kBlock>;

__global__ void __launch_bounds__(kBlock)
    error_partials_kernel(const float* __restrict__ mu, const float* __restrict__ y, long n,
                          double* __restrict__ partials) {
  __shared__ typename BlockSum::TempStorage tmp;
  double se = 0.0, ae = 0.0;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const double e = static_cast<double>(mu[i]) - static_cast<double>(y[i]);
    se += e * e;
    ae += fabs(e);
  }
  const double s1 = BlockSum(tmp).Sum(se);
  __syncthreads();
  const double s2 = BlockSum(tmp).Sum(ae);
  if (threadIdx.x == 0) {
    partials[blockIdx.x * 2] = s1;
    partials[blockIdx.x * 2 + 1] = s2;
  }
}

__global__ void __launch_bounds__(kBlock)
    finalize_errors_kernel(const double* __restrict__ partials, int blocks,
                           double* __restrict__ out) {
  __shared__ typename BlockSum::TempStorage tmp;
  double se = 0.0, ae = 0.0;
  for (int b = static_cast<int>(threadIdx.x); b < blocks; b += kBlock) {
    se += partials[b * 2];
    ae += partials[b * 2 + 1];
  }
  const double s1 = BlockSum(tmp).Sum(se);
  __syncthreads();
  const double s2 = BlockSum(tmp).Sum(ae);
  if (threadIdx.x == 0) {
    out[0] = s1;
    out[1] = s2;
  }
}

}  // namespace

void launch_error_partials(const float* mu, const float* y, long n, double* partials,
                           cudaStream_t stream) {
  if (n < 1 || !mu || !y || !partials) throw Error("launch_error_partials: bad arguments");
  error_partials_kernel<<<reduction_blocks(n), kBlock, 0, stream>>>(mu, y, n, partials);
  EQPM_CUDA_CHECK_LAUNCH("error_partials_kernel", reduction_blocks(n), kBlock, 0);
}

void launch_finalize_errors(const double* partials, int blocks, double* out, cudaStream_t stream) {
  if (!partials || blocks < 1 || !out) throw Error("launch_finalize_errors: bad arguments");
  finalize_errors_kernel<<<1, kBlock, 0, stream>>>(partials, blocks, out);
  EQPM_CUDA_CHECK_LAUNCH("finalize_errors_kernel", 1, kBlock, 0);
}

}  // namespace eqpm::cuda
