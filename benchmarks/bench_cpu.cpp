// CPU backend benchmarks: the whole training step and the regret-and-advantage stage
// alone (passes 1 and 2 of DESIGN.md 5.2, from the backend's own stage timers), per
// workload and size. Rates are agent-sample evaluations per second (N B S per step).
#include <benchmark/benchmark.h>

#include <exception>

#include <omp.h>

#include "workloads.hpp"

namespace eqpm::bench {
namespace {

// args: workload, N, B, S, path (0: the plain reference; 1: the general sample-lane path for
// every agent; 2: the DESIGN.md 5.4 factorisations where a family has one, lanes elsewhere)
void BM_CpuStep(benchmark::State& state) {
  try {
    const auto w = static_cast<Workload>(state.range(0));
    Fixture f(w, state.range(1), static_cast<int>(state.range(2)), static_cast<int>(state.range(3)),
              "cpu", static_cast<Path>(state.range(4)));
    std::uint32_t step = 1;
    for (auto _ : state) {
      f.spec.step = step++;
      benchmark::DoNotOptimize(f.backend->step(f.spec));
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.evaluations_per_step()));
    state.SetLabel(std::string(workload_name(w)) + " " + path_name(static_cast<Path>(state.range(4))) +
                   " threads=" + std::to_string(omp_get_max_threads()));
  } catch (const std::exception& e) {  // a failure skips this benchmark only
    state.SkipWithError(e.what());
  }
}

void BM_CpuRegretStage(benchmark::State& state) {
  try {
    const auto w = static_cast<Workload>(state.range(0));
    Fixture f(w, state.range(1), static_cast<int>(state.range(2)), static_cast<int>(state.range(3)),
              "cpu", static_cast<Path>(state.range(4)));
    std::uint32_t step = 1;
    for (auto _ : state) {
      const StageTimes before = f.backend->stage_times();
      f.spec.step = step++;
      benchmark::DoNotOptimize(f.backend->step(f.spec));
      const StageTimes& after = f.backend->stage_times();
      state.SetIterationTime((after.regrets - before.regrets) + (after.reductions - before.reductions));
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f.evaluations_per_step()));
    state.SetLabel(std::string(workload_name(w)) + " " + path_name(static_cast<Path>(state.range(4))));
  } catch (const std::exception& e) {  // a failure skips this benchmark only
    state.SkipWithError(e.what());
  }
}

void standard_sizes(benchmark::internal::Benchmark* b) {
  for (int w = 0; w < 4; ++w)
    for (long n : {1000L, 10000L, 100000L}) {
      b->Args({w, n, 64, 16, 2});
      if (n <= 10000) b->Args({w, n, 256, 32, 2});
    }
  // At N = 10^4: every workload on the plain reference, and the general sample-lane path
  // without the 5.4 factorisations (what a custom family gets), for the speed-ups.
  for (int w = 0; w < 4; ++w) {
    b->Args({w, 10000, 64, 16, 0});
    b->Args({w, 10000, 64, 16, 1});
  }
  b->ArgNames({"workload", "N", "B", "S", "path"});
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
