// Sharded sweeps (issue 22): every encoder group in exactly one shard whatever the count; the
// shards of an accuracy-only sweep of the vendored B0 join into the single run's table entry for
// entry; parts of different sweeps, missing and repeated shards are refused by name; a latency-only
// sweep turns the accuracy table into a lookup table. Generic sweep: a shard without the fidelity
// reference's group computes the reference first.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <drt/engine/sweep.hpp>

#include "test_support.hpp"

namespace {

/// Entry for entry: same model, path, MACs and accuracy, in the same order.
void check_same_entries(const drt::lookup_table& a, const drt::lookup_table& b) {
  REQUIRE(a.entries.size() == b.entries.size());
  for (std::size_t i = 0; i < a.entries.size(); ++i) {
    const auto &x = a.entries[i], &y = b.entries[i];
    INFO(i << ": " << x.label());
    CHECK(x.model == y.model);
    CHECK(x.path == y.path);
    CHECK(x.macs == y.macs);
    CHECK(x.miou == y.miou);
    CHECK(x.miou_normalized == y.miou_normalized);
    CHECK((x.pixel_acc == y.pixel_acc || (std::isnan(x.pixel_acc) && std::isnan(y.pixel_acc))));
    CHECK((x.kl_divergence == y.kl_divergence || (std::isnan(x.kl_divergence) && std::isnan(y.kl_divergence))));
  }
}

drt::sweep_options b0_accuracy_options() {
  drt::sweep_options o;
  o.data_dir = drt_test::source_dir() + "/data";
  o.ignore_index = 11;
  o.image_limit = 1;
  o.height = 128;
  o.width = 160;
  o.depths = {{2, 2, 2, 2}, {1, 2, 2, 2}, {2, 2, 1, 2}};
  o.fuse_in = {512, 1024};
  o.pred_in = {128, 256};
  o.phases = drt::sweep_options::phase_set::accuracy;
  o.threads = 2;
  return o;
}

}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("sweep_shard: every group in exactly one shard, whatever the count; I/N parsed or refused") {
    for (std::size_t groups : {1, 5, 16, 97})
      for (std::size_t n = 1; n <= 9; ++n) {
        std::vector<int> owners(groups, 0);
        std::vector<std::size_t> sizes(n, 0);
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t g = 0; g < groups; ++g)
            if (drt::sweep_shard{i, n}.holds(g)) {
              ++owners[g];
              ++sizes[i];
            }
        for (std::size_t g = 0; g < groups; ++g) CHECK(owners[g] == 1);
        for (std::size_t i = 0; i < n; ++i) CHECK(sizes[i] * n <= groups + n);  // round robin: balanced within one
      }
    const auto s = drt::sweep_shard::parse("3/8");
    CHECK(s.index == 3);
    CHECK(s.count == 8);
    CHECK(s.to_string() == "3/8");
    for (const char* bad : {"8/8", "1", "a/2", "1/0", "-1/2", "1/2/3", "/2"})
      CHECK_THROWS_WITH_AS(drt::sweep_shard::parse(bad),
                           (std::string("shard '") + bad + "': expected I/N with 0 <= I < N, e.g. 0/4 (shards count from 0)")
                               .c_str(),
                           drt::invalid_input);
    drt::sweep_path_set set;
    set.models = {"a", "b"};
    set.groups = {{0, "full", {"full", "pred_in=128"}}, {0, "depths=1,2", {"depths=1,2"}}, {1, "full", {"full"}}};
    CHECK(set.paths() == 4);
    CHECK(set.first_group(1) == 2);
    CHECK(set.groups_of({1, 2}) == std::vector<std::size_t>{1});
    auto other = set;
    std::swap(other.groups[0].paths[0], other.groups[0].paths[1]);  // the order is part of the set
    CHECK(other.fingerprint() != set.fingerprint());
  }

  TEST_CASE("sweep: B0 accuracy in two shards joins into the single run's table; latency-only finishes it") {
    const std::string model_dir = drt_test::source_dir() + "/data/models/segformer-b0-camvid";
    if (!drt_test::require_file(model_dir + "/model.safetensors")) return;
    auto o = b0_accuracy_options();
    const auto single = drt::sweep({model_dir}, o).table;
    REQUIRE(single.entries.size() == 12);  // 3 depth vectors x 2 fuse_in x 2 pred_in
    CHECK(single.is_accuracy_table());
    CHECK(single.info["sweep_set"]["paths"] == 12);
    CHECK(single.info["sweep_set"]["groups"] == 3);
    CHECK(single.info["sweep_set"]["channel_order"] == "weight");  // the default channel order (dynamic/channel_order.hpp)
    CHECK(single.info["sweep_set"]["int8_ranges"].is_null());     // each int8 call's own range
    // how the model was built, per model (engine/lut_build.hpp)
    const auto& build = single.info["builds"]["segformer-b0-camvid"];
    CHECK(build["channel_order"]["method"] == "weight");
    CHECK(build["int8_ranges"].is_null());
    CHECK(single.info["sweep_set"]["data"]["images"] == 1);
    CHECK(!single.info.contains("shard"));
    CHECK(single.entries[0].path == "fuse_in=512 pred_in=128");  // enumeration order, not promise
    CHECK(single.entries[3].path == "full");
    CHECK(single.entries[3].miou_normalized == 1.0);
    CHECK(single.entries[4].path == "depths=1,2,2,2 fuse_in=512 pred_in=128");
    for (const auto& e : single.entries) {
      CHECK(e.miou > 0);
      CHECK(e.macs > 0);
      CHECK(e.latency_ms == 0);  // no latency in an accuracy table
    }
    std::vector<drt::lookup_table> parts;
    for (std::size_t i = 0; i < 2; ++i) {
      o.shard = {i, 2};
      parts.push_back(drt::sweep({model_dir}, o).table);
      parts.back().source = "lut 'shard" + std::to_string(i) + ".json'";
    }
    CHECK(parts[0].entries.size() == 8);  // groups 0 and 2
    CHECK(parts[1].entries.size() == 4);  // group 1
    CHECK(parts[0].info["shard"]["groups"] == nlohmann::json::array({0, 2}));
    CHECK(parts[1].info["shard"]["group_paths"] == nlohmann::json::array({4}));
    CHECK(parts[1].entries[0].miou_normalized == 0);  // its shard has no reference: normalized at the merge
    // the file round trip keeps an accuracy table one, without latency fields
    const auto file = (std::filesystem::temp_directory_path() / "drt_shard1.json").string();
    drt::save_lut(parts[1], file);
    const auto back = drt::load_table(file);
    CHECK(back.is_accuracy_table());
    CHECK(back.to_json() == parts[1].to_json());
    CHECK(back.to_json()["entries"][0].count("latency_ms") == 0);
    CHECK_THROWS_WITH_AS(drt::load_lut(file),
                         ("lut '" + file + "' is an accuracy table (no latencies): measure them on this machine with "
                          "drt sweep --latency-only --accuracy " + file).c_str(),
                         drt::invalid_input);
    // joined in either order, the merge is the single run entry for entry
    const auto merged = drt::merge_luts({parts[1], parts[0]}, "drt lut merge");
    CHECK(merged.is_accuracy_table());
    CHECK(!merged.info.contains("shard"));
    CHECK(merged.info["sweep_set"] == single.info["sweep_set"]);
    check_same_entries(merged, single);
    // refusals that name the shard or what differs
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0]}, "drt lut merge"), "drt lut merge: shard 1/2 is missing",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], parts[1], parts[0]}, "drt lut merge"),
                         "drt lut merge: shard 0/2 is given twice (lut 'shard0.json' and lut 'shard0.json')",
                         drt::invalid_input);
    auto other_order = parts[1];
    other_order.info["sweep_set"]["channel_order"] = "calibrated-0123abcd";
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], other_order}, "drt lut merge"),
                         "drt lut merge: lut 'shard1.json' and lut 'shard0.json' are not parts of one sweep: they "
                         "differ in channel ordering (\"calibrated-0123abcd\" vs \"weight\")",
                         drt::invalid_input);
    auto other_ranges = parts[1];
    other_ranges.info["sweep_set"]["int8_ranges"] = {{"method", "minmax"}};
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], other_ranges}, "drt lut merge"),
                         doctest::Contains("are not parts of one sweep: they differ in int8 ranges"), drt::invalid_input);
    auto other_model = parts[1];
    other_model.info["sweep_set"]["models"][0]["checkpoint"] = "fnv1a64:0000000000000000";
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], other_model}, "m"),
                         doctest::Contains("are not parts of one sweep: they differ in models"), drt::invalid_input);
    auto other_data = parts[1];
    other_data.info["sweep_set"]["data"]["path"] = "/elsewhere/camvid";  // another mount of the same data: fine
    CHECK(drt::merge_luts({parts[0], other_data}, "m").entries.size() == 12);
    other_data.info["sweep_set"]["data"]["images"] = 2;
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], other_data}, "m"),
                         doctest::Contains("are not parts of one sweep: they differ in data"), drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], single}, "m"),
                         "m: lut 'shard0.json' is a shard of an accuracy-only sweep but lookup table is not: shards "
                         "are joined with the other shards of their sweep only",
                         drt::invalid_input);
    // shards of three do not join with shards of two
    o.shard = {2, 3};
    const auto third = drt::sweep({model_dir}, o).table;
    CHECK(third.entries.size() == 4);
    CHECK_THROWS_WITH_AS(drt::merge_luts({parts[0], third}, "m"),
                         "m: lookup table is shard 2/3 but lut 'shard0.json' is one of 2 shards", drt::invalid_input);
    // more shards than encoder groups
    o.shard = {0, 4};
    CHECK_THROWS_WITH_AS(drt::sweep({model_dir}, o),
                         "sweep: shard 0/4: the path set has 3 encoder groups, so at most 3 shards", drt::invalid_input);

    // latency only: the paths and accuracy of the merged table, latency measured here
    drt::sweep_options lo;
    lo.phases = drt::sweep_options::phase_set::latency;
    lo.accuracy_table = std::make_shared<const drt::lookup_table>(merged);
    lo.warmup = 0;
    lo.repeats = 1;
    lo.decoder_repeats = 1;
    lo.confirm = 2;
    lo.threads = 2;
    const auto r = drt::sweep({model_dir}, lo);
    const auto& lut = r.table;
    CHECK(!lut.is_accuracy_table());
    CHECK(r.report["stopped_by"] == "the paths of the accuracy table");
    CHECK(lut.input_height() == 128);
    CHECK(lut.input_width() == 160);
    REQUIRE(lut.entries.size() == 12);
    std::size_t timed = 0;
    for (std::size_t i = 0; i < 12; ++i) {
      INFO(lut.entries[i].label());
      CHECK(lut.entries[i].path == single.entries[i].path);
      CHECK(lut.entries[i].miou == single.entries[i].miou);
      CHECK(lut.entries[i].latency_ms > 0);
      CHECK(lut.entries[i].latency_source == "predicted");
      timed += std::isfinite(lut.entries[i].measured_latency_ms) ? 1 : 0;
    }
    CHECK(timed == 2);
    CHECK(!lut.front().empty());
    CHECK(lut.info["sweep_set"]["fingerprint"] == single.info["sweep_set"]["fingerprint"]);
    CHECK(lut.info["accuracy_from"]["source"] == "drt lut merge");
    CHECK(lut.info["builds"] == single.info["builds"]);  // the latency sweep loads the models as the accuracy was measured
    // a shard, or a table of other paths, is refused
    lo.accuracy_table = std::make_shared<const drt::lookup_table>(parts[0]);
    CHECK_THROWS_WITH_AS(drt::sweep({model_dir}, lo),
                         "lut 'shard0.json' is one shard of a sweep: join every shard with drt lut merge first",
                         drt::invalid_input);
    auto fewer = merged;
    fewer.info["sweep_set"]["options"]["depths"] = nlohmann::json::array({{2, 2, 2, 2}});
    lo.accuracy_table = std::make_shared<const drt::lookup_table>(fewer);
    CHECK_THROWS_WITH_AS(drt::sweep({model_dir}, lo),
                         doctest::Contains("(12 paths) but these models and options give"), drt::invalid_input);
  }

  TEST_CASE("sweep_family: a fidelity shard without the reference's group computes the reference first") {
    const std::string dir = drt_test::shared_dir() + "/fixtures/resnet50-narrow";
    if (!drt_test::require_file(dir + "/model.safetensors")) return;
    drt::sweep_options o;
    o.data_dir = drt_test::source_dir() + "/data/images";  // no labels: top-1 agreement with the full path
    o.height = 64;
    o.width = 64;
    o.depth_reduce = 0;
    o.knob_grid = {{"expand", {1.0, 0.75, 0.5}}};
    o.phases = drt::sweep_options::phase_set::accuracy;
    const auto single = drt::sweep({dir}, o).table;
    REQUIRE(single.entries.size() == 3);  // one path per group (ResNet: the encoder is the whole path)
    CHECK(single.info["sweep_set"]["sweep"] == "family");
    CHECK(single.entries[0].path == "full");
    CHECK(single.entries[0].miou == 1.0);
    std::vector<drt::lookup_table> parts;
    for (std::size_t i = 0; i < 3; ++i) {
      o.shard = {i, 3};
      parts.push_back(drt::sweep({dir}, o).table);
      REQUIRE(parts.back().entries.size() == 1);
    }
    const auto merged = drt::merge_luts(parts, "m");
    check_same_entries(merged, single);
    CHECK(merged.entries[2].kl_divergence > 0);
  }
}
