// Time series and the supervised dataset built from them (DESIGN.md section 2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eqpm/config.hpp"

namespace eqpm {

// An hourly series z_t > 0 with each row's hour of day.
struct Series {
  std::vector<double> values;
  std::vector<int> hour_of_day;
  std::vector<std::int64_t> utc_seconds;  // time of each hour (CSV series; empty: synthetic)
  std::string source;           // file name or "synthetic"
  long filled = 0;              // rows filled by interpolation when loaded
};

// Carbon-intensity-like synthetic series (midday solar dip, weekly and seasonal drift,
// autocorrelated noise), strictly positive; the embedded default.
Series synthetic_series(long hours, std::uint64_t seed);

// Synthetic diurnal datacenter demand profile D (24 values, mean 1, positive).
std::vector<float> synthetic_demand_profile();

// Inputs x_t (U x (L+2)), targets y_t (U x H), time index t per row, the chronological
// split and the normalisation (o, c) of 2.2.
struct Dataset {
  int lookback = 0;
  int horizon = 0;
  long rows = 0;            // U
  long train_rows = 0;      // first floor(train_fraction U) rows
  long fit_rows = 0;        // training rows used for gradient steps (the rest: validation)
  std::vector<float> x;     // rows x (lookback + 2)
  std::vector<float> y;     // rows x horizon
  std::vector<long> t;      // time index of each row
  double offset = 0.0;      // o
  double scale = 1.0;       // c
  Scaling scaling = Scaling::mean;

  int input_dim() const { return lookback + 2; }
  const float* x_row(long r) const { return x.data() + r * input_dim(); }
  const float* y_row(long r) const { return y.data() + r * horizon; }
};

// Throws Error when the series is too short for L + H or the split leaves a part empty.
// The normalisation is computed from the training rows, or taken from `offset_scale`
// ({o, c}, a saved model's) when given.
Dataset build_dataset(const Series& s, int lookback, int horizon, double train_fraction,
                      double val_fraction, Scaling scaling, const double* offset_scale = nullptr);

}  // namespace eqpm
