// ProgressObserver (run.hpp): how a caller embedding eqpm (the Python package) sees every
// training step and stops a run.
#include <gtest/gtest.h>

#include <csignal>
#include <string>
#include <vector>

#include "host/interrupt.hpp"
#include "host/run.hpp"

namespace eqpm {
namespace {

RunConfig tiny_run() {
  RunConfig cfg;
  cfg.beta_auto = false;
  cfg.agents = 30;
  cfg.series_hours = 1200;
  cfg.epochs = 2;
  cfg.warm_start_epochs = 1;
  cfg.hidden = {8};
  cfg.backend = "cpu";
  cfg.threads = 1;
  cfg.quiet = true;  // the observer is called whatever quiet says
  return cfg;
}

TEST(ProgressObserver, SeesEveryStepInOrderEvenWhenQuiet) {
  const RunConfig cfg = tiny_run();
  const RunInputs in = load_inputs(cfg);
  std::vector<long> steps;
  std::string label;
  long total = 0;
  RunOutcome o;
  {
    const ProgressObserver observer([&](const std::string& l, const Progress& p) {
      label = l;
      total = p.total_steps;
      steps.push_back(p.step);
    });
    o = train_run(cfg, in);
  }
  ASSERT_FALSE(steps.empty());
  for (size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(steps[i], static_cast<long>(i) + 1);
  EXPECT_EQ(steps.back(), total);
  EXPECT_EQ(o.train.steps, total);
  EXPECT_EQ(label, "[train]");
  // Gone with its scope: a later run reports to nobody.
  EXPECT_EQ(ProgressObserver::current(), nullptr);
  const size_t seen = steps.size();
  train_run(cfg, in);
  EXPECT_EQ(steps.size(), seen);
}

TEST(ProgressObserver, NestsAndCanStopARun) {
  const RunConfig cfg = tiny_run();
  const RunInputs in = load_inputs(cfg);
  long outer_calls = 0, inner_calls = 0;
  const ProgressObserver outer([&](const std::string&, const Progress&) { ++outer_calls; });
  RunOutcome o;
  {
    const ProgressObserver inner([&](const std::string&, const Progress& p) {
      ++inner_calls;
      if (p.step == 3) request_interrupt(SIGINT);
    });
    clear_interrupt();
    o = train_run(cfg, in);
    clear_interrupt();
  }
  EXPECT_EQ(o.interrupted_at, 3);
  EXPECT_EQ(inner_calls, 3);
  EXPECT_EQ(outer_calls, 0);
  EXPECT_NE(ProgressObserver::current(), nullptr);  // the outer one again
}

}  // namespace
}  // namespace eqpm
