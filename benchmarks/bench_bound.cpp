// What this CPU core can do, measured, for the compute bound of the general path (README
// "Performance"): throughput of the vector instruction classes the sample-lane kernels are
// made of, and the kernels themselves on cache-resident data without the rest of a step.
// Rates are per core (one thread). The peak measurements use one register of the ISA the
// build targets (16 floats with AVX-512, 8 with AVX2): an asm operand must fit in a single
// register. The EV kernel uses vectors of one register too (lanes::kEvLanes).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/cpu_lanes.hpp"
#include "eqpm/rng.hpp"

namespace eqpm::bench {
namespace {

#ifdef __AVX512F__
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
using f32xR = float __attribute__((vector_size(4 * kLanes)));        // one register of floats
using f32xH = float __attribute__((vector_size(2 * kLanes)));        // half a register
using f64xR = double __attribute__((vector_size(4 * kLanes)));       // its halves as doubles

// Keeps a value in a register and opaque to the optimiser.
template <class V>
inline void opaque(V& v) {
  asm volatile("" : "+v"(v));
}

// Twelve independent chains (enough to cover every latency), named so that they stay in
// registers.
#define EQPM_CHAINS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
constexpr int kChains = 12;

// Simple vector operations (additions and multiplications alternating), one register each.
void BM_PeakSimpleOps(benchmark::State& state) {
#define EQPM_DECLARE(k) f32xR a##k = f32xR{} + (1.0f + k);
  EQPM_CHAINS(EQPM_DECLARE)
  const f32xR c = f32xR{} + 1e-7f, m = f32xR{} + 0.9999f;
  for (auto _ : state) {
    for (int rep = 0; rep < 64; ++rep) {
#define EQPM_STEP(k) a##k = (k) % 2 ? a##k + c : a##k * m; opaque(a##k);
      EQPM_CHAINS(EQPM_STEP)
    }
  }
  float sink = 0.0f;  // (taking the chains' addresses would keep them in memory)
#define EQPM_KEEP(k) sink += a##k[0];
  EQPM_CHAINS(EQPM_KEEP)
  benchmark::DoNotOptimize(sink);
  state.counters["vector_ops_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 64 * kChains, benchmark::Counter::kIsRate);
  state.counters["lane_ops_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 64 * kChains * kLanes, benchmark::Counter::kIsRate);
}

// float -> double conversion of half a register plus a double addition, 12 chains.
void BM_PeakConvertAccumulate(benchmark::State& state) {
#define EQPM_DECLARE2(k) f64xR d##k = f64xR{}; f32xH h##k = f32xH{} + (1.0f + k);
  EQPM_CHAINS(EQPM_DECLARE2)
  for (auto _ : state) {
    for (int rep = 0; rep < 64; ++rep) {
#define EQPM_STEP2(k) opaque(h##k); d##k += __builtin_convertvector(h##k, f64xR);
      EQPM_CHAINS(EQPM_STEP2)
    }
  }
  double sink = 0.0;
#define EQPM_KEEP2(k) sink += d##k[0];
  EQPM_CHAINS(EQPM_KEEP2)
  benchmark::DoNotOptimize(sink);
  state.counters["conversions_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 64 * kChains, benchmark::Counter::kIsRate);
}

// Stores of one register of floats to L1-resident memory.
void BM_PeakStores(benchmark::State& state) {
  std::vector<float> buf(64 * kLanes);
  f32xR v = f32xR{} + 1.0f;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      opaque(v);
      std::memcpy(&buf[static_cast<size_t>(i * kLanes)], &v, sizeof v);
    }
    benchmark::ClobberMemory();
  }
  state.counters["vector_stores_per_s"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 64, benchmark::Counter::kIsRate);
}

// The general path's two passes for one family on a 64 x 16 minibatch whose rows stay in
// L1 (every agent reads hour 0): pass 1 sums each agent's regrets, pass 2 accumulates its
// derivative (pathwise families) or its weighted regrets (the others) per sample.
template <class F>
void BM_LanesKernel(benchmark::State& state) {
  constexpr int B = 64, S = 16, H = 12;
  constexpr long n = static_cast<long>(B) * S;
  SplitMix64 rng(3);
  std::vector<float> v(static_cast<size_t>(n * H)), y(static_cast<size_t>(B * H));
  std::vector<long> t(B, 0);
  for (auto& x : v) x = static_cast<float>(rng.uniform(0.5, 1.5));
  for (auto& x : y) x = static_cast<float>(rng.uniform(0.5, 1.5));
  const float demand = 1.0f;
  RegretContext ctx;
  ctx.demand = &demand;
  ctx.demand_length = 1;
  lanes::LaneBuffer buf;
  const lanes::Lanes x = buf.fill(v.data(), y.data(), t.data(), B, S, H);
  std::vector<typename F::Params> agents;
  for (int i = 0; i < 64; ++i) {
    Agent a;
    a.family = F::tag;
    a.lambda = rng.uniform(0.5, 2);
    a.scale = 1.0;
    a.cu = rng.uniform(0.5, 2);
    a.co = rng.uniform(0.5, 2);
    a.k = 1 + i % 4;
    a.window_start = i % 5;
    a.window_end = std::min(H, a.window_start + 3 + i % 8);
    a.energy = 1.0;
    agents.push_back(F::params(a));
  }
  std::vector<float> r(static_cast<size_t>(n));
  std::vector<double> acc(static_cast<size_t>(n * H), 0.0);
  double total = 0.0;
  for (auto _ : state) {
    for (const auto& prm : agents) {
      if constexpr (F::differentiable) {
        total += lanes::regrets<F>(prm, x, ctx, nullptr);
        lanes::add_dregrets<F>(prm, x, ctx, 1e-3f, acc.data());
      } else {
        total += lanes::regrets<F>(prm, x, ctx, r.data());
        lanes::axpy(1e-3, r.data(), acc.data(), n);
      }
    }
  }
  benchmark::DoNotOptimize(total);
  benchmark::DoNotOptimize(acc.data());
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(agents.size()) * n);
  state.SetLabel(std::string(F::name) + (F::differentiable ? " regret + derivative" : " regret + weighted sum"));
}

BENCHMARK(BM_PeakSimpleOps)->Threads(1);
BENCHMARK(BM_PeakConvertAccumulate)->Threads(1);
BENCHMARK(BM_PeakStores)->Threads(1);
BENCHMARK_TEMPLATE(BM_LanesKernel, Inventory)->Threads(1);
BENCHMARK_TEMPLATE(BM_LanesKernel, Datacenter)->Threads(1);
BENCHMARK_TEMPLATE(BM_LanesKernel, EvCharging)->Threads(1);

}  // namespace
}  // namespace eqpm::bench
