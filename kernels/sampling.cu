// Minibatch gathering and the Gaussian policy's perturbations (DESIGN.md 3, 5.2, 7): eps from
// Philox4x32-10 through eqpm::perturbation with the CPU's counter (seed, step, b, s, h-block),
// so the GPU draws the CPU's numbers bit for bit, and yhat = mu + sigma eps rounded like the
// CPU (no FMA). Also the minibatch MSE that the accuracy term and MSEbar need.
#include <cub/block/block_reduce.cuh>

#include "eqpm/rng.hpp"
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

__global__ void gather_rows(const std::int64_t* __restrict__ rows, int n_rows,
                            const float* __restrict__ x_all, const float* __restrict__ y_all,
                            const std::int64_t* __restrict__ t_all, int in_dim, int H,
                            float* __restrict__ y_b, std::int64_t* __restrict__ t_b,
                            double* __restrict__ x_b) {
  const long stride = static_cast<long>(gridDim.x) * blockDim.x;
  const long first = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  for (long e = first; e < static_cast<long>(n_rows) * H; e += stride) {
    const long r = e / H;
    y_b[e] = y_all[rows[r] * H + (e - r * H)];
  }
  for (long r = first; r < n_rows; r += stride) t_b[r] = t_all[rows[r]];
  if (x_b) {
    for (long e = first; e < static_cast<long>(n_rows) * in_dim; e += stride) {
      const long r = e / in_dim;
      x_b[e] = static_cast<double>(x_all[rows[r] * in_dim + (e - r * in_dim)]);
    }
  }
}

// One thread per (b, s).
__global__ void perturbations(std::uint64_t seed, const StepParams* __restrict__ params, int B,
                              int S, int H, bool antithetic,
                              const float* __restrict__ mu, float* __restrict__ eps,
                              float* __restrict__ yhat) {
  const std::uint32_t step = params->step;
  const float sigma = params->sigma;
  const long n = static_cast<long>(B) * S;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const long b = i / S;
    const long s = i - b * S;
    float* e = eps + i * H;
    perturbation(seed, step, static_cast<std::uint32_t>(b), static_cast<std::uint32_t>(s), H,
                 antithetic, e);
    const float* m = mu + b * H;
    float* out = yhat + i * H;
    for (int h = 0; h < H; ++h) out[h] = __fadd_rn(m[h], __fmul_rn(sigma, e[h]));
  }
}

__global__ void __launch_bounds__(kBlock)
    batch_mse(const float* __restrict__ mu, const float* __restrict__ y, int B, int H,
              double rho, const DeviceState* __restrict__ state,
              StepScalars* __restrict__ scalars) {
  using Reduce = cub::BlockReduce<double, kBlock>;
  __shared__ typename Reduce::TempStorage tmp;
  const int n = B * H;
  double sum = 0.0;
  for (int i = static_cast<int>(threadIdx.x); i < n; i += kBlock) {
    const double e = static_cast<double>(mu[i]) - static_cast<double>(y[i]);
    sum += e * e;
  }
  const double total = Reduce(tmp).Sum(sum);
  if (threadIdx.x == 0) {
    const double mse = total / (static_cast<double>(B) * H);
    const double prev = state->msebar;
    scalars->mse = mse;
    scalars->msebar_new = prev > 0 ? __dadd_rn(__dmul_rn(rho, prev), __dmul_rn(1.0 - rho, mse))
                                   : mse;
  }
}

}  // namespace

void launch_gather_rows(const std::int64_t* rows, int n_rows, const float* x_all,
                        const float* y_all, const std::int64_t* t_all, int in_dim, int H,
                        float* y_b, std::int64_t* t_b, double* x_b, cudaStream_t stream) {
  if (n_rows <= 0) return;
  if (!rows || !x_all || !y_all || !t_all || !y_b || !t_b || in_dim < 1 || H < 1)
    throw Error("launch_gather_rows: bad arguments");
  const long work = static_cast<long>(n_rows) * (in_dim > H ? in_dim : H);
  gather_rows<<<grid_for(work), kBlock, 0, stream>>>(rows, n_rows, x_all, y_all, t_all, in_dim,
                                                     H, y_b, t_b, x_b);
  EQPM_CUDA_CHECK_LAUNCH("gather_rows", grid_for(work), kBlock, 0);
}

void launch_perturbations(std::uint64_t seed, const StepParams* params, int B, int S, int H,
                          bool antithetic, const float* mu, float* eps, float* yhat,
                          cudaStream_t stream) {
  if (B < 1 || S < 1 || H < 1 || H > kMaxHorizon || !params || !mu || !eps || !yhat)
    throw Error("launch_perturbations: bad arguments");
  if (antithetic && S % 2) throw Error("launch_perturbations: antithetic sampling needs even S");
  const long n = static_cast<long>(B) * S;
  perturbations<<<grid_for(n, 128), 128, 0, stream>>>(seed, params, B, S, H, antithetic,
                                                      mu, eps, yhat);
  EQPM_CUDA_CHECK_LAUNCH("perturbations", grid_for(n, 128), 128, 0);
}

void launch_batch_mse(const float* mu, const float* y, int B, int H, double rho,
                      const DeviceState* state, StepScalars* scalars, cudaStream_t stream) {
  if (B < 1 || H < 1 || !mu || !y || !state || !scalars)
    throw Error("launch_batch_mse: bad arguments");
  batch_mse<<<1, kBlock, 0, stream>>>(mu, y, B, H, rho, state, scalars);
  EQPM_CUDA_CHECK_LAUNCH("batch_mse", 1, kBlock, 0);
}

}  // namespace eqpm::cuda
