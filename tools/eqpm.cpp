// The eqpm command-line program: train | sweep | backtest | eval | predict | generate | info.
// Every configuration key is a flag (--warm-start-epochs 5) and a TOML key
// (warm_start_epochs = 5); flags override the file given with --config.
#include <omp.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "host/io/atomic_file.hpp"
#include "eqpm/backend.hpp"
#include "host/backtest.hpp"
#include "host/beta_select.hpp"
#include "host/build_info.hpp"
#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "host/config_toml.hpp"
#include "eqpm/error.hpp"
#include "host/interrupt.hpp"
#include "host/io/io.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/objective.hpp"
#include "host/plan.hpp"
#include "host/predict.hpp"
#include "host/report/report.hpp"
#include "host/run.hpp"
#include "host/sweep.hpp"
#include "host/sweep_check.hpp"
#ifdef EQPM_WITH_MPI
#include "mpi/mpi_reducer.hpp"
#endif

namespace {

using namespace eqpm;

// The processes one command runs in: one, or the ranks of `mpirun -np K eqpm train`.
struct World {
  int rank = 0, size = 1, local_size = 1;
  bool mpi = false;              // started by an MPI launcher
  Reducer* reducer = nullptr;    // the ranks' reducer (reducer.hpp); null: one process
  std::function<void(int)> abort;  // ends every rank (a failure must not leave others waiting)

