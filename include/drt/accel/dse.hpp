#pragma once
/// @file dse.hpp
/// Design-space exploration helpers (paper Fig. 10 / Fig. 11): one point per (accelerator, path),
/// the Pareto-optimal designs in throughput per mm2 (higher is better) vs energy per MAC (lower is
/// better), and the two views as CSV and SVG (docs/img/accel_fig10.svg, accel_fig11.svg). For the
/// dynamic paths of one model (a LUT's entries) on a design: the Pareto-optimal paths on (accelerator
/// cycles, accuracy) and (accelerator energy, accuracy) (`mark_path_fronts`, `path_front_csv`,
/// `dse_path_front_svg`; docs/img/dse_*).

#include <algorithm>
#include <cmath>
#include <map>
#include <cstddef>
#include <cstdio>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "../core/pareto.hpp"
#include "../models/layer_info.hpp"
#include "accelerator.hpp"
#include "area.hpp"
#include "estimate.hpp"

namespace drt {

/// One accelerator running one path.
struct dse_point {
  std::string accel, path;
  double cycles = 0, ms = 0, energy_pj = 0, macs = 0, area_mm2 = 0;
  double accuracy = 0;  ///< normalized accuracy of the path when known (Fig. 10's y axis)
  unsigned k0 = 0;      ///< the design's vector width (the charts mark narrower designs by it)
  bool pareto = false;  ///< set by mark_pareto
  // Paths of one model (mark_path_fronts): where the path came from and the fronts it is on.
  std::string model;              ///< model of a LUT entry (empty otherwise)
  double miou = NAN;              ///< absolute mIoU of a LUT entry
  double cpu_latency_ms = NAN;    ///< a LUT entry's CPU latency
  bool cpu_pareto = false;        ///< on the LUT's (CPU latency, mIoU) front
  bool cycles_front = false;      ///< on this design's (cycles, accuracy) front; set by mark_path_fronts
  bool energy_front = false;      ///< on this design's (energy, accuracy) front; set by mark_path_fronts

