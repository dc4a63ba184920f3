// The CPU backend reduces agents in fixed chunks and adds the chunks' partial sums in
// chunk order: the chunks depend on the number of agents only, never on the threads, so
// results are the same for any thread count. Across places (MPI ranks, reducer.hpp) the
// chunks are dealt out whole and in order, so the partial sums, gathered, are the same
// numbers for any number of places.
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

// The first chunk that place `rank` of `places` owns: place r owns chunks
// [first_owned(chunks, r, places), first_owned(chunks, r + 1, places)), contiguous, every
// chunk owned by exactly one place (some own none when chunks < places).
inline long first_owned(long chunks, int rank, int places) {
  return chunks * rank / places;
}

}  // namespace eqpm::chunks
