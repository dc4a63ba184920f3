// The streaming CSV reader and the cell parsers (numbers, integers, timestamps) behind
// every input loader: each value knows its 1-based line and column so that an error can
// say exactly where the input is wrong and what was expected (DESIGN.md section 9).
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"

namespace eqpm {

// A byte source with a fixed buffer: memory stays bounded whatever the file holds, and
// the byte count is checked as it goes in case the file grows after its size was read.
struct CsvReader::Source {
  std::unique_ptr<std::istream> in;
  std::array<char, 1 << 16> buf{};
  size_t pos = 0;
  size_t len = 0;
  std::uint64_t total = 0;  // bytes consumed so far
  bool first_fill = true;

  bool fill() {
    if (pos < len) return true;
    if (!*in) return false;
    in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
    len = static_cast<size_t>(in->gcount());
    pos = 0;
    if (first_fill) {
      first_fill = false;
      // A UTF-8 byte-order mark (spreadsheet exports) is not part of the first name.
      if (len >= 3 && static_cast<unsigned char>(buf[0]) == 0xEF &&
          static_cast<unsigned char>(buf[1]) == 0xBB && static_cast<unsigned char>(buf[2]) == 0xBF)
        pos = 3;
    }
    return pos < len;
  }
  int peek() { return fill() ? static_cast<unsigned char>(buf[pos]) : -1; }
  int get() {
    if (!fill()) return -1;
    ++total;
    return static_cast<unsigned char>(buf[pos++]);
  }
};

namespace {

constexpr int kEof = -1;

std::string plural(long n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

CsvReader::CsvReader(std::unique_ptr<Source> src, std::string path)
    : src_(std::move(src)), path_(std::move(path)) {
  if (peek() == kEof) fail(0, 0, "empty file: expected a header row");
  CsvRow head;
  read_record(&head);
  header_ = std::move(head.cells);
  for (size_t i = 0; i < header_.size(); ++i) {
    const CsvCell& c = header_[i];
    if (c.text.empty())
      fail(c.line, c.column,
           "empty column name in the header (column " + std::to_string(i + 1) +
               "); every column needs a name");
    for (size_t j = 0; j < i; ++j) {
      if (header_[j].text == c.text)
        fail(c.line, c.column,
             "duplicate column name " + quote_cell(c.text) + " (also column " +
                 std::to_string(j + 1) + " of the header)");
    }
  }
}

CsvReader::CsvReader(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw InputError(path, 0, 0, "cannot open the file: no such file");
  if (fs::is_directory(st)) throw InputError(path, 0, 0, "is a directory, expected a CSV file");
  // Devices and pipes could stream without end; only plain files have a size to check.
  if (!fs::is_regular_file(st)) throw InputError(path, 0, 0, "not a regular file");
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec) throw InputError(path, 0, 0, "cannot read the file size: " + ec.message());
  if (size > kMaxInputBytes)
    throw InputError(path, 0, 0,
                     "file too large (" + std::to_string(size) + " bytes; the limit is 1 GiB)");
  auto src = std::make_unique<Source>();
  auto file = std::make_unique<std::ifstream>(path, std::ios::binary);
  if (!file->is_open())
    throw InputError(path, 0, 0, std::string("cannot open the file: ") + std::strerror(errno));
  src->in = std::move(file);
  *this = CsvReader(std::move(src), path);
}

CsvReader CsvReader::from_text(std::string text, const std::string& name) {
  if (text.size() > kMaxInputBytes)
    throw InputError(name, 0, 0, "input too large (the limit is 1 GiB)");
  auto src = std::make_unique<Source>();
  src->in = std::make_unique<std::istringstream>(std::move(text));
  return CsvReader(std::move(src), name);
}

CsvReader::CsvReader(CsvReader&&) noexcept = default;
CsvReader& CsvReader::operator=(CsvReader&&) noexcept = default;
CsvReader::~CsvReader() = default;

void CsvReader::fail(long line, long column, const std::string& message) const {
  throw InputError(path_, line, column, message);
}

int CsvReader::peek() { return src_->peek(); }

int CsvReader::get() {
  const int c = src_->get();
  if (c == '\n') {
    ++line_;
    column_ = 1;
  } else if (c != kEof) {
    if (++column_ > kMaxLineBytes + 1)
      fail(line_, 0, "line longer than 1 MiB; this is not a CSV file of the expected kind");
  }
  if (src_->total > kMaxInputBytes) fail(line_, 0, "input larger than 1 GiB");
  return c;
}

// Reads one record (one line, or more when a quoted field holds line breaks). Returns
// false at the end of the input. Cells are returned as read; the caller checks counts.
bool CsvReader::read_record(CsvRow* row) {
  row->cells.clear();
  if (peek() == kEof) return false;
  row->line = line_;
  const std::uint64_t start = src_->total;
  auto check_size = [&] {
    if (src_->total - start > static_cast<std::uint64_t>(kMaxLineBytes))
      fail(row->line, 0, "record longer than 1 MiB");
  };
  for (;;) {
    CsvCell cell;
    cell.line = line_;
    cell.column = column_;
    if (peek() == '"') {
      get();
      cell.quoted = true;
      for (;;) {
        const int c = get();
        if (c == kEof)
          fail(cell.line, cell.column,
               "unterminated quoted field: no closing double quote before the end of the file");
        if (c == '"') {
          if (peek() != '"') break;
          get();
        }
        cell.text.push_back(static_cast<char>(c));
        check_size();
      }
      const int c = peek();
      if (c != ',' && c != '\n' && c != '\r' && c != kEof)
        fail(line_, column_,
             "expected a comma or the end of the line after a closing double quote");
    } else {
      for (;;) {
        const int c = peek();
        if (c == ',' || c == '\n' || c == '\r' || c == kEof) break;
        if (c == '"')
          fail(line_, column_,
               "double quote inside an unquoted field (quote the whole field and double the "
               "quote)");
        cell.text.push_back(static_cast<char>(get()));
        check_size();
      }
    }
    row->cells.push_back(std::move(cell));
    row->end_column = column_;
    const int c = get();
    if (c == ',') continue;
    if (c == '\r') {
      const int n = peek();
      if (n == '\n')
        get();
      else if (n != kEof)
        fail(line_, column_ - 1, "carriage return not followed by a line feed");
    }
    return true;
  }
}

bool CsvReader::next(CsvRow* row) {
  if (!read_record(row)) return false;
  const long want = static_cast<long>(header_.size());
  const long got = static_cast<long>(row->cells.size());
  if (got == want) {
    ++rows_;
    return true;
  }
  const std::string counts = "expected " + plural(want, "cell", "cells") +
                             " as in the header, found " + std::to_string(got);
  if (got > want) {
    const CsvCell& extra = row->cells[static_cast<size_t>(want)];
    fail(extra.line, extra.column, counts + " (too many cells)");
  }
  const long line = row->cells.back().line;
  if (got == 1 && row->cells[0].text.empty() && !row->cells[0].quoted) {
    // Blank lines at the very end (an editor's habit) are harmless; elsewhere they are
    // an error, since rows after them would shift meaning.
    for (;;) {
      const int c = peek();
      if (c == kEof) return false;
      if (c == '\n') {
        get();
      } else if (c == '\r') {
        get();
        if (peek() == '\n')
          get();
        else if (peek() != kEof)
          fail(line_, column_ - 1, "carriage return not followed by a line feed");
      } else {
        fail(line, 1, "blank line: " + counts);
      }
    }
  }
  if (peek() == kEof) fail(line, row->end_column, "truncated last line: " + counts);
  fail(line, row->end_column, counts + " (too few cells)");
}

void CsvReader::require_data() const {
  if (rows_ == 0) fail(1, 0, "header only: the file has no data rows");
}

int CsvReader::find_column(std::string_view name) const {
  for (size_t i = 0; i < header_.size(); ++i)
    if (header_[i].text == name) return static_cast<int>(i);
  return -1;
}

std::string CsvReader::column_list() const {
  std::string s;
  for (size_t i = 0; i < header_.size(); ++i) {
    if (i > 0) s += ", ";
    s += header_[i].text;
  }
  return s;
}

int CsvReader::require_column(std::string_view name) const {
  const int i = find_column(name);
  if (i < 0) fail(1, 1, "no column " + quote_cell(name) + "; available columns: " + column_list());
  return i;
}

// ------------------------------------------------------------------------ cells

std::string quote_cell(std::string_view text) {
  constexpr size_t kShown = 40;
  std::string s = "'";
  for (size_t i = 0; i < text.size() && i < kShown; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'') {
      s.push_back(static_cast<char>(c));
    } else {
      // Hostile bytes are shown, never echoed raw to a terminal.
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s.push_back(hex[c >> 4]);
      s.push_back(hex[c & 15]);
    }
  }
  if (text.size() > kShown) s += "...";
  return s + "'";
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Parses a whole (trimmed) text as a finite T; on failure says why.
template <class T>
bool parse_real(std::string_view text, T* out, std::string* why) {
  std::string_view s = trim(text);
  if (s.empty()) {
    *why = "missing value (empty cell); expected a number";
    return false;
  }
  std::string_view body = s;
  if (body.front() == '+') body.remove_prefix(1);
  T v{};
  const char* first = body.data();
  const char* last = body.data() + body.size();
  const bool signed_twice =
      !body.empty() && s.front() == '+' && (body.front() == '-' || body.front() == '+');
  const auto res = std::from_chars(first, last, v);
  if (body.empty() || signed_twice || res.ec == std::errc::invalid_argument || res.ptr != last) {
    *why = "expected a number, found " + quote_cell(text);
    return false;
  }
  if (res.ec == std::errc::result_out_of_range) {
    *why = quote_cell(text) + " is out of the range of a " +
           (sizeof(T) == sizeof(float) ? "float" : "double");
    return false;
  }
  if (std::isnan(v)) {
    *why = "NaN is not allowed; expected a finite number";
    return false;
  }
  if (std::isinf(v)) {
    *why = "infinity is not allowed; expected a finite number";
    return false;
  }
  *out = v;
  return true;
}

std::string subject(std::string_view what) {
  return what.empty() ? std::string() : std::string(what) + ": ";
}

}  // namespace

bool try_parse_number(std::string_view text, double* out, std::string* why) {
  return parse_real(text, out, why);
}

double parse_number_cell(const CsvCell& cell, const std::string& path, std::string_view what) {
  double v = 0;
  std::string why;
  if (!parse_real(cell.text, &v, &why))
    throw InputError(path, cell.line, cell.column, subject(what) + why);
  return v;
}

float parse_float_cell(const CsvCell& cell, const std::string& path, std::string_view what) {
  float v = 0;
  std::string why;
  if (!parse_real(cell.text, &v, &why))
    throw InputError(path, cell.line, cell.column, subject(what) + why);
  return v;
}

long parse_integer_cell(const CsvCell& cell, const std::string& path, std::string_view what,
                        long lo, long hi) {
  const double v = parse_number_cell(cell, path, what);
  // 2^63 itself does not fit a long: compare in double below it before converting.
  constexpr double kLongLimit = 9223372036854775808.0;
  if (std::fabs(v) >= kLongLimit)
    throw InputError(path, cell.line, cell.column,
                     subject(what) + quote_cell(cell.text) +
                         " is out of range: expected an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
  if (v != std::floor(v))
    throw InputError(path, cell.line, cell.column,
                     subject(what) + "expected an integer, found " + quote_cell(cell.text));
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi))
    throw InputError(path, cell.line, cell.column,
                     subject(what) + quote_cell(cell.text) +
                         " is out of range: expected an integer in [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
  return static_cast<long>(v);
}

std::string format_number(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string format_number(float v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// ------------------------------------------------------------------------ timestamps

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int days_in_month(int y, int m) {
  static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : days[m - 1];
}

// Reads between min_digits and max_digits decimal digits at s[*pos].
bool digits(std::string_view s, size_t* pos, int min_digits, int max_digits, int* out) {
  int v = 0, n = 0;
  while (*pos < s.size() && n < max_digits && s[*pos] >= '0' && s[*pos] <= '9') {
    v = v * 10 + (s[*pos] - '0');
    ++*pos;
    ++n;
  }
  *out = v;
  return n >= min_digits;
}

}  // namespace

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// Inverse of days_from_civil.
void civil_from_days(std::int64_t z, int* y, unsigned* m, unsigned* d) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int>(static_cast<std::int64_t>(yoe) + era * 400 + (*m <= 2));
}

std::string utc_text(std::int64_t seconds) {
  const std::int64_t days = (seconds >= 0 ? seconds : seconds - 86399) / 86400;
  const std::int64_t rest = seconds - days * 86400;
  int y;
  unsigned m, d;
  civil_from_days(days, &y, &m, &d);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02dZ", y, m, d,
                static_cast<int>(rest / 3600), static_cast<int>(rest / 60 % 60),
                static_cast<int>(rest % 60));
  return buf;
}

