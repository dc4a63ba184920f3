// Input loaders (host/io/csv.cpp, host/io/loaders.cpp): the real data files load with the
// counts their README states, and every kind of malformed input is refused with an
// error naming the file, the line and column and the reason (DESIGN.md section 9).
// Malformed inputs are made by editing the real files' text when the data folder is
// present, and from small hand-made files so the checks run without it too.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

using test::read_file;
using test::TempDir;

// Runs f and checks it throws an InputError whose message holds every one of `parts`
// (typically "name.csv:LINE:COL:" and a word of the reason).
::testing::AssertionResult input_error(const std::function<void()>& f,
                                       const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const InputError& e) {
    const std::string m = e.what();
    for (const auto& p : parts)
      if (m.find(p) == std::string::npos)
        return ::testing::AssertionFailure() << "message lacks \"" << p << "\": " << m;
    return ::testing::AssertionSuccess() << m;
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-InputError: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

#define EXPECT_INPUT_ERROR(stmt, ...) EXPECT_TRUE(input_error([&] { (void)(stmt); }, {__VA_ARGS__}))

std::string pos(const std::string& file, long line, long column) {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ":";
}
std::string pos(const std::string& file, long line) {
  return file + ":" + std::to_string(line) + ":";
}

// A file's text split into lines, each without its '\n' (the file ends with one).
struct Lines {
  std::vector<std::string> v;
  explicit Lines(const std::string& text) {
    std::string cur;
    for (char c : text) {
      if (c == '\n') {
        v.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) v.push_back(cur);
  }
  std::string& line(long n) { return v.at(static_cast<size_t>(n - 1)); }  // 1-based
  std::string join() const {
    std::string s;
    for (const auto& l : v) s += l + "\n";
    return s;
  }
};

// 1-based column where cell `i` (0-based) of an unquoted CSV line starts.
long cell_column(const std::string& line, int i) {
  size_t p = 0;
  for (int k = 0; k < i; ++k) p = line.find(',', p) + 1;
  return static_cast<long>(p) + 1;
}

// Replaces cell i of an unquoted CSV line.
std::string with_cell(const std::string& line, int i, const std::string& text) {
  const size_t b = static_cast<size_t>(cell_column(line, i) - 1);
  size_t e = line.find(',', b);
  if (e == std::string::npos) e = line.size();
  return line.substr(0, b) + text + line.substr(e);
}

std::string ci_path(const std::string& dir, const std::string& name) {
  return dir + "/carbon_intensity/" + name;
}

// ================================================================ CSV reader

TEST(CsvReader, QuotesCrlfBomAndPositions) {
  auto csv = CsvReader::from_text(
      "\xEF\xBB\xBF"
      "a,b,c\r\n1,\"x,\"\"y\"\"\",3\r\n\"multi\nline\",,\"\"\r\n",
      "t.csv");
  ASSERT_EQ(csv.header().size(), 3u);
  EXPECT_EQ(csv.header()[0].text, "a");
  EXPECT_EQ(csv.header()[2].column, 5);
  CsvRow row;
  ASSERT_TRUE(csv.next(&row));
  EXPECT_EQ(row.line, 2);
  EXPECT_EQ(row.cells[1].text, "x,\"y\"");
  EXPECT_TRUE(row.cells[1].quoted);
  EXPECT_EQ(row.cells[1].column, 3);
  EXPECT_EQ(row.cells[2].column, 13);
  ASSERT_TRUE(csv.next(&row));
  EXPECT_EQ(row.line, 3);
  EXPECT_EQ(row.cells[0].text, "multi\nline");
  EXPECT_EQ(row.cells[1].line, 4);
  EXPECT_EQ(row.cells[1].column, 7);
  EXPECT_EQ(row.cells[2].text, "");
  EXPECT_FALSE(csv.next(&row));
  EXPECT_EQ(csv.rows_read(), 2);
}

TEST(CsvReader, LastLineWithoutNewlineIsAcceptedWhenComplete) {
  auto csv = CsvReader::from_text("a,b\n1,2", "t.csv");
  CsvRow row;
  ASSERT_TRUE(csv.next(&row));
  EXPECT_EQ(row.cells[1].text, "2");
  EXPECT_FALSE(csv.next(&row));
}

TEST(CsvReader, TrailingBlankLinesAreIgnored) {
  auto csv = CsvReader::from_text("a,b\n1,2\n\n\r\n\n", "t.csv");
  CsvRow row;
  ASSERT_TRUE(csv.next(&row));
  EXPECT_FALSE(csv.next(&row));
  EXPECT_EQ(csv.rows_read(), 1);
}

TEST(CsvReader, MalformedInputs) {
  auto read_all = [](const std::string& text) {
    auto csv = CsvReader::from_text(text, "t.csv");
    CsvRow row;
    while (csv.next(&row)) {
    }
    csv.require_data();
  };
  EXPECT_INPUT_ERROR(read_all(""), "t.csv: empty file");
  EXPECT_INPUT_ERROR(read_all("a,b\n"), pos("t.csv", 1), "header only");
  EXPECT_INPUT_ERROR(read_all("a,,c\n1,2,3\n"), pos("t.csv", 1, 3), "empty column name");
  EXPECT_INPUT_ERROR(read_all("a,b,a\n1,2,3\n"), pos("t.csv", 1, 5), "duplicate column");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n3\n4,5\n"), pos("t.csv", 3, 2), "too few");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n3,4,5\n"), pos("t.csv", 3, 5), "too many");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n3"), pos("t.csv", 3, 2), "truncated last line");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n3\n"), pos("t.csv", 3, 2), "truncated last line");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n\n4,5\n"), pos("t.csv", 3, 1), "blank line");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\n\r\n\n4,5\n"), pos("t.csv", 3, 1), "blank line");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,\"2\n"), pos("t.csv", 2, 3), "unterminated");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,\"2\"x\n"), pos("t.csv", 2, 6), "closing double quote");
  EXPECT_INPUT_ERROR(read_all("a,b\n1,2\"\n"), pos("t.csv", 2, 4), "double quote");
  EXPECT_INPUT_ERROR(read_all("a,b\r1,2\n"), pos("t.csv", 1, 4), "carriage return");
  EXPECT_INPUT_ERROR(read_all("a,b\n1," + std::string(kMaxLineBytes + 10, '9') + "\n"),
                     pos("t.csv", 2), "longer than 1 MiB");
}

TEST(CsvReader, MissingFileAndDirectory) {
  TempDir tmp;
  EXPECT_INPUT_ERROR(CsvReader(tmp.file("nope.csv")), "nope.csv", "no such file");
  EXPECT_INPUT_ERROR(CsvReader(tmp.path().string()), "directory");
}

