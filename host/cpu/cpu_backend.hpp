// The CPU reference backend: DESIGN.md 5.2/5.3 written out plainly, parallel over agents
// with OpenMP and a reduction order fixed by the data (chunks of agents whose partial sums
// are added in chunk order), so results do not depend on the number of threads. With a
// Reducer of several places (MPI ranks) each place evaluates the general-path agents of
// its own chunks and the reducer gathers their regrets and partial sums (reducer.hpp);
// everything else runs on every place, so results do not depend on the number of places.
#pragma once

#include <utility>
#include <vector>

#include "chunks.hpp"
#include "cpu_lanes.hpp"
#include "cpu_structured.hpp"
#include "ev_conditional.hpp"
#include "eqpm/backend.hpp"
#include "eqpm/objectives.hpp"
#include "eqpm/step_stages.hpp"

namespace eqpm {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads = 0) : threads_(threads) {}
  std::string name() const override { return "cpu"; }

  // Agents are reduced in this many fixed chunks per family (fewer if the family is small).
  static constexpr long kReductionChunks = chunks::kMax;
  // The fast path's chunks hold at least this many agents (its per-chunk work is O(B S H)).
  static constexpr long kFastChunkAgents = 32;
  static long fast_chunk_count(long n);

 protected:
  void setup_impl() override;
  void set_state_impl(const BackendState& s) override;
  BackendState state_impl() const override;
  std::vector<float> params_impl() const override { return state_.params; }
  StepStats step_impl(const StepSpec& spec, StepTrace* trace) override;
  EvalResult evaluate_impl(const std::vector<long>& rows) override;
  std::vector<float> predict_impl(const std::vector<long>& rows) override;

 private:
  // One step's work, passed through the stages of step_stages.hpp's run_step.
  struct StepWork {
    const StepSpec* spec = nullptr;
    StepTrace* trace = nullptr;  // filled when not null
    StepStats st;
    lanes::Lanes X;              // the samples hour-major (stage_sample), for the fast paths
    int B = 0, S = 0, H = 0;
    float sigma = 0.0f;
    bool equitable = false;    // beta < 1: the regret stages run
    bool fused = false;        // passes 1 and 2 ran fused (fused_general)
    bool all_weights = false;  // stage_weights set every omega_n
    double mref = 0.0;         // the fused pass's provisional power mean
    double mbar = 0.0;         // power mean of the smoothed regrets
    double msebar = 0.0;       // smoothed MSE after this step
    bool regrets_finite = true;  // --fast-reduce: every place's Rhat finite (fast_values)
  };
  template <class X, class W>
  friend void eqpm::run_step(X& x, W& w);
  void stage_forward(StepWork& w);
  void stage_sample(StepWork& w);
  void stage_regrets(StepWork& w);
  void stage_weights(StepWork& w);
  void weigh(long n, double value);  // omega_n (stage_weights, stage_advantages)
  void stage_advantages(StepWork& w);
  void stage_gradient(StepWork& w);
  void stage_backward(StepWork& w);
  void stage_update(StepWork& w);
  void fill_trace(const StepWork& w, StepTrace& trace) const;

  int thread_count() const;
  void unwrap_demand();
  void forward(const std::vector<long>& rows, std::vector<float>& mu, std::vector<float>* pre);
  // Pass 1: Rhat_n over the minibatch's samples, in population order.
  void mean_regrets(int B, std::vector<double>& rhat);
  // Pass 2: X = sum_n omega_n r (B x S, before the baseline) and pathwise gradient G (B x H)
  // under weights omega.
  void advantages(int B, const std::vector<double>& omega, std::vector<double>& A,
                  std::vector<double>& G);
  // Passes 1 and 2 fused for the general-path agents (steady state, lanes on): returns
  // false, having changed nothing the caller uses, when a provisional weight overflows.
  // X: the step's samples hour-major.
  bool fused_general(int B, const lanes::Lanes& X, double mref, std::vector<double>& rhat,
                     std::vector<double>& A, std::vector<double>& G);

  // This place's chunks [first, last) of a reduction in n_chunks chunks (chunks.hpp); under
  // --fast-reduce every chunk, each clipped to own_agents.
  std::pair<long, long> owned_chunks(long n_chunks) const;
  // The agents [first, last) of a general-path family group of n agents whose regrets this
  // place evaluates within its chunks: all of them, or under --fast-reduce its own share
  // [n r/K, n (r+1)/K), whatever the chunking of the pass.
  std::pair<long, long> own_agents(long n) const;
  // Place `place`'s share [n r/K, n (r+1)/K) of a group of n agents under --fast-reduce.
  std::pair<long, long> share(long n, int place) const;
  // Under --fast-reduce: the agents place `place` adds into the step's sums (its own share
  // of each general-path family, and place 0 the factorised agents), population order.
  // Every place's lists together hold each agent once.
  std::vector<long> counted_agents(int place) const;
  // The flat objective's value of R (population order) over every place's agents: the
  // plain loop, or under --fast-reduce over the counted_ agents, reduced natively.
  double flat_value(const std::vector<double>& R);
  // Under --fast-reduce: Mbar (the objective of rbar_new_), the objective of rhat_ and the
  // regrets' mean and max over every place, in two native reductions of a few scalars
  // (the maxima, then the sums of terms and of regrets).
  void fast_values(StepWork& w);
  // After each place evaluated Rhat_n of the agents in its own chunks of g (n_chunks of
  // them), every place holds every agent's Rhat_n of g (copied, so exact).
  template <class F>
  void share_regrets(const FamilyGroup<F>& g, long n_chunks, std::vector<double>& rhat);
  // After each place filled its own chunks' partial sums (n_chunks of chunk_len doubles
  // from `partials`), every place holds all of them.
  void share_partials(double* partials, long n_chunks, long chunk_len);

  int threads_;
  FamilyGroups all_groups_;  // every agent (evaluation)
  FamilyGroups groups_;      // agents on the general path of a training step
  CpuStructured structured_;  // agents with a shared per-(b, s) factorisation
  EvConditional ev_conditional_;  // EV agents under --ev-gradient conditional (else empty)
  std::vector<double> omega_score_;  // omega with those agents at 0: the score-function sums'
  std::shared_ptr<const Objective> objective_;  // Problem::objective, or power:q
  const FlatObjective* flat_ = nullptr;  // its flat form (fused pass, per-agent weights), or null
  AgentSet agent_set_;                   // this place's agents for objective_ (population order)
  std::vector<int> group_;               // each agent's group
  LocalReducer local_reducer_;
  Reducer* reducer_ = &local_reducer_;  // Problem::reducer, or the local one
  int place_ = 0, places_ = 1;           // reducer_'s rank and size
  std::vector<long> offsets_;            // places_ + 1 (share_regrets, share_partials)
  std::vector<double> shared_;           // one family's Rhat in group order (share_regrets)
  // --fast-reduce (Problem::fast_reduce) with more than one place: nothing per agent is
  // exchanged; Rhat, Rbar and omega hold meaningful values only for this place's own
  // general-path agents and the factorised agents (which every place evaluates).
  bool fast_ = false;
  std::vector<long> counted_;            // agents this place adds into the step's sums
                                         // (own general-path ones; place 0 also the factorised)
  std::vector<double> counted_weight_, counted_r_;  // w_n and a copy of R_n of counted_
  double counted_wsum_ = 0.0;            // sum of w_n over every place's counted_ agents
  std::vector<double> omega_own_;        // omega of counted_ EV agents, 0 for other EV agents
  std::vector<double> sums_;             // X and G in one buffer for one fast_sum
  RegretContext ctx_;
  std::vector<float> demand_unwrapped_;  // D repeated over every t + phase (unwrap_demand)
  BackendState state_;
  // Per-step scratch, sized once in setup (no allocation inside a step).
  std::vector<float> mu_, pre_, yhat_, eps_, ybatch_;
  std::vector<long> tbatch_;
  std::vector<double> rhat_, rbar_new_, omega_, A_, G_, g_, partial_A_, partial_G_;
  std::vector<double> weight_;            // w_n in population order
  double total_weight_ = 1.0;             // W
  double agent_total_ = 1.0;              // N over every place that holds agents
  double rbar_mean_ = 0.0;                 // power mean of state_.rbar (the last Mbar)
  bool rbar_mean_valid_ = false;
  std::vector<double> A_fused_, G_fused_;  // provisional sums of fused_general
  std::vector<float> scratch_;             // per thread: one agent's regrets, B x S
  std::vector<double> dscratch_;           // per thread: per-sample sums, up to H x B x S
  lanes::LaneBuffer lanes_;                // the samples hour-major (cpu_lanes.hpp)
  std::vector<double> grad_acc_;
  std::vector<double> x_double_, pre_double_;  // one sample's input and pre-activations
  std::vector<float> grad_;
};

}  // namespace eqpm
