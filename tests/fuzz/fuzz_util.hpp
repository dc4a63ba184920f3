// Shared by the libFuzzer targets: how a target reports a finding, the per-process
// temporary file the path-taking loaders read, and the check that a rejection names the
// file (DESIGN.md 9).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "eqpm/error.hpp"

namespace eqpm::fuzz {

// A finding: print it and abort, so libFuzzer saves the input.
[[noreturn]] inline void finding(const std::string& what) {
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
  TempInput(const TempInput&) = delete;
  TempInput& operator=(const TempInput&) = delete;
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
inline void check_names_file(const eqpm::Error& e, const std::string& path) {
  if (std::string(e.what()).find(path) == std::string::npos)
    finding("error does not name the file '" + path + "': " + e.what());
}

}  // namespace eqpm::fuzz