  // " (rank r of K)" for messages when there are several ranks.
  std::string where() const {
    return size > 1 ? " (rank " + std::to_string(rank) + " of " + std::to_string(size) + ")" : "";
  }
  // The exit status of a failed command; with several ranks every rank ends here.
  int fail(int code) const {
    if (size > 1 && abort) {
      std::fflush(stdout);
      std::fflush(stderr);
      abort(code);
    }
    return code;
  }
  // Under mpirun rank 0 alone writes the output folder and prints; the other ranks compute
  // the same runs silently.
  bool writer() const { return rank == 0; }
  void silence_if_not_writer(RunConfig& c) const {
    if (writer()) return;
    c.quiet = true;
    c.profile = false;
  }
};

const char* kUsage =
    "usage: eqpm <command> [--config FILE.toml] [--KEY VALUE ...]\n"
    "       eqpm <command> --help    the command's own flags\n"
    "       eqpm --version\n"
    "\n"
    "commands:\n"
    "  train     train one model and write the output folder (--out DIR)\n"
    "            --resume DIR continues from DIR/checkpoint.safetensors\n"
    "  sweep     train at each q of --q LIST (or each --objective of a LIST) plus the plain\n"
    "            (beta = 1) baseline; writes DIR/q=<v>/, DIR/plain/ and DIR/sweep.csv\n"
    "  backtest  rolling-origin evaluation: refit every --refit period from --from to --to,\n"
    "            test on the next; writes DIR/backtest.csv, DIR/<run>/fold-<k>/ (--out DIR)\n"
    "  eval      evaluate --model FILE.safetensors on a series and population\n"
    "  predict   forecasts of --model FILE.safetensors on a series (--out FILE.csv)\n"
    "  generate  write the configured population as CSV (--out FILE, or stdout)\n"
    "  report    DIR/report.md and plots of a sweep's (or run's) trade-offs, with bootstrap\n"
    "            intervals over test days\n"
    "  plan      dry run: memory, bytes exchanged and step time across GPUs or ranks\n"
    "  info      version, build, CUDA devices, OpenMP threads\n";

// Flags of one command beyond the configuration keys.
struct CommandHelp {
  const char* name;
  const char* summary;
  const char* flags;  // command-specific flags, one per line
  bool keys;          // takes the configuration keys
};

const CommandHelp kCommands[] = {
    {"train", "eqpm train --out DIR [--config FILE] [--KEY VALUE ...]\n"
              "       eqpm train --resume DIR [--epochs N] [run settings]\n"
              "Trains one model and writes DIR (model, metrics, agents, summary). With --beta auto\n"
              "(the default) it trains one model per beta of --beta-grid into DIR/beta=<b>/ and\n"
              "ships into DIR the one the validation slice (the last --val-days days of training)\n"
              "prefers by the one-standard-error rule; DIR/beta_auto.csv says which and why.\n"
              "Ctrl-C or SIGTERM stops after the current step with a checkpoint; --resume DIR\n"
              "continues it exactly (a checkpoint is also written every --checkpoint-minutes).\n",
     "  --resume DIR           continue the run in DIR (only --epochs and run settings\n"
     "                         such as --out, --threads, --backend, --quiet may be given)\n",
     true},
    {"sweep", "eqpm sweep --q LIST --out DIR [--config FILE] [--KEY VALUE ...]\n"
              "       eqpm sweep --objective LIST --out DIR [...]\n"
              "       eqpm sweep --resume DIR --q LIST [--epochs N] [run settings]\n"
              "Trains the plain (beta = 1) baseline and one model per q (or per objective: a\n"
              "folder cvar=0.1 for cvar:0.1); writes DIR/plain/, DIR/q=<v>/, DIR/sweep.csv. A sweep\n"
              "stopped by Ctrl-C continues with --resume DIR and the same list (a longer list\n"
              "continues into the new runs). With --beta\n"
              "auto (the default) each q run trains the grid's other betas into DIR/q=<v>/beta=<b>/,\n"
              "plain serving as its beta = 1 candidate, and ships the validation slice's choice.\n",
     "  --resume DIR           continue the sweep stopped in DIR: each begun run from its\n"
     "                         checkpoint (only --epochs and run settings may be given)\n"
     "  --q LIST               q values, e.g. 0,1,4,19 (TOML: q = [0, 1, 4, 19])\n"
     "  --objective LIST       objectives instead of q values: cvar:0.5,0.2,0.05 or a mix of\n"
     "                         kinds, power:0,4,tilt:2,cvar:0.1 (a bare number continues the\n"
     "                         kind before it; tilt-groups takes its numbers in pairs)\n"
     "  --check                exit 1 when a model is not the best of the sweep at its own\n"
     "                         training-split objective (mq_check.csv names the models beating it)\n"
     "  --check-tol X          margin over the lowest M_q that fails the check [0.01]\n",
     true},
    {"backtest",
     "eqpm backtest --from DATE --to DATE --out DIR [--refit month|week|Nd] [--window DAYS]\n"
     "                     [--q LIST] [--warm-start-folds true|false] [--KEY VALUE ...]\n"
     "Rolling-origin evaluation. The period [--from, end of --to] is cut into folds (calendar\n"
     "months by default). For each fold, the plain (beta = 1) model and one model per q are\n"
     "trained on the rows whose whole target window ends before the fold starts and tested\n"
     "on the rows that start inside it. Writes DIR/<run>/fold-<k>/ (train output folders),\n"
     "DIR/backtest.csv (per run and fold, plus fold_start = all: each agent's regret averaged\n"
     "over every test hour of every fold), DIR/backtest.png (needs python3 + matplotlib).\n"
     "With --beta auto (the default) every fold of a q run ships the beta its validation\n"
     "slice prefers (DIR/beta_auto.csv: every candidate's validation and test M_q).\n",
     "  --from DATE            first test day (YYYY-MM-DD, UTC) or timestamp\n"
     "  --to DATE              last test day, inclusive (or a timestamp: the end, exclusive)\n"
     "  --refit P              month (calendar months), week, or Nd (N days) [month]\n"
     "  --window DAYS          train on the last DAYS days before each fold [0: all earlier data]\n"
     "  --q LIST               q values besides the plain baseline [0,1,4,19]\n"
     "  --objective LIST       objectives instead of --q, e.g. power:0,4,cvar:0.1 (each run's\n"
     "                         beta auto choice is made on its own objective)\n"
     "  --warm-start-folds B   fold k > 1 starts from fold k-1's model of the same run and\n"
     "                         trains max(2, epochs/4) epochs without the MSE warm start, the\n"
     "                         lr decay period scaled alike; false: every fold from scratch [true]\n",
     true},
    {"eval", "eqpm eval --model FILE.safetensors [--out DIR] [--series CSV] [--population CSV]\n"
             "Evaluates a saved model on both splits; the model's stored configuration gives\n"
             "every setting not given as a flag.\n",
     "  --model FILE           model.safetensors (or checkpoint.safetensors) to evaluate\n"
     "  --metric M             per-hour (default): each agent's regret averaged over the test\n"
     "                         hours; paper-mean: the paper's released metric, each agent's\n"
     "                         regret for the mean forecast over the split against the mean\n"
     "                         truth (the datacenter demand term averaged over the hours)\n", true},
    {"predict", "eqpm predict --model FILE.safetensors [--series CSV] [--from DATE --to DATE]\n"
                "                    [--out FILE.csv]\n"
                "Writes a timestamp and H forecast columns (h1..hH, in the series' units) for\n"
                "every start hour of the series, the hours after its end included. Without\n"
                "--series, the series the model was trained on (its stored configuration).\n",
     "  --model FILE           model.safetensors (or checkpoint.safetensors)\n"
     "  --from DATE, --to DATE first and last forecast start (YYYY-MM-DD or a timestamp)\n"
     "  --series, --column, --max-gap, --series-hours, --data-seed, --out FILE.csv\n",
     false},
    {"generate", "eqpm generate [--out FILE.csv] [--KEY VALUE ...]\n"
                 "Writes the population a run with these settings trains on (population.csv).\n",
     "", true},
    {"report", "eqpm report DIR [--bootstrap B] [--threads N] [--quiet]\n"
               "Re-evaluates every model of a sweep folder (or one run's folder) on its test split,\n"
               "day by day, and writes DIR/report.md with the models' regret figures and their\n"
               "95% bootstrap intervals over test days, the change against the plain model overall\n"
               "and per group (who gains, who pays), the Pareto-efficient models, and the plots\n"
               "pareto.png, pareto_mse.png, lorenz.png and gains.png. The runs' inputs are read\n"
               "from where their configuration names them.\n",
     "  --bootstrap B          resamples of the test days for the intervals (0: none) [1000]\n"
     "  --threads N, --quiet\n",
     false},
    {"plan", "eqpm plan --agents N (--gpus G | --ranks K) [--nodes M] [--KEY VALUE ...]\n"
             "A dry run, nothing is trained: memory per rank, bytes exchanged per step and a\n"
             "predicted step time for training across G GPUs (an H200 roofline estimate) or K CPU\n"
             "processes (the cost of an evaluation measured here by a short run on one core),\n"
             "with every assumption printed. Every agent is taken on the general regret path.\n"
             "flags:\n"
     "  --agents N             agents, e.g. 1e8\n"
     "  --gpus G | --ranks K   GPU ranks (one per GPU) or CPU processes\n"
     "  --nodes M              machines the ranks are spread over (divides G or K) [1]\n"
     "  --cpu-eval-ns T        CPU ranks: ns per agent-sample evaluation on one core, instead\n"
     "                         of measuring it\n"
     "  --batch, --samples, --horizon, --lookback, --hidden, --activation, --mix,\n"
     "  --threads (CPU ranks: cores per rank) as for train\n",
     "", false},
    {"info", "eqpm info\nPrints the version, build, CUDA devices and OpenMP threads.\n", "", false},
};

const CommandHelp* find_command(const std::string& name) {
  for (const auto& c : kCommands)
    if (name == c.name) return &c;
  return nullptr;
}

void print_keys() {
  std::printf("\nconfiguration keys (flag --KEY VALUE or TOML key = value) [default]:\n");
  RunConfig defaults;
  for (const auto& o : option_registry()) {
    std::string flag = "--" + o.key;
    for (char& c : flag)
      if (c == '_') c = '-';
    std::printf("  %-22s %-10s %s [%s]\n", flag.c_str(), o.type.c_str(), o.help.c_str(),
                o.get(defaults).c_str());
  }
}

void print_help(const std::string& command) {
  if (const CommandHelp* c = find_command(command)) {
    std::printf("usage: %s\n", c->summary);
    if (!c->keys) return;
    std::printf("flags:\n%s  --config FILE          TOML file of keys (flags override it)\n"
                "  --print-config         print the resulting configuration as TOML and stop\n"
                "  --help                 this text\n",
                c->flags);
    print_keys();
    return;
  }
  std::printf("%s\ncommand flags: --resume DIR (train), --q LIST (sweep), --model FILE (eval);\n"
              "common flags: --config FILE, --print-config, --help, --version\n",
              kUsage);
  print_keys();
}

// The known flag closest to `key` (dashes), or "" when none is close.
std::string closest_flag(const std::string& key) {
  std::vector<std::string> names = {"config", "resume", "model", "q",    "from", "bootstrap",
                                    "to",     "print-config", "help", "version",
                                    "check", "check-tol", "metric", "refit", "window",
                                    "warm-start-folds", "gpus", "ranks", "nodes",
                                    "cpu-eval-ns"};
  for (const auto& o : option_registry()) {
    std::string k = o.key;
    for (char& c : k)
      if (c == '_') c = '-';
    names.push_back(k);
  }
  std::string best;
  size_t best_d = std::max<size_t>(2, key.size() / 3) + 1;
  for (const auto& n : names) {
    const size_t d = edit_distance(key, n);
    if (d < best_d) {
      best_d = d;
      best = n;
    }
  }
  return best;
}

struct CommandLine {
  std::string command;
  RunConfig cfg;
  std::string config_file;
  std::string resume;
  std::string model;
  std::string q_list;
  std::string objective_list;  // sweep: --objective LIST (objectives.hpp's split_objectives)
  bool check = false;        // sweep: exit 1 when a model fails the objective check
  double check_tol = 0.01;   // sweep: margin over the lowest M_q that fails it
  std::vector<std::string> given;  // registry keys set by flags, in order
  std::string from, to;            // predict, backtest
  std::string metric;              // eval: per-hour | paper-mean
  std::string refit = "month";     // backtest
  int window_days = 0;             // backtest
  bool warm_start_folds = true;    // backtest
  std::string report_dir;          // report: the folder
  int bootstrap = 1000;            // report: resamples
  std::map<std::string, std::string> plan_flags;  // plan: agents, gpus, ranks, nodes, cpu-eval-ns
  bool print_config = false;
  bool help = false;
  bool version = false;
};

bool is_bool_text(const std::string& s) {
  return s == "true" || s == "false" || s == "1" || s == "0" || s == "yes" || s == "no" ||
         s == "on" || s == "off";
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  if (argc < 2) return cl;  // no command: usage, exit 2
  cl.command = argv[1];
  if (cl.command == "--help" || cl.command == "-h" || cl.command == "help") {
    cl.help = true;
    cl.command = argc > 2 ? argv[2] : "";
    return cl;
  }
  if (cl.command == "--version" || cl.command == "version") {
    cl.version = true;
    return cl;
  }
  if (!find_command(cl.command)) return cl;  // reported by the caller
  if (cl.command == "info" && argc > 2 && std::string(argv[2]) != "--help" &&
      std::string(argv[2]) != "-h")
    throw ConfigError("info takes no arguments, got '" + std::string(argv[2]) + "'");
  // Two passes: the config file first, then every flag over it, whatever their order.
  std::vector<std::pair<std::string, std::string>> flags;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      cl.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      if (cl.command != "report" || !cl.report_dir.empty())
        throw ConfigError("unexpected argument '" + arg + "'");
      cl.report_dir = arg;
      continue;
    }
    std::string key = arg.substr(2), value;
    bool has_value = false;
    if (const auto eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
      has_value = true;
    }
    for (char& c : key)
      if (c == '_') c = '-';
    if (key == "print-config") {
      cl.print_config = true;
      continue;
    }
    if (key == "warm-start-folds" && cl.command == "backtest" && !has_value &&
        (i + 1 >= argc || !is_bool_text(argv[i + 1]))) {
      cl.warm_start_folds = true;
      continue;
    }
    if (key == "check" && cl.command == "sweep") {
      cl.check = true;
      continue;
    }
    if (key == "version") {
      cl.version = true;
      continue;
    }
    const OptionSpec* spec = find_option(key);
    const bool negated = !spec && key.rfind("no-", 0) == 0 && find_option(key.substr(3)) &&
                         find_option(key.substr(3))->type == "bool";
    if (negated) {
      flags.emplace_back(key.substr(3), "false");
      continue;
    }
    if (!has_value) {
      if (spec && spec->type == "bool" && (i + 1 >= argc || !is_bool_text(argv[i + 1]))) {
        flags.emplace_back(key, "true");
        continue;
      }
      if (i + 1 >= argc) throw ConfigError("--" + key + ": expected a value");
      value = argv[++i];
      // "--lr --epochs 3" is a forgotten value, not a learning rate of "--epochs".
      if (value.rfind("--", 0) == 0)
        throw ConfigError("--" + key + ": expected a value, got the flag " + value);
    }
    if (cl.command == "plan" && (key == "agents" || key == "gpus" || key == "ranks" ||
                                 key == "nodes" || key == "cpu-eval-ns")) {
      cl.plan_flags[key] = value;
      continue;
    }
    if (cl.command == "plan" && spec && key != "batch" && key != "samples" && key != "horizon" &&
        key != "lookback" && key != "hidden" && key != "activation" && key != "mix" &&
        key != "threads")
      throw ConfigError("--" + key + ": not used by plan (see eqpm plan --help)");
    if (key == "config") cl.config_file = value;
    else if (key == "resume") cl.resume = value;
    else if (key == "model") cl.model = value;
    else if (key == "metric" && cl.command == "eval") cl.metric = value;
    else if ((key == "from" || key == "to") && (cl.command == "predict" || cl.command == "backtest"))
      (key == "from" ? cl.from : cl.to) = value;
    else if (key == "q" && (cl.command == "sweep" || cl.command == "backtest")) cl.q_list = value;
    else if (key == "objective" && (cl.command == "sweep" || cl.command == "backtest"))
      cl.objective_list = value;
    else if (key == "refit" && cl.command == "backtest") cl.refit = value;
    else if (key == "bootstrap" && cl.command == "report") {
      char* end = nullptr;
      const long b = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || end != value.c_str() + value.size() || b < 0 || b > 100000)
        throw ConfigError("--bootstrap: expected an integer in [0, 100000], got '" + value + "'");
      cl.bootstrap = static_cast<int>(b);
    }
    else if (key == "window" && cl.command == "backtest") {
      RunConfig tmp;
      set_option(tmp, "epochs", value, "--window");  // a positive integer
      cl.window_days = tmp.epochs;
    }
    else if (key == "warm-start-folds" && cl.command == "backtest") {
      RunConfig tmp;
      set_option(tmp, "quiet", value, "--warm-start-folds");
      cl.warm_start_folds = tmp.quiet;
    }
    else if (key == "check-tol" && cl.command == "sweep") {
      char* end = nullptr;
      const double tol = std::strtod(value.c_str(), &end);
      if (value.empty() || end != value.c_str() + value.size() || !(tol >= 0 && tol <= 1))
        throw ConfigError("--check-tol: expected a number in [0, 1], got '" + value + "'");
      cl.check_tol = tol;
    }
    else if (!spec) {
      const std::string near = closest_flag(key);
      throw ConfigError("--" + key + ": unknown flag" +
                        (near.empty() ? "" : "; did you mean --" + near + "?") + " (see eqpm " +
                        cl.command + " --help)");
    }
    else flags.emplace_back(key, value);
  }
  std::vector<double> file_qs;
  if (!cl.config_file.empty())
    load_config_toml(cl.config_file, cl.cfg,
                     cl.command == "sweep" || cl.command == "backtest" ? &file_qs : nullptr);
  if (cl.q_list.empty())
    for (double q : file_qs) cl.q_list += (cl.q_list.empty() ? "" : ",") + format_double(q);
  for (const auto& [k, v] : flags) {
    set_option(cl.cfg, k, v, "--" + k);
    cl.given.push_back(find_option(k)->key);
    cl.cfg.given_paths.erase(find_option(k)->key);  // a flag's path is as written
  }
  return cl;
}

