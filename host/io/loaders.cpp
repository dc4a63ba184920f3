// The input loaders of DESIGN.md 2, 4.4 and 8.1 on top of the CSV reader: hourly series
// with gap filling, demand profiles, Caltech EV sessions and population.csv (read and
// write). Each refuses bad input with the file, line and column and what was expected.
#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <numeric>
#include <ostream>
#include <unordered_map>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

namespace {

std::string hours_text(long n) { return std::to_string(n) + (n == 1 ? " hour" : " hours"); }

// Checks the step between two consecutive timestamps; `expected` seconds exactly.
// Returns the step in seconds when it is a positive multiple of `expected` and
// `allow_jumps`, else throws at the later row's timestamp cell.
std::int64_t checked_step(const std::string& path, const CsvCell& cell, const Timestamp& prev,
                          long prev_line, const Timestamp& cur, std::int64_t expected,
                          bool allow_jumps) {
  const std::int64_t d = cur.utc_seconds - prev.utc_seconds;
  const std::string here = "timestamp " + quote_cell(cell.text);
  if (d == 0)
    throw InputError(path, cell.line, cell.column,
                     "duplicate " + here + ": the same time as line " + std::to_string(prev_line));
  if (d < 0)
    throw InputError(path, cell.line, cell.column,
                     "out-of-order " + here + ": earlier than line " + std::to_string(prev_line) +
                         "; timestamps must increase");
  if (d % expected != 0 || (!allow_jumps && d != expected)) {
    const std::string step =
        d % 60 == 0 ? std::to_string(d / 60) + " minutes" : std::to_string(d) + " seconds";
    throw InputError(path, cell.line, cell.column,
                     "irregular step: " + here + " is " + step + " after line " +
                         std::to_string(prev_line) + "; expected exactly " +
                         std::to_string(expected / 60) + (allow_jumps ? " (or a multiple)" : ""));
  }
  return d;
}

}  // namespace

// ------------------------------------------------------------------------ series