TEST(CsvCells, Numbers) {
  auto cell = [](const std::string& t) {
    CsvCell c;
    c.text = t;
    c.line = 7;
    c.column = 3;
    return c;
  };
  EXPECT_EQ(parse_number_cell(cell("1.5"), "f.csv", "x"), 1.5);
  EXPECT_EQ(parse_number_cell(cell(" +2e3 "), "f.csv", "x"), 2000.0);
  EXPECT_EQ(parse_number_cell(cell("-0.25"), "f.csv", "x"), -0.25);
  EXPECT_INPUT_ERROR(parse_number_cell(cell(""), "f.csv", "x"), pos("f.csv", 7, 3), "missing");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("abc"), "f.csv", "x"), pos("f.csv", 7, 3),
                     "expected a number");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("1.5x"), "f.csv", "x"), pos("f.csv", 7, 3),
                     "expected a number");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("+-1"), "f.csv", "x"), pos("f.csv", 7, 3),
                     "expected a number");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("0x10"), "f.csv", "x"), pos("f.csv", 7, 3),
                     "expected a number");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("NaN"), "f.csv", "x"), pos("f.csv", 7, 3), "NaN");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("nan"), "f.csv", "x"), pos("f.csv", 7, 3), "NaN");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("-inf"), "f.csv", "x"), pos("f.csv", 7, 3), "infinity");
  EXPECT_INPUT_ERROR(parse_number_cell(cell("1e999"), "f.csv", "x"), pos("f.csv", 7, 3), "range");
  EXPECT_EQ(parse_integer_cell(cell("3.0"), "f.csv", "k", 0, 10), 3);
  EXPECT_INPUT_ERROR(parse_integer_cell(cell("3.5"), "f.csv", "k", 0, 10), pos("f.csv", 7, 3),
                     "integer");
  EXPECT_INPUT_ERROR(parse_integer_cell(cell("11"), "f.csv", "k", 0, 10), pos("f.csv", 7, 3),
                     "range");
  // Hostile bytes are escaped in messages.
  EXPECT_EQ(quote_cell(std::string("a\x01'", 3)), "'a\\x01\\x27'");
}

TEST(CsvCells, ShortestFormatRoundTrips) {
  for (double v : {0.1, 1.0 / 3.0, 1e-300, 123456789.123, -0.0, 5e-324}) {
    const std::string s = format_number(v);
    CsvCell c;
    c.text = s;
    EXPECT_EQ(parse_number_cell(c, "f", "v"), v) << s;
  }
  for (float v : {0.1f, 1.0f / 3.0f, 1e-38f, 3.4e38f}) {
    CsvCell c;
    c.text = format_number(v);
    EXPECT_EQ(parse_float_cell(c, "f", "v"), v) << c.text;
  }
  EXPECT_EQ(format_number(0.1), "0.1");
  EXPECT_EQ(format_number(2.0), "2");
}

