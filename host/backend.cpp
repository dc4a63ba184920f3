// The non-virtual entry points of Backend (argument checks, then the *_impl) and the
// factory: the only place that knows which backends exist.
#include "eqpm/backend.hpp"

#include <chrono>
#include <cmath>

#include "cpu/cpu_backend.hpp"
#include "eqpm/error.hpp"
#ifdef EQPM_WITH_CUDA
#include "eqpm/cuda_backend.hpp"
#endif

namespace eqpm {

void Backend::setup(const Problem& p) {
  if (!p.data || !p.population) throw Error("Backend::setup: data and population are required");
  if (p.layout.input_dim() != p.data->input_dim() || p.layout.output_dim() != p.data->horizon)
    throw Error("Backend::setup: model shape does not match the dataset");
  if (p.samples < 2 || p.samples > kMaxSamples) throw Error("Backend::setup: bad sample count");
  if (p.antithetic && p.samples % 2) throw Error("Backend::setup: antithetic needs even S");
  if (p.population->size() < 1) throw Error("Backend::setup: empty population");
  if (p.population->count(Family::datacenter) > 0 && p.demand.empty())
    throw Error("Backend::setup: datacenter agents need a demand profile");
  const bool ev_conditional = p.ev_conditional() && p.population->count(Family::ev_charging) > 0;
  if (p.estimator == Estimator::pathwise) {
    Families::for_each([&](auto fam) {
      using F = decltype(fam);
      const bool conditional = F::tag == Family::ev_charging && ev_conditional;
      if (!F::differentiable && !conditional && p.population->count(F::tag) > 0)
        throw ConfigError(std::string("estimator: pathwise needs a derivative, which the ") +
                          F::name + " family does not have; use score or auto");
    });
  }
  problem_ = p;
  setup_impl();
}

void Backend::set_state(const BackendState& s) {
  if (static_cast<long>(s.params.size()) != problem_.layout.parameter_count ||
      s.adam_m.size() != s.params.size() || s.adam_v.size() != s.params.size())
    throw Error("Backend::set_state: parameter count does not match the model");
  if (!s.rbar.empty() && static_cast<long>(s.rbar.size()) != problem_.population->size())
    throw Error("Backend::set_state: smoothed regrets do not match the population size");
  // A non-finite parameter can hide behind a saturated activation and survive every later
  // step's guard, so a state is checked before it is taken.
  auto finite = [](const auto& v) {
    for (const auto x : v)
      if (!std::isfinite(x)) return false;
    return true;
  };
  if (!finite(s.params) || !finite(s.adam_m) || !finite(s.adam_v) || !finite(s.rbar) ||
      !std::isfinite(s.msebar))
    throw Error("Backend::set_state: the state holds a NaN or infinite value");
  set_state_impl(s);
}

StepStats Backend::step(const StepSpec& spec, StepTrace* trace) {
  if (spec.rows.empty() || static_cast<int>(spec.rows.size()) > problem_.max_batch)
    throw Error("Backend::step: batch of " + std::to_string(spec.rows.size()) +
                " rows outside [1, " + std::to_string(problem_.max_batch) + "]");
  for (long r : spec.rows)
    if (r < 0 || r >= problem_.data->rows) throw Error("Backend::step: row index out of range");
  return step_impl(spec, trace);
}

EvalResult Backend::evaluate(const std::vector<long>& rows) {
  for (long r : rows)
    if (r < 0 || r >= problem_.data->rows) throw Error("Backend::evaluate: row out of range");
  const auto t0 = std::chrono::steady_clock::now();
  EvalResult e = evaluate_impl(rows);
  times_.evaluation += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return e;
}

std::vector<float> Backend::predict(const std::vector<long>& rows) {
  for (long r : rows)
    if (r < 0 || r >= problem_.data->rows) throw Error("Backend::predict: row out of range");
  return predict_impl(rows);
}

bool cuda_compiled() {
#ifdef EQPM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef EQPM_WITH_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::vector<std::string> cuda_device_descriptions() {
#ifdef EQPM_WITH_CUDA
  return cuda::device_descriptions();
#else
  return {};
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  if (name == "cpu") return std::make_unique<CpuBackend>(threads);
  if (name == "cuda" || name == "auto") {
#ifdef EQPM_WITH_CUDA
    if (cuda::device_count() > 0) return cuda::make_cuda_backend();
    if (name == "cuda") throw ConfigError("backend: cuda requested but no CUDA device is visible");
#else
    if (name == "cuda")
      throw ConfigError("backend: cuda requested but this build has no CUDA support");
#endif
    return std::make_unique<CpuBackend>(threads);
  }
  throw ConfigError("backend: expected cpu, cuda or auto, got '" + name + "'");
}

}  // namespace eqpm
