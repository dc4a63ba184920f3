// MLP layout and deterministic initialisation (DESIGN.md section 3).
#include "eqpm/mlp.hpp"

#include <cmath>

#include "eqpm/error.hpp"
#include "eqpm/rng.hpp"

namespace eqpm {

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::relu: return "relu";
    case Activation::tanh: return "tanh";
    case Activation::gelu: return "gelu";
  }
  return "?";
}

bool parse_activation(const std::string& text, Activation* out) {
  if (text == "relu") *out = Activation::relu;
  else if (text == "tanh") *out = Activation::tanh;
  else if (text == "gelu") *out = Activation::gelu;
  else return false;
  return true;
}

MlpLayout make_mlp_layout(int input_dim, const std::vector<int>& hidden, int output_dim,
                          Activation activation) {
  MlpLayout L;
  const int layers = static_cast<int>(hidden.size()) + 1;
  if (layers > kMaxLayers)
    throw ConfigError("hidden: at most " + std::to_string(kMaxLayers - 1) + " hidden layers");
  std::vector<int> widths{input_dim};
  widths.insert(widths.end(), hidden.begin(), hidden.end());
  widths.push_back(output_dim);
  for (int w : widths)
    if (w < 1 || w > kMaxWidth)
      throw ConfigError("layer width " + std::to_string(w) + " outside [1, " +
                        std::to_string(kMaxWidth) + "]");
  L.layers = layers;
  L.activation = activation;
  long off = 0;
  for (int l = 0; l < layers; ++l) {
    L.width[l] = widths[l];
    L.weight_offset[l] = off;
    off += static_cast<long>(widths[l]) * widths[l + 1];
    L.bias_offset[l] = off;
    off += widths[l + 1];
  }
  L.width[layers] = widths[layers];
  L.parameter_count = off;
  return L;
}

std::vector<float> init_mlp_parameters(const MlpLayout& L, unsigned long long seed) {
  std::vector<float> p(static_cast<size_t>(L.parameter_count));
  for (int l = 0; l < L.layers; ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(L.width[l]));
    const long begin = L.weight_offset[l];
    const long end = L.bias_offset[l] + L.width[l + 1];
    for (long i = begin; i < end; i += 4) {
      const auto r = philox_block(seed, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(l),
                                  0, static_cast<std::uint32_t>(RngStream::init) << 16);
      for (int k = 0; k < 4 && i + k < end; ++k) {
        const double u = (static_cast<double>(r.v[k]) + 0.5) * 0x1.0p-32;  // (0, 1)
        p[static_cast<size_t>(i + k)] = static_cast<float>((2.0 * u - 1.0) * bound);
      }
    }
  }
  return p;
}

}  // namespace eqpm