TEST(Timestamps, FormatsAndOffsets) {
  Timestamp a, b;
  std::string why;
  ASSERT_TRUE(parse_timestamp("2022-01-01 00:00:00+00:00", &a, &why)) << why;
  EXPECT_EQ(a.utc_seconds, 1640995200);
  EXPECT_EQ(a.hour, 0);
  ASSERT_TRUE(parse_timestamp("2022-01-01 00:00", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds);
  ASSERT_TRUE(parse_timestamp("2022-01-01T00:00:00Z", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds);
  ASSERT_TRUE(parse_timestamp("2022/01/01 00:00", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds);
  // The offset is honoured for ordering; the hour of day is the written one.
  ASSERT_TRUE(parse_timestamp("2022-01-01 05:00:00+05:00", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds);
  EXPECT_EQ(b.hour, 5);
  ASSERT_TRUE(parse_timestamp("2021-12-31 16:00:00-0800", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds);
  EXPECT_EQ(b.hour, 16);
  // The hour of day is the local hour: midnight at -08:00 is hour 0 (08:00 UTC).
  ASSERT_TRUE(parse_timestamp("2022-01-01 00:00:00-08:00", &b, &why)) << why;
  EXPECT_EQ(b.utc_seconds, a.utc_seconds + 8 * 3600);
  EXPECT_EQ(b.hour, 0);
  ASSERT_TRUE(parse_timestamp("2024-02-29 23:59:59", &b, &why)) << why;
  for (const char* bad :
       {"", "2022-01-01", "2022-13-01 00:00", "2022-02-29 00:00", "2022-01-01 24:00",
        "2022-01-01 00:60", "2022-01-01 00:00+25:00", "2022-01/01 00:00", "2022-01-01 00:00 extra",
        "22-01-01 00:00", "2022-01-01 00:00:00.5"}) {
    EXPECT_FALSE(parse_timestamp(bad, &b, &why)) << bad;
  }
}

// ================================================================ series

TEST(SeriesCsv, RealCarbonIntensityFiles) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  SeriesLoadInfo info;
  const Series ciso = load_series_csv(ci_path(dir, "CISO_2022.csv"), "avg_CI", 3, &info);
  EXPECT_EQ(info.rows, 8760);
  EXPECT_EQ(info.filled, 3);
  EXPECT_EQ(ciso.filled, 3);
  EXPECT_NE(info.note.find("3 hours"), std::string::npos) << info.note;
  ASSERT_EQ(ciso.values.size(), 8760u);
  ASSERT_EQ(ciso.hour_of_day.size(), 8760u);
  EXPECT_EQ(ciso.source, ci_path(dir, "CISO_2022.csv"));
  EXPECT_DOUBLE_EQ(ciso.values[0], 222.29592090536002);
  for (size_t t = 0; t < ciso.values.size(); ++t) {
    ASSERT_GT(ciso.values[t], 0.0) << t;
    ASSERT_EQ(ciso.hour_of_day[t], static_cast<int>(t % 24)) << t;
  }
  // Line 108 (row index 106) is empty in the file: the mean of its neighbours.
  EXPECT_DOUBLE_EQ(ciso.values[106], 0.5 * (ciso.values[105] + ciso.values[107]));

  // PJM has 23 empty hours, 22 of them in one run from line 1713.
  const Series pjm = load_series_csv(ci_path(dir, "PJM_2022.csv"), "avg_CI", 24, &info);
  EXPECT_EQ(info.rows, 8760);
  EXPECT_EQ(pjm.filled, 23);
  EXPECT_EQ(info.filled, 23);
  EXPECT_EQ(pjm.values.size(), 8760u);
  EXPECT_INPUT_ERROR(load_series_csv(ci_path(dir, "PJM_2022.csv"), "avg_CI", 21),
                     "PJM_2022.csv:1713:", "22 hours", "max_gap = 21");

  for (const char* name : {"ERCO_2022.csv", "BPAT_2022.csv"}) {
    const Series s = load_series_csv(ci_path(dir, name), "avg_CI", 3, &info);
    EXPECT_EQ(info.rows, 8760) << name;
    EXPECT_EQ(s.filled, 0) << name;
    EXPECT_TRUE(info.note.empty()) << name;
  }
  // Another column by name (it holds zeros at night, so positivity must refuse it).
  EXPECT_INPUT_ERROR(load_series_csv(ci_path(dir, "CISO_2022.csv"), "SUN", 3),
                     "CISO_2022.csv:3:", "not positive");
}

// Every malformed copy of CISO_2022.csv; each names the file, line and column.
TEST(SeriesCsv, MalformedCopiesOfRealFile) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  const std::string text = read_file(ci_path(dir, "CISO_2022.csv"));
  TempDir tmp;
  const std::string f = "CISO_2022.csv";
  auto edited = [&](const std::function<void(Lines&)>& edit) {
    Lines l(text);
    edit(l);
    return tmp.write(f, l.join());
  };
  auto load = [&](const std::string& p, int max_gap = 3) {
    return load_series_csv(p, "avg_CI", max_gap);
  };
  Lines orig(text);
  const long vcol = cell_column(orig.line(101), 9);

  // A non-numeric cell, a NaN, an infinity, a negative and a zero value.
  for (const auto& bad_word :
       std::vector<std::pair<std::string, std::string>>{{"abc", "expected a number"},
                                                        {"12.5kg", "expected a number"},
                                                        {"NaN", "NaN"},
                                                        {"inf", "infinity"},
                                                        {"-3.5", "not positive"},
                                                        {"0", "not positive"}}) {
    const std::string& bad = bad_word.first;
    const std::string& word = bad_word.second;
    const std::string p = edited([&](Lines& l) { l.line(101) = with_cell(l.line(101), 9, bad); });
    EXPECT_INPUT_ERROR(load(p), pos(f, 101, vcol), word, "avg_CI");
  }
  // A duplicated timestamp.
  std::string p =
      edited([](Lines& l) { l.line(201) = with_cell(l.line(201), 0, l.line(200).substr(0, 25)); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 201, 1), "duplicate", "line 200");
  // Out of order: two rows swapped (the first one reads as a one-hour jump, the second
  // goes back in time).
  p = edited([](Lines& l) { std::swap(l.line(300), l.line(301)); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 301, 1), "out-of-order", "line 300");
  // Not hourly.
  p = edited([](Lines& l) { l.line(50).replace(14, 2, "30"); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 50, 1), "irregular step", "90 minutes after line 49");
  // A timestamp that is not one.
  p = edited([](Lines& l) { l.line(60).replace(5, 2, "13"); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 60, 1), "timestamp", "month 13");
  // A gap longer than max_gap: five rows deleted leave a jump of six hours.
  p = edited([](Lines& l) { l.v.erase(l.v.begin() + 499, l.v.begin() + 504); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 500, 1), "gap of 5 hours", "max_gap = 3");
  EXPECT_EQ(load(p, 5).filled, 3 + 5);
  // The file's own one-hour gap at line 108 with max_gap 0.
  EXPECT_INPUT_ERROR(load(ci_path(dir, f), 0),
                     pos(ci_path(dir, f), 108, cell_column(orig.line(108), 9)), "gap of 1 hour",
                     "max_gap = 0");
  // Missing hours at the very start and end cannot be interpolated.
  p = edited([](Lines& l) { l.line(2) = l.line(2).substr(0, 25) + ",,,,,,,,,"; });
  EXPECT_INPUT_ERROR(load(p), pos(f, 2, 35), "start");
  p = edited([](Lines& l) { l.line(8761) = l.line(8761).substr(0, 25) + ",,,,,,,,,"; });
  EXPECT_INPUT_ERROR(load(p), pos(f, 8761, 35), "end");
  // An empty file, a header only, a truncated last line, a short row in the middle.
  EXPECT_INPUT_ERROR(load(tmp.write(f, "")), f + ": empty file");
  EXPECT_INPUT_ERROR(load(tmp.write(f, orig.line(1) + "\n")), pos(f, 1), "header only");
  p = tmp.write(f, text.substr(0, text.size() - 40));
  const Lines cut(read_file(p));
  EXPECT_INPUT_ERROR(load(p), pos(f, 8761, static_cast<long>(cut.v.back().size()) + 1),
                     "truncated last line");
  p = edited([](Lines& l) { l.line(4000) = l.line(4000).substr(0, l.line(4000).rfind(',')); });
  EXPECT_INPUT_ERROR(load(p), pos(f, 4000), "expected 10 cells");
  // An unknown column.
  EXPECT_INPUT_ERROR(load_series_csv(ci_path(dir, f), "avg_ci", 3), pos(ci_path(dir, f), 1, 1),
                     "no column 'avg_ci'", "available columns: timestamp, WND", "avg_CI");
  // The timestamp column is not a value column.
  EXPECT_INPUT_ERROR(load_series_csv(ci_path(dir, f), "timestamp", 3), pos(ci_path(dir, f), 1, 1),
                     "timestamps");
}

TEST(SeriesCsv, HandMadeFilesAndInterpolation) {
  TempDir tmp;
  const std::string f = "s.csv";
  // A gap of two empty cells and a one-hour jump; CRLF line ends; quoted value.
  const std::string p =
      tmp.write(f,
                "time,x\r\n2022-01-01 00:00,10\r\n2022-01-01 01:00,\r\n2022-01-01 02:00,\r\n"
                "2022-01-01 03:00,\"40\"\r\n2022-01-01 05:00,60\r\n");
  SeriesLoadInfo info;
  const Series s = load_series_csv(p, "x", 2, &info);
  ASSERT_EQ(s.values.size(), 6u);
  EXPECT_EQ(s.values, (std::vector<double>{10, 20, 30, 40, 50, 60}));
  EXPECT_EQ(s.hour_of_day, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(info.rows, 5);
  EXPECT_EQ(info.filled, 3);
  EXPECT_EQ(s.filled, 3);
  EXPECT_NE(info.note.find("2 gaps"), std::string::npos) << info.note;
  EXPECT_INPUT_ERROR(load_series_csv(p, "x", 1), pos(f, 3, 18), "gap of 2 hours");

  // Offsets are honoured for the hourly check; hours of day are the written ones.
  const std::string q = tmp.write(
      "o.csv", "t,v\n2022-01-01T01:00:00+01:00,1\n2022-01-01T01:00:00Z,2\n2022/01/01 02:00,3\n");
  const Series o = load_series_csv(q, "v", 0);
  EXPECT_EQ(o.values, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(o.hour_of_day, (std::vector<int>{1, 1, 2}));
  // A series at -08:00 starting at local midnight: hours of day 0, 1, 2, filled gap
  // included, although the UTC hours are 8, 9, 10.
  const Series w = load_series_csv(
      tmp.write("w.csv", "t,v\n2022-01-01 00:00:00-08:00,1\n2022-01-01 02:00:00-08:00,3\n"), "v",
      1);
  EXPECT_EQ(w.values, (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(w.hour_of_day, (std::vector<int>{0, 1, 2}));

  auto bad = [&](const std::string& body) { return tmp.write(f, "time,x\n" + body); };
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n,2\n"), "x", 3), pos(f, 3, 1),
                     "missing timestamp");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 00:00,2\n"), "x", 3),
                     pos(f, 3, 1), "duplicate");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 01:00,1\n2022-01-01 00:00,2\n"), "x", 3),
                     pos(f, 3, 1), "out-of-order");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 00:45,2\n"), "x", 3),
                     pos(f, 3, 1), "irregular");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00,x1\n"), "x", 3),
                     pos(f, 3, 18), "expected a number");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00,nan\n"), "x", 3),
                     pos(f, 3, 18), "NaN");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00,-1\n"), "x", 3),
                     pos(f, 3, 18), "not positive");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00,0\n"), "x", 3),
                     pos(f, 3, 18), "not positive");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,\n2022-01-01 01:00,1\n"), "x", 3),
                     pos(f, 2, 18), "start");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00,\n"), "x", 3),
                     pos(f, 3, 18), "end");
  // A jump of thousands of years is refused before it can allocate, whatever max_gap.
  EXPECT_INPUT_ERROR(
      load_series_csv(bad("2022-01-01 00:00,1\n9999-01-01 00:00,1\n"), "x", 2'000'000'000),
      pos(f, 3, 1), "longer than");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n9999-01-01 00:00,1\n"), "x", 3),
                     pos(f, 3, 1), "gap of 69");
  EXPECT_INPUT_ERROR(load_series_csv(bad(""), "x", 3), pos(f, 1), "header only");
  EXPECT_INPUT_ERROR(load_series_csv(tmp.write(f, ""), "x", 3), "empty file");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n2022-01-01 01:00"), "x", 3),
                     pos(f, 3, 17), "truncated last line");
  EXPECT_INPUT_ERROR(load_series_csv(bad("2022-01-01 00:00,1\n"), "y", 3), pos(f, 1, 1),
                     "no column 'y'", "time, x");
  EXPECT_THROW(load_series_csv(bad("2022-01-01 00:00,1\n"), "x", -1), Error);
}

