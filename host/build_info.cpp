// The build's commit (build_info.hpp). Only this file sees EQPM_GIT_COMMIT, so a new commit
// recompiles one file. The "eqpm-commit:" prefix lets a script find it in any binary.
#include "host/build_info.hpp"

#ifndef EQPM_GIT_COMMIT
#define EQPM_GIT_COMMIT "unknown"
#endif

namespace eqpm {

const char* build_commit() {
  static const char tagged[] = "eqpm-commit:" EQPM_GIT_COMMIT;
  return tagged + sizeof("eqpm-commit:") - 1;
}

}  // namespace eqpm
