// libFuzzer target: TOML run configurations (load_config_toml, then validate). Only
// eqpm::Error is a clean rejection; any other exception, a sanitizer report, a leak, a
// timeout, an error that does not name the file, or an accepted configuration whose
// config_to_toml text does not read back to the same configuration is a finding.
// Run by tools/fuzz.sh.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "eqpm/config.hpp"
#include "eqpm/config_toml.hpp"
#include "eqpm/error.hpp"

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
  static TempInput input("config.toml");
  static TempInput again("config-again.toml");
  try {
    const std::string& path = input.write(data, size);
    eqpm::RunConfig cfg;
    try {
      eqpm::load_config_toml(path, cfg);
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
      return 0;
    }
    try {
      eqpm::validate(cfg);
    } catch (const eqpm::Error&) {
      // Cross-field problems are reported without a file position, by design.
    }
    const std::string text = eqpm::config_to_toml(cfg);
    const std::string& path2 =
        again.write(reinterpret_cast<const uint8_t*>(text.data()), text.size());
    eqpm::RunConfig back;
    try {
      eqpm::load_config_toml(path2, back);
    } catch (const eqpm::Error& e) {
      finding(std::string("config_to_toml output does not read back: ") + e.what());
    }
    if (eqpm::config_to_json(back) != eqpm::config_to_json(cfg))
      finding("config_to_toml -> load_config_toml changed the configuration");
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
