// Forecasts from a saved model (`eqpm predict`): for each forecast start hour t of a
// series, the model's input is the L values before t, scaled with the model's stored
// normalisation, plus sin/cos of t's hour of day; its H outputs, mapped back to the
// series' units, forecast hours t .. t+H-1.
#pragma once

#include <cstdint>
#include <string>

#include "host/io/checkpoint.hpp"
#include "eqpm/data.hpp"

namespace eqpm {

struct PredictRange {
  bool has_from = false, has_to = false;
  std::int64_t from = 0, to = 0;  // UTC seconds, both inclusive, of the forecast start
};

// CSV text: header `timestamp,h1,...,hH` (timestamp: the first forecast hour, in UTC as
// YYYY-MM-DDTHH:MM:SSZ; a series without timestamps gives its hour index instead), one
// row per start hour t from L to the end of the series (the last row forecasts the hours
// after it). Values are offset + scale * mu in the series' units.
std::string predict_csv(const ModelFile& model, const Series& series, const PredictRange& range);

// UTC seconds of a --from/--to argument: a date (YYYY-MM-DD, midnight) or a timestamp.
std::int64_t parse_date_argument(const std::string& text, const std::string& flag);

}  // namespace eqpm
