// Atomic replacement of output files: temporary file + fsync + rename + folder fsync.
#include "host/io/atomic_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "eqpm/error.hpp"

namespace eqpm {
namespace {

namespace fs = std::filesystem;

std::string reason(int err) { return std::strerror(err); }

// Closes a descriptor on every path out of a scope unless released first.
class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports close()'s error (NFS and friends report write errors here).
  int close_checked() {
    const int fd = fd_;
    fd_ = -1;
    return ::close(fd) == 0 ? 0 : errno;
  }

 private:
  int fd_;
};

// Folder and file name of `path`; the folder is "." for a bare name.
std::pair<std::string, std::string> split_path(const std::string& path) {
  const fs::path p(path);
  std::string dir = p.parent_path().string();
  if (dir.empty()) dir = ".";
  return {dir, p.filename().string()};
}

std::string temp_name(const std::string& dir, const std::string& name) {
  static std::atomic<unsigned long> counter{0};
  return dir + "/." + name + ".tmp." + std::to_string(::getpid()) + "." +
         std::to_string(counter.fetch_add(1));
}

// The process id in a temporary's name ".<name>.tmp.<pid>.<n>", or -1 when the name is not
// one of ours.
long temp_owner(const std::string& file) {
  if (file.size() < 2 || file[0] != '.') return -1;
  const size_t at = file.rfind(".tmp.");
  if (at == std::string::npos || at == 0) return -1;
  const std::string rest = file.substr(at + 5);
  const size_t dot = rest.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == rest.size()) return -1;
  for (size_t i = 0; i < rest.size(); ++i)
    if (i != dot && (rest[i] < '0' || rest[i] > '9')) return -1;
  if (dot > 9) return -1;  // no process id has ten digits
  return std::stol(rest.substr(0, dot));
}

// Removes the temporaries that writers killed mid-write left in `dir` (a write that was
// cut short never renames its temporary). Only names of the form above whose process no
// longer exists are touched; a running writer's temporaries and every other file stay.
void remove_stale_temporaries(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string file = it->path().filename().string();
    const long pid = temp_owner(file);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code rm;
    if (it->is_regular_file(rm)) fs::remove(it->path(), rm);
  }
}

// 0 on success, else errno.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;  // no progress and no error: do not spin
    data += n;
    size -= static_cast<size_t>(n);
  }
  return 0;
}

int fsync_retry(int fd) {
  while (::fsync(fd) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

}  // namespace

void write_file_atomic(const std::string& requested, const std::string& bytes) {
  if (requested.empty()) throw Error("cannot write a file with an empty name");
  // Replace what a symbolic link points to, not the link; never replace a device, FIFO or
  // folder by a regular file.
  std::string path = requested;
  struct stat st {};
  if (::lstat(requested.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
    char* real = ::realpath(requested.c_str(), nullptr);
    if (real) {
      path = real;
      std::free(real);
    }
  }
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error("cannot write '" + requested + "': it exists and is not a regular file");
  const auto parts = split_path(path);
  const std::string& dir = parts.first;
  const std::string& name = parts.second;
  if (name.empty() || name == "." || name == "..")
    throw Error("cannot write '" + path + "': not a file name");
  const std::string tmp = temp_name(dir, name);
  const auto fail = [&](const std::string& what, int err, bool remove_tmp) {
    if (remove_tmp) ::unlink(tmp.c_str());
    throw Error("cannot write '" + path + "': " + what + ": " + reason(err));
  };

  FileDescriptor fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (fd.get() < 0) fail("cannot create a temporary file in '" + dir + "'", errno, false);
  if (const int err = write_all(fd.get(), bytes.data(), bytes.size())) fail("write", err, true);
  if (const int err = fsync_retry(fd.get())) fail("fsync", err, true);
  if (const int err = fd.close_checked()) fail("close", err, true);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename", errno, true);

  // Make the rename itself durable. Some file systems cannot fsync a folder (EINVAL);
  // the data is safe on those anyway, so only real I/O errors count.
  FileDescriptor dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0) fail("cannot open folder '" + dir + "' to sync it", errno, false);
  if (const int err = fsync_retry(dfd.get()); err != 0 && err != EINVAL && err != EROFS)
    fail("fsync of folder '" + dir + "'", err, false);
}

void ensure_output_dir(const std::string& dir, bool overwrite) {
  if (dir.empty()) throw Error("no output folder given (--out)");
  std::error_code ec;
  const fs::path p(dir);
  if (fs::exists(p, ec) && !fs::is_directory(p, ec))
    throw Error("output folder '" + dir + "' exists and is not a folder");
  fs::create_directories(p, ec);
  if (ec) throw Error("cannot create output folder '" + dir + "': " + ec.message());
  if (!fs::is_directory(p, ec))
    throw Error("output folder '" + dir + "' exists and is not a folder");

  static const char* const kResults[] = {"model.safetensors", "summary.json", "agents.csv",
                                         "sweep.csv", "checkpoint.safetensors"};
  if (!overwrite) {
    for (const char* f : kResults) {
      if (fs::exists(p / f, ec))
        throw Error("output folder '" + dir + "' already holds results (" + f +
                    "); pass --overwrite to replace them or choose another --out");
    }
    // The candidates of a --beta auto run (beta=<b>/), finished or interrupted.
    for (const auto& e : fs::directory_iterator(p, ec)) {
      if (!e.is_directory() || e.path().filename().string().rfind("beta=", 0) != 0) continue;
      for (const char* f : kResults)
        if (fs::exists(e.path() / f, ec))
          throw Error("output folder '" + dir + "' already holds results (" +
                      (e.path().filename() / f).string() +
                      "); pass --overwrite to replace them, --resume to continue an interrupted "
                      "run, or choose another --out");
    }
  }

  // Try it rather than ask access(): permissions, read-only mounts and ACLs all count.
  const std::string probe = temp_name(dir, "eqpm-write-test");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    throw Error("output folder '" + dir + "' is not writable: " + reason(err));
  }
  ::close(fd);
  ::unlink(probe.c_str());
  remove_stale_temporaries(dir);
}

}  // namespace eqpm
