// A small raster plotter for `eqpm report`: line and scatter charts with axes, ticks,
// labels, legend and error bars, written as PNG (zlib). Text is drawn from the embedded
// DejaVu Sans bitmaps of font.inc, so the program needs no font or plotting library, and
// the same inputs give the same bytes on every machine.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace eqpm::report {

struct PlotSeries {
  std::string label;  // legend entry (none when empty)
  std::vector<double> x, y;
  bool lines = true;                      // joined in the given order
  bool markers = false;                   // a dot at each point
  std::vector<std::string> point_labels;  // text beside each point (optional)
  // Error bars (optional; all four the size of x when given).
  std::vector<double> x_lo, x_hi, y_lo, y_hi;
  int color = -1;  // palette index; -1: the series' own index
  bool dashed = false;
};

struct Plot {
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
  bool x_from_zero = false, y_from_zero = false;  // include 0 in the axis range
  bool legend = true;
  bool legend_right = false;  // legend box in the top-right corner (else top-left)
  int width = 800, height = 520;
};

// The PNG file's bytes. Non-finite points are skipped; an empty plot draws its axes only.
std::string render_png(const Plot& plot);

// "1, 2, 5 x 10^k" tick positions covering [lo, hi] (about `target` of them).
std::vector<double> nice_ticks(double lo, double hi, int target);

}  // namespace eqpm::report
