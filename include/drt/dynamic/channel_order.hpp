#pragma once
/// @file channel_order.hpp
/// Importance orders of a model's prunable channel groups. A channel knob keeps a *prefix* of a
/// group's units (e.g. `mlp=0.5` keeps the first half of every Mix-FFN's hidden units, `heads=0.5`
/// the first half of every attention's heads, a unit of head_dim channels). Permuting a
/// group's units once at load -- the producer's outputs and the consumer's inputs together, an
/// exact rewrite of the full model -- makes that prefix the most important units, with the same
/// kernels, the same speed and no copy per path.
///
/// - A `channel_group` names where a group's units live in the checkpoint: each tensor and the axis
///   that indexes the units (producer rows, consumer columns).
/// - A `channel_order` holds one permutation per group and how it was chosen: `checkpoint` (the
///   identity), `weight` (data-free: the product of the unit's weight-slice norms), or `calibrated`
///   (the unit's activation RMS on calibration images times the norm of its consumer column: the
///   unit's expected share of the consumer's output energy).
/// - `permuted_source` applies an order to any weight source; models are built from it as usual.
/// - A *refit* group (a classifier's inputs) is ordered only from calibration data, greedily by the
///   output error of a least-squares refit (dynamic/refit.hpp), and its calibrated order stores the
///   inputs' moments, from which a path that keeps a prefix refits the consumer. The data-free
///   weight order leaves it as stored: weight norms were measured to choose worse than the
///   checkpoint's order there (docs/channel_order.md).
///
/// A lookup table records the order it was measured with (`fingerprint`), so a table is only used
/// with that order.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <numeric>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "../core/observer.hpp"
#include "../io/weight_source.hpp"
#include "refit.hpp"

namespace drt {

/// One tensor of a channel group: its checkpoint name, full shape and the axis indexing the units.
struct group_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::size_t axis = 0;
  bool consumer = false;  ///< reads the units (its slices weigh each unit's effect on the output)
  /// Consecutive entries of the axis that form one unit (an attention head's channels); the axis
  /// holds units x unit_size entries and a permutation moves whole units.
  std::size_t unit_size = 1;
  /// false: the tensor moves with its units but its slices' norms do not score them (a per-head
  /// bias table, which shifts the unit's scores but does not scale its signal).
  bool weighs = true;
};

/// The units of one prunable group (e.g. a Mix-FFN's hidden units, an attention's heads), named by
/// the module that owns them.
struct channel_group {
  std::string name;  ///< e.g. "segformer.encoder.block.2.3.mlp"
  std::size_t units = 0;
  std::vector<group_tensor> tensors;
  /// A refit group: ordered from calibration only (greedy refit order), its consumer (the tensor
  /// marked `consumer`, [N, units, ...]) refit on a path's prefix; `consumer_bias` names its bias [N].
  bool refit = false;
  std::string consumer_bias;
};

/// The refit group `name` of a classifier's D inputs: the outputs (axis 0) of the `producer` conv
/// (its weight of `producer_shape`) and of its BatchNorm (`batch_norm` + weight, bias, running_mean,
/// running_var), consumed by the 1x1 `classifier` ([classes, D, 1, 1] + bias).
inline channel_group classifier_input_group(const std::string& name, const std::string& producer,
                                            const std::vector<std::int64_t>& producer_shape,
                                            const std::string& batch_norm, const std::string& classifier,
                                            std::int64_t classes) {
  channel_group g;
  g.name = name;
  const std::int64_t d = producer_shape.at(0);
  g.units = static_cast<std::size_t>(d);
  g.tensors.push_back({producer + ".weight", producer_shape, 0, false});
  for (const char* t : {"weight", "bias", "running_mean", "running_var"})
    g.tensors.push_back({batch_norm + "." + t, {d}, 0, false});
  g.tensors.push_back({classifier + ".weight", {classes, d, 1, 1}, 1, true});
  g.refit = true;
  g.consumer_bias = classifier + ".bias";
  return g;
}

/// perm[i] = the checkpoint's unit that stands at position i of the new order, per group.
struct channel_order {
  std::string method = "checkpoint";  ///< "checkpoint", "weight" or "calibrated"
  std::string calibration;            ///< calibrated: what the scores were measured on
  std::map<std::string, std::vector<std::uint32_t>> groups;
  /// calibrated: each group's mean unit activation on the calibration images, in the new order.
  /// A path that drops units adds their expected contribution to the consumer's bias
  /// (`compensate`); empty = no compensation.
  std::map<std::string, std::vector<float>> means;
  /// calibrated refit groups: the consumer's input moments, in the new order (dynamic/refit.hpp).
  /// A path that keeps a prefix of such a group refits the consumer from them; empty = no refit.
  std::map<std::string, input_moments> moments;

