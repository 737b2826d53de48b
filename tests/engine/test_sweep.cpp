// Sweep: the shared decoder equals SegFormer's own decoder bit for bit on every path of a grid
// (folded and unfolded decoders),
// enumeration helpers, and a miniature sweep of the vendored B0 whose full-path mIoU is the
// protocol's (drt::evaluate_segmentation).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <drt/engine/front_plot.hpp>
#include <drt/engine/sweep.hpp>

#include "test_support.hpp"

namespace {
/// Max |shared decoder logits - segformer_model::decode logits| over the whole grid.
double grid_difference(const drt::segformer_model& model, const drt::shared_decoder& dec, const drt::tensor4& x,
                       const drt::segformer_path& enc, const std::vector<std::size_t>& fs,
                       const std::vector<std::size_t>& ps) {
  const auto exec = model.compile(enc);
  const auto feats = model.encode(x, exec);
  std::vector<drt::detail::aligned_vector<float>> logits;
  dec.run(feats, fs, ps, logits);
  REQUIRE(logits.size() == fs.size() * ps.size());
  double diff = 0;
  const std::size_t K = model.decode_head().classes();
  for (std::size_t fi = 0; fi < fs.size(); ++fi)
    for (std::size_t pi = 0; pi < ps.size(); ++pi) {
      drt::decode_head_channels ch;
      ch.fuse_in = fs[fi];
      ch.pred_in = ps[pi];
      ch.classifier = model.refit_classifier(ps[pi]);  // as compile sets it (null: no refit)
      const auto ref = model.decode(feats, ch);  // [N, K, h, w]
      const std::size_t n = ref.shape(0), hw = ref.shape(2) * ref.shape(3);
      const auto& got = logits[fi * ps.size() + pi];  // [N, h, w, K]
      REQUIRE(got.size() == n * hw * K);
      for (std::size_t b = 0; b < n; ++b)
        for (std::size_t q = 0; q < hw; ++q)
          for (std::size_t k = 0; k < K; ++k)
            diff = std::max(diff, double(std::abs(ref.data()[(b * K + k) * hw + q] - got[(b * hw + q) * K + k])));
    }
  return diff;
}

}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("shared_decoder: every grid path equals segformer_model::decode bit for bit") {
    const std::size_t w = drt::detail::simd_width;
    for (const bool fold : {true, false}) {
      INFO("folded: " << fold);
      drt::segformer_options build;
      build.fold_decoder = fold;
      SUBCASE("B0 geometry, odd input size, batch 2") {
        const auto cfg = drt::standard_segformer_config("segformer-b0", 5);
        const drt::segformer_model model(cfg, drt::random_source(5), build);
        CHECK(model.decoder_folded() == fold);
        drt::shared_decoder dec(model);
        const auto x = drt_test::random_image(2, 3, 72, 100, 1);
        // fuse_in values cut each stage's slice of the concatenation (256 wide) at whole vectors
        const std::vector<std::size_t> fs{w, 256 - 4 * w, 256, 256 + w, 512 + w, 768, 1024}, ps{w, 3 * w, 128, 256 - w, 256};
        dec.prepare(fs);
        CHECK(grid_difference(model, dec, x, {}, fs, ps) == 0.0);
        CHECK(grid_difference(model, dec, x, drt::segformer_path::parse("depths=1,2,1,2"), fs, ps) == 0.0);
        if (fold)  // a folded F the grid was not prepared for is refused, not composed per image
          CHECK_THROWS_WITH_AS(grid_difference(model, dec, x, {}, {3 * w}, ps),
                               ("shared_decoder: fuse_in=" + std::to_string(3 * w) + " was not prepared").c_str(),
                               drt::invalid_input);
      }
      SUBCASE("a classifier refit on every pred_in (a calibrated order with its moments)") {
        const auto cfg = drt::standard_segformer_config("segformer-b0", 5);
        const auto groups = drt::segformer_model::channel_groups(cfg);
        const drt::segformer_model plain(cfg, drt::random_source(5), build);
        const auto x = drt_test::random_image(1, 3, 64, 96, 3);
        const auto stats = drt::collect_unit_statistics(
            plain.group_layers(), [&] { (void)plain.forward(x); }, drt::refit_group_names(groups));
        drt::segformer_options ordered = build;
        ordered.order = drt::calibrated_order(drt::random_source(5), groups, stats, "one image");
        const drt::segformer_model model(cfg, drt::random_source(5), ordered);
        REQUIRE(model.refit_classifier(3 * w) != nullptr);
        CHECK(model.refit_classifier(256) == nullptr);
        drt::shared_decoder dec(model);
        const std::vector<std::size_t> fs{256, 1024}, ps{w, 3 * w, 256};
        dec.prepare(fs, ps);
        CHECK(grid_difference(model, dec, x, {}, fs, ps) == 0.0);
        drt::shared_decoder unrefit(model);  // prepared without the pred_in grid: the model's own classifier
        unrefit.prepare(fs);
        CHECK(grid_difference(model, unrefit, x, {}, fs, ps) > 1e-3);
      }
      SUBCASE("a narrow decoder: pred_in inside one panel, classes fewer than a panel") {
        auto cfg = drt::standard_segformer_config("segformer-b0", 3);
        cfg.decoder_hidden_size = 48;  // a multiple of both vector widths (8 AVX2, 16 AVX-512)
        const drt::segformer_model model(cfg, drt::random_source(9), build);
        drt::shared_decoder dec(model);
        const auto x = drt_test::random_image(1, 3, 64, 72, 2);
        dec.prepare({w, 48, 48 + w, 192});
        CHECK(grid_difference(model, dec, x, {}, {w, 48, 48 + w, 192}, {w, 48}) == 0.0);
      }
    }
    const auto cfg = drt::standard_segformer_config("segformer-b0", 5);
    const drt::segformer_model model(cfg, drt::random_source(5));
    const drt::shared_decoder dec(model);
    const std::string ws = std::to_string(w);
    CHECK_THROWS_WITH_AS(dec.check_grid({w + 1}, {w}),
                         ("shared_decoder: fuse_in=" + std::to_string(w + 1) + " must be a multiple of " + ws +
                          " between " + ws + " and 1024")
                             .c_str(),
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(dec.check_grid({2 * w, w}, {w}), "shared_decoder: the fuse_in grid must be strictly ascending",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(dec.check_grid({w}, {}), "shared_decoder: the pred_in grid is empty", drt::invalid_input);
  }

  TEST_CASE("sweep enumeration: depth combinations and channel levels") {
    const auto d = drt::depth_combinations({3, 4, 6, 3}, 1);
    CHECK(d.size() == 16);
    CHECK(d.front() == std::vector<int>{3, 4, 6, 3});
    CHECK(std::find(d.begin(), d.end(), std::vector<int>{2, 3, 5, 2}) != d.end());
    CHECK(drt::depth_combinations({2, 2, 2, 2}, 1).size() == 16);
    CHECK(drt::depth_combinations({2, 2, 2, 2}, 5).size() == 16);  // never below one block
    CHECK(drt::depth_combinations({3, 4, 6, 3}, 0).size() == 1);
    CHECK(drt::channel_levels(3072, 512, 11, 32) ==
          std::vector<std::size_t>{512, 768, 1024, 1280, 1536, 1792, 2048, 2304, 2560, 2816, 3072});
    CHECK(drt::channel_levels(768, 192, 4, 32) == std::vector<std::size_t>{192, 384, 576, 768});
    CHECK(drt::channel_levels(256, 64, 4, 32) == std::vector<std::size_t>{64, 128, 192, 256});
    CHECK(drt::channel_levels(100, 10, 3, 32) == std::vector<std::size_t>{32, 64, 96, 100});  // full always kept
    CHECK_THROWS_WITH_AS(drt::channel_levels(256, 64, 4, 0),
                         "channel_levels: full, levels and step must be positive (got 256, 4, 0)", drt::invalid_input);
  }

#ifndef DRT_SANITIZED_BUILD  // 100 s under ASan; the hybrid sweep below runs the same pipeline there
  TEST_CASE("sweep: miniature sweep of the vendored B0 reproduces the protocol's mIoU") {
    const std::string model_dir = drt_test::source_dir() + "/data/models/segformer-b0-camvid";
    const std::string data = drt_test::source_dir() + "/data";
    if (!drt_test::require_file(model_dir + "/model.safetensors")) return;
    drt::sweep_options o;
    o.data_dir = data;
    o.ignore_index = 11;
    o.depths = {{2, 2, 2, 2}, {1, 2, 2, 2}};
    o.fuse_in = {512, 1024};
    o.pred_in = {128, 256};
    o.warmup = 0;
    o.repeats = 1;
    o.decoder_repeats = 1;
    o.confirm = 3;
    std::vector<std::string> notes;
    std::size_t progress_calls = 0;
    const auto r = drt::sweep_segformer(
        {model_dir}, o, [&](const drt::sweep_progress&) { ++progress_calls; },
        [&](const std::string& s) { notes.push_back(s); });
    const auto& t = r.table;
    REQUIRE(t.entries.size() == 8);
    CHECK(progress_calls > 0);
    CHECK(r.report["shared_decoder_check"]["max_abs_logit_difference"] == 0.0);
    CHECK(r.report["paths"] == 8);
    for (const auto& e : t.entries) CHECK(e.decoder_folded);  // the default graph, recorded per entry
    // the full path's mIoU is exactly what drt eval computes
    const auto model = drt::segformer_model::from_dir(model_dir);
    const auto items = drt::list_labelled_dataset(data);
    const auto cm =
        drt::evaluate_segmentation([&](const drt::tensor4& x) { return model.forward(x).logits; }, 11, items, 11);
    const auto full =
        std::find_if(t.entries.begin(), t.entries.end(), [](const drt::lut_entry& e) { return e.path == "full"; });
    REQUIRE(full != t.entries.end());
    CHECK(full->miou == cm.miou());
    // with the bootstrap interval drt eval gives (the same images, the same draws)
    const auto ci = cm.interval();
    REQUIRE(full->miou_ci.valid());
    CHECK(full->miou_ci.low == ci.low);
    CHECK(full->miou_ci.high == ci.high);
    CHECK(full->miou_ci.low <= full->miou);
    CHECK(full->miou_ci.high >= full->miou);
    CHECK(full->miou_normalized == 1.0);
    // the full path is always timed; its table latency is its measured median (the calibration point)
    CHECK(full->latency_source == "predicted");
    REQUIRE(std::isfinite(full->measured_latency_ms));
    CHECK(full->latency_ms == doctest::Approx(full->measured_latency_ms));
    CHECK(full->macs == doctest::Approx(drt::total_macs(model.layers(360, 480))));
    // a reduced path's mIoU equals an evaluation of that path
    const auto e = std::find_if(t.entries.begin(), t.entries.end(), [](const drt::lut_entry& x) {
      return x.path == "depths=1,2,2,2 fuse_in=512 pred_in=128";
    });
    REQUIRE(e != t.entries.end());
    const auto exec = model.compile(drt::segformer_path::parse(e->path));
    const auto cm2 = drt::evaluate_segmentation(
        [&](const drt::tensor4& x) { return model.forward(x, false, exec).logits; }, 11, items, 11);
    CHECK(e->miou == cm2.miou());
    std::size_t measured = 0, flagged = 0;
    for (const auto& x : t.entries) {
      CHECK(x.latency_ms > 0);
      CHECK(x.latency_p95_ms > 0);
      CHECK(x.predicted_latency_ms > 0);
      measured += std::isfinite(x.measured_latency_ms) ? 1 : 0;
      CHECK(x.latency_source == "predicted");
      flagged += x.pareto ? 1 : 0;
    }
    CHECK(measured == 3);
    CHECK(flagged == t.front().size());
    CHECK(r.report["latency"]["sample"].size() == 3);
    CHECK(t.info["reference"]["model"] == "segformer-b0-camvid");
    // it survives a save/load and draws
    const auto file = (std::filesystem::temp_directory_path() / "drt_mini_sweep.json").string();
    drt::save_lut(t, file);
    CHECK(drt::load_lut(file).entries.size() == 8);
    const std::string svg = drt::front_chart(t, "mini").to_svg();
    CHECK(svg.find("Pareto front") != std::string::npos);
    CHECK(svg.find("b0-camvid paths") != std::string::npos);
    CHECK(svg.find("full models") != std::string::npos);
    // every front entry's bootstrap interval is drawn as a bar, and survives the save/load
    CHECK(svg.find("Pareto front (bars: 95 % interval)") != std::string::npos);
    std::size_t bars = 0;
    for (auto q = svg.find("<line class='ci'"); q != std::string::npos; q = svg.find("<line class='ci'", q + 1)) ++bars;
    CHECK(bars >= t.front().size());
    const auto reloaded = drt::load_lut(file);
    for (std::size_t i = 0; i < t.entries.size(); ++i) {
      CHECK(reloaded.entries[i].miou_ci.low == doctest::Approx(t.entries[i].miou_ci.low));
      CHECK(reloaded.entries[i].miou_ci.high == doctest::Approx(t.entries[i].miou_ci.high));
    }
  }

#endif

  TEST_CASE("sweep: two models give one hybrid table; a tiny time budget stops after the full encoders") {
    const std::string model_dir = drt_test::source_dir() + "/data/models/segformer-b0-camvid";
    const std::string data = drt_test::source_dir() + "/data";
    if (!drt_test::require_file(model_dir + "/model.safetensors")) return;
    namespace fs = std::filesystem;
    const auto twin = fs::temp_directory_path() / "drt_sweep_models" / "segformer-b0-twin";
    fs::create_directories(twin.parent_path());
    fs::remove(twin);
    fs::create_directory_symlink(fs::absolute(model_dir), twin);
    drt::sweep_options o;
    o.data_dir = data;
    o.ignore_index = 11;
    o.depths = {{2, 2, 2, 2}, {1, 2, 2, 2}};
    o.fuse_in = {512, 1024};
    o.pred_in = {256};
    o.warmup = 0;
    o.repeats = 1;
    o.decoder_repeats = 1;
    o.confirm = 2;
    o.budget_minutes = 0.001;  // admits nothing past each model's full encoder
    const auto r = drt::sweep_segformer({model_dir, twin.string()}, o);
    const auto& t = r.table;
    REQUIRE(t.entries.size() == 4);
    CHECK(r.report["stopped_by"] == "time budget");
    CHECK(t.info["reference"]["model"] == "segformer-b0-camvid");
    std::size_t a = 0, b = 0;
    for (const auto& e : t.entries) {
      a += e.model == "segformer-b0-camvid" ? 1 : 0;
      b += e.model == "segformer-b0-twin" ? 1 : 0;
      CHECK(e.path.find("depths") == std::string::npos);  // only the full encoders ran
    }
    CHECK(a == 2);
    CHECK(b == 2);
    // the same weights give the same accuracy under either name
    CHECK(t.entries[0].miou == t.entries[2].miou);
    CHECK(t.entries[1].miou == t.entries[3].miou);
    CHECK(t.entries[2].miou_normalized == doctest::Approx(t.entries[2].miou / t.entries[1].miou));
    const std::string svg = drt::front_chart(t).to_svg();
    CHECK(svg.find("b0-twin paths") != std::string::npos);
    fs::remove(twin);
  }

  TEST_CASE("sweep: bad options name the value") {
    drt::sweep_options o;
    o.data_dir = "/nonexistent";
    o.budget_minutes = -1;
    CHECK_THROWS_WITH_AS(drt::sweep_segformer({"x"}, o), "sweep: budget of -1 minutes must be positive",
                         drt::invalid_input);
    o.budget_minutes = 1;
    o.channel_step = 12;
    CHECK_THROWS_WITH_AS(drt::sweep_segformer({"x"}, o),
                         ("sweep: channel step 12 must be a positive multiple of " +
                          std::to_string(drt::detail::simd_width) + " (the SIMD width)")
                             .c_str(),
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::sweep_segformer({}, o), "sweep: no model directories given", drt::invalid_input);
  }
}
