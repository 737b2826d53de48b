// The generic sweep (sweep_family.hpp): path enumeration from the family's knob grid, the per-layer
// latency model, and miniature sweeps of Swin + UPerNet and ResNet checkpoints with fidelity
// accuracy checked against the models run by hand; merging tables of two families (lut.hpp).
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <tuple>
#include <vector>

#include <drt/engine/sweep.hpp>

#include "test_support.hpp"

namespace {
drt::tensor4 input_of(const std::string& file, std::size_t h, std::size_t w) {
  return drt::normalize_imagenet(drt::resize_image(drt::load_image(file), h, w));
}
/// A layer for the latency model's tests: `macs` of work, in `p`, timed as `timed_as` (or itself),
/// computed as `variant`.
drt::layer_info model_layer(const std::string& name, double macs, drt::precision p = drt::precision::fp32,
                            const std::string& timed_as = "", const std::string& variant = "") {
  drt::layer_info l;
  l.name = name;
  l.macs = macs;
  l.k = 8;
  l.p = 10;
  l.arithmetic = p;
  l.timed_as = timed_as;
  l.variant = variant;
  return l;
}
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("sweep_paths: depth vectors x the knob grid, full path first, no repeats") {
    const std::string dir = drt_test::shared_dir() + "/fixtures/upernet-swin-mini";
    if (!drt_test::require_file(dir + "/model.safetensors")) return;
    const auto m = drt::upernet_swin_model::from_dir(dir);
    drt::sweep_options o;
    o.depths = {{2, 2, 2, 2}, {2, 2, 1, 2}};
    o.knob_grid = {{"bottleneck_in", {256, 128, 64}}, {"pred_in", {64, 32}}};
    const auto paths = drt::sweep_paths(m, o);
    REQUIRE(paths.size() == 12);
    CHECK(paths[0].to_string() == "full");
    CHECK(paths[1].to_string() == "bottleneck_in=128");
    CHECK(paths[3].to_string() == "pred_in=32");
    CHECK(paths[6].to_string() == "depths=2,2,1,2");
    CHECK(paths[11].to_string() == "depths=2,2,1,2 bottleneck_in=64 pred_in=32");
    // the default grid: bottleneck_in levels of the 4 x 64 inputs, pred_in levels of 64
    const auto grid = drt::sweep_knob_grid(m, 16);
    REQUIRE(grid.size() == 2);
    CHECK(grid[0].name == "bottleneck_in");
    CHECK(grid[0].full == 256);
    CHECK(grid[0].values == std::vector<double>{64, 128, 192, 256});
    CHECK(grid[1].values == std::vector<double>{16, 48, 64});
    o.knob_grid = {{"fuse_in", {64}}};
    CHECK_THROWS_WITH_AS(drt::sweep_paths(m, o),
                         "path: key 'fuse_in' does not apply to upernet (keys: depths, skip, bottleneck_in, fpn_out, "
                         "fpn_in, pred_in, mlp, heads, precision)",
                         drt::invalid_input);
    o.knob_grid = {{"bottleneck_in", {512}}};
    CHECK_THROWS_WITH_AS(drt::sweep_paths(m, o), "path 'bottleneck_in=512': bottleneck_in=512 must be between 1 and 256",
                         drt::invalid_input);
  }

  TEST_CASE("layer_latency_model: layer times scaled by work, plus the unscoped time") {
    auto layer = [](const std::string& name, double macs, std::size_t k) {
      drt::layer_info l;
      l.name = name;
      l.macs = macs;
      l.k = k;
      l.p = 10;
      return l;
    };
    const std::vector<drt::layer_info> full = {layer("a", 100, 8), layer("b", 300, 8), layer("norm", 0, 8)};
    drt::layer_timings t;
    t.layer_ms = {{"a", 2.0}, {"b", 6.0}, {"norm", 1.0}};
    t.total = drt::timing_stats::of({10.0, 10.0, 12.0});
    const drt::layer_latency_model lm(full, t);
    CHECK(lm.overhead_ms() == doctest::Approx(1.0));
    CHECK(lm.predict_ms(full) == doctest::Approx(10.0));
    // b at a third of its MACs, the norm on half the channels, a skipped
    CHECK(lm.predict_ms({layer("b", 100, 8), layer("norm", 0, 4)}) == doctest::Approx(2.0 + 0.5 + 1.0));
    CHECK(lm.p95_ratio() == doctest::Approx(1.2));
  }

