// Agents shared out over several places (reducer.hpp, what `mpirun eqpm train` does with
// MPI ranks): the chunk ownership arithmetic, and K CPU backends in K threads joined by an
// in-process Reducer against one backend, step by step, bit for bit, on every regret path;
// and --fast-reduce (sums reduced, not gathered): reproducible for a given K, equal to one
// backend to rounding, and in one place the default's bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <barrier>
#include <cmath>
#include <ostream>
#include <thread>
#include <vector>

#include "cpu/chunks.hpp"
#include "host/run.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

using test::bitwise_equal;

TEST(Places, ChunkOwnershipCoversEveryChunkOnceInOrder) {
  for (long chunks_n : {1L, 2L, 3L, 7L, 63L, 64L})
    for (int places = 1; places <= 9; ++places) {
      long next = 0;
      for (int r = 0; r < places; ++r) {
        const long first = chunks::first_owned(chunks_n, r, places);
        const long last = chunks::first_owned(chunks_n, r + 1, places);
        EXPECT_EQ(first, next) << chunks_n << " chunks, place " << r << " of " << places;
        EXPECT_LE(first, last);
        // As even as whole chunks allow.
        EXPECT_LE(last - first, chunks_n / places + 1);
        next = last;
      }
      EXPECT_EQ(next, chunks_n);
    }
}

TEST(Places, SameEverywhereInOnePlace) {
  LocalReducer here;
  const std::vector<float> w = {1.0f, -2.5f, 3.0f};
  EXPECT_TRUE(same_everywhere(here, w.data(), w.size() * sizeof(float)));
}

// K places in one process, one thread each: every call is collective, as with MPI.
struct Hall {
  explicit Hall(int k) : places(k), sync(k), published(static_cast<size_t>(k)) {}
  int places;
  std::barrier<> sync;
  std::vector<double*> published;
};

class ThreadReducer final : public Reducer {
 public:
  ThreadReducer(Hall& hall, int rank) : hall_(hall), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return hall_.places; }
  void sum(double* values, long n) override {
    combine(values, n, [](double a, double b) { return a + b; });
  }
  void max(double* values, long n) override {
    combine(values, n, [](double a, double b) { return a > b ? a : b; });
  }
  // A native sum's stand-in: another fixed order than sum's (last place first), so that a
  // result that depended on the order of fast_sum's additions would show.
  void fast_sum(double* values, long n) override {
    publish(values);
    std::vector<double> out(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      double v = 0.0;
      for (int r = hall_.places - 1; r >= 0; --r) v += hall_.published[static_cast<size_t>(r)][i];
      out[static_cast<size_t>(i)] = v;
    }
    hall_.sync.arrive_and_wait();
    std::copy(out.begin(), out.end(), values);
  }
  void gather(double* values, const long* offsets) override {
    publish(values);
    for (int r = 0; r < hall_.places; ++r)
      if (r != rank_)
        for (long i = offsets[r]; i < offsets[r + 1]; ++i) values[i] = hall_.published[static_cast<size_t>(r)][i];
    hall_.sync.arrive_and_wait();  // nobody changes its part before all have read it
  }

 private:
  void publish(double* values) {
    hall_.published[static_cast<size_t>(rank_)] = values;
    hall_.sync.arrive_and_wait();
  }
  template <class Op>
  void combine(double* values, long n, Op op) {
    publish(values);
    std::vector<double> out(static_cast<size_t>(n));
    for (long i = 0; i < n; ++i) {
      double v = hall_.published[0][i];
      for (int r = 1; r < hall_.places; ++r) v = op(v, hall_.published[static_cast<size_t>(r)][i]);
      out[static_cast<size_t>(i)] = v;
    }
    hall_.sync.arrive_and_wait();
    std::copy(out.begin(), out.end(), values);
  }
  Hall& hall_;
  int rank_;
};

