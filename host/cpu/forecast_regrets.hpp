// Regrets and the equitable gradient for forecasts that come from outside eqpm's own model:
// a caller's predictions (R x H or B x H), truths and time indices, rather than dataset rows
// fed through the MLP. What the Python package's eqpm.regrets and eqpm.torch.EquitableLoss
// run. Both use the CPU backend's pieces: the sample lanes and shared EV classes for
// regrets (cpu_lanes.hpp, cpu_structured.hpp), and step_algebra.hpp / objectives.hpp for
// the estimator of DESIGN.md 5.2-5.3, so their numbers are the backend's to rounding.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cpu_structured.hpp"
#include "ev_conditional.hpp"
#include "eqpm/backend.hpp"
#include "eqpm/families.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/population.hpp"

namespace eqpm {

// Each agent's regret averaged over R rows: row r has prediction pred[r*H .. r*H+H),
// truth target[r*H ..) and time index t[r] (the datacenter demand lookup of DESIGN.md 4.1).
// Float regrets per row as the backends compute them, summed in double. `threads` 0: OpenMP's
// default. Throws Error when the demand profile is empty and the population has datacenter
// agents.
std::vector<double> forecast_regrets(const Population& population, const std::vector<float>& demand,
                                     const float* pred, const float* target, const long* t, long R,
                                     int H, float floor, int threads = 0);

// The fixed settings of the estimator (the Problem's fields that concern it).
struct GradientSettings {
  std::shared_ptr<const Objective> objective;  // null: power:0
  float sigma = 0.05f;
  int samples = 16;
  bool antithetic = true;
  float floor = 1e-3f;
  Estimator estimator = Estimator::automatic;
  EvGradient ev_gradient = EvGradient::conditional;  // as a training step (Problem::ev_conditional)
  double rho = 0.99;
  std::uint64_t seed = 42;
  int threads = 0;
};

// One estimate. `grad` is d value / d mu (B x H).
struct GradientEstimate {
  double value = 0.0;          // beta = 0: F(Rhat); else (1-beta) F(Rhat)/F(Rbar) + beta MSE/MSEbar
  double objective = 0.0;      // F(Rhat), the minibatch's objective
  double smoothed = 0.0;       // F(Rbar)
  double mse = 0.0;
  double msebar = 0.0;         // after this step
  std::vector<double> rhat, rbar, omega;  // N each, population order
  std::vector<double> grad;    // B x H
};

// The estimator of DESIGN.md 5.2 (score function) and 5.3 (pathwise, per family as
// `estimator` says) at predictions mu, with the perturbations of (seed, step, b, s) that a
// backend step of the same number draws. Set up once per population and settings: the
// agents are grouped once, and those with shared per-sample work (datacenter, EV) go to the
// CPU backend's structured path (cpu_structured.hpp), as in a training step.
class ForecastEstimator {
 public:
  ForecastEstimator(Population population, std::vector<float> demand, GradientSettings settings);
  ForecastEstimator(const ForecastEstimator&) = delete;
  ForecastEstimator& operator=(const ForecastEstimator&) = delete;

  const Population& population() const { return population_; }
  const GradientSettings& settings() const { return settings_; }

  // One estimate for B rows of H hours. `rbar` and `msebar` are the smoothing state before
  // the step (empty / 0: not started). With beta = 0 the gradient is the estimate of dF/dmu
  // itself, sum_n omega_n dR_n/dmu with omega_n = dF/dR_n at Rbar; with beta > 0 it is
  // DESIGN.md 5.1's combined loss, exactly as a training step forms g (step::grad_mu).
  GradientEstimate estimate(const float* mu, const float* target, const long* t, int B, int H,
                            std::uint32_t step, double beta, const std::vector<double>& rbar,
                            double msebar);

 private:
  void setup(int B, int H);  // (re)groups the agents for batches of up to B rows of H hours

  Population population_;
  GradientSettings settings_;
  Problem problem_;            // what the structured path reads (demand, S, H, floor, ...)
  RegretContext ctx_;
  FamilyGroups groups_;        // agents on the general path
  std::unique_ptr<CpuStructured> structured_;
  EvConditional ev_conditional_;  // EV agents under the conditional gradient (else empty)
  std::vector<double> weight_;
  std::vector<int> group_;
  int ready_B_ = 0, ready_H_ = 0;
};

}  // namespace eqpm
