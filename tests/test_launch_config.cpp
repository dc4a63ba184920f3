// The CUDA kernels' launch configurations (kernels/launch_config.hpp, the functions the
// launchers call) against the per-block limits of sm_90 over the configuration's whole range:
// H = 1 .. kMaxHorizon, B = 1 .. 65536, S = 2 .. kMaxSamples, up to 1e8 agents, every family's
// parameter size. Plain C++: runs on every machine, with or without a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "host/build_info.hpp"
#include "eqpm/families.hpp"
#include "launch_config.hpp"

namespace eqpm::cuda {
namespace {

constexpr long kMaxBatch = 65536;  // the registry's range of `batch`
constexpr long kMaxAgents = 100'000'000;
constexpr int kMaxTilesUsed = 256;  // most agent tiles (grid y) the CUDA backend plans

std::vector<int> horizons() {
  std::vector<int> h;
  for (int H = 1; H <= kMaxHorizon; ++H) h.push_back(H);
  return h;
}
const std::vector<long> kPairs = {1, 2, 127, 128, 129, 1000, 64 * 16, kMaxBatch * kMaxSamples};
const std::vector<long> kInputs = {1, 63, 64, 65, 4096, kMaxBatch};
const std::vector<long> kAgents = {1, 255, 256, 257, 1'000'000, kMaxAgents};

std::vector<std::size_t> family_param_sizes() {
  std::vector<std::size_t> sizes;
  Families::for_each([&](auto fam) { sizes.push_back(sizeof(typename decltype(fam)::Params)); });
  return sizes;
}

void expect_legal(const LaunchConfig& c) {
  const std::string why = launch_violation(c, kSm90Limits);
  EXPECT_TRUE(why.empty()) << why;
}

TEST(LaunchConfig, FamilyParametersFitTheirSharedMemoryStaging) {
  for (std::size_t bytes : family_param_sizes()) EXPECT_LE(bytes, kMaxStagedParams);
}

TEST(LaunchConfig, RegretKernelsAreLegalOnSm90ForEveryHorizon) {
  const std::vector<std::size_t> params = family_param_sizes();
  for (int H : horizons()) {
    for (long a : kAgents) expect_legal(mean_regret_config(a, H));
    for (long pairs : kPairs) {
      for (int tiles : {1, 16, kMaxTilesUsed})
        for (std::size_t p : params) expect_legal(score_partials_config(pairs, tiles, H, p));
      for (int K : {1, 2, 65535, 1 << 30}) expect_legal(class_regrets_config(pairs, K, H));
    }
  }
  for (long b : kInputs) {
    for (int tiles : {1, kMaxTilesUsed})
      for (std::size_t p : params) expect_legal(pathwise_partials_config(b, tiles, p));
    for (long K : {1L, 1000L, 1L << 30}) expect_legal(class_dregrets_config(K, b));
  }
}

// The shared memory of class_regrets_kernel grows with H; its block shrinks instead of
// needing an opt-in above 48 KiB (H >= 48 with 256 threads).
TEST(LaunchConfig, ClassRegretsBlockShrinksForLongHorizons) {
  EXPECT_EQ(class_regrets_threads(1), kClassThreads);
  EXPECT_EQ(class_regrets_threads(47), kClassThreads);
  EXPECT_LT(class_regrets_threads(48), kClassThreads);
  EXPECT_EQ(class_regrets_threads(kMaxHorizon), 160);
  for (int H : horizons()) {
    const LaunchConfig c = class_regrets_config(kMaxBatch * kMaxSamples, 1, H);
    EXPECT_LE(c.dynamic_smem, kRegretSmemBudget) << "H=" << H;
    EXPECT_EQ(c.block % 32, 0) << "H=" << H;
    // One thread per (input, sample): the grid covers every pair.
    EXPECT_GE(c.grid_x * c.block, kMaxBatch * kMaxSamples) << "H=" << H;
  }
}

TEST(LaunchConfig, ForwardKernelIsLegalUpToItsWidthLimit) {
  for (long rows : {1L, 8L, 9L, 4096L, kMaxBatch})
    for (int w : {1, 16, 64, 255, kFusedMaxWidth})
      for (int out : {1, kMaxHorizon, w}) expect_legal(mlp_forward_fused_config(rows, w, out));
}

// Every other kernel runs kBlock threads, no dynamic shared memory, on a grid from grid_for
// (grid-stride) or reduction_blocks.
TEST(LaunchConfig, FixedBlockKernelsAreLegal) {
  for (long n : {1L, 255L, 256L, 1L << 20, kMaxAgents, kMaxBatch * kMaxSamples * kMaxHorizon}) {
    expect_legal(LaunchConfig{"grid_for", grid_for(n), 1, kBlock, 0, 0});
    expect_legal(LaunchConfig{"grid_for/128", grid_for(n, 128), 1, 128, 0, 0});
    expect_legal(LaunchConfig{"reduction", reduction_blocks(n), 1, kBlock, 0, 0});
    EXPECT_LE(reduction_blocks(n), kMaxReductionBlocks);
  }
}

TEST(LaunchConfig, ViolationsAreNamed) {
  const LaunchConfig too_much{"k", 1, 1, 256, 4 * 256 * 65, 0};
  const std::string why = launch_violation(too_much, kSm90Limits);
  EXPECT_NE(why.find("k<<<(1, 1), 256, 66560 B dynamic"), std::string::npos) << why;
  EXPECT_NE(why.find("sm_90"), std::string::npos) << why;
  EXPECT_FALSE(launch_violation(LaunchConfig{"k", 1, 70000, 256, 0, 0}, kSm90Limits).empty());
  EXPECT_FALSE(launch_violation(LaunchConfig{"k", 1, 1, 2048, 0, 0}, kSm90Limits).empty());
}

// The commit is embedded in every binary (tools/device-check.sh looks for it).
TEST(BuildInfo, CommitIsEmbedded) {
  const std::string commit = build_commit();
  EXPECT_FALSE(commit.empty());
  EXPECT_TRUE(commit == "unknown" || commit.size() >= 40) << commit;
}

}  // namespace
}  // namespace eqpm::cuda
