// --beta auto (DESIGN.md 6, "Model selection"): a q model is trained once per beta of
// cfg.beta_grid (beta = 1 is the plain MSE model) and the one with the lowest M_q on the
// held-out validation rows ships. A q model then never ships a model that the validation
// slice says is worse at its own objective than plain.
#pragma once

#include "eqpm/objectives.hpp"

#include <string>
#include <vector>

#include "host/config.hpp"
#include "host/run.hpp"

namespace eqpm {

struct BetaCandidate {
  double beta = 0;
  std::vector<double> val_regret;   // per agent, on the validation rows
  std::vector<double> test_regret;  // per agent, on the test rows (for the record)
  // Optional: per validation day, each agent's mean regret, and the day's rows (RunOutcome's
  // validation_days / validation_day_rows). Without them the rule is the plain minimum.
  std::vector<std::vector<double>> val_days;
  std::vector<long> day_rows;
};

struct BetaChoice {
  size_t index = 0;             // into the candidates
  size_t lowest = 0;            // the candidate with the lowest validation M_q
  std::vector<double> val_mq;   // weighted M_q of each candidate on validation
  std::vector<double> val_se;   // bootstrap standard error of (its M_q - the lowest's); NaN: none
  std::vector<double> test_mq;  // and on test
};

// The one-standard-error rule of model selection, with plain as the simplest model: among
// the candidates whose validation M_q is within one standard error of the lowest one, the
// largest beta (the one nearest to plain). The standard error of each candidate's gap to
// the lowest is that of the paired difference under a bootstrap of whole validation days
// (`replicates` resamples, a fixed seed: the choice is deterministic), so a regret model
// ships only when validation shows it better than the more accurate models by more than
// the day-to-day noise. Without days (or with fewer than two) the choice is the lowest
// validation M_q, ties to the larger beta. Throws Error on an empty list or regret vectors
// of another length than `weights`.
BetaChoice choose_beta(const std::vector<BetaCandidate>& candidates,
                       const std::vector<double>& weights, double q, int replicates = 200);
// The same for any objective (objectives.hpp) of agents in `groups` (empty: one group).
BetaChoice choose_beta(const std::vector<BetaCandidate>& candidates,
                       const std::vector<double>& weights, const Objective& f,
                       const std::vector<int>& groups, int replicates = 200);

// The candidate of a run trained at `beta`: its validation (whole and by day) and test regrets.
BetaCandidate beta_candidate(double beta, const RunOutcome& o);

// "beta=0.1": the folder of a candidate under its run's folder.
std::string beta_folder(double beta);

// The configuration of one candidate: cfg with that beta (beta_auto off) writing into
// cfg.out/beta=<b>/.
RunConfig candidate_config(const RunConfig& cfg, double beta);

// Trains every candidate of cfg.beta_grid into cfg.out/beta=<b>/ (the beta = 1 candidate
// is `plain` when given, trained otherwise), then writes the chosen one into cfg.out as a
// normal run folder whose configuration holds the chosen beta, and cfg.out/beta_auto.csv
// (`beta,val_power_mean,test_power_mean,chosen`). Returns the shipped outcome; when a
// signal stops a candidate, that candidate's outcome (interrupted_at >= 0).
// With `candidates`, also returns every candidate's outcome in grid order. With `resume`,
// a candidate whose folder holds a checkpoint continues from it (a finished one only
// re-evaluates), so an interrupted auto run resumes where it stopped.
RunOutcome train_beta_auto(const RunConfig& cfg, const RunInputs& in,
                           const RunOutcome* plain = nullptr, double* chosen_beta = nullptr,
                           std::vector<RunOutcome>* candidates = nullptr, bool resume = false);

// The second half of train_beta_auto, for candidates trained elsewhere (a sweep trains
// them side by side): `outcomes` holds one finished outcome per beta of cfg.beta_grid, in
// its order. Chooses, writes cfg.out as train_beta_auto does, and returns the shipped
// outcome.
RunOutcome ship_beta_auto(const RunConfig& cfg, const RunInputs& in,
                          const std::vector<RunOutcome>& outcomes, double* chosen_beta = nullptr);

}  // namespace eqpm
