// TOML configuration files: every value type, the grouping tables, every kind of bad input
// (each error must name the file, the line and column, and the key), and the round trip
// through config_to_toml.
#include <filesystem>
#include <string>

#include "host/config.hpp"
#include "host/config_toml.hpp"
#include "eqpm/error.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

using test::TempDir;

// Loads `text` as a TOML file into `cfg`; returns the ConfigError's message, or "" when
// the file was accepted.
std::string load_error(const TempDir& dir, const std::string& text, RunConfig& cfg,
                       std::string* path_out = nullptr) {
  const std::string path = dir.write("run.toml", text);
  if (path_out) *path_out = path;
  try {
    load_config_toml(path, cfg);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

TEST(ConfigToml, AcceptsEveryTypeAtTopLevelAndInTables) {
  TempDir dir;
  const std::string text = R"(# a run
seed = 7

[data]
series_hours = 2000
scaling = "paper"
train_fraction = 0.625
column = "ci \"gCO2\" \u00e9"

[population]
agents = 50
dc_lambda = [0.5, 2]
dc_phase = [1, 5]
inv_cu = [1, 3]

[model]
hidden = [32, 16]
activation = "tanh"
lookback = 48

[objective]
q = 2
antithetic = false
estimator = "score"
samples = 8

[optimiser]
lr = 3e-4
warm-start-epochs = 2

[run]
out = "results/x"
quiet = true
)";
  RunConfig cfg;
  ASSERT_EQ(load_error(dir, text, cfg), "");
  EXPECT_EQ(cfg.seed, 7u);
  EXPECT_EQ(cfg.series_hours, 2000);
  EXPECT_EQ(cfg.scaling, Scaling::paper);
  EXPECT_EQ(cfg.train_fraction, 0.625);
  EXPECT_EQ(cfg.column, "ci \"gCO2\" \xc3\xa9");
  EXPECT_EQ(cfg.agents, 50);
  EXPECT_EQ(cfg.dc_lambda.lo, 0.5);
  EXPECT_EQ(cfg.dc_lambda.hi, 2.0);
  EXPECT_EQ(cfg.dc_phase.lo, 1.0);
  EXPECT_EQ(cfg.dc_phase.hi, 5.0);
  EXPECT_EQ(cfg.inv_cu.hi, 3.0);
  EXPECT_EQ(cfg.hidden, (std::vector<int>{32, 16}));
  EXPECT_EQ(cfg.activation, Activation::tanh);
  EXPECT_EQ(cfg.lookback, 48);
  EXPECT_EQ(cfg.q, 2.0);  // an integer where a float is expected
  EXPECT_FALSE(cfg.antithetic);
  EXPECT_EQ(cfg.estimator, Estimator::score);
  EXPECT_EQ(cfg.samples, 8);
  EXPECT_EQ(cfg.lr, 3e-4);
  EXPECT_EQ(cfg.warm_start_epochs, 2);
  EXPECT_EQ(cfg.out, "results/x");
  EXPECT_TRUE(cfg.quiet);
  // Untouched keys keep their defaults.
  EXPECT_EQ(cfg.batch, RunConfig{}.batch);
}

TEST(ConfigToml, EmptyHiddenListIsALinearModelAndEmptyFileChangesNothing) {
  TempDir dir;
  RunConfig cfg;
  ASSERT_EQ(load_error(dir, "hidden = []\n", cfg), "");
  EXPECT_TRUE(cfg.hidden.empty());
  RunConfig untouched;
  ASSERT_EQ(load_error(dir, "# nothing\n\n", untouched), "");
  EXPECT_EQ(config_to_json(untouched), config_to_json(RunConfig{}));
}

// Each bad file: the text, then what the message must contain besides the file name.
struct BadCase {
  const char* name;
  const char* text;
  std::vector<std::string> expected;  // substrings of the message, e.g. ":3:1" and the key
};

void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }

class ConfigTomlBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigTomlBad, IsAConfigErrorNamingFileLineAndKey) {
  TempDir dir;
  RunConfig cfg;
  std::string path;
  const std::string msg = load_error(dir, GetParam().text, cfg, &path);
  ASSERT_FALSE(msg.empty()) << "accepted: " << GetParam().text;
  EXPECT_TRUE(contains(msg, path + ":"));
  for (const std::string& part : GetParam().expected) EXPECT_TRUE(contains(msg, part));
}