Series load_series_csv(const std::string& path, const std::string& column, int max_gap,
                       SeriesLoadInfo* info) {
  if (max_gap < 0) throw Error("max_gap must be >= 0, got " + std::to_string(max_gap));
  CsvReader csv(path);
  const int vc = csv.require_column(column);
  if (vc == 0)
    throw InputError(path, 1, 1,
                     "column " + quote_cell(column) +
                         " holds the timestamps (the first column); choose a value column from: " +
                         csv.column_list());
  const std::string& name = csv.header()[static_cast<size_t>(vc)].text;

  // A missing hour is NaN while reading (NaN in the input itself is refused); runs of
  // them are filled once the value after the run is known.
  struct Gap {
    size_t start;  // index of the first missing hour
    long length;
    long line;  // where the run starts in the file
    long column;
  };
  std::vector<Gap> gaps;
  bool open = false;  // the last gap is still running
  Series s;
  s.source = path;
  // Appends `count` missing hours whose first has hour of day `first_hour`.
  auto add_missing = [&](std::int64_t count, int first_hour, std::int64_t first_utc, long line,
                         long col) {
    if (s.values.empty())
      throw InputError(path, line, col,
                       "the first hour has no " + name +
                           " value; missing hours at the start cannot be interpolated");
    if (!open) {
      gaps.push_back({s.values.size(), 0, line, col});
      open = true;
    }
    Gap& g = gaps.back();
    // Only what can be filled is stored: a run longer than max_gap is an error once its
    // length is known, so its excess is counted, and a huge jump costs no memory.
    const std::int64_t stored =
        std::min<std::int64_t>(count, std::max<std::int64_t>(0, max_gap - g.length));
    if (static_cast<std::int64_t>(s.values.size()) + stored > kMaxSeriesHours)
      throw InputError(path, line, col,
                       "series longer than " + std::to_string(kMaxSeriesHours) + " hours");
    for (std::int64_t j = 0; j < stored; ++j) {
      s.values.push_back(std::nan(""));
      s.hour_of_day.push_back(static_cast<int>((first_hour + j) % 24));
      s.utc_seconds.push_back(first_utc + 3600 * j);
    }
    g.length += count;
  };
  auto close_gap = [&] {
    if (!open) return;
    open = false;
    const Gap& g = gaps.back();
    if (g.length > max_gap)
      throw InputError(
          path, g.line, g.column,
          "gap of " + hours_text(g.length) + " without a " + name +
              " value starting here is longer than max_gap = " + std::to_string(max_gap) +
              " (missing hours are filled by linear "
              "interpolation only across shorter gaps)");
  };

  CsvRow row;
  Timestamp prev;
  long prev_line = 0;
  while (csv.next(&row)) {
    const CsvCell& tc = row.cells[0];
    const Timestamp ts = parse_timestamp_cell(tc, path);
    if (prev_line > 0) {
      const std::int64_t d = checked_step(path, tc, prev, prev_line, ts, 3600, true);
      const std::int64_t absent = d / 3600 - 1;  // hours with no row at all
      if (absent > 0)
        add_missing(absent, (prev.hour + 1) % 24, prev.utc_seconds + 3600, tc.line, tc.column);
    }
    if (static_cast<long>(s.values.size()) >= kMaxSeriesHours)
      throw InputError(path, row.line, 1,
                       "series longer than " + std::to_string(kMaxSeriesHours) + " hours");
    const CsvCell& vcell = row.cells[static_cast<size_t>(vc)];
    if (vcell.text.empty()) {
      // The EIA files leave every cell of an unreported hour empty.
      add_missing(1, ts.hour, ts.utc_seconds, vcell.line, vcell.column);
    } else {
      const double v = parse_number_cell(vcell, path, name);
      if (v <= 0)
        throw InputError(path, vcell.line, vcell.column,
                         name + " = " + vcell.text +
                             " is not positive; the series must be > 0 (decisions divide by it)");
      close_gap();
      s.values.push_back(v);
      s.hour_of_day.push_back(ts.hour);
      s.utc_seconds.push_back(ts.utc_seconds);
    }
    prev = ts;
    prev_line = row.line;
  }
  csv.require_data();
  if (open) {
    const Gap& g = gaps.back();
    throw InputError(path, g.line, g.column,
                     "the last " + hours_text(g.length) + " have no " + name +
                         " value; missing hours at the end cannot be interpolated");
  }

  long longest = 0, longest_line = 0;
  for (const Gap& g : gaps) {
    const double a = s.values[g.start - 1];
    const double b = s.values[g.start + static_cast<size_t>(g.length)];
    for (long j = 0; j < g.length; ++j) {
      const double f = static_cast<double>(j + 1) / static_cast<double>(g.length + 1);
      s.values[g.start + static_cast<size_t>(j)] = a + (b - a) * f;
    }
    s.filled += g.length;
    if (g.length > longest) {
      longest = g.length;
      longest_line = g.line;
    }
  }
  if (info) {
    info->rows = csv.rows_read();
    info->filled = s.filled;
    info->note.clear();
    if (s.filled > 0)
      info->note = "filled " + hours_text(s.filled) + " of " + name + " by linear interpolation (" +
                   std::to_string(gaps.size()) + (gaps.size() == 1 ? " gap" : " gaps") +
                   ", the longest " + hours_text(longest) + " at line " +
                   std::to_string(longest_line) + ")";
  }
  return s;
}

// ------------------------------------------------------------------------ demand profile

