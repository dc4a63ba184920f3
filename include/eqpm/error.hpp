// Exceptions of eqpm. Every failure a user can cause is an Error whose message says
// where (file:line:column, a flag, or a config key) and what was expected; main()
// prints it and exits non-zero. Nothing calls exit() from library code.
#pragma once

#include <stdexcept>
#include <string>

namespace eqpm {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A problem with an input file at a known position (line and column are 1-based;
// 0 means "not applicable", e.g. an empty file).
class InputError : public Error {
 public:
  InputError(std::string file, long line, long column, const std::string& message)
      : Error(format(file, line, column, message)),
        file_(std::move(file)), line_(line), column_(column) {}
  const std::string& file() const { return file_; }
  long line() const { return line_; }
  long column() const { return column_; }

 private:
  static std::string format(const std::string& file, long line, long column,
                            const std::string& message) {
    // Appends piece by piece (GCC 12 misreports -Wrestrict on chained operator+).
    std::string s = file;
    if (line > 0) s.append(":").append(std::to_string(line));
    if (line > 0 && column > 0) s.append(":").append(std::to_string(column));
    s.append(": ").append(message);
    return s;
  }
  std::string file_;
  long line_;
  long column_;
};

// A bad command-line value or configuration key.
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace eqpm
