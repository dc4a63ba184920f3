// The optimiser's schedule and what a run ships as its model (DESIGN.md 5.3a): the policy
// noise annealed over the regret phase, the Polyak average of the weights over the last
// epochs, the best epoch on the validation objective, and their exact continuation across
// a checkpoint.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "host/io/checkpoint.hpp"
#include "eqpm/objective.hpp"
#include "host/run.hpp"
#include "host/sweep_check.hpp"
#include "host/trainer.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

RunConfig tiny_config() {
  RunConfig cfg;
  cfg.agents = 60;
  cfg.series_hours = 24 * 40;
  cfg.epochs = 5;
  cfg.warm_start_epochs = 1;
  cfg.batch = 32;
  cfg.hidden = {16};
  cfg.threads = 1;
  cfg.quiet = true;
  return cfg;
}

// A backend and a trainer over the same inputs.
struct Rig {
  RunInputs in;
  std::unique_ptr<Backend> backend;
  std::unique_ptr<Trainer> trainer;
  explicit Rig(const RunConfig& cfg) : in(load_inputs(cfg)) {
    backend = make_backend("cpu", 1);
    backend->setup(make_problem(cfg, in));
    trainer = std::make_unique<Trainer>(cfg, in.data, in.population, *backend);
  }
};

TEST(SigmaSchedule, AnnealsGeometricallyOverTheRegretPhase) {
  RunConfig cfg = tiny_config();
  cfg.sigma = 0.08;
  cfg.sigma_decay = 0.025;  // to 0.002
  Rig rig(cfg);
  const Trainer& t = *rig.trainer;
  const long warm = t.steps_per_epoch() * cfg.warm_start_epochs;
  const long last = t.total_steps() - 1;
  EXPECT_EQ(t.sigma_at(0), 0.08f);
  EXPECT_EQ(t.sigma_at(warm), 0.08f);
  EXPECT_FLOAT_EQ(t.sigma_at(last), 0.002f);
  // Halfway through the regret phase: the geometric mean of the two ends.
  const long mid = warm + (last - warm) / 2;
  const double x = double(mid - warm) / double(last - warm);
  EXPECT_NEAR(t.sigma_at(mid), 0.08 * std::pow(0.002 / 0.08, x), 1e-7);
  for (long s = warm; s < last; ++s) EXPECT_GE(t.sigma_at(s), t.sigma_at(s + 1)) << s;

  cfg.sigma_decay = 1;  // off: sigma throughout
  Rig flat(cfg);
  for (long s = 0; s <= last; s += 7) EXPECT_EQ(flat.trainer->sigma_at(s), 0.08f);
}

// The default learning-rate schedule: lr held, then a geometric fall over the last
// lr_anneal_epochs epochs to lr x lr_final at the last step; a run shorter than that anneals
// from its first step.
TEST(LrSchedule, AnnealHoldsThenFallsGeometricallyToTheFinalRate) {
  RunConfig cfg = tiny_config();
  ASSERT_EQ(cfg.lr_schedule, LrSchedule::anneal);  // the default
  cfg.lr = 2e-3;
  cfg.lr_anneal_epochs = 2;
  cfg.lr_final = 0.05;
  Rig rig(cfg);
  const Trainer& t = *rig.trainer;
  const long last = t.total_steps() - 1;
  const long start = t.total_steps() - 2 * t.steps_per_epoch();
  for (long s = 0; s <= start; ++s) EXPECT_EQ(t.lr_at(s), 2e-3) << s;
  EXPECT_DOUBLE_EQ(t.lr_at(last), 2e-3 * 0.05);
  const long mid = start + (last - start) / 2;
  EXPECT_NEAR(t.lr_at(mid), 2e-3 * std::pow(0.05, double(mid - start) / double(last - start)),
              1e-15);
  for (long s = start; s < last; ++s) EXPECT_GT(t.lr_at(s), t.lr_at(s + 1)) << s;

  cfg.lr_anneal_epochs = 50;  // longer than the run
  Rig whole(cfg);
  EXPECT_EQ(whole.trainer->lr_at(0), 2e-3);
  EXPECT_DOUBLE_EQ(whole.trainer->lr_at(last), 2e-3 * 0.05);
  EXPECT_LT(whole.trainer->lr_at(1), 2e-3);

  cfg.lr_final = 1;  // no fall: constant
  Rig flat(cfg);
  for (long s = 0; s <= last; s += 5) EXPECT_EQ(flat.trainer->lr_at(s), 2e-3);
}

