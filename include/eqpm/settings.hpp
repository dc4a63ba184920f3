// The enumerations that domain code (data, backends) and the run configuration share, kept
// apart from config.hpp so that the data, population and backend headers do not depend on
// the command line's configuration.
#pragma once

namespace eqpm {

// How the series is scaled for training (DESIGN.md 2.2): by the training mean, or min-max
// to [0, 10] as the paper's released code does.
enum class Scaling : int { mean = 0, paper = 1 };

// CUDA graphs for the steady-state step: `automatic` captures and falls back to eager
// launches (with a warning) when capture fails, `on` makes a capture failure an error,
// `off` launches every step eagerly. The CPU backend ignores it.
enum class CudaGraphs : int { automatic = 0, on = 1, off = 2 };

// How the agents' regrets are computed, the same four choices on both backends (DESIGN.md
// 5.4; every path agrees with the reference to float rounding):
// - automatic: the structured forms where a family has one and they pay (CPU: the
//   datacenter and EV factorisations, every other agent in SIMD sample lanes; CUDA: the
//   structured kernels within their memory budget), everything else generic;
// - structured: as automatic, with the CUDA structured kernels forced wherever a family has
//   one (on the CPU the same as automatic);
// - generic: no structure (CPU: every agent in sample lanes; CUDA: the generic kernels);
// - reference: one agent and one sample at a time, the plain loop of 5.2 (the CPU's spec;
//   on CUDA the same as generic).
enum class RegretPath : int { automatic = 0, reference = 1, generic = 2, structured = 3 };

// The units the objective sees (DESIGN.md 5.5): each agent's regret as it is, or divided by
// its regret under the 24-hour persistence forecast on the training split (a skill score).
enum class RegretScale : int { absolute = 0, relative = 1 };

// How EV-charging agents, whose decisions have no derivative, learn (an extension of
// DESIGN.md 5.3; README, "How it trains"): the score function of 5.2, or the conditional
// Monte Carlo gradient of the same smoothed regret (EvCharging::add_dregret_conditional),
// which integrates each hour's own noise out analytically and has far lower variance (the
// default). estimator = score overrules it: the score function for every family.
enum class EvGradient : int { score = 0, conditional = 1 };

}  // namespace eqpm
