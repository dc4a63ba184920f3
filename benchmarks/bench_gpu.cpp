// GPU backend benchmarks: the whole training step and the regret-and-advantage stage alone
// (passes 1 and 2 of DESIGN.md 5.2) on the default mixed population for N = 1e3 .. 1e6 agents
// with B = 64, S = 16, H = 12, and the CPU backend on the same workload and sizes for the
// speed-up (tools/bench_table.py puts them side by side). Rates are agent-sample evaluations
// per second (N B S per step).
//
// BM_GpuStep: wall time of Backend::step (it synchronises before returning its statistics),
// CUDA graphs on after warm-up (two eager steps, then the capture); a capture failure is an
// error, never a silent fall-back. BM_GpuRegretStage: CUDA-event times of the stages on warm
// eager steps (graphs off: a replayed graph has no per-stage events); each iteration is one
// step, its manual time the regret and reduction stages, and the counters the medians over
// every timed step of each stage (ms).
//
// Roofline counters (a model, stated so the fractions can be judged): a regret evaluation
// reads its sample's H predictions and truths from cache and does at least 2 H floating-point
// operations (a compare or multiply and an add per hour), so flop_per_s = 2 H x evaluations/s;
// DRAM traffic per step is at least the agents' parameters and per-agent state
// (kAgentBytes each: parameters, Rhat, Rbar, omega, weights) plus the B S H predictions and
// perturbations. The fractions are of the H200's FP32 (non-tensor) peak and HBM3e bandwidth.
// Every GPU benchmark reports an error (and runs nothing) without a device; an exception in a
// timed loop becomes the benchmark's error, and the other benchmarks still run.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/build_info.hpp"
#include "workloads.hpp"
#ifdef EQPM_WITH_CUDA
#include "eqpm/cuda_backend.hpp"
#endif