// The noise a step uses is the schedule's: a step at sigma s equals a step of a backend
// whose Problem has sigma s.
TEST(SigmaSchedule, StepUsesTheStepsSigma) {
  RunConfig cfg = tiny_config();
  RunConfig other = cfg;
  other.sigma = 0.013;
  Rig a(cfg), b(other);
  b.backend->set_state(a.backend->state());
  StepSpec spec;
  spec.step = 3;
  spec.rows = a.trainer->batch_rows(3);
  spec.beta = 0.1;
  spec.sigma = 0.013f;
  StepTrace ta, tb;
  a.backend->step(spec, &ta);
  spec.sigma = 0.0f;  // the Problem's sigma
  b.backend->step(spec, &tb);
  EXPECT_TRUE(test::bitwise_equal(ta.grad, tb.grad));
  EXPECT_TRUE(test::bitwise_equal(ta.rhat, tb.rhat));
}

// The shipped model is the mean of the weights after every step of the averaging window.
TEST(IterateAveraging, ModelIsTheMeanOfTheWindowsWeights) {
  RunConfig cfg = tiny_config();
  cfg.average_epochs = 2;
  Rig rig(cfg);
  const long first = rig.trainer->steps_per_epoch() * (cfg.epochs - cfg.average_epochs);
  std::vector<double> sum;
  long count = 0;
  rig.trainer->run(
      0,
      [&](const Progress& p) {
        if (p.step - 1 < first) return;
        const auto params = rig.backend->state().params;
        if (sum.empty()) sum.assign(params.size(), 0.0);
        for (size_t i = 0; i < params.size(); ++i) sum[i] += params[i];
        ++count;
      },
      nullptr);
  ASSERT_EQ(count, rig.trainer->steps_per_epoch() * cfg.average_epochs);
  std::vector<float> mean(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) mean[i] = static_cast<float>(sum[i] / double(count));
  EXPECT_TRUE(test::bitwise_equal(rig.trainer->final_params(), mean));
  // The backend keeps the last iterate, which differs from the average.
  EXPECT_FALSE(test::bitwise_equal(rig.backend->state().params, mean));
}

// --select val ships the regret-phase epoch with the lowest validation M_q.
TEST(SelectVal, ModelIsTheBestValidationEpoch) {
  RunConfig cfg = tiny_config();
  cfg.select = Select::val;
  cfg.q = 4;
  Rig rig(cfg);
  std::vector<std::vector<float>> at_epoch;
  std::vector<double> score;
  rig.trainer->run(0, nullptr, nullptr, [&](const EpochMetrics& m) {
    at_epoch.push_back(rig.backend->state().params);
    score.push_back(m.epoch >= cfg.warm_start_epochs ? m.power_mean : INFINITY);
  });
  ASSERT_EQ(score.size(), size_t(cfg.epochs));
  const size_t best = size_t(std::min_element(score.begin(), score.end()) - score.begin());
  EXPECT_GE(best, size_t(cfg.warm_start_epochs));
  EXPECT_TRUE(test::bitwise_equal(rig.trainer->final_params(), at_epoch[best]));
  EXPECT_EQ(rig.trainer->state().best_epoch, int(best));
}

// A run stopped at a checkpoint inside the averaging window (and after a selected epoch)
// and continued from the saved file ends with the same bits as one that never stopped.
TEST(TrainerState, ContinuesExactlyThroughACheckpointFile) {
  RunConfig cfg = tiny_config();
  cfg.average_epochs = 3;
  cfg.sigma_decay = 0.2;
  cfg.q = 4;
  test::TempDir tmp;
  for (Select select : {Select::last, Select::val}) {
    cfg.select = select;
    Rig whole(cfg);
    whole.trainer->run(0, nullptr, nullptr);

    Rig first(cfg);
    const long stop = first.trainer->steps_per_epoch() * (cfg.epochs - 1) + 3;
    CheckpointData saved;
    saved.layout = first.backend->problem().layout;
    RunConfig with_ckpt = cfg;
    with_ckpt.checkpoint_every = stop;
    Trainer t1(with_ckpt, first.in.data, first.in.population, *first.backend);
    bool taken = false;
    t1.run(0, nullptr, [&](long steps_done) {
      if (steps_done != stop || taken) return;
      taken = true;
      saved.state = first.backend->state();
      saved.trainer = t1.state();
      saved.step = static_cast<std::uint64_t>(steps_done);
      save_checkpoint(tmp.file("ck.safetensors"), saved);
    });
    ASSERT_TRUE(taken);
    const CheckpointData back = load_checkpoint(tmp.file("ck.safetensors"));
    ASSERT_FALSE(back.trainer.param_sum.empty());
    EXPECT_TRUE(test::bitwise_equal(back.trainer.param_sum, saved.trainer.param_sum));
    EXPECT_EQ(back.trainer.param_count, saved.trainer.param_count);
    EXPECT_TRUE(test::bitwise_equal(back.trainer.best_params, saved.trainer.best_params));
    EXPECT_EQ(back.trainer.best_epoch, saved.trainer.best_epoch);

    Rig second(cfg);
    second.backend->set_state(back.state);
    second.trainer->set_state(back.trainer);
    second.trainer->run(static_cast<long>(back.step), nullptr, nullptr);
    test::expect_same_state(second.backend->state(), whole.backend->state(), "resumed");
    EXPECT_TRUE(test::bitwise_equal(second.trainer->final_params(), whole.trainer->final_params()));
  }
}

