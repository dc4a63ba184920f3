// What the program tells a user: usage and per-command help, --version, suggestions for
// mistyped flags, values that are missing, settings that contradict each other or would
// be ignored, --print-config of every command, and eval's choice of population and
// scaling.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "test_util.hpp"

namespace eqpm {
namespace {

int run(const std::string& args, const std::string& log) {
  const std::string cmd = std::string(EQPM_BINARY) + " " + args + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST(Usage, HelpVersionAndBareCommand) {
  test::TempDir tmp;
  EXPECT_EQ(run("", tmp.file("l0")), 2);
  EXPECT_TRUE(has(test::read_file(tmp.file("l0")), "usage: eqpm <command>"));
  EXPECT_EQ(run("--version", tmp.file("l1")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l1")), std::string("eqpm ") + EQPM_VERSION));
  EXPECT_EQ(run("train --help", tmp.file("l2")), 0);
  const std::string train = test::read_file(tmp.file("l2"));
  EXPECT_TRUE(has(train, "eqpm train --resume DIR")) << train;
  EXPECT_TRUE(has(train, "--checkpoint-minutes"));
  EXPECT_FALSE(has(train, "eqpm eval --model"));
  EXPECT_EQ(run("eval --help", tmp.file("l3")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l3")), "--model FILE"));
  EXPECT_EQ(run("predict --help", tmp.file("l4")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l4")), "--from DATE"));
  EXPECT_EQ(run("--help", tmp.file("l5")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l5")), "--resume DIR"));
  EXPECT_EQ(run("trian", tmp.file("l6")), 2);
}

TEST(Usage, MistypedAndMissingValuesAreNamed) {
  test::TempDir tmp;
  EXPECT_EQ(run("train --epochz 3 --out " + tmp.file("o"), tmp.file("l1")), 1);
  EXPECT_TRUE(has(test::read_file(tmp.file("l1")), "did you mean --epochs?"));
  EXPECT_EQ(run("train --lr --epochs 3 --out " + tmp.file("o"), tmp.file("l2")), 1);
  const std::string l2 = test::read_file(tmp.file("l2"));
  EXPECT_TRUE(has(l2, "--lr: expected a value, got the flag --epochs")) << l2;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("o")));
  tmp.write("bad.safetensors", "garbage, not a model");
  EXPECT_EQ(run("eval --model " + tmp.file("bad.safetensors"), tmp.file("l3")), 1);
  EXPECT_TRUE(has(test::read_file(tmp.file("l3")), "not a readable eqpm model"));
}

TEST(Usage, ContradictingDefaultsGiveWayAndIgnoredFlagsAreRefused) {
  test::TempDir tmp;
  // --epochs 1 with the default 5 warm-start epochs: clamped, with a note.
  EXPECT_EQ(run("train --epochs 1 --agents 30 --series-hours 600 --hidden 8 --threads 1 --quiet "
                "--print-config", tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  const std::string l1 = test::read_file(tmp.file("l1"));
  EXPECT_TRUE(has(l1, "warm_start_epochs = 0\n")) << l1;
  EXPECT_TRUE(has(l1, "note: 1 epochs are fewer than the 5 warm-start epochs"));
  // Explicitly contradictory settings stay an error.
  EXPECT_EQ(run("train --epochs 1 --warm-start-epochs 3 --print-config", tmp.file("l2")), 1);
  // EV keys are not checked when no EV agent is generated.
  EXPECT_EQ(run("generate --agents 5 --mix dc=1 --ev-k 1,20", tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  EXPECT_EQ(run("generate --agents 5 --mix dc=1,ev=1 --ev-k 1,20", tmp.file("l4")), 1);
  // A mix that does not sum to 1 is reported.
  EXPECT_EQ(run("generate --agents 5 --mix dc=1,ev=1", tmp.file("l5")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l5")), "note: --mix fractions sum to 2"));
  // --agents with --population is ignored, and the user is told so.
  const std::string pop = tmp.file("pop.csv");
  ASSERT_EQ(run("generate --agents 5 --out " + pop, tmp.file("l6")), 0);
  EXPECT_EQ(run("generate --population " + pop + " --agents 100", tmp.file("l7")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l7")), "note: --agents is ignored: the agents come from --population"));
}

TEST(Usage, PrintConfigOfEveryCommandAndTomlTables) {
  test::TempDir tmp;
  EXPECT_EQ(run("sweep --q 0,4 --print-config", tmp.file("l1")), 0);
  const std::string sweep = test::read_file(tmp.file("l1"));
  EXPECT_TRUE(has(sweep, "\nq = [0, 4]\n")) << sweep;
  // The printed sweep configuration is a valid sweep config file, q list included.
  tmp.write("sweep.toml", sweep);
  EXPECT_EQ(run("sweep --config " + tmp.file("sweep.toml") + " --print-config", tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  EXPECT_EQ(test::read_file(tmp.file("l2")), sweep);
  EXPECT_EQ(run("generate --agents 7 --print-config", tmp.file("l3")), 0);
  EXPECT_TRUE(has(test::read_file(tmp.file("l3")), "agents = 7\n"));
  // A key in another key's table is an error naming the file and line.
  tmp.write("wrong.toml", "[model]\nhorizon = 6\nlr = 0.1\n");
  EXPECT_EQ(run("train --config " + tmp.file("wrong.toml") + " --print-config", tmp.file("l4")), 1);
  const std::string l4 = test::read_file(tmp.file("l4"));
  EXPECT_TRUE(has(l4, "wrong.toml:3:1: key 'lr' belongs in [optimiser]")) << l4;
}

// eval reads the population saved with the model and keeps the model's scaling, and
// says so; --hidden, which the model fixes, is refused.
TEST(Usage, EvalUsesTheSavedPopulationAndScaling) {
  test::TempDir tmp;
  const std::string pop = tmp.file("pop.csv");
  ASSERT_EQ(run("generate --agents 40 --out " + pop, tmp.file("l0")), 0);
  ASSERT_EQ(run("train --population " + pop + " --series-hours 1500 --epochs 2 "
                "--warm-start-epochs 1 --hidden 8 --quiet --threads 1 --out " + tmp.file("run"),
                tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  // The original population file changes after training: eval must not read it.
  std::filesystem::remove(pop);
  ASSERT_EQ(run("eval --model " + tmp.file("run") + "/model.safetensors --threads 1 --out " +
                tmp.file("ev"), tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  const std::string l2 = test::read_file(tmp.file("l2"));
  EXPECT_TRUE(has(l2, "population " + tmp.file("run") + "/population.csv")) << l2;
  EXPECT_TRUE(has(l2, "scaling the model's (offset")) << l2;
  EXPECT_EQ(test::read_file(tmp.file("run") + "/agents.csv"),
            test::read_file(tmp.file("ev") + "/agents.csv"));
  // On a longer series the training-split mean differs, but the model's scale is kept.
  ASSERT_EQ(run("eval --model " + tmp.file("run") + "/model.safetensors --series-hours 3000 "
                "--threads 1 --out " + tmp.file("ev2"), tmp.file("l3")), 0)
      << test::read_file(tmp.file("l3"));
  const std::string s1 = test::read_file(tmp.file("run") + "/summary.json");
  const std::string s2 = test::read_file(tmp.file("ev2") + "/summary.json");
  auto scale = [](const std::string& j) {
    const auto at = j.find("\"scale\": ");
    return j.substr(at, j.find_first_of(",}", at) - at);
  };
  EXPECT_EQ(scale(s1), scale(s2));
  EXPECT_EQ(run("eval --model " + tmp.file("run") + "/model.safetensors --hidden 32",
                tmp.file("l4")), 1);
  EXPECT_TRUE(has(test::read_file(tmp.file("l4")), "--hidden: the model file fixes the network"));
}

// A configuration file's input paths are relative to its folder, whatever the working
// folder; summary.json states each path as given and as resolved, and a resumed run
// keeps both.
TEST(Usage, ConfigPathsAreRelativeToTheConfigFile) {
  test::TempDir tmp;
  std::filesystem::create_directories(tmp.path() / "cfgs" / "data");
  ASSERT_EQ(run("generate --agents 30 --out " + tmp.file("cfgs/data/pop.csv"), tmp.file("l0")), 0)
      << test::read_file(tmp.file("l0"));
  tmp.write("cfgs/run.toml", "[population]\npopulation = \"data/pop.csv\"\n");
  const std::string flags =
      " --series-hours 1500 --warm-start-epochs 1 --hidden 8 --quiet --threads 1";
  auto in_tmp = [&](const std::string& args, const std::string& log) {
    const std::string cmd = "cd '" + tmp.path().string() + "' && " + EQPM_BINARY + " " + args +
                            " > " + log + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  ASSERT_EQ(in_tmp("train --config cfgs/run.toml --epochs 2 --out run" + flags, tmp.file("l1")), 0)
      << test::read_file(tmp.file("l1"));
  const std::string expected = "\"resolved_paths\": {\"population\": {\"given\": \"data/pop.csv\", "
                               "\"resolved\": \"" + tmp.file("cfgs/data/pop.csv") + "\"}}";
  EXPECT_TRUE(has(test::read_file(tmp.file("run/summary.json")), expected))
      << test::read_file(tmp.file("run/summary.json"));
  EXPECT_TRUE(has(test::read_file(tmp.file("run/summary.json")),
                  "\"population\": \"cfgs/data/pop.csv\""));
  ASSERT_EQ(in_tmp("train --resume run --epochs 3 --quiet --threads 1", tmp.file("l2")), 0)
      << test::read_file(tmp.file("l2"));
  EXPECT_TRUE(has(test::read_file(tmp.file("run/summary.json")), expected))
      << test::read_file(tmp.file("run/summary.json"));
  // --print-config writes the input paths absolute, so the printed file works from any
  // folder it is saved in (a file's relative paths would be taken relative to it).
  ASSERT_EQ(in_tmp("train --config cfgs/run.toml --print-config", tmp.file("printed.toml")), 0)
      << test::read_file(tmp.file("printed.toml"));
  EXPECT_TRUE(has(test::read_file(tmp.file("printed.toml")),
                  "population = \"" + tmp.file("cfgs/data/pop.csv") + "\""))
      << test::read_file(tmp.file("printed.toml"));
  std::filesystem::create_directories(tmp.path() / "elsewhere" / "deeper");
  std::filesystem::copy_file(tmp.file("printed.toml"), tmp.file("elsewhere/deeper/saved.toml"));
  ASSERT_EQ(in_tmp("train --config elsewhere/deeper/saved.toml --epochs 1 --out run3" + flags,
                   tmp.file("l4")),
            0)
      << test::read_file(tmp.file("l4"));
  EXPECT_TRUE(has(test::read_file(tmp.file("run3/summary.json")),
                  "\"resolved\": \"" + tmp.file("cfgs/data/pop.csv") + "\""));
  // A path given on the command line is relative to the working folder, as written.
  ASSERT_EQ(in_tmp("train --config cfgs/run.toml --population cfgs/data/pop.csv --epochs 2 --out run2" +
                       flags,
                   tmp.file("l3")),
            0)
      << test::read_file(tmp.file("l3"));
  EXPECT_TRUE(has(test::read_file(tmp.file("run2/summary.json")),
                  "\"population\": {\"given\": \"cfgs/data/pop.csv\", \"resolved\": \"" +
                      tmp.file("cfgs/data/pop.csv") + "\"}"));
}

}  // namespace
}  // namespace eqpm