  TEST_CASE("sweep_paths: the full model's value of an added knob comes first (fp32 before int8, mlp 1)") {
    const auto m = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b0", 4), 1);
    drt::sweep_options o;
    o.depths = {{2, 2, 2, 2}};
    o.knob_grid = {{"fuse_in", {1024}}, {"pred_in", {256}}, {"precision", {2, 1, 0}}, {"mlp", {0.5, 1}}};
    const auto paths = drt::sweep_paths(m, o);
    REQUIRE(paths.size() == 6);
    CHECK(paths[0].to_string() == "full");  // the sweep's latency model profiles the first path
    CHECK(paths[1].to_string() == "mlp=0.5");
    CHECK(paths[2].to_string() == "precision=int8");
    CHECK(paths[3].to_string() == "mlp=0.5 precision=int8");
    CHECK(paths[4].to_string() == "precision=bf16");
  }

  TEST_CASE("layer_latency_model: scopes in a low precision are predicted from the full path run in it") {
    auto layer = [](const std::string& name, double macs, drt::precision p, const std::string& timed_as = "") {
      return model_layer(name, macs, p, timed_as);
    };
    const auto f32 = drt::precision::fp32, i8 = drt::precision::int8;
    const std::vector<drt::layer_info> full = {layer("a", 100, f32), layer("b", 300, f32), layer("norm", 0, f32)};
    drt::layer_timings t;
    t.layer_ms = {{"a", 2.0}, {"b", 6.0}, {"norm", 1.0}};
    t.total = drt::timing_stats::of({9.0, 9.0, 9.0});
    drt::layer_latency_model lm(full, t);
    // the full path in int8: the GEMMs a and b faster; the norm is fp32 in every path
    drt::layer_timings t8;
    t8.layer_ms = {{"a", 0.5}, {"b", 2.0}, {"norm", 1.5}};
    lm.add_reference({layer("a", 100, i8), layer("b", 300, i8), layer("norm", 0, f32)}, t8);
    CHECK(lm.predict_ms(full) == doctest::Approx(9.0));  // fp32 paths unchanged
    CHECK(lm.predict_ms({layer("a", 100, i8), layer("b", 150, i8), layer("norm", 0, f32)}) ==
          doctest::Approx(0.5 + 1.0 + 1.0));  // the norm from the fp32 profile
    CHECK(lm.predict_ms({layer("a", 100, f32), layer("b", 300, i8), layer("norm", 0, f32)}) ==
          doctest::Approx(2.0 + 2.0 + 1.0));
    // a fused scope holding an int8 GEMM is keyed as int8 as a whole
    const auto w = drt::layer_latency_model::work_by_scope({layer("g", 10, i8, "pass"), layer("up", 0, f32, "pass")});
    REQUIRE(w.size() == 1);
    CHECK(w.begin()->first == "pass@int8");
  }

  TEST_CASE("layer_latency_model: scopes in a variant (merged tokens) are predicted from a reference run in it") {
    auto layer = [](const std::string& name, double macs, drt::precision p, const std::string& variant) {
      return model_layer(name, macs, p, "", variant);
    };
    const auto f32 = drt::precision::fp32, i8 = drt::precision::int8;
    const std::vector<drt::layer_info> full = {layer("mlp", 400, f32, ""), layer("norm", 0, f32, "")};
    drt::layer_timings t;
    t.layer_ms = {{"mlp", 8.0}, {"norm", 1.0}};
    t.total = drt::timing_stats::of({9.0, 9.0, 9.0});
    drt::layer_latency_model lm(full, t);
    // tokens=0.5 halves the mlp's MACs but it runs at 5 ms, not 4 (gathers), and adds a merge scope
    drt::layer_timings tm;
    tm.layer_ms = {{"mlp", 5.0}, {"norm", 1.0}, {"merge", 0.5}};
    lm.add_reference({layer("mlp", 200, f32, "tokens=0.5"), layer("merge", 0, f32, "tokens=0.5"), layer("norm", 0, f32, "")},
                     tm);
    drt::layer_timings tm8;  // and in int8
    tm8.layer_ms = {{"mlp", 3.0}, {"norm", 1.0}, {"merge", 0.5}};
    lm.add_reference({layer("mlp", 200, i8, "tokens=0.5"), layer("merge", 0, f32, "tokens=0.5"), layer("norm", 0, f32, "")},
                     tm8);
    const auto w = drt::layer_latency_model::work_by_scope({layer("mlp", 200, i8, "tokens=0.5")});
    REQUIRE(w.size() == 1);
    CHECK(w.begin()->first == "mlp@int8#tokens=0.5");
    CHECK(lm.predict_ms(full) == doctest::Approx(9.0));
    // the merged mlp at half its width: half the reference's time, plus the merge and the norm
    CHECK(lm.predict_ms({layer("mlp", 100, f32, "tokens=0.5"), layer("merge", 0, f32, "tokens=0.5"),
                         layer("norm", 0, f32, "")}) == doctest::Approx(2.5 + 0.5 + 1.0));
    CHECK(lm.predict_ms({layer("mlp", 200, i8, "tokens=0.5"), layer("merge", 0, f32, "tokens=0.5"),
                         layer("norm", 0, f32, "")}) == doctest::Approx(3.0 + 0.5 + 1.0));
    // a variant no reference ran: from the plain full path's time, scaled by work
    CHECK(lm.predict_ms({layer("mlp", 200, f32, "tokens=0.6"), layer("norm", 0, f32, "")}) == doctest::Approx(4.0 + 1.0));
  }

