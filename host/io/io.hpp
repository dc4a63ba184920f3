// Input loaders (DESIGN.md sections 2, 4.4, 8.1 and 9): a small streaming CSV reader
// that knows the 1-based line and column of every cell, number and timestamp parsing
// with positioned errors, and the loaders built on them: hourly series (carbon
// intensity), datacenter demand profiles (the Azure trace), EV charging sessions (the
// Caltech ACN file) and population.csv. Every problem in an input becomes an
// InputError "file:line:column: what was expected"; a missing value is never read as 0,
// and hostile files are refused before they can exhaust memory (see the limits below).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "eqpm/data.hpp"
#include "eqpm/families.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

// Limits that bound the memory and time a hostile input can cost.
inline constexpr std::uint64_t kMaxInputBytes = std::uint64_t(1) << 30;  // 1 GiB per file
inline constexpr long kMaxLineBytes = 1L << 20;                          // 1 MiB per line/record
inline constexpr long kMaxAgents = 100'000'000;                          // rows of population.csv
inline constexpr long kMaxSeriesHours = 10'000'000;  // a series, gaps included (> 1000 years)

// ------------------------------------------------------------------------------- CSV

struct CsvCell {
  std::string text;  // unquoted content ("" for an empty cell)
  long line = 0;     // 1-based line where the cell starts
  long column = 0;   // 1-based character (byte) column where the cell starts
  bool quoted = false;
};

struct CsvRow {
  std::vector<CsvCell> cells;
  long line = 0;        // 1-based line where the row starts
  long end_column = 0;  // column just past the row's last character (for "too few cells")
};

// Reads a comma-separated file one row at a time: header row first, then data rows.
// Fields may be double-quoted ("" inside quotes is a quote; quoted fields may span
// lines), CRLF line ends and a UTF-8 byte-order mark are tolerated, and so are blank
// lines at the very end of a file with more than one column (elsewhere a blank line is
// an error, or, in a one-column file, a row with an empty cell). Rejected with an
// InputError: a missing, non-regular or > 1 GiB file, an empty file, an empty or
// duplicated header name, a line or record over 1 MiB, a row whose cell count differs
// from the header's (a short last row without a final newline is reported as a
// truncated last line), unterminated quotes and stray quotes or carriage returns.
class CsvReader {
 public:
  explicit CsvReader(const std::string& path);
  // Parses `text` as if it were the file `name` (tests, fuzzing).
  static CsvReader from_text(std::string text, const std::string& name);
  CsvReader(CsvReader&&) noexcept;
  CsvReader& operator=(CsvReader&&) noexcept;
  ~CsvReader();

  const std::string& path() const { return path_; }
  const std::vector<CsvCell>& header() const { return header_; }
  // Index of the header cell named exactly `name`, or -1.
  int find_column(std::string_view name) const;
  // Same, but an unknown name is an InputError at line 1 listing the available columns.
  int require_column(std::string_view name) const;
  // "timestamp, WND, ..., avg_CI" (for messages).
  std::string column_list() const;

  // Reads the next data row into *row; false at the end of the file.
  bool next(CsvRow* row);
  // Data rows returned so far.
  long rows_read() const { return rows_; }
  // Throws "header only: no data rows" when no data row was read (call at the end).
  void require_data() const;

 private:
  struct Source;
  CsvReader(std::unique_ptr<Source> src, std::string path);
  int get();
  int peek();
  bool read_record(CsvRow* row);
  [[noreturn]] void fail(long line, long column, const std::string& message) const;

  std::unique_ptr<Source> src_;
  std::string path_;
  std::vector<CsvCell> header_;
  long rows_ = 0;
  long line_ = 1;
  long column_ = 1;
};

// The cell's text, quoted and shortened for an error message ('abc', '' or '12345...').
std::string quote_cell(std::string_view text);

// Parses the whole of `text` (surrounding spaces and a leading '+' allowed) as a finite
// double; false, with the reason in *why, otherwise. Never throws.
bool try_parse_number(std::string_view text, double* out, std::string* why);

// A finite number; an empty cell, trailing garbage, NaN, Inf or an out-of-range value is
// an InputError at the cell naming `what` (usually the column name). Leading '+' and
// surrounding spaces are accepted.
double parse_number_cell(const CsvCell& cell, const std::string& path, std::string_view what);
// Same, parsed directly as float (so the shortest float text of a value reads back as
// exactly that float).
float parse_float_cell(const CsvCell& cell, const std::string& path, std::string_view what);
// An integer in [lo, hi]; "3" and "3.0" are accepted (tools such as pandas write
// integer columns with missing cells as floats), "3.5" is not.
long parse_integer_cell(const CsvCell& cell, const std::string& path, std::string_view what,
                        long lo, long hi);

// Shortest text that reads back as exactly the same value (std::to_chars).
std::string format_number(double v);
std::string format_number(float v);

// ------------------------------------------------------------------------ timestamps