std::vector<float> load_demand_profile(const std::string& path) {
  CsvReader csv(path);
  CsvRow row;
  std::vector<float> out;
  if (csv.header().size() == 1 && csv.header()[0].text == "demand") {
    // The profile as a run used it: read back verbatim (no renormalisation), so that
    // write -> read reproduces it bit for bit.
    while (csv.next(&row)) {
      const CsvCell& c = row.cells[0];
      const float v = parse_float_cell(c, path, "demand");
      if (!(v > 0))
        throw InputError(path, c.line, c.column,
                         "demand = " + c.text + " is not positive; the profile must be > 0");
      if (static_cast<long>(out.size()) >= kMaxSeriesHours)
        throw InputError(
            path, c.line, c.column,
            "demand profile longer than " + std::to_string(kMaxSeriesHours) + " values");
      out.push_back(v);
    }
    csv.require_data();
    return out;
  }

  int dc = -1;
  for (size_t i = 0; i < csv.header().size(); ++i) {
    std::string lower = csv.header()[i].text;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (lower == "demand" && dc < 0) dc = static_cast<int>(i);
  }
  if (dc < 0)
    throw InputError(path, 1, 1,
                     "no 'Demand' column; expected a trace with header Time,Demand or the "
                     "one-column format with header demand; available columns: " +
                         csv.column_list());
  if (dc == 0)
    throw InputError(path, 1, 1, "the first column must hold the timestamps, found 'Demand' there");

  std::vector<double> values;
  std::vector<std::pair<long, long>> where;  // line and column of each demand cell
  Timestamp prev;
  long prev_line = 0;
  std::int64_t step = 0;
  while (csv.next(&row)) {
    const CsvCell& tc = row.cells[0];
    const Timestamp ts = parse_timestamp_cell(tc, path);
    if (prev_line > 0) {
      if (step == 0) {
        const std::int64_t d = ts.utc_seconds - prev.utc_seconds;
        // Order problems first, so a duplicate is called a duplicate.
        if (d <= 0) checked_step(path, tc, prev, prev_line, ts, 1800, false);
        if (d != 1800 && d != 3600)
          throw InputError(path, tc.line, tc.column,
                           "time step of " + std::to_string(d / 60) + " minutes after line " +
                               std::to_string(prev_line) + "; expected 30 or 60 minutes");
        step = d;
      } else {
        checked_step(path, tc, prev, prev_line, ts, step, false);
      }
    }
    const CsvCell& c = row.cells[static_cast<size_t>(dc)];
    const double v = parse_number_cell(c, path, csv.header()[static_cast<size_t>(dc)].text);
    if (v < 0)
      throw InputError(path, c.line, c.column, "demand " + c.text + " is negative; expected >= 0");
    if (static_cast<long>(values.size()) >= 2 * kMaxSeriesHours)
      throw InputError(path, c.line, c.column,
                       "demand trace longer than " + std::to_string(2 * kMaxSeriesHours) + " rows");
    values.push_back(v);
    where.emplace_back(c.line, c.column);
    prev = ts;
    prev_line = row.line;
  }
  csv.require_data();
  if (values.size() < 2)
    throw InputError(path, where[0].first, 0,
                     "a single row: need at least two to detect the time step");

  // Half-hours are summed in consecutive pairs (as the paper sums the Azure trace to
  // hours); an unpaired last half-hour is dropped.
  const size_t per_hour = step == 1800 ? 2 : 1;
  const size_t hours = values.size() / per_hour;
  std::vector<double> hourly(hours);
  double total = 0;
  for (size_t h = 0; h < hours; ++h) {
    double v = 0;
    for (size_t j = 0; j < per_hour; ++j) v += values[h * per_hour + j];
    hourly[h] = v;
    total += v;
  }
  const double mean = total / static_cast<double>(hours);
  if (!(mean > 0) || !std::isfinite(mean))
    throw InputError(path, 0, 0, "the demand has no positive finite mean; cannot normalise it");
  out.resize(hours);
  for (size_t h = 0; h < hours; ++h) {
    out[h] = static_cast<float>(hourly[h] / mean);
    if (!(out[h] > 0))
      throw InputError(path, where[h * per_hour].first, where[h * per_hour].second,
                       "hour " + std::to_string(h) + " of the demand profile is zero (from this " +
                           "line on); the datacenter regret needs a demand > 0 in every hour");
  }
  return out;
}

void write_demand_profile_csv(const std::vector<float>& profile, std::ostream& out) {
  out << "demand\n";
  for (float v : profile) out << format_number(v) << '\n';
}

// ------------------------------------------------------------------------ EV sessions

