// libFuzzer target: the Caltech-style EV sessions loader (load_ev_sessions), with and
// without sampling. Only eqpm::Error is a clean rejection; any other exception, a
// sanitizer report, a leak, a timeout, inconsistent counts or an agent that fails
// check_agent is a finding. Run by tools/fuzz.sh.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "eqpm/error.hpp"
#include "eqpm/io.hpp"
#include "eqpm/population.hpp"

namespace {

[[noreturn]] void finding(const std::string& what) {
  std::fprintf(stderr, "FINDING: %s\n", what.c_str());
  std::abort();
}

// The loaders take paths: each input is written to one temporary file per process
// (in /dev/shm when it is there, so no disk is touched).
class TempInput {
 public:
  explicit TempInput(const char* name) {
    const char* dir = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/eqpm-fuzz-" + std::to_string(::getpid()) + "-" + name;
  }
  ~TempInput() { ::unlink(path_.c_str()); }
  const std::string& write(const uint8_t* data, size_t size) {
    const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) finding("cannot create " + path_);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0) finding("cannot write " + path_);
      done += size_t(n);
    }
    ::close(fd);
    return path_;
  }

 private:
  std::string path_;
};

// Every rejection of an input file must name it (DESIGN.md 9).
void check_names_file(const eqpm::Error& e, const std::string& path) {
  if (std::string(e.what()).find(path) == std::string::npos)
    finding("error does not name the file '" + path + "': " + e.what());
}

constexpr int kHorizon = 12;

void check_agents(const std::vector<eqpm::Agent>& agents) {
  for (size_t i = 0; i < agents.size(); ++i) {
    const eqpm::Agent& a = agents[i];
    if (a.family != eqpm::Family::ev_charging) finding("an EV session became another family");
    const std::string why = eqpm::check_agent(a, kHorizon);
    if (!why.empty()) finding("session agent " + std::to_string(i) + " is invalid: " + why);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("sessions.csv");
  try {
    const std::string& path = input.write(data, size);
    try {
      eqpm::EvSessionStats st;
      const std::vector<eqpm::Agent> all = eqpm::load_ev_sessions(path, kHorizon, 0, 1, &st);
      if (st.kept != long(all.size())) finding("kept count differs from the sessions returned");
      if (st.total != st.kept + st.skipped_unparseable + st.skipped_inconsistent + st.skipped_duration)
        finding("session counts do not add up");
      check_agents(all);
      if (all.size() > 2) {
        const std::vector<eqpm::Agent> some = eqpm::load_ev_sessions(path, kHorizon, 2, 7, nullptr);
        if (some.size() != 2) finding("a sample of 2 returned " + std::to_string(some.size()));
        check_agents(some);
      }
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
    }
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