// The sweep check: margins, the lowest model, and who beats whom by more than the tolerance.
TEST(ObjectiveCheck, NamesTheModelsThatBeatTheOwnModel) {
  std::vector<SweepModel> models = {
      {"plain", false, 0.0, {1.0, 1.0}},
      {"q=0", true, 0.0, {0.5, 1.3}},   // mean 0.9
      {"q=4", true, 4.0, {0.8, 0.97}},  // mean 0.885: beats q=0 on its own M_0 by 1.7%
  };
  const auto rows = objective_check(models, {1.0, 1.0}, 0.01);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].own, "q=0");
  EXPECT_EQ(rows[0].lowest, "q=4");
  EXPECT_NEAR(rows[0].margin, 0.9 / 0.885 - 1, 1e-12);
  EXPECT_FALSE(rows[0].pass);
  EXPECT_EQ(rows[0].beaten_by, std::vector<std::string>{"q=4"});
  EXPECT_EQ(rows[1].own, "q=4");
  EXPECT_EQ(rows[1].lowest, "q=4");
  EXPECT_EQ(rows[1].margin, 0.0);
  EXPECT_TRUE(rows[1].pass);
  // Within the tolerance, a lower model is reported but does not fail the row.
  const auto loose = objective_check(models, {1.0, 1.0}, 0.02);
  EXPECT_TRUE(loose[0].pass);
  EXPECT_EQ(loose[0].lowest, "q=4");
  const std::string csv = objective_check_csv(models, rows);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "measure_q,plain,q=0,q=4,lowest,own_excess,beaten_by,pass");
  EXPECT_NE(csv.find(",q=4,false\n"), std::string::npos) << csv;
  // Weights count: agent 1 weighted 3x makes q=4 (lower there) win by more.
  const auto weighted = objective_check(models, {1.0, 3.0}, 0.01);
  EXPECT_GT(weighted[0].margin, rows[0].margin);
}

}  // namespace
}  // namespace eqpm

