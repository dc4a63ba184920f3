// tools/plot_report.py: builds fake run and sweep folders in the DESIGN.md 8.1 format, runs
// the script with the system Python and checks the PNGs it writes and its exit status.
#include "test_util.hpp"

#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifndef EQPM_SOURCE_DIR
#error "EQPM_SOURCE_DIR (the repository root, as a string) must be defined"
#endif

namespace fs = std::filesystem;
using eqpm::test::TempDir;

namespace {

const char* kPython = "/usr/bin/python3";

// Exit status of a shell command (-1 when it did not exit normally).
int run_status(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  if (rc == -1 || !WIFEXITED(rc)) return -1;
  return WEXITSTATUS(rc);
}

bool python_has_plotting() {
  return run_status(std::string(kPython) +
                    " -c \"import matplotlib, numpy\" >/dev/null 2>&1") == 0;
}

#define REQUIRE_PLOTTING()                                                             \
  if (!python_has_plotting())                                                          \
  GTEST_SKIP() << kPython << " cannot import matplotlib and numpy (install Debian's "  \
               << "python3-matplotlib and python3-numpy to run this test)"

// Runs the script on dir, stdout+stderr into `log`; returns the exit status.
int run_plot(const fs::path& dir, const fs::path& log) {
  const std::string cmd = std::string(kPython) + " '" + EQPM_SOURCE_DIR +
                          "/tools/plot_report.py' '" + dir.string() + "' >'" + log.string() +
                          "' 2>&1";
  return run_status(cmd);
}

void write(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

// A run folder: n agents in 3 families (the last family has a single agent), regrets that
// span several decades and shrink in spread as `spread` falls; 4 epochs of metrics.
void write_run(const fs::path& dir, double q, double beta, double spread, int n = 30,
               bool zero = false) {
  std::ostringstream agents, metrics, pop;
  agents << "agent,family,regret,train_regret\n";
  pop << "agent,family,weight,lambda,scale,phase,hour,k,window_start,window_end,energy,cu,co\n";
  std::vector<double> test;
  for (int i = 0; i < n; ++i) {
    const char* fam = i == n - 1 ? "inventory" : (i % 2 ? "ev_charging" : "datacenter");
    const double base = std::pow(10.0, spread * std::sin(1.7 * i + q));
    const double r = zero ? 0.0 : (std::string(fam) == "datacenter" ? 10.0 : 1.0) * base;
    test.push_back(r);
    agents << i << ',' << fam << ',' << r << ',' << 0.9 * r << '\n';
    pop << i << ',' << fam << ",1,1,1,,,,,,,,\n";
  }
  metrics << "epoch,step,loss,power_mean,mean,var,max,mse,seconds\n";
  for (int e = 0; e < 4; ++e) {
    const double f = 1.0 / (1 + e);
    metrics << e << ',' << 50 * (e + 1) << ',' << 3.0 * f << ',' << 2.0 * f << ',' << 1.5 * f
            << ',' << 0.4 * f << ',' << 20.0 * f << ',' << 0.1 * f << ',' << 0.5 * (e + 1)
            << '\n';
  }
  std::ostringstream stats;
  stats << "{\"agents\": " << n << ", \"mean\": 1, \"var\": 1, \"std\": 1, \"min\": 0, "
        << "\"p5\": 0, \"p50\": 1, \"p95\": 2, \"max\": 3, \"jain\": 0.5, \"gini\": 0.4, "
        << "\"cv\": 1, \"entropy\": 3, \"mse\": 0.1, \"mae\": 0.2}";
  std::ostringstream summary;
  summary << "{\"config\": {\"q\": " << q << ", \"beta\": " << beta << ", \"seed\": 1},\n"
          << " \"train\": {\"steps\": 200, \"seconds\": 2.0},\n"
          << " \"test\": " << stats.str() << ",\n \"train_split\": " << stats.str() << "}\n";
  write(dir / "agents.csv", agents.str());
  write(dir / "metrics.csv", metrics.str());
  write(dir / "population.csv", pop.str());
  write(dir / "summary.json", summary.str());
}

// Fails unless `path` is a non-empty file starting with the 8-byte PNG signature.
::testing::AssertionResult is_png(const fs::path& path) {
  if (!fs::exists(path)) return ::testing::AssertionFailure() << path << " not written";
  const std::string data = eqpm::test::read_file(path.string());
  static const std::string sig("\x89PNG\r\n\x1a\n", 8);
  if (data.size() <= sig.size() || data.compare(0, sig.size(), sig) != 0)
    return ::testing::AssertionFailure() << path << " is not a PNG (" << data.size()
                                         << " bytes)";
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(PlotReport, SweepFolderWritesAllFigures) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path d = tmp.path() / "sweep";
  write_run(d / "plain", 2.0, 1.0, 1.5);
  write_run(d / "q=0", 0.0, 0.0, 1.2);
  write_run(d / "q=4", 4.0, 0.0, 0.6);
  // Rows deliberately out of order: the script orders plain, then increasing q.
  write(d / "sweep.csv",
        "run,q,beta,mean,var,p95_p5,max,jain,mse\n"
        "q=4,4,0,1.0,0.5,2.0,3.0,0.8,0.12\n"
        "plain,2,1,1.5,2.5,4.0,9.0,0.5,0.10\n"
        "q=0,0,0,1.1,0.9,3.0,5.0,0.6,0.11\n");
  const fs::path log = tmp.path() / "log.txt";
  const int rc = run_plot(d, log);
  ASSERT_EQ(rc, 0) << eqpm::test::read_file(log.string());
  const std::string out = eqpm::test::read_file(log.string());
  for (const char* name : {"regret_boxplot.png", "regret_hist.png", "lorenz.png",
                           "training_curves.png", "regret_by_family.png"}) {
    EXPECT_TRUE(is_png(d / name)) << out;
    EXPECT_NE(out.find(name), std::string::npos) << name << " not listed in output:\n" << out;
  }
}

TEST(PlotReport, SingleRunWithZeroRegretsWritesFigures) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path d = tmp.path() / "run";
  write_run(d, 1.0, 0.0, 0.0, 7, /*zero=*/true);  // all regrets 0: Gini/Lorenz still defined
  const fs::path log = tmp.path() / "log.txt";
  ASSERT_EQ(run_plot(d, log), 0) << eqpm::test::read_file(log.string());
  for (const char* name : {"regret_boxplot.png", "regret_hist.png", "lorenz.png",
                           "training_curves.png", "regret_by_family.png"})
    EXPECT_TRUE(is_png(d / name));  // a single run gets its box plot too
}

// Runs the script's main() on dir with save() wrapped so that every visible axes of every
// figure is listed as "file|xlabel|ylabel" lines in `labels`; returns the exit status.
int run_plot_listing_labels(const fs::path& dir, const fs::path& labels, const fs::path& log) {
  const fs::path script = dir.parent_path() / "list_labels.py";
  write(script,
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import plot_report as p\n"
        "orig = p.save\n"
        "out = open(sys.argv[3], 'w')\n"
        "def save(fig, d, name, written):\n"
        "    for ax in fig.axes:\n"
        "        if ax.get_visible():\n"
        "            out.write(f'{name}|{ax.get_xlabel()}|{ax.get_ylabel()}\\n')\n"
        "    orig(fig, d, name, written)\n"
        "p.save = save\n"
        "rc = p.main(['plot_report.py', sys.argv[2]])\n"
        "out.close()\n"
        "sys.exit(rc)\n");
  return run_status(std::string(kPython) + " '" + script.string() + "' '" + EQPM_SOURCE_DIR +
                    "/tools' '" + dir.string() + "' '" + labels.string() + "' >'" +
                    log.string() + "' 2>&1");
}

// Every axes of every figure names what its x and y axes show, for a run and a sweep.
TEST(PlotReport, EveryAxisIsLabelled) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path run = tmp.path() / "run";
  write_run(run, 1.0, 0.0, 1.0);
  const fs::path sweep = tmp.path() / "sweep";
  write_run(sweep / "plain", 0.0, 1.0, 1.5);
  write_run(sweep / "q=4", 4.0, 0.0, 0.6);
  write(sweep / "sweep.csv",
        "run,q,beta,mean,var,p95_p5,max,jain,mse\n"
        "plain,0,1,1.5,2.5,4.0,9.0,0.5,0.10\n"
        "q=4,4,0,1.0,0.5,2.0,3.0,0.8,0.12\n");
  for (const fs::path& d : {run, sweep}) {
    const fs::path labels = tmp.path() / "labels.txt", log = tmp.path() / "log.txt";
    ASSERT_EQ(run_plot_listing_labels(d, labels, log), 0) << eqpm::test::read_file(log.string());
    std::istringstream in(eqpm::test::read_file(labels.string()));
    std::string line;
    int axes = 0;
    while (std::getline(in, line)) {
      ++axes;
      const size_t a = line.find('|'), b = line.find('|', a + 1);
      ASSERT_NE(b, std::string::npos) << line;
      EXPECT_GT(b, a + 1) << "no x label: " << line;
      EXPECT_GT(line.size(), b + 1) << "no y label: " << line;
    }
    EXPECT_GE(axes, 10) << d;
  }
}

