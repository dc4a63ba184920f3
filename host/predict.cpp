// Forecasts from a saved model (predict.hpp).
#include "host/predict.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "eqpm/mlp.hpp"
#include "host/run.hpp"

namespace eqpm {
namespace {

double metadata_number(const ModelFile& m, const std::string& key, const std::string& source) {
  const auto it = m.metadata.find(key);
  if (it == m.metadata.end()) throw InputError(source, 0, 0, "no " + key + " in the metadata");
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v))
    throw InputError(source, 0, 0, key + " = '" + it->second + "' is not a number");
  return v;
}

}  // namespace

std::int64_t parse_date_argument(const std::string& text, const std::string& flag) {
  std::int64_t utc = 0;
  std::string why;
  if (!parse_date(text, &utc, nullptr, &why))
    throw ConfigError(flag + ": expected a date YYYY-MM-DD or a timestamp, got '" + text + "' (" +
                      why + ")");
  return utc;
}

std::string predict_csv(const ModelFile& model, const Series& series, const PredictRange& range) {
  const std::string source = series.source.empty() ? "series" : series.source;
  const int D = model.layout.input_dim(), H = model.layout.output_dim(), L = D - 2;
  const double offset = metadata_number(model, "eqpm.offset", "model");
  const double scale = metadata_number(model, "eqpm.scale", "model");
  const auto sc = model.metadata.find("eqpm.scaling");
  const bool paper = sc != model.metadata.end() && sc->second == "paper";
  const long T = static_cast<long>(series.values.size());
  if (T < L)
    throw InputError(source, 0, 0, "series of " + std::to_string(T) +
                                       " hours is shorter than the model's lookback " +
                                       std::to_string(L));
  const bool timed = series.utc_seconds.size() == series.values.size();
  if ((range.has_from || range.has_to) && !timed)
    throw ConfigError("--from/--to: the series has no timestamps (the synthetic series)");

  std::string out = "timestamp";
  for (int j = 1; j <= H; ++j) out += ",h" + std::to_string(j);
  out += "\n";
  const double pi = 3.14159265358979323846;
  std::vector<float> x(static_cast<size_t>(D)), pre(static_cast<size_t>(model.layout.activation_count())),
      mu(static_cast<size_t>(H));
  for (long t = L; t <= T; ++t) {
    const std::int64_t when = timed ? (t < T ? series.utc_seconds[static_cast<size_t>(t)]
                                             : series.utc_seconds[static_cast<size_t>(T - 1)] + 3600)
                                    : t;
    if ((range.has_from && when < range.from) || (range.has_to && when > range.to)) continue;
    for (int i = 0; i < L; ++i) {
      double v = (series.values[static_cast<size_t>(t - L + i)] - offset) / scale;
      if (paper && v <= 0.01) v = 0.01;  // as in training (build_dataset)
      x[static_cast<size_t>(i)] = static_cast<float>(v);
    }
    int h;
    if (series.hour_of_day.empty()) h = static_cast<int>(t % 24);
    else if (t < T) h = series.hour_of_day[static_cast<size_t>(t)];
    else h = (series.hour_of_day[static_cast<size_t>(T - 1)] + 1) % 24;
    x[static_cast<size_t>(L)] = static_cast<float>(std::sin(2 * pi * h / 24.0));
    x[static_cast<size_t>(L + 1)] = static_cast<float>(std::cos(2 * pi * h / 24.0));
    mlp_forward<float>(model.layout, model.params.data(), x.data(), pre.data(), mu.data());
    out += timed ? utc_text(when) : std::to_string(when);
    for (int j = 0; j < H; ++j) out += "," + format_double(offset + scale * mu[static_cast<size_t>(j)]);
    out += "\n";
  }
  return out;
}

}  // namespace eqpm
