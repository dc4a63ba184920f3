// The raster plotter of plot.hpp.
#include "report/plot.hpp"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <utility>

#include "eqpm/error.hpp"

namespace eqpm::report {
namespace {

#include "report/font.inc"

struct Rgb {
  double r, g, b;
};

// Colour-blind-safe (Okabe-Ito), then greys.
constexpr std::array<Rgb, 9> kPalette{{{0, 114, 178},
                                       {213, 94, 0},
                                       {0, 158, 115},
                                       {204, 121, 167},
                                       {230, 159, 0},
                                       {86, 180, 233},
                                       {120, 120, 120},
                                       {0, 0, 0},
                                       {240, 228, 66}}};
constexpr Rgb kInk{30, 30, 30}, kGrid{225, 225, 225}, kAxis{90, 90, 90};

Rgb palette(int i) { return kPalette[static_cast<size_t>(i) % kPalette.size()]; }

class Canvas {
 public:
  Canvas(int w, int h) : w_(w), h_(h), px_(static_cast<size_t>(w) * h * 3, 255.0) {}
  int width() const { return w_; }
  int height() const { return h_; }

  void blend(int x, int y, Rgb c, double alpha) {
    if (x < 0 || y < 0 || x >= w_ || y >= h_ || !(alpha > 0)) return;
    alpha = std::min(alpha, 1.0);
    double* p = &px_[(static_cast<size_t>(y) * w_ + x) * 3];
    p[0] += (c.r - p[0]) * alpha;
    p[1] += (c.g - p[1]) * alpha;
    p[2] += (c.b - p[2]) * alpha;
  }

  void rect(int x0, int y0, int x1, int y1, Rgb c) {
    for (int y = std::max(0, y0); y < std::min(h_, y1); ++y)
      for (int x = std::max(0, x0); x < std::min(w_, x1); ++x) blend(x, y, c, 1.0);
  }

  // An antialiased segment of the given width (pixels), by distance to the segment.
  void line(double x0, double y0, double x1, double y1, Rgb c, double width,
            double opacity = 1.0) {
    const double r = width / 2;
    const int bx0 = static_cast<int>(std::floor(std::min(x0, x1) - r - 1));
    const int bx1 = static_cast<int>(std::ceil(std::max(x0, x1) + r + 1));
    const int by0 = static_cast<int>(std::floor(std::min(y0, y1) - r - 1));
    const int by1 = static_cast<int>(std::ceil(std::max(y0, y1) + r + 1));
    const double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = std::max(0, by0); y <= std::min(h_ - 1, by1); ++y)
      for (int x = std::max(0, bx0); x <= std::min(w_ - 1, bx1); ++x) {
        const double px = x + 0.5, py = y + 0.5;
        double t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0.0;
        t = std::clamp(t, 0.0, 1.0);
        const double ex = px - (x0 + t * dx), ey = py - (y0 + t * dy);
        blend(x, y, c, opacity * std::min(1.0, r + 0.5 - std::sqrt(ex * ex + ey * ey)));
      }
  }

  void dot(double cx, double cy, double radius, Rgb c) {
    for (int y = static_cast<int>(cy - radius - 1); y <= static_cast<int>(cy + radius + 1); ++y)
      for (int x = static_cast<int>(cx - radius - 1); x <= static_cast<int>(cx + radius + 1); ++x)
        blend(x, y, c, radius + 0.5 - std::hypot(x + 0.5 - cx, y + 0.5 - cy));
  }

  static int text_width(const std::string& s) {
    int w = 0;
    for (unsigned char ch : s) w += glyph(ch).advance;
    return w;
  }

  // Text with its top-left corner at (x, y); `vertical` runs it upwards from (x, y) as the
  // bottom-left corner instead (an axis label).
  void text(int x, int y, const std::string& s, Rgb c, bool vertical = false) {
    int pen = 0;
    for (unsigned char ch : s) {
      const GlyphInfo& g = glyph(ch);
      for (int gy = 0; gy < kFontHeight; ++gy)
        for (int gx = 0; gx < g.width; ++gx) {
          const double a = kGlyphAlpha[static_cast<size_t>(g.offset + gy * g.width + gx)] / 255.0;
          const int ox = pen + gx - g.left;
          if (vertical)
            blend(x + gy, y - ox, c, a);
          else
            blend(x + ox, y + gy, c, a);
        }
      pen += g.advance;
    }
  }

  std::string png() const;

 private:
  static const GlyphInfo& glyph(unsigned char ch) {
    return kGlyphs[(ch >= 32 && ch <= 126 ? ch : '?') - 32];
  }
  int w_, h_;
  std::vector<double> px_;
};

void put_u32(std::string& s, std::uint32_t v) {
  for (int k = 3; k >= 0; --k) s += static_cast<char>((v >> (8 * k)) & 0xFF);
}

void chunk(std::string& out, const char* type, const std::string& data) {
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  const std::string body = std::string(type, 4) + data;
  out += body;
  put_u32(out, static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(body.data()),
                                                static_cast<uInt>(body.size()))));
}