// ================================================================ demand profile

TEST(DemandProfile, RealAzureTrace) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  const std::vector<float> d = load_demand_profile(dir + "/azure_total_demand.csv");
  ASSERT_EQ(d.size(), 8640u);
  double sum = 0;
  for (float v : d) {
    ASSERT_GT(v, 0.0f);
    sum += v;
  }
  EXPECT_NEAR(sum / 8640.0, 1.0, 1e-6);
  // Half-hours are summed in pairs: the first two rows are equal, the first hour is twice that.
  const std::vector<float> again = load_demand_profile(dir + "/azure_total_demand.csv");
  EXPECT_EQ(d, again);
}

TEST(DemandProfile, MalformedCopiesOfAzureTrace) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  const std::string text = read_file(dir + "/azure_total_demand.csv");
  TempDir tmp;
  const std::string f = "azure_total_demand.csv";
  auto edited = [&](const std::function<void(Lines&)>& edit) {
    Lines l(text);  // lines keep their '\r'
    edit(l);
    return tmp.write(f, l.join());
  };
  Lines orig(text);
  const long vcol = cell_column(orig.line(1001), 1);
  for (const auto& bad_word :
       std::vector<std::pair<std::string, std::string>>{{"lots", "expected a number"},
                                                        {"NaN", "NaN"},
                                                        {"-5\r", "negative"},
                                                        {"\r", "missing"}}) {
    const std::string& bad = bad_word.first;
    const std::string& word = bad_word.second;
    const std::string p = edited([&](Lines& l) { l.line(1001) = with_cell(l.line(1001), 1, bad); });
    EXPECT_INPUT_ERROR(load_demand_profile(p), pos(f, 1001, vcol), word);
  }
  // Two zero half-hours of one pair make a zero hour (lines 1002 and 1003 are data rows
  // 1000 and 1001, the pair of hour 500).
  std::string p = edited([](Lines& l) {
    l.line(1002) = with_cell(l.line(1002), 1, "0\r");
    l.line(1003) = with_cell(l.line(1003), 1, "0\r");
  });
  EXPECT_INPUT_ERROR(load_demand_profile(p), pos(f, 1002, vcol), "hour 500", "zero");
  p = edited([](Lines& l) { l.line(501) = with_cell(l.line(501), 0, l.line(500).substr(0, 16)); });
  EXPECT_INPUT_ERROR(load_demand_profile(p), pos(f, 501, 1), "duplicate");
  p = edited([](Lines& l) { l.v.erase(l.v.begin() + 700); });
  EXPECT_INPUT_ERROR(load_demand_profile(p), pos(f, 701, 1), "irregular step",
                     "expected exactly 30");
  p = edited([](Lines& l) { std::swap(l.line(800), l.line(801)); });
  EXPECT_INPUT_ERROR(load_demand_profile(p), pos(f, 800, 1), "irregular step");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, text.substr(0, text.rfind(',')))),
                     pos(f, 17281, 17), "truncated last line");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, orig.line(1) + "\n")), pos(f, 1),
                     "header only");
}

TEST(DemandProfile, HandMadeTraces) {
  TempDir tmp;
  const std::string f = "d.csv";
  // Half-hourly, five rows: two hours (1+3, 2+2), the unpaired last half-hour dropped.
  std::vector<float> d = load_demand_profile(
      tmp.write(f,
                "Time,Demand\n2019-01-01 11:30,1\n2019-01-01 12:00,3\n2019-01-01 12:30,2\n"
                "2019-01-01 13:00,2\n2019-01-01 13:30,100\n"));
  EXPECT_EQ(d, (std::vector<float>{1.0f, 1.0f}));
  // Hourly: normalised to mean 1.
  d = load_demand_profile(tmp.write(f, "time,demand\n2019-01-01 00:00,1\n2019-01-01 01:00,3\n"));
  EXPECT_EQ(d, (std::vector<float>{0.5f, 1.5f}));

  auto bad = [&](const std::string& body) { return tmp.write(f, "Time,Demand\n" + body); };
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 00:15,1\n")),
                     pos(f, 3, 1), "15 minutes", "30 or 60");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 00:30,1\n"
                                             "2019-01-01 01:30,1\n")),
                     pos(f, 4, 1), "irregular step");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 00:00,1\n")),
                     pos(f, 3, 1), "duplicate");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 01:00,1\n2019-01-01 00:00,1\n")),
                     pos(f, 3, 1), "out-of-order");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 01:00,-1\n")),
                     pos(f, 3, 18), "negative");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 01:00,inf\n")),
                     pos(f, 3, 18), "infinity");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n2019-01-01 01:00,0\n")),
                     pos(f, 3, 18), "zero");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,0\n2019-01-01 01:00,0\n")), f + ":",
                     "mean");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("2019-01-01 00:00,1\n")), pos(f, 2), "two");
  EXPECT_INPUT_ERROR(load_demand_profile(bad("")), pos(f, 1), "header only");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "Time,Load\n2019-01-01 00:00,1\n")),
                     pos(f, 1, 1), "Demand", "available columns: Time, Load");
}

