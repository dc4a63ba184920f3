// Sweeps (sweep.hpp).
#include "host/sweep.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "host/io/atomic_file.hpp"
#include "host/beta_select.hpp"
#include "host/io/checkpoint.hpp"
#include "host/metrics.hpp"
#include "eqpm/objectives.hpp"

namespace eqpm {

std::string sweep_run_name(const std::string& spec) {
  if (spec.rfind("power:", 0) == 0) return "q=" + spec.substr(6);
  std::string name = spec;
  name[name.find(':')] = '=';
  return name;
}

RunConfig shipped_config(RunConfig cfg, double chosen) {
  if (cfg.beta_auto) {
    cfg.beta_auto = false;
    cfg.beta = chosen;
  }
  return cfg;
}

namespace {

// One model a sweep trains: plain, or one beta of one objective.
struct Slot {
  RunConfig cfg;                // one beta, its own folder
  size_t spec = SIZE_MAX;       // index into the sweep's specs; SIZE_MAX: plain
  std::string label;            // "plain", "q=4", "q=4 beta=0.1"
  std::shared_ptr<const CheckpointData> at_exchange;  // its state at the exchange step
  size_t start_from = SIZE_MAX;  // the slot whose state it anneals from (SIZE_MAX: its own)
  double own_value = 0, start_value = 0;
  long resumed_step = -1;       // the step of the checkpoint a resumed sweep found (-1: none)
  RunOutcome outcome;
};

std::string checkpoint_file(const RunConfig& cfg) {
  return cfg.out.empty() ? std::string()
                         : (std::filesystem::path(cfg.out) / "checkpoint.safetensors").string();
}
std::string exchange_file(const RunConfig& cfg) {
  return cfg.out.empty() ? std::string()
                         : (std::filesystem::path(cfg.out) / "anneal_start.safetensors").string();
}

}  // namespace

Sweep run_sweep(const RunConfig& base, const std::vector<std::string>& specs, const RunInputs& in,
                bool resume) {
  namespace fs = std::filesystem;
  Sweep sw;
  auto folder = [&](RunConfig& cfg, const std::string& name) {
    cfg.out = base.out.empty() ? std::string() : (fs::path(base.out) / name).string();
    if (!cfg.out.empty() && in.writes_files()) fs::create_directories(cfg.out);
  };
  auto existing = [&](const std::string& path) {
    return resume && !path.empty() && fs::exists(path) ? path : std::string();
  };
  auto stopped = [&](RunOutcome& o) {
    if (o.interrupted_at < 0) return false;
    sw.interrupted = true;
    sw.stopped = std::move(o);
    return true;
  };

  // Every model the sweep trains: plain first, then each objective (one per beta of the grid
  // with --beta auto, the grid's beta = 1 being plain), in the list's order.
  std::vector<Slot> slots(1);
  slots[0].cfg = base;
  slots[0].cfg.beta_auto = false;
  slots[0].cfg.beta = 1.0;
  slots[0].cfg.q = 0.0;
  slots[0].cfg.objective.clear();
  slots[0].label = "plain";
  folder(slots[0].cfg, "plain");
  std::vector<RunConfig> spec_cfgs;
  for (size_t k = 0; k < specs.size(); ++k) {
    RunConfig cfg = base;
    set_option(cfg, "objective", specs[k], "--objective");
    folder(cfg, sweep_run_name(specs[k]));
    spec_cfgs.push_back(cfg);
    if (!base.beta_auto) {
      slots.push_back({cfg, k, sweep_run_name(specs[k]), nullptr, SIZE_MAX, 0, 0, -1, {}});
      continue;
    }
    for (double b : base.beta_grid)
      if (b < 1.0) {
        RunConfig c = candidate_config(cfg, b);
        if (!c.out.empty() && in.writes_files()) fs::create_directories(c.out);
        slots.push_back({c, k, sweep_run_name(specs[k]) + " " + beta_folder(b), nullptr, SIZE_MAX,
                         0, 0, -1, {}});
      }
  }

  // Annealing from the best (AnnealStart::best): every model trains to the exchange step
  // first, keeping its state there (anneal_start.safetensors: a resumed sweep decides the
  // same from the same states), then each objective's model starts its annealing from the
  // model of its beta, or plain, whose weights there give the lowest training-split value
  // of its objective.
  long exchange = anneal_exchange_step(base, in.data);
  if (exchange >= 0 && resume)
    for (Slot& s : slots) {
      // Each file read once: the checkpoint's step, and the state kept at the exchange. One
      // kept at another step (a sweep extended with other --epochs), or a model already past
      // the step without one (a sweep trained without the exchange): every model continues
      // from its own checkpoint, as it was.
      const std::string ck = existing(checkpoint_file(s.cfg));
      if (!ck.empty()) s.resumed_step = static_cast<long>(load_checkpoint(ck).step);
      const std::string kept = existing(exchange_file(s.cfg));
      if (!kept.empty()) {
        s.at_exchange = std::make_shared<const CheckpointData>(load_checkpoint(kept));
        if (static_cast<long>(s.at_exchange->step) != exchange) exchange = -1;
      } else if (s.resumed_step > exchange) {
        exchange = -1;
      }
    }
  // Trains a slot from `st`; false when a signal stopped it (the sweep then stops).
  auto train = [&](Slot& s, const RunStart& st) {
    RunOutcome o = train_run(s.cfg, in, st);
    if (s.spec != SIZE_MAX && base.beta_auto) o.out_dir = spec_cfgs[s.spec].out;
    if (stopped(o)) return false;
    s.outcome = std::move(o);
    return true;
  };
  if (exchange >= 0) {
    for (Slot& s : slots) {
      if (s.at_exchange) continue;  // kept by the sweep that was stopped
      RunStart st;
      st.checkpoint = existing(checkpoint_file(s.cfg));
      st.pause_at = exchange;
      if (!train(s, st)) return sw;
      s.at_exchange = s.outcome.paused;
      s.outcome = RunOutcome();
      if (!s.cfg.out.empty() && in.writes_files()) save_checkpoint(exchange_file(s.cfg), *s.at_exchange);
    }
    // The decision, from each model's training-split regrets at the step.
    std::vector<std::vector<double>> regret;
    for (const Slot& s : slots)
      regret.push_back(training_split_regret(s.cfg, in, s.at_exchange->state.params));
    const std::vector<double> w = in.population.weights();
    std::string csv = "run,beta,start_from,own_value,start_value\n";
    for (size_t i = 1; i < slots.size(); ++i) {
      Slot& s = slots[i];
      const auto f = run_objective(s.cfg);
      auto value = [&](size_t j) { return objective_of(*f, regret[j], w, in.population.groups()); };
      s.own_value = s.start_value = value(i);
      for (size_t j = 0; j < slots.size(); ++j) {
        if (j == i || (j != 0 && slots[j].cfg.beta != s.cfg.beta)) continue;
        const double v = value(j);
        if (v < s.start_value) {
          s.start_value = v;
          s.start_from = j;
        }
      }
      csv += s.label.substr(0, s.label.find(' ')) + "," + format_double(s.cfg.beta) + "," +
             (s.start_from == SIZE_MAX ? s.label : slots[s.start_from].label) + "," +
             format_double(s.own_value) + "," + format_double(s.start_value) + "\n";
      if (s.start_from != SIZE_MAX && !base.quiet)
        std::fprintf(stderr,
                     "[sweep] %s anneals from %s's weights: its objective on the training split "
                     "is %.2f%% lower there than at its own\n",
                     s.label.c_str(), slots[s.start_from].label.c_str(),
                     100.0 * (1.0 - s.start_value / s.own_value));
    }
    if (!base.out.empty() && in.writes_files())
      write_file_atomic((fs::path(base.out) / "anneal_start.csv").string(), csv);
  }

  for (Slot& s : slots) {
    RunStart st;
    st.checkpoint = existing(checkpoint_file(s.cfg));
    if (exchange >= 0) {
      // Not yet past the step: continue from the state kept there, the chosen model's.
      if (s.resumed_step <= exchange) {
        st.checkpoint.clear();
        st.state = s.at_exchange.get();
        if (s.start_from != SIZE_MAX) {
          st.adopt = slots[s.start_from].at_exchange.get();
          st.adopt_name = slots[s.start_from].label;
        }
      }
    }
    if (!train(s, st)) return sw;
  }

  sw.runs.push_back({"plain", 0.0, 1.0, slots[0].cfg, slots[0].outcome, ""});
  size_t next = 1;
  for (size_t k = 0; k < specs.size(); ++k) {
    const RunConfig& cfg = spec_cfgs[k];
    const std::string name = sweep_run_name(specs[k]);
    if (!base.beta_auto) {
      sw.runs.push_back({name, cfg.q, cfg.beta, cfg, std::move(slots[next++].outcome),
                         objective_spec(cfg)});
      continue;
    }
    // One model per beta of the grid, the plain run as its beta = 1; the run's folder gets
    // the one validation prefers (beta_auto.csv says which).
    std::vector<RunOutcome> cands;
    for (double b : base.beta_grid)
      cands.push_back(b < 1.0 ? std::move(slots[next++].outcome) : sw.runs.front().outcome);
    double chosen = 1;
    RunOutcome o = ship_beta_auto(cfg, in, cands, &chosen);
    sw.runs.push_back({name, cfg.q, chosen, shipped_config(cfg, chosen), std::move(o), specs[k]});
    const size_t lo = static_cast<size_t>(
        std::min_element(base.beta_grid.begin(), base.beta_grid.end()) - base.beta_grid.begin());
    if (sw.fixed_beta.empty()) sw.fixed_beta.push_back(sw.runs.front());
    RunConfig at_lo = cfg;
    at_lo.beta_auto = false;
    at_lo.beta = base.beta_grid[lo];
    sw.fixed_beta.push_back({name, cfg.q, base.beta_grid[lo], at_lo, std::move(cands[lo]), specs[k]});
  }
  return sw;
}

bool SweepCheck::pass() const {
  return std::all_of(rows.begin(), rows.end(), [](const ObjectiveCheckRow& r) { return r.pass; });
}

SweepCheck check_sweep(const Sweep& sweep, const RunInputs& in, double tol, bool validation) {
  SweepCheck c;
  for (const SweepRun& r : sweep.checked())
    c.models.push_back({r.name, r.name != "plain", r.q,
                        validation ? r.outcome.validation.regret : r.outcome.train_split.regret,
                        r.objective.empty() ? nullptr : make_objective(r.objective)});
  c.rows = objective_check(c.models, in.population.weights(), tol, in.population.groups());
  return c;
}

void write_sweep_tables(const std::string& dir, const Sweep& sweep, const SweepCheck& train,
                        const SweepCheck* validation) {
  std::string csv = "run,q,beta,mean,var,p95_p5,max,jain,mse,mq_margin,mq_beaten_by,objective\n";
  for (const SweepRun& r : sweep.runs) {
    const RegretStats& s = r.outcome.test_stats;
    std::string margin, beaten;
    for (const auto& row : train.rows)
      if (row.own == r.name) {
        margin = format_double(row.margin);
        for (const auto& b : row.beaten_by) beaten += (beaten.empty() ? "" : ";") + b;
      }
    const bool power = r.objective.rfind("power:", 0) == 0;
    csv += r.name + "," + (power ? format_double(r.q) : std::string()) + "," +
           format_double(r.beta) + "," + format_double(s.mean) + "," + format_double(s.var) + "," +
           format_double(s.p95 - s.p5) + "," + format_double(s.max) + "," + format_double(s.jain) +
           "," + format_double(s.mse) + "," + margin + "," + beaten + "," + r.objective + "\n";
  }
  const std::filesystem::path d(dir);
  write_file_atomic((d / "sweep.csv").string(), csv);
  write_file_atomic((d / "mq_check.csv").string(), objective_check_csv(train.models, train.rows));
  if (validation)
    write_file_atomic((d / "mq_check_val.csv").string(),
                      objective_check_csv(validation->models, validation->rows));
}

RunConfig resumed_sweep_config(const RunConfig& flags, const std::vector<std::string>& given_keys,
                               const std::vector<std::string>& specs, const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path root(dir);
  std::vector<std::string> names{"plain"};
  for (const auto& spec : specs) names.push_back(sweep_run_name(spec));
  std::vector<std::string> ckpts;
  std::vector<bool> beta_auto;
  for (const auto& name : names) {
    bool a = false;
    ckpts.push_back(run_checkpoint((root / name).string(), &a));
    beta_auto.push_back(a);
  }
  if (ckpts.front().empty())
    throw ConfigError("--resume " + dir + ": no plain/checkpoint.safetensors in that folder");
  for (size_t i = 1; i < names.size(); ++i)
    if (!ckpts[i].empty() && ckpts[i - 1].empty())
      throw ConfigError("resume: the sweep in " + dir + " began the run " + names[i] + " but not " +
                        names[i - 1] + ", which comes before it in this list; give the list it was " +
                        "started with");
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    bool a = false;
    if (e.is_directory() && std::find(names.begin(), names.end(), name) == names.end() &&
        !run_checkpoint(e.path().string(), &a).empty())
      throw ConfigError("resume: the sweep in " + dir + " began the run " + name +
                        ", which this list lacks; give the list it was started with");
  }
  std::vector<std::string> given;
  bool beta_given = false;
  for (const auto& key : given_keys) {
    if (key == "beta") beta_given = true;
    else given.push_back(key);
  }
  RunConfig base = resumed_config(ckpts.front(), flags, given, dir);
  const OptionSpec* beta = find_option("beta");
  std::string stored;
  for (size_t i = 1; i < names.size() && stored.empty(); ++i)
    if (!ckpts[i].empty())
      stored = beta_auto[i] ? "auto" : beta->get(resumed_config(ckpts[i], flags, {}, dir));
  if (beta_given && !stored.empty() && beta->get(flags) != stored)
    throw resume_refusal("beta", beta->get(flags), stored);
  beta->set(base, stored.empty() ? beta->get(flags) : stored);
  validate(base);
  return base;
}

}  // namespace eqpm
