// The regret scale of DESIGN.md 5.5. With `relative`, the objective sees each agent's regret
// divided by its regret under a naive forecast, a skill score in the manner of MASE: agents
// whose cost units are large no longer dominate the objective by their units alone.
#pragma once

#include <vector>

#include "eqpm/data.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

// Each agent's mean regret, over the training rows of `data` that have a row 24 hours
// earlier, of the 24-hour persistence forecast: row t predicts hour t + h by the truth at
// t + h - 24 (the targets of row t - 24). Throws InputError naming `source` when no training
// row has one (a training split shorter than a day).
std::vector<double> persistence_regrets(const Population& population,
                                        const std::vector<float>& demand, float floor,
                                        const Dataset& data, const std::string& source);

// `population` with every agent's costs rescaled (Family::scale_regret) so that its regret
// is divided by unit[n]. Units that are zero (an agent the naive forecast serves perfectly)
// are raised to 1e-3 of the largest unit, so that no agent's regret is divided by zero.
Population rescale_regrets(const Population& population, std::vector<double>& unit);

}  // namespace eqpm