struct Timestamp {
  std::int64_t utc_seconds = 0;  // seconds since 1970-01-01 00:00 UTC, offset applied
  int hour = 0;                  // the written hour of day (in the timestamp's own offset)
  int minute = 0;
};

// Accepts `YYYY-MM-DD HH:MM[:SS[.fff]][zone]` with '-' or '/' between the date fields and
// ' ' or 'T' before the time; zone is absent (read as UTC), `Z`, `+HH:MM`, `+HHMM` or
// `+HH` (or '-'). Returns false and says why in *why when the text is not such a time.
bool parse_timestamp(std::string_view text, Timestamp* out, std::string* why);
// Same, on a cell: an InputError at the cell when it is empty or not a timestamp.
Timestamp parse_timestamp_cell(const CsvCell& cell, const std::string& path);
// A date `YYYY-MM-DD` (midnight UTC; *date_only set) or a timestamp as above.
bool parse_date(std::string_view text, std::int64_t* utc_seconds, bool* date_only,
                std::string* why);

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d);
void civil_from_days(std::int64_t days, int* y, unsigned* m, unsigned* d);
// UTC seconds as YYYY-MM-DDTHH:MM:SSZ.
std::string utc_text(std::int64_t seconds);

// ------------------------------------------------------------------------ loaders

struct SeriesLoadInfo {
  long rows = 0;     // data rows in the file
  long filled = 0;   // hours filled by interpolation (empty cells and timestamp jumps)
  std::string note;  // one line for the log; empty when nothing was filled
};

// An hourly series from a CSV file: timestamps in the first column, values in the
// column named `column`. Timestamps must increase by exactly one hour; a row with an
// empty value cell or a jump of n+1 hours (n hours absent) is a missing hour. A run of at
// most `max_gap` consecutive missing hours is filled by linear interpolation between its
// neighbours; a longer run, or missing hours at the start or end, is an InputError
// naming the line where the run starts and its length. Values must be finite and > 0.
Series load_series_csv(const std::string& path, const std::string& column, int max_gap,
                       SeriesLoadInfo* info = nullptr);

// A datacenter demand profile D (DESIGN.md 4.1), strictly positive:
// - a trace `Time,Demand` (timestamps first; the demand column is found by name,
//   case-insensitively): 30- or 60-minute steps detected from the timestamps, every
//   step equal; half-hours are summed in consecutive pairs to hours (an unpaired last
//   half-hour is dropped); the result is normalised to mean 1. Values must be finite
//   and >= 0, and every hour > 0 (the datacenter regret needs d > 0).
// - or the one-column `demand` format written by write_demand_profile_csv (the profile
//   as used, read back verbatim, every value finite and > 0).
std::vector<float> load_demand_profile(const std::string& path);
// Header `demand`, one value per row, shortest round-trip text.
void write_demand_profile_csv(const std::vector<float>& profile, std::ostream& out);

struct EvSessionStats {
  long total = 0;                 // data rows
  long kept = 0;                  // sessions passing every filter (before sampling)
  long skipped_unparseable = 0;   // empty/bad start_time or done_charge, bad/<= 0 energy
  long skipped_inconsistent = 0;  // done_charge before start_time
  long skipped_duration = 0;      // charging time outside [3 h, 12 h]
};

// EV agents from a Caltech-ACN-style sessions file with columns start_time, done_charge
// and total_power (kWh), found by name. Duration = done_charge - start_time; sessions of
// 3 to 12 hours inclusive are kept (as the paper). Each kept session becomes
// Agent{ev_charging, weight 1, k = clamp(floor(duration h), 1, horizon), window [0,
// horizon), energy = kWh / k}. With 0 < sample < kept, a seeded sample of `sample`
// sessions is returned, in file order. Rows that cannot be read as sessions are skipped
// and counted; a structurally broken file (cell count, quotes) is an InputError, and
// so is a file where no session passes.
std::vector<Agent> load_ev_sessions(const std::string& path, int horizon, long sample,
                                    std::uint64_t seed, EvSessionStats* stats = nullptr);

// population.csv (DESIGN.md 8.1): columns
// agent,family,weight,lambda,scale,phase,hour,k,window_start,window_end,energy,cu,co in
// any order. `agent` and `family` are required; `agent` holds any unique non-empty ids,
// and agents are numbered 0..N-1 in file order. A column only one family uses may be left
// out when no agent of that family is present, and `weight` may be left out (1). The
// cells a family needs are required, cells that do not apply must be empty; an empty
// weight means 1. Unknown columns are refused. Every agent is checked with
// check_agent(agent, horizon) (phase >= 0 included). Errors name the file, line and
// column of the cell.
Population read_population_csv(const std::string& path, int horizon);
// Writes the columns in the order above with ids 0..N-1; write -> read -> write gives
// identical bytes.
void write_population_csv(const Population& population, std::ostream& out);

}  // namespace eqpm
