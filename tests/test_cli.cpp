// The eqpm program as users drive it: kill-and-resume bit identity, eval of a saved
// model, flag-over-file precedence and --print-config.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "host/io/checkpoint.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

int run(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::string json_object(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\": {");
  if (at == std::string::npos) return "";
  return json.substr(at, json.find('}', at) - at + 1);
}

// Weights and Adam state only (the metadata names the output folder, which differs).
std::vector<std::string> state_tensors(const std::string& path) {
  const SafetensorsFile f = read_safetensors(path);
  std::vector<std::string> out;
  for (const auto& t : f.tensors) out.push_back(t.name + ":" + t.bytes);
  return out;
}

// A run killed with SIGKILL mid-training and resumed ends bit-identical to one that was
// never interrupted.
TEST(ResumeSlow, KilledAndResumedRunIsBitIdentical) {
  test::TempDir tmp;
  const std::string args =
      "train --agents 400 --series-hours 3000 --epochs 6 --warm-start-epochs 1 --threads 1 "
      "--quiet --checkpoint-every 7 --hidden 32,32 --estimator score --beta 0.1";
  ASSERT_EQ(run(args + " --out " + tmp.file("whole"), tmp.file("log1")), 0)
      << test::read_file(tmp.file("log1"));

  const std::string out = tmp.file("killed");
  const pid_t child = test::spawn_eqpm(args + " --out " + out + " > /dev/null 2>&1");
  ASSERT_GE(child, 0);
  // Kill once a mid-training checkpoint exists (step 7 .. well before the end).
  const std::string ckpt = out + "/checkpoint.safetensors";
  test::wait_for_checkpoint(ckpt, 14);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  const long killed_at = static_cast<long>(load_checkpoint(ckpt).step);
  EXPECT_FALSE(std::filesystem::exists(out + "/summary.json"));
  RecordProperty("killed_at_step", std::to_string(killed_at));

  ASSERT_EQ(run("train --resume " + out + " --quiet", tmp.file("log2")), 0)
      << test::read_file(tmp.file("log2"));
  EXPECT_EQ(state_tensors(tmp.file("whole") + "/checkpoint.safetensors"),
            state_tensors(ckpt));
  EXPECT_EQ(state_tensors(tmp.file("whole") + "/model.safetensors"),
            state_tensors(out + "/model.safetensors"));
  // Same per-agent regrets, to the last digit.
  EXPECT_EQ(test::read_file(tmp.file("whole") + "/agents.csv"),
            test::read_file(out + "/agents.csv"));
}

// A sweep killed and continued with eqpm sweep --resume ends with the files of a sweep never
// stopped: its tables, every run's regrets and states. Killed twice: before the annealing
// exchange (AnnealStart::best), while the models train to it, and after it, while a model
// anneals from the state it adopted.
TEST(ResumeSlow, KilledAndResumedSweepIsBitIdentical) {
  test::TempDir tmp;
  const std::string args =
      "sweep --q 0,4 --agents 300 --series-hours 3000 --epochs 5 --warm-start-epochs 1 "
      "--lr-anneal-epochs 2 --threads 1 --quiet --checkpoint-every 7 --hidden 32,32 --beta 0.1";
  const std::string whole = tmp.file("whole");
  ASSERT_EQ(run(args + " --out " + whole, tmp.file("log1")), 0) << test::read_file(tmp.file("log1"));
  const std::string exchange = test::read_file(whole + "/anneal_start.csv");
  ASSERT_NE(exchange.find("\nq=0,"), std::string::npos) << "no annealing exchange: " << exchange;
  const long at = static_cast<long>(load_checkpoint(whole + "/q=0/anneal_start.safetensors").step);
  ASSERT_GT(at, 14);

  // Kills the sweep once `ckpt` holds step `min_step` or later, resumes it, and compares.
  auto kill_and_resume = [&](const std::string& name, const std::string& run_name, long min_step) {
    const std::string out = tmp.file(name);
    const pid_t child = test::spawn_eqpm(args + " --out " + out + " > /dev/null 2>&1");
    ASSERT_GE(child, 0);
    const std::string ckpt = out + "/" + run_name + "/checkpoint.safetensors";
    test::wait_for_checkpoint(ckpt, min_step);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the sweep finished before it could be killed";
    EXPECT_FALSE(std::filesystem::exists(out + "/sweep.csv"));
    RecordProperty(name + "_killed_at_step", std::to_string(load_checkpoint(ckpt).step));

    ASSERT_EQ(run("sweep --resume " + out + " --q 0,4 --quiet", tmp.file(name + ".log")), 0)
        << test::read_file(tmp.file(name + ".log"));
    for (const char* f : {"sweep.csv", "mq_check.csv", "anneal_start.csv", "plain/agents.csv",
                          "q=0/agents.csv", "q=4/agents.csv"})
      EXPECT_EQ(test::read_file(whole + "/" + f), test::read_file(out + "/" + f)) << name << " " << f;
    for (const char* r : {"plain", "q=0", "q=4"})
      for (const char* f : {"checkpoint.safetensors", "model.safetensors", "anneal_start.safetensors"})
        EXPECT_EQ(state_tensors(whole + "/" + r + "/" + f), state_tensors(out + "/" + r + "/" + f))
            << name << " " << r << "/" << f;
  };
  kill_and_resume("before_exchange", "q=4", 14);
  kill_and_resume("after_exchange", "q=0", at + 7);

  // A finished sweep extended with more epochs: each model continues from its own state (the
  // annealing now starts later, past the states kept at the first one).
  ASSERT_EQ(run("sweep --resume " + tmp.file("after_exchange") + " --q 0,4 --epochs 7 --quiet",
                tmp.file("extend.log")), 0)
      << test::read_file(tmp.file("extend.log"));
  EXPECT_GT(load_checkpoint(tmp.file("after_exchange") + "/q=4/checkpoint.safetensors").step,
            load_checkpoint(whole + "/q=4/checkpoint.safetensors").step);

  // Settings that would change the sweep are refused, as for a run.
  const std::string out = tmp.file("before_exchange");
  EXPECT_EQ(run("sweep --resume " + out + " --q 0,4 --lr 0.01 --quiet", tmp.file("log2")), 1);
  EXPECT_NE(test::read_file(tmp.file("log2")).find("lr"), std::string::npos)
      << test::read_file(tmp.file("log2"));
  EXPECT_EQ(run("sweep --resume " + out + " --q 0,4 --out " + tmp.file("elsewhere") + " --quiet",
                tmp.file("log3")), 1);
  EXPECT_EQ(run("sweep --resume " + out + " --q 4 --quiet", tmp.file("log4")), 1)
      << "a list without the begun run q=0 must be refused";
}