  bool is_identity() const noexcept {
    for (const auto& [name, p] : groups)
      for (std::size_t i = 0; i < p.size(); ++i)
        if (p[i] != i) return false;
    return true;
  }

  nlohmann::json to_json() const {
    nlohmann::json j;
    j["method"] = method;
    if (!calibration.empty()) j["calibration"] = calibration;
    j["groups"] = nlohmann::json::object();
    for (const auto& [name, p] : groups) j["groups"][name] = p;
    if (!means.empty()) {
      j["means"] = nlohmann::json::object();
      for (const auto& [name, m] : means) j["means"][name] = m;
    }
    if (!moments.empty()) {
      j["moments"] = nlohmann::json::object();
      for (const auto& [name, m] : moments) j["moments"][name] = m.to_json();
    }
    return j;
  }

  /// Reads `to_json`'s form; `where` names the file in errors.
  static channel_order from_json(const nlohmann::json& j, const std::string& where) {
    channel_order o;
    try {
      o.method = j.at("method").get<std::string>();
      if (j.contains("calibration")) o.calibration = j.at("calibration").get<std::string>();
      for (const auto& [name, p] : j.at("groups").items()) o.groups[name] = p.get<std::vector<std::uint32_t>>();
      if (j.contains("means"))
        for (const auto& [name, m] : j.at("means").items()) o.means[name] = m.get<std::vector<float>>();
      if (j.contains("moments"))
        for (const auto& [name, m] : j.at("moments").items())
          o.moments[name] = input_moments::from_json(m, where + ": moments of '" + name + "'");
    } catch (const nlohmann::json::exception& e) {
      throw invalid_input(where + ": not a channel order (" + e.what() + ")");
    }
    return o;
  }

  /// A short stable id of the order (method + FNV-1a of the permutations): "checkpoint" for the
  /// identity, else e.g. "calibrated-3f2a9c41".
  std::string fingerprint() const {
    if (is_identity()) return "checkpoint";
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&](std::uint64_t v) {
      for (int b = 0; b < 8; ++b) {
        h ^= (v >> (8 * b)) & 0xff;
        h *= 1099511628211ull;
      }
    };
    for (const auto& [name, p] : groups) {
      for (char c : name) mix(static_cast<unsigned char>(c));
      for (auto v : p) mix(v);
    }
    auto mix_float = [&](float v) {
      std::uint32_t bits = 0;
      std::memcpy(&bits, &v, sizeof bits);
      mix(bits);
    };
    for (const auto& [name, m] : means) {  // compensation changes what a prefix computes
      for (char c : name) mix(static_cast<unsigned char>(c));
      for (float v : m) mix_float(v);
    }
    for (const auto& [name, m] : moments) {  // so does a refit
      for (char c : name) mix(static_cast<unsigned char>(c));
      for (std::size_t i = 0; i <= m.dim; ++i)
        for (std::size_t k = i; k <= m.dim; ++k) mix_float(static_cast<float>(m.moment(i, k)));
    }
    std::ostringstream s;
    s << method << '-' << std::hex << (h & 0xffffffffull);
    return s.str();
  }
};

namespace detail {

/// Elements before / after a unit: the tensor is [outer, units, inner] (inner counts the unit's own
/// unit_size entries of the axis too).
inline std::pair<std::size_t, std::size_t> unit_strides(const group_tensor& t) {
  std::size_t outer = 1, inner = t.unit_size;
  for (std::size_t d = 0; d < t.shape.size(); ++d)
    (d < t.axis ? outer : inner) *= d == t.axis ? 1 : static_cast<std::size_t>(t.shape[d]);
  return {outer, inner};
}

/// Sum of squares of each unit's slice.
inline std::vector<double> slice_sq_norms(const group_tensor& t, const std::vector<float>& v) {
  const auto [outer, inner] = unit_strides(t);
  const auto units = static_cast<std::size_t>(t.shape[t.axis]) / t.unit_size;
  std::vector<double> out(units, 0.0);
  for (std::size_t o = 0; o < outer; ++o)
    for (std::size_t u = 0; u < units; ++u)
      for (std::size_t i = 0; i < inner; ++i) {
        const double x = v[(o * units + u) * inner + i];
        out[u] += x * x;
      }
  return out;
}

/// Units in descending score (ties: checkpoint order).
inline std::vector<std::uint32_t> order_by_score(const std::vector<double>& score) {
  std::vector<std::uint32_t> p(score.size());
  std::iota(p.begin(), p.end(), 0u);
  std::stable_sort(p.begin(), p.end(), [&](std::uint32_t a, std::uint32_t b) { return score[a] > score[b]; });
  return p;
}

}  // namespace detail

