// The order of one training step (DESIGN.md 5.2), written once for both executors.
//
// Each executor implements the stages as member functions taking its own per-step work
// (the CPU's `CpuBackend::StepWork`, the CUDA backend's `CudaBackend::StepWork`) and calls
// run_step: the CPU on every step; the CUDA backend to enqueue a step on its stream, run
// eagerly or captured into a graph, so a replayed graph runs this order too. The algebra
// inside the stages is step_algebra.hpp's, shared the same way.
//
//   forward     the MLP's mean forecasts mu, the minibatch's truths and times, MSE, MSEbar
//   sample      the perturbed forecasts mu + sigma eps                      (equitable only)
//   regrets     pass 1: every agent's Rhat_n over the samples              (equitable only)
//   weights     Rbar_n, the objective's value (Mbar) and the weights omega_n (equitable only)
//   advantages  pass 2: X = sum omega r, its baseline (A), and G = sum omega dr/dv
//                                                                          (equitable only)
//   gradient    g = d loss / d mu: the regret term and the accuracy term; the loss
//   backward    back-propagation through the MLP, the gradient norm, the finite-step guard
//   update      Adam and the commit of Rbar and MSEbar (skipped by a non-finite step)
#pragma once

namespace eqpm {

template <class Executor, class Work>
void run_step(Executor& x, Work& w) {
  x.stage_forward(w);
  if (w.equitable) {
    x.stage_sample(w);
    x.stage_regrets(w);
    x.stage_weights(w);
    x.stage_advantages(w);
  }
  x.stage_gradient(w);
  x.stage_backward(w);
  x.stage_update(w);
}

}  // namespace eqpm
