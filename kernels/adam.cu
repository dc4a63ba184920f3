// The optimiser step and the commit of a step's smoothing state (DESIGN.md 5.2, 9). Adam is
// step_algebra.hpp's update, the CPU reference's, on the gradient scaled by the global-norm
// clipping factor computed on the device. A step whose loss, gradient or regrets are not
// finite changes nothing: both kernels read the step's finite flag.
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

__global__ void adam_kernel(long P, const StepParams* __restrict__ params,
                            const StepScalars* __restrict__ scalars,
                            const float* __restrict__ grad, float* __restrict__ theta,
                            float* __restrict__ m, float* __restrict__ v) {
  if (!scalars->finite) return;
  const float clip = scalars->clip;
  const step::AdamStep a = params->adam;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < P;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    float th = theta[i], mi = m[i], vi = v[i];
    step::adam_update(a, grad[i], clip, th, mi, vi);
    theta[i] = th;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void commit_kernel(long N, bool equitable, const StepScalars* __restrict__ scalars,
                              const double* __restrict__ rbar_new, double* __restrict__ rbar,
                              DeviceState* __restrict__ state) {
  if (!scalars->finite) return;
  const long first = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  if (first == 0) {
    state->msebar = scalars->msebar_new;
    if (equitable) state->rbar_started = 1;
  }
  if (!equitable) return;
  for (long i = first; i < N; i += static_cast<long>(gridDim.x) * blockDim.x) rbar[i] = rbar_new[i];
}

}  // namespace

void launch_adam(long P, const StepParams* params,
                 const StepScalars* scalars, const float* grad, float* theta, float* m, float* v,
                 cudaStream_t stream) {
  if (P < 1 || !params || !scalars || !grad || !theta || !m || !v)
    throw Error("launch_adam: bad arguments");
  adam_kernel<<<grid_for(P), kBlock, 0, stream>>>(P, params, scalars, grad, theta, m, v);
  EQPM_CUDA_CHECK_LAUNCH("adam_kernel", grid_for(P), kBlock, 0);
}

void launch_commit(long N, bool equitable, const StepScalars* scalars, const double* rbar_new,
                   double* rbar, DeviceState* state, cudaStream_t stream) {
  if (!scalars || !state || (equitable && (N < 1 || !rbar_new || !rbar)))
    throw Error("launch_commit: bad arguments");
  commit_kernel<<<equitable ? grid_for(N) : 1, kBlock, 0, stream>>>(N, equitable, scalars,
                                                                    rbar_new, rbar, state);
  EQPM_CUDA_CHECK_LAUNCH("commit_kernel", equitable ? grid_for(N) : 1, kBlock, 0);
}

}  // namespace eqpm::cuda