namespace eqpm {
namespace {

// A population of the optimiser battery (tools/optim-battery.sh, synth-dcinv-h1): 50
// datacenter and inventory agents at H = 1, where the regrets are small next to the policy
// noise. With a constant sigma and the last iterate, the q = 19 model ended 3.2% above the
// q = 4 model's M_19 here; at the default recipe every model must be within 1% of the
// lowest M_q of the sweep at its own q, plain included.
TEST(OptimiserSlow, EveryModelIsBestAtItsOwnObjectiveAtH1) {
  RunConfig base;
  base.beta_auto = false;  // train_run trains one beta
  base.agents = 50;
  base.mix = "dc=0.3,inv=0.7";
  base.horizon = 1;
  base.ev_k = {1, 1};
  base.inv_cu = {0.3, 3};
  base.inv_co = {0.3, 3};
  base.pop_seed = 81;
  base.seed = 1;
  base.threads = 2;
  base.quiet = true;
  const RunInputs in = load_inputs(base);
  std::vector<SweepModel> models;
  RunConfig plain = base;
  plain.beta = 1.0;
  models.push_back({"plain", false, 0.0, train_run(plain, in).train_split.regret});
  for (double q : {0.0, 1.0, 4.0, 19.0}) {
    RunConfig cfg = base;
    cfg.q = q;
    models.push_back({"q=" + format_double(q), true, q, train_run(cfg, in).train_split.regret});
  }
  std::vector<double> w;
  for (const auto& a : in.population.agents) w.push_back(a.weight);
  for (const auto& row : objective_check(models, w, 0.01))
    EXPECT_TRUE(row.pass) << row.own << " is " << 100 * row.margin << "% above " << row.lowest
                          << " at M_" << row.q;
}

// `eqpm sweep --check` exits 1 when a model is beaten at its own objective and names the
// model beating it; the same population under the default recipe passes (exit 0). The
// failing sweep uses the old recipe (constant sigma, last iterate), where the q = 4 model
// beats the q = 19 model at M_19 by 3.2% on this population.
TEST(OptimiserSlow, SweepCheckExitsNonZeroWhenAModelIsBeaten) {
  test::TempDir tmp;
  const std::string common =
      std::string(EQPM_BINARY) +
      " sweep --agents 50 --mix dc=0.3,inv=0.7 --horizon 1 --ev-k 1,1 --inv-cu 0.3,3"
      " --inv-co 0.3,3 --pop-seed 81 --seed 1 --threads 2 --quiet --q 4,19 --check"
      " --beta 0.1 --val-days 0";  // the split and beta this case was found with
  auto run = [&](const std::string& extra, const std::string& out) {
    const std::string cmd = common + extra + " --out " + tmp.file(out) + " > " +
                            tmp.file(out + ".log") + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  ASSERT_EQ(run(" --sigma-decay 1 --average-epochs 0 --lr-schedule step", "old"), 1)
      << test::read_file(tmp.file("old.log"));
  EXPECT_NE(test::read_file(tmp.file("old.log")).find("FAIL: beaten by more than 1% by q=4"),
            std::string::npos)
      << test::read_file(tmp.file("old.log"));
  const std::string check = test::read_file(tmp.file("old") + "/mq_check.csv");
  EXPECT_NE(check.find(",q=4,false\n"), std::string::npos) << check;
  EXPECT_NE(test::read_file(tmp.file("old") + "/sweep.csv").find(",q=4,power:19\n"), std::string::npos);
  EXPECT_EQ(run("", "new"), 0) << test::read_file(tmp.file("new.log"));
}

// The optimiser battery's erco-dcinv-h1 case, seed 1: 400 datacenter and inventory agents
// on ERCO 2022 at H = 1. Each model annealed from its own weights (--anneal-start own), the
// q = 4 model beat the q = 1 and q = 19 models at their own objectives by 2.7% and 2.6%:
// at the held learning rate the models wander, and where each happens to be when the
// annealing starts decides more than its objective. Started from the sweep's best model for
// their objective (the default), every model is within 1% of the lowest at its own q, and
// each adopted state was lower on that model's objective than its own.
TEST(OptimiserSlow, AnnealingFromTheBestModelPassesTheCheckWhereOwnFails) {
  EQPM_REQUIRE_SHARED_DATA(data);
  test::TempDir tmp;
  const std::string common =
      std::string(EQPM_BINARY) + " sweep --series " + data +
      "/carbon_intensity/ERCO_2022.csv --agents 400 --mix dc=0.5,inv=0.5 --inv-cu 1,4"
      " --inv-co 0.1,1 --pop-seed 421 --seed 11 --horizon 1 --ev-k 1,1 --q 0,1,4,19"
      " --beta 0.1 --select last --threads 2 --quiet --check";
  auto run = [&](const std::string& extra, const std::string& out) {
    const std::string cmd = common + extra + " --out " + tmp.file(out) + " > " +
                            tmp.file(out + ".log") + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  EXPECT_EQ(run(" --anneal-start own", "own"), 1) << test::read_file(tmp.file("own.log"));
  EXPECT_FALSE(std::filesystem::exists(tmp.file("own") + "/anneal_start.csv"));
  ASSERT_EQ(run("", "best"), 0) << test::read_file(tmp.file("best.log"));
  // anneal_start.csv: run,beta,start_from,own_value,start_value; a start is never worse.
  std::istringstream rows(test::read_file(tmp.file("best") + "/anneal_start.csv"));
  std::string line;
  std::getline(rows, line);
  int n = 0, adopted = 0;
  while (std::getline(rows, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_EQ(f.size(), 5u) << line;
    EXPECT_LE(std::stod(f[4]), std::stod(f[3])) << line;
    adopted += f[0] != f[2];
    ++n;
  }
  EXPECT_EQ(n, 4);
  EXPECT_GT(adopted, 0);
}

}  // namespace
}  // namespace eqpm
