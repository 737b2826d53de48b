#pragma once
/// @file profile.hpp
/// Where the work and the time go (paper Section II): a model's layer list (exact MACs) joined
/// with per-layer wall times measured by `layer_profiler` over repeated runs, grouped by kind and by
/// region, as table, CSV, JSON and SVG. Works for every model family (`profile_model`): SegFormer
/// (regions encoder / decoder), UPerNet + Swin and ResNet (regions backbone / head).

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iomanip>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/parallel.hpp"
#include "../core/profiler.hpp"
#include "../core/tensor.hpp"
#include "../io/svg.hpp"
#include "../layers/winograd.hpp"
#include "../models/any_model.hpp"
#include "../models/family.hpp"
#include "../models/layer_info.hpp"

namespace drt {

struct profile_row {
  std::string name;  ///< the timed scope (one or more fused layers)
  std::string module;  ///< the checkpoint module of its first layer (layer_info::module)
  layer_kind kind = layer_kind::elementwise;
  model_region region = model_region::encoder;
  std::size_t params = 0;
  double macs = 0;
  double seconds = 0;  ///< median over the repeats
  /// false for time outside the layer list (the "other (layout, buffers)" row, or a scope the list
  /// does not name): its kind and region are reported as "other".
  bool listed = true;
  /// Set when one timed scope runs layers of several MAC kinds (Swin's window attention: qkv and
  /// output linears, the two attention matmuls and the softmax in one pass): "attention".
  std::string fused_kind;
};

struct profile_group {
  std::string name;
  double macs = 0, seconds = 0;
  std::size_t params = 0;
};

/// How a family names model_region::encoder and ::decoder in reports: SegFormer "encoder" /
/// "decoder", UPerNet + Swin and ResNet "backbone" / "head".
inline std::array<std::string, 2> profile_region_names(const std::string& family) {
  if (family == "segformer") return {"encoder", "decoder"};
  return {"backbone", "head"};
}

/// The name of the row that takes the time outside every layer scope.
inline const char* profile_other_row() noexcept { return "other (layout, buffers)"; }

struct profile_result {
  std::string model, path;
  std::string family = "segformer";  ///< "segformer", "upernet" or "resnet"
  /// How the family names model_region::encoder / decoder ("encoder"/"decoder" for SegFormer,
  /// "backbone"/"head" for UPerNet + Swin and ResNet).
  std::array<std::string, 2> region_names{"encoder", "decoder"};
  std::size_t batch = 1, height = 0, width = 0, repeat = 0;
  int threads = 1;
  /// The 3x3 convolutions' form when profiled (DRT_CONV3X3's values: winograd4, winograd2, implicit).
  std::string conv3x3 = "winograd4";
  std::vector<profile_row> rows;
  double total_seconds = 0;  ///< median wall time of the whole forward