std::vector<double> parse_q_list(const std::string& text) {
  std::vector<double> qs;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    RunConfig tmp;
    set_option(tmp, "q", item, "--q");
    qs.push_back(tmp.q);
  }
  if (qs.empty()) throw ConfigError("--q: expected a list such as 0,1,4,19");
  return qs;
}

// The sweep's objectives: --objective LIST, else power:q for each q of --q (0,1,4,19).
std::vector<std::string> sweep_objectives(const CommandLine& cl) {
  if (!cl.objective_list.empty()) {
    if (!cl.q_list.empty())
      throw ConfigError("--q and --objective: give one of them (--objective power:0,4 is --q 0,4)");
    return split_objectives(cl.objective_list);
  }
  std::vector<std::string> specs;
  for (double q : parse_q_list(cl.q_list.empty() ? "0,1,4,19" : cl.q_list))
    specs.push_back(power_objective(q)->spec());
  return specs;
}

void print_stats_line(const char* name, const RegretStats& s) {
  std::printf("  %-8s mean %-10.4g var %-10.4g p95-p5 %-10.4g max %-10.4g jain %.4f  mse %.4g\n",
              name, s.mean, s.var, s.p95 - s.p5, s.max, s.jain, s.mse);
}

bool was_given(const CommandLine& cl, const std::string& key) {
  return std::find(cl.given.begin(), cl.given.end(), key) != cl.given.end();
}

