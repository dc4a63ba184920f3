// `eqpm report` (report.hpp) and its plotter (report/plot.hpp): valid, deterministic PNGs;
// figures that agree with the runs' own outputs; intervals that contain their estimates;
// clear errors for folders that are not runs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "host/report/report.hpp"
#include "report/plot.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

namespace fs = std::filesystem;

std::uint32_t be32(const std::string& s, size_t at) {
  std::uint32_t v = 0;
  for (size_t k = 0; k < 4; ++k) v = v << 8 | static_cast<unsigned char>(s[at + k]);
  return v;
}

// Checks the PNG's structure (signature, chunk CRCs, IHDR) and returns its decompressed
// image data, which must be height rows of 1 + 3 x width bytes.
std::string png_pixels(const std::string& png, int* width, int* height) {
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  size_t at = 8;
  bool ended = false;
  while (at + 12 <= png.size()) {
    const std::uint32_t len = be32(png, at);
    const std::string type = png.substr(at + 4, 4);
    const std::string body = png.substr(at + 4, 4 + len);
    const std::uint32_t crc = be32(png, at + 8 + len);
    EXPECT_EQ(
        crc, crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())))
        << type;
    if (type == "IHDR") {
      *width = static_cast<int>(be32(png, at + 8));
      *height = static_cast<int>(be32(png, at + 12));
    }
    if (type == "IDAT") idat += png.substr(at + 8, len);
    if (type == "IEND") ended = true;
    at += 12 + len;
  }
  EXPECT_TRUE(ended);
  EXPECT_EQ(at, png.size());
  uLongf size = static_cast<uLongf>(*height) * (1 + 3 * static_cast<uLongf>(*width));
  std::string raw(size, '\0');
  EXPECT_EQ(
      uncompress(reinterpret_cast<Bytef*>(raw.data()), &size,
                 reinterpret_cast<const Bytef*>(idat.data()), static_cast<uLong>(idat.size())),
      Z_OK);
  EXPECT_EQ(size, raw.size());
  return raw;
}

TEST(Plot, NiceTicksCoverTheRangeInRoundSteps) {
  const std::vector<double> t = report::nice_ticks(0.013, 0.087, 6);
  ASSERT_GE(t.size(), 4u);
  EXPECT_GE(t.front(), 0.013 - 1e-12);
  EXPECT_LE(t.back(), 0.087 + 1e-12);
  const double step = t[1] - t[0];
  EXPECT_NEAR(step, 0.02, 1e-12);  // 1, 2 or 5 x 10^k, about (0.087 - 0.013) / 6
  for (size_t i = 1; i < t.size(); ++i) EXPECT_NEAR(t[i] - t[i - 1], step, 1e-12);
  EXPECT_TRUE(report::nice_ticks(1, 1, 5).empty());
  EXPECT_EQ(report::nice_ticks(-5, 5, 2), (std::vector<double>{-5, 0, 5}));
}

TEST(Plot, PngIsValidDeterministicAndDrawsItsSeries) {
  report::Plot p;
  p.title = "a title";
  p.x_label = "x";
  p.y_label = "y";
  p.width = 320;
  p.height = 200;
  report::PlotSeries s;
  s.label = "line";
  s.x = {0, 1, 2, NAN, 3};
  s.y = {0, 1, 4, 5, 9};
  s.markers = true;
  s.point_labels = {"", "", "two"};
  p.series.push_back(s);
  const std::string png = report::render_png(p);
  EXPECT_EQ(png, report::render_png(p));  // the same bytes every time
  int w = 0, h = 0;
  const std::string raw = png_pixels(png, &w, &h);
  EXPECT_EQ(w, 320);
  EXPECT_EQ(h, 200);
  // The series' first palette colour (0, 114, 178) is somewhere in the picture, and the
  // background is white.
  bool blue = false;
  long white = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned char* px =
          reinterpret_cast<const unsigned char*>(raw.data()) + y * (1 + 3 * w) + 1 + 3 * x;
      blue = blue || (px[0] == 0 && px[1] == 114 && px[2] == 178);
      white += px[0] == 255 && px[1] == 255 && px[2] == 255;
    }
  EXPECT_TRUE(blue);
  EXPECT_GT(white, w * h / 2);
  p.width = 10;
  EXPECT_THROW(report::render_png(p), Error);
}