const BadCase kBadCases[] = {
    {"unknown_key", "seed = 1\nfoo = 1\n", {":2:1:", "unknown key 'foo'"}},
    {"unknown_key_in_table", "[model]\nlayers = 3\n", {":2:1:", "unknown key 'model.layers'"}},
    {"misspelt_key", "epoch = 5\n", {":1:1:", "unknown key 'epoch'", "did you mean 'epochs'"}},
    {"unknown_table", "lr = 0.1\n[training]\nbatch = 4\n", {":2:", "unknown table 'training'"}},
    {"nested_table", "[run.extra]\nx = 1\n", {":1:", "unknown key 'run.extra'"}},
    {"array_of_tables", "[[run]]\nquiet = true\n", {":1:", "'run' must be a table [run]"}},
    {"section_as_value", "model = 3\n", {":1:1:", "'model' must be a table [model]"}},
    {"int_given_float", "epochs = 1.5\n", {":1:10:", "epochs", "an integer", "found a float"}},
    {"int_given_string", "[optimiser]\nepochs = \"5\"\n",
     {":2:10:", "epochs", "an integer", "found a string"}},
    {"float_given_string", "lr = \"fast\"\n", {":1:6:", "lr", "a number", "found a string"}},
    {"float_given_bool", "lr = true\n", {":1:6:", "lr", "a number", "found a boolean"}},
    {"float_given_date", "lr = 1979-05-27\n", {":1:6:", "lr", "found a date"}},
    {"bool_given_int", "[run]\nquiet = 1\n", {":2:9:", "quiet", "a boolean", "found an integer"}},
    {"string_given_int", "out = 3\n", {":1:7:", "out", "a string", "found an integer"}},
    {"enum_given_int", "activation = 1\n",
     {":1:14:", "activation", "relu|tanh|gelu", "found an integer"}},
    {"range_given_number", "dc_lambda = 3\n",
     {":1:13:", "dc_lambda", "an array of 2 numbers", "found an integer"}},
    {"range_of_three", "dc_lambda = [1, 2, 3]\n", {":1:13:", "dc_lambda", "array of 3 values"}},
    {"range_of_string", "dc_lambda = [1, \"a\"]\n",
     {":1:17:", "dc_lambda", "an array holding a string"}},
    {"int_list_given_float", "hidden = [64, 1.5]\n",
     {":1:15:", "hidden", "an array of integers", "holding a float"}},
    {"int_list_given_int", "hidden = 64\n", {":1:10:", "hidden", "found an integer"}},
    {"int_list_given_table", "[model]\nhidden = {a = 1}\n", {":2:10:", "hidden", "found a table"}},
    {"key_as_table", "[run]\nquiet.x = 1\n", {":2:", "quiet", "found a table"}},
    {"float_out_of_range", "\n[optimiser]\nlr = 20\n", {":3:6:", "lr", "(0, 10]", "20"}},
    {"int_out_of_range", "horizon = 1000\n", {":1:11:", "horizon", "[1, 64]"}},
    {"negative_seed", "seed = -3\n", {":1:8:", "seed", "non-negative"}},
    {"infinite_float", "lr = inf\n", {":1:6:", "lr", "finite"}},
    {"width_out_of_range", "hidden = [0]\n", {":1:10:", "hidden", "[1, 1024]"}},
    {"bad_enum", "activation = \"swish\"\n",
     {":1:14:", "activation", "relu|tanh|gelu", "'swish'"}},
    {"range_lo_above_hi", "[population]\ndc_lambda = [5, 1]\n", {":2:13:", "dc_lambda", "LO <= HI"}},
    {"range_not_positive", "inv_cu = [0, 1]\n", {":1:10:", "inv_cu", "(1e-09"}},
    {"integer_range_given_fraction", "dc_phase = [0.5, 3]\n",
     {":1:12:", "dc_phase", "an integer", "0.5"}},
    {"syntax_error", "seed = 1\nlr = = 3\n", {":2:"}},
    {"unterminated_string", "out = \"abc\n", {":1:"}},
    {"duplicate_in_table", "[run]\nquiet = true\nquiet = false\n", {":3:"}},
    {"duplicate_top_and_table", "lr = 0.1\n[optimiser]\nlr = 0.2\n",
     {":3:1:", "'lr' given twice", ":1:1"}},
    {"duplicate_across_tables", "[model]\nseed = 1\n[run]\nseed = 2\n",
     {":4:1:", "'seed' given twice", ":2:1"}},
    {"duplicate_dash_and_underscore", "warm_start_epochs = 1\nwarm-start-epochs = 2\n",
     {":2:1:", "'warm_start_epochs' given twice"}},
};

