// The CPU backend reduces agents in fixed chunks and adds the chunks' partial sums in
// chunk order: the chunks depend on the number of agents only, never on the threads, so
// results are the same for any thread count.
#pragma once

#include <algorithm>

namespace eqpm::chunks {

// At most this many chunks per reduction (the partial-sum buffers are sized for it).
inline constexpr long kMax = 64;

// One chunk per agent up to kMax: the reference path's chunking.
inline long count(long n) { return std::min(n, kMax); }

// First item of chunk c when n items are split into `chunks` chunks; chunk c holds
// [begin(n, c, chunks), begin(n, c + 1, chunks)).
inline long begin(long n, long c, long chunks) { return n * c / chunks; }

}  // namespace eqpm::chunks
