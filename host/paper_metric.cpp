// The paper's mean-forecast metric (paper_metric.hpp).
#include "host/paper_metric.hpp"

#include "eqpm/error.hpp"
#include "eqpm/families.hpp"

namespace eqpm {

std::vector<double> paper_mean_regrets(const Population& population,
                                       const std::vector<float>& demand, float floor,
                                       const Dataset& data, const std::vector<long>& rows,
                                       const std::vector<float>& mu) {
  const int H = data.horizon;
  const long R = static_cast<long>(rows.size());
  if (static_cast<long>(mu.size()) != R * H)
    throw Error("paper_mean_regrets: " + std::to_string(mu.size()) + " predictions for " +
                std::to_string(R) + " rows of " + std::to_string(H) + " hours");
  std::vector<double> regret(population.agents.size(), 0.0);
  if (R == 0) return regret;
  std::vector<double> vbar(static_cast<size_t>(H), 0.0), ybar(static_cast<size_t>(H), 0.0);
  for (long r = 0; r < R; ++r)
    for (int h = 0; h < H; ++h) {
      vbar[static_cast<size_t>(h)] += mu[static_cast<size_t>(r * H + h)];
      ybar[static_cast<size_t>(h)] += data.y_row(rows[static_cast<size_t>(r)])[h];
    }
  for (int h = 0; h < H; ++h) {
    vbar[static_cast<size_t>(h)] /= static_cast<double>(R);
    ybar[static_cast<size_t>(h)] /= static_cast<double>(R);
  }
  RegretContext ctx;
  ctx.demand = demand.data();
  ctx.demand_length = static_cast<long>(demand.size());
  ctx.floor = floor;
  for (size_t n = 0; n < population.agents.size(); ++n) {
    const Agent& a = population.agents[n];
    double sum = 0.0;
    Families::for_each([&](auto fam) {
      using F = decltype(fam);
      if (a.family != F::tag) return;
      const auto p = F::params(a);
      for (long r = 0; r < R; ++r)
        sum += F::template regret<double>(p, vbar.data(), ybar.data(), ctx,
                                          data.t[static_cast<size_t>(rows[static_cast<size_t>(r)])]);
    });
    regret[n] = sum / static_cast<double>(R);
  }
  return regret;
}

}  // namespace eqpm
