// Regret evaluation on the GPU (DESIGN.md 4, 5.2, 5.3, 5.4). Every kernel is a template over
// the family and calls the family's own EQPM_HD_INLINE regret / add_dregret, the functions the CPU
// reference calls; agents arrive grouped by family (and sorted by class within it), so a
// warp evaluates one family's code path. Two ways to cover N x B x S without materialising it:
//  - generic (any family): per-agent sums (one thread per agent, samples staged in shared
//    memory) and per-sample sums over fixed tiles of agents (one thread per sample, agents
//    staged in shared memory), written as per-tile partials that reductions.cu adds in order;
//  - structured (5.4, families with a RegretStructure): the regret of every "class
//    representative" on every sample, E[k][b, s], which per-agent coefficients then scale.
#include <type_traits>

#include "stages.cuh"

namespace eqpm::cuda {
namespace {

// Block sizes and shared memory: launch_config.hpp (checked on the host against sm_90).

template <class F>
using ParamsOf = typename F::Params;

// A family's parameters are staged in shared memory as raw bytes (they need not be
// default-constructible there); keep them small so the staging fits.
template <class F>
constexpr bool params_fit() {
  return sizeof(ParamsOf<F>) <= kMaxStagedParams && alignof(ParamsOf<F>) <= 8;
}

// Whether agents of F enter the pathwise sums G: with a derivative, or as EV agents under
// the conditional gradient (SampleSet::conditional(), checked by the launchers).
template <class F>
constexpr bool has_gradient() {
  return F::differentiable || F::tag == Family::ev_charging;
}
// What the sum over a row's samples is accumulated in: float like the CPU's derivative
// loops; double for the conditional gradient, like ev_conditional.cpp.
template <class F>
using GradAcc = std::conditional_t<F::differentiable, float, double>;

// dv[h] += sum over s of d regret / d v_h of agent p at input b: the family's derivative, or
// for EV agents the conditional gradient at the step's sigma (families.hpp).
template <class F, class T>
__device__ void add_sample_dregrets(const ParamsOf<F>& p, const SampleSet& set, long b,
                                    const RegretContext& ctx, T* dv) {
  const int H = set.horizon, S = set.samples;
  const float* yb = set.y + b * H;
  if constexpr (F::differentiable) {
    const long tb = set.t[b];
    for (int s = 0; s < S; ++s)
      F::template add_dregret<T>(p, set.v + (b * S + s) * H, yb, ctx, tb, T(1), dv);
  } else if constexpr (F::tag == Family::ev_charging) {
    const T sigma = static_cast<T>(*set.sigma);
    for (int s = 0; s < S; ++s)
      F::template add_dregret_conditional<T>(p, set.v + (b * S + s) * H, set.mu + b * H, yb,
                                             ctx, sigma, T(1), dv);
  }
}

// out[i] = (mul * sum over (b, s) of regret) / div, one thread per agent.
template <class F>
__global__ void __launch_bounds__(kMeanThreads)
    mean_regret_kernel(const ParamsOf<F>* __restrict__ params, long n, SampleSet set,
                       RegretContext ctx, int chunk, double mul, double div,
                       double* __restrict__ out) {
  extern __shared__ float vs[];  // chunk x H predictions
  const long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x;
  const bool active = i < n;
  const ParamsOf<F> p = params[active ? i : 0];
  const int H = set.horizon, S = set.samples;
  const long total = set.pairs();
  double sum = 0.0;
  for (long k0 = 0; k0 < total; k0 += chunk) {
    const int kc = static_cast<int>(min(static_cast<long>(chunk), total - k0));
    __syncthreads();
    for (int e = static_cast<int>(threadIdx.x); e < kc * H; e += blockDim.x) vs[e] = set.v[k0 * H + e];
    __syncthreads();
    if (active) {
      long b = k0 / S;
      int s = static_cast<int>(k0 - b * S);
      for (int k = 0; k < kc; ++k) {
        sum += static_cast<double>(F::template regret<float>(p, vs + k * H, set.y + b * H, ctx, set.t[b]));
        if (++s == S) {
          s = 0;
          ++b;
        }
      }
    }
  }
  if (active) out[i] = (sum * mul) / div;
}

// partial[tile][l] = sum over the tile's agents of omega * regret(l), one thread per sample l.
template <class F>
__global__ void __launch_bounds__(kScoreThreads)
    score_partials_kernel(const ParamsOf<F>* __restrict__ params, long n,
                          const double* __restrict__ omega, int tiles, SampleSet set,
                          RegretContext ctx, int v_stride, double* __restrict__ partial) {
  extern __shared__ double smem_d[];
  double* ws = smem_d;                                                   // kScoreThreads
  ParamsOf<F>* ps = reinterpret_cast<ParamsOf<F>*>(ws + kScoreThreads);  // kScoreThreads
  float* vs = reinterpret_cast<float*>(ps + kScoreThreads);              // kScoreThreads x v_stride
  const int tid = static_cast<int>(threadIdx.x);
  const int H = set.horizon;
  const long pairs = set.pairs();
  const long l = blockIdx.x * static_cast<long>(kScoreThreads) + tid;
  const bool active = l < pairs;
  float* my_v = vs + tid * v_stride;
  const long b = active ? l / set.samples : 0;
  if (active)
    for (int h = 0; h < H; ++h) my_v[h] = set.v[l * H + h];
  const float* yb = set.y + b * H;
  const long tb = set.t[b];
  const int tile = static_cast<int>(blockIdx.y);
  const long a0 = n * tile / tiles, a1 = n * (tile + 1) / tiles;
  double acc = 0.0;
  for (long a = a0; a < a1; a += kScoreThreads) {
    const int na = static_cast<int>(min(static_cast<long>(kScoreThreads), a1 - a));
    __syncthreads();
    if (tid < na) {
      ws[tid] = omega[a + tid];
      ps[tid] = params[a + tid];
    }
    __syncthreads();
    if (active) {
      for (int k = 0; k < na; ++k) {
        const double w = ws[k];
        if (w == 0.0) continue;  // as the CPU: an agent without weight contributes nothing
        acc += w * static_cast<double>(F::template regret<float>(ps[k], my_v, yb, ctx, tb));
      }
    }
  }
  if (active) partial[tile * pairs + l] = acc;
}

// partial[tile][b][h] = sum over the tile's agents of omega * scale * sum_s dregret, one
// thread per input b; the per-agent sum over s is accumulated as the CPU's (GradAcc).
template <class F>
__global__ void __launch_bounds__(kPathThreads)
    pathwise_partials_kernel(const ParamsOf<F>* __restrict__ params, long n,
                             const double* __restrict__ omega, int tiles, double scale,
                             SampleSet set, RegretContext ctx, double* __restrict__ partial) {
  if constexpr (has_gradient<F>()) {
    __shared__ double ws[kPathThreads];
    __shared__ alignas(16) unsigned char ps_raw[kPathThreads * sizeof(ParamsOf<F>)];
    ParamsOf<F>* ps = reinterpret_cast<ParamsOf<F>*>(ps_raw);
    const int tid = static_cast<int>(threadIdx.x);
    const int H = set.horizon;
    const long b = blockIdx.x * static_cast<long>(kPathThreads) + tid;
    const bool active = b < set.inputs;
    const long bb = active ? b : 0;
    GradAcc<F> dv[kMaxHorizon];
    double acc[kMaxHorizon];
    for (int h = 0; h < H; ++h) acc[h] = 0.0;
    const int tile = static_cast<int>(blockIdx.y);
    const long a0 = n * tile / tiles, a1 = n * (tile + 1) / tiles;
    for (long a = a0; a < a1; a += kPathThreads) {
      const int na = static_cast<int>(min(static_cast<long>(kPathThreads), a1 - a));
      __syncthreads();
      if (tid < na) {
        ws[tid] = omega[a + tid];
        ps[tid] = params[a + tid];
      }
      __syncthreads();
      if (!active) continue;
      for (int k = 0; k < na; ++k) {
        const double w = ws[k];
        if (w == 0.0) continue;
        for (int h = 0; h < H; ++h) dv[h] = 0;
        add_sample_dregrets<F>(ps[k], set, bb, ctx, dv);
        const double ww = w * scale;
        for (int h = 0; h < H; ++h) acc[h] += ww * static_cast<double>(dv[h]);
      }
    }
    if (active)
      for (int h = 0; h < H; ++h) partial[(tile * static_cast<long>(set.inputs) + b) * H + h] = acc[h];
  }
}

// E[k][l] = regret of class representative k on sample l. The block size depends on H
// (class_regrets_threads): each thread stages its own row, and the rows must fit in the
// shared memory a block gets without an opt-in.
template <class F>
__global__ void __launch_bounds__(kClassThreads)
    class_regrets_kernel(const ParamsOf<F>* __restrict__ units, int K, SampleSet set,
                         RegretContext ctx, int v_stride, float* __restrict__ E) {
  extern __shared__ float vs[];  // blockDim.x x v_stride
  const int tid = static_cast<int>(threadIdx.x);
  const int H = set.horizon;
  const long pairs = set.pairs();
  const long l = blockIdx.x * static_cast<long>(blockDim.x) + tid;
  if (l >= pairs) return;  // no barrier below
  float* my_v = vs + tid * v_stride;
  for (int h = 0; h < H; ++h) my_v[h] = set.v[l * H + h];
  const long b = l / set.samples;
  const float* yb = set.y + b * H;
  const long tb = set.t[b];
  for (int k = static_cast<int>(blockIdx.y); k < K; k += gridDim.y) {
    const ParamsOf<F> u = units[k];
    E[k * pairs + l] = F::template regret<float>(u, my_v, yb, ctx, tb);
  }
}

// dE[k][b][h] = sum_s d regret_k / d v_h at (b, s), one thread per (k, b).
template <class F>
__global__ void class_dregrets_kernel(const ParamsOf<F>* __restrict__ units, int K,
                                      SampleSet set, RegretContext ctx, float* __restrict__ dE) {
  if constexpr (has_gradient<F>()) {
    const int H = set.horizon;
    const long total = static_cast<long>(K) * set.inputs;
    for (long e = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<long>(gridDim.x) * blockDim.x) {
      const long k = e / set.inputs;
      const long b = e - k * set.inputs;
      const ParamsOf<F> u = units[k];
      GradAcc<F> dv[kMaxHorizon];
      for (int h = 0; h < H; ++h) dv[h] = 0;
      add_sample_dregrets<F>(u, set, b, ctx, dv);
      for (int h = 0; h < H; ++h) dE[e * H + h] = static_cast<float>(dv[h]);
    }
  }
}

void check_set(const SampleSet& set, const char* who) {
  if (!set.v || !set.y || !set.t || set.inputs < 1 || set.samples < 1 || set.horizon < 1 ||
      set.horizon > kMaxHorizon)
    throw Error(std::string(who) + ": bad sample set");
}

// A family without a derivative enters the pathwise sums only through the conditional
// gradient, which needs the sample set's mean forecasts and sigma.
template <class F>
void require_gradient(const SampleSet& set, const char* who) {
  if (!F::differentiable && !set.conditional())
    throw Error(std::string(who) + ": the " + F::name +
                " family has no derivative and the sample set no conditional gradient");
}

}  // namespace

void launch_mean_regret(int family, const void* params, long n, const SampleSet& set,
                        const RegretContext& ctx, double mul, double div, double* out,
                        cudaStream_t stream) {
  if (n <= 0) return;
  check_set(set, "launch_mean_regret");
  if (!params || !out) throw Error("launch_mean_regret: missing buffers");
  const int chunk = mean_regret_chunk(set.horizon);
  const LaunchConfig c = mean_regret_config(n, set.horizon);
  for_family(family, [&](auto fam) {
    using F = decltype(fam);
    mean_regret_kernel<F><<<static_cast<unsigned>(c.grid_x), c.block, c.dynamic_smem, stream>>>(
        static_cast<const ParamsOf<F>*>(params), n, set, ctx, chunk, mul, div, out);
    EQPM_CUDA_CHECK_KERNEL(c);
  });
}

void launch_score_partials(int family, const void* params, long n, const double* omega,
                           int tiles, const SampleSet& set, const RegretContext& ctx,
                           double* partial, cudaStream_t stream) {
  if (n <= 0) return;
  check_set(set, "launch_score_partials");
  if (!params || !omega || !partial || tiles < 1 || tiles > 65535 || tiles > n)
    throw Error("launch_score_partials: bad arguments");
  const int v_stride = staged_row_stride(set.horizon);
  for_family(family, [&](auto fam) {
    using F = decltype(fam);
    static_assert(params_fit<F>(), "family parameters too large for shared-memory staging");
    const LaunchConfig c = score_partials_config(set.pairs(), tiles, set.horizon, sizeof(ParamsOf<F>));
    const dim3 grid(static_cast<unsigned>(c.grid_x), static_cast<unsigned>(c.grid_y));
    score_partials_kernel<F><<<grid, c.block, c.dynamic_smem, stream>>>(
        static_cast<const ParamsOf<F>*>(params), n, omega, tiles, set, ctx, v_stride, partial);
    EQPM_CUDA_CHECK_KERNEL(c);
  });
}

void launch_pathwise_partials(int family, const void* params, long n, const double* omega,
                              int tiles, double scale, const SampleSet& set,
                              const RegretContext& ctx, double* partial, cudaStream_t stream) {
  if (n <= 0) return;
  check_set(set, "launch_pathwise_partials");
  if (!params || !omega || !partial || tiles < 1 || tiles > 65535 || tiles > n)
    throw Error("launch_pathwise_partials: bad arguments");
  for_family(family, [&](auto fam) {
    using F = decltype(fam);
    if constexpr (has_gradient<F>()) {
      require_gradient<F>(set, "launch_pathwise_partials");
      static_assert(params_fit<F>(), "family parameters too large for shared-memory staging");
      const LaunchConfig c = pathwise_partials_config(set.inputs, tiles, sizeof(ParamsOf<F>));
      const dim3 grid(static_cast<unsigned>(c.grid_x), static_cast<unsigned>(c.grid_y));
      pathwise_partials_kernel<F><<<grid, c.block, c.dynamic_smem, stream>>>(
          static_cast<const ParamsOf<F>*>(params), n, omega, tiles, scale, set, ctx, partial);
      EQPM_CUDA_CHECK_KERNEL(c);
    } else {
      throw Error(std::string("launch_pathwise_partials: the ") + F::name +
                  " family has no derivative");
    }
  });
}

void launch_class_regrets(int family, const void* units, int K, const SampleSet& set,
                          const RegretContext& ctx, float* E, cudaStream_t stream) {
  if (K <= 0) return;
  check_set(set, "launch_class_regrets");
  if (!units || !E) throw Error("launch_class_regrets: missing buffers");
  const int v_stride = staged_row_stride(set.horizon);
  const LaunchConfig c = class_regrets_config(set.pairs(), K, set.horizon);
  const dim3 grid(static_cast<unsigned>(c.grid_x), static_cast<unsigned>(c.grid_y));
  for_family(family, [&](auto fam) {
    using F = decltype(fam);
    class_regrets_kernel<F><<<grid, c.block, c.dynamic_smem, stream>>>(
        static_cast<const ParamsOf<F>*>(units), K, set, ctx, v_stride, E);
    EQPM_CUDA_CHECK_KERNEL(c);
  });
}

void launch_class_dregrets(int family, const void* units, int K, const SampleSet& set,
                           const RegretContext& ctx, float* dE, cudaStream_t stream) {
  if (K <= 0) return;
  check_set(set, "launch_class_dregrets");
  if (!units || !dE) throw Error("launch_class_dregrets: missing buffers");
  const LaunchConfig c = class_dregrets_config(K, set.inputs);
  for_family(family, [&](auto fam) {
    using F = decltype(fam);
    if constexpr (has_gradient<F>()) {
      require_gradient<F>(set, "launch_class_dregrets");
      class_dregrets_kernel<F><<<static_cast<unsigned>(c.grid_x), c.block, 0, stream>>>(
          static_cast<const ParamsOf<F>*>(units), K, set, ctx, dE);
      EQPM_CUDA_CHECK_KERNEL(c);
    } else {
      throw Error(std::string("launch_class_dregrets: the ") + F::name +
                  " family has no derivative");
    }
  });
}

}  // namespace eqpm::cuda