// Settings that contradict each other: a default gives way to an explicit choice (with a
// note, unless !speak: under mpirun rank 0 speaks for all), and a flag that would be ignored
// is refused.
void reconcile(CommandLine& cl, bool speak) {
  RunConfig& cfg = cl.cfg;
  if (cfg.warm_start_epochs > cfg.epochs && !was_given(cl, "warm_start_epochs")) {
    const int w = std::max(0, cfg.epochs - 1);
    if (speak) std::fprintf(stderr,
                 "eqpm: note: %d epochs are fewer than the %d warm-start epochs; warm start set "
                 "to %d so that the last epoch trains on the objective (--warm-start-epochs "
                 "chooses)\n",
                 cfg.epochs, cfg.warm_start_epochs, w);
    cfg.warm_start_epochs = w;
  }
  for (const char* key : {"agents", "mix"})
    if (!cfg.population.empty() && was_given(cl, key))
      if (speak) std::fprintf(stderr,
                   "eqpm: note: --%s is ignored: the agents come from --population %s (--agents "
                   "and --mix only shape a generated population)\n",
                   key, cfg.population.c_str());
  if (cfg.population.empty() && cfg.agents > 0) {
    double total = 0;
    std::stringstream ss(cfg.mix);
    std::string item;
    while (std::getline(ss, item, ','))
      if (const auto eq = item.find('='); eq != std::string::npos)
        total += std::strtod(item.c_str() + eq + 1, nullptr);
    if (std::fabs(total - 1.0) > 1e-9 && total > 0) {
      std::string scaled;
      for (const auto& [f, w] : parse_mix(cfg.mix))
        scaled += (scaled.empty() ? "" : ",") + std::string(family_name(f)) + "=" +
                  format_double(std::round(w * 1e4) / 1e4);
      if (speak) std::fprintf(stderr, "eqpm: note: --mix fractions sum to %s; used as %s\n",
                   format_double(total).c_str(), scaled.c_str());
    }
  }
}

int cmd_info(const World& world) {
  if (world.rank != 0) return 0;  // under mpirun, rank 0 speaks for all
  std::printf("eqpm %s (%s build)\n", EQPM_VERSION, EQPM_BUILD_TYPE);
  std::printf("commit: %s\n", build_commit());
  std::printf("CUDA backend compiled in: %s\n", cuda_compiled() ? "yes" : "no");
#ifdef EQPM_WITH_MPI
  std::printf("MPI compiled in: yes; ranks: %d (this is rank %d%s)\n", world.size, world.rank,
              world.mpi ? "" : ", not started by mpirun");
#else
  std::printf("MPI compiled in: no; ranks: %d\n", world.size);
#endif
  const auto gpus = cuda_device_descriptions();
  std::printf("visible CUDA devices: %zu\n", gpus.size());
  for (const auto& g : gpus) std::printf("  %s\n", g.c_str());
  std::printf("OpenMP threads: %d\n", omp_get_max_threads());
  std::printf("limits: horizon <= %d, layers <= %d, width <= %d, samples <= %d\n", kMaxHorizon,
              kMaxLayers, kMaxWidth, kMaxSamples);
  return 0;
}

void print_stage_profile(const RunOutcome& o) {
  const StageTimes& t = o.stages;
  const double total = t.forward + t.sampling + t.regrets + t.reductions + t.backward + t.optimiser;
  std::fprintf(stderr, "stage profile (%s backend, %ld steps):\n", o.backend.c_str(), o.train.steps);
  auto line = [&](const char* name, double s) {
    std::fprintf(stderr, "  %-11s %9.3f s  %5.1f%%  %8.3f ms/step\n", name, s,
                 total > 0 ? 100 * s / total : 0.0, o.train.steps ? 1e3 * s / o.train.steps : 0.0);
  };
  line("forward", t.forward);
  line("sampling", t.sampling);
  line("regrets", t.regrets);
  line("reductions", t.reductions);
  line("backward", t.backward);
  line("optimiser", t.optimiser);
  line("evaluation", t.evaluation);
}

// The signal's name for messages.
const char* signal_name(int sig) { return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a signal"; }

// Says where a stopped run left its checkpoint and how to continue it; the exit status.
int report_interrupted(const RunOutcome& o) {
  const int sig = interrupt_signal();
  const auto ckpt = std::filesystem::path(o.out_dir) / "checkpoint.safetensors";
  // A --beta auto run's checkpoints are its candidates' (beta=<b>/).
  const std::string where = std::filesystem::exists(ckpt)
                                ? ckpt.string()
                                : (std::filesystem::path(o.out_dir) / "beta=*/").string();
  std::fprintf(stderr,
               "eqpm: stopped by %s after step %ld of %ld; checkpoint written to %s\n"
               "resume with: eqpm train --resume %s\n",
               signal_name(sig), o.interrupted_at, o.total_steps, where.c_str(),
               o.out_dir.c_str());
  return 128 + sig;
}

// A folder this command created that holds no checkpoint (so nothing worth keeping) is
// removed when the command fails, so that it never looks like results.
class OutputFolderGuard {
 public:
  explicit OutputFolderGuard(const std::string& dir)
      : dir_(dir), created_(!dir.empty() && !std::filesystem::exists(dir)) {}
  ~OutputFolderGuard() {
    if (!created_ || done_) return;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->path().filename() == "checkpoint.safetensors") return;
    std::filesystem::remove_all(dir_, ec);
  }
  void keep() { done_ = true; }
  OutputFolderGuard(const OutputFolderGuard&) = delete;
  OutputFolderGuard& operator=(const OutputFolderGuard&) = delete;

 private:
  std::string dir_;
  bool created_;
  bool done_ = false;
};

// The configuration as --print-config shows it: TOML whose input paths are absolute, so
// that the text stays valid wherever it is saved (a configuration file's relative paths
// are relative to its own folder).
std::string printable_config(RunConfig cfg) {
  for (const char* key : kInputPathKeys) {
    const OptionSpec* o = find_option(key);
    const std::string v = o->get(cfg);
    if (v.empty()) continue;
    std::error_code ec;
    const std::filesystem::path abs = std::filesystem::absolute(v, ec);
    if (!ec) o->set(cfg, abs.lexically_normal().string());
  }
  return config_to_toml(cfg);
}

// Removes the entries of `dir` that `stale` selects (by entry), what an earlier run of
// another shape left there; `what` names that run in the error.
void remove_stale_entries(const std::string& dir, const char* what,
                          const std::function<bool(const std::filesystem::directory_entry&)>& stale) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> doomed;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (stale(e)) doomed.push_back(e.path());
  for (const auto& p : doomed) {
    fs::remove_all(p, ec);
    if (ec) throw Error("cannot remove '" + p.string() + "' of an earlier " + what + ": " + ec.message());
  }
}

// With --overwrite, what an earlier sweep left in `dir` (run folders, tables, plots) is
// removed, so that no result of another q list remains beside the new ones.
void remove_earlier_sweep(const std::string& dir) {
  remove_stale_entries(dir, "sweep", [](const std::filesystem::directory_entry& e) {
    const std::string name = e.path().filename().string();
    bool run_folder = name == "plain";
    for (const char* kind : {"q=", "tilt=", "maxmin=", "cvar=", "group-power=", "tilt-groups="})
      run_folder = run_folder || name.rfind(kind, 0) == 0;
    return (e.is_directory() && run_folder) ||
           (e.is_regular_file() && (e.path().extension() == ".png" || name == "sweep.csv" ||
                                    name == "mq_check.csv" || name == "mq_check_val.csv" ||
                                    name == "backtest.csv" || name == "beta_auto.csv"));
  });
}

