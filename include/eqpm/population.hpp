// Populations of agents (DESIGN.md 4.4): a seeded generator with heterogeneity controls,
// validation of agent parameters, and the grouping of agents by family that backends use.
#pragma once

#include <string>
#include <tuple>
#include <vector>

#include "eqpm/families.hpp"

namespace eqpm {

struct RunConfig;

struct Population {
  std::vector<Agent> agents;
  // The labels of population.csv's optional `group` column, indexed by agent_group; empty:
  // every agent's group is its family.
  std::vector<std::string> group_names;
  std::vector<int> agent_group;         // per agent when group_names is not empty

  long size() const { return static_cast<long>(agents.size()); }
  double total_weight() const;
  std::vector<double> weights() const;  // w_n, population order
  long count(Family f) const;
  // Each agent's group (population order) for the grouped objectives and the reports: the
  // `group` column's, else the family's (Family's value).
  std::vector<int> groups() const;
  int group_count() const;
  std::string group_name(int g) const;
};

// The generated population of the configuration (agents, mix, pop_seed, ranges and the
// datacenter rules dc_lambda_rule / dc_phase_rule / dc_scale_rule). `demand_length` is T_D,
// the length of the demand profile the datacenter agents will see; it is needed only by
// dc_phase_rule = spread (0: unknown, and that rule then throws ConfigError). Every agent
// draws the same random numbers whatever the rules, so a rule changes only the parameter
// it sets: with the default (random) rules the output is what it always was.
Population generate_population(const RunConfig& cfg, long demand_length = 0);

// Checks one agent against the horizon; returns an empty string when valid, else what is
// wrong ("k = 7 exceeds the window width 4", ...) so callers can add the position.
std::string check_agent(const Agent& a, int horizon);

// Throws InputError naming `source` and the (0-based) index of the first bad agent.
void validate_population(const Population& p, int horizon, const std::string& source);

// Agents of one family in population order: their indices in the population, their
// weights w_n / W, and their family parameters.
template <class F>
struct FamilyGroup {
  std::vector<long> index;
  std::vector<double> weight;  // w_n / W
  std::vector<typename F::Params> params;
};

template <class F>
FamilyGroup<F> group_of(const Population& p) {
  FamilyGroup<F> g;
  const double W = p.total_weight();
  for (long n = 0; n < p.size(); ++n) {
    const Agent& a = p.agents[static_cast<size_t>(n)];
    if (a.family != F::tag) continue;
    g.index.push_back(n);
    g.weight.push_back(a.weight / W);
    g.params.push_back(F::params(a));
  }
  return g;
}

}  // namespace eqpm

namespace eqpm {

// One FamilyGroup per family of the registry, e.g. std::tuple<FamilyGroup<Datacenter>, ...>.
template <class List>
struct GroupTupleOf;
template <class... F>
struct GroupTupleOf<FamilyList<F...>> {
  using type = std::tuple<FamilyGroup<F>...>;
};
using FamilyGroups = GroupTupleOf<Families>::type;

inline FamilyGroups group_population(const Population& p) {
  FamilyGroups g;
  Families::for_each([&](auto fam) {
    using F = decltype(fam);
    std::get<FamilyGroup<F>>(g) = group_of<F>(p);
  });
  return g;
}

}  // namespace eqpm