  double pj_per_mac() const noexcept { return macs > 0 ? energy_pj / macs : 0.0; }
  /// Inferences per second per mm2 of PE array.
  double throughput_per_mm2() const noexcept { return ms > 0 && area_mm2 > 0 ? 1e3 / ms / area_mm2 : 0.0; }
};

/// The point of `layers` (one path) on `a`.
inline dse_point make_dse_point(const accelerator& a, const std::string& path, const std::vector<layer_info>& layers,
                                double accuracy = 0, const accel_options& o = {}) {
  const model_estimate e = estimate(a, layers, o);
  dse_point p;
  p.accel = a.name();
  p.path = path;
  p.cycles = e.cycles;
  p.ms = e.ms();
  p.energy_pj = e.energy_pj;
  p.macs = e.macs;
  p.area_mm2 = pe_array_area_mm2(a);
  p.accuracy = accuracy;
  p.k0 = a.k0;
  return p;
}

/// Marks the points that no other point beats in both throughput per mm2 (>=) and energy per MAC
/// (<=), with at least one strict.
inline void mark_pareto(std::vector<dse_point>& pts) {
  for (auto& p : pts) {
    p.pareto = true;
    for (const auto& o : pts) {
      const bool ge = o.throughput_per_mm2() >= p.throughput_per_mm2() && o.pj_per_mac() <= p.pj_per_mac();
      const bool strict = o.throughput_per_mm2() > p.throughput_per_mm2() || o.pj_per_mac() < p.pj_per_mac();
      if (ge && strict) {
        p.pareto = false;
        break;
      }
    }
  }
}

/// One CSV row per point: accel,path,ms,cycles,energy_mj,macs,pj_per_mac,area_mm2,throughput_per_mm2,accuracy,pareto
inline std::string dse_csv(const std::vector<dse_point>& pts) {
  std::ostringstream o;
  o << "accel,path,ms,cycles,energy_mj,macs,pj_per_mac,area_mm2,throughput_per_mm2,accuracy,pareto\n";
  for (const auto& p : pts)
    o << p.accel << ',' << p.path << ',' << p.ms << ',' << p.cycles << ',' << p.energy_pj * 1e-9 << ',' << p.macs << ','
      << p.pj_per_mac() << ',' << p.area_mm2 << ',' << p.throughput_per_mm2() << ',' << p.accuracy << ','
      << (p.pareto ? 1 : 0) << '\n';
  return o.str();
}

namespace detail {
/// A minimal SVG x-y chart: frame, ticks, labels; callers add marks in data coordinates.
struct svg_chart {
  std::ostringstream o;
  double w = 640, h = 420, left = 70, right = 140, top = 40, bottom = 55;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double x(double v) const { return left + (v - x0) / (x1 - x0) * (w - left - right); }
  double y(double v) const { return h - bottom - (v - y0) / (y1 - y0) * (h - top - bottom); }
  static std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", std::abs(v) < 1e-12 ? 0.0 : v);
    return b;
  }
  /// Sets [x0, x1] (or [y0, y1]) to cover [lo, hi] in about `want` round steps; returns the step count.
  static int nice(double lo, double hi, int want, double& a, double& b) {
    if (hi <= lo) hi = lo + 1;
    const double raw = (hi - lo) / want, mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = 10 * mag;
    for (double m : {1.0, 2.0, 2.5, 5.0})
      if (m * mag >= raw) {
        step = m * mag;
        break;
      }
    a = std::floor(lo / step + 1e-9) * step;
    b = std::ceil(hi / step - 1e-9) * step;
    return static_cast<int>(std::lround((b - a) / step));
  }
  void begin(const std::string& title, const std::string& xl, const std::string& yl, int nx, int ny) {
    o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
      << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n";
    o << "<text x='" << (left + w - right) / 2 << "' y='22' text-anchor='middle' font-size='14'>" << title
      << "</text>\n";
    o << "<rect x='" << left << "' y='" << top << "' width='" << w - left - right << "' height='" << h - top - bottom
      << "' fill='none' stroke='black'/>\n";
    for (int i = 0; i <= nx; ++i) {
      const double v = x0 + (x1 - x0) * i / nx;
      o << "<line x1='" << x(v) << "' y1='" << top << "' x2='" << x(v) << "' y2='" << h - bottom << "' stroke='#eee'/>"
        << "<text x='" << x(v) << "' y='" << h - bottom + 18 << "' text-anchor='middle'>" << num(v) << "</text>\n";
    }
    for (int i = 0; i <= ny; ++i) {
      const double v = y0 + (y1 - y0) * i / ny;
      o << "<line x1='" << left << "' y1='" << y(v) << "' x2='" << w - right << "' y2='" << y(v) << "' stroke='#eee'/>"
        << "<text x='" << left - 8 << "' y='" << y(v) + 4 << "' text-anchor='end'>" << num(v) << "</text>\n";
    }
    o << "<text x='" << (left + w - right) / 2 << "' y='" << h - 15 << "' text-anchor='middle'>" << xl << "</text>\n";
    o << "<text transform='translate(18," << (top + h - bottom) / 2 << ") rotate(-90)' text-anchor='middle'>" << yl
      << "</text>\n";
  }
  std::string end() {
    o << "</svg>\n";
    return o.str();
  }
};
inline const char* dse_color(std::size_t i) {
  static const char* c[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                            "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#637939", "#843c39"};
  return c[i % 13];
}
}  // namespace detail