int cmd_train(CommandLine& cl, const World& world) {
  RunConfig cfg = cl.cfg;
  // Under mpirun every rank trains the same runs, reading the same inputs and checkpoints
  // (one shared file system); rank 0 alone writes the folder and prints.
  const bool writer = world.writer();
  if (!cl.resume.empty()) {
    if (!cl.config_file.empty())
      throw ConfigError("--config cannot be combined with --resume: the run's configuration is "
                        "stored in its checkpoint (give --epochs or run settings as flags)");
    const ResumedRun resumed = resumed_run(cl.resume, cl.cfg, cl.given);
    cfg = resumed.cfg;
    world.silence_if_not_writer(cfg);
    if (resumed.checkpoint.empty()) {  // a --beta auto run: each candidate resumes
      if (cl.print_config) {
        if (writer) std::printf("%s", printable_config(cfg).c_str());
        return 0;
      }
      RunInputs in = load_inputs(cfg);
      in.reducer = world.reducer;
      double chosen = 1;
      const RunOutcome o = train_beta_auto(cfg, in, nullptr, &chosen, nullptr, true);
      if (o.interrupted_at >= 0) return writer ? report_interrupted(o) : 128 + interrupt_signal();
      if (!writer) return 0;
      std::printf("resumed and finished %s (beta auto: validation picked beta %s): test mean "
                  "regret %.5g, max %.5g\n", cfg.out.c_str(), format_double(chosen).c_str(),
                  o.test_stats.mean, o.test_stats.max);
      return 0;
    }
    if (cl.print_config) {
      if (writer) std::printf("%s", printable_config(cfg).c_str());
      return 0;
    }
    const bool same_folder = std::filesystem::weakly_canonical(cfg.out) ==
                             std::filesystem::weakly_canonical(cl.resume);
    OutputFolderGuard guard(same_folder || !writer ? std::string() : cfg.out);
    if (!same_folder && writer) ensure_output_dir(cfg.out, cfg.overwrite);
    RunInputs in = load_inputs(cfg);
    in.reducer = world.reducer;
    const RunOutcome o = train_run(cfg, in, resumed.checkpoint);
    guard.keep();
    if (o.interrupted_at >= 0) return writer ? report_interrupted(o) : 128 + interrupt_signal();
    if (!writer) return 0;
    if (cfg.profile) print_stage_profile(o);
    std::printf("resumed and finished %s: test mean regret %.5g, max %.5g\n", cfg.out.c_str(),
                o.test_stats.mean, o.test_stats.max);
    return 0;
  }
  if (cl.print_config) {
    validate(cfg);
    if (writer) std::printf("%s", printable_config(cfg).c_str());
    return 0;
  }
  if (cfg.out.empty()) throw ConfigError("--out: an output folder is required");
  validate(cfg);
  world.silence_if_not_writer(cfg);
  OutputFolderGuard guard(writer ? cfg.out : std::string());
  if (writer) ensure_output_dir(cfg.out, cfg.overwrite);
  if (writer && cfg.overwrite)  // an earlier --beta auto run's candidates and choice go with its results
    remove_stale_entries(cfg.out, "run", [&](const std::filesystem::directory_entry& e) {
      const std::string name = e.path().filename().string();
      return (e.is_directory() && name.rfind("beta=", 0) == 0) || name == "beta_auto.csv" ||
             (cfg.beta_auto && name == "checkpoint.safetensors");
    });
  RunInputs in = load_inputs(cfg);
  in.reducer = world.reducer;
  double chosen = cfg.beta;
  const RunOutcome o = cfg.beta_auto ? train_beta_auto(cfg, in, nullptr, &chosen) : train_run(cfg, in);
  guard.keep();
  if (!writer) return o.interrupted_at >= 0 ? 128 + interrupt_signal() : 0;
  if (o.interrupted_at >= 0) return report_interrupted(o);
  if (cfg.beta_auto)
    std::printf("beta auto: the validation %s picked beta %s (%s/beta_auto.csv)\n",
                objective_spec(cfg).c_str(), format_double(chosen).c_str(), cfg.out.c_str());
  if (cfg.profile) print_stage_profile(o);
  std::printf("trained %ld steps in %.1f s (%s backend, %ld agents)\n", o.train.steps,
              o.train.seconds, o.backend.c_str(), in.population.size());
  print_stats_line("test", o.test_stats);
  print_stats_line("train", o.train_stats);
  std::printf("wrote %s\n", cfg.out.c_str());
  return 0;
}

int cmd_sweep(CommandLine& cl, const World& world) {
  RunConfig base = cl.cfg;
  // Under mpirun each run trains across every rank, as eqpm train does; rank 0 writes and prints.
  const bool writer = world.writer();
  if (cl.print_config) {
    if (!writer) return 0;
    validate(base);
    // The sweep's q values replace the single q of a run (TOML: q = [0, 4]).
    std::string toml = printable_config(base);
    const std::vector<double> qs = parse_q_list(cl.q_list.empty() ? "0,1,4,19" : cl.q_list);
    std::string list;
    for (double q : qs) list += (list.empty() ? "" : ", ") + format_double(q);
    const auto at = toml.find("\nq = ");
    if (at != std::string::npos)
      toml.replace(at + 1, toml.find('\n', at + 1) - at - 1, "q = [" + list + "]");
    std::printf("%s", toml.c_str());
    return 0;
  }
  const std::vector<std::string> specs = sweep_objectives(cl);
  const bool resume = !cl.resume.empty();
  if (resume) {
    if (!cl.config_file.empty())
      throw ConfigError("--config cannot be combined with --resume: the sweep's configuration is "
                        "stored in its runs' checkpoints (give --epochs or run settings as flags)");
    if (!base.out.empty() && std::filesystem::weakly_canonical(base.out) !=
                                 std::filesystem::weakly_canonical(cl.resume))
      throw ConfigError("--out: a sweep resumes in its own folder (" + cl.resume +
                        "); leave --out out or give the same folder");
    base = resumed_sweep_config(cl.cfg, cl.given, specs, cl.resume);
    base.out = cl.resume;
  }
  if (base.out.empty()) throw ConfigError("--out: an output folder is required");
  validate(base);
  world.silence_if_not_writer(base);
  OutputFolderGuard guard(resume || !writer ? std::string() : base.out);
  if (!resume && writer) {
    ensure_output_dir(base.out, base.overwrite);
    if (base.overwrite) remove_earlier_sweep(base.out);
  }
  RunInputs in = load_inputs(base);
  in.reducer = world.reducer;
  Sweep sw = run_sweep(base, specs, in, resume);
  if (sw.interrupted) {
    guard.keep();
    if (!writer) return 128 + interrupt_signal();
    report_interrupted(sw.stopped);
    std::fprintf(stderr, "the sweep's remaining runs were not started; sweep.csv is not written; "
                         "continue with: eqpm sweep --resume %s and the same list\n", base.out.c_str());
    return 128 + interrupt_signal();
  }
  guard.keep();
  // The objective check and the tables need nothing from the other ranks.
  if (!writer) return 0;
  if (base.profile)  // runs trained once (with --beta auto, only plain)
    for (const SweepRun& r : sw.runs)
      if (r.name == "plain" || !base.beta_auto) print_stage_profile(r.outcome);
  // Claim 1 of DESIGN.md 6: the model trained at q has the lowest training-split M_q of
  // the sweep (and, when models are selected on it, the lowest validation M_q).
  const SweepCheck train_check = check_sweep(sw, in, cl.check_tol, false);
  SweepCheck val_check;
  if (base.select == Select::val) val_check = check_sweep(sw, in, cl.check_tol, true);
  write_sweep_tables(base.out, sw, train_check, base.select == Select::val ? &val_check : nullptr);

  std::printf("\nper-agent regret, %ld agents (%s), %s\n", in.population.size(),
              base.mix.c_str(), in.series.source.c_str());
  int name_width = 8;  // as wide as the longest run name ("group-power=4")
  for (const auto& r : sw.runs) name_width = std::max(name_width, static_cast<int>(r.name.size()));
  for (const char* split : {"test", "train"}) {
    std::printf("\n%s split:\n%-*s %5s %11s %11s %11s %11s %11s %8s %11s\n", split, name_width, "run",
                "beta", "mean", "var", "p5", "p95-p5", "max", "jain", "mse");
    for (const auto& r : sw.runs) {
      const RegretStats& s = std::string(split) == "test" ? r.outcome.test_stats : r.outcome.train_stats;
      std::printf("%-*s %5s %11.5g %11.5g %11.5g %11.5g %11.5g %8.4f %11.5g\n", name_width, r.name.c_str(),
                  format_double(r.beta).c_str(), s.mean, s.var, s.p5, s.p95 - s.p5, s.max, s.jain,
                  s.mse);
    }
  }
  const bool power_sweep = std::all_of(specs.begin(), specs.end(),
                                       [](const std::string& f) { return f.rfind("power:", 0) == 0; });
  for (const bool validation : {false, true}) {
    if (validation && base.select != Select::val) continue;
    const SweepCheck& c = validation ? val_check : train_check;
    if (base.beta_auto)
      std::printf("\n(beta: the one the validation slice chose; the check below is of the "
                  "optimiser, on the models trained at beta %s and plain)",
                  format_double(sw.checked().back().beta).c_str());
    std::printf(power_sweep ? "\n%s power mean M_q of each model (rows: q of the measure):\n%s"
                            : "\n%s objective of each model (rows: the objective measured):\n%s",
                validation ? "validation-slice" : "training-split",
                objective_check_table(c.models, c.rows, cl.check_tol).c_str());
  }
  const bool all_pass = train_check.pass() && (base.select != Select::val || val_check.pass());
  std::printf("\nwrote %s (sweep.csv, mq_check.csv and one folder per run)\n", base.out.c_str());
  if (cl.check && !all_pass) {
    std::fprintf(stderr, "eqpm sweep --check: a model is not the best at its own objective (see the table)\n");
    return 1;
  }
  return 0;
}

