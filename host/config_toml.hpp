// Reading a run configuration from a TOML file (DESIGN.md 8). Keys are those of the
// option registry (config.hpp); they may sit at the top level or in the grouping tables
// [data], [population], [model], [objective], [optimiser] and [run]. Every value goes
// through set_option, so a file and the command line share one parser and one set of
// range checks.
#pragma once

#include <string>
#include <vector>

#include "host/config.hpp"

namespace eqpm {

// Applies every key of the file at `path` to `cfg`, in file order. Throws ConfigError
// "<path>:<line>:<col>: ..." for a syntax error, an unknown key or table, a value of the
// wrong TOML type (naming the key, the expected type and what was found), a value out of
// range, or a key given twice (e.g. at the top level and in a table). Cross-field checks
// are left to validate(), to be run after command-line overrides.
// A key in a table other than its own (`lr` under [model]) is an error too. With q_list
// given, `q` may also be an array of numbers (a sweep's q values), stored there.
// A relative input path (kInputPathKeys: series, demand_profile, population, ev_sessions)
// is relative to the file's folder: it is stored joined to that folder, and the text as
// written is kept in cfg.given_paths. Other paths (out) stay relative to the working
// folder.
void load_config_toml(const std::string& path, RunConfig& cfg,
                      std::vector<double>* q_list = nullptr);

}  // namespace eqpm