/// `base` with every tensor of `groups` permuted along its unit axis by `order` (groups the order
/// does not name stay in checkpoint order). Throws when a permutation does not fit its group.
inline weight_source permuted_source(weight_source base, const channel_order& order,
                                     const std::vector<channel_group>& groups) {
  std::map<std::string, std::pair<group_tensor, std::vector<std::uint32_t>>> by_tensor;
  std::size_t matched = 0;
  for (const auto& g : groups) {
    auto it = order.groups.find(g.name);
    if (it == order.groups.end()) continue;
    ++matched;
    const auto& p = it->second;
    std::vector<char> seen(g.units, 0);
    bool ok = p.size() == g.units;
    for (auto v : p) ok = ok && v < g.units && !seen[v]++;
    if (!ok)
      throw invalid_input("channel order (" + order.method + "): the permutation of group '" + g.name +
                          "' has " + std::to_string(p.size()) + " entries, expected a permutation of " +
                          std::to_string(g.units) + " units");
    for (const auto& t : g.tensors) by_tensor[t.name] = {t, p};
  }
  if (matched == 0 && !order.groups.empty())  // an order made for another model
    throw invalid_input("channel order (" + order.method + "): none of its " + std::to_string(order.groups.size()) +
                        " groups (first: '" + order.groups.begin()->first + "') is a group of this model" +
                        (groups.empty() ? std::string(", which has none") : " (first: '" + groups[0].name + "')"));
  return [base = std::move(base), by_tensor = std::move(by_tensor)](const std::string& name,
                                                                   const std::vector<std::int64_t>& shape) {
    std::vector<float> v = base(name, shape);
    auto it = by_tensor.find(name);
    if (it == by_tensor.end()) return v;
    const auto& [t, p] = it->second;
    const auto [outer, inner] = detail::unit_strides(t);
    const std::size_t units = p.size();
    std::vector<float> out(v.size());
    for (std::size_t o = 0; o < outer; ++o)
      for (std::size_t u = 0; u < units; ++u)
        std::copy_n(v.begin() + static_cast<std::ptrdiff_t>((o * units + p[u]) * inner), inner,
                    out.begin() + static_cast<std::ptrdiff_t>((o * units + u) * inner));
    return out;
  };
}

/// What a path keeps of the blocks' prunable units: per block (stage s, block j) the units computed
/// (a prefix of the model's order; 0 = all) and the consumer's compensated bias (empty = its own).
struct unit_prefixes {
  std::vector<std::vector<std::size_t>> kept;
  std::vector<std::vector<std::vector<float>>> bias;

  std::size_t at(std::size_t s, std::size_t j) const noexcept {
    return s < kept.size() && j < kept[s].size() ? kept[s][j] : 0;
  }
  const float* bias_at(std::size_t s, std::size_t j) const noexcept {
    return s < bias.size() && j < bias[s].size() && !bias[s][j].empty() ? bias[s][j].data() : nullptr;
  }

  /// The plan of a per-block fraction knob over `blocks` (blocks per stage): `kept(s, g)` units for
  /// block j of stage s (g: its index in stage order) and, where `order` holds the mean activations
  /// of `group(s, j)`, `consumer(s, j)`'s (a linear's) compensated bias. Once per path.
  template <class Kept, class Group, class Consumer>
  static unit_prefixes plan(const std::vector<std::size_t>& blocks, const channel_order& order, Kept&& kept,
                            Group&& group, Consumer&& consumer) {
    unit_prefixes p;
    p.kept.resize(blocks.size());
    p.bias.resize(blocks.size());
    for (std::size_t s = 0, g = 0; s < blocks.size(); ++s)
      for (std::size_t j = 0; j < blocks[s]; ++j, ++g) {
        const std::size_t k = kept(s, g);
        p.kept[s].push_back(k);
        const auto& c = consumer(s, j);
        const auto m = order.means.find(group(s, j));
        const bool compensate =
            m != order.means.end() && k < c.in_features() && m->second.size() == c.in_features();
        p.bias[s].push_back(compensate ? c.compensated_bias(k, m->second.data()) : std::vector<float>{});
      }
    return p;
  }
};

