// Model and checkpoint files in the safetensors format (DESIGN.md 8 and 8.1), readable
// from PyTorch and numpy: an 8-byte little-endian header length N, N bytes of JSON
// header naming each tensor's dtype, shape and byte range, then the tensors' bytes.
// Reading trusts nothing in the file: every length, offset and shape is checked before
// it is used, and any inconsistency is an InputError naming the file.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "eqpm/backend.hpp"
#include "eqpm/mlp.hpp"
#include "host/trainer.hpp"

namespace eqpm {

// Largest header accepted when reading (the format's own readers use the same limit).
inline constexpr std::uint64_t kSafetensorsMaxHeader = 100ull << 20;
// Largest tensor accepted when reading, in elements.
inline constexpr long long kSafetensorsMaxElements = 1ll << 31;

struct Tensor {
  std::string name;
  std::string dtype;              // "F32", "F64", "I64", ... as safetensors spells them
  std::vector<long long> shape;
  std::string bytes;              // little-endian, row-major
};

struct SafetensorsFile {
  std::vector<Tensor> tensors;    // in file order
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

// Bytes per element of a safetensors dtype; 0 for an unknown one.
int safetensors_dtype_size(const std::string& dtype);

// Encodes tensors in the given order, contiguous; the header is padded with spaces to a
// multiple of 8 bytes. Throws Error for inconsistent input (byte size not matching
// dtype and shape, duplicate or empty names, unknown dtype, non-UTF-8 text).
std::string encode_safetensors(const SafetensorsFile& file);
// Throws InputError(source_name, 0, 0, ...) for anything malformed; messages give the
// byte position (in the header or in the file) where it was found.
SafetensorsFile decode_safetensors(const std::string& bytes, const std::string& source_name);
SafetensorsFile read_safetensors(const std::string& path);
void write_safetensors(const std::string& path, const SafetensorsFile& file);  // atomic

// --- the model file of DESIGN.md 8.1: net.{i}.weight (F32, [out, in]) and net.{i}.bias
// (F32, [out]) for each layer i, string metadata as given by the caller (eqpm.version,
// eqpm.lookback, eqpm.horizon, eqpm.activation, eqpm.scaling, eqpm.offset, eqpm.scale,
// eqpm.config). eqpm.activation is filled in from the layout when absent; an
// eqpm.activation that disagrees with the layout is an Error.
void save_model(const std::string& path, const MlpLayout& layout,
                const std::vector<float>& params,
                const std::map<std::string, std::string>& metadata);

struct ModelFile {
  MlpLayout layout;
  std::vector<float> params;
  std::map<std::string, std::string> metadata;
};

// Rebuilds the layout from the tensors' shapes (layers must chain, widths within
// kMaxWidth, at most kMaxLayers layers) and the activation from eqpm.activation; values
// must be finite. Accepts a checkpoint too (its optimizer.* and state.* tensors are
// ignored); any other tensor is an error.
ModelFile load_model(const std::string& path);

// --- a checkpoint: everything a run needs to continue exactly where it stopped.
struct CheckpointData {
  MlpLayout layout;
  BackendState state;
  TrainerState trainer;
  std::uint64_t step = 0;
  std::map<std::string, std::string> metadata;
};

// Writes the weights as net.{i}.* (so a checkpoint is also a readable model),
// optimizer.adam_m and optimizer.adam_v (F32, [P]), state.rbar (F64, [N], omitted when
// empty) and metadata eqpm.step, eqpm.adam_step and eqpm.msebar (exact text) on top of
// the caller's metadata (those three keys always come from `data`, never from
// `data.metadata`); the trainer state as state.param_sum (F64, [P]) and state.best_params
// (F32, [P]), each omitted when empty, with eqpm.param_count, eqpm.best_score and
// eqpm.best_epoch. Throws Error when the sizes disagree with the layout.
void save_checkpoint(const std::string& path, const CheckpointData& data);
// Bit-exact inverse of save_checkpoint; the returned metadata excludes eqpm.step,
// eqpm.adam_step and eqpm.msebar (they are in the struct's fields).
CheckpointData load_checkpoint(const std::string& path);

}  // namespace eqpm
