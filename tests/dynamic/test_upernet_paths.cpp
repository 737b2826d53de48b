// UPerNet + Swin dynamic paths (dynamic/upernet_path.hpp, models/upernet_swin.hpp): text/JSON forms,
// every validation message, the property test (a random path equals the full model whose dropped
// weights are zeroed and whose skipped Swin blocks are the identity), layer list vs profile scopes,
// and the MAC anchors (Swin-T + UPerNet, ADE20K 512x512: paper Section II).
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <drt/core/profiler.hpp>
#include <drt/dynamic/upernet_path.hpp>
#include <drt/models/upernet_swin.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
/// A small UPerNet + Swin: 4 stages of 8..64 channels, head 16 wide, 3 pool scales, 5 classes.
drt::upernet_config tiny_upernet() {
  auto c = drt::standard_upernet_swin_config("swin-t-upernet", 5);
  c.backbone.embed_dim = 8;
  c.backbone.depths = {2, 3, 2, 2};
  c.backbone.num_heads = {1, 2, 2, 4};
  c.hidden_size = 16;
  c.pool_scales = {1, 2, 3};
  return c;
}

/// Level i's kept slice, computed here from the documented rule (independently of the model).
std::size_t kept_of(const drt::upernet_path& p, std::size_t i, std::size_t D, std::size_t L) {
  const long bin = p.bottleneck_in ? p.bottleneck_in : long(L * D), fout = p.fpn_out ? p.fpn_out : long(D);
  return std::size_t(std::max(0L, std::min({long(D), bin - long(i * D), fout})));
}

/// The weights of the full model that computes what `path` computes.
drt::weight_source zeroed_source(const drt::upernet_config& c, const drt::upernet_path& p, unsigned seed) {
  const auto base = drt::random_source(seed);
  return [=](const std::string& name, const std::vector<std::int64_t>& shape) {
    auto v = base(name, shape);
    const std::size_t D = std::size_t(c.hidden_size), L = c.backbone.out_indices.size();
    if (name == "decode_head.fpn_bottleneck.conv.weight")  // [D, L*D, 3, 3]: drop each level's tail
      for (std::size_t o = 0; o < D; ++o)
        for (std::size_t ch = 0; ch < L * D; ++ch)
          if (ch % D >= kept_of(p, ch / D, D, L)) std::fill_n(v.begin() + std::ptrdiff_t((o * L * D + ch) * 9), 9, 0.f);
    if (p.pred_in && name == "decode_head.classifier.weight") {  // [K, D, 1, 1]
      const std::size_t k = std::size_t(shape[0]);
      for (std::size_t o = 0; o < k; ++o)
        for (std::size_t i = std::size_t(p.pred_in); i < D; ++i) v[o * D + i] = 0.f;
    }
    for (std::size_t l = 0; l + 1 < L; ++l)
      if (p.fpn_in && name == "decode_head.fpn_convs." + std::to_string(l) + ".conv.weight")  // [D, D, 3, 3]
        for (std::size_t o = 0; o < D; ++o)
          for (std::size_t i = std::size_t(p.fpn_in); i < D; ++i)
            std::fill_n(v.begin() + std::ptrdiff_t((o * D + i) * 9), 9, 0.f);
    for (std::size_t s = 0; s < c.backbone.depths.size(); ++s)
      for (int b = 0; b < c.backbone.depths[s]; ++b) {
        if (p.block_runs(s, std::size_t(b))) continue;
        // identity: both residual branches end in a zero projection
        const std::string pre = "backbone.encoder.layers." + std::to_string(s) + ".blocks." + std::to_string(b) + ".";
        if (name == pre + "attention.output.dense.weight" || name == pre + "attention.output.dense.bias" ||
            name == pre + "output.dense.weight" || name == pre + "output.dense.bias")
          std::fill(v.begin(), v.end(), 0.f);
      }
    return v;
  };
}

