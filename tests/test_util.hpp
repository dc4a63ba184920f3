// Shared test helpers: the one tolerance check used everywhere, where the real data lives,
// and temporary folders.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "eqpm/backend.hpp"
#include "host/io/checkpoint.hpp"

namespace eqpm::test {

// Tolerances used across the suite (one place, so they are easy to audit).
inline constexpr double kFloatRtol = 1e-5;     // one float op chain vs another
inline constexpr double kFloatAtol = 1e-7;
inline constexpr double kLargeSumRtol = 1e-4;  // float sums over >= 1e5 terms

// |got - ref| <= atol + rtol |ref| elementwise; on failure names the worst index and the
// share of the budget it used.
template <class A, class B>
::testing::AssertionResult all_close(const std::vector<A>& got, const std::vector<B>& ref,
                                     double atol, double rtol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs reference " << ref.size();
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), r = double(ref[i]);
    const double budget = atol + rtol * std::abs(r);
    const double diff = std::abs(g - r);
    const double used = !std::isfinite(g) ? INFINITY : diff == 0.0 ? 0.0 : diff / budget;
    if (used > worst || std::isnan(used)) {
      worst = std::isnan(used) ? INFINITY : used;
      worst_i = i;
    }
  }
  if (worst <= 1.0)
    return ::testing::AssertionSuccess() << "worst " << worst * 100 << "% of allowed";
  return ::testing::AssertionFailure()
         << "index " << worst_i << ": got " << double(got[worst_i]) << ", reference "
         << double(ref[worst_i]) << " (" << worst * 100 << "% of allowed, atol " << atol
         << ", rtol " << rtol << ")";
}

#define EXPECT_ALL_CLOSE(got, ref, atol, rtol) \
  EXPECT_TRUE(::eqpm::test::all_close((got), (ref), (atol), (rtol)))

// Same bits (same size and memory contents), for results that must not depend on the
// thread count, the path taken or a save/load round trip.
template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}
inline bool bitwise_equal(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The largest |x| of a vector (0 when empty): the scale of tolerances relative to it.
template <class T>
double max_abs(const std::vector<T>& v) {
  double m = 0.0;
  for (const T& x : v) m = std::max(m, std::abs(static_cast<double>(x)));
  return m;
}

// Two backend states are the same bits, field by field.
inline void expect_same_state(const BackendState& a, const BackendState& b, const std::string& what) {
  EXPECT_TRUE(bitwise_equal(a.params, b.params)) << what << ": params";
  EXPECT_TRUE(bitwise_equal(a.adam_m, b.adam_m)) << what << ": adam_m";
  EXPECT_TRUE(bitwise_equal(a.adam_v, b.adam_v)) << what << ": adam_v";
  EXPECT_EQ(a.adam_step, b.adam_step) << what;
  EXPECT_TRUE(bitwise_equal(a.rbar, b.rbar)) << what << ": rbar";
  EXPECT_TRUE(bitwise_equal(a.msebar, b.msebar)) << what << ": msebar";
}

// ../shared/data beside the checkout, or $EQPM_SHARED_DATA; empty when absent.
inline std::string shared_data_dir() {
  if (const char* env = std::getenv("EQPM_SHARED_DATA")) {
    if (std::filesystem::exists(env)) return env;
  }
#ifdef EQPM_SOURCE_DIR
  const std::string p = std::string(EQPM_SOURCE_DIR) + "/../shared/data";
  if (std::filesystem::exists(p)) return p;
#endif
  return "";
}

#define EQPM_REQUIRE_SHARED_DATA(dir)                                                   \
  const std::string dir = ::eqpm::test::shared_data_dir();                             \
  if (dir.empty()) GTEST_SKIP() << "real data folder ../shared/data not found; set "    \
                                   "EQPM_SHARED_DATA to run this test"

// A fresh temporary folder removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "eqpm";
    for (char& c : name)
      if (c == '/') c = '_';
    path_ = std::filesystem::temp_directory_path() /
            ("eqpm-test-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string p = file(name);
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }

 private:
  std::filesystem::path path_;
};

// Polls a run's checkpoint until it holds at least `min_step` steps or `seconds` pass;
// returns the last step read (0 while the file is absent or being replaced).
inline long wait_for_checkpoint(const std::string& path, long min_step, int seconds = 60) {
  long step = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(path)) {
      try {
        step = static_cast<long>(load_checkpoint(path).step);
      } catch (...) {
        step = 0;
      }
      if (step >= min_step) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return step;
}

#ifdef EQPM_BINARY
// Starts `eqpm ARGS` in a child process (through sh, so ARGS may redirect) and returns its
// pid, or -1 when fork fails: for tests that signal or kill a run mid-way.
inline pid_t spawn_eqpm(const std::string& args) {
  const pid_t child = ::fork();
  if (child == 0) {
    const std::string cmd = "exec " + std::string(EQPM_BINARY) + " " + args;
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return child;
}
#endif

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace eqpm::test
