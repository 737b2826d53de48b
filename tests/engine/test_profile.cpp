// Profiler: every layer that does work is timed under the name the layer list gives it, for every
// model family; the reports (table, CSV, JSON, SVG) agree with the rows; paper MAC checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>

#include <drt/engine/profile.hpp>
#include <drt/models/any_model.hpp>

#include "test_support.hpp"

namespace {

/// What every profile must satisfy: the rows carry exactly the layer list's MACs and parameters,
/// names are unique, every row has a kind and a region, the groups add up to the totals and the
/// JSON keeps its documented fields.
void check_profile_consistent(const drt::profile_result& r, const std::vector<drt::layer_info>& layers) {
  double macs = 0;
  std::size_t params = 0;
  for (const auto& l : layers) {
    macs += l.macs;
    params += l.params;
  }
  CHECK(macs > 0);
  CHECK(r.total_macs() == doctest::Approx(macs).epsilon(1e-12));
  CHECK(r.total_params() == params);
  std::set<std::string> names, listed;
  for (const auto& l : layers) listed.insert(l.timing_name());
  const std::set<std::string> regions{r.region_names[0], r.region_names[1]};
  double seconds = 0;
  for (const auto& row : r.rows) {
    CHECK_MESSAGE(names.insert(row.name).second, "duplicate row " << row.name);
    CHECK_MESSAGE(!r.kind_name(row).empty(), row.name);
    if (row.listed) {
      CHECK_MESSAGE(listed.count(row.name) == 1, row.name);
      CHECK_MESSAGE(regions.count(r.region_name(row)) == 1, row.name << " in " << r.region_name(row));
      CHECK(r.kind_name(row) != "other");
    } else {
      CHECK_MESSAGE(row.macs == 0, row.name);
      CHECK(r.region_name(row) == "other");
    }
    CHECK(row.seconds >= 0);
    seconds += row.seconds;
  }
  CHECK(names.count(drt::profile_other_row()) == 1);
  for (const auto& groups : {r.by_kind(), r.by_region()}) {
    double gm = 0, gs = 0;
    std::size_t gp = 0;
    for (const auto& g : groups) {
      gm += g.macs;
      gs += g.seconds;
      gp += g.params;
    }
    CHECK(gm == doctest::Approx(macs).epsilon(1e-12));
    CHECK(gs == doctest::Approx(seconds).epsilon(1e-12));
    CHECK(gp == params);
  }
  // The rows' medians add up to the median forward, up to the spread between runs (wide: the
  // machine running the tests may be loaded, and a median of sums is not a sum of medians).
  if (r.total_seconds > 0) CHECK(seconds == doctest::Approx(r.total_seconds).epsilon(0.3));

  const auto j = r.to_json();
  for (const char* key : {"model", "family", "size", "height", "width", "batch", "path", "conv3x3", "total", "layers",
                          "by_kind", "by_region"})
    CHECK_MESSAGE(j.contains(key), key);
  CHECK(j["conv3x3"] == (drt::winograd_enabled() ? "winograd" + std::to_string(drt::winograd_default_tile())
                                                 : std::string("implicit")));
  CHECK(j["size"] == std::to_string(r.height) + "x" + std::to_string(r.width));
  CHECK(j["batch"] == r.batch);
  CHECK(j["path"] == r.path);
  CHECK(j["total"]["macs"].get<double>() == doctest::Approx(macs));
  CHECK(j["total"]["params"] == params);
  CHECK(j["total"]["time_ms"].get<double>() == doctest::Approx(r.total_seconds * 1e3));
  REQUIRE(j["layers"].size() == r.rows.size());
  double jm = 0;
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& l = j["layers"][i];
    for (const char* key : {"name", "kind", "region", "macs", "params", "time_ms"}) CHECK_MESSAGE(l.contains(key), key);
    CHECK(l["name"] == r.rows[i].name);
    jm += l["macs"].get<double>();
  }
  CHECK(jm == doctest::Approx(macs));
  double region_share = 0;
  for (const auto& [name, g] : j["by_region"].items()) region_share += g["mac_share"].get<double>();
  CHECK(region_share == doctest::Approx(1.0));

