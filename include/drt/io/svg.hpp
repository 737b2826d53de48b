#pragma once
/// @file svg.hpp
/// A small SVG chart writer (no dependencies) for the tools' plots: grouped horizontal bars
/// (e.g. MAC share vs time share per layer kind) and x-y line/scatter charts with a legend.

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "file.hpp"

namespace drt {

namespace detail {
inline std::string svg_escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    if (ch == '<') o += "&lt;";
    else if (ch == '>') o += "&gt;";
    else if (ch == '&') o += "&amp;";
    else o += ch;
  }
  return o;
}
inline const char* svg_color(std::size_t i) {
  static const char* const c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                  "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return c[i % 10];
}
inline std::string svg_num(double v) {
  std::ostringstream os;
  os.precision(4);
  os << v;
  return os.str();
}
inline void svg_write(const std::string& path, const std::string& body) { write_file_atomic("svg", path, body); }
}  // namespace detail

/// Horizontal grouped bars: one row per category, one bar per series (values in [0, max]).
struct bar_chart {
  std::string title, value_label;
  std::vector<std::string> categories;
  std::vector<std::string> series;           ///< e.g. {"MACs", "time"}
  std::vector<std::vector<double>> values;   ///< [series][category]

  std::string to_svg() const {
    const double row_h = 14.0 * static_cast<double>(std::max<std::size_t>(1, series.size())) + 8;
    const double left = 190, width = 720, plot_w = width - left - 60, top = 50;
    const double height = top + row_h * static_cast<double>(categories.size()) + 50;
    double vmax = 0;
    for (const auto& s : values)
      for (double v : s) vmax = std::max(vmax, v);
    if (vmax <= 0) vmax = 1;
    std::ostringstream o;
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << width / 2 << "' y='20' text-anchor='middle' font-size='14'>" << detail::svg_escape(title)
      << "</text>\n";
    for (std::size_t si = 0; si < series.size(); ++si)
      o << "<rect x='" << left + 120.0 * double(si) << "' y='30' width='10' height='10' fill='" << detail::svg_color(si)
        << "'/><text x='" << left + 120.0 * double(si) + 14 << "' y='39'>" << detail::svg_escape(series[si]) << "</text>\n";
    for (std::size_t ci = 0; ci < categories.size(); ++ci) {
      const double y = top + row_h * double(ci);
      o << "<text x='" << left - 6 << "' y='" << y + row_h / 2 + 4 << "' text-anchor='end'>"
        << detail::svg_escape(categories[ci]) << "</text>\n";
      for (std::size_t si = 0; si < series.size(); ++si) {
        const double v = ci < values[si].size() ? values[si][ci] : 0.0;
        const double bw = plot_w * v / vmax, by = y + 4 + 14.0 * double(si);
        o << "<rect x='" << left << "' y='" << by << "' width='" << bw << "' height='12' fill='"
          << detail::svg_color(si) << "'/><text x='" << left + bw + 4 << "' y='" << by + 10 << "'>"
          << detail::svg_num(v) << "</text>\n";
      }
    }
    const double ay = top + row_h * double(categories.size()) + 4;
    o << "<line x1='" << left << "' y1='" << ay << "' x2='" << left + plot_w << "' y2='" << ay << "' stroke='black'/>\n"
      << "<text x='" << left + plot_w / 2 << "' y='" << ay + 28 << "' text-anchor='middle'>"
      << detail::svg_escape(value_label) << "</text>\n</svg>\n";
    return o.str();
  }
  void save(const std::string& path) const { detail::svg_write(path, to_svg()); }
};

/// x-y chart: each series is drawn as points, optionally joined by a line.
struct xy_chart {
  struct series_data {
    std::string name;
    std::vector<double> x, y;
    bool line = true;
    double radius = 3;
    /// Optional vertical error bars: when both have one value per point, a bar from y_low to y_high
    /// (NaN: no bar at that point), e.g. the bootstrap interval of a path's mIoU.
    std::vector<double> y_low{}, y_high{};
    bool has_bars() const noexcept { return y_low.size() == x.size() && y_high.size() == x.size(); }
  };
  std::string title, x_label, y_label;
  std::vector<series_data> series;
  std::vector<std::string> x_tick_labels;  ///< optional: categorical x (tick i at x = i)

