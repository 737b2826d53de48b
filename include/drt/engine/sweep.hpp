#pragma once
/// @file sweep.hpp
/// The offline half of the dynamic real-time engine (paper Sections III-IV): enumerate a model's
/// execution paths, measure each path's latency on this machine and its accuracy, and keep them in
/// a lookup table with the Pareto-optimal entries flagged. `sweep` takes model directories of one
/// family and picks the sweep for it:
/// - SegFormer on labelled data: `sweep_segformer` (sweep_segformer.hpp), which reads the logits of
///   every decoder path of an encoding for the cost of about one decoder;
/// - every family, labelled or not: `sweep_family` (sweep_family.hpp), the generic phases
///   (enumerate, per-layer latency model, accuracy per encoder group, confirm, report).
/// Tables of different families are swept apart and joined with `merge_luts` (lut.hpp). A sweep too
/// long for one machine runs its accuracy in shards and its latency on the target (sweep_shard.hpp).

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../io/model_config.hpp"
#include "sweep_family.hpp"
#include "sweep_segformer.hpp"

namespace drt {

/// Sweeps the models in `model_dirs` (hub layout, one family) on `opt.data_dir`.
inline sweep_result sweep(const std::vector<std::string>& model_dirs, const sweep_options& opt,
                          const sweep_progress_fn& progress = {}, const sweep_log_fn& log = {}) {
  if (model_dirs.empty()) throw invalid_input("sweep: no model directories given");
  const std::string type = read_model_type(model_dirs[0] + "/config.json");
  for (const auto& dir : model_dirs)
    if (read_model_type(dir + "/config.json") != type)
      throw invalid_input("sweep: model '" + dir + "' is a " + read_model_type(dir + "/config.json") + " but '" +
                          model_dirs[0] + "' is a " + type +
                          ": sweep each family apart and join the tables (drt lut merge / merge_luts)");
  if (type == "segformer") {
    std::error_code ec;  // the SegFormer sweep needs labels; fidelity and custom knobs go generic
    const bool labelled = std::filesystem::is_directory(std::filesystem::path(opt.data_dir) / "labels", ec);
    if (opt.phases == sweep_options::phase_set::latency && opt.accuracy_table) {  // the sweep that measured it
      if (detail::accuracy_sweep_set(*opt.accuracy_table).value("sweep", std::string()) == "segformer")
        return sweep_segformer(model_dirs, opt, progress, log);
      return sweep_family<segformer_model>(model_dirs, opt, progress, log);
    }
    if (labelled && !opt.fidelity && opt.knob_grid.empty()) return sweep_segformer(model_dirs, opt, progress, log);
    return sweep_family<segformer_model>(model_dirs, opt, progress, log);
  }
  if (type == "upernet") return sweep_family<upernet_swin_model>(model_dirs, opt, progress, log);
  if (type == "resnet") return sweep_family<resnet_model>(model_dirs, opt, progress, log);
  throw invalid_input("sweep: model '" + model_dirs[0] + "': model_type '" + type +
                      "' is not supported (supported: segformer, upernet with a swin backbone, resnet)");
}

}  // namespace drt
