// GPU backend benchmarks (issue 3): the whole training step and the regret-and-advantage
// stage alone (passes 1 and 2 of DESIGN.md 5.2) on the default mixed population for
// N = 1e3 .. 1e6 agents with B = 256, S = 32, H = 12, and the CPU backend on the same
// workload up to N = 1e5 for the speed-up. Rates are agent-sample evaluations per second
// (N B S per step). Backend::step synchronises before it returns its statistics, so wall
// time around it is the step's time; the first two steps (eager, then graph capture) are
// warm-up. Counters: device_MiB, the device memory the backend holds after set-up and
// warm-up. Every GPU benchmark reports an error (and runs nothing) without a device.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "eqpm/backend.hpp"
#include "workloads.hpp"
#ifdef EQPM_WITH_CUDA
#include "eqpm/cuda_backend.hpp"
#endif

namespace eqpm::bench {
namespace {

constexpr int kBatch = 256, kSamples = 32;

double device_mib() {
#ifdef EQPM_WITH_CUDA
  return static_cast<double>(cuda::device_memory_in_use()) / (1024.0 * 1024.0);
#else
  return 0.0;
#endif
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// stage_only: time the regret and reduction stages alone (the backend's stage timers; with a
// CUDA graph, the step's wall time split in the proportions measured without the graph).
void gpu_step(benchmark::State& state, Workload w, bool stage_only) {
  if (cuda_device_count() == 0) {
    state.SkipWithError("no CUDA device visible");
    return;
  }
  const long agents = state.range(0);
  const double mib_before = device_mib();
  std::unique_ptr<Fixture> f;
  try {
    f = std::make_unique<Fixture>(w, agents, kBatch, kSamples, "cuda");
    for (std::uint32_t k = 0; k < 2; ++k) {  // eager step, then the graph capture
      f->spec.step = k;
      f->backend->step(f->spec);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const double mib = device_mib() - mib_before;
  std::uint32_t step = 2;
  for (auto _ : state) {
    f->spec.step = step++;
    const StageTimes before = f->backend->stage_times();
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(f->backend->step(f->spec));
    const double wall = seconds_since(t0);
    const StageTimes& after = f->backend->stage_times();
    state.SetIterationTime(stage_only ? (after.regrets - before.regrets) +
                                            (after.reductions - before.reductions)
                                      : wall);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f->evaluations_per_step()));
  state.counters["device_MiB"] = mib;
  state.SetLabel(std::string(workload_name(w)) + " B=256 S=32 H=" + std::to_string(f->cfg.horizon));
}

void cpu_step(benchmark::State& state, Workload w) {
  Fixture f(w, state.range(0), kBatch, kSamples, "cpu");
  std::uint32_t step = 1;
  for (auto _ : state) {
    f.spec.step = step++;
    const auto t0 = std::chrono::steady_clock::now();
    benchmark::DoNotOptimize(f.backend->step(f.spec));
    state.SetIterationTime(seconds_since(t0));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.evaluations_per_step()));
  state.SetLabel(std::string(workload_name(w)) + " B=256 S=32, the GPU benchmark's workload");
}

// Names read BM_GpuStep/mixed/N:1000000 (Google Benchmark appends /manual_time).
const bool registered = [] {
  for (Workload w : {Workload::mixed, Workload::datacenter, Workload::ev_window, Workload::inventory}) {
    const std::string name = workload_name(w);
    const bool mixed = w == Workload::mixed;
    auto* step = benchmark::RegisterBenchmark(("BM_GpuStep/" + name).c_str(),
                                              [w](benchmark::State& s) { gpu_step(s, w, false); });
    auto* stage = benchmark::RegisterBenchmark(("BM_GpuRegretStage/" + name).c_str(),
                                               [w](benchmark::State& s) { gpu_step(s, w, true); });
    for (auto* b : {step, stage}) {
      b->ArgName("N")->UseManualTime()->Unit(benchmark::kMillisecond);
      if (mixed)
        for (long n : {1000L, 10000L, 100000L, 1000000L}) b->Arg(n);
      else
        b->Arg(100000);  // the other workloads at one size, for the per-family costs
    }
  }
  benchmark::RegisterBenchmark("BM_CpuStepSameWorkload/mixed",
                               [](benchmark::State& s) { cpu_step(s, Workload::mixed); })
      ->ArgName("N")
      ->Arg(1000)
      ->Arg(10000)
      ->Arg(100000)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
}  // namespace eqpm::bench
