// Sweeps (sweep.hpp).
#include "eqpm/sweep.hpp"

#include <algorithm>
#include <filesystem>

#include "eqpm/atomic_file.hpp"
#include "eqpm/beta_select.hpp"
#include "eqpm/metrics.hpp"
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

Sweep run_sweep(const RunConfig& base, const std::vector<std::string>& specs, const RunInputs& in,
                bool resume) {
  Sweep sw;
  auto folder = [&](RunConfig& cfg, const std::string& name) {
    cfg.out = base.out.empty() ? std::string() : (std::filesystem::path(base.out) / name).string();
    if (!cfg.out.empty() && in.writes_files()) std::filesystem::create_directories(cfg.out);
  };
  auto checkpoint = [&](const RunConfig& cfg) {
    const std::filesystem::path ckpt = std::filesystem::path(cfg.out) / "checkpoint.safetensors";
    return resume && !cfg.out.empty() && std::filesystem::exists(ckpt) ? ckpt.string() : std::string();
  };
  auto stopped = [&](RunOutcome& o) {
    if (o.interrupted_at < 0) return false;
    sw.interrupted = true;
    sw.stopped = std::move(o);
    return true;
  };
  RunConfig plain = base;
  plain.beta_auto = false;
  plain.beta = 1.0;
  plain.q = 0.0;
  plain.objective.clear();
  folder(plain, "plain");
  RunOutcome po = train_run(plain, in, checkpoint(plain));
  if (stopped(po)) return sw;
  sw.runs.push_back({"plain", 0.0, 1.0, plain, std::move(po), ""});
  for (const std::string& spec : specs) {
    RunConfig cfg = base;
    set_option(cfg, "objective", spec, "--objective");
    const std::string name = sweep_run_name(spec);
    folder(cfg, name);
    if (!base.beta_auto) {
      RunOutcome o = train_run(cfg, in, checkpoint(cfg));
      if (stopped(o)) return sw;
      sw.runs.push_back({name, cfg.q, cfg.beta, cfg, std::move(o), objective_spec(cfg)});
      continue;
    }
    // One model per beta of the grid, the plain run as its beta = 1; the run's folder gets
    // the one validation prefers (beta_auto.csv says which).
    double chosen = 1;
    std::vector<RunOutcome> cands;
    RunOutcome o = train_beta_auto(cfg, in, &sw.runs.front().outcome, &chosen, &cands, resume);
    if (stopped(o)) return sw;
    sw.runs.push_back({name, cfg.q, chosen, shipped_config(cfg, chosen), std::move(o), spec});
    const size_t lo = static_cast<size_t>(
        std::min_element(base.beta_grid.begin(), base.beta_grid.end()) - base.beta_grid.begin());
    if (sw.fixed_beta.empty()) sw.fixed_beta.push_back(sw.runs.front());
    RunConfig at_lo = cfg;
    at_lo.beta_auto = false;
    at_lo.beta = base.beta_grid[lo];
    sw.fixed_beta.push_back({name, cfg.q, base.beta_grid[lo], at_lo, std::move(cands[lo]), spec});
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