bool parse_date(std::string_view text, std::int64_t* utc_seconds, bool* date_only,
                std::string* why) {
  const std::string_view s = trim(text);
  const bool plain_date = s.size() == 10;
  Timestamp ts;
  if (!parse_timestamp(plain_date ? std::string(s) + " 00:00" : std::string(s), &ts, why))
    return false;
  *utc_seconds = ts.utc_seconds;
  if (date_only) *date_only = plain_date;
  return true;
}

bool parse_timestamp(std::string_view text, Timestamp* out, std::string* why) {
  const std::string_view s = trim(text);
  size_t p = 0;
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  auto fail = [why](const std::string& w) {
    *why = w;
    return false;
  };
  auto at = [&](char c) { return p < s.size() && s[p] == c; };
  if (!digits(s, &p, 4, 4, &year)) return fail("expected a four-digit year");
  if (!at('-') && !at('/')) return fail("expected '-' or '/' after the year");
  const char sep = s[p++];
  if (!digits(s, &p, 1, 2, &month)) return fail("expected a month");
  if (!at(sep)) return fail(std::string("expected '") + sep + "' after the month");
  ++p;
  if (!digits(s, &p, 1, 2, &day)) return fail("expected a day");
  if (!at(' ') && !at('T')) return fail("expected ' ' or 'T' and a time after the date");
  ++p;
  if (!digits(s, &p, 1, 2, &hour)) return fail("expected an hour");
  if (!at(':')) return fail("expected ':' after the hour");
  ++p;
  if (!digits(s, &p, 2, 2, &minute)) return fail("expected two-digit minutes");
  if (at(':')) {
    ++p;
    if (!digits(s, &p, 2, 2, &second)) return fail("expected two-digit seconds");
    if (at('.')) {
      ++p;
      const size_t from = p;
      bool nonzero = false;
      while (p < s.size() && s[p] >= '0' && s[p] <= '9') nonzero |= s[p++] != '0';
      if (p == from) return fail("expected digits after '.'");
      // Hourly data never needs sub-second times; refusing them keeps steps exact.
      if (nonzero) return fail("fractional seconds are not supported");
    }
  }
  int offset = 0;  // seconds east of UTC
  if (at('Z')) {
    ++p;
  } else if (at('+') || at('-')) {
    const int sign = s[p++] == '-' ? -1 : 1;
    int oh = 0, om = 0;
    if (!digits(s, &p, 2, 2, &oh)) return fail("expected a UTC offset like +01:00");
    if (at(':')) ++p;
    if (p < s.size() && !digits(s, &p, 2, 2, &om)) return fail("expected a UTC offset like +01:00");
    if (oh > 23 || om > 59) return fail("UTC offset out of range");
    offset = sign * (oh * 3600 + om * 60);
  }
  if (p != s.size()) return fail("unexpected text after the time");
  if (month < 1 || month > 12) return fail("month " + std::to_string(month) + " out of range");
  if (day < 1 || day > days_in_month(year, month))
    return fail("day " + std::to_string(day) + " out of range for the month");
  if (hour > 23) return fail("hour " + std::to_string(hour) + " out of range");
  if (minute > 59) return fail("minute " + std::to_string(minute) + " out of range");
  if (second > 59) return fail("second " + std::to_string(second) + " out of range");
  out->utc_seconds =
      days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
      hour * 3600 + minute * 60 + second - offset;
  out->hour = hour;
  out->minute = minute;
  return true;
}

Timestamp parse_timestamp_cell(const CsvCell& cell, const std::string& path) {
  if (trim(cell.text).empty())
    throw InputError(path, cell.line, cell.column, "missing timestamp (empty cell)");
  Timestamp t;
  std::string why;
  if (!parse_timestamp(cell.text, &t, &why))
    throw InputError(path, cell.line, cell.column,
                     "expected a timestamp like 2022-01-01 00:00:00+00:00, found " +
                         quote_cell(cell.text) + " (" + why + ")");
  return t;
}

}  // namespace eqpm
