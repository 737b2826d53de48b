#pragma once
/// @file profile.hpp
/// Where the work and the time go (paper Section II): a model's layer list (exact MACs) joined
/// with per-layer wall times measured by `layer_profiler` over repeated runs, grouped by kind and by
/// region, as table, CSV, JSON and SVG.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../io/svg.hpp"
#include "../models/layer_info.hpp"

namespace drt {

struct profile_row {
  std::string name;  ///< the timed scope (one or more fused layers)
  layer_kind kind = layer_kind::elementwise;
  model_region region = model_region::encoder;
  std::size_t params = 0;
  double macs = 0;
  double seconds = 0;  ///< median over the repeats
};

struct profile_group {
  std::string name;
  double macs = 0, seconds = 0;
};

struct profile_result {
  std::string model, path;
  std::size_t batch = 1, height = 0, width = 0, repeat = 0;
  int threads = 1;
  std::vector<profile_row> rows;
  double total_seconds = 0;  ///< median wall time of the whole forward

  double total_macs() const {
    double t = 0;
    for (const auto& r : rows) t += r.macs;
    return t;
  }
  /// Totals by layer kind (in first-seen order) or by region.
  std::vector<profile_group> by_kind() const { return group([](const profile_row& r) { return std::string(to_string(r.kind)); }); }
  std::vector<profile_group> by_region() const {
    return group([](const profile_row& r) { return std::string(r.region == model_region::encoder ? "encoder" : "decoder"); });
  }
  /// Share of the MACs in layers of kind conv or depthwise conv (the paper's "convolutions").
  double conv_mac_share() const {
    double c = 0;
    for (const auto& r : rows)
      if (r.kind == layer_kind::conv || r.kind == layer_kind::depthwise_conv) c += r.macs;
    const double t = total_macs();
    return t > 0 ? c / t : 0.0;
  }

  std::string setting() const {
    return std::to_string(height) + "x" + std::to_string(width) + " batch " + std::to_string(batch);
  }

  std::string to_table() const {
    std::ostringstream o;
    const double tm = total_macs(), ts = total_seconds;
    o << model << "  " << setting() << "  path " << path << "  threads " << threads << "  median of " << repeat
      << " runs\n";
    o << std::left << std::setw(44) << "layer" << std::setw(17) << "kind" << std::setw(8) << "region" << std::right
      << std::setw(11) << "params" << std::setw(10) << "GMACs" << std::setw(11) << "ms" << std::setw(8) << "MAC%"
      << std::setw(8) << "time%" << '\n';
    o << std::fixed;
    for (const auto& r : rows)
      o << std::left << std::setw(44) << r.name.substr(0, 43) << std::setw(17) << to_string(r.kind) << std::setw(8)
        << (r.region == model_region::encoder ? "encoder" : "decoder") << std::right << std::setw(11) << r.params
        << std::setprecision(3) << std::setw(10) << r.macs / 1e9 << std::setw(11) << r.seconds * 1e3
        << std::setprecision(1) << std::setw(8) << (tm > 0 ? 100 * r.macs / tm : 0) << std::setw(8)
        << (ts > 0 ? 100 * r.seconds / ts : 0) << '\n';
    auto groups = [&](const char* title, const std::vector<profile_group>& g) {
      o << '\n' << title << '\n';
      for (const auto& x : g)
        o << "  " << std::left << std::setw(20) << x.name << std::right << std::setprecision(3) << std::setw(10)
          << x.macs / 1e9 << " GMACs" << std::setw(11) << x.seconds * 1e3 << " ms" << std::setprecision(1)
          << std::setw(8) << (tm > 0 ? 100 * x.macs / tm : 0) << " % MACs" << std::setw(8)
          << (ts > 0 ? 100 * x.seconds / ts : 0) << " % time\n";
    };
    groups("by kind:", by_kind());
    groups("by region:", by_region());
    o << std::setprecision(3) << "\ntotal: " << tm / 1e9 << " GMACs, " << ts * 1e3 << " ms (" << std::setprecision(1)
      << (ts > 0 ? 2 * tm / ts / 1e9 : 0) << " GFLOP/s), convolutions " << 100 * conv_mac_share() << " % of MACs\n";
    return o.str();
  }