// A model file, with errors that say which flag named it and what was expected.
ModelFile load_model_argument(const std::string& path) {
  if (path.empty()) throw ConfigError("--model: a model file is required (DIR/model.safetensors)");
  try {
    return load_model(path);
  } catch (const Error& e) {
    throw ConfigError("--model " + path + ": not a readable eqpm model (a model.safetensors or " +
                      "checkpoint.safetensors written by eqpm train): " + e.what());
  }
}

RunConfig model_config(const ModelFile& m, const std::string& path) {
  RunConfig cfg;
  if (auto it = m.metadata.find("eqpm.config"); it != m.metadata.end())
    cfg = config_from_json(it->second, path);
  return cfg;
}

int cmd_predict(CommandLine& cl) {
  const ModelFile m = load_model_argument(cl.model);
  RunConfig cfg = model_config(m, cl.model);
  for (const std::string& key : cl.given) {
    if (key != "series" && key != "column" && key != "max_gap" && key != "series_hours" &&
        key != "data_seed" && key != "out" && key != "quiet" && key != "threads")
      throw ConfigError("--" + key + ": not used by predict (see eqpm predict --help)");
    find_option(key)->set(cfg, find_option(key)->get(cl.cfg));
  }
  Series series;
  if (cfg.series.empty()) {
    series = synthetic_series(cfg.series_hours, cfg.data_seed);
  } else {
    series = load_series_csv(cfg.series, cfg.column, cfg.max_gap, nullptr);
  }
  PredictRange range;
  if (!cl.from.empty()) range = {true, false, parse_date_argument(cl.from, "--from"), 0};
  if (!cl.to.empty()) {
    range.has_to = true;
    range.to = parse_date_argument(cl.to, "--to");
  }
  const std::string csv = predict_csv(m, series, range);
  bool out_given = false;
  for (const std::string& key : cl.given) out_given = out_given || key == "out";
  if (!out_given) {
    std::cout << csv;
    return 0;
  }
  write_file_atomic(cl.cfg.out, csv);
  const long rows = static_cast<long>(std::count(csv.begin(), csv.end(), '\n')) - 1;
  if (!cfg.quiet)
    std::fprintf(stderr, "wrote %ld forecasts of %d hours to %s (series: %s, scaling from the model)\n",
                 rows, m.layout.output_dim(), cl.cfg.out.c_str(),
                 cfg.series.empty() ? "synthetic" : cfg.series.c_str());
  return 0;
}

int cmd_eval(CommandLine& cl, const World& world) {
  // Under mpirun every rank evaluates the model in full (the same bits); rank 0 writes and prints.
  const bool writer = world.writer();
  const ModelFile m = load_model_argument(cl.model);
  RunConfig cfg = model_config(m, cl.model);
  // Explicit flags (series, population, ...) override the model's own configuration.
  RunConfig flags_only = cl.cfg;
  RunConfig defaults;
  for (const auto& o : option_registry())
    if (o.get(flags_only) != o.get(defaults)) o.set(cfg, o.get(flags_only));
  if (cfg.out == RunConfig().out || !cl.cfg.out.empty()) cfg.out = cl.cfg.out;
  // Run settings (quiet, threads, backend, ...) are this command's, not the training run's.
  for (const auto& o : option_registry())
    if (o.is_run_setting) o.set(cfg, o.get(cl.cfg));
  for (const char* key : {"hidden", "activation"})
    if (was_given(cl, key))
      throw ConfigError("--" + std::string(key) + ": the model file fixes the network (" +
                        std::to_string(m.layout.layers) + " layers, " +
                        activation_name(m.layout.activation) + "); eval takes it from " +
                        cl.model + " (drop --" + key + ")");
  if (m.layout.input_dim() != cfg.lookback + 2 || m.layout.output_dim() != cfg.horizon)
    throw InputError(cl.model, 0, 0, "model shape does not match lookback/horizon of the configuration");
  cfg.hidden.clear();
  for (int l = 1; l < m.layout.layers; ++l) cfg.hidden.push_back(m.layout.width[l]);
  cfg.activation = m.layout.activation;
  if (cl.print_config) {
    validate(cfg);
    if (writer) std::printf("%s", printable_config(cfg).c_str());
    return 0;
  }
  world.silence_if_not_writer(cfg);
  // The population saved beside the model, unless flags name or shape another one.
  const std::string saved_pop =
      (std::filesystem::path(cl.model).parent_path() / "population.csv").string();
  bool other_population = false;
  for (const char* key : {"population", "agents", "mix", "pop_seed", "ev_sessions", "ev_sample"})
    other_population = other_population || was_given(cl, key);
  for (const auto& o : option_registry())
    if (o.key.rfind("dc_", 0) == 0 || o.key.rfind("ev_", 0) == 0 || o.key.rfind("inv_", 0) == 0)
      other_population = other_population || was_given(cl, o.key);
  if (!other_population && std::filesystem::exists(saved_pop)) {
    cfg.population = saved_pop;
    cfg.ev_sessions.clear();  // its agents are in the saved file
  }
  if (!cfg.out.empty() && writer) std::filesystem::create_directories(cfg.out);
  RunInputs in = load_inputs(cfg);
  in.reducer = world.reducer;
  // The model's own normalisation, never one recomputed on another series.
  const std::string scaling_note =
      use_model_normalisation(m.metadata, cfg, in)
          ? "the model's (offset " + m.metadata.at("eqpm.offset") + ", scale " +
                m.metadata.at("eqpm.scale") + ")"
          : "recomputed on the series (the model stores none)";
  if (!cfg.quiet)
    std::fprintf(stderr, "eval: series %s; population %s (%ld agents); scaling %s\n",
                 cfg.series.empty() ? "synthetic" : cfg.series.c_str(),
                 cfg.population.empty() ? "generated from the configuration" : cfg.population.c_str(),
                 in.population.size(), scaling_note.c_str());
  EvalMetric metric = EvalMetric::per_hour;
  if (cl.metric == "paper-mean") metric = EvalMetric::paper_mean;
  else if (!cl.metric.empty() && cl.metric != "per-hour")
    throw ConfigError("--metric: expected per-hour or paper-mean, got '" + cl.metric + "'");
  const RunOutcome o = evaluate_model(cfg, in, m.params, metric);
  if (!writer) return 0;
  std::printf("evaluated %s on %ld agents (%s)\n", cl.model.c_str(), in.population.size(),
              metric == EvalMetric::paper_mean
                  ? "paper-mean regret: each agent scored on the split's mean forecast"
                  : "per-hour regret");
  print_stats_line("test", o.test_stats);
  print_stats_line("train", o.train_stats);
  std::printf("%s\n", stats_to_json(o.test_stats).c_str());
  return 0;
}

