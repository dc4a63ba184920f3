// The fairness objectives of DESIGN.md 5.5 behind one interface: F(R_1..R_N) and its
// gradient weights omega_n = dF/dR_n, which a backend uses exactly where 5.2 uses the power
// mean's (with the smoothed regrets Rbar_n, and F(Rbar) in place of Mbar).
//
//   power:q                 M_q, the power mean (objective.hpp)            flat
//   tilt:t                  the tilted risk T_t (TERM)                     flat
//   maxmin:tau              tilt:1/tau, a smoothed worst agent             flat
//   group-power:q           M_q over the groups' mean regrets              grouped
//   tilt-groups:t_in,t_out  a tilt over groups of within-group tilts       grouped
//   cvar:alpha              the mean of the worst alpha share of weight    selection
//
// "Flat" objectives are one max and one sum of per-agent terms (FlatObjective): the CUDA
// kernels and the CPU's fused pass run them directly. Every other objective is evaluated
// here, on the host, from the smoothed regrets, by both backends alike.
//
// Adding an objective: a class deriving from Objective (its value and weights, formed
// through the Reducer so that agents may live in several places) and one line in
// make_objective (objectives.cpp). No backend changes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "eqpm/objective.hpp"
#include "eqpm/reducer.hpp"

namespace eqpm {

// The agents one place holds, in the order of the regret arrays a backend passes.
struct AgentSet {
  const double* weight = nullptr;  // w_n
  const int* group = nullptr;      // each agent's group, in [0, groups); null: one group
  const long* index = nullptr;     // population index (ties are broken by it); null: position
  long n = 0;
  int groups = 1;                  // groups over every place
  double total_weight = 0.0;       // W over every place
};

class Objective {
 public:
  virtual ~Objective() = default;
  // The objective as written on the command line ("power:4", "cvar:0.1").
  virtual std::string spec() const = 0;
  // F(R) over the agents of every place; with `omega`, also omega_n = dF/dR_n for the
  // agents held here. Deterministic: the same inputs give the same bits.
  virtual double evaluate(const double* R, const AgentSet& agents, Reducer& reducer,
                          double* omega) const = 0;
  // The flat form, for objectives that have one (power, tilt, maxmin); null otherwise.
  virtual const FlatObjective* flat() const { return nullptr; }
};

// F(R) of a flat objective with its weights: the loops every backend's flat path runs.
double evaluate_flat(const FlatObjective& f, const double* R, const AgentSet& agents,
                     Reducer& reducer, double* omega);

// An objective from its spec ("power:4", "tilt:2", "maxmin:0.5", "cvar:0.1",
// "group-power:4", "tilt-groups:1,10"); throws ConfigError naming `flag` for anything else.
std::shared_ptr<const Objective> make_objective(const std::string& spec,
                                                const std::string& flag = "--objective");
// power:q.
std::shared_ptr<const Objective> power_objective(double q);

// --fast-reduce reduces an objective across places natively, which only a flat objective
// allows: throws ConfigError naming the flag for any other. The configuration's validation
// and the CPU backend both ask.
void require_flat_for_fast_reduce(const Objective& f);

// A sweep's list: "cvar:0.5,0.2,0.05" or a mix of kinds ("power:0,4,cvar:0.1"). A number
// without a kind continues the previous kind; tilt-groups takes its numbers in pairs.
// Each returned spec is valid for make_objective. Throws ConfigError naming `flag`.
std::vector<std::string> split_objectives(const std::string& list,
                                          const std::string& flag = "--objective");

// The objective's value for per-agent regrets held in one place (population order):
// `weights` w_n and `groups` (may be empty: all weights 1, one group per family is the
// caller's choice).
double objective_of(const Objective& f, const std::vector<double>& regret,
                    const std::vector<double>& weights, const std::vector<int>& groups);

}  // namespace eqpm
