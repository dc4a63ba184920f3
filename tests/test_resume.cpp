// Stopping and continuing runs: SIGINT/SIGTERM end a run with a checkpoint, a resumed run
// writes every output file exactly as an uninterrupted one would (wall times aside),
// --resume accepts --epochs and run settings and refuses the rest, and failed or
// overwritten runs leave nothing that looks like results.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "host/io/checkpoint.hpp"
#include "host/interrupt.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

namespace fs = std::filesystem;

int run(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// The text after the last comma of `line` replaced by "_" (a line without one is kept).
std::string blank_last_field(const std::string& line) {
  const size_t c = line.rfind(',');
  return c == std::string::npos ? line : line.substr(0, c) + ",_";
}

// Field `index` (0-based, comma-separated) of `line` replaced by "_" (a line with fewer
// fields is kept).
std::string blank_field(const std::string& line, int index) {
  size_t begin = 0;
  for (int i = 0; i < index; ++i) {
    begin = line.find(',', begin);
    if (begin == std::string::npos) return line;
    ++begin;
  }
  const size_t end = line.find(',', begin);
  return line.substr(0, begin) + "_" + (end == std::string::npos ? "" : line.substr(end));
}

// Text with its wall-time fields blanked: "seconds"/"steps_per_second" in JSON, the
// seconds column of metrics.csv (the ninth), the seconds of the checkpoint's tallies.
// (Plain string scans: std::regex trips GCC 12's -Wmaybe-uninitialized in the sanitizer
// build.)
std::string without_wall_times(const std::string& name, std::string text) {
  for (const std::string key : {"\"seconds\": ", "\"steps_per_second\": "}) {
    for (size_t at = text.find(key); at != std::string::npos; at = text.find(key, at + 1)) {
      const size_t from = at + key.size();
      const size_t to = text.find_first_of(",}\n", from);
      text.replace(from, (to == std::string::npos ? text.size() : to) - from, "_");
    }
  }
  if (name == "metrics.csv" || name == "eqpm.metrics_csv") {
    std::string out, line;
    std::istringstream in(text);
    while (std::getline(in, line)) out += blank_field(line, 8) + "\n";
    text = out;
  }
  if (name == "eqpm.epoch_tally" || name == "eqpm.train_totals") text = blank_last_field(text);
  return text;
}

// `text` with each temporary test-folder path that ends in `/leaf` (up to the next quote)
// replaced by OUT.
std::string without_folder(std::string text, const std::string& leaf) {
  for (size_t at = text.find("eqpm-test"); at != std::string::npos;
       at = text.find("eqpm-test", at + 1)) {
    const size_t quote = text.find('"', at);
    const size_t end = quote == std::string::npos ? text.size() : quote;
    const size_t l = text.rfind("/" + leaf, end);
    if (l == std::string::npos || l < at || l + leaf.size() + 1 > end) continue;
    text.replace(at, l + leaf.size() + 1 - at, "OUT");
  }
  return text;
}

// Every file of a run folder, safetensors decoded into tensors and metadata.
std::map<std::string, std::string> folder_contents(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), dir).string();
    if (e.path().extension() == ".safetensors") {
      const SafetensorsFile f = read_safetensors(e.path().string());
      for (const auto& t : f.tensors) out[rel + ":" + t.name] = t.dtype + ":" + t.bytes;
      for (const auto& [k, v] : f.metadata) out[rel + "#" + k] = without_wall_times(k, v);
    } else {
      out[rel] = without_wall_times(e.path().filename().string(), test::read_file(e.path().string()));
    }
  }
  return out;
}

void expect_same_folders(const std::string& a, const std::string& b) {
  const auto fa = folder_contents(a), fb = folder_contents(b);
  std::vector<std::string> na, nb;
  for (const auto& [k, v] : fa) na.push_back(k);
  for (const auto& [k, v] : fb) nb.push_back(k);
  ASSERT_EQ(na, nb) << "the folders hold different files";
  for (const auto& [k, v] : fa) EXPECT_TRUE(v == fb.at(k)) << k << " differs:\n" << v << "\n---\n" << fb.at(k);
}

std::string json_value(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": ");
  if (at == std::string::npos) return "";
  const auto b = at + key.size() + 4;
  return json.substr(b, json.find_first_of(",}", b) - b);
}

