// libFuzzer target: population.csv (read_population_csv). Only eqpm::Error is a clean
// rejection; any other exception, a sanitizer report, a leak, a timeout, an accepted agent
// that fails check_agent, or a population whose written form does not read back to the
// same bytes (write -> read -> write) is a finding. Run by tools/fuzz.sh.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <sstream>

#include "eqpm/error.hpp"
#include "host/io/io.hpp"
#include "eqpm/population.hpp"

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

constexpr int kHorizon = 12;

std::string written(const eqpm::Population& p) {
  std::ostringstream os;
  eqpm::write_population_csv(p, os);
  return os.str();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("population.csv");
  static TempInput again("population-again.csv");
  try {
    const std::string& path = input.write(data, size);
    eqpm::Population pop;
    try {
      pop = eqpm::read_population_csv(path, kHorizon);
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
      return 0;
    }
    if (pop.agents.empty()) finding("a population without agents was accepted");
    for (size_t i = 0; i < pop.agents.size(); ++i) {
      const std::string why = eqpm::check_agent(pop.agents[i], kHorizon);
      if (!why.empty()) finding("agent " + std::to_string(i) + " was accepted but " + why);
    }
    const std::string first = written(pop);
    const std::string& path2 =
        again.write(reinterpret_cast<const uint8_t*>(first.data()), first.size());
    eqpm::Population back;
    try {
      back = eqpm::read_population_csv(path2, kHorizon);
    } catch (const eqpm::Error& e) {
      finding(std::string("a written population does not read back: ") + e.what());
    }
    if (written(back) != first) finding("write -> read -> write changed the bytes");
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
