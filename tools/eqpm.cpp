// The eqpm command-line program: train | sweep | eval | generate | info.
// Every configuration key is a flag (--warm-start-epochs 5) and a TOML key
// (warm_start_epochs = 5); flags override the file given with --config.
#include <omp.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "eqpm/atomic_file.hpp"
#include "eqpm/backend.hpp"
#include "eqpm/build_info.hpp"
#include "eqpm/checkpoint.hpp"
#include "eqpm/config.hpp"
#include "eqpm/config_toml.hpp"
#include "eqpm/error.hpp"
#include "eqpm/io.hpp"
#include "eqpm/objective.hpp"
#include "eqpm/run.hpp"

namespace {

using namespace eqpm;

const char* kUsage =
    "usage: eqpm <command> [--config FILE.toml] [--KEY VALUE ...]\n"
    "\n"
    "commands:\n"
    "  train     train one model and write the output folder (--out DIR)\n"
    "            --resume DIR continues from DIR/checkpoint.safetensors\n"
    "  sweep     train at each q of --q LIST plus the plain (beta = 1) baseline;\n"
    "            writes DIR/q=<v>/, DIR/plain/ and DIR/sweep.csv (--out DIR)\n"
    "  eval      evaluate --model FILE.safetensors on a series and population\n"
    "  generate  write the configured population as CSV (--out FILE, or stdout)\n"
    "  info      version, build, CUDA devices, OpenMP threads\n"
    "\n"
    "common flags: --config FILE, --print-config, --help; every key below is a flag:\n";

void print_help() {
  std::printf("%s", kUsage);
  RunConfig defaults;
  for (const auto& o : option_registry()) {
    std::string flag = "--" + o.key;
    for (char& c : flag)
      if (c == '_') c = '-';
    std::printf("  %-22s %-10s %s [%s]\n", flag.c_str(), o.type.c_str(), o.help.c_str(),
                o.get(defaults).c_str());
  }
}

struct CommandLine {
  std::string command;
  RunConfig cfg;
  std::string config_file;
  std::string resume;
  std::string model;
  std::string q_list;
  bool print_config = false;
  bool help = false;
};

bool is_bool_text(const std::string& s) {
  return s == "true" || s == "false" || s == "1" || s == "0" || s == "yes" || s == "no" ||
         s == "on" || s == "off";
}

CommandLine parse_command_line(int argc, char** argv) {
  CommandLine cl;
  if (argc < 2) {
    cl.help = true;
    return cl;
  }
  cl.command = argv[1];
  if (cl.command == "--help" || cl.command == "-h" || cl.command == "help") {
    cl.help = true;
    return cl;
  }
  // Two passes: the config file first, then every flag over it, whatever their order.
  std::vector<std::pair<std::string, std::string>> flags;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      cl.help = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) throw ConfigError("unexpected argument '" + arg + "'");
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
    }
    if (key == "config") cl.config_file = value;
    else if (key == "resume") cl.resume = value;
    else if (key == "model") cl.model = value;
    else if (key == "q" && cl.command == "sweep") cl.q_list = value;
    else if (!spec) throw ConfigError("--" + key + ": unknown flag (see eqpm --help)");
    else flags.emplace_back(key, value);
  }
  if (!cl.config_file.empty()) load_config_toml(cl.config_file, cl.cfg);
  for (const auto& [k, v] : flags) set_option(cl.cfg, k, v, "--" + k);
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

std::string run_name(double q) { return "q=" + format_double(q); }

void print_stats_line(const char* name, const RegretStats& s) {
  std::printf("  %-8s mean %-10.4g var %-10.4g p95-p5 %-10.4g max %-10.4g jain %.4f  mse %.4g\n",
              name, s.mean, s.var, s.p95 - s.p5, s.max, s.jain, s.mse);
}

