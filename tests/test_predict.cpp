// eqpm predict and the model format the README documents: the forecasts of a trained
// model on its own (synthetic) series and on a CSV series, a date window, and the
// README's numpy forward pass reproducing predict's output.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "test_util.hpp"

namespace eqpm {
namespace {

int run(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

long count_lines(const std::string& text) {
  long n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// An hourly series in UTC, 700 hours from 2022-01-01 00:00, positive, daily cycle.
std::string series_csv() {
  std::ostringstream os;
  os << "timestamp,value\n";
  for (int t = 0; t < 700; ++t) {
    const int day = t / 24, hour = t % 24;
    char ts[40];
    std::snprintf(ts, sizeof ts, "2022-%02d-%02d %02d:00", 1 + day / 31, 1 + day % 31, hour);
    os << ts << "," << 200 + 80 * std::sin(6.283185307179586 * t / 24) + (t * 37 % 11) << "\n";
  }
  return os.str();
}

// The README's fenced python block after its marker.
std::string readme_forward_pass() {
  const std::string readme = test::read_file(std::string(EQPM_SOURCE_DIR) + "/README.md");
  const auto marker = readme.find("<!-- numpy-forward-pass -->");
  if (marker == std::string::npos) return "";
  const auto begin = readme.find("```python\n", marker);
  const auto end = readme.find("```\n", begin + 10);
  return readme.substr(begin + 10, end - begin - 10);
}

TEST(Predict, ForecastsTheModelsOwnSeriesAndAWindowOfACsvSeries) {
  test::TempDir tmp;
  const std::string series = tmp.write("series.csv", series_csv());
  // Model trained on the synthetic series: predict without --series uses it.
  ASSERT_EQ(run("train --agents 40 --series-hours 600 --epochs 1 --warm-start-epochs 0 "
                "--hidden 8 --horizon 6 --quiet --threads 1 --out " + tmp.file("syn"),
                tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  ASSERT_EQ(run("predict --model " + tmp.file("syn") + "/model.safetensors --out " +
                tmp.file("syn.csv"), tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  const std::string syn = test::read_file(tmp.file("syn.csv"));
  EXPECT_EQ(syn.substr(0, syn.find('\n')), "timestamp,h1,h2,h3,h4,h5,h6");
  EXPECT_EQ(count_lines(syn), 1 + (600 - 24 + 1));  // one row per start hour L .. T

  // A CSV series and a window (inclusive) of three days.
  ASSERT_EQ(run("predict --model " + tmp.file("syn") + "/model.safetensors --series " + series +
                " --column value --from 2022-01-02 --to '2022-01-04 00:00' --out " +
                tmp.file("win.csv"), tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  const std::string win = test::read_file(tmp.file("win.csv"));
  EXPECT_EQ(count_lines(win), 1 + 49);
  EXPECT_NE(win.find("\n2022-01-02T00:00:00Z,"), std::string::npos) << win.substr(0, 200);
  EXPECT_NE(win.find("\n2022-01-04T00:00:00Z,"), std::string::npos);

  // Errors name what is wrong.
  tmp.write("bad.safetensors", "not a model");
  EXPECT_EQ(run("predict --model " + tmp.file("bad.safetensors"), tmp.file("l4")), 1);
  EXPECT_NE(test::read_file(tmp.file("l4")).find("not a readable eqpm model"), std::string::npos);
  EXPECT_EQ(run("predict --model " + tmp.file("syn") + "/model.safetensors --lr 1", tmp.file("l5")), 1);
  EXPECT_NE(test::read_file(tmp.file("l5")).find("--lr: not used by predict"), std::string::npos);
}

// The README's numpy forward pass gives predict's forecasts (float32 network, so to a
// relative 1e-5), for a gelu model trained on a CSV series with paper scaling.
TEST(Predict, ReadmeNumpyForwardPassMatchesPredict) {
  test::TempDir tmp;
  if (std::system("/usr/bin/python3 -c 'import numpy' > /dev/null 2>&1") != 0)
    GTEST_SKIP() << "/usr/bin/python3 cannot import numpy";
  const std::string code = readme_forward_pass();
  ASSERT_FALSE(code.empty()) << "README.md lacks the numpy forward pass";
  EXPECT_LE(count_lines(code), 20);
  tmp.write("forward.py", code);
  const std::string series = tmp.write("series.csv", series_csv());
  ASSERT_EQ(run("train --series " + series + " --column value --scaling paper --activation gelu "
                "--agents 40 --epochs 1 --warm-start-epochs 0 --hidden 8,8 --horizon 6 --quiet "
                "--threads 1 --out " + tmp.file("run"), tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  ASSERT_EQ(run("predict --model " + tmp.file("run") + "/model.safetensors --out " +
                tmp.file("pred.csv"), tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  const std::string check = tmp.write("check.py", R"(
import csv, sys
import numpy as np
exec(open(sys.argv[1]).read())
t, meta = load(sys.argv[2])
values = [float(r[1]) for r in list(csv.reader(open(sys.argv[3])))[1:]]
rows = list(csv.reader(open(sys.argv[4])))[1:]
L = int(meta["eqpm.lookback"])
assert len(rows) == len(values) - L + 1, (len(rows), len(values))
for k in [0, 1, 17, 300, len(rows) - 2]:
    start = L + k
    got = forecast(t, meta, values[start - L:start], int(rows[k][0][11:13]))
    want = np.array([float(v) for v in rows[k][1:]])
    assert np.allclose(got, want, rtol=1e-5, atol=0), (k, got, want)
print("ok")
)");
  const std::string cmd = "/usr/bin/python3 " + check + " " + tmp.file("forward.py") + " " +
                          tmp.file("run") + "/model.safetensors " + series + " " +
                          tmp.file("pred.csv") + " > " + tmp.file("py.log") + " 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << test::read_file(tmp.file("py.log"));
}

}  // namespace
}  // namespace eqpm
