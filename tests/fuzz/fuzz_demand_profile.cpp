// libFuzzer target: the datacenter demand profile loader (load_demand_profile), both the
// Time,Demand trace and the one-column demand format. Only eqpm::Error is a clean
// rejection; any other exception, a sanitizer report, a leak, a timeout or an accepted
// profile that is not finite and positive is a finding. Run by tools/fuzz.sh.
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

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("demand.csv");
  try {
    const std::string& path = input.write(data, size);
    try {
      const std::vector<float> d = eqpm::load_demand_profile(path);
      if (d.empty()) finding("an empty demand profile was accepted");
      for (size_t i = 0; i < d.size(); ++i)
        if (!std::isfinite(d[i]) || !(d[i] > 0))
          finding("demand value " + std::to_string(i) + " is not finite and positive");
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
    }
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
