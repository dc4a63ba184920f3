// The benchmark workloads of the performance issue, shared by the CPU and GPU suites:
//   mixed      datacenter 0.4, ev_charging 0.4, inventory 0.2, H = 12 (the default population)
//   datacenter datacenter only, H = 1
//   ev-window  ev_charging only with random availability windows (general path), H = 12
//   inventory  inventory only, H = 12
#pragma once

#include <memory>
#include <string>

#include "host/run.hpp"

namespace eqpm::bench {

enum class Workload { mixed = 0, datacenter = 1, ev_window = 2, inventory = 3 };

inline const char* workload_name(Workload w) {
  switch (w) {
    case Workload::mixed: return "mixed";
    case Workload::datacenter: return "datacenter";
    case Workload::ev_window: return "ev-window";
    case Workload::inventory: return "inventory";
  }
  return "?";
}

inline RunConfig workload_config(Workload w, long agents, int batch, int samples) {
  RunConfig cfg;
  cfg.agents = agents;
  cfg.batch = batch;
  cfg.samples = samples;
  cfg.series_hours = 24 * 120;  // the series length does not change the per-step cost
  cfg.quiet = true;
  switch (w) {
    case Workload::mixed: break;
    case Workload::datacenter:
      cfg.mix = "dc=1";
      cfg.horizon = 1;
      cfg.ev_k = {1, 1};
      cfg.inv_hour = {0, 0};
      break;
    case Workload::ev_window:
      cfg.mix = "ev=1";
      cfg.ev_window_min = 3;
      break;
    case Workload::inventory: cfg.mix = "inv=1"; break;
  }
  return cfg;
}

// Which regret path a benchmark measures (Problem::regret_path); the benchmarks' `path`
// argument: 0 reference, 1 generic, 2 automatic (the structured forms where they pay).
enum class Path { reference = 0, generic = 1, automatic = 2 };

inline const char* path_name(Path p) {
  switch (p) {
    case Path::reference: return "reference";
    case Path::generic: return "generic";
    case Path::automatic: return "automatic";
  }
  return "?";
}

// Inputs and a set-up backend for one workload and path.
struct Fixture {
  RunConfig cfg;
  RunInputs in;
  std::unique_ptr<Backend> backend;
  StepSpec spec;

  Fixture(Workload w, long agents, int batch, int samples, const std::string& backend_name,
          Path path = Path::automatic, int threads = 0, CudaGraphs graphs = CudaGraphs::automatic) {
    cfg = workload_config(w, agents, batch, samples);
    cfg.threads = threads;
    cfg.cuda_graphs = graphs;
    in = load_inputs(cfg);
    backend = make_backend(backend_name, threads);
    Problem p = make_problem(cfg, in);
    p.regret_path = path == Path::reference ? RegretPath::reference
                    : path == Path::automatic ? RegretPath::automatic
                                              : RegretPath::generic;
    backend->setup(p);
    spec.beta = cfg.beta;
    spec.lr = 1e-6;
    for (long b = 0; b < batch; ++b) spec.rows.push_back((b * 37) % in.data.fit_rows);
    // One step first: the first step of a run has no smoothed regrets yet and takes the
    // two-pass route; benchmarks measure the steady state.
    backend->step(spec);
    spec.step = 1;
  }
  double evaluations_per_step() const {
    return static_cast<double>(in.population.size()) * spec.rows.size() * cfg.samples;
  }
};

}  // namespace eqpm::bench