TEST(DemandProfile, OneColumnFormatRoundTrip) {
  TempDir tmp;
  const std::vector<float> profile{0.25f, 1.0f / 3.0f, 1.75f, 0.1f, 1.5816f};
  std::ostringstream out;
  write_demand_profile_csv(profile, out);
  EXPECT_EQ(out.str().substr(0, 7), "demand\n");
  const std::string p = tmp.write("demand_profile.csv", out.str());
  EXPECT_EQ(load_demand_profile(p), profile);  // bit for bit, not renormalised
  std::ostringstream again;
  write_demand_profile_csv(load_demand_profile(p), again);
  EXPECT_EQ(again.str(), out.str());

  const std::string f = "demand_profile.csv";
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "demand\n1\n0\n")), pos(f, 3, 1),
                     "not positive");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "demand\n1\n-2\n")), pos(f, 3, 1),
                     "not positive");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "demand\n1\n\n2\n")), pos(f, 3, 1),
                     "missing");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "demand\n1\nNaN\n")), pos(f, 3, 1), "NaN");
  EXPECT_INPUT_ERROR(load_demand_profile(tmp.write(f, "demand\n")), pos(f, 1), "header only");
}

// ================================================================ EV sessions

constexpr const char* kEvHeader =
    "session_id,spaceID,start_time,done_charge,stationID,siteID,clusterID,end_time,total_power\n";

std::string ev_row(const std::string& id, const std::string& start, const std::string& done,
                   const std::string& kwh) {
  return id + ",CA-1," + start + "," + done + ",2-39,0002,0039,2018/04/25 23:00," + kwh + "\n";
}

TEST(EvSessions, RealCaltechFile) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  const std::string path = dir + "/caltech_ev_sessions.csv";
  EvSessionStats st;
  const std::vector<Agent> all = load_ev_sessions(path, 12, 0, 1, &st);
  EXPECT_EQ(st.total, 31424);
  EXPECT_EQ(st.kept, 9660);
  EXPECT_EQ(static_cast<long>(all.size()), st.kept);
  EXPECT_EQ(st.total,
            st.kept + st.skipped_unparseable + st.skipped_inconsistent + st.skipped_duration);
  EXPECT_EQ(st.skipped_unparseable, 2055);  // rows with an empty done_charge
  double energy = 0;
  for (const Agent& a : all) {
    ASSERT_EQ(a.family, Family::ev_charging);
    ASSERT_GE(a.k, 3);
    ASSERT_LE(a.k, 12);
    ASSERT_EQ(a.window_start, 0);
    ASSERT_EQ(a.window_end, 12);
    ASSERT_GT(a.energy, 0.0);
    ASSERT_EQ(a.weight, 1.0);
    ASSERT_EQ(check_agent(a, 12), "");
    energy += a.energy * a.k;
  }
  EXPECT_GT(energy / static_cast<double>(all.size()), 1.0);  // kWh per session: plausible

  // A seeded sample: deterministic, in file order, a subset.
  const std::vector<Agent> s1 = load_ev_sessions(path, 12, 70, 5, &st);
  const std::vector<Agent> s2 = load_ev_sessions(path, 12, 70, 5, nullptr);
  const std::vector<Agent> s3 = load_ev_sessions(path, 12, 70, 6, nullptr);
  ASSERT_EQ(s1.size(), 70u);
  EXPECT_EQ(st.kept, 9660);
  auto same = [](const std::vector<Agent>& a, const std::vector<Agent>& b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
      if (a[i].k != b[i].k || a[i].energy != b[i].energy) return false;
    return true;
  };
  EXPECT_TRUE(same(s1, s2));
  EXPECT_FALSE(same(s1, s3));
  // A short horizon clamps k.
  for (const Agent& a : load_ev_sessions(path, 4, 200, 1, nullptr)) {
    ASSERT_GE(a.k, 3);
    ASSERT_LE(a.k, 4);
    ASSERT_EQ(a.window_end, 4);
  }
}

TEST(EvSessions, MalformedCopiesOfRealFile) {
  EQPM_REQUIRE_SHARED_DATA(dir);
  const std::string text = read_file(dir + "/caltech_ev_sessions.csv");
  TempDir tmp;
  const std::string f = "caltech_ev_sessions.csv";
  Lines l(text);
  // A row with a cell missing is structural damage, not a skipped session.
  const std::string good = l.line(1001);
  l.line(1001) = good.substr(0, good.rfind(','));
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, l.join()), 12, 0, 1),
                     pos(f, 1001, static_cast<long>(l.line(1001).size()) + 1), "expected 9 cells");
  l.line(1001) = good;
  // A bad start time is skipped and counted.
  EvSessionStats base, st;
  load_ev_sessions(dir + "/caltech_ev_sessions.csv", 12, 0, 1, &base);
  const std::string row2 = l.line(2);  // 2018/04/25 04:08 -> 06:21: 2.2 h, a duration skip
  l.line(2) = with_cell(row2, 2, "2018/04/25 99:08");
  load_ev_sessions(tmp.write(f, l.join()), 12, 0, 1, &st);
  EXPECT_EQ(st.skipped_unparseable, base.skipped_unparseable + 1);
  EXPECT_EQ(st.skipped_duration, base.skipped_duration - 1);
  // A renamed column.
  l.line(1) = with_cell(l.line(1), 3, "done");
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, l.join()), 12, 0, 1), pos(f, 1, 1),
                     "no column 'done_charge'");
  // Truncated last line.
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, text.substr(0, text.size() - 30)), 12, 0, 1),
                     pos(f, 31425), "truncated last line");
}