INSTANTIATE_TEST_SUITE_P(AllKinds, ConfigTomlBad, ::testing::ValuesIn(kBadCases),
                         [](const ::testing::TestParamInfo<BadCase>& c) { return std::string(c.param.name); });

TEST(ConfigToml, MissingFileIsAConfigError) {
  TempDir dir;
  RunConfig cfg;
  try {
    load_config_toml(dir.file("absent.toml"), cfg);
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "absent.toml"));
  }
}

TEST(ConfigToml, FirstProblemInFileOrderIsReported) {
  // toml++ keeps keys sorted; the error must still be the first one in the file.
  TempDir dir;
  RunConfig cfg;
  const std::string msg = load_error(dir, "zzz = 1\naaa = 2\n", cfg);
  EXPECT_TRUE(contains(msg, "unknown key 'zzz'"));
}

void expect_toml_round_trip(const RunConfig& cfg) {
  TempDir dir;
  RunConfig back;
  const std::string text = config_to_toml(cfg);
  ASSERT_EQ(load_error(dir, text, back), "") << text;
  EXPECT_EQ(config_to_json(back), config_to_json(cfg));
}

TEST(ConfigToml, ConfigToTomlReadsBackEqual) {
  expect_toml_round_trip(RunConfig{});
  RunConfig c;
  // Absolute: a relative input path in a file is relative to the file's folder.
  c.series = "/data/ci \"quoted\"\\path\tx.csv";
  c.column = "\xc3\xa9t\xc3\xa9";
  c.scaling = Scaling::paper;
  c.train_fraction = 0.1 + 0.2;  // no short decimal
  c.dc_lambda = {0.125, 7.5};
  c.dc_phase = {3, 4};
  c.hidden = {};
  c.activation = Activation::gelu;
  c.q = 1e-300;
  c.lr = 3.0000000000000004e-4;
  c.adam_eps = 2.2250738585072014e-308;  // smallest normal (config.cpp's strtod check
                                         // rejects subnormals as ERANGE)
  c.estimator = Estimator::pathwise;
  c.antithetic = false;
  c.seed = (1ull << 62) + 12345;
  c.checkpoint_every = 1LL << 40;
  c.grad_clip = 0;
  c.quiet = true;
  expect_toml_round_trip(c);
  c.hidden = {1024, 3, 7};
  expect_toml_round_trip(c);
}

// Input paths in a configuration file are relative to the file's folder (kept as written
// in given_paths); absolute paths and --out are left as they are.
TEST(ConfigToml, InputPathsAreRelativeToTheFile) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "sub");
  const std::string path = dir.write("sub/run.toml",
                                     "[data]\nseries = \"data/ci.csv\"\n"
                                     "demand_profile = \"../d.csv\"\n"
                                     "[population]\npopulation = \"/abs/pop.csv\"\n"
                                     "ev_sessions = \"./ev.csv\"\n"
                                     "[run]\nout = \"results/x\"\n");
  RunConfig cfg;
  load_config_toml(path, cfg);
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  EXPECT_EQ(cfg.series, (folder / "data/ci.csv").lexically_normal().string());
  EXPECT_EQ(cfg.demand_profile, (folder / "../d.csv").lexically_normal().string());
  EXPECT_EQ(cfg.ev_sessions, (folder / "ev.csv").string());
  EXPECT_EQ(cfg.population, "/abs/pop.csv");
  EXPECT_EQ(cfg.out, "results/x");
  EXPECT_EQ(cfg.given_paths.at("series"), "data/ci.csv");
  EXPECT_EQ(cfg.given_paths.at("demand_profile"), "../d.csv");
  EXPECT_EQ(cfg.given_paths.at("ev_sessions"), "./ev.csv");
  EXPECT_EQ(cfg.given_paths.count("population"), 0u);
}

}  // namespace
}  // namespace eqpm
