// Writing output files so that nothing a user has is ever left half-written (DESIGN.md 9):
// every file goes to a temporary beside its target, is flushed to disk and renamed over
// the target, so a reader sees either the old file or the new one, never a mix.
#pragma once

#include <string>

namespace eqpm {

// Replaces `path` with `bytes`: writes a temporary file in the same folder, fsyncs it,
// renames it over `path` and fsyncs the folder. On any failure (missing or unwritable
// folder, disk full, ...) the temporary is removed, the previous file is left as it was
// and an eqpm::Error names the path and the system's reason.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Makes `dir` (and its parents) ready to receive a run's results. Throws an eqpm::Error
// when it cannot be created, is not a writable folder, or already holds results
// (model.safetensors, summary.json, agents.csv, sweep.csv, checkpoint.safetensors) and
// `overwrite` is false. Temporaries left in `dir` by writers that were killed mid-write
// (their process no longer exists) are removed; nothing else is.
void ensure_output_dir(const std::string& dir, bool overwrite);

}  // namespace eqpm