TEST(EvSessions, HandMadeFileCountsEverySkip) {
  TempDir tmp;
  const std::string f = "ev.csv";
  const std::string p = tmp.write(
      f, std::string(kEvHeader) +
             ev_row("a", "2018/04/25 04:00", "2018/04/25 07:00", "6") +    // 3 h: k 3
             ev_row("b", "2018/04/25 04:00", "2018/04/25 16:00", "24") +   // 12 h: k 12
             ev_row("c", "2018/04/25 04:00", "2018/04/25 09:59", "10") +   // 5.98 h: k 5
             ev_row("d", "2018/04/25 04:00", "2018/04/25 06:59", "6") +    // < 3 h
             ev_row("e", "2018/04/25 04:00", "2018/04/25 16:01", "6") +    // > 12 h
             ev_row("f", "2018/04/25 04:00", "2018/04/25 03:00", "6") +    // done before start
             ev_row("g", "2018/04/25 04:00", "", "6") +                    // no done_charge
             ev_row("h", "garbage", "2018/04/25 08:00", "6") +             // bad start
             ev_row("i", "2018/04/25 04:00", "2018/04/25 08:00", "0") +    // zero energy
             ev_row("j", "2018/04/25 04:00", "2018/04/25 08:00", "-1") +   // negative energy
             ev_row("k", "2018/04/25 04:00", "2018/04/25 08:00", "NaN") +  // NaN energy
             ev_row("l", "2018/04/25 04:00", "2018/04/25 08:00", "") +     // no energy
             ev_row("m", "2018-04-25T04:00:00Z", "2018-04-25T10:00:00+02:00", "5"));  // 4 h
  EvSessionStats st;
  const std::vector<Agent> a = load_ev_sessions(p, 12, 0, 1, &st);
  EXPECT_EQ(st.total, 13);
  EXPECT_EQ(st.kept, 4);
  EXPECT_EQ(st.skipped_duration, 2);
  EXPECT_EQ(st.skipped_inconsistent, 1);
  EXPECT_EQ(st.skipped_unparseable, 6);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].k, 3);
  EXPECT_DOUBLE_EQ(a[0].energy, 2.0);
  EXPECT_EQ(a[1].k, 12);
  EXPECT_DOUBLE_EQ(a[1].energy, 2.0);
  EXPECT_EQ(a[2].k, 5);
  EXPECT_DOUBLE_EQ(a[2].energy, 2.0);
  EXPECT_EQ(a[3].k, 4);
  EXPECT_DOUBLE_EQ(a[3].energy, 1.25);
  // k is clamped to the horizon and the window is the whole horizon.
  const std::vector<Agent> h6 = load_ev_sessions(p, 6, 0, 1, nullptr);
  EXPECT_EQ(h6[1].k, 6);
  EXPECT_DOUBLE_EQ(h6[1].energy, 4.0);
  EXPECT_EQ(h6[1].window_end, 6);
  // Sampling: 2 of 4, in file order, deterministic; sample >= kept returns all.
  const std::vector<Agent> s = load_ev_sessions(p, 12, 2, 9, &st);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(st.kept, 4);
  std::vector<int> ks;
  for (const Agent& x : s) ks.push_back(x.k);
  std::vector<int> order{3, 12, 5, 4};
  EXPECT_LT(std::find(order.begin(), order.end(), ks[0]),
            std::find(order.begin(), order.end(), ks[1]));
  EXPECT_EQ(load_ev_sessions(p, 12, 10, 9, nullptr).size(), 4u);

  EXPECT_INPUT_ERROR(
      load_ev_sessions(tmp.write(f, "session_id,start_time,done_charge\nx,a,b\n"), 12, 0, 1),
      pos(f, 1, 1), "no column 'total_power'");
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, kEvHeader), 12, 0, 1), pos(f, 1), "header only");
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, ""), 12, 0, 1), "empty file");
  EXPECT_INPUT_ERROR(
      load_ev_sessions(tmp.write(f, std::string(kEvHeader) +
                                        ev_row("d", "2018/04/25 04:00", "2018/04/25 05:00", "6")),
                       12, 0, 1),
      f + ":", "no session");
  EXPECT_INPUT_ERROR(load_ev_sessions(tmp.write(f, std::string(kEvHeader) + "a,b,c\n"), 12, 0, 1),
                     pos(f, 2, 6), "expected 9 cells");
  EXPECT_THROW(load_ev_sessions(p, 0, 0, 1, nullptr), Error);
  EXPECT_THROW(load_ev_sessions(p, 12, -1, 1, nullptr), Error);
}

// ================================================================ population.csv

constexpr const char* kPopHeader =
    "agent,family,weight,lambda,scale,phase,hour,k,window_start,window_end,energy,cu,co\n";

Population mixed_population() {
  Population p;
  Agent dc;
  dc.family = Family::datacenter;
  dc.lambda = 0.1;
  dc.scale = 1.0 / 3.0;
  dc.phase = 7;
  dc.hour = 2;
  p.agents.push_back(dc);
  Agent ev;
  ev.family = Family::ev_charging;
  ev.weight = 2.5;
  ev.k = 3;
  ev.window_start = 1;
  ev.window_end = 9;
  ev.energy = 1e-30;
  p.agents.push_back(ev);
  Agent inv;
  inv.family = Family::inventory;
  inv.weight = 123456789.123;
  inv.cu = 0.0;
  inv.co = 4.000000000000001;
  inv.hour = 11;
  p.agents.push_back(inv);
  dc.lambda = 2e10;
  dc.weight = 0.30000000000000004;
  p.agents.push_back(dc);
  return p;
}

TEST(PopulationCsv, RoundTripIsByteIdentical) {
  TempDir tmp;
  const Population pop = mixed_population();
  std::ostringstream first;
  write_population_csv(pop, first);
  EXPECT_EQ(first.str(),
            std::string(kPopHeader) +
                "0,datacenter,1,0.1,0.3333333333333333,7,2,,,,,,\n"
                "1,ev_charging,2.5,,,,,3,1,9,1e-30,,\n"
                "2,inventory,123456789.123,,,,11,,,,,0,4.000000000000001\n"
                "3,datacenter,0.30000000000000004,2e+10,0.3333333333333333,7,2,,,,,,\n");
  const std::string p = tmp.write("population.csv", first.str());
  const Population back = read_population_csv(p, 12);
  ASSERT_EQ(back.size(), pop.size());
  for (long n = 0; n < pop.size(); ++n) {
    const Agent& a = pop.agents[static_cast<size_t>(n)];
    const Agent& b = back.agents[static_cast<size_t>(n)];
    EXPECT_EQ(a.family, b.family);
    EXPECT_EQ(a.weight, b.weight);
    EXPECT_EQ(a.lambda, b.lambda);
    EXPECT_EQ(a.scale, b.scale);
    EXPECT_EQ(a.phase, b.phase);
    EXPECT_EQ(a.hour, b.hour);
    EXPECT_EQ(a.k, b.k);
    EXPECT_EQ(a.window_start, b.window_start);
    EXPECT_EQ(a.window_end, b.window_end);
    EXPECT_EQ(a.energy, b.energy);
    EXPECT_EQ(a.cu, b.cu);
    EXPECT_EQ(a.co, b.co);
  }
  std::ostringstream second;
  write_population_csv(back, second);
  EXPECT_EQ(second.str(), first.str());
}