namespace detail {
/// The weight order of one group: units by the product of their weight slices' L2 norms.
inline std::vector<std::uint32_t> weight_rank(const weight_source& source, const channel_group& g) {
  std::vector<double> score(g.units, 1.0);
  for (const auto& t : g.tensors) {
    if (t.shape.size() < 2 || !t.weighs) continue;  // biases do not scale the unit's signal
    const auto sq = slice_sq_norms(t, source(t.name, t.shape));
    for (std::size_t u = 0; u < g.units; ++u) score[u] *= std::sqrt(sq[u]);
  }
  return order_by_score(score);
}
}  // namespace detail

/// Data-free order: each unit scored by the product of the L2 norms of its slices of the group's
/// weight tensors (the producer's row, the depthwise filter, the consumer's column; a head's query,
/// key and value rows and output-projection columns).
inline channel_order weight_order(const weight_source& source, const std::vector<channel_group>& groups) {
  channel_order o;
  o.method = "weight";
  for (const auto& g : groups)
    if (!g.refit) o.groups[g.name] = detail::weight_rank(source, g);  // refit groups: from calibration only
  return o;
}

/// What to ask a model to load with for the data-free weight order (computed from its weights).
inline channel_order weight_order_request() {
  channel_order o;
  o.method = "weight";
  return o;
}

/// The order a model is packed in, from what was asked: "weight" with no permutations computes the
/// weight order from `source`; "checkpoint" is the identity (no permutations); anything else is
/// used as given (permuted_source checks it against the groups).
inline channel_order resolve_order(const channel_order& asked, const weight_source& source,
                                   const std::vector<channel_group>& groups) {
  if (asked.method == "weight" && asked.groups.empty()) return weight_order(source, groups);
  if (asked.method == "checkpoint") return channel_order{};
  return asked;
}

/// Per-unit activation statistics of the groups, gathered while calibration images run (see
/// core/observer.hpp): the sum of squares and the count of rows per unit; for refit groups the
/// inputs' moments too.
struct unit_statistics {
  std::map<std::string, std::vector<double>> sum, sum_sq;
  std::map<std::string, std::size_t> rows;
  std::map<std::string, input_moments> moments;
};

/// Gathers unit_statistics from the layers that report their groups' activations (core/observer.hpp);
/// `layers` maps each reporting layer to its group (e.g. segformer_model::group_layers()).
class unit_statistics_observer : public activation_observer {
public:
  /// `moment_groups`: the groups whose inputs' moments are gathered too (refit groups).
  explicit unit_statistics_observer(std::map<const void*, std::string> layers,
                                    std::vector<std::string> moment_groups = {})
      : layers_(std::move(layers)), moment_groups_(std::move(moment_groups)) {}
  void observe(const void* layer, const float* x, std::size_t rows, std::size_t channels, std::size_t ld) override {
    auto it = layers_.find(layer);
    if (it == layers_.end()) return;
    if (std::find(moment_groups_.begin(), moment_groups_.end(), it->second) != moment_groups_.end()) {
      auto m = stats_.moments.try_emplace(it->second, channels).first;
      try {
        m->second.add(x, rows, channels, ld);
      } catch (const invalid_input& e) {  // name the group: the layer whose inputs broke
        throw invalid_input("calibration of group '" + it->second + "': " + e.what());
      }
    }
    auto& s = stats_.sum_sq[it->second];
    auto& s1 = stats_.sum[it->second];
    if (s.size() < channels) s.resize(channels, 0.0);
    if (s1.size() < channels) s1.resize(channels, 0.0);
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < channels; ++c) {
        const double v = x[r * ld + c];
        s1[c] += v;
        s[c] += v * v;
      }
    stats_.rows[it->second] += rows;
  }
  const unit_statistics& statistics() const noexcept { return stats_; }

private:
  std::map<const void*, std::string> layers_;
  std::vector<std::string> moment_groups_;
  unit_statistics stats_;
};

