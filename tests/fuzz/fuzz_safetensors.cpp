// libFuzzer target: safetensors files, models and checkpoints (decode_safetensors,
// load_model, load_checkpoint) and the eqpm.config JSON that eval and resume read from a
// model's metadata (config_from_json). Only eqpm::Error is a clean rejection; any other
// exception, a sanitizer report, a leak, a timeout, an accepted model whose layout does not
// fit its parameters, or a decoded file that does not survive encode -> decode is a
// finding. An input that starts with '{' is also read as an eqpm.config JSON object on
// its own (a safetensors file starts with its 8-byte header length, so the two rarely
// meet). With EQPM_FUZZ_WRITE_SEEDS=DIR it first writes valid seed files (a model, a
// checkpoint, a linear model and a file of mixed dtypes) into DIR. Run by tools/fuzz.sh.
#include <fcntl.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <map>
#include <vector>

#include "host/io/checkpoint.hpp"
#include "host/config.hpp"
#include "eqpm/error.hpp"
#include "eqpm/mlp.hpp"
#include "host/run.hpp"

#include "fuzz_util.hpp"

namespace {

using eqpm::fuzz::check_names_file;
using eqpm::fuzz::finding;
using eqpm::fuzz::TempInput;

void check_model(const eqpm::ModelFile& m) {
  const eqpm::MlpLayout& L = m.layout;
  if (L.layers < 1 || L.layers > eqpm::kMaxLayers) finding("accepted a model with a bad layer count");
  for (int l = 0; l <= L.layers; ++l)
    if (L.width[l] < 1 || L.width[l] > eqpm::kMaxWidth) finding("accepted a width out of range");
  if (L.parameter_count != long(m.params.size())) finding("parameter count differs from the layout");
  for (const float v : m.params)
    if (!std::isfinite(v)) finding("accepted a non-finite parameter");
  // A forward pass reads every parameter through the layout's offsets (ASan checks them).
  std::vector<float> x(size_t(L.input_dim()), 1.0f), pre(size_t(L.activation_count())),
      out(size_t(L.output_dim()));
  eqpm::mlp_forward(L, m.params.data(), x.data(), pre.data(), out.data());
  // eval and resume rebuild the run configuration from the metadata.
  if (const auto it = m.metadata.find("eqpm.config"); it != m.metadata.end()) {
    try {
      eqpm::config_from_json(it->second, "fuzz-model");
    } catch (const eqpm::Error&) {
    }
  }
}

bool same(const eqpm::SafetensorsFile& a, const eqpm::SafetensorsFile& b) {
  if (a.metadata != b.metadata || a.tensors.size() != b.tensors.size()) return false;
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const eqpm::Tensor& x = a.tensors[i];
    const eqpm::Tensor& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.bytes != y.bytes)
      return false;
  }
  return true;
}