// The optional group column: labels in order of first appearance, written back (quoted
// where needed) only when present; without it every agent's group is its family.
TEST(PopulationCsv, GroupColumn) {
  TempDir tmp;
  const Population plain = mixed_population();
  EXPECT_EQ(plain.groups(), (std::vector<int>{0, 1, 2, 0}));
  EXPECT_EQ(plain.group_count(), 3);
  EXPECT_EQ(plain.group_name(1), "ev_charging");
  const std::string text = std::string("group,") + kPopHeader;
  const Population p = read_population_csv(
      tmp.write("pop.csv", text.substr(0, text.size() - 1) + "\n"
                           "north,0,ev_charging,,,,,,3,0,12,1.5,,\n"
                           "\"south, coast\",1,inventory,2,,,,0,,,,,1,2\n"
                           "north,2,inventory,,,,,0,,,,,1,2\n"),
      12);
  EXPECT_EQ(p.group_names, (std::vector<std::string>{"north", "south, coast"}));
  EXPECT_EQ(p.groups(), (std::vector<int>{0, 1, 0}));
  EXPECT_EQ(p.group_count(), 2);
  std::ostringstream out;
  write_population_csv(p, out);
  const Population back = read_population_csv(tmp.write("back.csv", out.str()), 12);
  EXPECT_EQ(back.group_names, p.group_names);
  EXPECT_EQ(back.groups(), p.groups());
  EXPECT_NE(out.str().find(",\"south, coast\"\n"), std::string::npos) << out.str();
  // Every agent needs a group once the column is there.
  try {
    read_population_csv(tmp.write("bad.csv", text.substr(0, text.size() - 1) + "\n"
                                             ",0,ev_charging,,,,,,3,0,12,1.5,,\n"),
                        12);
    ADD_FAILURE() << "an empty group was accepted";
  } catch (const InputError& e) {
    EXPECT_EQ(e.line(), 2);
    EXPECT_EQ(e.column(), 1);
    EXPECT_NE(std::string(e.what()).find("missing group"), std::string::npos) << e.what();
  }
}

TEST(PopulationCsv, LenientButExactWhereItMatters) {
  TempDir tmp;
  // Empty weight means 1; integers written as floats (pandas) are accepted; CRLF too.
  const Population p = read_population_csv(
      tmp.write("pop.csv", std::string(kPopHeader) + "0,ev_charging,,,,,,3.0,0,12,1.5,,\r\n"
                                                     "1,inventory,\"2\",,,,0,,,,,1,2\r\n"),
      12);
  ASSERT_EQ(p.size(), 2);
  EXPECT_EQ(p.agents[0].weight, 1.0);
  EXPECT_EQ(p.agents[0].k, 3);
  EXPECT_EQ(p.agents[1].weight, 2.0);
}

TEST(PopulationCsv, EveryBadRowIsAnErrorAtItsCell) {
  TempDir tmp;
  const std::string f = "population.csv";
  const std::string dc0 = "0,datacenter,1,2,1,0,0,,,,,,";
  auto load_rows = [&](const std::vector<std::string>& rows) {
    std::string text = kPopHeader;
    for (const auto& r : rows) text += r + "\n";
    return read_population_csv(tmp.write(f, text), 12);
  };
  // Each bad row is the second agent (line 3); the expected column is that of the cell.
  struct Case {
    std::string row;
    int cell;  // 0-based cell whose column the error names
    std::string word;
  };
  const std::vector<Case> cases = {
      {"1,robot,1,2,1,0,0,,,,,,", 1, "unknown family"},
      {"1,,1,2,1,0,0,,,,,,", 1, "missing family"},
      {"1,ev_charging,1,,,,,7,2,6,1,,", 7, "exceeds the window width 4"},
      {"1,ev_charging,1,,,,,13,0,12,1,,", 7, "k must lie in"},
      {"1,ev_charging,1,,,,,2,5,13,1,,", 8, "window"},
      {"1,datacenter,1,0,1,0,0,,,,,,", 3, "lambda must be > 0"},
      {"1,datacenter,1,-2,1,0,0,,,,,,", 3, "lambda must be > 0"},
      {"1,datacenter,1,2,0,0,0,,,,,,", 4, "scale must be > 0"},
      {"1,datacenter,1,2,1,0,12,,,,,,", 6, "hour must lie in"},
      {"1,inventory,1,,,,0,,,,,-0.5,1", 11, "cu must be >= 0"},
      {"1,inventory,1,,,,0,,,,,0.5,-1", 12, "co must be >= 0"},
      {"1,ev_charging,1,,,,,2.5,0,12,1,,", 7, "expected an integer"},
      {"1,datacenter,1,2,1,0.5,0,,,,,,", 5, "expected an integer"},
      {"1,ev_charging,1,,,,,2,0,12,0,,", 10, "energy must be > 0"},
      {"1,ev_charging,1,2,,,,2,0,12,1,,", 3, "lambda does not apply to a ev_charging"},
      {"1,datacenter,1,2,1,0,0,,,,,1,", 11, "cu does not apply to a datacenter"},
      {"1,inventory,1,,,,0,3,,,,1,1", 7, "k does not apply"},
      {"1,datacenter,1,,1,0,0,,,,,,", 3, "missing lambda"},
      {"1,inventory,1,,,,,,,,,1,1", 6, "missing hour"},
      {"0,datacenter,1,2,1,0,0,,,,,,", 0, "duplicate agent id '0' (also on line 2)"},
      {",datacenter,1,2,1,0,0,,,,,,", 0, "missing agent id"},
      {"1,datacenter,1,2,1,-1,0,,,,,,", 5, "phase must be >= 0"},
      {"1,datacenter,0,2,1,0,0,,,,,,", 2, "weight must be a positive"},
      {"1,datacenter,-1,2,1,0,0,,,,,,", 2, "weight must be a positive"},
      {"1,datacenter,nan,2,1,0,0,,,,,,", 2, "NaN"},
      {"1,datacenter,1,2,1e400,0,0,,,,,,", 4, "range"},
      {"1,datacenter,1,2,1,99999999999,0,,,,,,", 5, "out of range"},
  };
  for (const Case& c : cases) {
    EXPECT_INPUT_ERROR(load_rows({dc0, c.row}), pos(f, 3, cell_column(c.row, c.cell)), c.word)
        << c.row;
  }
  // Too few cells, too many cells, a truncated last line.
  EXPECT_INPUT_ERROR(load_rows({dc0, "1,datacenter,1,2,1,0,0", "2,datacenter,1,2,1,0,0,,,,,,"}),
                     pos(f, 3, 23), "too few");
  const std::string extra = "1,datacenter,1,2,1,0,0,,,,,,,";
  EXPECT_INPUT_ERROR(load_rows({dc0, extra}), pos(f, 3, cell_column(extra, 13)), "too many");
  EXPECT_INPUT_ERROR(
      read_population_csv(tmp.write(f, std::string(kPopHeader) + dc0 + "\n1,inv"), 12),
      pos(f, 3, 6), "truncated last line");
  // Header problems, an empty population and an empty file.
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, "agent,family,w\n0,datacenter,1\n"), 12),
                     pos(f, 1, 14), "unknown column 'w'");
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, "agent,family\n0,datacenter\n"), 12),
                     pos(f, 2, 3), "a datacenter agent needs a lambda value, but the header has no column 'lambda'");
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, "family,weight\ndatacenter,1\n"), 12),
                     pos(f, 1, 1), "no column 'agent'");
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, "agent,weight\n0,1\n"), 12),
                     pos(f, 1, 1), "no column 'family'");
  const std::string head = std::string(kPopHeader).substr(0, std::string(kPopHeader).size() - 1);
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, head + ",extra\n"), 12),
                     pos(f, 1, static_cast<long>(head.size()) + 2), "unknown column 'extra'");
  EXPECT_INPUT_ERROR(load_rows({}), pos(f, 1), "header only");
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, ""), 12), "empty file");
  // The same row is fine under a longer horizon: check_agent sees the horizon given.
  EXPECT_EQ(load_rows({dc0, "1,datacenter,1,2,1,0,11,,,,,,"}).size(), 2);
  const std::string h11 = "0,datacenter,1,2,1,0,11,,,,,,";
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, std::string(kPopHeader) + h11 + "\n"), 6),
                     pos(f, 2, cell_column(h11, 6)), "hour must lie in [0, 6)");
}

