// Relative regrets (regret_scale.hpp).
#include "host/regret_scale.hpp"

#include <algorithm>
#include <unordered_map>

#include "eqpm/error.hpp"
#include "eqpm/families.hpp"

namespace eqpm {

std::vector<double> persistence_regrets(const Population& population,
                                        const std::vector<float>& demand, float floor,
                                        const Dataset& data, const std::string& source) {
  std::unordered_map<long, long> row_at;  // time index -> row
  row_at.reserve(static_cast<size_t>(data.rows));
  for (long r = 0; r < data.rows; ++r) row_at.emplace(data.t[static_cast<size_t>(r)], r);
  std::vector<std::pair<long, long>> pairs;  // (training row, the row 24 hours before it)
  for (long r = data.train_begin; r < data.train_end(); ++r) {
    const auto day_before = row_at.find(data.t[static_cast<size_t>(r)] - 24);
    if (day_before != row_at.end()) pairs.emplace_back(r, day_before->second);
  }
  if (pairs.empty())
    throw InputError(source, 0, 0,
                     "--regret-scale relative: no training row has the series 24 hours earlier "
                     "(the naive forecast the regrets are scaled by)");
  RegretContext ctx;
  ctx.demand = demand.data();
  ctx.demand_length = static_cast<long>(demand.size());
  ctx.floor = floor;
  std::vector<double> unit(population.agents.size(), 0.0);
  for (size_t n = 0; n < population.agents.size(); ++n) {
    const Agent& a = population.agents[n];
    Families::for_each([&](auto fam) {
      using F = decltype(fam);
      if (a.family != F::tag) return;
      const auto p = F::params(a);
      double sum = 0.0;
      for (const auto& [r, naive] : pairs)
        sum += F::template regret<double>(p, data.y_row(naive), data.y_row(r), ctx,
                                          data.t[static_cast<size_t>(r)]);
      unit[n] = sum / static_cast<double>(pairs.size());
    });
  }
  return unit;
}

Population rescale_regrets(const Population& population, std::vector<double>& unit) {
  if (unit.size() != population.agents.size())
    throw Error("rescale_regrets: " + std::to_string(unit.size()) + " units for " +
                std::to_string(population.agents.size()) + " agents");
  const double largest = unit.empty() ? 0.0 : *std::max_element(unit.begin(), unit.end());
  if (!(largest > 0.0))
    throw Error("--regret-scale relative: the naive forecast has zero regret for every agent");
  Population out = population;
  for (size_t n = 0; n < unit.size(); ++n) {
    unit[n] = std::max(unit[n], 1e-3 * largest);
    Agent& a = out.agents[n];
    Families::for_each([&](auto fam) {
      using F = decltype(fam);
      if (a.family == F::tag) F::scale_regret(a, 1.0 / unit[n]);
    });
  }
  return out;
}

}  // namespace eqpm
