// The paper's evaluation metric (`eqpm eval --metric paper-mean`): the released
// datacenter script scores each agent on one prediction, the mean of the model's
// forecasts over the test rows, against the mean truth over the same rows. It measures
// the bias of the average forecast only, not the per-hour regret of DESIGN.md 6.
#pragma once

#include <vector>

#include "eqpm/data.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

// Per-agent regret of the mean forecast. With vbar = (1/R) sum_r mu_r and
// ybar = (1/R) sum_r y_r (H-vectors, means over the R given rows), agent n scores
//     R_n = (1/R) sum_r r_n(vbar, ybar, t_r),
// i.e. its regret (DESIGN.md 4) for the single prediction vbar against the single truth
// ybar; the time index enters only a datacenter agent's demand d(t_r), so its score is
// sqrt(lambda_n) * mean_r sqrt(d_n(t_r)) * (sqrt(ybar) - sqrt(vbar))^2 / sqrt(vbar) at its
// hour, the demand term averaged over the rows' hours. Other families do not depend on t.
// `mu` holds the R x H predictions of `rows` (Backend::predict), in double precision sums.
std::vector<double> paper_mean_regrets(const Population& population,
                                       const std::vector<float>& demand, float floor,
                                       const Dataset& data, const std::vector<long>& rows,
                                       const std::vector<float>& mu);

}  // namespace eqpm
