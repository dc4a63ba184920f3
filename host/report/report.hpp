// `eqpm report DIR`: the trade-off a sweep offers, read from its output folder (or one
// run's). Every model is re-evaluated on its test split day by day, so that each figure
// comes with a 95% confidence interval from a bootstrap over test days (days resampled
// with replacement, the same resamples for every model, so comparisons are paired).
//
// DIR/report.md holds: the models' mean regret, worst-decile regret (CVaR 0.1), max, Gini
// and MSE; each population group's mean regret; the change against the plain model (mean,
// worst decile, share of agents better off, the spread of per-agent changes); and the
// Pareto-efficient models. PNGs beside it: pareto.png (mean against worst decile, with
// the intervals), pareto_mse.png (mean regret against MSE), lorenz.png (per-agent test
// regret, Gini in the legend) and gains.png (each agent's change against plain, sorted).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eqpm {

struct ReportOptions {
  int bootstrap = 1000;    // resamples of the test days (0: no intervals)
  std::uint64_t seed = 1;  // of the resampling
  int threads = 0;         // evaluation threads (0: all)
  bool quiet = false;
};

// Writes DIR/report.md and the PNGs, each atomically; returns the paths written. DIR is a
// sweep folder (sweep.csv and one run folder per row) or one run's folder
// (model.safetensors, population.csv). The runs' inputs (series, demand profile, EV
// sessions) are loaded from where their configuration names them. Throws InputError or
// ConfigError naming the file that is missing or wrong.
std::vector<std::string> write_report(const std::string& dir, const ReportOptions& options);

}  // namespace eqpm