/// Fig. 10 view: time per inference (x) vs accuracy (y), one line per accelerator through its paths;
/// accelerators with identical times share a line (named together). Narrower-vector designs dashed.
/// `y_label` names what `accuracy` holds (e.g. normalized MACs when the paths' accuracy is unknown).
inline std::string dse_fig10_svg(const std::vector<dse_point>& pts, const std::string& title,
                                 const std::string& y_label = "normalized accuracy") {
  std::vector<std::string> order;  // accelerators in first-seen order
  for (const auto& p : pts)
    if (std::find(order.begin(), order.end(), p.accel) == order.end()) order.push_back(p.accel);
  auto series = [&](const std::string& a) {
    std::vector<std::pair<double, double>> s;
    for (const auto& p : pts)
      if (p.accel == a) s.emplace_back(p.ms, p.accuracy);
    std::sort(s.begin(), s.end());
    return s;
  };
  unsigned widest = 0;
  for (const auto& p : pts) widest = std::max(widest, p.k0);
  auto narrow_accel = [&](const std::string& a) {
    for (const auto& p : pts)
      if (p.accel == a) return p.k0 < widest;
    return false;
  };
  std::vector<std::pair<std::string, std::vector<std::pair<double, double>>>> lines;
  std::vector<bool> narrow_line;
  for (const auto& a : order) {
    auto s = series(a);
    bool merged = false;
    for (auto& l : lines)
      if (l.second.size() == s.size() &&
          std::equal(s.begin(), s.end(), l.second.begin(), [](const auto& u, const auto& v) {
            return std::abs(u.first - v.first) <= 1e-9 * std::max(1.0, u.first) && u.second == v.second;
          })) {
        l.first += ", " + a;
        merged = true;
        break;
      }
    if (!merged) {
      lines.emplace_back(a, std::move(s));
      narrow_line.push_back(narrow_accel(a));
    }
  }
  double xlo = 1e300, xhi = 0, ylo = 1e300, yhi = -1e300;
  for (const auto& p : pts) {
    xlo = std::min(xlo, p.ms), xhi = std::max(xhi, p.ms);
    ylo = std::min(ylo, p.accuracy), yhi = std::max(yhi, p.accuracy);
  }
  detail::svg_chart c;
  const int nx = detail::svg_chart::nice(xlo, xhi, 8, c.x0, c.x1);
  const int ny = detail::svg_chart::nice(ylo, yhi, 6, c.y0, c.y1);
  c.begin(title, "time per inference, ms", y_label, nx, ny);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const char* dash = narrow_line[i] ? " stroke-dasharray='5,3'" : "";
    c.o << "<polyline fill='none' stroke-width='1.8' stroke='" << detail::dse_color(i) << "'" << dash << " points='";
    for (const auto& [x, y] : lines[i].second) c.o << c.x(x) << ',' << c.y(y) << ' ';
    c.o << "'/>\n";
    for (const auto& [x, y] : lines[i].second)
      c.o << "<circle cx='" << c.x(x) << "' cy='" << c.y(y) << "' r='2.5' fill='" << detail::dse_color(i) << "'/>\n";
    const double ly = c.top + 10 + 18 * double(i), lx = c.w - c.right + 12;
    c.o << "<line x1='" << lx << "' y1='" << ly << "' x2='" << lx + 24 << "' y2='" << ly
        << "' stroke-width='2' stroke='" << detail::dse_color(i) << "'" << dash << "/><text x='" << lx + 30 << "' y='"
        << ly + 4 << "'>" << lines[i].first << "</text>\n";
  }
  return c.end();
}

