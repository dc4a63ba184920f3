// Equity metrics of per-agent regrets (DESIGN.md section 6).
#include "host/metrics.hpp"

#include <algorithm>
#include <cmath>

#include "host/io/io.hpp"

namespace eqpm {

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

RegretStats regret_stats(const std::vector<double>& R) {
  RegretStats s;
  const long n = static_cast<long>(R.size());
  s.agents = n;
  if (n == 0) return s;
  std::vector<double> v = R;
  std::sort(v.begin(), v.end());
  double sum = 0, sum2 = 0;
  for (double x : v) {
    sum += x;
    sum2 += x * x;
  }
  s.mean = sum / n;
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.var = var / n;
  s.std = std::sqrt(s.var);
  s.min = v.front();
  s.max = v.back();
  auto pct = [&](double p) {
    const double pos = p / 100.0 * static_cast<double>(n - 1);
    const size_t lo = static_cast<size_t>(std::floor(pos));
    const size_t hi = std::min<size_t>(lo + 1, static_cast<size_t>(n - 1));
    return v[lo] + (pos - static_cast<double>(lo)) * (v[hi] - v[lo]);
  };
  s.p5 = pct(5);
  s.p50 = pct(50);
  s.p95 = pct(95);
  if (sum2 > 0) {
    s.jain = sum * sum / (static_cast<double>(n) * sum2);
    double weighted = 0;
    for (long i = 0; i < n; ++i) weighted += static_cast<double>(i + 1) * v[static_cast<size_t>(i)];
    s.gini = 2.0 * weighted / (static_cast<double>(n) * sum) - static_cast<double>(n + 1) / n;
    s.cv = s.mean > 0 ? s.std / s.mean : 0.0;
    double ent = 0;
    for (double x : v)
      if (x > 0) {
        const double p = x / sum;
        ent -= p * std::log(p);
      }
    s.entropy = ent;
  } else {
    s.jain = 1.0;
    s.gini = 0.0;
    s.cv = 0.0;
    s.entropy = std::log(static_cast<double>(n));
  }
  return s;
}

namespace {
std::string num(double v) { return std::isfinite(v) ? format_number(v) : "null"; }
}  // namespace

std::string stats_to_json(const RegretStats& s) {
  return "{\"agents\": " + std::to_string(s.agents) + ", \"mean\": " + num(s.mean) +
         ", \"var\": " + num(s.var) + ", \"std\": " + num(s.std) + ", \"min\": " + num(s.min) +
         ", \"p5\": " + num(s.p5) + ", \"p50\": " + num(s.p50) + ", \"p95\": " + num(s.p95) +
         ", \"max\": " + num(s.max) + ", \"jain\": " + num(s.jain) + ", \"gini\": " + num(s.gini) +
         ", \"cv\": " + num(s.cv) + ", \"entropy\": " + num(s.entropy) + ", \"mse\": " + num(s.mse) +
         ", \"mae\": " + num(s.mae) + "}";
}

}  // namespace eqpm