  TEST_CASE("sweep_family: Swin + UPerNet, fidelity to the full model, checked by hand") {
    const std::string dir = drt_test::shared_dir() + "/fixtures/upernet-swin-mini";
    if (!drt_test::require_file(dir + "/model.safetensors")) return;
    drt::sweep_options o;
    o.data_dir = drt_test::source_dir() + "/data";
    o.fidelity = true;  // the data's labels are CamVid's; the mini model has 19 classes
    o.height = 64;
    o.width = 96;
    o.depths = {{2, 2, 2, 2}, {2, 2, 1, 2}};
    o.knob_grid = {{"bottleneck_in", {256, 128}}, {"pred_in", {64}}};
    o.warmup = 0;
    o.repeats = 1;
    o.confirm = 2;
    o.budget_minutes = 10;
    const auto r = drt::sweep({dir}, o);
    const auto& t = r.table;
    REQUIRE(t.entries.size() == 4);
    CHECK(r.report["family"] == "upernet");
    CHECK(t.info["dataset"]["accuracy"] == "pixel_agreement");
    const auto m = drt::upernet_swin_model::from_dir(dir);
    const std::vector<std::string> images = {o.data_dir + "/images/0016E5_07959.png",
                                             o.data_dir + "/images/0016E5_07961.png"};
    double full_macs = 0;
    for (const auto& e : t.entries) {
      INFO(e.path);
      CHECK(e.family == "upernet");
      CHECK(e.latency_ms > 0);
      CHECK(std::isnan(e.pixel_acc));
      if (e.path == "full") {
        CHECK(e.miou == 1.0);  // the full path agrees with itself everywhere
        full_macs = e.macs;
        continue;
      }
      // agreement by hand: argmax of this path vs the full path, per image, averaged
      const auto path = drt::upernet_path::parse(e.path);
      double agree = 0;
      for (const auto& img : images) {
        const auto x = input_of(img, 64, 96);
        const auto a = drt::upsample_argmax(m.forward(x, path).logits, 64, 96);
        const auto b = drt::upsample_argmax(m.forward(x, drt::upernet_path{}).logits, 64, 96);
        std::size_t same = 0;
        for (std::size_t q = 0; q < a.size(); ++q) same += a.data()[q] == b.data()[q];
        agree += double(same) / double(a.size());
      }
      CHECK(e.miou == doctest::Approx(agree / 2).epsilon(1e-12));
      CHECK(e.miou < 1.0);
    }
    for (const auto& e : t.entries)
      if (e.path != "full") CHECK(e.macs < full_macs);
    // the table survives a save/load with its family
    const auto file = (std::filesystem::temp_directory_path() / "drt_swin_sweep.json").string();
    drt::save_lut(t, file);
    const auto back = drt::load_lut(file);
    CHECK(back.entries[1].family == "upernet");
    CHECK(back.entries[1].path == t.entries[1].path);
  }

