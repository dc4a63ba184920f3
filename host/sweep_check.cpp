// The objective check of a sweep (sweep_check.hpp).
#include "host/sweep_check.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "eqpm/objectives.hpp"
#include "host/run.hpp"

namespace eqpm {

namespace {

bool power_only(const std::vector<SweepModel>& models) {
  for (const auto& m : models)
    if (m.trained_at_q && m.objective && m.objective->spec().rfind("power:", 0) != 0) return false;
  return true;
}

}  // namespace

std::vector<ObjectiveCheckRow> objective_check(const std::vector<SweepModel>& models,
                                               const std::vector<double>& weights, double tol,
                                               const std::vector<int>& groups) {
  std::vector<ObjectiveCheckRow> rows;
  for (const SweepModel& own : models) {
    if (!own.trained_at_q) continue;
    const std::shared_ptr<const Objective> f = own.objective ? own.objective : power_objective(own.q);
    ObjectiveCheckRow r;
    r.q = own.q;
    r.measure = f->spec();
    r.own = own.name;
    double best = INFINITY, own_m = NAN;
    for (const SweepModel& m : models) {
      const double v = objective_of(*f, m.regret, weights, groups);
      r.power_means.push_back(v);
      if (v < best) {
        best = v;
        r.lowest = m.name;
      }
      if (&m == &own) own_m = v;
    }
    r.margin = best > 0 ? own_m / best - 1.0 : 0.0;
    for (size_t i = 0; i < models.size(); ++i) {
      const double v = r.power_means[i];
      if (&models[i] != &own && v > 0 && own_m / v - 1.0 > tol) r.beaten_by.push_back(models[i].name);
    }
    r.pass = r.beaten_by.empty();
    rows.push_back(std::move(r));
  }
  return rows;
}

std::string objective_check_csv(const std::vector<SweepModel>& models,
                                const std::vector<ObjectiveCheckRow>& rows) {
  const bool power = power_only(models);
  std::string s = power ? "measure_q" : "measure";
  for (const auto& m : models) s += "," + m.name;
  s += ",lowest,own_excess,beaten_by,pass\n";
  for (const auto& r : rows) {
    s += power ? format_double(r.q) : r.measure;
    for (double v : r.power_means) s += "," + format_double(v);
    std::string beaten;
    for (const auto& b : r.beaten_by) beaten += (beaten.empty() ? "" : ";") + b;
    s += "," + r.lowest + "," + format_double(r.margin) + "," + beaten + "," +
         (r.pass ? "true" : "false") + "\n";
  }
  return s;
}

std::string objective_check_table(const std::vector<SweepModel>& models,
                                  const std::vector<ObjectiveCheckRow>& rows, double tol) {
  char buf[128];
  std::string s;
  const bool power = power_only(models);
  // Columns as wide as the longest name ("group-power=4"), at least 11.
  int col = 11, width = power ? 8 : 9;
  for (const auto& m : models) col = std::max(col, static_cast<int>(m.name.size()));
  for (const auto& r : rows)
    width = std::max(width, static_cast<int>((power ? "q=" + format_double(r.q) : r.measure).size()));
  std::snprintf(buf, sizeof buf, "%-*s", width, power ? "M_q" : "objective");
  s += buf;
  for (const auto& m : models) {
    std::snprintf(buf, sizeof buf, " %*s", col, m.name.c_str());
    s += buf;
  }
  s += "   own model vs lowest\n";
  for (const auto& r : rows) {
    const std::string label = power ? "q=" + format_double(r.q) : r.measure;
    std::snprintf(buf, sizeof buf, "%-*s", width, label.c_str());
    s += buf;
    for (double v : r.power_means) {
      std::snprintf(buf, sizeof buf, " %*.5g", col, v);
      s += buf;
    }
    if (r.lowest == r.own) {
      s += "   lowest";
    } else {
      std::snprintf(buf, sizeof buf, "   +%.2f%% (lowest: %s)", 100 * r.margin, r.lowest.c_str());
      s += buf;
    }
    if (!r.pass) {
      std::string beaten;
      for (const auto& b : r.beaten_by) beaten += (beaten.empty() ? "" : ", ") + b;
      std::snprintf(buf, sizeof buf, "  FAIL: beaten by more than %g%% by ", 100 * tol);
      s += buf + beaten;
    }
    s += "\n";
  }
  if (std::any_of(rows.begin(), rows.end(), [](const ObjectiveCheckRow& r) { return !r.pass; }))
    s += "A model beaten at its own objective has usually not converged: more --epochs, with a "
         "longer --lr-anneal-epochs, narrows the gaps (README, \"How it trains\").\n";
  return s;
}

}  // namespace eqpm