  const std::string csv = r.to_csv();
  CHECK(std::count(csv.begin(), csv.end(), '\n') == static_cast<std::ptrdiff_t>(r.rows.size() + 1));
  CHECK(r.to_csv(false).find("model,") == std::string::npos);
  const std::string table = r.to_table();
  CHECK(table.find("by region:") != std::string::npos);
  CHECK(table.find("  " + r.region_names[1]) != std::string::npos);
  const std::string top3 = r.to_table(3);
  CHECK(top3.find("top 3 of " + std::to_string(r.rows.size()) + " rows by time") != std::string::npos);
  const std::string svg = r.to_chart().to_svg();
  CHECK(svg.find("<svg") == 0);
  CHECK(svg.find("region: " + r.region_names[1]) != std::string::npos);
}

const drt::profile_row* find_row(const drt::profile_result& r, const std::string& name) {
  for (const auto& row : r.rows)
    if (row.name == name) return &row;
  return nullptr;
}

/// MAC bookkeeping only (no timing): the layer list joined into rows as profile_layers does.
drt::profile_result rows_only(const std::vector<drt::layer_info>& layers, const std::string& family) {
  auto r = drt::profile_layers(
      layers, [] {}, 1, 0);
  r.family = family;
  r.region_names = drt::profile_region_names(family);
  return r;
}

}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("profile: every layer scope is timed, joined with the layer list, and reported") {
    auto cfg = drt::standard_segformer_config("segformer-b0", 11);
    for (const bool fold : {true, false}) {
    INFO("folded: " << fold);
    drt::segformer_options build;
    build.fold_decoder = fold;
    const auto model = drt::segformer_model::with_random_weights(cfg, 3, build);
    const auto exec = model.compile(drt::segformer_path::parse("depths=2,1,2,2 fuse_in=640"));
    drt::tensor4 x = drt::tensor4::from_shape({2, 3, 96, 128});
    std::mt19937 g(5);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(g);
    const auto layers = model.layers(96, 128, exec, 2);
    std::size_t calls = 0;
    auto r = drt::profile_layers(
        layers, [&] { (void)model.forward(x, false, exec); }, 3, 1, [&](std::size_t, std::size_t) { ++calls; });
    CHECK(calls == 4);
    CHECK(r.repeat == 3);
    CHECK(r.total_macs() == doctest::Approx(drt::total_macs(layers)));
    std::set<std::string> names;
    for (const auto& row : r.rows) {
      names.insert(row.name);
      if (row.macs > 0) CHECK_MESSAGE(row.seconds > 0, row.name);
    }
    // Only the catch-all row may be absent from the layer list; block 2 of stage 2 is skipped.
    for (const auto& row : r.rows) {
      bool listed = row.name == drt::profile_other_row();
      for (const auto& l : layers) listed = listed || l.timing_name() == row.name;
      CHECK_MESSAGE(listed, row.name);
    }
    CHECK(names.count("Stage1 Block1 attention.qk_softmax_pv") == 1);
    CHECK(names.count("Stage2 Block2 attention.query") == 0);
    const auto kinds = r.by_kind();
    CHECK(kinds.size() >= 5);
    if (fold) {  // per-stage GEMMs of M_s, one upsample-sum-ReLU pass, no Conv2DFuse
      CHECK(names.count("DecodeLinearFuse0") == 0);  // fuse_in=640 drops stage 0's whole slice [768, 1024)
      CHECK(names.count("DecodeLinearFuse1") == 1);
      CHECK(names.count("DecodeLinearFuse3") == 1);
      // the upsample-sum and the classifier run per row block, timed as one row
      CHECK(names.count("DecodeFusedPass") == 1);
      CHECK(names.count("DecodeUpsampleSumReLU") == 0);
      CHECK(names.count("Conv2DPred") == 0);
      CHECK(names.count("Conv2DFuse") == 0);
      CHECK(r.to_csv().find("\"DecodeLinearFuse1\",linear,decoder") != std::string::npos);
    } else {
      CHECK(names.count("DecodeLinear0") == 0);  // fuse_in=640 drops stage 0's whole slice [768, 1024)
      CHECK(names.count("Conv2DFuse") == 1);
      CHECK(r.to_csv().find("\"Conv2DFuse\",conv,decoder") != std::string::npos);
    }
    check_profile_consistent(r, layers);
    }
  }

  TEST_CASE("profile_model: every family through one call (SegFormer, UPerNet + Swin, ResNet)") {
    drt::profile_options opt;
    opt.repeat = 3;
    std::size_t calls = 0;
    opt.progress = [&](std::size_t done, std::size_t total) {
      CHECK(done <= total);
      ++calls;
    };

    SUBCASE("segformer (standard architecture, odd size, a path)") {
      const auto model = drt::standard_model("segformer-b0", 7);
      opt.height = 72;
      opt.width = 100;
      opt.path = "depths=1,2,2,1 fuse_in=512";
      const auto r = drt::profile_model(model, opt);
      CHECK(calls == 4);
      CHECK(r.family == "segformer");
      CHECK(r.region_names[0] == "encoder");
      CHECK(r.path == "depths=1,2,2,1 fuse_in=512");
      const auto& m = std::get<drt::segformer_model>(model);
      const auto layers = m.layers(72, 100, m.compile(drt::segformer_path::parse(opt.path)));
      check_profile_consistent(r, layers);
      CHECK_THROWS_WITH_AS(drt::profile_model(model,
                                              [&] {
                                                auto o = opt;
                                                o.path = "bottleneck_in=64";
                                                return o;
                                              }()),
                           "path 'bottleneck_in=64': key 'bottleneck_in' does not apply to segformer (keys: depths, "
                           "skip, fuse_in, pred_in, linear0_in, propagate, mlp, heads, tokens, precision)",
                           drt::invalid_input);
    }

    SUBCASE("upernet + swin (fixture upernet-swin-mini, batch 2, size off the window grid, a path)") {
      const std::string dir = drt_test::shared_dir() + "/fixtures/upernet-swin-mini";
      if (!drt_test::require_file(dir + "/model.safetensors")) return;
      const auto model = drt::load_model(dir);
      opt.height = 72;
      opt.width = 100;
      opt.batch = 2;
      opt.path = "skip=1.1 bottleneck_in=100 pred_in=48";
      const auto r = drt::profile_model(model, opt);
      CHECK(r.family == "upernet");
      CHECK(r.region_names[0] == "backbone");
      CHECK(r.region_names[1] == "head");
      CHECK(r.batch == 2);
      CHECK(r.path == "skip=1.1 bottleneck_in=100 pred_in=48");
      const auto& m = std::get<drt::upernet_swin_model>(model);
      const auto exec = m.compile(drt::upernet_path::parse(opt.path));
      const auto layers = m.layers(72, 100, exec, 2);
      check_profile_consistent(r, layers);
      CHECK(r.total_macs() == doctest::Approx(2 * m.macs(72, 100, exec)));
      // Paper vocabulary, one row per timed scope; fused attention and patch merging are one row each.
      for (const char* name : {"PatchEmbed_Conv2D", "Stage1 Block1 attention", "Stage1 patch_merging", "bottleneck",
                               "lateral_convs.0", "fpn_convs.0", "fpn_convs.1", "fpn_bottleneck", "classifier"}) {
        const auto* row = find_row(r, name);
        REQUIRE_MESSAGE(row != nullptr, name);
        CHECK_MESSAGE(row->seconds > 0, name);
      }
      CHECK(find_row(r, "Stage2 Block2 attention") == nullptr);  // skipped block: no row, no time
      CHECK(find_row(r, "fpn_convs.2") == nullptr);              // bottleneck_in=100 keeps levels 0 and 1 (64 + 36)
      CHECK(r.region_name(*find_row(r, "fpn_bottleneck")) == "head");
      CHECK(r.region_name(*find_row(r, "Stage1 Block1 attention")) == "backbone");
      // qkv, qk, softmax, pv and output run as one timed pass: one row of kind "attention".
      CHECK(r.kind_name(*find_row(r, "Stage1 Block1 attention")) == "attention");
      CHECK(r.kind_name(*find_row(r, "Stage1 patch_merging")) == "linear");
      CHECK(r.to_csv().find("\"fpn_bottleneck\",conv,head") != std::string::npos);
      CHECK(r.to_json()["by_region"].contains("backbone"));
    }

    SUBCASE("resnet (fixture resnet50-narrow, a path)") {
      const std::string dir = drt_test::shared_dir() + "/fixtures/resnet50-narrow";
      if (!drt_test::require_file(dir + "/model.safetensors")) return;
      const auto model = drt::load_model(dir);
      opt.height = 90;
      opt.width = 120;
      opt.path = "depths=2,3,4,2 expand=0.5";
      const auto r = drt::profile_model(model, opt);
      CHECK(r.family == "resnet");
      CHECK(r.path == "depths=2,3,4,2 expand=0.5");
      const auto& m = std::get<drt::resnet_model>(model);
      const auto exec = m.compile(drt::resnet_path::parse(opt.path));
      check_profile_consistent(r, m.layers(90, 120, exec));
      CHECK(r.total_macs() == doctest::Approx(m.total_macs(90, 120, exec)));
      for (const char* name :
           {"stem.conv", "stem.pool", "stage1.block1.conv1", "stage4.block2.conv3", "pool", "classifier"})
        REQUIRE_MESSAGE(find_row(r, name) != nullptr, name);
      CHECK(find_row(r, "stage4.block3.conv1") == nullptr);  // depths=...,2
      CHECK(r.region_name(*find_row(r, "classifier")) == "head");
      CHECK(r.region_name(*find_row(r, "stem.conv")) == "backbone");
      const auto regions = r.by_region();
      REQUIRE(regions.size() == 3);
      CHECK(regions[0].name == "backbone");
      CHECK(regions[1].name == "head");
      CHECK(regions[2].name == "other");
    }
  }

  TEST_CASE("profile MAC checks against the paper (Section II)") {
    // Only the rows' MAC bookkeeping (layers joined by timing scope); the raw layer lists are checked
    // in tests/dynamic (SegFormer-B2 62.3 G, Swin-T + UPerNet 236.9 G, ResNet-50 640x480 25.0 G).
    SUBCASE("segformer-b2 512x512: 68 % of MACs in convolutions; 1024x2048 with 19 classes: 705 G") {
      drt::segformer_options published;  // the paper counts the decoder as published
      published.fold_decoder = false;
      const auto b2 =
          drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150), 0, published);
      const auto r = rows_only(b2.layers(512, 512), "segformer");
      CHECK(r.conv_mac_share() == doctest::Approx(0.68).epsilon(0.02));  // "68% of MACs in convolutions"
      CHECK(r.mac_share(find_row(r, "Conv2DFuse")->macs) == doctest::Approx(0.62).epsilon(0.01));
      const auto city =
          drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 19), 0, published);
      const double macs = drt::total_macs(city.layers(1024, 2048));
      CHECK(macs > 703e9);
      CHECK(macs < 705e9);
    }
    SUBCASE("swin-t-upernet 512x512: fpn_bottleneck 65 %, convolutions 89 %, nearly all in the head") {
      const auto model = drt::standard_model("swin-t-upernet");
      const auto& m = std::get<drt::upernet_swin_model>(model);
      const auto r = rows_only(m.layers(512, 512), "upernet");
      CHECK(r.total_macs() == doctest::Approx(236.9e9).epsilon(0.005));
      CHECK(r.mac_share(find_row(r, "fpn_bottleneck")->macs) == doctest::Approx(0.65).epsilon(0.01));
      CHECK(r.conv_mac_share() == doctest::Approx(0.89).epsilon(0.01));
      const auto regions = r.by_region();
      CHECK(regions[0].name == "backbone");
      CHECK(r.mac_share(regions[1].macs) == doctest::Approx(0.89).epsilon(0.02));  // the head is the convolutions
    }
    SUBCASE("resnet50 640x480: 25.0 G, all but the classifier in the backbone") {
      const auto model = drt::standard_model("resnet50");
      const auto& m = std::get<drt::resnet_model>(model);
      const auto r = rows_only(m.layers(640, 480), "resnet");
      CHECK(r.total_macs() == doctest::Approx(25.03e9).epsilon(0.002));
      CHECK(r.conv_mac_share() > 0.999);
      CHECK(r.by_region()[1].macs == doctest::Approx(2048.0 * 1000));  // the classifier
    }
  }
}