int cmd_report(const CommandLine& cl) {
  for (const std::string& key : cl.given)
    if (key != "threads" && key != "quiet")
      throw ConfigError("--" + key + ": not used by report (see eqpm report --help)");
  if (cl.report_dir.empty())
    throw ConfigError("report: expected a folder, e.g. eqpm report runs/sweep (see eqpm report --help)");
  ReportOptions opt;
  opt.bootstrap = cl.bootstrap;
  opt.threads = cl.cfg.threads;
  opt.quiet = cl.cfg.quiet;
  for (const std::string& path : write_report(cl.report_dir, opt)) std::printf("wrote %s\n", path.c_str());
  return 0;
}

int cmd_backtest(CommandLine& cl, const World& world) {
  RunConfig base = cl.cfg;
  // Under mpirun each fold's training runs across every rank; rank 0 writes and prints.
  const bool writer = world.writer();
  for (const char* key : {"train_from", "train_until", "test_from", "test_until"})
    if (was_given(cl, key) || !find_option(key)->get(base).empty()) {
      std::string flag = std::string("--") + key;
      std::replace(flag.begin(), flag.end(), '_', '-');
      throw ConfigError(flag + ": backtest sets each fold's split itself (use --from, --to and "
                        "--window)");
    }
  if (cl.print_config) {
    validate(base);
    if (writer) std::printf("%s", printable_config(base).c_str());
    return 0;
  }
  if (cl.from.empty() || cl.to.empty())
    throw ConfigError(std::string(cl.from.empty() ? "--from" : "--to") +
                      ": backtest needs the test period, e.g. --from 2022-07-01 --to 2022-12-31");
  if (base.out.empty()) throw ConfigError("--out: an output folder is required");
  BacktestOptions opt;
  opt.from = parse_date_argument(cl.from, "--from");
  {
    std::int64_t to = 0;
    bool date_only = false;
    std::string why;
    if (!parse_date(cl.to, &to, &date_only, &why))
      throw ConfigError("--to: expected a date YYYY-MM-DD or a timestamp, got '" + cl.to + "' (" +
                        why + ")");
    opt.to = date_only ? to + 86400 : to;  // a date: through its last hour
  }
  if (opt.to <= opt.from)
    throw ConfigError("--to " + cl.to + " is not after --from " + cl.from);
  opt.refit = parse_refit(cl.refit);
  opt.window_days = cl.window_days;
  opt.objectives = sweep_objectives(cl);
  opt.warm_start = cl.warm_start_folds;
  opt.out = base.out;
  validate(base);
  world.silence_if_not_writer(base);
  OutputFolderGuard guard(writer ? base.out : std::string());
  if (writer) {
    ensure_output_dir(base.out, base.overwrite);
    if (base.overwrite) remove_earlier_sweep(base.out);  // run folders of another q list, plots
  }
  RunInputs in = load_inputs(base);
  in.reducer = world.reducer;
  const BacktestResult r = run_backtest(base, in, opt);
  if (r.stopped) {
    guard.keep();
    if (!writer) return 128 + interrupt_signal();
    report_interrupted(r.stopped_run);
    std::fprintf(stderr, "the backtest's remaining folds were not run; backtest.csv is not written\n");
    return 128 + interrupt_signal();
  }
  guard.keep();
  if (!writer) return 0;
  write_file_atomic((std::filesystem::path(base.out) / "backtest.csv").string(), backtest_csv(r));
  if (!r.beta_auto.empty())
    write_file_atomic((std::filesystem::path(base.out) / "beta_auto.csv").string(), beta_auto_csv(r));
  std::printf("%s", backtest_table(r, opt).c_str());
  std::string why;
  if (plot_backtest(base.out, &why))
    std::printf("\nwrote %s (backtest.csv, backtest.png, one folder per run and fold)\n",
                base.out.c_str());
  else
    std::printf("\nwrote %s (backtest.csv, one folder per run and fold); backtest.png not "
                "written: %s\n", base.out.c_str(), why.c_str());
  return 0;
}

int cmd_generate(CommandLine& cl) {
  // Exactly the population a run with these settings trains on (generated or read, plus
  // --ev-sessions agents, with the demand profile the datacenter rules need).
  if (cl.print_config) {
    validate(cl.cfg);
    std::printf("%s", printable_config(cl.cfg).c_str());
    return 0;
  }
  const RunInputs in = load_inputs(cl.cfg);
  const RunConfig& cfg = cl.cfg;
  const Population& p = in.population;
  std::ostringstream os;
  write_population_csv(p, os);
  if (cfg.out.empty()) {
    std::cout << os.str();
  } else {
    write_file_atomic(cfg.out, os.str());
    std::fprintf(stderr, "wrote %ld agents to %s\n", p.size(), cfg.out.c_str());
  }
  return 0;
}

// A plan flag's number: a whole number, or a real one where `real`, written as 1e8 or 100000000.
double plan_number(const CommandLine& cl, const std::string& key, bool real, const char* example) {
  const auto it = cl.plan_flags.find(key);
  if (it == cl.plan_flags.end()) return 0;
  const std::string& v = it->second;
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno != 0 || !std::isfinite(x) ||
      (!real && std::floor(x) != x))
    throw ConfigError("--" + key + ": expected " + (real ? "a number" : "a whole number") + " such as " +
                      example + ", got '" + v + "'");
  return x;
}

