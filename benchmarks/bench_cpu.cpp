// CPU backend benchmarks: the whole training step and the regret-and-advantage stage
// alone (passes 1 and 2 of DESIGN.md 5.2, from the backend's own stage timers), per
// workload and size. Rates are agent-sample evaluations per second (N B S per step).
#include <benchmark/benchmark.h>

#include <omp.h>

#include "workloads.hpp"

namespace eqpm::bench {
namespace {

// args: workload, N, B, S, shortcuts (1: DESIGN.md 5.4 factorisations, 0: general path)
void BM_CpuStep(benchmark::State& state) {
  const auto w = static_cast<Workload>(state.range(0));
  Fixture f(w, state.range(1), static_cast<int>(state.range(2)), static_cast<int>(state.range(3)),
            "cpu", state.range(4) != 0);
  std::uint32_t step = 0;
  for (auto _ : state) {
    f.spec.step = step++;
    benchmark::DoNotOptimize(f.backend->step(f.spec));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.evaluations_per_step()));
  state.SetLabel(std::string(workload_name(w)) + (state.range(4) ? "" : " general-path") +
                 " threads=" + std::to_string(omp_get_max_threads()));
}

void BM_CpuRegretStage(benchmark::State& state) {
  const auto w = static_cast<Workload>(state.range(0));
  Fixture f(w, state.range(1), static_cast<int>(state.range(2)), static_cast<int>(state.range(3)),
            "cpu", state.range(4) != 0);
  std::uint32_t step = 0;
  for (auto _ : state) {
    const StageTimes before = f.backend->stage_times();
    f.spec.step = step++;
    benchmark::DoNotOptimize(f.backend->step(f.spec));
    const StageTimes& after = f.backend->stage_times();
    state.SetIterationTime((after.regrets - before.regrets) + (after.reductions - before.reductions));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.evaluations_per_step()));
  state.SetLabel(std::string(workload_name(w)) + (state.range(4) ? "" : " general-path"));
}

void standard_sizes(benchmark::internal::Benchmark* b) {
  for (int w = 0; w < 4; ++w)
    for (long n : {1000L, 10000L, 100000L}) {
      b->Args({w, n, 64, 16, 1});
      if (n <= 10000) b->Args({w, n, 256, 32, 1});
    }
  // The general path on the mixed workload, for the speed-up of the 5.4 factorisations.
  b->Args({0, 10000, 64, 16, 0});
  b->ArgNames({"workload", "N", "B", "S", "shortcuts"});
}

BENCHMARK(BM_CpuStep)->Apply(standard_sizes)->Unit(benchmark::kMillisecond)->MinTime(0.5);
BENCHMARK(BM_CpuRegretStage)
    ->Apply(standard_sizes)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond)
    ->MinTime(0.5);

}  // namespace
}  // namespace eqpm::bench

BENCHMARK_MAIN();