  double total_macs() const {
    double t = 0;
    for (const auto& r : rows) t += r.macs;
    return t;
  }
  std::size_t total_params() const {
    std::size_t t = 0;
    for (const auto& r : rows) t += r.params;
    return t;
  }
  std::string kind_name(const profile_row& r) const {
    return !r.listed ? "other" : !r.fused_kind.empty() ? r.fused_kind : to_string(r.kind);
  }
  std::string region_name(const profile_row& r) const {
    return r.listed ? region_names[r.region == model_region::encoder ? 0 : 1] : "other";
  }
  /// Totals by layer kind (in first-seen order) or by region (encoder/backbone, decoder/head, other).
  std::vector<profile_group> by_kind() const {
    return group([&](const profile_row& r) { return kind_name(r); });
  }
  std::vector<profile_group> by_region() const {
    auto g = group([&](const profile_row& r) { return region_name(r); });
    auto rank = [&](const profile_group& x) {
      return x.name == region_names[0] ? 0 : x.name == region_names[1] ? 1 : 2;
    };
    std::stable_sort(g.begin(), g.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
    return g;
  }
  /// Share of the MACs in layers of kind conv or depthwise conv (the paper's "convolutions").
  double conv_mac_share() const {
    double c = 0;
    for (const auto& r : rows)
      if (r.listed && (r.kind == layer_kind::conv || r.kind == layer_kind::depthwise_conv)) c += r.macs;
    const double t = total_macs();
    return t > 0 ? c / t : 0.0;
  }
  /// Share of the MACs / of the median time in the row or group with this value (0 when the total is 0).
  double mac_share(double macs) const {
    const double t = total_macs();
    return t > 0 ? macs / t : 0.0;
  }
  double time_share(double seconds) const { return total_seconds > 0 ? seconds / total_seconds : 0.0; }

  std::string size() const { return std::to_string(height) + "x" + std::to_string(width); }
  std::string setting() const { return size() + " batch " + std::to_string(batch); }

  /// The table: every row (or, with `top` > 0, the `top` rows that take the most time), then the
  /// totals by kind and by region and the overall line.
  std::string to_table(std::size_t top = 0) const {
    std::ostringstream o;
    const double tm = total_macs(), ts = total_seconds;
    o << model << "  " << setting() << "  path " << path << "  threads " << threads << "  3x3 " << conv3x3
      << "  median of " << repeat << " runs\n";
    std::vector<const profile_row*> shown;
    for (const auto& r : rows) shown.push_back(&r);
    if (top > 0 && top < shown.size()) {
      std::stable_sort(shown.begin(), shown.end(),
                       [](const auto* a, const auto* b) { return a->seconds > b->seconds; });
      shown.resize(top);
      o << "top " << top << " of " << rows.size() << " rows by time:\n";
    }
    o << std::left << std::setw(44) << "layer" << std::setw(17) << "kind" << std::setw(9) << "region" << std::right
      << std::setw(11) << "params" << std::setw(10) << "GMACs" << std::setw(11) << "ms" << std::setw(8) << "MAC%"
      << std::setw(8) << "time%" << '\n';
    o << std::fixed;
    for (const auto* r : shown)
      o << std::left << std::setw(44) << r->name.substr(0, 43) << std::setw(17) << kind_name(*r) << std::setw(9)
        << region_name(*r) << std::right << std::setw(11) << r->params << std::setprecision(3) << std::setw(10)
        << r->macs / 1e9 << std::setw(11) << r->seconds * 1e3 << std::setprecision(1) << std::setw(8)
        << 100 * mac_share(r->macs) << std::setw(8) << 100 * time_share(r->seconds) << '\n';
    auto groups = [&](const char* title, const std::vector<profile_group>& g) {
      o << '\n' << title << '\n';
      for (const auto& x : g)
        o << "  " << std::left << std::setw(20) << x.name << std::right << std::setprecision(3) << std::setw(10)
          << x.macs / 1e9 << " GMACs" << std::setw(11) << x.seconds * 1e3 << " ms" << std::setprecision(1)
          << std::setw(8) << 100 * mac_share(x.macs) << " % MACs" << std::setw(8) << 100 * time_share(x.seconds)
          << " % time\n";
    };
    groups("by kind:", by_kind());
    groups("by region:", by_region());
    o << std::setprecision(3) << "\ntotal: " << tm / 1e9 << " GMACs, " << total_params() / 1e6 << " M params, "
      << ts * 1e3 << " ms (" << std::setprecision(1) << (ts > 0 ? 2 * tm / ts / 1e9 : 0) << " GFLOP/s), convolutions "
      << 100 * conv_mac_share() << " % of MACs\n";
    return o.str();
  }

  std::string to_csv(bool header = true) const {
    std::ostringstream o;
    if (header) o << "model,height,width,batch,path,layer,kind,region,params,macs,time_ms,module\n";
    for (const auto& r : rows)
      o << model << ',' << height << ',' << width << ',' << batch << ",\"" << path << "\",\"" << r.name << "\","
        << kind_name(r) << ',' << region_name(r) << ',' << r.params << ',' << r.macs << ',' << r.seconds * 1e3 << ",\"" << r.module
        << "\"\n";
    return o.str();
  }

  /// {"model", "family", "size": "HxW", "height", "width", "batch", "path", "threads", "conv3x3", "repeat",
  ///  "total": {"macs", "params", "time_ms", "conv_mac_share"},
  ///  "layers": [{"name", "module", "kind", "region", "macs", "params", "time_ms", "mac_share", "time_share"}],
  ///  "by_kind" / "by_region": {name: {"macs", "params", "time_ms", "mac_share", "time_share"}}}
  nlohmann::json to_json() const {
    nlohmann::json j;
    j["model"] = model;
    j["family"] = family;
    j["size"] = size();
    j["height"] = height;
    j["width"] = width;
    j["batch"] = batch;
    j["path"] = path;
    j["threads"] = threads;
    j["conv3x3"] = conv3x3;
    j["repeat"] = repeat;
    j["total"] = {{"macs", total_macs()},
                  {"params", total_params()},
                  {"time_ms", total_seconds * 1e3},
                  {"conv_mac_share", conv_mac_share()}};
    j["layers"] = nlohmann::json::array();
    for (const auto& r : rows)
      j["layers"].push_back({{"name", r.name},
                             {"module", r.module},
                             {"kind", kind_name(r)},
                             {"region", region_name(r)},
                             {"macs", r.macs},
                             {"params", r.params},
                             {"time_ms", r.seconds * 1e3},
                             {"mac_share", mac_share(r.macs)},
                             {"time_share", time_share(r.seconds)}});
    auto groups = [&](const std::vector<profile_group>& gs) {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& g : gs)
        o[g.name] = {{"macs", g.macs},
                     {"params", g.params},
                     {"time_ms", g.seconds * 1e3},
                     {"mac_share", mac_share(g.macs)},
                     {"time_share", time_share(g.seconds)}};
      return o;
    };
    j["by_kind"] = groups(by_kind());
    j["by_region"] = groups(by_region());
    return j;
  }