// An `eqpm eval --out` folder (agents.csv and summary.json, no metrics.csv) is plotted
// without training curves; the un-normalised objective is drawn when metrics.csv has it.
TEST(PlotReport, EvalFolderAndObjectiveColumn) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path d = tmp.path() / "eval";
  write_run(d, 1.0, 0.0, 1.0);
  fs::remove(d / "metrics.csv");
  const fs::path log = tmp.path() / "log.txt";
  ASSERT_EQ(run_plot(d, log), 0) << eqpm::test::read_file(log.string());
  for (const char* name : {"regret_boxplot.png", "regret_hist.png", "lorenz.png",
                           "regret_by_family.png"})
    EXPECT_TRUE(is_png(d / name)) << name;
  EXPECT_FALSE(fs::exists(d / "training_curves.png"));

  const fs::path r = tmp.path() / "run";
  write_run(r, 1.0, 0.0, 1.0);
  write(r / "metrics.csv",
        "epoch,step,loss,power_mean,mean,var,max,mse,seconds,objective\n"
        "0,50,1.0,2.0,1.5,0.4,20,0.1,0.5,0.1\n"
        "1,100,0.9,1.8,1.4,0.3,18,0.09,0.5,1.7\n");
  const fs::path labels = tmp.path() / "labels.txt";
  ASSERT_EQ(run_plot_listing_labels(r, labels, log), 0) << eqpm::test::read_file(log.string());
  EXPECT_NE(eqpm::test::read_file(labels.string()).find("training_curves.png|optimiser step|(1 - beta) M_q + beta MSE"),
            std::string::npos)
      << eqpm::test::read_file(labels.string());
}

TEST(PlotReport, FolderWithNeitherLayoutFails) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path d = tmp.path() / "empty";
  write(d / "notes.txt", "nothing to plot\n");
  const fs::path log = tmp.path() / "log.txt";
  const int rc = run_plot(d, log);
  EXPECT_NE(rc, 0);
  EXPECT_NE(eqpm::test::read_file(log.string()).find("sweep.csv"), std::string::npos);
}

TEST(PlotReport, MalformedCsvNamesTheFile) {
  REQUIRE_PLOTTING();
  TempDir tmp;
  const fs::path d = tmp.path() / "run";
  write_run(d, 1.0, 0.0, 1.0);
  write(d / "agents.csv", "agent,family,regret,train_regret\n0,datacenter,abc,1.0\n");
  const fs::path log = tmp.path() / "log.txt";
  EXPECT_EQ(run_plot(d, log), 2);
  const std::string out = eqpm::test::read_file(log.string());
  EXPECT_NE(out.find("agents.csv:2:3"), std::string::npos) << out;
}