// eqpm eval on a saved model reproduces the summary of the run that saved it.
TEST(Cli, EvalReproducesTrainingSummary) {
  test::TempDir tmp;
  const std::string out = tmp.file("run");
  ASSERT_EQ(run("train --agents 80 --series-hours 2000 --epochs 2 --warm-start-epochs 1 "
                "--hidden 16 --quiet --threads 1 --out " + out, tmp.file("log")), 0)
      << test::read_file(tmp.file("log"));
  ASSERT_EQ(run("eval --model " + out + "/model.safetensors --threads 1 --out " + tmp.file("eval"),
                tmp.file("log2")), 0)
      << test::read_file(tmp.file("log2"));
  const std::string a = test::read_file(out + "/summary.json");
  const std::string b = test::read_file(tmp.file("eval") + "/summary.json");
  ASSERT_FALSE(json_object(a, "test").empty());
  EXPECT_EQ(json_object(a, "test"), json_object(b, "test"));
  EXPECT_EQ(json_object(a, "train_split"), json_object(b, "train_split"));
  EXPECT_EQ(test::read_file(out + "/agents.csv"), test::read_file(tmp.file("eval") + "/agents.csv"));
}

// Flags override the TOML file whatever their order; --print-config shows the result.
TEST(Cli, FlagsOverrideConfigFile) {
  test::TempDir tmp;
  const std::string toml = tmp.write("run.toml", "lr = 0.5\nepochs = 7\n[model]\nhorizon = 6\n");
  ASSERT_EQ(run("train --lr 0.25 --config " + toml + " --print-config", tmp.file("log")), 0)
      << test::read_file(tmp.file("log"));
  const std::string printed = test::read_file(tmp.file("log"));
  EXPECT_NE(printed.find("lr = 0.25\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("epochs = 7\n"), std::string::npos) << printed;
  EXPECT_NE(printed.find("horizon = 6\n"), std::string::npos) << printed;
  // The printed configuration is itself a valid config file.
  tmp.write("printed.toml", printed);
  ASSERT_EQ(run("train --config " + tmp.file("printed.toml") + " --print-config", tmp.file("log2")), 0)
      << test::read_file(tmp.file("log2"));
  EXPECT_EQ(test::read_file(tmp.file("log2")), printed);
}

TEST(Cli, BadFlagsAreClearErrors) {
  test::TempDir tmp;
  EXPECT_EQ(run("train --no-such-flag 1 --out x", tmp.file("l1")), 1);
  EXPECT_NE(test::read_file(tmp.file("l1")).find("--no-such-flag"), std::string::npos);
  EXPECT_EQ(run("train --lr abc --out x", tmp.file("l2")), 1);
  EXPECT_NE(test::read_file(tmp.file("l2")).find("--lr"), std::string::npos);
  EXPECT_EQ(run("train --samples 3 --out x", tmp.file("l3")), 1);
  EXPECT_NE(test::read_file(tmp.file("l3")).find("even"), std::string::npos);
  // A value checked after parsing names its flag too.
  for (const char* mix : {"dc=0", "foo=1", "dc=x", "dc=0.5,dc=0.5"}) {
    EXPECT_EQ(run(std::string("train --mix ") + mix + " --out x", tmp.file("l5")), 1) << mix;
    EXPECT_NE(test::read_file(tmp.file("l5")).find("error: --mix: "), std::string::npos)
        << mix << ": " << test::read_file(tmp.file("l5"));
  }
  EXPECT_EQ(run("info", tmp.file("l4")), 0);
  EXPECT_NE(test::read_file(tmp.file("l4")).find("OpenMP threads"), std::string::npos);
}

}  // namespace
}  // namespace eqpm