std::vector<Agent> load_ev_sessions(const std::string& path, int horizon, long sample,
                                    std::uint64_t seed, EvSessionStats* stats) {
  if (horizon < 1 || horizon > kMaxHorizon)
    throw Error("horizon must lie in [1, " + std::to_string(kMaxHorizon) + "], got " +
                std::to_string(horizon));
  if (sample < 0)
    throw Error("the EV session sample size must be >= 0, got " + std::to_string(sample));
  CsvReader csv(path);
  const size_t cs = static_cast<size_t>(csv.require_column("start_time"));
  const size_t cd = static_cast<size_t>(csv.require_column("done_charge"));
  const size_t ce = static_cast<size_t>(csv.require_column("total_power"));

  // Duration = done_charge - start_time: the time the car actually drew power, which
  // is what k (hours of charging needed) stands for. This is the paper's choice too:
  // preprocess_ev_charging_data() in main_ev_charging.py of
  // Ren-Research/Socially-Equitable-Public-Models computes done_charge - start_time,
  // drops sessions with start_time >= done_charge, keeps 3 h <= duration <= 12 h, and
  // takes k = int(duration hours) (calculate_K). end_time (the car leaving) would
  // overstate the charging need.
  constexpr std::int64_t kMinSeconds = 3 * 3600, kMaxSeconds = 12 * 3600;
  EvSessionStats st;
  std::vector<Agent> kept;
  CsvRow row;
  while (csv.next(&row)) {
    ++st.total;
    Timestamp start, done;
    std::string why;
    double kwh = 0;
    // A session without usable times or energy is skipped and counted, not fatal.
    const bool ok = parse_timestamp(row.cells[cs].text, &start, &why) &&
                    parse_timestamp(row.cells[cd].text, &done, &why) &&
                    try_parse_number(row.cells[ce].text, &kwh, &why) && kwh > 0;
    if (!ok) {
      ++st.skipped_unparseable;
      continue;
    }
    const std::int64_t seconds = done.utc_seconds - start.utc_seconds;
    if (seconds < 0) {
      ++st.skipped_inconsistent;
      continue;
    }
    if (seconds < kMinSeconds || seconds > kMaxSeconds) {
      ++st.skipped_duration;
      continue;
    }
    if (static_cast<long>(kept.size()) >= kMaxAgents)
      throw InputError(path, row.line, 1,
                       "more than " + std::to_string(kMaxAgents) + " sessions pass the filters");
    Agent a;
    a.family = Family::ev_charging;
    a.weight = 1.0;
    a.k = static_cast<int>(std::clamp<std::int64_t>(seconds / 3600, 1, horizon));
    a.window_start = 0;
    a.window_end = horizon;
    a.energy = kwh / a.k;
    // Backends compute in float: an energy outside its range is no usable agent.
    if (!(std::abs(a.energy) <= 3.4e38) || !(static_cast<float>(a.energy) > 0.0f)) {
      ++st.skipped_unparseable;
      continue;
    }
    kept.push_back(a);
  }
  csv.require_data();
  st.kept = static_cast<long>(kept.size());
  if (stats) *stats = st;
  if (kept.empty())
    throw InputError(path, 0, 0,
                     "no session lasts 3 to 12 hours with a valid start_time, done_charge and "
                     "total_power > 0 (" +
                         std::to_string(st.total) +
                         " rows: " + std::to_string(st.skipped_unparseable) + " unparseable, " +
                         std::to_string(st.skipped_inconsistent) + " done before start, " +
                         std::to_string(st.skipped_duration) + " outside 3-12 h)");
  if (sample > 0 && sample < st.kept) {
    // Partial Fisher-Yates picks `sample` distinct sessions; sorting the picks restores
    // file order, so the result depends only on the file, the sample size and the seed.
    std::vector<long> idx(kept.size());
    std::iota(idx.begin(), idx.end(), 0L);
    SplitMix64 rng(seed);
    for (long i = 0; i < sample; ++i) {
      const long j = rng.integer(i, st.kept - 1);
      std::swap(idx[static_cast<size_t>(i)], idx[static_cast<size_t>(j)]);
    }
    idx.resize(static_cast<size_t>(sample));
    std::sort(idx.begin(), idx.end());
    std::vector<Agent> picked;
    picked.reserve(idx.size());
    for (long i : idx) picked.push_back(kept[static_cast<size_t>(i)]);
    return picked;
  }
  return kept;
}

// ------------------------------------------------------------------------ population.csv

namespace {

enum PopColumn : int {
  kAgent,
  kFamily,
  kWeight,
  kLambda,
  kScale,
  kPhase,
  kHour,
  kK,
  kWindowStart,
  kWindowEnd,
  kEnergy,
  kCu,
  kCo,
  kPopColumns
};
const char* const kPopHeader[kPopColumns] = {
    "agent", "family",       "weight",     "lambda", "scale", "phase", "hour",
    "k",     "window_start", "window_end", "energy", "cu",    "co"};

// Whether a column carries a parameter of the family (weight applies to all).
bool applies(Family f, int col) {
  switch (f) {
    case Family::datacenter:
      return col == kLambda || col == kScale || col == kPhase || col == kHour;
    case Family::ev_charging:
      return col == kK || col == kWindowStart || col == kWindowEnd || col == kEnergy;
    case Family::inventory:
      return col == kCu || col == kCo || col == kHour;
  }
  return false;
}

// The optional column of each agent's group (objectives.hpp's grouped objectives, the
// reports); written only when the population has groups.
const char* const kGroupHeader = "group";

std::string header_text() {
  std::string s;
  for (int i = 0; i < kPopColumns; ++i) s += (i ? "," : "") + std::string(kPopHeader[i]);
  return s;
}

// Which cell a check_agent() message is about: its first word names the field
// ("lambda must be > 0", "k = 7 exceeds ...", "window [...] ..."); 0 when unknown.
int column_of_reason(const std::string& why) {
  size_t n = 0;
  while (n < why.size() && (std::isalnum(static_cast<unsigned char>(why[n])) || why[n] == '_')) ++n;
  const std::string word = why.substr(0, n);
  if (word == "window") return kWindowStart;
  for (int i = kWeight; i < kPopColumns; ++i)
    if (word == kPopHeader[i]) return i;
  return -1;
}

}  // namespace

