// `eqpm plan`: what a run across ranks would need and cost, without running it. A stated
// model, not a measurement: memory per rank counted from the arrays the backends hold, the
// bytes the ranks exchange per step by the deterministic gather (reducer.hpp) against a
// native all-reduce (--fast-reduce), and a step time from a per-evaluation cost (measured on this machine's
// CPU, or a roofline bound for a GPU) plus interconnect terms. Every assumption is a field
// of PlanMachine and is printed with the plan.
#pragma once

#include <string>
#include <vector>

namespace eqpm {

// The hardware the plan assumes. Defaults: NVIDIA H200 SXM and its interconnects, from
// published specifications (no GPU has run eqpm yet, so none of these is measured here).
struct PlanMachine {
  double gpu_flop_per_s = 67e12;        // FP32 peak, non-tensor
  double gpu_bytes_per_s = 4.8e12;      // HBM3e
  double gpu_memory_bytes = 141e9;      // HBM3e capacity
  double nvlink_bytes_per_s = 450e9;    // NVLink 4, per GPU per direction: NCCL bus bandwidth
  double nvlink_latency_s = 5e-6;       // per collective within a node
  double ib_bytes_per_s = 50e9;         // InfiniBand NDR 400 Gb/s, one NIC per GPU
  double ib_latency_s = 10e-6;          // per collective across nodes
  double cpu_bytes_per_s = 10e9;        // one CPU core streaming memory (the replicated passes)
};

struct PlanInput {
  double agents = 0;      // N
  int ranks = 1;          // K: GPUs (gpu) or CPU processes
  int nodes = 1;          // machines the ranks are spread over (ranks / nodes each)
  bool gpu = true;        // GPU ranks (roofline) or CPU ranks (measured cost)
  int threads = 1;        // CPU ranks: cores per rank
  int batch = 64, samples = 16, horizon = 12;
  long parameters = 0;    // MLP parameters P
  long activations = 0;   // floats of activations per input row (MlpLayout::activation_count)
  // Families present, each with its share of the agents and sizeof(F::Params).
  std::vector<double> family_share;
  std::vector<double> family_param_bytes;
  double host_agent_bytes = 0;  // sizeof(Agent): the population as loaded
  // CPU ranks: seconds per agent-sample regret evaluation on one core (a whole general-path
  // step divided by N B S, so it includes the per-step work that scales with N).
  double cpu_eval_seconds = 0;
  PlanMachine machine;
};

struct PlanMemory {     // bytes per rank
  double population = 0;  // agents as loaded plus each family's compact parameters (host)
  double agent_state = 0; // per-agent vectors: weights, Rhat, Rbar, omega, ... (+ gather buffer)
  double step = 0;        // per-step B S H and chunk-partial buffers
  double model = 0;       // parameters, Adam moments, gradients
  double total() const { return population + agent_state + step + model; }
};

struct PlanResult {
  PlanMemory memory;
  bool fits = true;             // GPU ranks: the device holds agent state, step and model
  double evaluations = 0;       // N B S per step
  double rank_share = 0;        // largest fraction of a family's chunks one rank evaluates
  long idle_ranks = 0;          // ranks that own no chunk (more ranks than chunks)
  // Per step.
  double compute_seconds = 0;   // the shared-out regret evaluation on the busiest rank
  double replicated_seconds = 0;// O(N) work every rank repeats (smoothing, objective, weights)
  int collectives = 0;          // gathers and one-value reductions per step
  double gather_bytes = 0;      // received per rank: Rhat of the other ranks' agents + partials
  double gather_seconds = 0;
  // --fast-reduce (a native all-reduce) instead: X and G, B (S + H) doubles, in one
  // all-reduce and the objective's and statistics' scalars in the others, per rank.
  int allreduce_collectives = 0;
  double allreduce_bytes = 0;
  double allreduce_seconds = 0;
  double step_seconds = 0;      // compute + replicated + gather
  double one_rank_seconds = 0;  // the same step on one rank
  double bus_bytes_per_s = 0;   // the collective bandwidth used (NVLink or InfiniBand)
  double latency_s = 0;
};

// Throws ConfigError naming the flag (--agents, --gpus or --ranks, --nodes, --threads) for
// values the plan cannot model.
void validate_plan(const PlanInput& in);

PlanResult plan(const PlanInput& in);

// The plan as text: inputs, assumptions, memory, exchange, time.
std::string plan_report(const PlanInput& in, const PlanResult& r);

// Chunks per family (host/cpu/chunks.hpp's kMax): ranks beyond this own none.
inline constexpr long kPlanChunks = 64;

}  // namespace eqpm