/// The statistics of `layers`' groups while `run()` runs (on this thread) the calibration images.
template <class Run>
unit_statistics collect_unit_statistics(std::map<const void*, std::string> layers, Run&& run,
                                        std::vector<std::string> moment_groups = {}) {
  unit_statistics_observer obs(std::move(layers), std::move(moment_groups));
  {
    observing_session session(obs);
    run();
  }
  return obs.statistics();
}

/// The names of the refit groups among `groups` (what the calibration observer gathers moments of).
inline std::vector<std::string> refit_group_names(const std::vector<channel_group>& groups) {
  std::vector<std::string> out;
  for (const auto& g : groups)
    if (g.refit) out.push_back(g.name);
  return out;
}

/// A refit group's calibrated order (greedy, by the refit's output error) and its moments in it.
inline void add_refit_order(channel_order& o, const weight_source& source, const channel_group& g,
                            const unit_statistics& stats) {
  auto m = stats.moments.find(g.name);
  if (m == stats.moments.end() || m->second.dim != g.units || !(m->second.rows > 0))
    throw invalid_input("calibrated channel order: no input moments for refit group '" + g.name + "'");
  const group_tensor* consumer = nullptr;
  for (const auto& t : g.tensors)
    if (t.consumer) consumer = &t;
  if (!consumer || consumer->axis != 1)
    throw invalid_input("refit group '" + g.name + "' names no consumer weight [outputs, units, ...]");
  const auto n = static_cast<std::size_t>(consumer->shape[0]);
  const auto [outer, inner] = detail::unit_strides(*consumer);
  if (inner != 1 || outer != n)
    throw invalid_input("refit group '" + g.name + "': its consumer '" + consumer->name + "' is not a 1x1 layer");
  const std::vector<float> w = source(consumer->name, consumer->shape);  // [N, units, 1, 1]
  std::vector<float> b;
  if (!g.consumer_bias.empty()) b = source(g.consumer_bias, {static_cast<std::int64_t>(n)});
  const auto perm = greedy_refit_order(m->second, w.data(), b.empty() ? nullptr : b.data(), n);
  o.groups[g.name] = perm;
  o.moments[g.name] = m->second.permuted(perm);
}

/// Channels per unit of a group (its consumer's unit_size; 1 when it names none).
inline std::size_t group_unit_size(const channel_group& g) {
  for (const auto& t : g.tensors)
    if (t.consumer) return t.unit_size;
  return 1;
}

/// Calibrated order: each unit scored by its activation RMS over the calibration rows times the L2
/// norm of its consumer slice (the unit's expected share of the consumer's output energy, units
/// taken as uncorrelated); groups of multi-channel units (attention heads) keep their weight order,
/// refit groups their greedy one. `stats` must cover every other group.
inline channel_order calibrated_order(const weight_source& source, const std::vector<channel_group>& groups,
                                      const unit_statistics& stats, const std::string& calibration) {
  channel_order o;
  o.method = "calibrated";
  o.calibration = calibration;
  for (const auto& g : groups) {
    if (g.refit) {
      add_refit_order(o, source, g, stats);
      continue;
    }
    // Attention heads keep their weight order: ranked by their output's RMS they kept less of the
    // mIoU (SegFormer-B2 CamVid heads=0.5: 0.595 against 0.612; docs/channel_order.md).
    if (group_unit_size(g) > 1) {
      o.groups[g.name] = detail::weight_rank(source, g);
      continue;
    }
    auto it = stats.sum_sq.find(g.name);
    if (it == stats.sum_sq.end() || it->second.size() != g.units || stats.rows.at(g.name) == 0)
      throw invalid_input("calibrated channel order: no activation statistics for group '" + g.name + "'");
    const double n = static_cast<double>(stats.rows.at(g.name));
    std::vector<double> score(g.units);
    for (std::size_t u = 0; u < g.units; ++u) score[u] = std::sqrt(it->second[u] / n);
    for (const auto& t : g.tensors) {
      if (!t.consumer) continue;
      const auto sq = detail::slice_sq_norms(t, source(t.name, t.shape));
      for (std::size_t u = 0; u < g.units; ++u) score[u] *= std::sqrt(sq[u]);
    }
    auto& p = o.groups[g.name];
    p = detail::order_by_score(score);
    auto s1 = stats.sum.find(g.name);
    if (s1 != stats.sum.end() && s1->second.size() == g.units) {
      auto& m = o.means[g.name];
      for (std::size_t u = 0; u < g.units; ++u) m.push_back(static_cast<float>(s1->second[p[u]] / n));
    }
  }
  return o;
}

}  // namespace drt
