// Time series and the supervised dataset built from them (DESIGN.md section 2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "eqpm/settings.hpp"

namespace eqpm {

struct RunConfig;

// An hourly series z_t > 0 with each row's hour of day.
struct Series {
  std::vector<double> values;
  std::vector<int> hour_of_day;
  std::vector<std::int64_t> utc_seconds;  // time of each hour (CSV series; empty: synthetic,
                                          // see series_time)
  std::string source;           // file name or "synthetic"
  long filled = 0;              // rows filled by interpolation when loaded
};

// Carbon-intensity-like synthetic series (midday solar dip, weekly and seasonal drift,
// autocorrelated noise), strictly positive; the embedded default.
Series synthetic_series(long hours, std::uint64_t seed);

// The calendar of synthetic series, which carry no timestamps: hour t is
// 2022-01-01 00:00 UTC + t hours, so that date splits and backtests work on them too.
inline constexpr std::int64_t kSyntheticEpoch = 1640995200;  // 2022-01-01T00:00:00Z

// UTC seconds of hour t of the series (its timestamp, or the synthetic calendar).
std::int64_t series_time(const Series& s, long t);

// Synthetic diurnal datacenter demand profile D (24 values, mean 1, positive).
std::vector<float> synthetic_demand_profile();

// How rows are split (DESIGN.md 2.1). Without dates: the first floor(train_fraction U)
// rows train, the rest test. With dates (UTC seconds), row t (forecasting t .. t+H-1):
// - trains when t >= train_from and its whole target window is before train_until
//   (t + H - 1 < train_until): no target hour of a training row reaches the test period;
// - tests when test_from <= t <= test_until.
// A missing train_until is test_from (and the other way round); a missing train_from is
// the first row, a missing test_until the last. The validation slice is the tail of the
// training rows either way: the last floor(val_fraction x training rows) of them, and with
// val_days > 0 at most those that start in the last val_days days of the training split.
struct SplitSpec {
  double train_fraction = 0.7;
  double val_fraction = 0.1;
  int val_days = 0;
  bool has_train_from = false, has_train_until = false, has_test_from = false,
       has_test_until = false;
  std::int64_t train_from = 0, train_until = 0, test_from = 0, test_until = 0;
  bool dated() const { return has_train_from || has_train_until || has_test_from || has_test_until; }
};

// The split of a configuration (its fractions and date keys). A date-only test_until
// means through the last hour of that day. Throws ConfigError naming the flag.
SplitSpec split_spec(const RunConfig& cfg);

// Inputs x_t (U x (L+2)), targets y_t (U x H), time index t per row, the chronological
// split and the normalisation (o, c) of 2.2. Training rows are the contiguous range
// [train_begin, train_begin + train_rows), test rows [test_begin, test_end).
struct Dataset {
  int lookback = 0;
  int horizon = 0;
  long rows = 0;            // U
  long train_begin = 0;     // first training row
  long train_rows = 0;      // training rows (first floor(train_fraction U) without dates)
  long fit_rows = 0;        // training rows used for gradient steps (the rest: validation)
  long test_begin = 0;      // first test row
  long test_end = 0;        // one past the last test row
  std::vector<float> x;     // rows x (lookback + 2)
  std::vector<float> y;     // rows x horizon
  std::vector<long> t;      // time index of each row
  double offset = 0.0;      // o
  double scale = 1.0;       // c
  Scaling scaling = Scaling::mean;

  int input_dim() const { return lookback + 2; }
  long train_end() const { return train_begin + train_rows; }
  long fit_end() const { return train_begin + fit_rows; }
  long test_rows() const { return test_end - test_begin; }
  const float* x_row(long r) const { return x.data() + r * input_dim(); }
  const float* y_row(long r) const { return y.data() + r * horizon; }
};

// Throws Error when the series is too short for L + H or the split leaves a part empty.
// The normalisation is computed from the hours the training rows read (their inputs and
// targets), or taken from `offset_scale` ({o, c}, a saved model's) when given.
Dataset build_dataset(const Series& s, int lookback, int horizon, const SplitSpec& split,
                      Scaling scaling, const double* offset_scale = nullptr);
Dataset build_dataset(const Series& s, int lookback, int horizon, double train_fraction,
                      double val_fraction, Scaling scaling, const double* offset_scale = nullptr);

}  // namespace eqpm
