// The structure of DESIGN.md 5.4 on the CPU: work that does not depend on the agent is
// done once per (b, s) and shared by all agents.
//  - datacenter: r_{n,b,s} = sqrt(lambda_n d_n(t_b)) f(yhat_{b,s,h_n}, y_{b,h_n}) with
//    f(v, y) = (sqrt y - sqrt v)^2 / sqrt v, so per-agent work is O(B) and the advantages
//    need only sum_n omega_n sqrt(lambda_n d_n(t_b)) per (b, h);
//  - ev_charging over the whole horizon: r = e_n G_{b,s,k_n}, where G_{b,s,k} is the true
//    cost of the k cheapest predicted hours minus the k cheapest true hours, from one sort
//    per (b, s): per-agent work is O(1);
//  - any family with a RegretStructure (regret_structure.hpp): agents grouped by class,
//    r_n = sum_j coef_j(n) u_{c,j}, the unit regrets u evaluated once per class, base and
//    sample (on the sample lanes, cpu_lanes.hpp), O(bases) per agent (ClassTable below).
//    EV charging with a window (class (k, window)) and inventory (class = hour; bases
//    under- and overage) take it when their classes are few enough to pay off.
// Agents of other families stay on the general path.
// Results equal the general path's up to float rounding; tests compare the two.
#pragma once

#include <algorithm>
#include <numeric>
#include <vector>

#include "cpu_lanes.hpp"
#include "eqpm/backend.hpp"
#include "eqpm/population.hpp"
#include "eqpm/regret_structure.hpp"

namespace eqpm {

// Agents grouped by class (RegretStructure<F>::key): `order` lists the agents (indices into
// the params) class by class, in a stable order; class c is order[begin[c]] .. order[begin[c + 1] - 1].
struct AgentClasses {
  std::vector<size_t> order, begin;
  size_t count() const { return begin.size() - 1; }
};
template <class F>
AgentClasses classes_of(const std::vector<typename F::Params>& params) {
  auto key = [&](size_t i) { return RegretStructure<F>::key(params[i]); };
  AgentClasses c;
  c.order.resize(params.size());
  std::iota(c.order.begin(), c.order.end(), size_t{0});
  std::stable_sort(c.order.begin(), c.order.end(), [&](size_t a, size_t b) { return key(a) < key(b); });
  for (size_t m = 0; m < c.order.size(); ++m)
    if (m == 0 || key(c.order[m]) != key(c.order[m - 1])) c.begin.push_back(m);
  c.begin.push_back(c.order.size());
  return c;
}

// Agents of family F grouped by class (RegretStructure<F>::key): each agent's regret is
// sum_j coef_j(n) u_{c,j}, u_{c,j} the regret of its class's unit representative j, and so
// is its derivative. Per step: the unit regrets once per class, base and sample, and for a
// pathwise family the units' derivatives under their weights W_{c,j}; per agent O(bases).
template <class F>
class ClassTable {
 public:
  using Structure = RegretStructure<F>;
  static constexpr int J = Structure::bases;

  // Takes g's agents when they fall into few enough classes to pay off (at least 4 agents
  // per unit on average, the unit table under 64 MB); otherwise leaves them in g.
  void take(FamilyGroup<F>& g, const Problem& p);
  bool empty() const { return group_.index.empty(); }
  const std::vector<long>& index() const { return group_.index; }

  void prepare(const lanes::Lanes& X, const RegretContext& ctx, int B, int threads);
  // rhat_n = inv_bs sum_j coef_j(n) sum over samples of u_{c,j}.
  void mean_regrets(std::vector<double>& rhat, double inv_bs) const;
  // W_{c,j} = sum over class c of omega_n coef_j(n); A_{b,s} += sum W u (score function) or
  // G_{b,h} += inv_bs sum W du/dv (pathwise).
  void advantages(const std::vector<double>& omega, double* A, double* G, double inv_bs, int threads);

 private:
  size_t units() const { return units_.size(); }
  FamilyGroup<F> group_;             // class by class
  std::vector<size_t> begin_;        // class c: [begin_[c], begin_[c + 1])
  std::vector<typename F::Params> units_;  // class c, base j at c J + j
  bool pathwise_ = false;
  int B_ = 0, S_ = 0, H_ = 0;
  lanes::Lanes X_;                   // this step's samples (prepare) for the derivatives
  RegretContext ctx_;
  std::vector<float> U_;             // units x B S (score function)
  std::vector<double> Usum_, W_;     // units
  std::vector<double> scratch_;      // H x B S: the weighted derivatives (pathwise)
};

class CpuStructured {
 public:
  // Moves the agents it handles out of `groups`.
  void setup(FamilyGroups& groups, const Problem& p);
  bool empty() const {
    return dc_.index.empty() && ev_.index.empty() && evw_.empty() && inv_.empty();
  }
  // Population indices of the agents it handles.
  const std::vector<long>& agents() const { return agents_; }

  // Per-step tables from the samples yhat (B x S x H), truths y (B x H), times t (B), and
  // the same samples hour-major (X), under the caller's regret context.
  void prepare(int B, const float* yhat, const float* y, const long* t, const lanes::Lanes& X,
               const RegretContext& ctx, int threads);
  // Pass 1: Rhat_n of the agents it handles (population order).
  void mean_regrets(std::vector<double>& rhat, int threads) const;
  // Pass 2: adds sum_n omega_n r into A (B x S; the caller applies the baseline) for
  // score-function agents and sum_n omega_n / (B S) dr/dv into G (B x H) for pathwise ones.
  void advantages(const std::vector<double>& omega, double* A, double* G, int threads);

 private:
  double demand_root(long i, long t) const;  // sqrt(lambda_n d_n(t)) of datacenter agent i

  FamilyGroup<Datacenter> dc_;
  FamilyGroup<EvCharging> ev_;   // whole horizon
  ClassTable<EvCharging> evw_;   // with a window, by class (k, window)
  ClassTable<Inventory> inv_;    // by hour
  std::vector<long> agents_;
  const Problem* p_ = nullptr;
  bool dc_pathwise_ = false;
  int B_ = 0, S_ = 0, H_ = 0;
  std::vector<long> t_;
  // datacenter tables
  std::vector<double> F_, Fsum_, Dsum_, K_, Kpart_;
  // ev tables (k = 1..H stored at k - 1)
  std::vector<double> Gk_, Gsum_, Gtot_, E_, Epart_;
};

}  // namespace eqpm
