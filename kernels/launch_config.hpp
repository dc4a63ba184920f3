// Launch configurations of the CUDA kernels (grid, block, shared memory) as plain C++: the
// launchers call these functions, and a host test (tests/test_launch_config.cpp) checks what
// they return against the limits of the target GPU over the configuration's whole range
// (H <= kMaxHorizon, B <= 65536, S <= kMaxSamples, up to 1e8 agents), without a GPU.
// No CUDA header is needed here.
#pragma once

#include <cstddef>
#include <string>

#include "eqpm/hd.hpp"

namespace eqpm::cuda {

inline constexpr int kBlock = 256;
// Reductions over n items use a grid that depends on n alone (never on the device), and
// their partials are combined in a fixed order: results are bitwise reproducible.
inline constexpr int kMaxReductionBlocks = 1024;
inline int reduction_blocks(long n) {
  const long b = (n + 4 * kBlock - 1) / (4 * kBlock);
  return static_cast<int>(b < 1 ? 1 : (b > kMaxReductionBlocks ? kMaxReductionBlocks : b));
}
// For grid-stride kernels: at most 2^20 blocks, the kernel loops over the rest.
inline constexpr long kMaxGridStrideBlocks = 1048576;
inline unsigned grid_for(long n, int block = kBlock) {
  const long g = (n + block - 1) / block;
  return static_cast<unsigned>(g < 1 ? 1 : (g > kMaxGridStrideBlocks ? kMaxGridStrideBlocks : g));
}
// For kernels with one thread per item and no loop: every item needs its own thread.
inline long blocks_for(long n, int block) {
  const long g = (n + block - 1) / block;
  return g < 1 ? 1 : g;
}

// One kernel launch as the launcher issues it.
struct LaunchConfig {
  const char* kernel = "";
  long grid_x = 1, grid_y = 1;
  int block = 1;
  std::size_t dynamic_smem = 0;  // bytes, the launch's third argument
  std::size_t static_smem = 0;   // bytes of __shared__ arrays declared in the kernel
};

// Per-launch limits of a compute capability (CUDA C++ Programming Guide, "Technical
// Specifications per Compute Capability").
struct DeviceLimits {
  const char* name;
  int max_threads_per_block;
  long max_grid_x, max_grid_y;
  // Shared memory a block may use without cudaFuncSetAttribute(MaxDynamicSharedMemorySize):
  // the launchers never opt in, so this is their limit.
  std::size_t max_smem_per_block;
};
inline constexpr DeviceLimits kSm90Limits{"sm_90", 1024, 2147483647L, 65535L, 48 * 1024};

// "name<<<(gx, gy), block, smem B>>>" for error messages.
inline std::string describe(const LaunchConfig& c) {
  return std::string(c.kernel) + "<<<(" + std::to_string(c.grid_x) + ", " +
         std::to_string(c.grid_y) + "), " + std::to_string(c.block) + ", " +
         std::to_string(c.dynamic_smem) + " B dynamic + " + std::to_string(c.static_smem) +
         " B static shared>>>";
}

// Empty when c is legal on a device with these limits, else why not.
inline std::string launch_violation(const LaunchConfig& c, const DeviceLimits& d) {
  if (c.block < 1 || c.block > d.max_threads_per_block)
    return describe(c) + ": block size outside 1.." + std::to_string(d.max_threads_per_block);
  if (c.block % 32 != 0 && c.block != 1)
    return describe(c) + ": block size is not a whole number of warps";
  if (c.grid_x < 1 || c.grid_x > d.max_grid_x)
    return describe(c) + ": grid x outside 1.." + std::to_string(d.max_grid_x);
  if (c.grid_y < 1 || c.grid_y > d.max_grid_y)
    return describe(c) + ": grid y outside 1.." + std::to_string(d.max_grid_y);
  if (c.dynamic_smem + c.static_smem > d.max_smem_per_block)
    return describe(c) + ": shared memory above " + std::to_string(d.max_smem_per_block) +
           " B on " + d.name;
  return {};
}

// ------------------------------------------------------------------ regrets.cu

inline constexpr int kMeanThreads = 256;      // agents per block (mean regret)
inline constexpr int kMeanSmemFloats = 4096;  // staged predictions per chunk
inline constexpr int kScoreThreads = 128;     // samples per block (score partials)
inline constexpr int kPathThreads = 64;       // inputs per block (pathwise partials)
inline constexpr int kClassThreads = 256;     // most samples per block (class regrets)
inline constexpr int kDregretThreads = 128;   // (class, input) pairs per block
// Bytes a family's parameters may take when staged in shared memory (and their alignment).
inline constexpr std::size_t kMaxStagedParams = 64;
// The shared-memory budget of the kernels that stage rows of H predictions: the default
// per-block limit, so no launch needs an opt-in whatever H is.
inline constexpr std::size_t kRegretSmemBudget = 48 * 1024;

// Rows of H predictions staged per thread use an odd stride (different banks).
inline int staged_row_stride(int H) { return H | 1; }

// mean_regret_kernel: one thread per agent, predictions staged in chunks of whole rows.
inline int mean_regret_chunk(int H) { return kMeanSmemFloats / H; }
inline LaunchConfig mean_regret_config(long agents, int H) {
  return {"mean_regret_kernel", blocks_for(agents, kMeanThreads), 1, kMeanThreads,
          sizeof(float) * static_cast<std::size_t>(mean_regret_chunk(H)) * H, 0};
}

// score_partials_kernel: one thread per (input, sample), grid y over agent tiles.
inline LaunchConfig score_partials_config(long pairs, int tiles, int H, std::size_t params_bytes) {
  return {"score_partials_kernel", blocks_for(pairs, kScoreThreads), tiles, kScoreThreads,
          kScoreThreads * (sizeof(double) + params_bytes) +
              sizeof(float) * kScoreThreads * static_cast<std::size_t>(staged_row_stride(H)),
          0};
}

// pathwise_partials_kernel: one thread per input, grid y over agent tiles; weights and
// parameters staged in static shared memory.
inline LaunchConfig pathwise_partials_config(long inputs, int tiles, std::size_t params_bytes) {
  return {"pathwise_partials_kernel", blocks_for(inputs, kPathThreads), tiles, kPathThreads, 0,
          kPathThreads * (sizeof(double) + params_bytes)};
}

// class_regrets_kernel: one thread per (input, sample), each staging its row of H
// predictions: kClassThreads threads per block while the rows fit in kRegretSmemBudget,
// fewer (whole warps) for long horizons (160 at H = 64).
inline int class_regrets_threads(int H) {
  const long fit = static_cast<long>(kRegretSmemBudget /
                                     (sizeof(float) * static_cast<std::size_t>(staged_row_stride(H))));
  const long warps = fit / 32;
  const long threads = (warps < 1 ? 1 : warps) * 32;
  return static_cast<int>(threads < kClassThreads ? threads : kClassThreads);
}
inline LaunchConfig class_regrets_config(long pairs, int K, int H) {
  const int threads = class_regrets_threads(H);
  return {"class_regrets_kernel", blocks_for(pairs, threads), K < 65535 ? K : 65535, threads,
          sizeof(float) * static_cast<std::size_t>(threads) * staged_row_stride(H), 0};
}

// class_dregrets_kernel: grid-stride over (class, input) pairs.
inline LaunchConfig class_dregrets_config(long K, long inputs) {
  return {"class_dregrets_kernel", grid_for(K * inputs, kDregretThreads), 1, kDregretThreads, 0, 0};
}

// ------------------------------------------------------------------ mlp_forward.cu

inline constexpr int kFusedMaxWidth = 256;
inline constexpr int kFwdRows = 8;       // dataset rows per block
inline constexpr int kFwdThreads = 256;
inline constexpr int kFwdTileK = 16;     // weight columns staged per tile

// mlp_forward_fused: two activation buffers of kFwdRows rows and one weight tile.
inline LaunchConfig mlp_forward_fused_config(long rows, int max_width, int max_out) {
  const std::size_t act_stride = static_cast<std::size_t>(max_width | 1);
  const std::size_t w_stride = static_cast<std::size_t>(max_out | 1);
  return {"mlp_forward_fused", blocks_for(rows, kFwdRows), 1, kFwdThreads,
          sizeof(float) * (2 * kFwdRows * act_stride + kFwdTileK * w_stride), 0};
}

}  // namespace eqpm::cuda
