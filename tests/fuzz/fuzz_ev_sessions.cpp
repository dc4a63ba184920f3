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
#include "host/io/io.hpp"
#include "eqpm/population.hpp"

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

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
