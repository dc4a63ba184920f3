// The reduction seam (DESIGN.md 7): every reduction across agents in a training step (the
// objective's largest regret and sum of terms, the step's regret statistics, the
// non-finite count, the sums X and G over agents) is formed first over the agents an executor
// holds, in a fixed order, and then handed to a Reducer, which combines the contributions of
// every place that holds agents. In one process there is nothing to combine: LocalReducer
// returns its input, so the single-process results are those of the plain loops. A
// multi-process Reducer (agents sharded over MPI ranks or GPUs) implements the same two
// calls; nothing else in a backend changes.
#pragma once

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
};

// One process holds every agent.
class LocalReducer final : public Reducer {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void sum(double*, long) override {}
  void max(double*, long) override {}
};

// An objective's value (objective.hpp) over regrets held in several places: this place's
// largest regret and weight total, combined; then its sum of terms, combined; then the
// finish. With a LocalReducer it is the plain two-pass loop (power_mean uses it so).
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