Population read_population_csv(const std::string& path, int horizon) {
  if (horizon < 1 || horizon > kMaxHorizon)
    throw Error("horizon must lie in [1, " + std::to_string(kMaxHorizon) + "], got " +
                std::to_string(horizon));
  CsvReader csv(path);
  // Columns may come in any order; col[c] is the header index of column c, or -1.
  int col[kPopColumns];
  std::fill(std::begin(col), std::end(col), -1);
  int group_col = -1;
  const auto& head = csv.header();
  for (size_t i = 0; i < head.size(); ++i) {
    if (head[i].text == kGroupHeader) {
      group_col = static_cast<int>(i);
      continue;
    }
    int c = 0;
    while (c < kPopColumns && head[i].text != kPopHeader[c]) ++c;
    if (c == kPopColumns)
      throw InputError(path, 1, head[i].column,
                       "unknown column " + quote_cell(head[i].text) + "; the columns are " +
                           header_text() + " and optionally " + kGroupHeader + " (in any order)");
    col[c] = static_cast<int>(i);
  }
  for (int c : {kAgent, kFamily})
    if (col[c] < 0)
      throw InputError(path, 1, 1,
                       std::string("no column '") + kPopHeader[c] + "'; the columns are " +
                           header_text() + " (in any order)");

  Population pop;
  std::unordered_map<std::string, int> group_ids;  // label -> index into pop.group_names
  CsvRow row;
  // Ids are labels: any unique non-empty text. While every id so far is its row index
  // written plainly (as write_population_csv writes them), no set of ids is kept.
  std::unordered_map<std::string, long> seen;  // id -> line, once an id is not the index
  std::vector<long> index_lines;                // line of each row while ids are indices
  bool ids_are_indices = true;
  const CsvCell absent{};
  constexpr long kIntMax = INT_MAX, kIntMin = INT_MIN;
  while (csv.next(&row)) {
    const long n = csv.rows_read() - 1;
    if (n >= kMaxAgents)
      throw InputError(path, row.line, 1, "more than " + std::to_string(kMaxAgents) + " agents");
    const auto cell = [&](int c) -> const CsvCell& {
      return col[c] < 0 ? absent : row.cells[static_cast<size_t>(col[c])];
    };
    const CsvCell& id = cell(kAgent);
    if (id.text.empty())
      throw InputError(path, id.line, id.column, "missing agent id; every agent needs a unique id");
    long previous = -1;  // line of an earlier agent with the same id
    if (ids_are_indices && id.text == std::to_string(n)) {
      index_lines.push_back(row.line);
    } else {
      if (ids_are_indices) {
        ids_are_indices = false;
        for (size_t k = 0; k < index_lines.size(); ++k)
          seen.emplace(std::to_string(k), index_lines[k]);
        index_lines = {};
      }
      const auto [it, inserted] = seen.emplace(id.text, row.line);
      if (!inserted) previous = it->second;
    }
    if (previous >= 0)
      throw InputError(path, id.line, id.column,
                       "duplicate agent id " + quote_cell(id.text) + " (also on line " +
                           std::to_string(previous) + "); agent ids must be unique");
    Agent a;
    const CsvCell& fc = cell(kFamily);
    if (fc.text.empty())
      throw InputError(path, fc.line, fc.column,
                       "missing family; expected datacenter, ev_charging or inventory");
    if (!parse_family(fc.text.c_str(), &a.family))
      throw InputError(path, fc.line, fc.column,
                       "unknown family " + quote_cell(fc.text) +
                           "; expected datacenter, ev_charging or inventory");
    const char* fname = family_name(a.family);
    for (int c = kLambda; c < kPopColumns; ++c) {
      if (applies(a.family, c) && col[c] < 0)
        throw InputError(path, fc.line, fc.column,
                         std::string("a ") + fname + " agent needs a " + kPopHeader[c] +
                             " value, but the header has no column '" + kPopHeader[c] + "'");
      const CsvCell& x = cell(c);
      if (applies(a.family, c) && x.text.empty())
        throw InputError(
            path, x.line, x.column,
            std::string("missing ") + kPopHeader[c] + " (required for a " + fname + " agent)");
      if (!applies(a.family, c) && !x.text.empty())
        throw InputError(path, x.line, x.column,
                         std::string(kPopHeader[c]) + " does not apply to a " + fname +
                             " agent; leave the cell empty (found " + quote_cell(x.text) + ")");
    }
    a.weight = cell(kWeight).text.empty() ? 1.0 : parse_number_cell(cell(kWeight), path, "weight");
    auto real = [&](int c) { return parse_number_cell(cell(c), path, kPopHeader[c]); };
    auto integer = [&](int c) {
      return static_cast<int>(parse_integer_cell(cell(c), path, kPopHeader[c], kIntMin, kIntMax));
    };
    switch (a.family) {
      case Family::datacenter:
        a.lambda = real(kLambda);
        a.scale = real(kScale);
        a.phase = integer(kPhase);
        a.hour = integer(kHour);
        break;
      case Family::ev_charging:
        a.k = integer(kK);
        a.window_start = integer(kWindowStart);
        a.window_end = integer(kWindowEnd);
        a.energy = real(kEnergy);
        break;
      case Family::inventory:
        a.cu = real(kCu);
        a.co = real(kCo);
        a.hour = integer(kHour);
        break;
    }
    const std::string why = check_agent(a, horizon);
    if (!why.empty()) {
      const int c = column_of_reason(why);
      throw InputError(path, row.line, c >= 0 && col[c] >= 0 ? cell(c).column : 1,
                       "agent " + (id.text == std::to_string(n) ? id.text : quote_cell(id.text)) +
                           ": " + why);
    }
    if (group_col >= 0) {
      const CsvCell& g = row.cells[static_cast<size_t>(group_col)];
      if (g.text.empty())
        throw InputError(path, g.line, g.column,
                         "missing group; with a group column every agent needs one");
      const auto [it, added] = group_ids.emplace(g.text, static_cast<int>(pop.group_names.size()));
      if (added) pop.group_names.push_back(g.text);
      pop.agent_group.push_back(it->second);
    }
    pop.agents.push_back(a);
  }
  csv.require_data();
  return pop;
}

