// The embedded synthetic data and the supervised dataset of DESIGN.md section 2.
#include "eqpm/data.hpp"

#include <algorithm>
#include <cmath>

#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

Series synthetic_series(long hours, std::uint64_t seed) {
  // A grid's carbon intensity in gCO2/kWh: a base level with seasonal and weekly drift,
  // a midday solar dip that deepens in summer, an evening ramp, a slow "weather" factor
  // (wind) and hourly noise, all multiplicative so the result stays positive.
  const double pi = 3.14159265358979323846;
  SplitMix64 rng(seed ^ 0x5eed5e7ULL);
  Series s;
  s.source = "synthetic";
  s.values.resize(static_cast<size_t>(hours));
  s.hour_of_day.resize(static_cast<size_t>(hours));
  double weather = 0.0, noise = 0.0;
  for (long t = 0; t < hours; ++t) {
    const int h = static_cast<int>(t % 24);
    const double day = static_cast<double>(t) / 24.0;
    const double season = std::cos(2 * pi * (day - 172.0) / 365.0);   // +1 at midsummer
    const double weekday = static_cast<int>(day) % 7;
    const double weekly = weekday >= 5 ? -0.06 : 0.0;                    // lighter weekends
    const double solar_depth = 0.22 + 0.14 * season;                    // deeper in summer
    const double solar = -solar_depth * std::exp(-0.5 * std::pow((h - 13.0) / 2.6, 2.0));
    const double evening = 0.10 * std::exp(-0.5 * std::pow((h - 19.5) / 2.0, 2.0));
    const double night = -0.04 * std::exp(-0.5 * std::pow((h - 3.5) / 2.5, 2.0));
    weather = 0.985 * weather + 0.025 * rng.normal();  // slow, multi-day swings
    noise = 0.6 * noise + 0.025 * rng.normal();
    const double log_ci = std::log(300.0) - 0.08 * season + weekly + solar + evening + night +
                          weather + noise;
    s.values[static_cast<size_t>(t)] = std::exp(log_ci);
    s.hour_of_day[static_cast<size_t>(t)] = h;
  }
  return s;
}

std::vector<float> synthetic_demand_profile() {
  // Datacenter load over a day: low overnight, business-hours plateau, evening peak.
  const double pi = 3.14159265358979323846;
  std::vector<float> d(24);
  double sum = 0;
  for (int h = 0; h < 24; ++h) {
    const double v = 1.0 + 0.35 * std::sin(2 * pi * (h - 8.0) / 24.0) +
                     0.15 * std::exp(-0.5 * std::pow((h - 20.0) / 2.0, 2.0));
    d[static_cast<size_t>(h)] = static_cast<float>(v);
    sum += v;
  }
  for (auto& v : d) v = static_cast<float>(v / (sum / 24.0));
  return d;
}

std::int64_t series_time(const Series& s, long t) {
  if (s.utc_seconds.size() == s.values.size()) return s.utc_seconds[static_cast<size_t>(t)];
  return kSyntheticEpoch + 3600 * static_cast<std::int64_t>(t);
}

SplitSpec split_spec(const RunConfig& cfg) {
  SplitSpec sp;
  sp.train_fraction = cfg.train_fraction;
  sp.val_fraction = cfg.val_fraction;
  sp.val_days = cfg.val_days;
  auto read = [](const std::string& text, const char* flag, bool* has, std::int64_t* utc,
                 bool end_of_day) {
    if (text.empty()) return;
    bool date_only = false;
    std::string why;
    if (!parse_date(text, utc, &date_only, &why))
      throw ConfigError(std::string(flag) + ": expected a date YYYY-MM-DD or a timestamp, got '" +
                        text + "' (" + why + ")");
    if (end_of_day && date_only) *utc += 86400 - 1;
    *has = true;
  };
  read(cfg.train_from, "--train-from", &sp.has_train_from, &sp.train_from, false);
  read(cfg.train_until, "--train-until", &sp.has_train_until, &sp.train_until, false);
  read(cfg.test_from, "--test-from", &sp.has_test_from, &sp.test_from, false);
  read(cfg.test_until, "--test-until", &sp.has_test_until, &sp.test_until, true);
  if (sp.has_train_from && sp.has_train_until && sp.train_from >= sp.train_until)
    throw ConfigError("--train-from " + cfg.train_from + " is not before --train-until " +
                      cfg.train_until);
  if (sp.has_test_from && sp.has_train_until && sp.test_from < sp.train_until)
    throw ConfigError("--test-from " + cfg.test_from + " is before --train-until " +
                      cfg.train_until + ": the test period would overlap the training targets");
  if (sp.has_test_from && sp.has_test_until && sp.test_until < sp.test_from)
    throw ConfigError("--test-until " + cfg.test_until + " is before --test-from " + cfg.test_from);
  return sp;
}

