// libFuzzer target: the CSV reader and its cell parsers (CsvReader::from_text, numbers,
// integers, timestamps) and the hourly series loader (load_series_csv) on the same
// bytes. Only eqpm::Error is a clean rejection; any other exception, a sanitizer report,
// a leak, a timeout or a broken promise about an accepted file is a finding.
// Built with -DEQPM_FUZZ=ON; run by tools/fuzz.sh.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

// The reader and the cell parsers on every cell. The throwing *_cell parsers run on the
// first rows only: an exception per cell would make each input cost milliseconds.
void read_all_cells(const std::string& text) {
  const std::string name = "fuzz-input.csv";
  try {
    eqpm::CsvReader csv = eqpm::CsvReader::from_text(text, name);
    const size_t columns = csv.header().size();
    if (columns == 0) finding("a header without cells was accepted");
    eqpm::CsvRow row;
    while (csv.next(&row)) {
      if (row.cells.size() != columns) finding("a row with another cell count than the header");
      const bool positioned = csv.rows_read() <= 3;
      for (const eqpm::CsvCell& cell : row.cells) {
        if (cell.line < 1 || cell.column < 1) finding("a cell without a position");
        double v = 0;
        std::string why;
        if (eqpm::try_parse_number(cell.text, &v, &why) && !std::isfinite(v))
          finding("try_parse_number returned a non-finite number");
        eqpm::Timestamp t;
        if (eqpm::parse_timestamp(cell.text, &t, &why) &&
            (t.hour < 0 || t.hour > 23 || t.minute < 0 || t.minute > 59))
          finding("parse_timestamp returned an impossible time of day");
        if (!positioned) continue;
        try {
          const double x = eqpm::parse_number_cell(cell, name, "value");
          if (!std::isfinite(x)) finding("parse_number_cell returned a non-finite number");
        } catch (const eqpm::InputError& e) {
          if (e.line() != cell.line || e.column() != cell.column)
            finding("a cell error at another position than the cell");
        }
        try {
          const float x = eqpm::parse_float_cell(cell, name, "value");
          if (!std::isfinite(x)) finding("parse_float_cell returned a non-finite number");
        } catch (const eqpm::InputError&) {
        }
        try {
          const long x = eqpm::parse_integer_cell(cell, name, "value", -1000, 1000);
          if (x < -1000 || x > 1000) finding("parse_integer_cell returned a value out of range");
        } catch (const eqpm::InputError&) {
        }
        try {
          eqpm::parse_timestamp_cell(cell, name);
        } catch (const eqpm::InputError&) {
        }
      }
    }
    csv.require_data();
  } catch (const eqpm::Error& e) {
    check_names_file(e, name);
  }
}

void load_series(const std::string& path, int max_gap) {
  try {
    eqpm::SeriesLoadInfo info;
    const eqpm::Series s = eqpm::load_series_csv(path, "avg_CI", max_gap, &info);
    if (s.values.empty()) finding("an empty series was accepted");
    if (s.values.size() != s.hour_of_day.size()) finding("values and hours of day differ in length");
    for (size_t i = 0; i < s.values.size(); ++i) {
      if (!std::isfinite(s.values[i]) || !(s.values[i] > 0))
        finding("series value " + std::to_string(i) + " is not finite and positive");
      if (s.hour_of_day[i] < 0 || s.hour_of_day[i] > 23) finding("hour of day out of range");
    }
    if (info.filled < 0 || info.filled > long(s.values.size())) finding("impossible fill count");
  } catch (const eqpm::Error& e) {
    check_names_file(e, path);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("series.csv");
  try {
    const std::string text(reinterpret_cast<const char*>(data), size);
    read_all_cells(text);
    const std::string& path = input.write(data, size);
    // The length of the input picks max_gap, so gap filling runs with several limits.
    load_series(path, int(size % 5));
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
