// The reduction seam (DESIGN.md 7). One model trains on agents whose per-sample regrets may
// be evaluated in several places (MPI ranks): each place evaluates the agents of the chunks
// it owns (chunks.hpp in the CPU backend: a family's agents in fixed chunks, place r of K
// owning chunks [C r/K, C (r+1)/K)), and a Reducer hands the results on:
//  - gather: every place receives the per-agent mean regrets and the per-chunk partial sums
//    the other places computed. Values are copied, never added, so each place then holds
//    exactly the numbers one process would hold, adds the chunks in chunk order as one
//    process does, and computes everything that needs all agents (smoothing, the objective
//    and its weights, statistics) itself: results do not depend on the number of places.
//  - sum and max: combine one value per place (a flag, a checksum), in a fixed order.
//  - fast_sum and fast_max: the transport's native all-reduce (MPI_Allreduce), for
//    --fast-reduce (RunConfig::fast_reduce), where each place keeps the per-agent values
//    of its own agents only and the step's sums (objective terms, X, G, statistics) are
//    reduced instead of gathered. The order of the additions is the transport's: results
//    reproduce for a given number of places but differ across numbers to rounding.
// In one process there is nothing to hand on: LocalReducer leaves its input as it is, so
// the single-process results are those of the plain loops.
#pragma once

#include <cstddef>
#include <cstdint>

namespace eqpm {

class Reducer {
 public:
  virtual ~Reducer() = default;
  // This place's index among `size()` places that hold agents.
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place, on every place: values[i] becomes the sum (or max) of values[i] over all
  // places, combined in a fixed order so that results reproduce.
  virtual void sum(double* values, long n) = 0;
  virtual void max(double* values, long n) = 0;
  // In place, on every place: place r has written values[offsets[r], offsets[r + 1]) (its
  // own part; offsets has size() + 1 entries, offsets[0] = 0, non-decreasing); afterwards
  // every place holds every place's part, bit for bit.
  virtual void gather(double* values, const long* offsets) = 0;
  // In place, on every place: the sum (or max) of values[i] over all places by the
  // transport's native reduction. The same bits on every place and run after run for a
  // given number of places, not across numbers. By default sum and max.
  virtual void fast_sum(double* values, long n) { sum(values, n); }
  virtual void fast_max(double* values, long n) { max(values, n); }
};

// The same places, with fast_sum and fast_max as their sum and max: what objective_value
// is given under --fast-reduce.
class FastReducer final : public Reducer {
 public:
  explicit FastReducer(Reducer& places) : places_(&places) {}
  int rank() const override { return places_->rank(); }
  int size() const override { return places_->size(); }
  void sum(double* values, long n) override { places_->fast_sum(values, n); }
  void max(double* values, long n) override { places_->fast_max(values, n); }
  void gather(double* values, const long* offsets) override { places_->gather(values, offsets); }

 private:
  Reducer* places_;
};

// One process holds every agent.
class LocalReducer final : public Reducer {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void sum(double*, long) override {}
  void max(double*, long) override {}
  void gather(double*, const long*) override {}
};

// What a Reducer's sum does once every place's n values are gathered (place r's at
// gathered[r n, (r + 1) n)): values[i] = their sum, added in place order, so that every
// place gets the same bits whatever the transport and never ring order.
inline void add_in_place_order(const double* gathered, int places, long n, double* values) {
  for (long i = 0; i < n; ++i) {
    double s = 0.0;
    for (int r = 0; r < places; ++r) s += gathered[static_cast<long>(r) * n + i];
    values[i] = s;
  }
}

// Whether `bytes` bytes at `data` are the same on every place (FNV-1a digests compared
// through max of the digest and of its negation: equal everywhere iff max == -max(-x)).
// What a replicated model's parameters are checked with.
inline bool same_everywhere(Reducer& reducer, const void* data, std::size_t bytes) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;
  // Two 32-bit halves: exact in a double.
  const double hi = static_cast<double>(h >> 32), lo = static_cast<double>(h & 0xffffffffull);
  double v[4] = {hi, lo, -hi, -lo};
  reducer.max(v, 4);
  return v[0] == -v[2] && v[1] == -v[3];
}

// An objective's value (objective.hpp) over regrets held in several places: this place's
// largest regret and weight total, combined; then its sum of terms, combined; then the
// finish. With a LocalReducer it is the plain two-pass loop. Every caller but one passes
// one (power_mean, the objectives, both backends): since the regrets are gathered, every
// place holds all of them and evaluates the objective itself. Under --fast-reduce the CPU
// backend passes its own agents' regrets and a FastReducer.
template <class Objective>
double objective_value(const Objective& f, const double* R, const double* weight, long n,
                       Reducer& reducer) {
  double rmax = 0.0, wsum = 0.0;
  for (long i = 0; i < n; ++i) {
    rmax = R[i] > rmax ? R[i] : rmax;
    wsum += weight ? weight[i] : 1.0;
  }
  reducer.max(&rmax, 1);
  reducer.sum(&wsum, 1);
  if (rmax <= 0.0 || wsum <= 0.0) return 0.0;
  double terms = 0.0;
  for (long i = 0; i < n; ++i) terms += f.term(R[i], weight ? weight[i] : 1.0, rmax);
  reducer.sum(&terms, 1);
  return f.finish(rmax, terms, wsum);
}

}  // namespace eqpm
