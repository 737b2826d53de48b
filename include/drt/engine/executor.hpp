#pragma once
/// @file executor.hpp
/// The per-frame loop of the dynamic real-time engine (paper Fig. 8): a model graph composed with a
/// policy. Every path the policy may choose is planned once, up front (validated, compiled); each
/// frame then asks the policy for a path, runs it, measures it and feeds the time back.
///
/// A Graph provides
///   using input_type; using output_type; using plan_type;
///   plan_type plan(const lut_entry&) const;                     // may throw: done at construction
///   output_type run(const input_type&, const plan_type&) const;
/// A Clock provides `double now_ms()` (tests pass a fake one).

#include <chrono>
#include <functional>
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../models/any_model.hpp"
#include "../models/family.hpp"
#include "lut.hpp"
#include "lut_build.hpp"
#include "policy.hpp"

namespace drt {

/// Wall clock in milliseconds.
struct steady_clock_ms {
  double now_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

/// Models of any family (by LUT model name) as an executor graph: a plan is a model and a compiled
/// path, run through `model_family` (models/family.hpp), so one table may mix SegFormer, Swin +
/// UPerNet and ResNet entries. The output is the family's logits, NCHW (ResNet: [N, K, 1, 1]).
class model_graph {
public:
  using input_type = tensor4;   ///< pixel_values [N, 3, H, W]
  using output_type = tensor4;  ///< logits [N, K, h, w]
  struct plan_type {
    std::string family;                            ///< model_family<Model>::name
    std::function<tensor4(const tensor4&)> run;    ///< the model under the compiled path
  };

  model_graph() = default;
  /// One model under the name the LUT uses for it (its directory's base name).
  template <class Model>
  model_graph(const std::string& name, const Model& model) {
    add(name, model);
  }

  /// Adds a model (segformer_model, upernet_swin_model, resnet_model or any_model); it must outlive
  /// the graph.
  template <class Model>
  model_graph& add(const std::string& name, const Model& model) {
    models_[name] = &model;
    return *this;
  }
  model_graph& add(const std::string& name, const any_model& model) {
    std::visit([&](const auto& m) { add(name, m); }, model);
    return *this;
  }
  bool has(const std::string& name) const { return models_.count(name) != 0; }

  /// Throws drt::invalid_input when the entry's model is not loaded or its path does not apply.
  plan_type plan(const lut_entry& e) const {
    const auto it = models_.find(e.model);
    if (it == models_.end()) {
      std::string loaded;
      for (const auto& [name, m] : models_) loaded += (loaded.empty() ? "" : ", ") + name;
      throw invalid_input("needs model '" + e.model + "', which is not loaded" +
                          (loaded.empty() ? std::string(" (none loaded)") : " (loaded: " + loaded + ")"));
    }
    return std::visit([&](const auto* m) { return plan_for(e, *m); }, it->second);
  }
  output_type run(const input_type& x, const plan_type& p) const { return p.run(x); }

private:
  template <class Model>
  static plan_type plan_for(const lut_entry& e, const Model& m) {
    using family = model_family<Model>;
    if (e.family != family::name)
      throw invalid_input("is a " + e.family + " path but model '" + e.model + "' is loaded as a " + family::name +
                          " model");
    if (family::foldable_decoder && family::decoder_folded(m) != e.decoder_folded)
      throw invalid_input(std::string("was measured with the decoder ") + (e.decoder_folded ? "folded" : "unfolded") +
                          " but model '" + e.model + "' is loaded " +
                          (family::decoder_folded(m) ? "folded" : "unfolded") +
                          " (load it as the table says: lut_build)");
    const auto path = family::parse(e.path);
    family::validate(m, path);
    auto exec = family::compile(m, path);
    return {family::name, [&m, exec = std::move(exec)](const tensor4& x) { return family::logits(m, x, exec); }};
  }

  std::map<std::string, std::variant<const segformer_model*, const upernet_swin_model*, const resnet_model*>> models_;
};

/// Output of one frame with the path it ran and the accuracy estimate it came with.
template <class Output>
struct frame_result {
  Output output;
  policy_choice choice;  ///< entry, fits flag, budget, expected time and mIoU
  lut_entry entry;       ///< the table entry that ran (model, path, expected accuracy)
  double measured_ms = 0;
  bool missed = false;  ///< measured_ms > budget
};

template <class Graph, class Policy, class Clock = steady_clock_ms>
class executor {
public:
  using result_type = frame_result<typename Graph::output_type>;

  /// Plans every entry the policy may choose (throws here, never per frame, for a bad entry; the
  /// error names the table and the entry: "lut 'f.json': entry 3 (model 'path'): ...").
  executor(Graph graph, Policy policy, Clock clock = {})
      : graph_(std::move(graph)), policy_(std::move(policy)), clock_(std::move(clock)) {
    for (const std::size_t i : policy_.candidates()) {
      try {
        plans_.emplace(i, graph_.plan(policy_.table().entries[i]));
      } catch (const invalid_input& e) {
        throw invalid_input(policy_.table().entry_where(i) + ": " + e.what());
      }
    }
  }

  /// Runs one frame under `budget_ms` (throws drt::invalid_input for an impossible budget).
  result_type run(const typename Graph::input_type& x, double budget_ms) {
    const policy_choice c = policy_.choose(budget_ms);
    const auto& plan = plans_.at(c.entry);
    const double t0 = clock_.now_ms();
    auto out = graph_.run(x, plan);
    const double ms = clock_.now_ms() - t0;
    policy_.observe(c, ms);
    return result_type{std::move(out), c, policy_.table().entries[c.entry], ms, ms > c.budget_ms};
  }

  const Policy& policy() const noexcept { return policy_; }
  Policy& policy() noexcept { return policy_; }
  const Graph& graph() const noexcept { return graph_; }

private:
  Graph graph_;
  Policy policy_;
  Clock clock_;
  std::map<std::size_t, typename Graph::plan_type> plans_;
};

}  // namespace drt