// Seconds per agent-sample regret evaluation of one core here: a short run of whole
// training steps on the general path (every agent evaluated on every sample), divided by N B S.
double measure_cpu_evaluation(RunConfig cfg) {
  cfg.agents = 2000;
  cfg.series_hours = 24 * 60;
  cfg.population.clear();
  cfg.ev_sessions.clear();
  cfg.quiet = true;
  const RunInputs in = load_inputs(cfg);
  auto backend = make_backend("cpu", 1);
  Problem p = make_problem(cfg, in);
  p.regret_path = RegretPath::generic;
  backend->setup(p);
  StepSpec spec;
  spec.beta = 0.1;
  spec.lr = 1e-6;
  for (long b = 0; b < cfg.batch; ++b) spec.rows.push_back((b * 37) % in.data.fit_rows);
  backend->step(spec);  // the first step takes the two-pass route; measure the steady state
  double best = 1e300;
  for (std::uint32_t step = 1; step <= 5; ++step) {
    spec.step = step;
    const auto t0 = std::chrono::steady_clock::now();
    backend->step(spec);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best / (static_cast<double>(in.population.size()) * cfg.batch * cfg.samples);
}

int cmd_plan(const CommandLine& cl) {
  const RunConfig& cfg = cl.cfg;
  const bool gpus = cl.plan_flags.count("gpus") > 0, ranks = cl.plan_flags.count("ranks") > 0;
  if (gpus == ranks)
    throw ConfigError(gpus ? "--gpus and --ranks: give one of them (GPU ranks or CPU ranks)"
                           : "--gpus or --ranks: plan needs one, e.g. --gpus 8 (GPU ranks) or "
                             "--ranks 4 (CPU processes)");
  if (!cl.plan_flags.count("agents"))
    throw ConfigError("--agents: plan needs the number of agents, e.g. --agents 1e8");
  if (cl.plan_flags.count("cpu-eval-ns") && gpus)
    throw ConfigError("--cpu-eval-ns: only for CPU ranks (--ranks); a GPU plan uses the roofline");
  validate(cfg);
  PlanInput in;
  in.gpu = gpus;
  in.agents = plan_number(cl, "agents", false, "1e8");
  const double k = plan_number(cl, gpus ? "gpus" : "ranks", false, "8");
  in.ranks = k >= 1 && k <= 65536 ? static_cast<int>(k) : (k < 1 ? 0 : 65537);
  const double nodes = cl.plan_flags.count("nodes") ? plan_number(cl, "nodes", false, "2") : 1;
  in.nodes = nodes >= 1 && nodes <= 65536 ? static_cast<int>(nodes) : 0;
  in.threads = cfg.threads > 0 ? cfg.threads : 1;
  in.batch = cfg.batch;
  in.samples = cfg.samples;
  in.horizon = cfg.horizon;
  const MlpLayout layout = make_mlp_layout(cfg.lookback + 2, cfg.hidden, cfg.horizon, cfg.activation);
  in.parameters = layout.parameter_count;
  in.activations = layout.activation_count();
  double total = 0;
  for (const auto& [f, w] : parse_mix(cfg.mix)) total += w;
  for (const auto& [f, w] : parse_mix(cfg.mix)) {
    if (w <= 0) continue;
    Families::for_each([&, f = f, w = w](auto fam) {
      using F = decltype(fam);
      if (F::tag != f) return;
      in.family_share.push_back(w / total);
      in.family_param_bytes.push_back(static_cast<double>(sizeof(typename F::Params)));
    });
  }
  in.host_agent_bytes = sizeof(Agent);
  in.cpu_eval_seconds = 1;  // checked below, once given or measured
  validate_plan(in);        // the flags' errors before a measurement
  if (!gpus) {
    if (cl.plan_flags.count("cpu-eval-ns")) {
      const double ns = plan_number(cl, "cpu-eval-ns", true, "25");
      if (!(ns > 0)) throw ConfigError("--cpu-eval-ns: expected a cost above 0 ns");
      in.cpu_eval_seconds = ns * 1e-9;
    } else {
      in.cpu_eval_seconds = measure_cpu_evaluation(cfg);
      std::printf("measured here: %.3g ns per agent-sample evaluation on one core (2000 agents "
                  "of this mix on the general path, the fastest of 5 steps)\n\n",
                  in.cpu_eval_seconds * 1e9);
    }
  }
  std::printf("%s", plan_report(in, plan(in)).c_str());
  return 0;
}

}  // namespace

// Output that never reached its destination (a full disk, a closed pipe) is an error.
int checked_exit(int rc) {
  errno = 0;
  std::cout.flush();
  if (std::fflush(stdout) != 0 || std::ferror(stdout) || !std::cout) {
    const int err = errno;
    std::fprintf(stderr, "eqpm: error: cannot write to standard output: %s\n",
                 err ? std::strerror(err) : "write failed");
    return rc == 0 ? 1 : rc;
  }
  return rc;
}

int run_command(int argc, char** argv, const World& world) {
  try {
    CommandLine cl = parse_command_line(argc, argv);
    if (cl.version) {
      std::printf("eqpm %s\n", EQPM_VERSION);
      return 0;
    }
    if (cl.help) {
      print_help(cl.command);
      return 0;
    }
    if (cl.command.empty()) {
      std::fprintf(stderr, "%s\nsee eqpm --help for every flag\n", kUsage);
      return 2;
    }
    if (cl.cfg.threads > 0) omp_set_num_threads(cl.cfg.threads);
    // Ranks sharing a machine share its cores (results do not depend on threads).
    else if (world.local_size > 1) omp_set_num_threads(std::max(1, omp_get_num_procs() / world.local_size));
    // train, sweep and backtest share each training's agents across the ranks; eval runs
    // in full on every rank; the rest are single-process commands.
    if (world.size > 1 && cl.command != "train" && cl.command != "sweep" &&
        cl.command != "backtest" && cl.command != "eval" && cl.command != "info")
      throw ConfigError("eqpm " + cl.command + ": not under MPI (train, sweep, backtest and "
                        "eval run across ranks; run it in one process)");
    if (((cl.command == "train" || cl.command == "sweep") && cl.resume.empty()) ||
        cl.command == "backtest" || cl.command == "generate")
      reconcile(cl, world.writer());
    if (cl.command == "train" || cl.command == "sweep" || cl.command == "backtest") {
      const InterruptHandlers handlers;
      return cl.command == "train" ? cmd_train(cl, world)
             : cl.command == "sweep" ? cmd_sweep(cl, world) : cmd_backtest(cl, world);
    }
    if (cl.command == "eval") return cmd_eval(cl, world);
    if (cl.command == "generate") return cmd_generate(cl);
    if (cl.command == "predict") return cmd_predict(cl);
    if (cl.command == "info") return cmd_info(world);
    if (cl.command == "plan") return cmd_plan(cl);
    if (cl.command == "report") return cmd_report(cl);
    std::fprintf(stderr, "eqpm: unknown command '%s'\n%s", cl.command.c_str(), kUsage);
    return 2;
  } catch (const eqpm::Error& e) {
    std::fprintf(stderr, "eqpm: error%s: %s\n", world.where().c_str(), e.what());
    return world.fail(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eqpm: internal error%s: %s\n", world.where().c_str(), e.what());
    return world.fail(3);
  }
}

int main(int argc, char** argv) {
  World world;
#ifdef EQPM_WITH_MPI
  // Under mpirun: rank r of K trains the same model with a K-th of the agents' evaluation.
  MpiSession mpi(&argc, &argv);
  std::unique_ptr<MpiReducer> reducer;
  if (mpi.active()) {
    reducer = std::make_unique<MpiReducer>();
    world.rank = mpi.rank();
    world.size = mpi.size();
    world.local_size = mpi.local_size();
    world.mpi = true;
    world.reducer = reducer.get();
    world.abort = [&mpi](int code) { mpi.abort(code); };
  }
#endif
  return checked_exit(run_command(argc, argv, world));
}
