// The structure of DESIGN.md 5.4 on the CPU: work that does not depend on the agent is
// done once per (b, s) and shared by all agents.
//  - datacenter: r_{n,b,s} = sqrt(lambda_n d_n(t_b)) f(yhat_{b,s,h_n}, y_{b,h_n}) with
//    f(v, y) = (sqrt y - sqrt v)^2 / sqrt v, so per-agent work is O(B) and the advantages
//    need only sum_n omega_n sqrt(lambda_n d_n(t_b)) per (b, h);
//  - ev_charging over the whole horizon: r = e_n G_{b,s,k_n}, where G_{b,s,k} is the true
//    cost of the k cheapest predicted hours minus the k cheapest true hours, from one sort
//    per (b, s): per-agent work is O(1);
//  - ev_charging with a window: r = e_n C_{c,b,s}, where C depends only on the agent's
//    class c = (k, window): one rank count per class and sample (on the sample lanes,
//    cpu_lanes.hpp), O(1) per agent. Used when the classes are few enough to pay off.
// Agents of other families stay on the general path.
// Results equal the general path's up to float rounding; tests compare the two.
#pragma once

#include <vector>

#include "cpu_lanes.hpp"
#include "eqpm/backend.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

// EV agents grouped by class (k, window): an agent's regret is its energy times a value
// that depends on its class alone. `order` lists the agents (indices into the params)
// class by class, in a stable order; class c is order[begin[c]] .. order[begin[c + 1] - 1].
struct EvClasses {
  std::vector<size_t> order, begin;
  size_t count() const { return begin.size() - 1; }
};
EvClasses ev_classes(const std::vector<EvCharging::Params>& params);

class CpuStructured {
 public:
  // Moves the agents it handles out of `groups`.
  void setup(FamilyGroups& groups, const Problem& p);
  bool empty() const {
    return dc_.index.empty() && ev_.index.empty() && evw_.index.empty();
  }
  // Population indices of the agents it handles.
  const std::vector<long>& agents() const { return agents_; }

  // Per-step tables from the samples yhat (B x S x H), truths y (B x H), times t (B), and
  // the same samples hour-major (X).
  void prepare(int B, const float* yhat, const float* y, const long* t, const lanes::Lanes& X,
               int threads);
  // Pass 1: Rhat_n of the agents it handles (population order).
  void mean_regrets(std::vector<double>& rhat, int threads) const;
  // Pass 2: adds sum_n omega_n r into A (B x S; the caller applies the baseline) for
  // score-function agents and sum_n omega_n / (B S) dr/dv into G (B x H) for pathwise ones.
  void advantages(const std::vector<double>& omega, double* A, double* G, int threads);

 private:
  double demand_root(long i, long t) const;  // sqrt(lambda_n d_n(t)) of datacenter agent i

  FamilyGroup<Datacenter> dc_;
  FamilyGroup<EvCharging> ev_;   // whole horizon
  FamilyGroup<EvCharging> evw_;  // with a window, sorted by class (k, window)
  std::vector<size_t> class_begin_;  // evw_ agents of class c: [class_begin_[c], class_begin_[c+1])
  std::vector<long> agents_;
  const Problem* p_ = nullptr;
  bool dc_pathwise_ = false;
  int B_ = 0, S_ = 0, H_ = 0;
  std::vector<long> t_;
  // datacenter tables
  std::vector<double> F_, Fsum_, Dsum_, K_, Kpart_;
  // ev tables (k = 1..H stored at k - 1)
  std::vector<double> Gk_, Gsum_, Gtot_, E_, Epart_;
  // windowed-EV tables: C per class and sample (classes x B S), its sum per class, the
  // weights sum_n omega_n e_n per class
  std::vector<float> C_;
  std::vector<double> Csum_, Cweight_;
};

}  // namespace eqpm
