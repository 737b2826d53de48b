// The layer list (models/layer_info.hpp) is the one description of a model's graph that profiles,
// the accelerator model and the sweep's latency model read. Two properties keep it true to what runs:
// - every layer's id is a module of the checkpoint (a layer with weights names a module with
//   tensors in model.safetensors), for every family;
// - the scopes `forward` times are exactly the timing names of `layers()`, under the full path and
//   under paths that skip blocks and keep channel prefixes (no scope unlisted, no layer never run).
#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include <drt/core/profiler.hpp>
#include <drt/io/safetensors.hpp>
#include <drt/models/any_model.hpp>
#include <drt/models/family.hpp>

#include "test_support.hpp"

namespace {

/// True when some tensor of the checkpoint lives under `module` (optionally below `prefix`).
bool has_module(const std::vector<std::string>& names, const std::string& module, const std::string& prefix) {
  for (const auto& n : names)
    for (const std::string& full : {module + ".", prefix + module + "."})
      if (n.compare(0, full.size(), full) == 0) return true;
  return false;
}

template <class Model>
void check_walk(const Model& m, const std::string& checkpoint, const std::string& prefix,
                const std::vector<std::string>& paths, std::size_t h, std::size_t w) {
  using family = drt::model_family<Model>;
  const drt::safetensors_file st(checkpoint);
  const auto names = st.names();
  const auto x = drt_test::random_image(1, family::input_channels(m), h, w, 11);
  for (const auto& text : paths) {
    INFO(family::name << " path '" << text << "'");
    const auto exec = family::compile(m, family::parse(text));
    const auto layers = family::layers(m, h, w, exec);
    REQUIRE(!layers.empty());
    std::set<std::string> listed;
    for (const auto& l : layers) {
      CHECK_MESSAGE(!l.module.empty(), l.name);
      if (l.params > 0) CHECK_MESSAGE(has_module(names, l.module, prefix), l.name << " -> " << l.module);
      listed.insert(l.timing_name());
    }
    drt::layer_profiler prof;
    {
      drt::profiling_session session(prof);
      (void)family::logits(m, x, exec);
    }
    const std::set<std::string> timed(prof.names().begin(), prof.names().end());
    for (const auto& t : timed) CHECK_MESSAGE(listed.count(t) == 1, "timed but not listed: " << t);
    for (const auto& l : listed) CHECK_MESSAGE(timed.count(l) == 1, "listed but never run: " << l);
  }
}

}  // namespace

TEST_SUITE("models") {
  TEST_CASE("layer list: checkpoint module ids, and exactly the scopes forward runs (every family)") {
    const std::string fx = drt_test::shared_dir() + "/fixtures/";
    SUBCASE("segformer, folded and unfolded decoder") {
      const std::string dir = fx + "segformer-b0";
      if (!drt_test::require_file(dir + "/model.safetensors")) return;
      for (const bool fold : {true, false}) {
        INFO("folded: " << fold);
        drt::segformer_options build;
        build.fold_decoder = fold;
        const auto model = std::get<drt::segformer_model>(drt::load_model(dir, {}, build));
        check_walk(model, dir + "/model.safetensors", "",
                   {"full", "depths=1,1,1,1", "skip=2.1 fuse_in=640 pred_in=128", "linear0_in=16"}, 64, 96);
      }
    }
    SUBCASE("upernet + swin") {
      const std::string dir = fx + "upernet-swin-mini";
      if (!drt_test::require_file(dir + "/model.safetensors")) return;
      const auto model = std::get<drt::upernet_swin_model>(drt::load_model(dir));
      check_walk(model, dir + "/model.safetensors", "",
                 {"full", "skip=1.1", "bottleneck_in=100 pred_in=48", "fpn_in=32"}, 72, 100);
    }
    SUBCASE("resnet (module ids without the checkpoint's resnet. prefix)") {
      const std::string dir = fx + "resnet50-narrow";
      if (!drt_test::require_file(dir + "/model.safetensors")) return;
      const auto model = std::get<drt::resnet_model>(drt::load_model(dir));
      check_walk(model, dir + "/model.safetensors", "resnet.", {"full", "depths=2,3,4,2 expand=0.5"}, 90, 120);
      const auto layers = model.layers(90, 120);
      CHECK(layers.front().module == "embedder.embedder");
      CHECK(layers.back().module == "classifier.1");
    }
  }
}
