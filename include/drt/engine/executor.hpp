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
#include <cstddef>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../models/segformer.hpp"
#include "lut.hpp"
#include "policy.hpp"

namespace drt {

/// Wall clock in milliseconds.
struct steady_clock_ms {
  double now_ms() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
};

/// SegFormer models (by LUT model name) as an executor graph: a plan is a model and a compiled path.
class segformer_graph {
public:
  using input_type = tensor4;   ///< pixel_values [N, 3, H, W]
  using output_type = tensor4;  ///< logits [N, K, H/4, W/4]
  struct plan_type {
    const segformer_model* model = nullptr;
    segformer_execution exec;
  };

  segformer_graph() = default;
  /// One model under the name the LUT uses for it (its directory's base name).
  segformer_graph(const std::string& name, const segformer_model& model) { add(name, model); }

  /// Adds a model; it must outlive the graph.
  segformer_graph& add(const std::string& name, const segformer_model& model) {
    models_[name] = &model;
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
    if (it->second->decoder_folded() != e.decoder_folded)
      throw invalid_input(std::string("was measured with the decoder ") + (e.decoder_folded ? "folded" : "unfolded") +
                          " but model '" + e.model + "' is loaded " +
                          (it->second->decoder_folded() ? "folded" : "unfolded") +
                          " (load it as the table says: lut_decoder_folded)");
    const auto path = e.path == "full" ? segformer_path{} : segformer_path::parse(e.path);
    return {it->second, it->second->compile(path)};
  }
  output_type run(const input_type& x, const plan_type& p) const { return p.model->forward(x, false, p.exec).logits; }

private:
  std::map<std::string, const segformer_model*> models_;
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