// Ids are labels: any unique ids are accepted and the agents are numbered 0..N-1 in file
// order, so a population written back has ids 0..N-1.
TEST(PopulationCsv, AnyUniqueIdsAreRenumberedInFileOrder) {
  TempDir tmp;
  const std::string text = std::string(kPopHeader) +
                           "site-b,datacenter,1,2,1,0,0,,,,,,\n"
                           "17,inventory,2,,,,3,,,,,1,1\n"
                           "0,datacenter,1,3,1,4,0,,,,,,\n";
  const Population p = read_population_csv(tmp.write("pop.csv", text), 12);
  ASSERT_EQ(p.size(), 3);
  EXPECT_EQ(p.agents[0].lambda, 2.0);
  EXPECT_EQ(p.agents[1].family, Family::inventory);
  EXPECT_EQ(p.agents[2].phase, 4);
  std::ostringstream out;
  write_population_csv(p, out);
  EXPECT_EQ(out.str(), std::string(kPopHeader) +
                           "0,datacenter,1,2,1,0,0,,,,,,\n"
                           "1,inventory,2,,,,3,,,,,1,1\n"
                           "2,datacenter,1,3,1,4,0,,,,,,\n");
  // Ids that start as row indices and then repeat one of them are still duplicates.
  const std::string f = "dup.csv";
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, std::string(kPopHeader) +
                                                          "0,datacenter,1,2,1,0,0,,,,,,\n"
                                                          "1,datacenter,1,2,1,0,0,,,,,,\n"
                                                          "x,datacenter,1,2,1,0,0,,,,,,\n"
                                                          "1,datacenter,1,2,1,0,0,,,,,,\n"),
                                        12),
                     pos(f, 5, 1), "duplicate agent id '1' (also on line 3)");
}

// Columns in any order; a family's columns may be left out when no agent of that family
// is present, and weight may be left out (every weight 1). Errors still name the cell.
TEST(PopulationCsv, ColumnsInAnyOrder) {
  TempDir tmp;
  const Population p = read_population_csv(
      tmp.write("pop.csv", "hour,family,cu,agent,co\n3,inventory,0.5,a,2\n0,inventory,1,b,1\n"),
      12);
  ASSERT_EQ(p.size(), 2);
  EXPECT_EQ(p.agents[0].family, Family::inventory);
  EXPECT_EQ(p.agents[0].hour, 3);
  EXPECT_EQ(p.agents[0].cu, 0.5);
  EXPECT_EQ(p.agents[0].co, 2.0);
  EXPECT_EQ(p.agents[0].weight, 1.0);
  EXPECT_EQ(p.agents[1].hour, 0);
  // The full header reversed reads the same agents as the written order.
  const Population mixed = mixed_population();
  std::ostringstream canonical;
  write_population_csv(mixed, canonical);
  std::istringstream in(canonical.str());
  std::string reversed, line;
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::string cell;
    std::istringstream ls(line);
    while (std::getline(ls, cell, ',')) cells.push_back(cell);
    if (!line.empty() && line.back() == ',') cells.push_back("");
    for (size_t i = cells.size(); i-- > 0;) reversed += cells[i] + (i ? "," : "\n");
  }
  const Population back = read_population_csv(tmp.write("rev.csv", reversed), 12);
  std::ostringstream again;
  write_population_csv(back, again);
  EXPECT_EQ(again.str(), canonical.str());
  // A bad cell is reported at its own column whatever the order.
  const std::string f = "order.csv";
  EXPECT_INPUT_ERROR(
      read_population_csv(tmp.write(f, "phase,agent,family,lambda,scale,hour\n-2,a,datacenter,1,1,0\n"),
                          12),
      pos(f, 2, 1), "phase must be >= 0");
  EXPECT_INPUT_ERROR(
      read_population_csv(tmp.write(f, "phase,agent,family,lambda,scale,hour\n2,a,datacenter,1,1,0\n"
                                       ",b,ev_charging,,,\n"),
                          12),
      pos(f, 3, 4), "needs a k value, but the header has no column 'k'");
}

// A negative phase is refused when read, and dc_phase cannot generate one.
TEST(PopulationCsv, NegativePhaseIsRefused) {
  TempDir tmp;
  const std::string f = "pop.csv";
  const std::string row = "0,datacenter,1,2,1,-7,2,,,,,,";
  EXPECT_INPUT_ERROR(read_population_csv(tmp.write(f, std::string(kPopHeader) + row + "\n"), 12),
                     pos(f, 2, cell_column(row, 5)), "phase must be >= 0");
  Agent a;
  a.family = Family::datacenter;
  a.lambda = a.scale = 1;
  a.phase = -1;
  EXPECT_NE(check_agent(a, 12), "");
  a.phase = 0;
  EXPECT_EQ(check_agent(a, 12), "");
}

}  // namespace
}  // namespace eqpm