namespace eqpm::bench {
namespace {

constexpr int kBatch = 64, kSamples = 16;
constexpr double kH200Fp32FlopPerS = 67e12;  // non-tensor FP32 peak
constexpr double kH200BytesPerS = 4.8e12;    // HBM3e
constexpr double kAgentBytes = 72;           // parameters (<= 32 B) + 5 doubles per agent

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

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

void roofline_counters(benchmark::State& state, const Fixture& f) {
  const double evals = f.evaluations_per_step();
  const double H = f.cfg.horizon;
  const double bytes = kAgentBytes * static_cast<double>(f.in.population.size()) +
                       2.0 * 4.0 * kBatch * kSamples * H;
  state.counters["flop_per_s"] = benchmark::Counter(2.0 * H * evals, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["bytes_per_s"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["model_flop_per_step"] = 2.0 * H * evals;
  state.counters["model_bytes_per_step"] = bytes;
}

// The fractions of the H200's peaks, from the rates (set after the loop, when the time is known).
void peak_fractions(benchmark::State& state, double seconds_per_step) {
  if (seconds_per_step <= 0) return;
  state.counters["frac_fp32_peak"] =
      state.counters["model_flop_per_step"].value / seconds_per_step / kH200Fp32FlopPerS;
  state.counters["frac_hbm_peak"] =
      state.counters["model_bytes_per_step"].value / seconds_per_step / kH200BytesPerS;
}

std::unique_ptr<Fixture> gpu_fixture(benchmark::State& state, Workload w, CudaGraphs graphs,
                                     double& mib) {
  if (cuda_device_count() == 0) {
    state.SkipWithError("no CUDA device visible");
    return nullptr;
  }
  const double mib_before = device_mib();
  try {
    auto f = std::make_unique<Fixture>(w, state.range(0), kBatch, kSamples, "cuda", Path::automatic, 0, graphs);
    // The fixture ran step 0; steps 1 and 2 are the warm eager step and (graphs on) the capture.
    for (std::uint32_t k = 1; k < 3; ++k) {
      f->spec.step = k;
      f->backend->step(f->spec);
    }
    f->spec.step = 3;
    mib = device_mib() - mib_before;
    return f;
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return nullptr;
  }
}

void gpu_step(benchmark::State& state, Workload w) {
  double mib = 0;
  auto f = gpu_fixture(state, w, CudaGraphs::on, mib);
  if (!f) return;
  double total = 0;
  try {
    for (auto _ : state) {
      const auto t0 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(f->backend->step(f->spec));
      const double wall = seconds_since(t0);
      f->spec.step += 1;
      total += wall;
      state.SetIterationTime(wall);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  const BackendDiagnostics& d = f->backend->diagnostics();
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f->evaluations_per_step()));
  state.counters["device_MiB"] = mib;
  state.counters["graph_replays"] = static_cast<double>(d.graph_replays);
  state.counters["graph_capture_failures"] = static_cast<double>(d.graph_capture_failures);
  roofline_counters(state, *f);
  peak_fractions(state, state.iterations() ? total / static_cast<double>(state.iterations()) : 0);
  state.SetLabel(std::string(workload_name(w)) + " B=64 S=16 H=" + std::to_string(f->cfg.horizon) +
                 " graphs");
}

void gpu_regret_stage(benchmark::State& state, Workload w) {
  double mib = 0;
  auto f = gpu_fixture(state, w, CudaGraphs::off, mib);
  if (!f) return;
  constexpr std::array<const char*, 6> kStages = {"forward", "sampling", "regrets",
                                                  "reductions", "backward", "optimiser"};
  std::array<std::vector<double>, 6> per_stage;
  try {
    for (auto _ : state) {
      const StageTimes before = f->backend->stage_times();
      benchmark::DoNotOptimize(f->backend->step(f->spec));
      f->spec.step += 1;
      const StageTimes& after = f->backend->stage_times();
      const std::array<double, 6> d = {after.forward - before.forward,
                                       after.sampling - before.sampling,
                                       after.regrets - before.regrets,
                                       after.reductions - before.reductions,
                                       after.backward - before.backward,
                                       after.optimiser - before.optimiser};
      for (size_t i = 0; i < d.size(); ++i) per_stage[i].push_back(d[i]);
      state.SetIterationTime(d[2] + d[3]);
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  double all = 0;
  for (size_t i = 0; i < kStages.size(); ++i) {
    const double m = median(per_stage[i]);
    all += m;
    state.counters[std::string(kStages[i]) + "_ms_median"] = 1e3 * m;
  }
  const double stage = median(per_stage[2]) + median(per_stage[3]);
  state.counters["regret_stage_share"] = all > 0 ? stage / all : 0.0;
  state.counters["device_MiB"] = mib;
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f->evaluations_per_step()));
  roofline_counters(state, *f);
  peak_fractions(state, stage);
  state.SetLabel(std::string(workload_name(w)) + " B=64 S=16 H=" + std::to_string(f->cfg.horizon) +
                 " eager, CUDA events");
}

void cpu_step(benchmark::State& state, Workload w) {
  std::unique_ptr<Fixture> f;
  try {
    f = std::make_unique<Fixture>(w, state.range(0), kBatch, kSamples, "cpu");
    for (auto _ : state) {
      const auto t0 = std::chrono::steady_clock::now();
      benchmark::DoNotOptimize(f->backend->step(f->spec));
      f->spec.step += 1;
      state.SetIterationTime(seconds_since(t0));
    }
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * f->evaluations_per_step()));
  state.SetLabel(std::string(workload_name(w)) + " B=64 S=16, the GPU benchmarks' workload");
}

// Names read BM_GpuStep/mixed/N:1000000 (Google Benchmark appends /manual_time).
const bool registered = [] {
  benchmark::AddCustomContext("eqpm_commit", build_commit());
  const std::vector<long> sizes = {1000L, 10000L, 100000L, 1000000L};
  for (Workload w : {Workload::mixed, Workload::datacenter, Workload::ev_window, Workload::inventory}) {
    const std::string name = workload_name(w);
    auto* step = benchmark::RegisterBenchmark(("BM_GpuStep/" + name).c_str(),
                                              [w](benchmark::State& s) { gpu_step(s, w); });
    auto* stage = benchmark::RegisterBenchmark(("BM_GpuRegretStage/" + name).c_str(),
                                               [w](benchmark::State& s) { gpu_regret_stage(s, w); });
    for (auto* b : {step, stage}) {
      b->ArgName("N")->UseManualTime()->Unit(benchmark::kMillisecond);
      if (w == Workload::mixed)
        for (long n : sizes) b->Arg(n);
      else
        b->Arg(100000);  // the other workloads at one size, for the per-family costs
    }
  }
  auto* cpu = benchmark::RegisterBenchmark("BM_CpuStepSameWorkload/mixed",
                                           [](benchmark::State& s) { cpu_step(s, Workload::mixed); });
  cpu->ArgName("N")->UseManualTime()->Unit(benchmark::kMillisecond);
  for (long n : sizes) cpu->Arg(n);
  return true;
}();

}  // namespace
}  // namespace eqpm::bench
