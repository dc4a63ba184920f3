// Which sources a binary was built from: the git commit at CMake configure time, with
// "-dirty" when tracked files differed from it ("unknown" outside a git checkout).
// tools/device-check.sh compares it with the checkout before it runs anything.
#pragma once

namespace eqpm {

const char* build_commit();

}  // namespace eqpm