/// Fig. 11 view: energy per MAC (x) vs inferences per second per mm2 (y), one mark per point (circles
/// for the widest vectors, squares for narrower ones), Pareto-optimal points red and joined.
inline std::string dse_fig11_svg(const std::vector<dse_point>& pts, const std::string& title) {
  double xlo = 1e300, xhi = 0, yhi = 0;
  unsigned widest = 0, narrowest = ~0u;
  for (const auto& p : pts) {
    widest = std::max(widest, p.k0), narrowest = std::min(narrowest, p.k0);
    xlo = std::min(xlo, p.pj_per_mac()), xhi = std::max(xhi, p.pj_per_mac());
    yhi = std::max(yhi, p.throughput_per_mm2());
  }
  detail::svg_chart c;
  const int nx = detail::svg_chart::nice(xlo, xhi, 8, c.x0, c.x1);
  const int ny = detail::svg_chart::nice(0, yhi, 10, c.y0, c.y1);
  c.begin(title, "energy per MAC, pJ", "inferences / s / mm2", nx, ny);
  std::vector<std::pair<double, double>> front;
  for (const auto& p : pts) {
    const double x = c.x(p.pj_per_mac()), y = c.y(p.throughput_per_mm2());
    const char* fill = p.pareto ? "#d62728" : "#999";
    if (p.k0 < widest)
      c.o << "<rect x='" << x - 4 << "' y='" << y - 4 << "' width='8' height='8' fill='" << fill << "'/>";
    else
      c.o << "<circle cx='" << x << "' cy='" << y << "' r='4.5' fill='" << fill << "'/>";
    c.o << "<text x='" << x + 7 << "' y='" << y + 4 << "'>" << p.accel << "</text>\n";
    if (p.pareto) front.emplace_back(x, y);
  }
  std::sort(front.begin(), front.end());
  c.o << "<polyline fill='none' stroke='#d62728' stroke-dasharray='3,3' points='";
  for (const auto& [x, y] : front) c.o << x << ',' << y << ' ';
  c.o << "'/>\n";
  const double lx = c.w - c.right + 12, ly = c.top + 10;
  c.o << "<circle cx='" << lx + 5 << "' cy='" << ly << "' r='4.5' fill='#999'/><text x='" << lx + 14 << "' y='"
      << ly + 4 << "'>K0 = C0 = " << widest << "</text>\n";
  if (narrowest < widest)
    c.o << "<rect x='" << lx + 1 << "' y='" << ly + 14 << "' width='8' height='8' fill='#999'/><text x='" << lx + 14
        << "' y='" << ly + 22 << "'>narrower (" << narrowest << ")</text>\n";
  c.o << "<circle cx='" << lx + 5 << "' cy='" << ly + 36 << "' r='4.5' fill='#d62728'/><text x='" << lx + 14 << "' y='"
      << ly + 40 << "'>Pareto-optimal</text>\n";
  return c.end();
}

/// Per design, marks the paths on the (cycles, accuracy) and (energy, accuracy) Pareto fronts (cost
/// lower, accuracy higher; `pareto_front`'s rules). Points of different designs never compete.
inline void mark_path_fronts(std::vector<dse_point>& pts) {
  std::map<std::string, std::vector<std::size_t>> by_accel;
  for (std::size_t i = 0; i < pts.size(); ++i) by_accel[pts[i].accel].push_back(i);
  for (const auto& [accel, idx] : by_accel) {
    std::vector<const dse_point*> v;
    for (const std::size_t i : idx) v.push_back(&pts[i]);
    const auto acc = [](const dse_point* p) { return p->accuracy; };
    for (const std::size_t j : pareto_front(v, [](const dse_point* p) { return p->cycles; }, acc))
      pts[idx[j]].cycles_front = true;
    for (const std::size_t j : pareto_front(v, [](const dse_point* p) { return p->energy_pj; }, acc))
      pts[idx[j]].energy_front = true;
  }
}

/// One row per (design, path):
/// accel,model,path,macs,cycles,ms,energy_mj,accuracy,miou,cpu_latency_ms,cpu_pareto,cycles_front,energy_front
/// (empty fields where a value is unknown).
inline std::string path_front_csv(const std::vector<dse_point>& pts) {
  std::ostringstream o;
  o.precision(10);
  auto opt = [&](double v) -> std::ostringstream& {
    if (std::isfinite(v)) o << v;
    return o;
  };
  o << "accel,model,path,macs,cycles,ms,energy_mj,accuracy,miou,cpu_latency_ms,cpu_pareto,cycles_front,energy_front\n";
  for (const auto& p : pts) {
    o << p.accel << ',' << p.model << ",\"" << p.path << "\"," << p.macs << ',' << p.cycles << ',' << p.ms << ','
      << p.energy_pj * 1e-9 << ',' << p.accuracy << ',';
    opt(p.miou) << ',';
    opt(p.cpu_latency_ms) << ',' << (p.cpu_pareto ? 1 : 0) << ',' << (p.cycles_front ? 1 : 0) << ','
                          << (p.energy_front ? 1 : 0) << '\n';
  }
  return o.str();
}

