// The optimiser step and the commit of a step's smoothing state (DESIGN.md 5.2, 9). Adam runs
// in float with the CPU reference's expression, operation for operation (correctly rounded,
// no FMA contraction), on the gradient scaled by the global-norm clipping factor computed on
// the device. A step whose loss, gradient or regrets are not finite changes nothing: both
// kernels read the step's finite flag.
#include "stages.cuh"

namespace eqpm::cuda {
namespace {

__global__ void adam_kernel(long P, AdamConfig cfg, const StepParams* __restrict__ params,
                            const StepScalars* __restrict__ scalars,
                            const float* __restrict__ grad, float* __restrict__ theta,
                            float* __restrict__ m, float* __restrict__ v) {
  if (!scalars->finite) return;
  const float clip = scalars->clip;
  const float lr = params->lr, c1 = params->c1, c2 = params->c2, decay = params->decay;
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < P;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    const float gi = __fmul_rn(grad[i], clip);
    // m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g;  theta -= lr (m c1) / (sqrt(v c2) + eps),
    // then (decoupled weight decay) theta -= decay x the theta before the step
    const float mi = __fadd_rn(__fmul_rn(cfg.beta1, m[i]), __fmul_rn(cfg.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(cfg.beta2, v[i]),
                               __fmul_rn(__fmul_rn(cfg.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    const float num = __fmul_rn(lr, __fmul_rn(mi, c1));
    const float den = __fadd_rn(__fsqrt_rn(__fmul_rn(vi, c2)), cfg.eps);
    const float before = theta[i];
    const float after = __fsub_rn(before, __fdiv_rn(num, den));
    theta[i] = decay != 0.0f ? __fsub_rn(after, __fmul_rn(decay, before)) : after;
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

void launch_adam(long P, const AdamConfig& cfg, const StepParams* params,
                 const StepScalars* scalars, const float* grad, float* theta, float* m, float* v,
                 cudaStream_t stream) {
  if (P < 1 || !params || !scalars || !grad || !theta || !m || !v)
    throw Error("launch_adam: bad arguments");
  adam_kernel<<<grid_for(P), kBlock, 0, stream>>>(P, cfg, params, scalars, grad, theta, m, v);
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