  std::string to_svg() const {
    const double width = 720, height = 460, left = 70, right = 170, top = 40, bottom = 60;
    const double pw = width - left - right, ph = height - top - bottom;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (const auto& s : series)
      for (std::size_t i = 0; i < s.x.size(); ++i) {
        x0 = std::min(x0, s.x[i]);
        x1 = std::max(x1, s.x[i]);
        y0 = std::min(y0, s.y[i]);
        y1 = std::max(y1, s.y[i]);
        if (s.has_bars() && std::isfinite(s.y_low[i]) && std::isfinite(s.y_high[i])) {
          y0 = std::min(y0, s.y_low[i]);
          y1 = std::max(y1, s.y_high[i]);
        }
      }
    if (!(x0 < x1)) { x0 -= 1; x1 += 1; }
    if (!(y0 < y1)) { y0 -= 1; y1 += 1; }
    const double xm = (x1 - x0) * 0.05, ym = (y1 - y0) * 0.05;
    x0 -= xm; x1 += xm; y0 -= ym; y1 += ym;
    auto sx = [&](double v) { return left + (v - x0) / (x1 - x0) * pw; };
    auto sy = [&](double v) { return top + ph - (v - y0) / (y1 - y0) * ph; };
    std::ostringstream o;
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
      << "<text x='" << left + pw / 2 << "' y='22' text-anchor='middle' font-size='14'>" << detail::svg_escape(title)
      << "</text>\n<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph
      << "' fill='none' stroke='black'/>\n";
    for (int t = 0; t <= 5; ++t) {
      const double yv = y0 + (y1 - y0) * t / 5.0, xv = x0 + (x1 - x0) * t / 5.0;
      o << "<text x='" << left - 6 << "' y='" << sy(yv) + 4 << "' text-anchor='end'>" << detail::svg_num(yv) << "</text>"
        << "<line x1='" << left << "' y1='" << sy(yv) << "' x2='" << left + pw << "' y2='" << sy(yv)
        << "' stroke='#ddd'/>\n";
      if (x_tick_labels.empty())
        o << "<text x='" << sx(xv) << "' y='" << top + ph + 16 << "' text-anchor='middle'>" << detail::svg_num(xv)
          << "</text>\n";
    }
    for (std::size_t i = 0; i < x_tick_labels.size(); ++i)
      o << "<text x='" << sx(double(i)) << "' y='" << top + ph + 16 << "' text-anchor='middle'>"
        << detail::svg_escape(x_tick_labels[i]) << "</text>\n";
    o << "<text x='" << left + pw / 2 << "' y='" << height - 18 << "' text-anchor='middle'>"
      << detail::svg_escape(x_label) << "</text>\n<text transform='translate(16," << top + ph / 2
      << ") rotate(-90)' text-anchor='middle'>" << detail::svg_escape(y_label) << "</text>\n";
    for (std::size_t si = 0; si < series.size(); ++si) {
      const auto& s = series[si];
      const char* col = detail::svg_color(si);
      if (s.line && s.x.size() > 1) {
        o << "<polyline fill='none' stroke='" << col << "' stroke-width='1.5' points='";
        for (std::size_t i = 0; i < s.x.size(); ++i) o << sx(s.x[i]) << ',' << sy(s.y[i]) << ' ';
        o << "'/>\n";
      }
      if (s.has_bars())
        for (std::size_t i = 0; i < s.x.size(); ++i)
          if (std::isfinite(s.y_low[i]) && std::isfinite(s.y_high[i]))
            o << "<line class='ci' x1='" << sx(s.x[i]) << "' x2='" << sx(s.x[i]) << "' y1='" << sy(s.y_low[i]) << "' y2='"
              << sy(s.y_high[i]) << "' stroke='" << col << "' stroke-width='1' stroke-opacity='0.6'/>";
      for (std::size_t i = 0; i < s.x.size(); ++i)
        o << "<circle cx='" << sx(s.x[i]) << "' cy='" << sy(s.y[i]) << "' r='" << s.radius << "' fill='" << col << "'/>";
      o << "\n<rect x='" << left + pw + 12 << "' y='" << top + 16.0 * double(si) << "' width='10' height='10' fill='"
        << col << "'/><text x='" << left + pw + 26 << "' y='" << top + 16.0 * double(si) + 9 << "'>"
        << detail::svg_escape(s.name) << "</text>\n";
    }
    o << "</svg>\n";
    return o.str();
  }
  void save(const std::string& path) const { detail::svg_write(path, to_svg()); }
};

}  // namespace drt
