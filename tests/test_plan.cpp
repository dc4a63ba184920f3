// eqpm plan's arithmetic (plan.hpp): memory per rank, bytes exchanged, the chunk share of
// the busiest rank, the time model's terms, and the errors for bad flags. Expected values
// are worked out here by hand from the model's stated formulas.
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "cpu/chunks.hpp"
#include "eqpm/error.hpp"
#include "host/plan.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

PlanInput gpu_input(double agents, int gpus) {
  PlanInput in;
  in.agents = agents;
  in.ranks = gpus;
  in.gpu = true;
  in.batch = 64;
  in.samples = 16;
  in.horizon = 12;
  in.parameters = 1000;
  in.activations = 140;
  in.family_share = {1.0};
  in.family_param_bytes = {16.0};
  in.host_agent_bytes = 80.0;
  return in;
}

std::string error_of(const PlanInput& in) {
  try {
    validate_plan(in);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Plan, ChunksAreTheCpuBackendsChunks) { EXPECT_EQ(kPlanChunks, chunks::kMax); }

TEST(Plan, MemoryPerGpuRankIsCountedFromTheArrays) {
  const PlanResult r = plan(gpu_input(1e6, 8));
  EXPECT_DOUBLE_EQ(r.memory.population, 16e6);
  EXPECT_DOUBLE_EQ(r.memory.agent_state, 68e6);  // 8 doubles and an int per agent
  const double step = 2 * 64 * 16 * 12 * 4 + 2 * 64 * 12 * 4 + 64 * 140 * 4 + 2 * 64 * 16 * 8 +
                      64 * 12 * 8 + 1 * 64 * (64 * 16 + 64 * 12) * 8;
  EXPECT_DOUBLE_EQ(r.memory.step, step);
  EXPECT_DOUBLE_EQ(r.memory.model, 1000 * (3 * 4.0 + 8 + 4));  // params, m, v; gradients
  EXPECT_TRUE(r.fits);
  // Every rank holds the whole population: memory does not fall with the rank count.
  EXPECT_DOUBLE_EQ(plan(gpu_input(1e6, 1)).memory.total(), r.memory.total());
  // 2e9 agents at 84 B each do not fit in 141 GB.
  EXPECT_FALSE(plan(gpu_input(2e9, 8)).fits);
  EXPECT_NE(plan_report(gpu_input(2e9, 8), plan(gpu_input(2e9, 8))).find("does NOT fit"),
            std::string::npos);
}

TEST(Plan, GatherMovesEveryOtherRanksRegretsAndPartials) {
  PlanInput in = gpu_input(1e6, 4);
  in.family_share = {0.5, 0.5};
  in.family_param_bytes = {16.0, 12.0};
  const PlanResult r = plan(in);
  const double total = 1e6 * 8 + 2 * 64 * 64 * 16 * 8.0;  // Rhat, and per family 64 chunks of B S
  EXPECT_DOUBLE_EQ(r.gather_bytes, total * 3 / 4);
  EXPECT_EQ(r.collectives, 2 * 2 + 2);
  EXPECT_DOUBLE_EQ(r.bus_bytes_per_s, in.machine.nvlink_bytes_per_s);
  EXPECT_DOUBLE_EQ(r.gather_seconds, 6 * in.machine.nvlink_latency_s + total * 3 / 4 / 450e9);
  // --fast-reduce's native all-reduce: B (S + H) + 6 doubles, twice (K - 1) / K of them.
  EXPECT_DOUBLE_EQ(r.allreduce_bytes, (64 * 16 + 64 * 12 + 6) * 8.0 * 2 * 3 / 4);
  EXPECT_EQ(r.allreduce_collectives, 5);
  EXPECT_LT(r.allreduce_seconds, r.gather_seconds);
  // Across nodes the InfiniBand link is the bottleneck.
  in.ranks = 16;
  in.nodes = 2;
  const PlanResult two = plan(in);
  EXPECT_DOUBLE_EQ(two.bus_bytes_per_s, in.machine.ib_bytes_per_s);
  EXPECT_DOUBLE_EQ(two.latency_s, in.machine.ib_latency_s);
  EXPECT_GT(two.gather_seconds, r.gather_seconds);
}

TEST(Plan, OneRankExchangesNothing) {
  const PlanResult r = plan(gpu_input(1e6, 1));
  EXPECT_EQ(r.collectives, 0);
  EXPECT_EQ(r.gather_bytes, 0);
  EXPECT_EQ(r.gather_seconds, 0);
  EXPECT_DOUBLE_EQ(r.step_seconds, r.one_rank_seconds);
  EXPECT_DOUBLE_EQ(r.rank_share, 1.0);
}

TEST(Plan, BusiestRankOwnsTheLargestShareOfTheFixedChunks) {
  EXPECT_DOUBLE_EQ(plan(gpu_input(1e6, 2)).rank_share, 0.5);
  EXPECT_DOUBLE_EQ(plan(gpu_input(1e6, 3)).rank_share, 22.0 / 64);  // 21, 21, 22 chunks
  EXPECT_DOUBLE_EQ(plan(gpu_input(1e6, 8)).rank_share, 8.0 / 64);
  const PlanResult many = plan(gpu_input(1e6, 128));
  EXPECT_DOUBLE_EQ(many.rank_share, 1.0 / 64);
  EXPECT_EQ(many.idle_ranks, 64);
  EXPECT_EQ(plan(gpu_input(1e6, 64)).idle_ranks, 0);
}

TEST(Plan, GpuComputeIsTheRooflineBound) {
  const PlanInput in = gpu_input(1e8, 8);
  const PlanResult r = plan(in);
  const double evals = 1e8 * 64 * 16;
  EXPECT_DOUBLE_EQ(r.evaluations, evals);
  const double flops = evals * (8.0 / 64) * 2 * 12 / 67e12;
  const double bytes = (1e8 * (8.0 / 64) * (16 + 40) + 2 * 4.0 * 64 * 16 * 12) / 4.8e12;
  EXPECT_DOUBLE_EQ(r.compute_seconds, std::max(flops, bytes));
  EXPECT_GT(flops, bytes);  // at H = 12 the evaluation is compute-bound
  EXPECT_DOUBLE_EQ(r.replicated_seconds, 1e8 * 80 / 4.8e12);
  EXPECT_DOUBLE_EQ(r.step_seconds, r.compute_seconds + r.replicated_seconds + r.gather_seconds);
  EXPECT_DOUBLE_EQ(r.one_rank_seconds, evals * 24 / 67e12 + r.replicated_seconds);
  EXPECT_GT(r.one_rank_seconds / r.step_seconds, 1.0);
  EXPECT_LT(r.one_rank_seconds / r.step_seconds, 8.0);  // the replicated work and gather cost
}

TEST(Plan, CpuComputeUsesTheMeasuredCostPerEvaluation) {
  PlanInput in = gpu_input(1e6, 4);
  in.gpu = false;
  in.threads = 2;
  in.cpu_eval_seconds = 10e-9;
  const PlanResult r = plan(in);
  EXPECT_DOUBLE_EQ(r.compute_seconds, 1e6 * 64 * 16 * 0.25 * 10e-9 / 2);
  EXPECT_DOUBLE_EQ(r.memory.population, 1e6 * (80 + 16 + 16));
  EXPECT_DOUBLE_EQ(r.memory.agent_state, 1e6 * 60);
  EXPECT_DOUBLE_EQ(r.replicated_seconds, 1e6 * 80 / (10e9 * 2));
}

TEST(Plan, BadFlagsAreNamed) {
  PlanInput in = gpu_input(1e6, 8);
  EXPECT_EQ(error_of(in), "");
  in.agents = 0;
  EXPECT_NE(error_of(in).find("--agents"), std::string::npos);
  in.agents = 1.5;
  EXPECT_NE(error_of(in).find("--agents"), std::string::npos);
  in.agents = 1e13;
  EXPECT_NE(error_of(in).find("--agents"), std::string::npos);
  in.agents = 1e6;
  in.ranks = 0;
  EXPECT_NE(error_of(in).find("--gpus"), std::string::npos);
  in.gpu = false;
  in.cpu_eval_seconds = 1e-8;
  EXPECT_NE(error_of(in).find("--ranks"), std::string::npos);
  in.ranks = 8;
  in.nodes = 3;
  EXPECT_NE(error_of(in).find("--nodes: 8 ranks do not split evenly over 3 nodes"), std::string::npos);
  in.nodes = 9;
  EXPECT_NE(error_of(in).find("--nodes"), std::string::npos);
  in.nodes = 2;
  in.threads = 0;
  EXPECT_NE(error_of(in).find("--threads"), std::string::npos);
  in.threads = 1;
  in.cpu_eval_seconds = 0;
  EXPECT_NE(error_of(in).find("--cpu-eval-ns"), std::string::npos);
  in.cpu_eval_seconds = 1e-8;
  EXPECT_EQ(error_of(in), "");
  EXPECT_THROW(plan(gpu_input(-1, 8)), ConfigError);
}

// The program: a GPU plan prints its assumptions; flags are checked with their names.
int run_plan(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " plan " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(Plan, ProgramPrintsThePlanAndNamesBadFlags) {
  test::TempDir tmp;
  const std::string log = tmp.file("log");
  ASSERT_EQ(run_plan("--agents 1e8 --gpus 8", log), 0) << test::read_file(log);
  const std::string text = test::read_file(log);
  for (const char* want : {"plan: 1e8 agents, 8 GPUs on 1 node", "memory per rank", "deterministic gather",
                           "native all-reduce", "67 TFLOP/s", "NVLink", "no GPU has run"})
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  ASSERT_EQ(run_plan("--agents 1e6 --ranks 2 --cpu-eval-ns 10", log), 0) << test::read_file(log);
  EXPECT_NE(test::read_file(log).find("10 ns per agent-sample evaluation"), std::string::npos);
  const std::pair<const char*, const char*> bad[] = {
      {"--agents 1e8", "--gpus or --ranks"},
      {"--agents 1e8 --gpus 8 --ranks 2", "--gpus and --ranks"},
      {"--agents lots --gpus 8", "--agents: expected a whole number"},
      {"--gpus 8", "--agents: plan needs"},
      {"--agents 1e8 --gpus 8 --nodes 3", "--nodes: 8 GPUs do not split evenly over 3 nodes"},
      {"--agents 1e8 --gpus 8 --lr 0.1", "--lr: not used by plan"},
      {"--agents 1e8 --gpus 8 --cpu-eval-ns 5", "--cpu-eval-ns: only for CPU ranks"},
      {"--agents 1e8 --gpus 8 --batch 0", "--batch"},
  };
  for (const auto& [args, want] : bad) {
    EXPECT_EQ(run_plan(args, log), 1) << args;
    EXPECT_NE(test::read_file(log).find(want), std::string::npos) << args << ": " << test::read_file(log);
  }
}

}  // namespace
}  // namespace eqpm