  TEST_CASE("sweep_family: ResNet, top-1 agreement and KL divergence from the full model") {
    const std::string dir = drt_test::shared_dir() + "/fixtures/resnet50-narrow";
    if (!drt_test::require_file(dir + "/model.safetensors")) return;
    drt::sweep_options o;
    o.data_dir = drt_test::source_dir() + "/data/images";  // no labels: fidelity
    o.height = 64;
    o.width = 64;
    o.depth_reduce = 0;  // full depths only
    o.knob_grid = {{"expand", {1.0, 0.5}}};
    o.warmup = 0;
    o.repeats = 1;
    o.confirm = 1;
    const auto r = drt::sweep({dir}, o);
    const auto& t = r.table;
    REQUIRE(t.entries.size() == 2);
    CHECK(t.info["dataset"]["accuracy"] == "top1_agreement");
    const auto m = drt::resnet_model::from_dir(dir);
    for (const auto& e : t.entries) {
      INFO(e.path);
      CHECK(e.family == "resnet");
      if (e.path == "full") {
        CHECK(e.miou == 1.0);
        CHECK(e.kl_divergence == doctest::Approx(0.0).epsilon(1e-12));
        continue;
      }
      CHECK(e.path == "expand=0.5");
      double agree = 0, kl = 0;
      for (const auto& img : {o.data_dir + "/0016E5_07959.png", o.data_dir + "/0016E5_07961.png"}) {
        const auto x = input_of(img, 64, 64);
        const auto a = m.forward(x, drt::resnet_path::parse(e.path)).logits;
        const auto b = m.forward(x, drt::resnet_path{}).logits;
        const std::size_t k = a.shape(1);
        agree += drt::detail::argmax_of(a.data(), k) == drt::detail::argmax_of(b.data(), k) ? 1 : 0;
        kl += drt::detail::kl_logits(b.data(), a.data(), k);
      }
      CHECK(e.miou == doctest::Approx(agree / 2));
      CHECK(e.kl_divergence == doctest::Approx(kl / 2).epsilon(1e-9));
      CHECK(e.kl_divergence > 0);
    }
  }

  TEST_CASE("merge_luts: one hybrid table of two families, renormalized, with clear refusals") {
    auto table = [](const std::string& model, const std::string& family, double ref_miou) {
      drt::lookup_table t;
      t.machine.cpu = "cpu";
      t.machine.threads = 2;
      t.source = "lut '" + model + ".json'";
      t.info["input"] = {{"height", 360}, {"width", 480}};
      t.info["dataset"] = {{"path", "/nonexistent/camvid"}, {"images", 101}, {"accuracy", "miou"}};
      t.info["reference"] = {{"model", model}, {"path", "full"}, {"miou", ref_miou}};
      for (const auto& [path, ms, miou] : std::vector<std::tuple<std::string, double, double>>{
               {"full", 100, ref_miou}, {"depths=1,1,1,1", 50, ref_miou - 0.1}}) {
        drt::lut_entry e;
        e.model = model;
        e.family = family;
        e.path = path;
        e.latency_ms = e.latency_p95_ms = ms;
        e.miou = miou;
        t.entries.push_back(e);
      }
      return t;
    };
    const auto seg = table("b2", "segformer", 0.6), swin = table("swin", "upernet", 0.66);
    const auto m = drt::merge_luts({seg, swin});
    REQUIRE(m.entries.size() == 4);
    CHECK(m.entries[2].family == "upernet");
    CHECK(m.entries[2].miou_normalized == doctest::Approx(0.66 / 0.6));
    // swin full (100 ms, 0.66) dominates b2 full (100 ms, 0.6); swin's 50 ms path (0.56) dominates b2's (0.5)
    CHECK_FALSE(m.entries[0].pareto);
    CHECK_FALSE(m.entries[1].pareto);
    CHECK(m.entries[2].pareto);
    CHECK(m.entries[3].pareto);
    CHECK(m.info["merged_from"].size() == 2);
    auto other = swin;
    other.info["input"] = {{"height", 512}, {"width", 512}};
    CHECK_THROWS_WITH_AS(drt::merge_luts({seg, other}),
                         "merged lut: lut 'swin.json' holds for input 512x512 but lut 'b2.json' for 360x480",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::merge_luts({seg, seg}), "merged lut: model 'b2' is in more than one table (lut 'b2.json')",
                         drt::invalid_input);
    other = swin;
    other.info["dataset"]["accuracy"] = "pixel_agreement";
    CHECK_THROWS_WITH_AS(drt::merge_luts({seg, other}),
                         "merged lut: lut 'swin.json' measured accuracy on /nonexistent/camvid (101 images) "
                         "[pixel_agreement] but lut 'b2.json' on /nonexistent/camvid (101 images) [miou]",
                         drt::invalid_input);
  }

  TEST_CASE("sweep: one family per call, named when mixed") {
    const std::string swin = drt_test::shared_dir() + "/fixtures/upernet-swin-mini";
    const std::string b0 = drt_test::source_dir() + "/data/models/segformer-b0-camvid";
    if (!drt_test::require_file(swin + "/config.json")) return;
    drt::sweep_options o;
    o.data_dir = drt_test::source_dir() + "/data";
    CHECK_THROWS_WITH_AS(drt::sweep({b0, swin}, o),
                         ("sweep: model '" + swin + "' is a upernet but '" + b0 +
                          "' is a segformer: sweep each family apart and join the tables (drt lut merge / merge_luts)")
                             .c_str(),
                         drt::invalid_input);
  }
}