int run(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The agents.csv column `name` of a run folder.
std::vector<double> agents_column(const fs::path& run, const std::string& name) {
  CsvReader csv((run / "agents.csv").string());
  const int col = csv.require_column(name);
  std::vector<double> out;
  CsvRow row;
  while (csv.next(&row)) out.push_back(std::stod(row.cells[static_cast<size_t>(col)].text));
  return out;
}

// "| name | ..." row of a Markdown table, split into cells.
std::vector<std::string> table_row(const std::string& md, const std::string& name) {
  const auto at = md.find("\n| " + name + " |");
  if (at == std::string::npos) return {};
  const std::string line = md.substr(at + 1, md.find('\n', at + 1) - at - 1);
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  std::getline(ss, cell, '|');
  while (std::getline(ss, cell, '|')) cells.push_back(cell.substr(1, cell.size() - 2));
  return cells;
}

// "0.1234 [0.1, 0.2]" -> {0.1234, 0.1, 0.2}.
std::vector<double> estimate_and_interval(const std::string& cell) {
  std::vector<double> v;
  std::string text = cell;
  for (char& c : text)
    if (c == '[' || c == ']' || c == ',' || c == '%') c = ' ';
  std::stringstream ss(text);
  double x;
  while (ss >> x) v.push_back(x);
  return v;
}

TEST(Report, SweepReportAgreesWithTheRunsAndItsIntervalsHoldTheEstimates) {
  test::TempDir tmp;
  const std::string dir = tmp.file("sweep");
  ASSERT_EQ(run("sweep --q 0,4 --agents 120 --series-hours 2400 --epochs 3 --hidden 16 "
                "--beta 0.1 --threads 1 --quiet --out " +
                    dir,
                tmp.file("log")),
            0)
      << test::read_file(tmp.file("log"));
  ASSERT_EQ(run("report " + dir + " --bootstrap 200 --threads 1 --quiet", tmp.file("log2")), 0)
      << test::read_file(tmp.file("log2"));
  const std::string md = test::read_file(dir + "/report.md");
  for (const char* png : {"pareto.png", "pareto_mse.png", "lorenz.png", "gains.png"}) {
    EXPECT_NE(md.find(std::string("](") + png + ")"), std::string::npos) << png;
    int w = 0, h = 0;
    png_pixels(test::read_file(dir + "/" + png), &w, &h);
    EXPECT_GT(w * h, 0) << png;
  }
  for (const std::string name : {"plain", "q=0", "q=4"}) {
    // The mean regret column: the mean of the run's own agents.csv test regrets (weights
    // are 1 in a generated population), inside its own interval.
    const std::vector<std::string> row = table_row(md, name);
    ASSERT_EQ(row.size(), 9u) << name;
    const std::vector<double> mean = estimate_and_interval(row[4]);
    ASSERT_EQ(mean.size(), 3u) << row[4];
    const std::vector<double> R = agents_column(fs::path(dir) / name, "regret");
    double sum = 0;
    for (double r : R) sum += r;
    EXPECT_NEAR(mean[0], sum / static_cast<double>(R.size()), 1e-3 * mean[0]) << name;
    EXPECT_LE(mean[1], mean[0]) << name;
    EXPECT_GE(mean[2], mean[0]) << name;
    // Worst decile >= mean, and q=4's own objective (M_4) >= its mean.
    const std::vector<double> worst = estimate_and_interval(row[5]);
    EXPECT_GE(worst[0], mean[0]) << name;
    if (name == "q=4") {
      EXPECT_EQ(row[1], "power:4");
      EXPECT_GE(estimate_and_interval(row[3])[0], mean[0]);
    }
  }
  // Against plain: the change in mean regret is the ratio of the two means.
  const auto q4 = estimate_and_interval(table_row(md, "q=4")[4]);
  const auto plain = estimate_and_interval(table_row(md, "plain")[4]);
  const size_t against = md.find("## Against plain");
  ASSERT_NE(against, std::string::npos);
  const std::vector<std::string> change = table_row(md.substr(against), "q=4");
  ASSERT_GE(change.size(), 2u);
  EXPECT_NEAR(estimate_and_interval(change[1])[0], 100.0 * (q4[0] / plain[0] - 1.0), 0.11);
  // Every family of the population has its row.
  for (const char* f : {"| datacenter |", "| ev_charging |", "| inventory |"})
    EXPECT_NE(md.find(f), std::string::npos) << f;

  // The same report twice is the same bytes.
  const std::string pareto = test::read_file(dir + "/pareto.png");
  ASSERT_EQ(run("report " + dir + " --bootstrap 200 --threads 1 --quiet", tmp.file("log3")), 0);
  EXPECT_EQ(test::read_file(dir + "/report.md"), md);
  EXPECT_EQ(test::read_file(dir + "/pareto.png"), pareto);

  // One run's folder works on its own (no plain, no comparison).
  ASSERT_EQ(run("report " + dir + "/q=4 --bootstrap 0 --quiet", tmp.file("log4")), 0)
      << test::read_file(tmp.file("log4"));
  const std::string one = test::read_file(dir + "/q=4/report.md");
  EXPECT_EQ(one.find("## Against plain"), std::string::npos);
  EXPECT_NE(one.find("No intervals"), std::string::npos);
}

TEST(Report, RejectsFoldersThatAreNotRunsNamingThem) {
  test::TempDir tmp;
  fs::create_directories(tmp.file("empty"));
  try {
    write_report(tmp.file("empty"), ReportOptions{});
    ADD_FAILURE() << "an empty folder was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sweep.csv"), std::string::npos) << e.what();
  }
  // A sweep.csv naming a run that is not there: file, line and column.
  fs::create_directories(tmp.file("bad"));
  std::ofstream(tmp.file("bad/sweep.csv")) << "run,q\nq=1,1\n";
  try {
    write_report(tmp.file("bad"), ReportOptions{});
    ADD_FAILURE() << "a missing run was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("sweep.csv:2:1"), std::string::npos) << e.what();
  }
  ReportOptions bad;
  bad.bootstrap = -1;
  EXPECT_THROW(write_report(tmp.file("bad"), bad), ConfigError);
  EXPECT_EQ(run("report", tmp.file("log")), 1);
  EXPECT_NE(test::read_file(tmp.file("log")).find("expected a folder"), std::string::npos);
  EXPECT_EQ(run("report " + tmp.file("bad") + " --epochs 3", tmp.file("log")), 1);
  EXPECT_NE(test::read_file(tmp.file("log")).find("not used by report"), std::string::npos);
}

}  // namespace
}  // namespace eqpm