  std::string to_csv() const {
    std::ostringstream o;
    o << "model,height,width,batch,path,layer,kind,region,params,macs,ms\n";
    for (const auto& r : rows)
      o << model << ',' << height << ',' << width << ',' << batch << ",\"" << path << "\",\"" << r.name << "\","
        << to_string(r.kind) << ',' << (r.region == model_region::encoder ? "encoder" : "decoder") << ',' << r.params
        << ',' << r.macs << ',' << r.seconds * 1e3 << '\n';
    return o.str();
  }

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["model"] = model;
    j["path"] = path;
    j["height"] = height;
    j["width"] = width;
    j["batch"] = batch;
    j["threads"] = threads;
    j["repeat"] = repeat;
    j["total_ms"] = total_seconds * 1e3;
    j["total_macs"] = total_macs();
    j["conv_mac_share"] = conv_mac_share();
    for (const auto& r : rows)
      j["layers"].push_back({{"name", r.name}, {"kind", to_string(r.kind)},
                             {"region", r.region == model_region::encoder ? "encoder" : "decoder"},
                             {"params", r.params}, {"macs", r.macs}, {"ms", r.seconds * 1e3}});
    for (const auto& g : by_kind()) j["by_kind"][g.name] = {{"macs", g.macs}, {"ms", g.seconds * 1e3}};
    for (const auto& g : by_region()) j["by_region"][g.name] = {{"macs", g.macs}, {"ms", g.seconds * 1e3}};
    return j;
  }

  /// MAC share vs time share per layer kind (Figs. 3-4 style).
  bar_chart to_chart() const {
    bar_chart c;
    c.title = model + " " + setting() + ": MAC share vs time share by layer kind";
    c.value_label = "percent";
    c.series = {"% of MACs", "% of time"};
    c.values.resize(2);
    const double tm = total_macs(), ts = total_seconds;
    for (const auto& g : by_kind()) {
      c.categories.push_back(g.name);
      c.values[0].push_back(tm > 0 ? 100 * g.macs / tm : 0);
      c.values[1].push_back(ts > 0 ? 100 * g.seconds / ts : 0);
    }
    return c;
  }

private:
  template <class Key>
  std::vector<profile_group> group(Key&& key) const {
    std::vector<profile_group> out;
    for (const auto& r : rows) {
      const std::string k = key(r);
      auto it = std::find_if(out.begin(), out.end(), [&](const profile_group& g) { return g.name == k; });
      if (it == out.end()) {
        out.push_back({k, 0, 0});
        it = out.end() - 1;
      }
      it->macs += r.macs;
      it->seconds += r.seconds;
    }
    return out;
  }
};

/// Runs `run()` `warmup` + `repeat` times, timing every layer, and joins the times with `layers`
/// (grouped by `timing_name()`). Time outside every layer scope (layout conversion of the input and
/// output, buffer allocation) becomes the row "other (layout, buffers)".
template <class Run>
profile_result profile_layers(const std::vector<layer_info>& layers, Run&& run, std::size_t repeat, std::size_t warmup = 1,
                              const std::function<void(std::size_t, std::size_t)>& progress = {}) {
  layer_profiler prof;
  std::vector<double> totals;
  for (std::size_t i = 0; i < warmup + repeat; ++i) {
    const bool timed = i >= warmup;
    const auto t0 = std::chrono::steady_clock::now();
    {
      profiling_session session(prof);
      run();
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (timed) {
      prof.end_run();
      totals.push_back(s);
    } else {
      prof.clear();
    }
    if (progress) progress(i + 1, warmup + repeat);
  }
  profile_result r;
  r.repeat = repeat;
  r.threads = max_threads();
  std::sort(totals.begin(), totals.end());
  r.total_seconds = totals.empty() ? 0 : totals[totals.size() / 2];
  std::map<std::string, std::size_t> index;
  for (const auto& l : layers) {
    const std::string& key = l.timing_name();
    auto it = index.find(key);
    if (it == index.end()) {
      index[key] = r.rows.size();
      profile_row row;
      row.name = key;
      row.kind = l.kind;
      row.region = l.region;
      row.seconds = prof.median(key);
      r.rows.push_back(row);
      it = index.find(key);
    }
    auto& row = r.rows[it->second];
    if (l.macs > 0 && row.macs == 0) row.kind = l.kind;  // a fused scope takes the kind of its MAC layers
    row.macs += l.macs;
    row.params += l.params;
  }
  double scoped = 0;
  for (const auto& name : prof.names()) {
    if (!index.count(name)) {  // timed but not in the layer list: keep it visible
      profile_row row;
      row.name = name;
      row.seconds = prof.median(name);
      r.rows.push_back(row);
    }
  }
  for (const auto& row : r.rows) scoped += row.seconds;
  profile_row other;
  other.name = "other (layout, buffers)";
  other.seconds = std::max(0.0, r.total_seconds - scoped);
  r.rows.push_back(other);
  return r;
}

}  // namespace drt