std::string Canvas::png() const {
  std::string raw;
  raw.reserve(static_cast<size_t>(h_) * (1 + 3 * w_));
  for (int y = 0; y < h_; ++y) {
    raw += '\0';  // filter: none
    for (int x = 0; x < 3 * w_; ++x)
      raw += static_cast<char>(static_cast<unsigned char>(
          std::lround(std::clamp(px_[static_cast<size_t>(y) * w_ * 3 + x], 0.0, 255.0))));
  }
  uLongf size = compressBound(static_cast<uLong>(raw.size()));
  std::string z(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                9) != Z_OK)
    throw Error("render_png: zlib compression failed");
  z.resize(size);
  std::string out = "\x89PNG\r\n\x1a\n";
  std::string ihdr;
  put_u32(ihdr, static_cast<std::uint32_t>(w_));
  put_u32(ihdr, static_cast<std::uint32_t>(h_));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, no filter, no interlace
  chunk(out, "IHDR", ihdr);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", "");
  return out;
}

std::string tick_text(double v, double step) {
  if (std::fabs(v) < step * 1e-9) v = 0;
  char buf[32];
  const double mag = std::max(std::fabs(v), step);
  if (mag >= 1e5 || mag < 1e-3)
    std::snprintf(buf, sizeof buf, "%.2g", v);
  else {
    const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

struct Range {
  double lo = INFINITY, hi = -INFINITY;
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  void finish(bool from_zero) {
    if (from_zero) add(0.0);
    if (!(lo <= hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
      const double pad = std::max(std::fabs(hi) * 0.05, 1e-9);
      lo -= pad;
      hi += pad;
    }
    const double pad = (hi - lo) * 0.04;
    if (!(from_zero && lo == 0.0)) lo -= pad;
    hi += pad;
  }
};

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  std::vector<double> ticks;
  if (!(hi > lo) || target < 1) return ticks;
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step)
    ticks.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
  return ticks;
}

std::string render_png(const Plot& plot) {
  if (plot.width < 200 || plot.height < 150 || plot.width > 4000 || plot.height > 4000)
    throw Error("render_png: " + std::to_string(plot.width) + " x " + std::to_string(plot.height) +
                " is not a plot size (200..4000 x 150..4000)");
  Canvas c(plot.width, plot.height);
  Range xr, yr;
  for (const PlotSeries& s : plot.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      xr.add(s.x[i]);
      yr.add(s.y[i]);
      if (s.x_lo.size() == s.x.size()) {
        xr.add(s.x_lo[i]);
        xr.add(s.x_hi[i]);
        yr.add(s.y_lo[i]);
        yr.add(s.y_hi[i]);
      }
    }
  }
  xr.finish(plot.x_from_zero);
  yr.finish(plot.y_from_zero);

  const int left = 78, right = 20, top = plot.title.empty() ? 16 : 36, bottom = 50;
  const int x0 = left, x1 = plot.width - right, y0 = top, y1 = plot.height - bottom;
  auto X = [&](double v) { return x0 + (v - xr.lo) / (xr.hi - xr.lo) * (x1 - x0); };
  auto Y = [&](double v) { return y1 - (v - yr.lo) / (yr.hi - yr.lo) * (y1 - y0); };

  const std::vector<double> xt = nice_ticks(xr.lo, xr.hi, 7), yt = nice_ticks(yr.lo, yr.hi, 6);
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1, ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : xt) c.line(X(v), y0, X(v), y1, kGrid, 1);
  for (double v : yt) c.line(x0, Y(v), x1, Y(v), kGrid, 1);
  c.line(x0, y1 + 0.5, x1, y1 + 0.5, kAxis, 1);
  c.line(x0 - 0.5, y0, x0 - 0.5, y1, kAxis, 1);
  for (double v : xt) {
    const std::string t = tick_text(v, xstep);
    c.line(X(v), y1, X(v), y1 + 4, kAxis, 1);
    c.text(static_cast<int>(X(v)) - Canvas::text_width(t) / 2, y1 + 6, t, kInk);
  }
  for (double v : yt) {
    const std::string t = tick_text(v, ystep);
    c.line(x0 - 4, Y(v), x0, Y(v), kAxis, 1);
    c.text(x0 - 7 - Canvas::text_width(t), static_cast<int>(Y(v)) - kFontHeight / 2, t, kInk);
  }
  if (!plot.title.empty())
    c.text((plot.width - Canvas::text_width(plot.title)) / 2, 10, plot.title, kInk);
  c.text((x0 + x1 - Canvas::text_width(plot.x_label)) / 2, plot.height - kFontHeight - 6,
         plot.x_label, kInk);
  c.text(8, (y0 + y1 + Canvas::text_width(plot.y_label)) / 2, plot.y_label, kInk, true);

  struct Box {
    int x0, y0, x1, y1;
    bool overlaps(const Box& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
  };
  std::vector<Box> labels;  // point labels placed so far
  for (size_t k = 0; k < plot.series.size(); ++k) {
    const PlotSeries& s = plot.series[k];
    const Rgb col = palette(s.color >= 0 ? s.color : static_cast<int>(k));
    const size_t n = std::min(s.x.size(), s.y.size());
    auto ok = [&](size_t i) { return std::isfinite(s.x[i]) && std::isfinite(s.y[i]); };
    if (s.x_lo.size() == n && s.x_hi.size() == n && s.y_lo.size() == n && s.y_hi.size() == n)
      for (size_t i = 0; i < n; ++i) {
        if (!ok(i)) continue;
        c.line(X(s.x_lo[i]), Y(s.y[i]), X(s.x_hi[i]), Y(s.y[i]), col, 1.2, 0.4);
        c.line(X(s.x[i]), Y(s.y_lo[i]), X(s.x[i]), Y(s.y_hi[i]), col, 1.2, 0.4);
      }
    if (s.lines) {
      double run = 0;  // length along the line, for dashes
      for (size_t i = 1; i < n; ++i) {
        if (!ok(i - 1) || !ok(i)) continue;
        const double ax = X(s.x[i - 1]), ay = Y(s.y[i - 1]), bx = X(s.x[i]), by = Y(s.y[i]);
        const double len = std::hypot(bx - ax, by - ay);
        if (!s.dashed) {
          c.line(ax, ay, bx, by, col, 2);
          continue;
        }
        for (double t = 0; t < len; t += 1.0, run += 1.0)
          if (std::fmod(run, 10.0) < 6.0) {
            const double t1 = std::min(len, t + 1.0);
            c.line(ax + (bx - ax) * t / len, ay + (by - ay) * t / len, ax + (bx - ax) * t1 / len,
                   ay + (by - ay) * t1 / len, col, 1.5);
          }
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (!ok(i)) continue;
      if (s.markers) c.dot(X(s.x[i]), Y(s.y[i]), 4, col);
      if (i < s.point_labels.size() && !s.point_labels[i].empty()) {
        // Beside the point, in the first of a few places no earlier label occupies; a white
        // halo keeps it readable over lines and error bars.
        const int w = Canvas::text_width(s.point_labels[i]);
        const int px = static_cast<int>(X(s.x[i])), py = static_cast<int>(Y(s.y[i]));
        int tx = px + 6, ty = py - kFontHeight;
        const int places[6][2] = {{6, -kFontHeight}, {6, 2},  {-6 - w, -kFontHeight},
                                  {-6 - w, 2},       {6, -2 * kFontHeight}, {6, kFontHeight + 2}};
        for (const auto& at : places) {
          const Box box{px + at[0], py + at[1], px + at[0] + w, py + at[1] + kFontHeight};
          if (std::none_of(labels.begin(), labels.end(), [&](const Box& o) { return o.overlaps(box); })) {
            tx = box.x0;
            ty = box.y0;
            break;
          }
        }
        labels.push_back({tx, ty, tx + w, ty + kFontHeight});
        for (const auto& [dx, dy] : {std::pair{-1, 0}, std::pair{1, 0}, std::pair{0, -1}, std::pair{0, 1}})
          c.text(tx + dx, ty + dy, s.point_labels[i], {255, 255, 255});
        c.text(tx, ty, s.point_labels[i], col);
      }
    }
  }

  if (plot.legend) {
    int ly = y0 + 6, widest = 0, rows = 0;
    for (const PlotSeries& s : plot.series)
      if (!s.label.empty()) {
        widest = std::max(widest, Canvas::text_width(s.label));
        ++rows;
      }
    if (rows > 0) {
      const int lx = plot.legend_right ? x1 - widest - 40 : x0 + 12;
      c.rect(lx - 6, ly - 4, x1 - 4, ly + rows * (kFontHeight + 2) + 2, {255, 255, 255});
      for (size_t k = 0; k < plot.series.size(); ++k) {
        const PlotSeries& s = plot.series[k];
        if (s.label.empty()) continue;
        const Rgb col = palette(s.color >= 0 ? s.color : static_cast<int>(k));
        if (s.lines) c.line(lx, ly + kFontHeight / 2.0, lx + 22, ly + kFontHeight / 2.0, col, 2);
        if (s.markers) c.dot(lx + 11, ly + kFontHeight / 2.0, 4, col);
        c.text(lx + 28, ly, s.label, kInk);
        ly += kFontHeight + 2;
      }
    }
  }
  return c.png();
}

}  // namespace eqpm::report
