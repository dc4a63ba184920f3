// The forecaster mu_theta (DESIGN.md section 3): the flat parameter layout, deterministic
// initialisation, the forward pass against a hand computation, and mlp_backward against
// central finite differences in double precision for every activation and several shapes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "eqpm/error.hpp"
#include "eqpm/mlp.hpp"
#include "eqpm/rng.hpp"
#include "test_util.hpp"

namespace eqpm {
namespace {

const Activation kActivations[] = {Activation::relu, Activation::tanh, Activation::gelu};

TEST(MlpLayout, OffsetsAndCounts) {
  const MlpLayout L = make_mlp_layout(5, {7, 3}, 2, Activation::tanh);
  EXPECT_EQ(L.layers, 3);
  EXPECT_EQ(L.width[0], 5);
  EXPECT_EQ(L.width[1], 7);
  EXPECT_EQ(L.width[2], 3);
  EXPECT_EQ(L.width[3], 2);
  // W0 [7 x 5], b0 [7], W1 [3 x 7], b1 [3], W2 [2 x 3], b2 [2], packed in that order.
  EXPECT_EQ(L.weight_offset[0], 0);
  EXPECT_EQ(L.bias_offset[0], 35);
  EXPECT_EQ(L.weight_offset[1], 42);
  EXPECT_EQ(L.bias_offset[1], 63);
  EXPECT_EQ(L.weight_offset[2], 66);
  EXPECT_EQ(L.bias_offset[2], 72);
  EXPECT_EQ(L.parameter_count, 74);
  EXPECT_EQ(L.input_dim(), 5);
  EXPECT_EQ(L.output_dim(), 2);
  EXPECT_EQ(L.max_width(), 7);
  EXPECT_EQ(L.activation_count(), 7 + 3 + 2);
  EXPECT_EQ(L.activation, Activation::tanh);

  const MlpLayout N = make_mlp_layout(26, {}, 12, Activation::relu);  // no hidden layer
  EXPECT_EQ(N.layers, 1);
  EXPECT_EQ(N.bias_offset[0], 26 * 12);
  EXPECT_EQ(N.parameter_count, 26 * 12 + 12);
  EXPECT_EQ(N.activation_count(), 12);

  // The default model of DESIGN.md 3: L = 24, H = 12, hidden [64, 64].
  const MlpLayout D = make_mlp_layout(26, {64, 64}, 12, Activation::relu);
  EXPECT_EQ(D.parameter_count, 26 * 64 + 64 + 64 * 64 + 64 + 64 * 12 + 12);
}

TEST(MlpLayout, BadShapesThrow) {
  EXPECT_THROW(make_mlp_layout(0, {4}, 2, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, {4}, 0, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, {0}, 2, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, {-4}, 2, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, {kMaxWidth + 1}, 2, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(kMaxWidth + 1, {4}, 2, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, {4}, kMaxWidth + 1, Activation::relu), ConfigError);
  EXPECT_THROW(make_mlp_layout(3, std::vector<int>(kMaxLayers, 4), 2, Activation::relu), ConfigError);
  // The limits themselves are allowed.
  EXPECT_NO_THROW(make_mlp_layout(3, {kMaxWidth}, 2, Activation::relu));
  EXPECT_NO_THROW(make_mlp_layout(3, std::vector<int>(kMaxLayers - 1, 4), 2, Activation::relu));
}

TEST(MlpActivation, NamesRoundTrip) {
  for (Activation a : kActivations) {
    Activation parsed;
    ASSERT_TRUE(parse_activation(activation_name(a), &parsed));
    EXPECT_EQ(parsed, a);
  }
  Activation parsed;
  EXPECT_FALSE(parse_activation("sigmoid", &parsed));
  EXPECT_FALSE(parse_activation("", &parsed));
}

TEST(MlpActivation, ValuesAndDerivatives) {
  EXPECT_EQ(activate(Activation::relu, -2.0), 0.0);
  EXPECT_EQ(activate(Activation::relu, 2.5), 2.5);
  EXPECT_DOUBLE_EQ(activate(Activation::tanh, 0.5), std::tanh(0.5));
  // GELU with the tanh approximation (not the erf form, 0.8413447).
  EXPECT_NEAR(activate(Activation::gelu, 1.0), 0.8411919906082768, 1e-12);
  EXPECT_NEAR(activate(Activation::gelu, -1.0), -0.15880800939172324, 1e-12);
  for (Activation a : kActivations)
    for (double x = -4.0; x <= 4.0; x += 0.37) {
      const double h = 1e-6;
      const double fd = (activate(a, x + h) - activate(a, x - h)) / (2 * h);
      EXPECT_NEAR(activate_grad(a, x), fd, 1e-8) << activation_name(a) << " at " << x;
    }
}

TEST(MlpSoftplus, ValuesAndTheSwitchAtTwenty) {
  EXPECT_DOUBLE_EQ(softplus(0.0), std::log(2.0));
  EXPECT_EQ(softplus(25.0), 25.0);
  EXPECT_EQ(softplus(20.5f), 20.5f);
  EXPECT_EQ(softplus(1e4), 1e4);
  EXPECT_NEAR(softplus(20.0), 20.0, 3e-9);   // log1p(e^20) = 20 + 2.1e-9
  EXPECT_NEAR(softplus(20.0f), 20.0f, 2e-6f);
  EXPECT_GT(softplus(-30.0), 0.0);
  EXPECT_NEAR(softplus(-30.0), std::exp(-30.0), 1e-20);
  EXPECT_TRUE(std::isfinite(softplus(-1e4f)));
  EXPECT_GE(softplus(-1e4f), 0.0f);
  EXPECT_DOUBLE_EQ(softplus_grad(0.0), 0.5);
  EXPECT_EQ(softplus_grad(25.0), 1.0);
  EXPECT_TRUE(std::isfinite(softplus_grad(-1e4)));
  for (double u = -10; u < 19.9; u += 0.7) {
    const double h = 1e-6;
    EXPECT_NEAR(softplus_grad(u), (softplus(u + h) - softplus(u - h)) / (2 * h), 1e-8) << u;
  }
}

TEST(MlpInit, DeterministicBoundedAndSeedDependent) {
  const MlpLayout L = make_mlp_layout(26, {64, 32}, 12, Activation::relu);
  const auto a = init_mlp_parameters(L, 42);
  const auto b = init_mlp_parameters(L, 42);
  const auto c = init_mlp_parameters(L, 43);
  const auto d = init_mlp_parameters(L, 42 + (1ULL << 32));
  ASSERT_EQ(static_cast<long>(a.size()), L.parameter_count);
  ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  long same_c = 0, same_d = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    same_c += a[i] == c[i];
    same_d += a[i] == d[i];
  }
  EXPECT_LT(same_c, 5);
  EXPECT_LT(same_d, 5);
  // PyTorch's default: U(-1/sqrt(in), 1/sqrt(in)) for weights and biases of each layer.
  for (int l = 0; l < L.layers; ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(L.width[l]));
    const long begin = L.weight_offset[l], end = L.bias_offset[l] + L.width[l + 1];
    double sum = 0, sum2 = 0;
    for (long i = begin; i < end; ++i) {
      const double x = a[static_cast<size_t>(i)];
      ASSERT_LE(std::abs(x), bound) << "layer " << l << " parameter " << i;
      sum += x;
      sum2 += x * x;
    }
    const double n = static_cast<double>(end - begin);
    const double var = bound * bound / 3.0;  // of U(-bound, bound)
    EXPECT_LT(std::abs(sum / n), 5.0 * std::sqrt(var / n)) << "layer " << l;
    EXPECT_NEAR(sum2 / n, var, 5.0 * std::sqrt(0.8 * var * var / n)) << "layer " << l;
  }
  // Layers of equal shape are not copies of each other (scaled by their bounds).
  const MlpLayout E = make_mlp_layout(16, {16, 16}, 16, Activation::relu);
  const auto e = init_mlp_parameters(E, 5);
  int equal = 0;
  for (long i = 0; i < E.bias_offset[0] + 16; ++i)
    equal += e[static_cast<size_t>(i)] == e[static_cast<size_t>(E.weight_offset[1] + i)];
  EXPECT_LT(equal, 3);
}

TEST(MlpForward, MatchesAHandComputation) {
  // in 2 -> hidden 2 (relu) -> out 1 (softplus), weights [out, in] row-major.
  const MlpLayout L = make_mlp_layout(2, {2}, 1, Activation::relu);
  const std::vector<double> p = {1.0, -1.0,   // W0 row 0
                                 2.0, 0.5,    // W0 row 1
                                 0.1, -0.2,   // b0
                                 0.5, -1.0,   // W1
                                 0.3};        // b1
  ASSERT_EQ(static_cast<long>(p.size()), L.parameter_count);
  const double x[2] = {1.0, 2.0};
  double pre[3], mu[1];
  mlp_forward<double>(L, p.data(), x, pre, mu);
  EXPECT_DOUBLE_EQ(pre[0], 1.0 - 2.0 + 0.1);   // -0.9, relu -> 0
  EXPECT_DOUBLE_EQ(pre[1], 2.0 + 1.0 - 0.2);   // 2.8
  EXPECT_DOUBLE_EQ(pre[2], 0.5 * 0.0 - 1.0 * 2.8 + 0.3);
  EXPECT_DOUBLE_EQ(mu[0], std::log1p(std::exp(-2.5)));
}

// A random input, parameters scaled so that every activation works in its non-linear range.
struct Net {
  MlpLayout L;
  std::vector<double> params;
  std::vector<double> x;
};

Net make_net(int in, const std::vector<int>& hidden, int out, Activation a, std::uint64_t seed) {
  Net n;
  n.L = make_mlp_layout(in, hidden, out, a);
  const auto p = init_mlp_parameters(n.L, seed);
  n.params.assign(p.begin(), p.end());
  for (auto& v : n.params) v *= 2.0;
  SplitMix64 rng(seed);
  n.x.resize(static_cast<size_t>(in));
  for (auto& v : n.x) v = rng.uniform(-1.5, 1.5);
  return n;
}

double weighted_output(const Net& n, const std::vector<double>& params, const std::vector<double>& c) {
  std::vector<double> pre(static_cast<size_t>(n.L.activation_count()));
  std::vector<double> mu(static_cast<size_t>(n.L.output_dim()));
  mlp_forward<double>(n.L, params.data(), n.x.data(), pre.data(), mu.data());
  double s = 0.0;
  for (size_t h = 0; h < mu.size(); ++h) s += c[h] * mu[h];
  return s;
}

// Smallest |pre-activation| over the hidden layers (relu has a kink at 0).
double closest_kink(const Net& n) {
  std::vector<double> pre(static_cast<size_t>(n.L.activation_count()));
  std::vector<double> mu(static_cast<size_t>(n.L.output_dim()));
  mlp_forward<double>(n.L, n.params.data(), n.x.data(), pre.data(), mu.data());
  double m = INFINITY;
  for (long i = 0; i < n.L.activation_count() - n.L.output_dim(); ++i)
    m = std::min(m, std::abs(pre[static_cast<size_t>(i)]));
  return m;
}

struct Shape {
  int in;
  std::vector<int> hidden;
  int out;
};

TEST(MlpBackward, MatchesCentralFiniteDifferences) {
  const std::vector<Shape> shapes = {{5, {}, 3}, {6, {8}, 4}, {4, {7, 5, 6}, 3}, {26, {16, 16}, 12}};
  for (Activation a : kActivations)
    for (const Shape& sh : shapes) {
      // Choose a seed whose relu pre-activations stay clear of the kink.
      Net n;
      for (std::uint64_t seed = 1;; ++seed) {
        n = make_net(sh.in, sh.hidden, sh.out, a, seed);
        if (a != Activation::relu || closest_kink(n) > 1e-3) break;
        ASSERT_LT(seed, 200u);
      }
      SplitMix64 rng(17);
      std::vector<double> c(static_cast<size_t>(sh.out));
      for (auto& v : c) v = rng.uniform(-1.0, 1.0);

      std::vector<double> pre(static_cast<size_t>(n.L.activation_count()));
      std::vector<double> mu(static_cast<size_t>(sh.out));
      mlp_forward<double>(n.L, n.params.data(), n.x.data(), pre.data(), mu.data());
      std::vector<double> grad(static_cast<size_t>(n.L.parameter_count), 0.0);
      mlp_backward<double>(n.L, n.params.data(), n.x.data(), pre.data(), c.data(), grad.data());

      std::vector<double> fd(grad.size());
      std::vector<double> p = n.params;
      for (size_t i = 0; i < p.size(); ++i) {
        const double h = 1e-6;
        const double keep = p[i];
        p[i] = keep + h;
        const double up = weighted_output(n, p, c);
        p[i] = keep - h;
        const double down = weighted_output(n, p, c);
        p[i] = keep;
        fd[i] = (up - down) / (2 * h);
      }
      EXPECT_ALL_CLOSE(grad, fd, 1e-8, 1e-6)
          << activation_name(a) << " with " << sh.hidden.size() << " hidden layers";
    }
}

TEST(MlpBackward, AccumulatesIntoTheGradient) {
  const Net n = make_net(6, {8}, 4, Activation::tanh, 3);
  std::vector<double> pre(static_cast<size_t>(n.L.activation_count())), mu(4);
  mlp_forward<double>(n.L, n.params.data(), n.x.data(), pre.data(), mu.data());
  const std::vector<double> c = {0.5, -1.0, 2.0, 0.25};
  std::vector<double> once(static_cast<size_t>(n.L.parameter_count), 0.0);
  mlp_backward<double>(n.L, n.params.data(), n.x.data(), pre.data(), c.data(), once.data());
  std::vector<double> twice(once.size(), 1.0);
  mlp_backward<double>(n.L, n.params.data(), n.x.data(), pre.data(), c.data(), twice.data());
  mlp_backward<double>(n.L, n.params.data(), n.x.data(), pre.data(), c.data(), twice.data());
  for (size_t i = 0; i < once.size(); ++i) ASSERT_NEAR(twice[i], 1.0 + 2.0 * once[i], 1e-14);
}

TEST(MlpPrecision, FloatParametersAndFloatForward) {
  // The CPU backend runs the forward pass in float and the backward pass in double on float
  // parameters: the mixed instantiation equals the all-double one on the same values.
  for (Activation a : kActivations) {
    const MlpLayout L = make_mlp_layout(10, {12, 9}, 5, a);
    const std::vector<float> pf = init_mlp_parameters(L, 11);
    const std::vector<double> pd(pf.begin(), pf.end());
    std::vector<double> x(10);
    SplitMix64 rng(4);
    for (auto& v : x) v = rng.uniform(-1, 1);
    std::vector<double> pre_d(static_cast<size_t>(L.activation_count())), mu_d(5);
    mlp_forward<double>(L, pd.data(), x.data(), pre_d.data(), mu_d.data());
    std::vector<double> pre_m(pre_d.size()), mu_m(5);
    mlp_forward<double>(L, pf.data(), x.data(), pre_m.data(), mu_m.data());
    EXPECT_EQ(std::memcmp(pre_d.data(), pre_m.data(), pre_d.size() * sizeof(double)), 0);
    const std::vector<double> c = {1, -2, 0.5, 0.1, 3};
    std::vector<double> gd(static_cast<size_t>(L.parameter_count)), gm(gd.size());
    mlp_backward<double>(L, pd.data(), x.data(), pre_d.data(), c.data(), gd.data());
    mlp_backward<double>(L, pf.data(), x.data(), pre_d.data(), c.data(), gm.data());
    EXPECT_EQ(std::memcmp(gd.data(), gm.data(), gd.size() * sizeof(double)), 0);
    // Float forward close to double.
    std::vector<float> xf(x.begin(), x.end()), pre_f(pre_d.size()), mu_f(5);
    mlp_forward<float>(L, pf.data(), xf.data(), pre_f.data(), mu_f.data());
    EXPECT_ALL_CLOSE(mu_f, mu_d, 1e-6, 1e-5);
  }
}

}  // namespace
}  // namespace eqpm
