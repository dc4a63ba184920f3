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
#include "eqpm/io.hpp"

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
