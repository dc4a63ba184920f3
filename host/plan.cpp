// The dry-run planner (plan.hpp): counts and a stated time model, no training.
#include "host/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "eqpm/error.hpp"

namespace eqpm {
namespace {

// Bytes the deterministic gather moves per step besides Rhat: each family's chunk partial
// sums of X (B S values; pathwise families send G, B H, which is no larger at S >= H).
double partial_bytes(const PlanInput& in) {
  return static_cast<double>(in.family_share.size()) * kPlanChunks * in.batch * in.samples * 8.0;
}

// The compact parameters of one agent, averaged over the mix.
double param_bytes(const PlanInput& in) {
  double b = 0;
  for (size_t f = 0; f < in.family_share.size(); ++f) b += in.family_share[f] * in.family_param_bytes[f];
  return b;
}

std::string bytes_text(double b) {
  char buf[32];
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", b, unit[u]);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  if (s >= 1.0) std::snprintf(buf, sizeof buf, "%.3g s", s);
  else if (s >= 1e-3) std::snprintf(buf, sizeof buf, "%.3g ms", s * 1e3);
  else std::snprintf(buf, sizeof buf, "%.3g us", s * 1e6);
  return buf;
}

// "1e8" rather than printf's "1e+08".
std::string number_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  std::string t = buf;
  if (const auto e = t.find("e+"); e != std::string::npos) {
    size_t d = e + 2;
    while (d + 1 < t.size() && t[d] == '0') ++d;
    t = t.substr(0, e + 1) + t.substr(d);
  }
  return t;
}

// 67e12 and "FLOP/s" -> "67 TFLOP/s".
std::string si_text(double v, const char* unit) {
  const char* prefix[] = {"", "k", "M", "G", "T", "P"};
  int i = 0;
  while (v >= 1000.0 && i < 5) {
    v /= 1000.0;
    ++i;
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3g %s%s", v, prefix[i], unit);
  return buf;
}

}  // namespace

void validate_plan(const PlanInput& in) {
  const char* ranks_flag = in.gpu ? "--gpus" : "--ranks";
  if (!(in.agents >= 1 && in.agents <= 1e12) || std::floor(in.agents) != in.agents)
    throw ConfigError("--agents: expected a whole number of agents from 1 to 1e12, got " +
                      number_text(in.agents));
  if (in.ranks < 1 || in.ranks > 65536)
    throw ConfigError(std::string(ranks_flag) + ": expected 1 to 65536, got " + std::to_string(in.ranks));
  if (in.nodes < 1 || in.nodes > in.ranks)
    throw ConfigError("--nodes: expected 1 to " + std::to_string(in.ranks) + " (one rank per node at " +
                      "least), got " + std::to_string(in.nodes));
  if (in.ranks % in.nodes != 0)
    throw ConfigError("--nodes: " + std::to_string(in.ranks) + (in.gpu ? " GPUs" : " ranks") +
                      " do not split evenly over " + std::to_string(in.nodes) + " nodes");
  if (!in.gpu && in.threads < 1)
    throw ConfigError("--threads: expected at least one core per rank, got " + std::to_string(in.threads));
  if (!in.gpu && !(in.cpu_eval_seconds > 0))
    throw ConfigError("--cpu-eval-ns: expected a cost per evaluation above 0");
  if (in.family_share.empty() || in.family_share.size() != in.family_param_bytes.size())
    throw ConfigError("--mix: no family with a positive share");
}

PlanResult plan(const PlanInput& in) {
  validate_plan(in);
  PlanResult r;
  const double N = in.agents, B = in.batch, S = in.samples, H = in.horizon;
  const double K = in.ranks, F = static_cast<double>(in.family_share.size());
  const double P = static_cast<double>(in.parameters);
  const PlanMachine& m = in.machine;

  // Memory: every rank holds the whole population and the model (the gather design).
  const double params = param_bytes(in);
  if (in.gpu) {
    r.memory.population = N * params;  // device copy of the compact parameters
    // w, w/W, Rbar, Rbar new, Rhat, omega, evaluation regret, the gather's staging copy
    // (doubles) and the structured path's class index (int).
    r.memory.agent_state = N * (8 * 8.0 + 4.0);
  } else {
    // The agents as loaded, each family's compact parameters, index and weight.
    r.memory.population = N * (in.host_agent_bytes + params + 16.0);
    // Rbar, Rhat, Rbar new, omega, omega for the score sums, w, the gather buffer (doubles)
    // and the agent's group (int).
    r.memory.agent_state = N * (7 * 8.0 + 4.0);
  }
  r.memory.step = 2 * B * S * H * 4.0 + 2 * B * H * 4.0 + B * in.activations * 4.0 +
                  2 * B * S * 8.0 + B * H * 8.0 + F * kPlanChunks * (B * S + B * H) * 8.0;
  r.memory.model = P * (4.0 * 3 + 8.0 + 4.0);  // parameters, m, v (float), gradient (double, float)
  r.fits = !in.gpu || r.memory.total() <= m.gpu_memory_bytes;

  // Compute: the busiest rank's share of each family's fixed chunks.
  long most = 0;
  for (long k = 0; k < in.ranks; ++k) {
    const long owned = kPlanChunks * (k + 1) / in.ranks - kPlanChunks * k / in.ranks;
    most = std::max(most, owned);
    if (owned == 0) ++r.idle_ranks;
  }
  r.rank_share = static_cast<double>(most) / kPlanChunks;
  r.evaluations = N * B * S;
  auto compute = [&](double share) {
    if (!in.gpu) return r.evaluations * share * in.cpu_eval_seconds / in.threads;
    // Roofline (benchmarks/bench_gpu.cpp's minimum-work model): 2 H flops per evaluation;
    // each agent's parameters and 5 doubles, and the B S H predictions and perturbations,
    // read once from HBM.
    const double flops = r.evaluations * share * 2.0 * H;
    const double bytes = N * share * (params + 40.0) + 2.0 * 4.0 * B * S * H;
    return std::max(flops / m.gpu_flop_per_s, bytes / m.gpu_bytes_per_s);
  };
  r.compute_seconds = compute(r.rank_share);
  // Smoothing, the objective's two passes and the weights: about 10 doubles per agent
  // streamed, on every rank.
  r.replicated_seconds = N * 80.0 / (in.gpu ? m.gpu_bytes_per_s : m.cpu_bytes_per_s * in.threads);

  // Exchange: per family a gather of Rhat and one of the chunk partials, then the overflow
  // flag's max and the stop agreement's max.
  r.collectives = in.ranks > 1 ? static_cast<int>(2 * F + 2) : 0;
  if (in.nodes > 1) {
    r.bus_bytes_per_s = m.ib_bytes_per_s;
    r.latency_s = m.ib_latency_s;
  } else if (in.gpu) {
    r.bus_bytes_per_s = m.nvlink_bytes_per_s;
    r.latency_s = m.nvlink_latency_s;
  } else {  // CPU ranks on one machine: copies through shared memory
    r.bus_bytes_per_s = m.cpu_bytes_per_s;
    r.latency_s = 2e-6;
  }
  if (in.ranks > 1) {
    // NCCL's bus bandwidth convention: an all-gather of T bytes in total takes
    // T (K - 1) / K / busbw, which is also what each rank receives.
    const double total = N * 8.0 + partial_bytes(in);
    r.gather_bytes = total * (K - 1) / K;
    r.gather_seconds = r.collectives * r.latency_s + r.gather_bytes / r.bus_bytes_per_s;
    // --fast-reduce, a native all-reduce (sums in the transport's order: reproducible per
    // rank count only): X and G, B (S + H) doubles, in one; 6 scalars in two more (the
    // maxima of Rhat and Rbar and a finiteness flag, then the sums of terms of both
    // objectives and of the regrets), and the overflow and stop flags as the gather path.
    // An all-reduce moves 2 (K - 1) / K of its bytes.
    const double sums = (B * S + B * H + 6) * 8.0;
    r.allreduce_collectives = 5;
    r.allreduce_bytes = sums * 2 * (K - 1) / K;
    r.allreduce_seconds = r.allreduce_collectives * r.latency_s + r.allreduce_bytes / r.bus_bytes_per_s;
  }
  r.step_seconds = r.compute_seconds + r.replicated_seconds + r.gather_seconds;
  r.one_rank_seconds = compute(1.0) + r.replicated_seconds;
  return r;
}

std::string plan_report(const PlanInput& in, const PlanResult& r) {
  const PlanMachine& m = in.machine;
  std::string s;
  char buf[512];
  auto line = [&](const char* fmt, auto... args) {
    std::snprintf(buf, sizeof buf, fmt, args...);
    s += buf;
  };
  const char* what = in.gpu ? "GPUs" : "CPU ranks";
  line("plan: %s agents, %d %s on %d node%s, B = %d, S = %d, H = %d, %ld parameters\n",
       number_text(in.agents).c_str(), in.ranks, what, in.nodes, in.nodes > 1 ? "s" : "",
       in.batch, in.samples, in.horizon, in.parameters);
  line("  every agent on the general path (the shared-out work; the default path factorises\n"
       "  datacenter and EV agents and is cheaper); a step evaluates N B S = %s regrets\n",
       number_text(r.evaluations).c_str());

  s += "\nmemory per rank (every rank holds the whole population and the model):\n";
  line("  population     %12s  %s\n", bytes_text(r.memory.population).c_str(),
       in.gpu ? "(device: each agent's compact family parameters)"
              : "(agents as loaded, compact family parameters, index, weight)");
  line("  agent state    %12s  (per agent: %s)\n", bytes_text(r.memory.agent_state).c_str(),
       in.gpu ? "8 doubles and an int, the gather's buffer included" : "7 doubles and an int, the gather's buffer included");
  line("  step buffers   %12s  (B S H predictions and perturbations, chunk partial sums)\n",
       bytes_text(r.memory.step).c_str());
  line("  model          %12s  (parameters, Adam moments, gradients)\n", bytes_text(r.memory.model).c_str());
  line("  total          %12s%s\n", bytes_text(r.memory.total()).c_str(),
       in.gpu ? (r.fits ? "  (fits in the H200's 141 GB)" : "  (does NOT fit in the H200's 141 GB)") : "");
  if (in.gpu)
    line("  host, per rank %12s  (the population as loaded, as on a CPU rank)\n",
         bytes_text(in.agents * (in.host_agent_bytes + 16.0)).c_str());

  s += "\nexchanged per step and rank:\n";
  if (in.ranks == 1) {
    s += "  nothing (one rank)\n";
  } else {
    line("  deterministic gather: %s received in %d collectives (Rhat of the other ranks'\n"
         "    agents, N x 8 B in all, and each family's %ld chunk partial sums); the same bits\n"
         "    for any rank count\n",
         bytes_text(r.gather_bytes).c_str(), r.collectives, kPlanChunks);
    line("  --fast-reduce (a native all-reduce, CPU ranks) instead: %s in %d collectives (X\n"
         "    and G, B (S + H) doubles, and 6 scalars); whatever N; reproducible per rank count\n"
         "    only; the per-agent vectors stay full length on every rank (not yet N / K each)\n",
         bytes_text(r.allreduce_bytes).c_str(), r.allreduce_collectives);
  }
  if (r.idle_ranks > 0)
    line("  note: %ld of %d ranks own no chunk (each family has %ld chunks): they only repeat work\n",
         r.idle_ranks, in.ranks, kPlanChunks);

  s += "\npredicted time per step (a model, see the assumptions):\n";
  line("  regret evaluation  %10s  (busiest rank: %s of each family's chunks)\n",
       seconds_text(r.compute_seconds).c_str(), number_text(r.rank_share).c_str());
  line("  replicated O(N)    %10s  (smoothing, objective, weights on every rank)\n",
       seconds_text(r.replicated_seconds).c_str());
  if (in.ranks > 1) {
    line("  gather             %10s  (--fast-reduce's native all-reduce: %s)\n",
         seconds_text(r.gather_seconds).c_str(), seconds_text(r.allreduce_seconds).c_str());
  }
  line("  step               %10s  (one rank: %s; speed-up %sx on %d %s)\n",
       seconds_text(r.step_seconds).c_str(), seconds_text(r.one_rank_seconds).c_str(),
       number_text(r.one_rank_seconds / r.step_seconds).c_str(), in.ranks, what);

  s += "\nassumptions:\n";
  if (in.gpu) {
    line("  GPU: H200 roofline, %s FP32 and %s HBM, %s of memory; 2 H flops per\n"
         "    evaluation and %s B per agent read per step (a lower bound on time: no GPU has run\n"
         "    eqpm yet, so no measured cost exists)\n",
         si_text(m.gpu_flop_per_s, "FLOP/s").c_str(), si_text(m.gpu_bytes_per_s, "B/s").c_str(),
         si_text(m.gpu_memory_bytes, "B").c_str(), number_text(param_bytes(in) + 40.0).c_str());
  } else {
    line("  CPU: %s ns per agent-sample evaluation on one core (a whole general-path step over\n"
         "    N B S), %d core%s per rank, scaling linearly\n",
         number_text(in.cpu_eval_seconds * 1e9).c_str(), in.threads, in.threads > 1 ? "s" : "");
  }
  line("  replicated passes: 80 B per agent at %s\n",
       si_text(in.gpu ? m.gpu_bytes_per_s : m.cpu_bytes_per_s * in.threads, "B/s").c_str());
  if (in.ranks > 1) {
    const char* link = in.nodes > 1 ? "InfiniBand NDR 400 Gb/s, one NIC per GPU"
                       : in.gpu     ? "NVLink 4, per GPU per direction"
                                    : "shared memory between processes on one machine";
    line("  collectives: %s bus bandwidth (%s),\n"
         "    %s per collective; an all-gather of T bytes takes T (K - 1) / K / bandwidth, an\n"
         "    all-reduce twice that (NCCL's bus-bandwidth convention; real runs reach a fraction\n"
         "    of the link's peak)\n",
         si_text(r.bus_bytes_per_s, "B/s").c_str(), link, seconds_text(r.latency_s).c_str());
  }
  s += "  the MLP (forward and backward on B rows, replicated) and evaluation are left out\n";
  return s;
}

}  // namespace eqpm