  /// MAC share vs time share per layer kind, then per region (Figs. 3-4 style).
  bar_chart to_chart() const {
    bar_chart c;
    c.title = model + " " + setting() + ": MAC share vs time share";
    c.value_label = "percent";
    c.series = {"% of MACs", "% of time"};
    c.values.resize(2);
    auto add = [&](const std::string& name, const profile_group& g) {
      c.categories.push_back(name);
      c.values[0].push_back(100 * mac_share(g.macs));
      c.values[1].push_back(100 * time_share(g.seconds));
    };
    for (const auto& g : by_kind()) add(g.name, g);
    for (const auto& g : by_region()) add("region: " + g.name, g);
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
        out.push_back({k, 0, 0, 0});
        it = out.end() - 1;
      }
      it->macs += r.macs;
      it->seconds += r.seconds;
      it->params += r.params;
    }
    return out;
  }
};

/// Runs `run()` `warmup` + `repeat` times, timing every layer, and joins the times with `layers`
/// (grouped by `timing_name()`). Time outside every layer scope (layout conversion of the input and
/// output, buffer allocation) becomes the row "other (layout, buffers)".
template <class Run>
profile_result profile_layers(const std::vector<layer_info>& layers, Run&& run, std::size_t repeat,
                              std::size_t warmup = 1,
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
  r.conv3x3 = !winograd_enabled() ? "implicit" : "winograd" + std::to_string(winograd_default_tile());
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
      row.module = l.module;
      row.kind = l.kind;
      row.region = l.region;
      row.seconds = prof.median(key);
      r.rows.push_back(row);
      it = index.find(key);
    }
    auto& row = r.rows[it->second];
    if (l.macs > 0 && row.macs == 0)
      row.kind = l.kind;                        // a fused scope takes the kind of its MAC layers
    else if (l.macs > 0 && l.kind != row.kind)  // ... or, when they differ, a joint name
      row.fused_kind =
          l.kind == layer_kind::attention_matmul || row.kind == layer_kind::attention_matmul ? "attention" : "fused";
    row.macs += l.macs;
    row.params += l.params;
  }
  double scoped = 0;
  for (const auto& name : prof.names()) {
    if (!index.count(name)) {  // timed but not in the layer list: keep it visible
      profile_row row;
      row.name = name;
      row.seconds = prof.median(name);
      row.listed = false;
      r.rows.push_back(row);
    }
  }
  for (const auto& row : r.rows) scoped += row.seconds;
  profile_row other;
  other.name = profile_other_row();
  other.seconds = std::max(0.0, r.total_seconds - scoped);
  other.listed = false;
  r.rows.push_back(other);
  return r;
}


/// What to profile: one input size and batch, a dynamic path in the family's text form
/// (dynamic/path.hpp, upernet_path.hpp, resnet_path.hpp; empty or "full" = the full model).
struct profile_options {
  std::size_t height = 512, width = 512, batch = 1;
  std::string path;
  std::size_t repeat = 5, warmup = 1;
  unsigned seed = 1;                                       ///< the synthetic input is N(0, 1) from this seed
  std::function<void(std::size_t, std::size_t)> progress;  ///< (runs done, runs in all), after each run
};

/// Profiles one model of any family: compiles the path, builds a synthetic input
/// [batch, channels, height, width] and joins the per-layer medians with `model.layers(...)`.
/// The result's model name is left empty for the caller; family, regions, size, batch and the
/// canonical path text are filled in. Throws drt::invalid_input for a path of another family or an
/// input the model cannot take.
template <class Model>
profile_result profile_model(const Model& model, const profile_options& opt) {
  using family = model_family<Model>;
  const auto path = family::parse(opt.path);
  family::validate(model, path);
  const auto exec = family::compile(model, path);
  family::check_input(model, opt.height, opt.width);
  tensor4 x = tensor4::from_shape({opt.batch, family::input_channels(model), opt.height, opt.width});
  std::mt19937 gen(opt.seed);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(gen);
  auto r = profile_layers(
      family::layers(model, opt.height, opt.width, exec, opt.batch), [&] { (void)family::logits(model, x, exec); },
      opt.repeat, opt.warmup, opt.progress);
  r.family = family::name;
  r.region_names = profile_region_names(r.family);
  r.path = path.to_string();
  r.height = opt.height;
  r.width = opt.width;
  r.batch = opt.batch;
  return r;
}

/// The same for a model loaded with `load_model` or built with `standard_model`.
inline profile_result profile_model(const any_model& model, const profile_options& opt) {
  return std::visit([&](const auto& m) { return profile_model(m, opt); }, model);
}

}  // namespace drt