void write_population_csv(const Population& population, std::ostream& out) {
  const bool groups = !population.group_names.empty();
  out << header_text() << (groups ? std::string(",") + kGroupHeader : std::string()) << '\n';
  std::string line;
  for (long n = 0; n < population.size(); ++n) {
    const Agent& a = population.agents[static_cast<size_t>(n)];
    std::string cells[kPopColumns];
    cells[kAgent] = std::to_string(n);
    cells[kFamily] = family_name(a.family);
    cells[kWeight] = format_number(a.weight);
    switch (a.family) {
      case Family::datacenter:
        cells[kLambda] = format_number(a.lambda);
        cells[kScale] = format_number(a.scale);
        cells[kPhase] = std::to_string(a.phase);
        cells[kHour] = std::to_string(a.hour);
        break;
      case Family::ev_charging:
        cells[kK] = std::to_string(a.k);
        cells[kWindowStart] = std::to_string(a.window_start);
        cells[kWindowEnd] = std::to_string(a.window_end);
        cells[kEnergy] = format_number(a.energy);
        break;
      case Family::inventory:
        cells[kCu] = format_number(a.cu);
        cells[kCo] = format_number(a.co);
        cells[kHour] = std::to_string(a.hour);
        break;
    }
    line.clear();
    for (int c = 0; c < kPopColumns; ++c) {
      if (c) line.push_back(',');
      line += cells[c];
    }
    if (groups) {
      // Quoted (quotes doubled) when the label holds a comma, quote or line break.
      const std::string& g = population.group_names[static_cast<size_t>(population.agent_group[static_cast<size_t>(n)])];
      line.push_back(',');
      if (g.find_first_of(",\"\r\n") == std::string::npos) {
        line += g;
      } else {
        line.push_back('"');
        for (char ch : g) line += ch == '"' ? std::string("\"\"") : std::string(1, ch);
        line.push_back('"');
      }
    }
    line.push_back('\n');
    out << line;
  }
}

}  // namespace eqpm
