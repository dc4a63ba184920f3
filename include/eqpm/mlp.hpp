// The forecaster mu_theta (DESIGN.md section 3): an MLP with configurable hidden widths
// and activation and a softplus output, parameters in ONE flat float array laid out
// layer by layer as W_i ([out, in], row-major, PyTorch's nn.Linear) then b_i.
// The per-sample forward/backward here are the reference used by the CPU backend and by
// the tests (in double for finite differences); the CUDA backend has its own kernels
// and is tested against these.
#pragma once

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "eqpm/hd.hpp"

namespace eqpm {

enum class Activation : int { relu = 0, tanh = 1, gelu = 2 };

const char* activation_name(Activation a);
bool parse_activation(const std::string& text, Activation* out);

template <class T>
EQPM_HD_INLINE T activate(Activation a, T x) {
  switch (a) {
    case Activation::relu: return x > T(0) ? x : T(0);
    case Activation::tanh: return tanh(x);
    case Activation::gelu: {
      // tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
      const T c = T(0.7978845608028654);
      const T inner = c * (x + T(0.044715) * x * x * x);
      return T(0.5) * x * (T(1) + tanh(inner));
    }
  }
  return x;
}

// d activate(x) / dx at the pre-activation x.
template <class T>
EQPM_HD_INLINE T activate_grad(Activation a, T x) {
  switch (a) {
    case Activation::relu: return x > T(0) ? T(1) : T(0);
    case Activation::tanh: {
      const T th = tanh(x);
      return T(1) - th * th;
    }
    case Activation::gelu: {
      const T c = T(0.7978845608028654);
      const T inner = c * (x + T(0.044715) * x * x * x);
      const T th = tanh(inner);
      const T dinner = c * (T(1) + T(3) * T(0.044715) * x * x);
      return T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner;
    }
  }
  return T(1);
}

// softplus(u) = log(1 + exp(u)), u itself above 20 (where the two agree in float).
template <class T>
EQPM_HD_INLINE T softplus(T u) {
  return u > T(20) ? u : log1p(exp(u));
}
template <class T>
EQPM_HD_INLINE T softplus_grad(T u) {  // the logistic sigmoid
  return u > T(20) ? T(1) : T(1) / (T(1) + exp(-u));
}

// Shapes and offsets of the flat parameter array; a POD so kernels can take it by value.
struct MlpLayout {
  int layers = 0;                 // number of linear layers
  int width[kMaxLayers + 1] = {};  // width[0] = input dim, width[layers] = output dim
  long weight_offset[kMaxLayers] = {};
  long bias_offset[kMaxLayers] = {};
  long parameter_count = 0;
  Activation activation = Activation::relu;

  int input_dim() const { return width[0]; }
  int output_dim() const { return width[layers]; }
  int max_width() const {
    int m = 0;
    for (int i = 0; i <= layers; ++i) m = width[i] > m ? width[i] : m;
    return m;
  }
  // Sum of all layer widths after the input: floats of activations kept per sample.
  long activation_count() const {
    long n = 0;
    for (int i = 1; i <= layers; ++i) n += width[i];
    return n;
  }
};

// input -> hidden... -> output; throws ConfigError on bad shapes.
MlpLayout make_mlp_layout(int input_dim, const std::vector<int>& hidden, int output_dim,
                          Activation activation);

// Deterministic initialisation from the seed (PyTorch's default: U(-1/sqrt(in), 1/sqrt(in))
// for weights and biases), from Philox so it does not depend on the standard library.
std::vector<float> init_mlp_parameters(const MlpLayout& layout, unsigned long long seed);

// Forward pass of one sample. `pre` receives every layer's pre-activation
// (activation_count() values, layer by layer); out receives mu = softplus(last pre).
// Dot products accumulate in T in input order.
template <class T, class P>
EQPM_HD_INLINE void mlp_forward(const MlpLayout& L, const P* params, const T* x, T* pre, T* out) {
  T buf[2][kMaxWidth];
  const T* a = x;
  T* pre_layer = pre;
  for (int l = 0; l < L.layers; ++l) {
    const int in = L.width[l], outw = L.width[l + 1];
    const P* W = params + L.weight_offset[l];
    const P* bias = params + L.bias_offset[l];
    T* next = buf[l & 1];
    const bool last = l + 1 == L.layers;
    for (int j = 0; j < outw; ++j) {
      T z = T(bias[j]);
      const P* row = W + static_cast<long>(j) * in;
      for (int i = 0; i < in; ++i) z += T(row[i]) * a[i];
      pre_layer[j] = z;
      next[j] = last ? softplus(z) : activate(L.activation, z);
    }
    a = next;
    pre_layer += outw;
  }
  for (int j = 0; j < L.output_dim(); ++j) out[j] = a[j];
}

// Backward pass of one sample: given dLoss/dmu (dout), adds dLoss/dtheta into grad.
// `x` and `pre` are the forward pass's input and pre-activations.
template <class T, class P, class G>
inline void mlp_backward(const MlpLayout& L, const P* params, const T* x, const T* pre,
                         const T* dout, G* grad) {
  // Offsets of each layer's pre-activations inside `pre`.
  long pre_off[kMaxLayers + 1];
  pre_off[0] = 0;
  for (int l = 0; l < L.layers; ++l) pre_off[l + 1] = pre_off[l] + L.width[l + 1];
  T delta[kMaxWidth], prev[kMaxWidth];
  const int out = L.output_dim();
  for (int j = 0; j < out; ++j) delta[j] = dout[j] * softplus_grad(pre[pre_off[L.layers - 1] + j]);
  for (int l = L.layers - 1; l >= 0; --l) {
    const int in = L.width[l], outw = L.width[l + 1];
    const P* W = params + L.weight_offset[l];
    G* gW = grad + L.weight_offset[l];
    G* gb = grad + L.bias_offset[l];
    // Input activations of layer l.
    T a_in[kMaxWidth];
    if (l == 0) {
      for (int i = 0; i < in; ++i) a_in[i] = x[i];
    } else {
      for (int i = 0; i < in; ++i) a_in[i] = activate(L.activation, pre[pre_off[l - 1] + i]);
    }
    for (int j = 0; j < outw; ++j) {
      gb[j] += G(delta[j]);
      G* grow = gW + static_cast<long>(j) * in;
      for (int i = 0; i < in; ++i) grow[i] += G(delta[j] * a_in[i]);
    }
    if (l == 0) break;
    for (int i = 0; i < in; ++i) {
      T s = T(0);
      for (int j = 0; j < outw; ++j) s += T(W[static_cast<long>(j) * in + i]) * delta[j];
      prev[i] = s * activate_grad(L.activation, pre[pre_off[l - 1] + i]);
    }
    for (int i = 0; i < in; ++i) delta[i] = prev[i];
  }
}

}  // namespace eqpm