// In-process: a stop request after the first step (mid-epoch) leaves only the checkpoint
// and metrics.csv; resuming gives the same files as a run never stopped.
TEST(Resume, StoppedMidEpochAndResumedWritesIdenticalFiles) {
  test::TempDir tmp;
  RunConfig cfg;
  cfg.beta_auto = false;  // train_run trains one beta
  cfg.agents = 60;
  cfg.series_hours = 1500;
  cfg.epochs = 3;
  cfg.warm_start_epochs = 1;
  cfg.hidden = {16};
  cfg.threads = 1;
  cfg.quiet = true;
  cfg.backend = "cpu";
  const RunInputs in = load_inputs(cfg);
  cfg.out = tmp.file("whole");
  fs::create_directories(cfg.out);
  const RunOutcome whole = train_run(cfg, in);
  ASSERT_EQ(whole.interrupted_at, -1);

  cfg.out = tmp.file("stopped");
  fs::create_directories(cfg.out);
  request_interrupt(SIGTERM);
  const RunOutcome stopped = train_run(cfg, in);
  clear_interrupt();
  EXPECT_EQ(stopped.interrupted_at, 1);
  EXPECT_TRUE(fs::exists(cfg.out + "/checkpoint.safetensors"));
  EXPECT_FALSE(fs::exists(cfg.out + "/summary.json"));
  EXPECT_EQ(load_checkpoint(cfg.out + "/checkpoint.safetensors").step, 1u);

  const RunOutcome resumed = train_run(cfg, in, cfg.out + "/checkpoint.safetensors");
  EXPECT_EQ(resumed.train.steps, whole.train.steps);
  // The folders differ in name only, which the configuration records.
  fs::rename(tmp.file("whole"), tmp.file("a"));
  fs::rename(tmp.file("stopped"), tmp.file("b"));
  const auto a = folder_contents(tmp.file("a"));
  const auto b = folder_contents(tmp.file("b"));
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [k, v] : a) {
    const std::string va = without_folder(v, "whole");
    const std::string vb = without_folder(b.at(k), "stopped");
    EXPECT_TRUE(va == vb) << k << " differs:\n" << va << "\n---\n" << vb;
  }
}

// The program itself: SIGTERM mid-training exits 143 with a checkpoint and a resume hint;
// `eqpm train --resume` then completes the run, and every output file equals that of an
// uninterrupted run in the same folder.
TEST(ResumeSlow, SigtermThenResumeMatchesUninterruptedRun) {
  test::TempDir tmp;
  const std::string out = tmp.file("run");
  const std::string args =
      "train --agents 300 --series-hours 3000 --epochs 5 --warm-start-epochs 1 --threads 1 "
      "--quiet --checkpoint-every 5 --hidden 32,32 --backend cpu --beta 0.1 --out " + out;
  ASSERT_EQ(run(args, tmp.file("log1")), 0) << test::read_file(tmp.file("log1"));
  fs::rename(out, tmp.file("whole"));

  const pid_t child = test::spawn_eqpm(args + " 2> " + tmp.file("log2"));
  ASSERT_GE(child, 0);
  // Signal once training is under way (a checkpoint exists, so the handlers are installed).
  const std::string ckpt = out + "/checkpoint.safetensors";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && !fs::exists(ckpt))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  kill(child, SIGTERM);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  const std::string log = test::read_file(tmp.file("log2"));
  ASSERT_EQ(WEXITSTATUS(status), 143) << log;
  EXPECT_NE(log.find("resume with: eqpm train --resume " + out), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out + "/summary.json"));
  RecordProperty("stopped_at_step", std::to_string(load_checkpoint(ckpt).step));

  ASSERT_EQ(run("train --resume " + out + " --quiet", tmp.file("log3")), 0)
      << test::read_file(tmp.file("log3"));
  expect_same_folders(tmp.file("whole"), out);
}

