#pragma once
/// @file front_plot.hpp
/// The sweep's figure (paper Fig. 6 style): every path of a lookup table as normalized latency vs
/// normalized mIoU, one colour per model, the Pareto front as a line, and each trained model's full
/// path marked, so where switching to a smaller trained model beats reducing a larger one is visible.
/// Front entries with a bootstrap interval of their mIoU (labelled sweeps) carry it as an error bar.
/// Drawn with the shared SVG chart writer (io/svg.hpp).

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../io/svg.hpp"
#include "lut.hpp"

namespace drt {

/// Chart of `t`: x = latency_ms / the reference latency, y = miou_normalized. The reference is
/// `t.info["reference"]` when present, else the slowest entry.
inline xy_chart front_chart(const lookup_table& t, const std::string& title = "") {
  if (t.entries.empty()) throw invalid_input("front_chart: the lookup table has no entries");
  double ref_ms = 0;
  std::string ref_label;
  if (t.info.contains("reference") && t.info["reference"].contains("latency_ms")) {
    ref_ms = t.info["reference"]["latency_ms"].get<double>();
    ref_label =
        t.info["reference"].value("model", std::string()) + " " + t.info["reference"].value("path", std::string());
  } else {
    for (const auto& e : t.entries) ref_ms = std::max(ref_ms, e.latency_ms);
  }
  if (!(ref_ms > 0)) throw invalid_input("front_chart: reference latency must be positive");
  std::vector<std::string> models;
  for (const auto& e : t.entries)
    if (std::find(models.begin(), models.end(), e.model) == models.end()) models.push_back(e.model);
  xy_chart c;
  std::ostringstream tt;
  tt.precision(4);
  tt << (title.empty() ? std::string("paths and Pareto front") : title) << " (1.0 = " << ref_label << ", " << ref_ms
     << " ms)";
  c.title = tt.str();
  c.x_label = "normalized latency (median, this machine)";
  c.y_label = "normalized mIoU";
  // short legend names: "segformer-b2-camvid" -> "b2-camvid"
  auto short_name = [](std::string m) {
    if (m.rfind("segformer-", 0) == 0) m = m.substr(10);
    return m.size() > 16 ? m.substr(0, 16) : m;
  };
  for (const auto& m : models) {
    xy_chart::series_data s;
    s.name = short_name(m) + " paths";
    s.line = false;
    s.radius = 2.2;
    for (const auto& e : t.entries)
      if (e.model == m) {
        s.x.push_back(e.latency_ms / ref_ms);
        s.y.push_back(e.miou_normalized);
      }
    c.series.push_back(std::move(s));
  }
  xy_chart::series_data front;
  front.name = "Pareto front";
  front.radius = 3.5;
  bool intervals = false;
  for (const std::size_t i : t.front()) {
    const auto& e = t.entries[i];
    front.x.push_back(e.latency_ms / ref_ms);
    front.y.push_back(e.miou_normalized);
    // the entry's bootstrap interval, on the same normalized scale
    const double scale = e.miou > 0 ? e.miou_normalized / e.miou : NAN;
    front.y_low.push_back(e.miou_ci.valid() ? e.miou_ci.low * scale : NAN);
    front.y_high.push_back(e.miou_ci.valid() ? e.miou_ci.high * scale : NAN);
    intervals = intervals || e.miou_ci.valid();
  }
  if (intervals) front.name = "Pareto front (bars: 95 % interval)";
  c.series.push_back(std::move(front));
  xy_chart::series_data full;
  full.name = "full models";
  full.line = false;
  full.radius = 6;
  for (const auto& e : t.entries)
    if (e.path == "full") {
      full.x.push_back(e.latency_ms / ref_ms);
      full.y.push_back(e.miou_normalized);
    }
  if (!full.x.empty()) c.series.push_back(std::move(full));
  return c;
}

}  // namespace drt