// Valid files for the seed corpus, written with the library's own writers.
void write_seeds(const std::string& dir) {
  eqpm::RunConfig cfg;
  cfg.lookback = 4;
  cfg.horizon = 3;
  cfg.hidden = {5};
  const eqpm::MlpLayout layout =
      eqpm::make_mlp_layout(cfg.lookback + 2, cfg.hidden, cfg.horizon, eqpm::Activation::relu);
  const std::vector<float> params = eqpm::init_mlp_parameters(layout, 1);
  std::map<std::string, std::string> meta = {{"eqpm.version", "0.1.0"},
                                             {"eqpm.lookback", "4"},
                                             {"eqpm.horizon", "3"},
                                             {"eqpm.scaling", "mean"},
                                             {"eqpm.offset", "0"},
                                             {"eqpm.scale", "250.5"}};
  eqpm::save_model(dir + "/model-no-config.safetensors", layout, params, meta);
  meta["eqpm.config"] = eqpm::config_to_json(cfg);
  eqpm::save_model(dir + "/model.safetensors", layout, params, meta);

  eqpm::CheckpointData ck;
  ck.layout = layout;
  ck.state.params = params;
  ck.state.adam_m.assign(params.size(), 0.01f);
  ck.state.adam_v.assign(params.size(), 0.001f);
  ck.state.adam_step = 17;
  ck.state.rbar = {0.5, 1.25, 3.0};
  ck.state.msebar = 0.125;
  ck.step = 17;
  ck.metadata = meta;
  eqpm::save_checkpoint(dir + "/checkpoint.safetensors", ck);

  const eqpm::MlpLayout linear = eqpm::make_mlp_layout(3, {}, 2, eqpm::Activation::tanh);
  eqpm::save_model(dir + "/linear.safetensors", linear, eqpm::init_mlp_parameters(linear, 2), {});

  eqpm::SafetensorsFile mixed;
  mixed.metadata = {{"note", "escapes \" \\ \n \t \u00e9"}};
  auto tensor = [](std::string name, std::string dtype, std::vector<long long> shape, size_t n) {
    eqpm::Tensor t;
    t.name = std::move(name);
    t.dtype = std::move(dtype);
    t.shape = std::move(shape);
    t.bytes.assign(n, '\x01');
    return t;
  };
  mixed.tensors.push_back(tensor("scalar", "F64", {}, 8));
  mixed.tensors.push_back(tensor("empty", "F32", {0, 3}, 0));
  mixed.tensors.push_back(tensor("ids", "I64", {2, 2}, 32));
  mixed.tensors.push_back(tensor("half", "BF16", {3}, 6));
  eqpm::write_safetensors(dir + "/mixed.safetensors", mixed);

  const std::string json = eqpm::config_to_json(cfg);
  std::FILE* f = std::fopen((dir + "/config.json").c_str(), "wb");
  if (!f || std::fwrite(json.data(), 1, json.size(), f) != json.size() || std::fclose(f) != 0)
    throw eqpm::Error("cannot write " + dir + "/config.json");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = std::getenv("EQPM_FUZZ_WRITE_SEEDS")) {
    try {
      write_seeds(dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cannot write the safetensors seeds: %s\n", e.what());
      std::exit(1);
    }
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static TempInput input("model.safetensors");
  try {
    const std::string bytes(reinterpret_cast<const char*>(data), size);
    if (size > 0 && data[0] == '{') {
      try {
        eqpm::config_from_json(bytes, "fuzz-config.json");
      } catch (const eqpm::Error& e) {
        check_names_file(e, "fuzz-config.json");
      }
    }
    const std::string name = "fuzz-input.safetensors";
    eqpm::SafetensorsFile decoded;
    try {
      decoded = eqpm::decode_safetensors(bytes, name);
    } catch (const eqpm::Error& e) {
      check_names_file(e, name);
      return 0;
    }
    try {
      const std::string encoded = eqpm::encode_safetensors(decoded);
      if (!same(eqpm::decode_safetensors(encoded, "re-encoded"), decoded))
        finding("encode -> decode changed a decoded file");
    } catch (const eqpm::Error&) {
      // The writer is stricter than the reader (e.g. it refuses an empty tensor name).
    }
    const std::string& path = input.write(data, size);
    try {
      check_model(eqpm::load_model(path));
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
    }
    try {
      const eqpm::CheckpointData c = eqpm::load_checkpoint(path);
      const size_t p = size_t(c.layout.parameter_count);
      if (c.state.params.size() != p || c.state.adam_m.size() != p || c.state.adam_v.size() != p)
        finding("checkpoint state sizes differ from the layout");
      if (!std::isfinite(c.state.msebar)) finding("accepted a non-finite msebar");
    } catch (const eqpm::Error& e) {
      check_names_file(e, path);
    }
  } catch (const std::exception& e) {
    finding(std::string("exception other than eqpm::Error: ") + e.what());
  }
  return 0;
}