// Resuming a finished run changes nothing; --epochs extends it to exactly the longer run.
TEST(Resume, FinishedRunResumesUnchangedAndExtendsWithEpochs) {
  test::TempDir tmp;
  const std::string common =
      "train --agents 60 --series-hours 1500 --warm-start-epochs 1 --hidden 16 --threads 1 "
      "--quiet --backend cpu --beta 0.1";
  const std::string out = tmp.file("run");
  ASSERT_EQ(run(common + " --epochs 2 --out " + out, tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  fs::copy(out, tmp.file("copy"), fs::copy_options::recursive);
  // --out takes the resumed run elsewhere.
  ASSERT_EQ(run("train --resume " + tmp.file("copy") + " --out " + tmp.file("elsewhere") + " --quiet",
                tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  EXPECT_TRUE(fs::exists(tmp.file("elsewhere") + "/summary.json"));
  ASSERT_EQ(run("train --resume " + out + " --quiet", tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  expect_same_folders(tmp.file("copy"), out);
  const std::string summary = test::read_file(out + "/summary.json");
  const long steps = std::stol(json_value(summary, "steps"));
  const long fit_rows = std::stol(json_value(summary, "fit_rows"));
  EXPECT_EQ(steps, 2 * ((fit_rows + 63) / 64));

  // Extending to 3 epochs equals a 3-epoch run in the same folder, for a schedule that does
  // not depend on the run's length (the default policy-noise decay, learning-rate annealing
  // and averaging window are laid over the end of the run, so an extended run re-lays them:
  // it continues, but is not a fresh 3-epoch run).
  const std::string fixed = " --sigma-decay 1 --average-epochs 0 --lr-schedule step";
  const std::string out2 = tmp.file("fixed");
  ASSERT_EQ(run(common + fixed + " --epochs 2 --out " + out2, tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  ASSERT_EQ(run("train --resume " + out2 + " --epochs 3 --quiet", tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  fs::rename(out2, tmp.file("extended"));
  ASSERT_EQ(run(common + fixed + " --epochs 3 --out " + out2, tmp.file("l4")), 0)
      << test::read_file(tmp.file("l4"));
  expect_same_folders(tmp.file("extended"), out2);
  // With the default schedule the extension runs to the new end.
  ASSERT_EQ(run("train --resume " + out + " --epochs 3 --quiet", tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  EXPECT_EQ(std::stol(json_value(test::read_file(out + "/summary.json"), "steps")),
            3 * ((fit_rows + 63) / 64));

  // Flags that would change the model or the data are refused, by name.
  EXPECT_EQ(run("train --resume " + out + " --lr 0.5", tmp.file("l5")), 1);
  const std::string err = test::read_file(tmp.file("l5"));
  EXPECT_NE(err.find("--lr"), std::string::npos) << err;
  EXPECT_NE(err.find("cannot change when resuming"), std::string::npos) << err;
  EXPECT_EQ(run("train --resume " + out + " --agents 10", tmp.file("l6")), 1);
  EXPECT_EQ(run("train --resume " + out + " --epochs 1", tmp.file("l7")), 1);
  EXPECT_NE(test::read_file(tmp.file("l7")).find("more --epochs"), std::string::npos);
}

// A run that fails leaves no folder behind; sweep --overwrite removes an earlier sweep's
// runs and plots.
TEST(Cli, FailedRunAndOverwrittenSweepLeaveNoStaleResults) {
  test::TempDir tmp;
  EXPECT_EQ(run("train --series " + tmp.file("missing.csv") + " --out " + tmp.file("run"),
                tmp.file("l1")), 1);
  EXPECT_FALSE(fs::exists(tmp.file("run")));

  const std::string sweep =
      "sweep --agents 30 --series-hours 800 --epochs 1 --warm-start-epochs 0 --hidden 8 "
      "--threads 1 --quiet --backend cpu --out " + tmp.file("sw");
  ASSERT_EQ(run(sweep + " --q 0,4", tmp.file("l2")), 0) << test::read_file(tmp.file("l2"));
  ASSERT_TRUE(fs::exists(tmp.file("sw") + "/q=4/summary.json"));
  tmp.write("sw/regret_boxplot.png", "old plot");
  ASSERT_EQ(run(sweep + " --q 1 --overwrite", tmp.file("l3")), 0) << test::read_file(tmp.file("l3"));
  EXPECT_FALSE(fs::exists(tmp.file("sw") + "/q=4"));
  EXPECT_FALSE(fs::exists(tmp.file("sw") + "/q=0"));
  EXPECT_FALSE(fs::exists(tmp.file("sw") + "/regret_boxplot.png"));
  EXPECT_TRUE(fs::exists(tmp.file("sw") + "/q=1/summary.json"));
  EXPECT_TRUE(fs::exists(tmp.file("sw") + "/plain/summary.json"));
}

}  // namespace
}  // namespace eqpm

namespace eqpm {
namespace {

// The first SIGTERM only asks the run to stop after its step; a second signal ends the
// process at once, with 128 + the signal's number.
TEST(Interrupt, SecondSignalExitsAtOnce) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    InterruptHandlers handlers;
    raise(SIGTERM);
    if (interrupt_signal() != SIGTERM) _exit(3);  // the first one must only be recorded
    raise(SIGINT);
    _exit(0);  // not reached when the second signal exits
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
}

// --checkpoint-minutes writes checkpoints during a run that has no --checkpoint-every: a
// run killed mid-way (SIGKILL, no handler) leaves one from before its end, and it resumes.
TEST(ResumeSlow, CheckpointsByTimeWithoutCheckpointEvery) {
  test::TempDir tmp;
  const std::string out = tmp.file("run");
  const std::string args =
      "train --agents 300 --series-hours 3000 --epochs 8 --warm-start-epochs 1 --threads 1 "
      "--quiet --hidden 32,32 --backend cpu --beta 0.1 --checkpoint-minutes 0.00002 --out " + out;
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string cmd = std::string(EQPM_BINARY) + " " + args;
    execl("/bin/sh", "sh", "-c", ("exec " + cmd + " > /dev/null 2>&1").c_str(), (char*)nullptr);
    _exit(127);
  }
  const std::string ckpt = out + "/checkpoint.safetensors";
  test::wait_for_checkpoint(ckpt, 3);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before a timed checkpoint was seen";
  const long killed_at = static_cast<long>(load_checkpoint(ckpt).step);
  EXPECT_GE(killed_at, 3);
  EXPECT_FALSE(fs::exists(out + "/summary.json"));
  ASSERT_EQ(run("train --resume " + out + " --quiet", tmp.file("log")), 0)
      << test::read_file(tmp.file("log"));
  // The checkpoint was one from the middle of the run, not its final one.
  const long total = std::stol(json_value(test::read_file(out + "/summary.json"), "steps"));
  EXPECT_LT(killed_at, total);
}

}  // namespace
}  // namespace eqpm
