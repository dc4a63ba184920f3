// libFuzzer target: TOML run configurations (load_config_toml, then validate). Only
// eqpm::Error is a clean rejection; any other exception, a sanitizer report, a leak, a
// timeout, an error that does not name the file, or an accepted configuration whose
// config_to_toml text does not read back to the same configuration is a finding.
// Run by tools/fuzz.sh.
//
// Known bug, filtered out unless EQPM_FUZZ_ALL=1: toml++ 3.3 (Debian's libtomlplusplus-dev)
// reaches __builtin_unreachable() in is_non_ascii_horizontal_whitespace() for 3019 code
// points (U+00A1..U+0499, U+2CBE..U+30B7, U+FCA6..U+FEFE, a few excepted) met where it
// skips whitespace; two bytes "\xcc\xaa" are enough (marzer/tomlplusplus#190, #295,
// fixed upstream by PR #305). The regression test is
// FaultsToml.NonAsciiWhereWhitespaceMayBeIsAConfigError in tests/test_faults.cpp; without
// the filter every run stops on this one bug and finds nothing else.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "host/config.hpp"
#include "host/config_toml.hpp"
#include "eqpm/error.hpp"

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

// Whether toml++ 3.3's whitespace classifier has undefined behaviour for code point c: the
// same range checks as the library's, without calling it.
bool trips_toml_whitespace_bug(char32_t c) {
  if (c <= 0xA0 || c >= 0xFEFF || c == 0x3000) return false;
  const unsigned long long child = (static_cast<unsigned long long>(c) - 0xA0ull) / 0x3FAull;
  if ((1ull << child) & 0x7FFFFFFFFFFFF75Eull) return false;
  return child != 5 && child != 7;
}

bool has_known_toml_bug(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] < 0x80) continue;
    int len = (p[i] & 0xE0) == 0xC0 ? 2 : (p[i] & 0xF0) == 0xE0 ? 3 : (p[i] & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + size_t(len) > n) continue;
    char32_t c = p[i] & (0x7F >> len);
    for (int k = 1; k < len; ++k) c = (c << 6) | (p[i + size_t(k)] & 0x3F);
    if (trips_toml_whitespace_bug(c)) return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("config.toml");
  static TempInput again("config-again.toml");
  static const bool all = std::getenv("EQPM_FUZZ_ALL") != nullptr;
  if (!all && has_known_toml_bug(data, size)) return 0;
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
