// Equity metrics of a per-agent regret distribution (DESIGN.md section 6).
#pragma once

#include <string>
#include <vector>

namespace eqpm {

struct RegretStats {
  long agents = 0;
  double mean = 0, var = 0, std = 0, min = 0, p5 = 0, p50 = 0, p95 = 0, max = 0;
  double jain = 0, gini = 0, cv = 0, entropy = 0;
  double mse = 0, mae = 0;  // of the forecast, normalised units (filled by the caller)
};

// var is the population variance (divide by N); percentiles interpolate linearly between
// order statistics (numpy's default); Jain's index (sum R)^2 / (N sum R^2); Gini of the
// sorted values; cv = std / mean; entropy of R / sum R in nats. Degenerate cases (all zero)
// give jain = 1, gini = 0, cv = 0 and entropy = log N.
RegretStats regret_stats(const std::vector<double>& regrets);

// Linear-interpolation percentile (p in [0, 100]) of unsorted values.
double percentile(std::vector<double> values, double p);

// JSON object text with the keys of DESIGN.md 8.1's "test" object.
std::string stats_to_json(const RegretStats& s);

}  // namespace eqpm