/// The paths of one design (`accel`) as accuracy (y) vs time (x, `energy` false: ms at the design's
/// clock) or energy (`energy` true: mJ). Grey: every path; red, joined: the design's front on that
/// cost (mark_path_fronts); blue rings: the paths on the CPU-latency front (cpu_pareto).
inline std::string dse_path_front_svg(const std::vector<dse_point>& pts, const std::string& accel, bool energy,
                                      const std::string& title, const std::string& y_label = "normalized mIoU") {
  std::vector<const dse_point*> v;
  for (const auto& p : pts)
    if (p.accel == accel) v.push_back(&p);
  const auto xv = [&](const dse_point* p) { return energy ? p->energy_pj * 1e-9 : p->ms; };
  double xlo = 1e300, xhi = -1e300, ylo = 1e300, yhi = -1e300;
  bool any_cpu = false;
  for (const auto* p : v) {
    xlo = std::min(xlo, xv(p)), xhi = std::max(xhi, xv(p));
    ylo = std::min(ylo, p->accuracy), yhi = std::max(yhi, p->accuracy);
    any_cpu = any_cpu || p->cpu_pareto;
  }
  if (v.empty()) xlo = ylo = 0, xhi = yhi = 1;
  detail::svg_chart c;
  c.right = 170;
  const int nx = detail::svg_chart::nice(xlo, xhi, 8, c.x0, c.x1);
  const int ny = detail::svg_chart::nice(ylo, yhi, 6, c.y0, c.y1);
  c.begin(title, energy ? "energy per inference on " + accel + ", mJ" : "time per inference on " + accel + ", ms",
          y_label, nx, ny);
  for (const auto* p : v)
    c.o << "<circle cx='" << c.x(xv(p)) << "' cy='" << c.y(p->accuracy) << "' r='2' fill='#bbb'/>\n";
  std::vector<std::pair<double, double>> front;
  for (const auto* p : v)
    if (energy ? p->energy_front : p->cycles_front) front.emplace_back(xv(p), p->accuracy);
  std::sort(front.begin(), front.end());
  c.o << "<polyline fill='none' stroke='#d62728' stroke-width='1.5' points='";
  for (std::size_t i = 0; i < front.size(); ++i) {  // a staircase: accuracy holds until the next front point
    if (i) c.o << c.x(front[i].first) << ',' << c.y(front[i - 1].second) << ' ';
    c.o << c.x(front[i].first) << ',' << c.y(front[i].second) << ' ';
  }
  c.o << "'/>\n";
  for (const auto& [x, y] : front) c.o << "<circle cx='" << c.x(x) << "' cy='" << c.y(y) << "' r='3.5' fill='#d62728'/>\n";
  for (const auto* p : v)
    if (p->cpu_pareto)
      c.o << "<circle cx='" << c.x(xv(p)) << "' cy='" << c.y(p->accuracy)
          << "' r='6' fill='none' stroke='#1f77b4' stroke-width='1.5'/>\n";
  const double lx = c.w - c.right + 12, ly = c.top + 10;
  c.o << "<circle cx='" << lx + 5 << "' cy='" << ly << "' r='2' fill='#bbb'/><text x='" << lx + 14 << "' y='" << ly + 4
      << "'>path (" << v.size() << ")</text>\n";
  c.o << "<circle cx='" << lx + 5 << "' cy='" << ly + 18 << "' r='3.5' fill='#d62728'/><text x='" << lx + 14 << "' y='"
      << ly + 22 << "'>" << accel << " front (" << front.size() << ")</text>\n";
  if (any_cpu)
    c.o << "<circle cx='" << lx + 5 << "' cy='" << ly + 36 << "' r='6' fill='none' stroke='#1f77b4' stroke-width='1.5'/>"
        << "<text x='" << lx + 14 << "' y='" << ly + 40 << "'>CPU-latency front</text>\n";
  return c.end();
}

}  // namespace drt