int cmd_info() {
  std::printf("eqpm %s (%s build)\n", EQPM_VERSION, EQPM_BUILD_TYPE);
  std::printf("commit: %s\n", build_commit());
  std::printf("CUDA backend compiled in: %s\n", cuda_compiled() ? "yes" : "no");
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

int cmd_train(CommandLine& cl) {
  RunConfig cfg = cl.cfg;
  if (!cl.resume.empty()) {
    // The run's own configuration, with run settings (threads, quiet...) from the flags.
    const std::string ckpt = (std::filesystem::path(cl.resume) / "checkpoint.safetensors").string();
    const CheckpointData ck = load_checkpoint(ckpt);
    auto it = ck.metadata.find("eqpm.config");
    if (it == ck.metadata.end()) throw InputError(ckpt, 0, 0, "no eqpm.config in the metadata");
    RunConfig saved = config_from_json(it->second, ckpt);
    for (const auto& o : option_registry())
      if (o.is_run_setting && o.key != "out") o.set(saved, o.get(cfg));
    saved.out = cl.resume;
    cfg = saved;
    if (cl.print_config) {
      std::printf("%s", config_to_toml(cfg).c_str());
      return 0;
    }
    const RunInputs in = load_inputs(cfg);
    const RunOutcome o = train_run(cfg, in, ckpt);
    if (cfg.profile) print_stage_profile(o);
    std::printf("resumed and finished %s: test mean regret %.5g, max %.5g\n", cfg.out.c_str(),
                o.test_stats.mean, o.test_stats.max);
    return 0;
  }
  if (cl.print_config) {
    validate(cfg);
    std::printf("%s", config_to_toml(cfg).c_str());
    return 0;
  }
  if (cfg.out.empty()) throw ConfigError("--out: an output folder is required");
  validate(cfg);
  ensure_output_dir(cfg.out, cfg.overwrite);
  const RunInputs in = load_inputs(cfg);
  const RunOutcome o = train_run(cfg, in);
  if (cfg.profile) print_stage_profile(o);
  std::printf("trained %ld steps in %.1f s (%s backend, %ld agents)\n", o.train.steps,
              o.train.seconds, o.backend.c_str(), in.population.size());
  print_stats_line("test", o.test_stats);
  print_stats_line("train", o.train_stats);
  std::printf("wrote %s\n", cfg.out.c_str());
  return 0;
}

int cmd_sweep(CommandLine& cl) {
  RunConfig base = cl.cfg;
  if (cl.print_config) {
    validate(base);
    std::printf("%s", config_to_toml(base).c_str());
    return 0;
  }
  if (base.out.empty()) throw ConfigError("--out: an output folder is required");
  const std::vector<double> qs = parse_q_list(cl.q_list.empty() ? "0,1,4,19" : cl.q_list);
  validate(base);
  ensure_output_dir(base.out, base.overwrite);
  const RunInputs in = load_inputs(base);
  struct Entry {
    std::string name;
    double q;
    double beta;
    RunOutcome outcome;
  };
  std::vector<Entry> runs;
  auto run_one = [&](const std::string& name, RunConfig cfg) {
    cfg.out = (std::filesystem::path(base.out) / name).string();
    std::filesystem::create_directories(cfg.out);
    RunOutcome o = train_run(cfg, in);
    if (cfg.profile) print_stage_profile(o);
    runs.push_back({name, cfg.q, cfg.beta, std::move(o)});
  };
  {
    RunConfig plain = base;
    plain.beta = 1.0;
    plain.q = 0.0;
    run_one("plain", plain);
  }
  for (double q : qs) {
    RunConfig cfg = base;
    cfg.q = q;
    run_one(run_name(q), cfg);
  }
  // sweep.csv (DESIGN.md 8.1) and the printed table.
  std::string csv = "run,q,beta,mean,var,p95_p5,max,jain,mse\n";
  for (const auto& r : runs) {
    const RegretStats& s = r.outcome.test_stats;
    csv += r.name + "," + (r.name == "plain" ? std::string() : format_double(r.q)) + "," +
           format_double(r.beta) + "," + format_double(s.mean) + "," + format_double(s.var) + "," +
           format_double(s.p95 - s.p5) + "," + format_double(s.max) + "," + format_double(s.jain) +
           "," + format_double(s.mse) + "\n";
  }
  write_file_atomic((std::filesystem::path(base.out) / "sweep.csv").string(), csv);

  std::printf("\nper-agent regret, %ld agents (%s), %s\n", in.population.size(),
              base.mix.c_str(), in.series.source.c_str());
  for (const char* split : {"test", "train"}) {
    std::printf("\n%s split:\n%-8s %11s %11s %11s %11s %11s %8s %11s\n", split, "run", "mean",
                "var", "p5", "p95-p5", "max", "jain", "mse");
    for (const auto& r : runs) {
      const RegretStats& s = std::string(split) == "test" ? r.outcome.test_stats : r.outcome.train_stats;
      std::printf("%-8s %11.5g %11.5g %11.5g %11.5g %11.5g %8.4f %11.5g\n", r.name.c_str(), s.mean,
                  s.var, s.p5, s.p95 - s.p5, s.max, s.jain, s.mse);
    }
  }
  // Does the model trained at q have the lowest training-split M_q of the sweep?
  std::vector<double> w(in.population.agents.size());
  for (size_t n = 0; n < w.size(); ++n) w[n] = in.population.agents[n].weight;
  std::printf("\ntraining-split power mean M_q of each model (rows: q of the measure):\n%-8s", "M_q");
  for (const auto& r : runs) std::printf(" %11s", r.name.c_str());
  std::printf("   lowest\n");
  std::string mq_csv = "measure_q";
  for (const auto& r : runs) mq_csv += "," + r.name;
  mq_csv += ",lowest,own_excess\n";
  for (double q : qs) {
    std::printf("q=%-6s", format_double(q).c_str());
    mq_csv += format_double(q);
    double best = INFINITY, own = NAN;
    std::string best_name;
    for (const auto& r : runs) {
      const auto& R = r.outcome.train_split.regret;
      const double m = power_mean(R.data(), w.data(), static_cast<long>(R.size()), q);
      std::printf(" %11.5g", m);
      mq_csv += "," + format_double(m);
      if (m < best) {
        best = m;
        best_name = r.name;
      }
      if (r.name == run_name(q)) own = m;
    }
    const double excess = own / best - 1.0;
    std::printf("   %s%s\n", best_name.c_str(),
                best_name == run_name(q) ? "" : (" (own model +" + format_double(std::round(excess * 1e4) / 100) + "%)").c_str());
    mq_csv += "," + best_name + "," + format_double(excess) + "\n";
  }
  write_file_atomic((std::filesystem::path(base.out) / "mq_check.csv").string(), mq_csv);
  std::printf("\nwrote %s (sweep.csv, mq_check.csv and one folder per run)\n", base.out.c_str());
  return 0;
}

int cmd_eval(CommandLine& cl) {
  if (cl.model.empty()) throw ConfigError("--model: a model file is required");
  const ModelFile m = load_model(cl.model);
  RunConfig cfg;
  if (auto it = m.metadata.find("eqpm.config"); it != m.metadata.end())
    cfg = config_from_json(it->second, cl.model);
  // Explicit flags (series, population, ...) override the model's own configuration.
  RunConfig flags_only = cl.cfg;
  RunConfig defaults;
  for (const auto& o : option_registry())
    if (o.get(flags_only) != o.get(defaults)) o.set(cfg, o.get(flags_only));
  if (cfg.out == RunConfig().out || !cl.cfg.out.empty()) cfg.out = cl.cfg.out;
  if (m.layout.input_dim() != cfg.lookback + 2 || m.layout.output_dim() != cfg.horizon)
    throw InputError(cl.model, 0, 0, "model shape does not match lookback/horizon of the configuration");
  cfg.hidden.clear();
  for (int l = 1; l < m.layout.layers; ++l) cfg.hidden.push_back(m.layout.width[l]);
  cfg.activation = m.layout.activation;
  if (!cfg.out.empty()) std::filesystem::create_directories(cfg.out);
  const RunInputs in = load_inputs(cfg);
  const RunOutcome o = evaluate_model(cfg, in, m.params);
  std::printf("evaluated %s on %ld agents\n", cl.model.c_str(), in.population.size());
  print_stats_line("test", o.test_stats);
  print_stats_line("train", o.train_stats);
  std::printf("%s\n", stats_to_json(o.test_stats).c_str());
  return 0;
}

int cmd_generate(CommandLine& cl) {
  // Exactly the population a run with these settings trains on (generated or read, plus
  // --ev-sessions agents, with the demand profile the datacenter rules need).
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

int run_command(int argc, char** argv) {
  try {
    CommandLine cl = parse_command_line(argc, argv);
    if (cl.help) {
      print_help();
      return 0;
    }
    if (cl.cfg.threads > 0) omp_set_num_threads(cl.cfg.threads);
    if (cl.command == "train") return cmd_train(cl);
    if (cl.command == "sweep") return cmd_sweep(cl);
    if (cl.command == "eval") return cmd_eval(cl);
    if (cl.command == "generate") return cmd_generate(cl);
    if (cl.command == "info") return cmd_info();
    std::fprintf(stderr, "eqpm: unknown command '%s' (try eqpm --help)\n", cl.command.c_str());
    return 2;
  } catch (const eqpm::Error& e) {
    std::fprintf(stderr, "eqpm: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "eqpm: internal error: %s\n", e.what());
    return 3;
  }
}

int main(int argc, char** argv) { return checked_exit(run_command(argc, argv)); }