double share(const std::vector<drt::layer_info>& layers, const std::string& name) {
  for (const auto& l : layers)
    if (l.name == name) return l.macs / drt::total_macs(layers);
  FAIL("no layer " << name);
  return 0.0;
}

}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("upernet path: text form round trip and JSON") {
    const auto p =
        drt::upernet_path::parse("depths=2,2,4,2 pred_in=256  skip=2.1,0.0 bottleneck_in=1024 fpn_out=256 fpn_in=384");
    CHECK(p.depths == std::vector<int>{2, 2, 4, 2});
    REQUIRE(p.skip.size() == 2);
    CHECK(p.skip[0] == std::pair<int, int>{2, 1});
    CHECK(p.skip[1] == std::pair<int, int>{0, 0});
    CHECK(p.bottleneck_in == 1024);
    CHECK(p.fpn_out == 256);
    CHECK(p.fpn_in == 384);
    CHECK(p.pred_in == 256);
    CHECK(p.to_string() == "depths=2,2,4,2 skip=2.1,0.0 bottleneck_in=1024 fpn_out=256 fpn_in=384 pred_in=256");
    CHECK(drt::upernet_path::parse(p.to_string()).to_string() == p.to_string());
    CHECK(p.to_json() == nlohmann::json::parse(R"({"depths":[2,2,4,2],"skip":[[2,1],[0,0]],"bottleneck_in":1024,
                                               "fpn_out":256,"fpn_in":384,"pred_in":256})"));
    CHECK(drt::upernet_path::from_json(p.to_json()).to_string() == p.to_string());
    CHECK(drt::upernet_path::parse("").to_string() == "full");
    CHECK(drt::upernet_path::from_json(nlohmann::json::object()).to_string() == "full");
    CHECK(!p.block_runs(2, 1));
    CHECK(!p.block_runs(0, 0));
    CHECK(!p.block_runs(2, 5));  // beyond depth 4
    CHECK(p.block_runs(2, 3));
    CHECK(p.block_runs(1, 1));
  }

  TEST_CASE("upernet path: malformed text and impossible values are named") {
    using P = drt::upernet_path;
    using E = drt::invalid_input;
    CHECK_THROWS_WITH_AS(P::parse("pred_in=abc"), "path 'pred_in=abc': pred_in=abc is not a non-negative integer", E);
    CHECK_THROWS_WITH_AS(P::parse("depths=2,,2"), "path 'depths=2,,2': depths= is not a non-negative integer", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_out"), "path 'fpn_out': cannot parse 'fpn_out' (expected key=value)", E);
    CHECK_THROWS_WITH_AS(
        P::parse("fuse_in=512"),
        "path 'fuse_in=512': key 'fuse_in' does not apply to upernet (keys: depths, skip, bottleneck_in, "
        "fpn_out, fpn_in, pred_in, mlp, heads, precision)",
        E);
    CHECK_THROWS_WITH_AS(P::parse("bottleneck_in=0"), "path 'bottleneck_in=0': bottleneck_in=0 keeps no channels", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_out=0"), "path 'fpn_out=0': fpn_out=0 keeps no channels", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_in=0"), "path 'fpn_in=0': fpn_in=0 keeps no channels", E);
    CHECK_THROWS_WITH_AS(P::parse("pred_in=0"), "path 'pred_in=0': pred_in=0 keeps no channels", E);
    CHECK_THROWS_WITH_AS(P::parse("skip=2"), "path 'skip=2': skip entry '2' must be stage.block (e.g. 0.1)", E);
    CHECK_THROWS_WITH_AS(P::parse("skip=1.x"), "path 'skip=1.x': skip block=x is not a non-negative integer", E);
    CHECK_THROWS_WITH_AS(P::parse("pred_in=1 pred_in=2"), "path 'pred_in=1 pred_in=2': key 'pred_in' given twice", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"pred_in", "x"}}),
                         "path JSON: key 'pred_in' has a malformed value \"x\"", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"skip", {1, 2}}}),
                         "path JSON: key 'skip' has a malformed value [1,2]", E);
    CHECK_THROWS_WITH_AS(
        P::from_json(nlohmann::json{{"fuse_in", 3}}),
        "path JSON: key 'fuse_in' does not apply to upernet (keys: depths, skip, bottleneck_in, fpn_out, "
        "fpn_in, pred_in, mlp, heads, precision)",
        E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json::array()), "path JSON [] is not an object", E);

    const auto t = drt::standard_upernet_swin_config("swin-t-upernet");  // depths 2,2,6,2; head 512 x 4 levels
    CHECK_THROWS_WITH_AS(P::parse("depths=3,2,6,2").validate(t),
                         "path 'depths=3,2,6,2': stage 0 depth 3 exceeds the model's 2", E);
    CHECK_THROWS_WITH_AS(P::parse("depths=2,2,6").validate(t),
                         "path 'depths=2,2,6': depths has 3 entries, the model has 4 stages", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"depths", {2, -1, 6, 2}}}).validate(t),
                         "path 'depths=2,-1,6,2': stage 1 depth -1 is negative", E);
    CHECK_THROWS_WITH_AS(P::parse("skip=2.6").validate(t),
                         "path 'skip=2.6': skipped block 2.6 does not exist (depths 2,2,6,2)", E);
    CHECK_THROWS_WITH_AS(P::parse("skip=4.0").validate(t),
                         "path 'skip=4.0': skipped block 4.0 does not exist (depths 2,2,6,2)", E);
    CHECK_THROWS_WITH_AS(P::parse("bottleneck_in=2049").validate(t),
                         "path 'bottleneck_in=2049': bottleneck_in=2049 must be between 1 and 2048", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_out=513").validate(t),
                         "path 'fpn_out=513': fpn_out=513 must be between 1 and 512", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_in=600").validate(t), "path 'fpn_in=600': fpn_in=600 must be between 1 and 512",
                         E);
    CHECK_THROWS_WITH_AS(P::parse("pred_in=1000").validate(t),
                         "path 'pred_in=1000': pred_in=1000 must be between 1 and 512", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"pred_in", -3}}).validate(t),
                         "path 'pred_in=-3': pred_in=-3 must be between 1 and 512", E);
    auto one_level = t;
    one_level.backbone.out_indices = {4};
    CHECK_THROWS_WITH_AS(P::parse("fpn_in=64").validate(one_level),
                         "path 'fpn_in=64': fpn_in does not apply: the model has one feature level and no fpn convs",
                         E);
    CHECK_NOTHROW(P::parse("depths=0,1,6,2 skip=2.5 bottleneck_in=2048 fpn_out=512 fpn_in=1 pred_in=1").validate(t));
  }

  TEST_CASE("upernet: random dynamic paths equal the zeroed full model") {
    const auto cfg = tiny_upernet();
    const unsigned seed = 5;
    const drt::upernet_swin_model model(cfg, drt::random_source(seed));
    std::mt19937 gen(77);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); };
    const auto x = random_image(2, 3, 96, 80, 3);  // stage grids 24x20, 12x10, 6x5, 3x3 (window 7: padded)
    const auto full = model.forward(x);
    double worst = 0;
    for (int trial = 0; trial < 20; ++trial) {
      drt::upernet_path p;
      if (pick(0, 3)) p.depths = {pick(0, 2), pick(0, 3), pick(0, 2), pick(0, 2)};
      if (pick(0, 1)) p.skip.emplace_back(pick(0, 3), pick(0, 1));
      if (pick(0, 4)) p.bottleneck_in = pick(1, 64);
      if (pick(0, 3)) p.fpn_out = pick(1, 16);
      if (pick(0, 2)) p.fpn_in = pick(1, 16);
      if (pick(0, 3)) p.pred_in = pick(1, 16);
      if (trial == 0) p = drt::upernet_path::parse("bottleneck_in=20 fpn_out=16 fpn_in=3");  // level 1 cut, 2-3 dropped
      if (trial == 1) p = drt::upernet_path::parse("depths=2,3,2,2 fpn_out=5 pred_in=7");    // every level cut
      CAPTURE(p.to_string());
      const auto exec = model.compile(p);
      const auto dyn = model.forward(x, false, exec);
      const drt::upernet_swin_model zeroed(cfg, zeroed_source(cfg, p, seed));
      const auto ref = zeroed.forward(x);
      REQUIRE(dyn.logits.shape() == ref.logits.shape());
      // Same arithmetic up to summation order (a dropped channel is skipped, not multiplied by zero;
      // the 3x3 convs are Winograd F(4x4), whose transforms amplify rounding ~10x): rel L2 <= 1e-6,
      // max abs <= 1e-5 * max|ref| (one wrong channel moves the logits by > 1e-4, see the check below).
      check_close(dyn.logits.data(), ref.logits.data(), ref.logits.size(), "path " + p.to_string(), 1e-6, 1e-5);
      worst = std::max(worst, compare(dyn.logits.data(), ref.logits.data(), ref.logits.size()).rel_l2);
      // The path must actually change the output, or the comparison proves nothing.
      CHECK(compare(full.logits.data(), ref.logits.data(), ref.logits.size()).rel_l2 > 1e-4);
      // What runs is what layers() lists: dropped levels have no fpn conv, MACs shrink.
      const auto layers = model.layers(96, 80, exec, 2);
      for (std::size_t l = 0; l + 1 < 4; ++l) {
        const auto* f = find_layer(layers, "fpn_convs." + std::to_string(l));
        const std::size_t kept = kept_of(p, l, 16, 4);
        CHECK((f != nullptr) == (kept > 0));
        if (f) CHECK(f->k == kept);
      }
      CHECK(drt::total_macs(layers) < drt::total_macs(model.layers(96, 80, {}, 2)));
    }
    MESSAGE("upernet property test: worst rel L2 vs the zeroed model " << worst);
  }

  TEST_CASE("upernet: a path's encoding is shared by its head paths, and the default execution is the full model") {
    const auto cfg = tiny_upernet();
    const drt::upernet_swin_model model(cfg, drt::random_source(9));
    const auto x = random_image(1, 3, 70, 90, 4);  // 18x23 tokens: odd sizes everywhere
    const auto enc = model.encode(x);
    const auto full = model.forward(x);
    const auto again = model.decode(enc, model.compile(drt::upernet_path::parse("")));
    check_close(again.data(), full.logits.data(), full.logits.size(), "full path", 0, 0);
    const auto p = drt::upernet_path::parse("bottleneck_in=40 pred_in=9");
    const auto a = model.decode(enc, model.compile(p));
    const auto b = model.forward(x, p);
    check_close(a.data(), b.logits.data(), b.logits.size(), "decode(encode) vs forward", 0, 0);
  }

  TEST_CASE("upernet: every layer has a profile scope of its timing name, and every scope is a layer") {
    const auto cfg = tiny_upernet();
    const drt::upernet_swin_model model(cfg, drt::random_source(2));
    const auto x = random_image(1, 3, 64, 64, 1);
    for (const char* path : {"", "depths=1,3,0,2 bottleneck_in=20 fpn_out=12 fpn_in=5 pred_in=3", "bottleneck_in=60"}) {
      CAPTURE(path);
      const auto exec = model.compile(drt::upernet_path::parse(path));
      drt::layer_profiler prof;
      {
        drt::profiling_session session(prof);
        model.forward(x, false, exec);
        prof.end_run();
      }
      const std::set<std::string> timed(prof.names().begin(), prof.names().end());
      std::set<std::string> listed;
      for (const auto& l : model.layers(64, 64, exec)) {
        listed.insert(l.timing_name());
        if (l.macs > 0) CHECK_MESSAGE(timed.count(l.timing_name()) == 1, "no time for " << l.name);
      }
      for (const auto& name : timed)
        CHECK_MESSAGE(listed.count(name) == 1, "timed scope " << name << " is not a layer");
      CHECK(listed == timed);
    }
  }

  TEST_CASE("upernet MACs: Swin-T + UPerNet 512x512 (paper Section II) and path accounting") {
    // Only the layer list is needed; the weights are synthetic. Counted: every conv (patch embedding and
    // the head's), linear (Swin qkv / output / MLP / patch-merging reductions) and attention matmul, on
    // the windows as run (the 128x128 grid padded to 133x133 for window 7).
    const auto model =
        drt::upernet_swin_model::with_random_weights(drt::standard_upernet_swin_config("swin-t-upernet"));
    const auto full = model.layers(512, 512);
    const double total = drt::total_macs(full);
    CHECK(total == doctest::Approx(236.9e9).epsilon(0.005));
    CHECK(model.macs(512, 512) == total);
    double conv = 0, decoder_conv = 0;
    for (const auto& l : full)
      if (l.kind == drt::layer_kind::conv) {
        conv += l.macs;
        if (l.region == drt::model_region::decoder) decoder_conv += l.macs;
      }
    MESSAGE("swin-t-upernet 512x512: " << total / 1e9 << " GMACs, convs " << conv / total << ", decoder share of convs "
                                       << decoder_conv / conv << ", fpn_bottleneck " << share(full, "fpn_bottleneck"));
    CHECK(conv / total == doctest::Approx(0.89).epsilon(0.01));
    CHECK(decoder_conv / conv > 0.99);
    CHECK(share(full, "fpn_bottleneck") == doctest::Approx(0.65).epsilon(0.01));
    CHECK(share(full, "fpn_convs.0") == doctest::Approx(0.16).epsilon(0.05));
    CHECK(share(full, "fpn_convs.1") == doctest::Approx(0.04).epsilon(0.05));
    const auto* fb = find_layer(full, "fpn_bottleneck");
    REQUIRE(fb != nullptr);
    CHECK((fb->k == 512 && fb->c == 2048 && fb->p == 128 && fb->q == 128 && fb->r == 3));

    // bottleneck_in=1024: levels 2 and 3 dropped -> half the fpn_bottleneck, no fpn_convs.2, no upsampling
    // of levels 2-3; the laterals and the pyramid pooling still run (level 0 sums them top-down).
    const auto half = model.layers(512, 512, model.compile(drt::upernet_path::parse("bottleneck_in=1024")));
    CHECK(find_layer(half, "fpn_bottleneck")->macs == doctest::Approx(fb->macs / 2));
    CHECK(find_layer(half, "fpn_convs.2") == nullptr);
    CHECK(find_layer(half, "fpn_upsample.2") == nullptr);
    CHECK(find_layer(half, "fpn_upsample.3") == nullptr);
    CHECK(find_layer(half, "lateral_convs.2") != nullptr);
    CHECK(find_layer(half, "bottleneck") != nullptr);
    CHECK(drt::total_macs(full) - drt::total_macs(half) ==
          doctest::Approx(fb->macs / 2 + find_layer(full, "fpn_convs.2")->macs));
    // fpn_out=256 pred_in=256: every fpn conv computes half its outputs, the bottleneck reads half of
    // every slice and computes half its outputs; the classifier reads half.
    const auto narrow = model.layers(512, 512, model.compile(drt::upernet_path::parse("fpn_out=256 pred_in=256")));
    CHECK(find_layer(narrow, "fpn_bottleneck")->macs == doctest::Approx(fb->macs / 4));
    CHECK(find_layer(narrow, "fpn_convs.0")->macs == doctest::Approx(find_layer(full, "fpn_convs.0")->macs / 2));
    CHECK(find_layer(narrow, "classifier")->c == 256);
    // fpn_in=128: the fpn convs read a quarter; the laterals compute 128 outputs, the PSP bottleneck 512
    // (its whole slice still enters the fpn_bottleneck).
    const auto fin = model.layers(512, 512, model.compile(drt::upernet_path::parse("fpn_in=128")));
    CHECK(find_layer(fin, "fpn_convs.1")->c == 128);
    CHECK(find_layer(fin, "lateral_convs.0")->k == 128);
    CHECK(find_layer(fin, "bottleneck")->k == 512);
    CHECK(find_layer(fin, "top_down.1")->k == 128);
    // Skipped Swin blocks cost nothing.
    const auto shallow = model.layers(512, 512, model.compile(drt::upernet_path::parse("depths=2,2,4,2")));
    CHECK(find_layer(shallow, "Stage3 Block5 mlp.fc1") == nullptr);
    CHECK(find_layer(shallow, "Stage3 Block4 mlp.fc1") != nullptr);
  }
}