struct Case {
  const char* name;
  RegretPath path;
  int places;
  int ev_window_min;
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class SharedAgents : public ::testing::TestWithParam<Case> {};

struct Steps {
  std::vector<StepStats> stats;
  std::vector<StepTrace> traces;
  BackendState state;
};

// The populations and steps of both suites: families of a few hundred agents (64 chunks
// and partly filled ones), a warm-start step, then regret steps.
struct Setting {
  RunConfig cfg;
  RunInputs in;
};

Setting make_setting(const Case& c) {
  Setting s;
  RunConfig& cfg = s.cfg;
  cfg.agents = 700;  // families of a few hundred agents: 64 chunks and partly filled ones
  cfg.mix = "dc=0.3,ev=0.4,inv=0.3";
  cfg.horizon = 12;
  cfg.ev_window_min = c.ev_window_min;
  cfg.series_hours = 24 * 60;
  cfg.samples = 6;
  cfg.batch = 9;
  cfg.q = 4;
  cfg.rho = 0.5;
  s.in = load_inputs(cfg);
  return s;
}

Steps run_steps(Backend& backend, const Setting& s, int n_steps = 5) {
  Steps run;
  for (std::uint32_t step = 0; step < static_cast<std::uint32_t>(n_steps); ++step) {
    StepSpec spec;
    spec.step = step;
    spec.beta = step == 0 ? 1.0 : 0.2;  // a warm-start step, then the regret steps
    spec.lr = 1e-3;
    for (long b = 0; b < s.cfg.batch; ++b) spec.rows.push_back((b * 53 + step * 7) % s.in.data.fit_rows);
    StepTrace trace;
    // The trace asks for every weight; the last steps run without one, as training does.
    run.stats.push_back(backend.step(spec, step < 3 ? &trace : nullptr));
    run.traces.push_back(trace);
  }
  run.state = backend.state();
  return run;
}

// K backends in K threads, one place each, from `start` when given.
std::vector<Steps> run_places(const Problem& p, const Setting& s, int places, int n_steps = 5,
                              const BackendState* start = nullptr) {
  Hall hall(places);
  std::vector<Steps> runs(static_cast<size_t>(places));
  std::vector<std::thread> threads;
  for (int r = 0; r < places; ++r)
    threads.emplace_back([&, r] {
      ThreadReducer reducer(hall, r);
      Problem pr = p;
      pr.reducer = &reducer;
      auto backend = make_backend("cpu", 1);
      backend->setup(pr);
      if (start) backend->set_state(*start);
      runs[static_cast<size_t>(r)] = run_steps(*backend, s, n_steps);
    });
  for (auto& t : threads) t.join();
  return runs;
}

// The steps of one backend (one process, no places).
Steps one_backend(const Problem& p, const Setting& s) {
  auto backend = make_backend("cpu", 1);
  backend->setup(p);
  return run_steps(*backend, s);
}

// Every step's statistics and trace of `got` equal `ref`'s bit for bit.
void expect_same_steps(const Steps& got, const Steps& ref) {
  for (size_t s = 0; s < ref.stats.size(); ++s) {
    SCOPED_TRACE("step " + std::to_string(s));
    EXPECT_TRUE(bitwise_equal(got.stats[s].loss, ref.stats[s].loss));
    EXPECT_TRUE(bitwise_equal(got.stats[s].power_mean, ref.stats[s].power_mean));
    EXPECT_TRUE(bitwise_equal(got.stats[s].mean_regret, ref.stats[s].mean_regret));
    EXPECT_TRUE(bitwise_equal(got.stats[s].grad_norm, ref.stats[s].grad_norm));
    EXPECT_TRUE(bitwise_equal(got.traces[s].rhat, ref.traces[s].rhat));
    EXPECT_TRUE(bitwise_equal(got.traces[s].omega, ref.traces[s].omega));
    EXPECT_TRUE(bitwise_equal(got.traces[s].advantage, ref.traces[s].advantage));
    EXPECT_TRUE(bitwise_equal(got.traces[s].g, ref.traces[s].g));
  }
}

TEST_P(SharedAgents, EqualOneProcessBitForBit) {
  const Case c = GetParam();
  const Setting set = make_setting(c);
  Problem p = make_problem(set.cfg, set.in);
  p.regret_path = c.path;
  const Steps ref = one_backend(p, set);
  const std::vector<Steps> runs = run_places(p, set, c.places);

  for (int r = 0; r < c.places; ++r) {
    SCOPED_TRACE("place " + std::to_string(r) + " of " + std::to_string(c.places));
    const Steps& got = runs[static_cast<size_t>(r)];
    expect_same_steps(got, ref);
    test::expect_same_state(got.state, ref.state, "after 5 steps");
  }
}

INSTANTIATE_TEST_SUITE_P(
    PathsAndPlaces, SharedAgents,
    ::testing::Values(Case{"automatic_2", RegretPath::automatic, 2, 0},
                      Case{"automatic_3_windows", RegretPath::automatic, 3, 6},
                      Case{"lanes_3", RegretPath::generic, 3, 0},
                      Case{"lanes_4_windows", RegretPath::generic, 4, 6},
                      Case{"reference_2", RegretPath::reference, 2, 0},
                      Case{"reference_5_windows", RegretPath::reference, 5, 6},
                      Case{"structured_4", RegretPath::structured, 4, 6}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// --fast-reduce: every place keeps its own agents' regrets, the sums are reduced.
class FastReduce : public ::testing::TestWithParam<Case> {};

double relative(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-300); }

TEST_P(FastReduce, ReproducibleAndCloseToOneProcess) {
  const Case c = GetParam();
  const Setting set = make_setting(c);
  Problem p = make_problem(set.cfg, set.in);
  p.regret_path = c.path;
  const Steps ref = one_backend(p, set);
  p.fast_reduce = true;
  const std::vector<Steps> first = run_places(p, set, c.places);
  const std::vector<Steps> again = run_places(p, set, c.places);
  for (int r = 0; r < c.places; ++r) {
    SCOPED_TRACE("place " + std::to_string(r) + " of " + std::to_string(c.places));
    const Steps& got = first[static_cast<size_t>(r)];
    const Steps& other = again[static_cast<size_t>(r)];
    const Steps& place0 = first[0];
    for (size_t s = 0; s < ref.stats.size(); ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      // The same K: the same bits run after run, and on every place.
      for (const Steps* same : {&other, &place0}) {
        EXPECT_TRUE(bitwise_equal(got.stats[s].loss, same->stats[s].loss));
        EXPECT_TRUE(bitwise_equal(got.stats[s].power_mean, same->stats[s].power_mean));
        EXPECT_TRUE(bitwise_equal(got.stats[s].mean_regret, same->stats[s].mean_regret));
        EXPECT_TRUE(bitwise_equal(got.stats[s].max_regret, same->stats[s].max_regret));
        EXPECT_TRUE(bitwise_equal(got.stats[s].grad_norm, same->stats[s].grad_norm));
        EXPECT_TRUE(bitwise_equal(got.traces[s].advantage, same->traces[s].advantage));
        EXPECT_TRUE(bitwise_equal(got.traces[s].g, same->traces[s].g));
      }
      // One process's values to rounding (measured: up to about 1e-15).
      EXPECT_LT(relative(got.stats[s].loss, ref.stats[s].loss), 1e-12);
      EXPECT_LT(relative(got.stats[s].power_mean, ref.stats[s].power_mean), 1e-12);
      EXPECT_LT(relative(got.stats[s].mean_regret, ref.stats[s].mean_regret), 1e-12);
      EXPECT_LT(relative(got.stats[s].max_regret, ref.stats[s].max_regret), 1e-12);
      EXPECT_LT(relative(got.stats[s].grad_norm, ref.stats[s].grad_norm), 1e-10);
      EXPECT_EQ(got.stats[s].finite, ref.stats[s].finite);
    }
    EXPECT_TRUE(bitwise_equal(got.state.params, other.state.params));
    EXPECT_TRUE(bitwise_equal(got.state.params, place0.state.params));
    ASSERT_EQ(got.state.params.size(), ref.state.params.size());
    const double scale = test::max_abs(ref.state.params);
    for (size_t i = 0; i < ref.state.params.size(); ++i)
      ASSERT_NEAR(got.state.params[i], ref.state.params[i], 1e-6 * scale) << "parameter " << i;
    // The state gathers every agent's smoothed regret from the place that counts it (what a
    // checkpoint or a sweep's hand-over saves): the same on every place, one process's to
    // rounding.
    EXPECT_TRUE(bitwise_equal(got.state.rbar, place0.state.rbar));
    ASSERT_EQ(got.state.rbar.size(), ref.state.rbar.size());
    const double rscale = test::max_abs(ref.state.rbar);
    for (size_t i = 0; i < ref.state.rbar.size(); ++i)
      ASSERT_NEAR(got.state.rbar[i], ref.state.rbar[i], 1e-6 * rscale) << "agent " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(
    PathsAndPlaces, FastReduce,
    ::testing::Values(Case{"automatic_2", RegretPath::automatic, 2, 0},
                      Case{"automatic_3_windows", RegretPath::automatic, 3, 6},
                      Case{"lanes_2_windows", RegretPath::generic, 2, 6},
                      Case{"reference_3", RegretPath::reference, 3, 0},
                      Case{"structured_3", RegretPath::structured, 3, 6}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

// In one place --fast-reduce has nothing to reduce: the default's bits, with the local
// reducer and with an in-process one of one place.
TEST(FastReduce, OnePlaceIsTheDefaultBitForBit) {
  for (const Case c : {Case{"automatic", RegretPath::automatic, 1, 6},
                       Case{"reference", RegretPath::reference, 1, 0}}) {
    SCOPED_TRACE(c.name);
    const Setting set = make_setting(c);
    Problem p = make_problem(set.cfg, set.in);
    p.regret_path = c.path;
    const Steps ref = one_backend(p, set);
    p.fast_reduce = true;
    const Steps local = one_backend(p, set);
    const Steps hall = run_places(p, set, 1)[0];
    for (const Steps* got : {&local, &hall}) expect_same_steps(*got, ref);
    test::expect_same_state(local.state, ref.state, "local reducer");
    test::expect_same_state(hall.state, ref.state, "one place");
  }
}

// A state with every agent's Rbar (the default path's checkpoint) given to --fast-reduce
// places: each takes its own agents' (the power mean of Rbar formed across places, then
// the fused pass), and the steps continue as one backend's do, to rounding.
TEST(FastReduce, ContinuesFromAStateWithEveryAgentsSmoothedRegrets) {
  const Case c{"automatic_2", RegretPath::automatic, 2, 6};
  const Setting set = make_setting(c);
  Problem p = make_problem(set.cfg, set.in);
  auto one = make_backend("cpu", 1);
  one->setup(p);
  const BackendState start = run_steps(*one, set, 3).state;
  ASSERT_FALSE(start.rbar.empty());
  auto again = make_backend("cpu", 1);
  again->setup(p);
  again->set_state(start);
  const Steps ref = run_steps(*again, set, 3);
  p.fast_reduce = true;
  const std::vector<Steps> got = run_places(p, set, c.places, 3, &start);
  for (const Steps& place : got)
    for (size_t s = 0; s < ref.stats.size(); ++s) {
      SCOPED_TRACE("step " + std::to_string(s));
      EXPECT_LT(relative(place.stats[s].loss, ref.stats[s].loss), 1e-12);
      EXPECT_LT(relative(place.stats[s].smoothed_power_mean, ref.stats[s].smoothed_power_mean), 1e-12);
      EXPECT_TRUE(bitwise_equal(place.stats[s].loss, got[0].stats[s].loss));
    }
}

// Objectives that need every agent in one place are refused, naming the flag.
TEST(FastReduce, RefusesObjectivesThatNeedEveryAgent) {
  const Setting set = make_setting(Case{"cvar", RegretPath::automatic, 1, 0});
  RunConfig cfg = set.cfg;
  cfg.objective = "cvar:0.2";
  Problem p = make_problem(cfg, set.in);
  p.fast_reduce = true;
  auto backend = make_backend("cpu", 1);
  try {
    backend->setup(p);
    ADD_FAILURE() << "cvar under --fast-reduce was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--fast-reduce"), std::string::npos) << e.what();
  }
  // The configuration itself is refused too, whatever the backend (validate).
  cfg.fast_reduce = true;
  for (const char* backend_name : {"cpu", "cuda"}) {
    cfg.backend = backend_name;
    EXPECT_THROW(validate(cfg), ConfigError) << backend_name;
  }
  cfg.objective = "tilt:2";
  EXPECT_NO_THROW(validate(cfg));
  cfg.backend = "cpu";
  Problem tilt = make_problem(cfg, set.in);
  tilt.fast_reduce = true;
  EXPECT_NO_THROW(make_backend("cpu", 1)->setup(tilt));
}

}  // namespace
}  // namespace eqpm