Dataset build_dataset(const Series& s, int L, int H, double train_fraction, double val_fraction,
                      Scaling scaling, const double* offset_scale) {
  SplitSpec sp;
  sp.train_fraction = train_fraction;
  sp.val_fraction = val_fraction;
  return build_dataset(s, L, H, sp, scaling, offset_scale);
}

Dataset build_dataset(const Series& s, int L, int H, const SplitSpec& sp, Scaling scaling,
                      const double* offset_scale) {
  const long T = static_cast<long>(s.values.size());
  const long U = T - H - L + 1;  // usable t: L <= t <= T - H
  const std::string where = s.source.empty() ? std::string("series") : s.source;
  if (U < 4)
    throw Error(where + ": series of " + std::to_string(T) + " rows is too short for lookback " +
                std::to_string(L) + " + horizon " + std::to_string(H));
  Dataset d;
  d.lookback = L;
  d.horizon = H;
  d.rows = U;
  if (!sp.dated()) {
    d.train_begin = 0;
    d.train_rows = static_cast<long>(std::floor(sp.train_fraction * static_cast<double>(U)));
    if (d.train_rows < 1 || d.train_rows >= U)
      throw Error(where + ": train_fraction " + std::to_string(sp.train_fraction) +
                  " leaves the training or test split empty (" + std::to_string(U) +
                  " usable rows)");
    d.test_begin = d.train_rows;
    d.test_end = U;
  } else {
    // Rows are chronological, so each condition holds on a contiguous range of them.
    auto start = [&](long r) { return series_time(s, L + r); };
    auto target_end = [&](long r) { return series_time(s, L + r + H - 1); };
    auto first_row = [&](auto pred) {  // first row where pred holds (pred monotone), or U
      long lo = 0, hi = U;
      while (lo < hi) {
        const long mid = lo + (hi - lo) / 2;
        if (pred(mid)) hi = mid;
        else lo = mid + 1;
      }
      return lo;
    };
    const std::string span = " (the series covers " + utc_text(series_time(s, 0)) + " to " +
                             utc_text(series_time(s, T - 1)) + ")";
    const bool has_until = sp.has_train_until || sp.has_test_from;
    const std::int64_t until = sp.has_train_until ? sp.train_until : sp.test_from;
    d.train_begin = sp.has_train_from ? first_row([&](long r) { return start(r) >= sp.train_from; }) : 0;
    long train_end;
    if (has_until) {
      train_end = first_row([&](long r) { return target_end(r) >= until; });
    } else {
      train_end = static_cast<long>(std::floor(sp.train_fraction * static_cast<double>(U)));
    }
    const char* until_flag = sp.has_train_until ? "--train-until" : "--test-from";
    if (train_end <= d.train_begin)
      throw Error(where + ": the training split is empty: no forecast starts" +
                  std::string(sp.has_train_from ? " at or after --train-from and" : "") +
                  (has_until ? " with its targets before " + std::string(until_flag) + " " +
                                   utc_text(until)
                             : std::string(" before the train_fraction split")) +
                  span);
    d.train_rows = train_end - d.train_begin;
    const bool has_from = sp.has_test_from || sp.has_train_until;
    const std::int64_t from = sp.has_test_from ? sp.test_from : sp.train_until;
    d.test_begin = has_from ? first_row([&](long r) { return start(r) >= from; }) : train_end;
    d.test_end = sp.has_test_until ? first_row([&](long r) { return start(r) > sp.test_until; }) : U;
    if (d.test_begin < train_end)  // only with train_from/test_until and the fraction
      d.test_begin = train_end;
    if (d.test_end <= d.test_begin)
      throw Error(where + ": the test split is empty: no forecast starts" +
                  (has_from ? " at or after " +
                                  std::string(sp.has_test_from ? "--test-from " : "--train-until ") +
                                  utc_text(from)
                            : std::string(" after the training split")) +
                  (sp.has_test_until ? " and at or before --test-until " + utc_text(sp.test_until)
                                     : std::string()) +
                  " with its " + std::to_string(H) + " target hours inside the series" + span);
  }
  {
    long val = static_cast<long>(std::floor(sp.val_fraction * d.train_rows));
    if (sp.val_days > 0) {
      // Rows are consecutive hours: at most those that start in the last val_days * 24
      // hours of the split.
      const std::int64_t cut = series_time(s, L + d.train_end() - 1) + 3600 -
                               static_cast<std::int64_t>(sp.val_days) * 86400;
      long in_days = 0;
      while (in_days < val && series_time(s, L + d.train_end() - 1 - in_days) >= cut) ++in_days;
      val = in_days;
    }
    d.fit_rows = d.train_rows - val;
  }
  if (d.fit_rows < 1) d.fit_rows = 1;
  d.scaling = scaling;

  // Normalisation from the hours the training rows read: their inputs from the first
  // training t - L to the last training t + H - 1.
  const long first = d.train_begin;  // = (L + train_begin) - L
  const long last = (L + d.train_end() - 1) + H - 1;
  double sum = 0, lo = s.values[static_cast<size_t>(first)], hi = lo;
  for (long i = first; i <= last; ++i) {
    const double v = s.values[static_cast<size_t>(i)];
    sum += v;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  if (scaling == Scaling::mean) {
    d.offset = 0.0;
    d.scale = sum / static_cast<double>(last - first + 1);
  } else {
    d.offset = lo;
    d.scale = (hi - lo) / 10.0;
  }
  if (offset_scale) {
    d.offset = offset_scale[0];
    d.scale = offset_scale[1];
  }
  if (!(d.scale > 0))
    throw Error(where + ": the training rows are constant; cannot normalise");
  std::vector<float> zn(static_cast<size_t>(T));
  for (long i = 0; i < T; ++i) {
    double v = (s.values[static_cast<size_t>(i)] - d.offset) / d.scale;
    if (scaling == Scaling::paper && v <= 0.01) v = 0.01;  // the released code's clamp
    zn[static_cast<size_t>(i)] = static_cast<float>(v);
  }
  const double pi = 3.14159265358979323846;
  const int D = L + 2;
  d.x.resize(static_cast<size_t>(U * D));
  d.y.resize(static_cast<size_t>(U * H));
  d.t.resize(static_cast<size_t>(U));
  for (long r = 0; r < U; ++r) {
    const long t = L + r;
    d.t[static_cast<size_t>(r)] = t;
    float* x = d.x.data() + r * D;
    for (int i = 0; i < L; ++i) x[i] = zn[static_cast<size_t>(t - L + i)];
    const int h = s.hour_of_day.empty() ? static_cast<int>(t % 24)
                                        : s.hour_of_day[static_cast<size_t>(t)];
    x[L] = static_cast<float>(std::sin(2 * pi * h / 24.0));
    x[L + 1] = static_cast<float>(std::cos(2 * pi * h / 24.0));
    float* y = d.y.data() + r * H;
    for (int j = 0; j < H; ++j) y[j] = zn[static_cast<size_t>(t + j)];
  }
  return d;
}

}  // namespace eqpm
