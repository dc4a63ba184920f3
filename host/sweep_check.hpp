// The objective check of a sweep (DESIGN.md 6, claim 1): on a split, is the model trained
// at q the one with the lowest power mean M_q of the sweep, within a tolerance? One row per
// q of the sweep; every model of the sweep (the plain baseline included) competes.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "eqpm/objectives.hpp"

namespace eqpm {

struct SweepModel {
  std::string name;             // "plain", "q=4", ...
  bool trained_at_q = false;    // false for the plain baseline
  double q = 0.0;               // the q it was trained at
  std::vector<double> regret;   // per-agent regrets on the split checked
  // The objective it was trained at (objectives.hpp); null: power:q.
  std::shared_ptr<const Objective> objective = nullptr;
};

struct ObjectiveCheckRow {
  double q = 0.0;                   // the measure M_q (power objectives)
  std::string measure;              // the measure's objective: "power:4", "cvar:0.1"
  std::string own;                  // the model trained at q
  std::vector<double> power_means;  // M_q of every model, in the sweep's order
  std::string lowest;               // the model with the lowest M_q
  double margin = 0.0;              // own M_q / lowest M_q - 1 (0 when own is lowest)
  std::vector<std::string> beaten_by;  // models whose M_q is lower than own by more than tol
  bool pass = true;
};

// Rows for every model trained at an objective. `weights` are the agents' w_n, `groups`
// their groups (for the grouped objectives; empty: one group). A model is beaten when
// own / other - 1 > tol.
std::vector<ObjectiveCheckRow> objective_check(const std::vector<SweepModel>& models,
                                               const std::vector<double>& weights, double tol,
                                               const std::vector<int>& groups = {});

// mq_check.csv: measure_q,<model...>,lowest,own_excess,beaten_by,pass; the first column is
// "measure" (the objective's spec) when any model was trained at another objective than power.
std::string objective_check_csv(const std::vector<SweepModel>& models,
                                const std::vector<ObjectiveCheckRow>& rows);

// The printed table, one line per row, naming the failures.
std::string objective_check_table(const std::vector<SweepModel>& models,
                                  const std::vector<ObjectiveCheckRow>& rows, double tol);

}  // namespace eqpm
