// ResNet dynamic paths in the style of Once-for-All (dynamic/resnet_path.hpp, models/resnet.hpp):
// text/JSON forms, every validation message, the property test (a random path equals the full model
// whose dropped weights are zeroed and whose skipped blocks are the identity) on bottleneck and basic
// variants, layer list vs profile scopes, and the MAC anchor (ResNet-50 at 640x480, paper Table I /
// Section V: conv + linear).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <drt/core/profiler.hpp>
#include <drt/dynamic/resnet_path.hpp>
#include <drt/models/resnet.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
/// Small bottleneck ResNet: the stem is as wide as stage 0, so stage 0's first block has no shortcut
/// (its residual is the stem output, wider than a narrowed stage 0).
drt::resnet_config tiny_bottleneck() {
  auto c = drt::standard_resnet_config("resnet50", 7);
  c.embedding_size = 16;
  c.hidden_sizes = {16, 32, 48, 64};
  c.depths = {2, 3, 2, 2};
  return c;
}

/// Small basic-block ResNet whose first stage strides (downsample_in_first_stage).
drt::resnet_config tiny_basic() {
  auto c = drt::standard_resnet_config("resnet18", 6);
  c.embedding_size = 8;
  c.hidden_sizes = {12, 16, 24, 32};
  c.depths = {2, 2, 3, 2};
  c.downsample_in_first_stage = true;
  return c;
}

/// Zeroes inputs [from, in) of a conv weight [out, in, k, k] (or a linear [out, in]).
void zero_inputs(std::vector<float>& v, const std::vector<std::int64_t>& shape, std::size_t from) {
  const std::size_t out = std::size_t(shape[0]), in = std::size_t(shape[1]);
  const std::size_t kk = shape.size() == 4 ? std::size_t(shape[2] * shape[3]) : 1;
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t i = from; i < in; ++i) std::fill_n(v.begin() + std::ptrdiff_t((o * in + i) * kk), kk, 0.f);
}

/// The weights of the full model that computes what `path` computes.
drt::weight_source zeroed_source(const drt::resnet_config& c, const drt::resnet_path& p, unsigned seed) {
  const auto base = drt::random_source(seed);
  const bool bottleneck = c.layer_type == drt::resnet_layer_type::bottleneck;
  return [=](const std::string& name, const std::vector<std::int64_t>& shape) {
    auto v = base(name, shape);
    std::size_t g = 0;
    for (std::size_t s = 0; s < c.num_stages(); ++s)
      for (int j = 0; j < c.depths[s]; ++j, ++g) {
        const std::string pre = "resnet.encoder.stages." + std::to_string(s) + ".layers." + std::to_string(j) + ".";
        const std::string last = pre + (bottleneck ? "layer.2." : "layer.1.");
        if (!p.block_runs(s, std::size_t(j))) {  // identity: the residual branch's last BatchNorm outputs zero
          if (name == last + "normalization.weight" || name == last + "normalization.bias")
            std::fill(v.begin(), v.end(), 0.f);
          continue;
        }
        const std::size_t mid = p.mid_kept(c, s, g);
        if (name == pre + "layer.1.convolution.weight") zero_inputs(v, shape, mid);
        if (bottleneck && name == pre + "layer.2.convolution.weight") zero_inputs(v, shape, mid);
        // the stage's input width: the previous stage's kept width (the stem is never narrowed)
        const std::size_t in_w = j > 0   ? p.width_kept(c, s)
                                 : s > 0 ? p.width_kept(c, s - 1)
                                         : std::size_t(c.embedding_size);
        if (name == pre + "layer.0.convolution.weight" || name == pre + "shortcut.convolution.weight")
          zero_inputs(v, shape, in_w);
      }
    if (name == "classifier.1.weight") zero_inputs(v, shape, p.width_kept(c, c.num_stages() - 1));
    return v;
  };
}

/// Random valid path for config c.
drt::resnet_path random_path(const drt::resnet_config& c, std::mt19937& gen) {
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); };
  drt::resnet_path p;
  const std::size_t S = c.num_stages();
  if (pick(0, 3)) {
    p.depths.clear();
    for (std::size_t s = 0; s < S; ++s) p.depths.push_back(pick(1, c.depths[s]));
  }
  switch (pick(0, 3)) {
    case 0:
      break;
    case 1:
      p.expand = {pick(1, 4) / 4.0};
      break;
    case 2:
      for (std::size_t s = 0; s < S; ++s) p.mid.push_back(pick(1, int(c.mid_channels(s))));
      break;
    case 3:
      for (std::size_t s = 0; s < S; ++s)
        for (int j = 0; j < c.depths[s]; ++j) p.mid.push_back(pick(1, int(c.mid_channels(s))));
      break;
  }
  if (pick(0, 3))
    for (std::size_t s = 0; s < S; ++s) p.width.push_back(pick(1, c.hidden_sizes[s]));
  return p;
}

void property_test(const drt::resnet_config& cfg, unsigned seed, unsigned path_seed, int trials) {
  const drt::resnet_model model(cfg, drt::random_source(seed));
  std::mt19937 gen(path_seed);
  const auto x = random_image(2, 3, 61, 47, seed + 1);  // odd sizes: every stride rounds
  const auto full = model.forward(x);
  double worst = 0;
  for (int trial = 0; trial < trials; ++trial) {
    auto p = random_path(cfg, gen);
    if (trial == 0) p = drt::resnet_path::parse("mid=1");                          // the narrowest middles
    if (trial == 1) p = drt::resnet_path::parse("width=3,5,7,9 expand=0.5");       // narrow residual streams
    if (model.total_macs(61, 47, model.compile(p)) == model.total_macs(61, 47)) {  // drew the full model
      p.expand.clear();
      p.mid = {1};
    }
    CAPTURE(p.to_string());
    const auto exec = model.compile(p);
    const auto dyn = model.forward(x, true, exec);
    const drt::resnet_model zeroed(cfg, zeroed_source(cfg, p, seed));
    const auto ref = zeroed.forward(x, true);
    REQUIRE(dyn.logits.shape() == ref.logits.shape());
    check_close(dyn.logits.data(), ref.logits.data(), ref.logits.size(), "logits, path " + p.to_string(), 1e-5, 1e-5);
    worst = std::max(worst, compare(dyn.logits.data(), ref.logits.data(), ref.logits.size()).rel_l2);
    // The pooled features and every stage output are the kept prefix of the zeroed model's.
    const std::size_t n = 2, wl = p.width_kept(cfg, cfg.num_stages() - 1);
    REQUIRE(dyn.pooled.shape(1) == wl);
    std::vector<float> pref;
    for (std::size_t b = 0; b < n; ++b)
      for (std::size_t i = 0; i < wl; ++i) pref.push_back(ref.pooled(b, i));
    check_close(dyn.pooled.data(), pref.data(), pref.size(), "pooled, path " + p.to_string(), 1e-5, 1e-5);
    REQUIRE(dyn.hidden_states.size() == cfg.num_stages() + 1);
    for (std::size_t s = 0; s < cfg.num_stages(); ++s) {
      const auto& d = dyn.hidden_states[s + 1];
      const auto& r = ref.hidden_states[s + 1];
      REQUIRE(d.shape(1) == p.width_kept(cfg, s));
      std::vector<float> rp;  // the first width channels of every image
      const std::size_t plane = r.shape(2) * r.shape(3);
      for (std::size_t b = 0; b < n; ++b)
        rp.insert(rp.end(), r.data() + b * r.shape(1) * plane, r.data() + (b * r.shape(1) + d.shape(1)) * plane);
      check_close(d.data(), rp.data(), rp.size(), "stage " + std::to_string(s) + ", path " + p.to_string(), 1e-5, 1e-5);
    }
    CHECK(compare(full.logits.data(), ref.logits.data(), ref.logits.size()).rel_l2 > 1e-4);
    CHECK(model.total_macs(61, 47, exec) < model.total_macs(61, 47));
  }
  MESSAGE("resnet (" << std::string(drt::to_string(cfg.layer_type))
                     << ") property test: worst rel L2 vs the zeroed model " << worst);
}
}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("resnet path: text form round trip and JSON") {
    const auto p = drt::resnet_path::parse("width=128,256,768,2048  depths=2,3,4,2 expand=0.5,0.75,1,0.25");
    CHECK(p.depths == std::vector<int>{2, 3, 4, 2});
    CHECK(p.expand == std::vector<double>{0.5, 0.75, 1.0, 0.25});
    CHECK(p.width == std::vector<int>{128, 256, 768, 2048});
    CHECK(p.to_string() == "depths=2,3,4,2 expand=0.5,0.75,1,0.25 width=128,256,768,2048");
    CHECK(drt::resnet_path::parse(p.to_string()).to_string() == p.to_string());
    CHECK(p.to_json() ==
          nlohmann::json::parse(R"({"depths":[2,3,4,2],"expand":[0.5,0.75,1.0,0.25],"width":[128,256,768,2048]})"));
    CHECK(drt::resnet_path::from_json(p.to_json()).to_string() == p.to_string());
    const auto q = drt::resnet_path::parse("mid=32");
    CHECK(q.to_string() == "mid=32");
    CHECK(drt::resnet_path::from_json(q.to_json()).to_string() == "mid=32");
    CHECK(drt::resnet_path::parse("").to_string() == "full");
    CHECK(!p.block_runs(0, 2));
    CHECK(p.block_runs(2, 3));

    // Resolution on ResNet-50 (middles 64, 128, 256, 512): 1 value, one per stage, one per block.
    const auto r50 = drt::standard_resnet_config("resnet50");
    CHECK(p.mid_kept(r50, 0, 0) == 32);
    CHECK(p.mid_kept(r50, 1, 3) == 96);
    CHECK(p.mid_kept(r50, 3, 15) == 128);
    CHECK(drt::resnet_path::parse("expand=0.3").mid_kept(r50, 0, 1) == 19);   // round(19.2)
    CHECK(drt::resnet_path::parse("expand=0.001").mid_kept(r50, 0, 0) == 1);  // at least one channel
    CHECK(q.mid_kept(r50, 2, 9) == 32);
    std::string per_block = "mid=";
    for (int b = 0; b < 16; ++b) per_block += (b ? "," : "") + std::to_string(b + 1);
    const auto pb = drt::resnet_path::parse(per_block);
    CHECK(pb.mid_kept(r50, 2, 9) == 10);
    CHECK(pb.mid_kept(r50, 3, 15) == 16);
    CHECK(p.width_kept(r50, 2) == 768);
    CHECK(q.width_kept(r50, 2) == 1024);
  }

  TEST_CASE("resnet path: malformed text and impossible values are named") {
    using P = drt::resnet_path;
    using E = drt::invalid_input;
    CHECK_THROWS_WITH_AS(P::parse("width=a"), "path 'width=a': width=a is not a non-negative integer", E);
    CHECK_THROWS_WITH_AS(P::parse("expand=0.5,x"), "path 'expand=0.5,x': expand=x is not a number", E);
    CHECK_THROWS_WITH_AS(P::parse("expand=.5"), "path 'expand=.5': expand=.5 is not a number", E);
    CHECK_THROWS_WITH_AS(P::parse("expand=1..0"), "path 'expand=1..0': expand=1..0 is not a number", E);
    CHECK_THROWS_WITH_AS(P::parse("depths"), "path 'depths': cannot parse 'depths' (expected key=value)", E);
    CHECK_THROWS_WITH_AS(P::parse("fpn_out=3"),
                         "path 'fpn_out=3': key 'fpn_out' does not apply to resnet (keys: depths, mid, expand, width, precision)",
                         E);
    CHECK_THROWS_WITH_AS(P::parse("mid=3 mid=4"), "path 'mid=3 mid=4': key 'mid' given twice", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"expand", "half"}}),
                         "path JSON: key 'expand' has a malformed value \"half\"", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"skip", {{0, 1}}}}),
                         "path JSON: key 'skip' does not apply to resnet (keys: depths, mid, expand, width, precision)", E);
    CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json(3)), "path JSON 3 is not an object", E);

    const auto r50 = drt::standard_resnet_config("resnet50");  // depths 3,4,6,3; widths 256..2048; middles 64..512
    CHECK_THROWS_WITH_AS(P::parse("depths=3,5,6,3").validate(r50),
                         "path 'depths=3,5,6,3': stage 1 depth 5 exceeds the model's 4", E);
    CHECK_THROWS_WITH_AS(P::parse("depths=3,4,0,3").validate(r50),
                         "path 'depths=3,4,0,3': stage 2 depth 0 must be at least 1 (the first block sets the stage's "
                         "resolution and width)",
                         E);
    CHECK_THROWS_WITH_AS(P::parse("depths=3,4,6").validate(r50),
                         "path 'depths=3,4,6': depths has 3 entries, the model has 4 stages", E);
    CHECK_THROWS_WITH_AS(P::parse("mid=32 expand=0.5").validate(r50),
                         "path 'mid=32 expand=0.5': mid and expand both set the middle channels (give one)", E);
    CHECK_THROWS_WITH_AS(
        P::parse("mid=32,32").validate(r50),
        "path 'mid=32,32': mid has 2 entries, expected 1 (every block), 4 (one per stage) or 16 (one per "
        "block)",
        E);
    CHECK_THROWS_WITH_AS(P::parse("expand=1,1,1").validate(r50),
                         "path 'expand=1,1,1': expand has 3 entries, expected 1 (every block), 4 (one per stage) or 16 "
                         "(one per block)",
                         E);
    CHECK_THROWS_WITH_AS(P::parse("mid=64,129,256,512").validate(r50),
                         "path 'mid=64,129,256,512': block 1.0 mid=129 must be between 1 and 128", E);
    CHECK_THROWS_WITH_AS(P::parse("mid=0").validate(r50), "path 'mid=0': block 0.0 mid=0 must be between 1 and 64", E);
    CHECK_THROWS_WITH_AS(P::parse("expand=1.5").validate(r50),
                         "path 'expand=1.5': block 0.0 expand=1.5 must be a fraction in (0, 1]", E);
    CHECK_THROWS_WITH_AS(P::parse("expand=1,1,0,1").validate(r50),
                         "path 'expand=1,1,0,1': block 2.0 expand=0 must be a fraction in (0, 1]", E);
    CHECK_THROWS_WITH_AS(P::parse("width=256,512,1024").validate(r50),
                         "path 'width=256,512,1024': width has 3 entries, the model has 4 stages", E);
    CHECK_THROWS_WITH_AS(P::parse("width=256,513,1024,2048").validate(r50),
                         "path 'width=256,513,1024,2048': stage 1 width=513 must be between 1 and 512", E);
    CHECK_THROWS_WITH_AS(P::parse("width=0,512,1024,2048").validate(r50),
                         "path 'width=0,512,1024,2048': stage 0 width=0 must be between 1 and 256", E);
    CHECK_NOTHROW(P::parse("depths=1,1,1,1 expand=0.25 width=1,1,1,1").validate(r50));
    // Basic blocks: the middle is the block's width.
    const auto r18 = drt::standard_resnet_config("resnet18");
    CHECK_THROWS_WITH_AS(P::parse("mid=65").validate(r18), "path 'mid=65': block 0.0 mid=65 must be between 1 and 64",
                         E);
    CHECK_NOTHROW(P::parse("mid=64,128,256,512").validate(r18));
  }

  TEST_CASE("resnet (bottleneck): random dynamic paths equal the zeroed full model") {
    property_test(tiny_bottleneck(), 21, 1234, 20);
  }

  TEST_CASE("resnet (basic, downsample_in_first_stage): random dynamic paths equal the zeroed full model") {
    property_test(tiny_basic(), 31, 99, 16);
  }

  TEST_CASE("resnet (bottleneck, downsample_in_bottleneck): random dynamic paths equal the zeroed full model") {
    auto c = tiny_bottleneck();
    c.downsample_in_bottleneck = true;  // the stride on the 1x1 reduce: a strided 1x1 with a narrowed input
    property_test(c, 41, 7, 12);
  }

  // Issue 20: every path has its bf16 and int8 variants, read from one packed copy per precision: a
  // path's channel prefixes in low precision stay within the bound of the full model's error of the
  // same precision (measured with DRT_TEST_VERBOSE; the kernels are tested exactly on every prefix in
  // layers/test_gemm_int8.cpp).
  TEST_CASE("resnet: dynamic paths in bf16 and int8 against the same path in fp32") {
    auto dib = tiny_bottleneck();
    dib.downsample_in_bottleneck = true;  // a strided 1x1 reduce: the gathered form
    for (const auto& cfg : {tiny_bottleneck(), tiny_basic(), dib}) {
      const drt::resnet_model model(cfg, drt::random_source(5));
      const auto x = random_image(2, 3, 44, 38, 6);
      for (const char* base : {"", "depths=1,2,1,2 expand=0.5 width=8,16,24,30", "mid=3 width=5,9,13,17"}) {
        const auto ref = model.forward(x, drt::resnet_path::parse(base), true);
        for (const char* p : {"precision=bf16", "precision=int8"}) {
          const std::string path = std::string(base) + " " + p;
          CAPTURE(path);
          const auto out = model.forward(x, drt::resnet_path::parse(path), true);
          const auto& a = out.hidden_states.back();
          const auto& r = ref.hidden_states.back();
          REQUIRE(a.size() == r.size());
          const double e = compare(a.data(), r.data(), r.size()).rel_l2;
          if (std::getenv("DRT_TEST_VERBOSE")) MESSAGE(path << ": stage 4 rel L2 vs fp32 " << e);
          CHECK(e > 1e-5);
          CHECK(e <= (p[10] == 'i' ? 1.5e-2 : 5e-3));  // measured at most 5.0e-3 / 1.9e-3
        }
      }
    }
  }

  TEST_CASE("resnet: every layer has a profile scope of its timing name, and every scope is a layer") {
    for (const auto& cfg : {tiny_bottleneck(), tiny_basic()}) {
      const drt::resnet_model model(cfg, drt::random_source(3));
      const auto x = random_image(1, 3, 40, 36, 2);
      for (const char* path : {"", "depths=1,2,1,2 expand=0.5 width=8,16,24,30"}) {
        CAPTURE(path);
        const auto exec = model.compile(drt::resnet_path::parse(path));
        drt::layer_profiler prof;
        {
          drt::profiling_session session(prof);
          model.forward(x, false, exec);
          prof.end_run();
        }
        const std::set<std::string> timed(prof.names().begin(), prof.names().end());
        std::set<std::string> listed;
        for (const auto& l : model.layers(40, 36, exec)) {
          listed.insert(l.timing_name());
          if (l.macs > 0) CHECK_MESSAGE(timed.count(l.timing_name()) == 1, "no time for " << l.name);
        }
        for (const auto& name : timed)
          CHECK_MESSAGE(listed.count(name) == 1, "timed scope " << name << " is not a layer");
        CHECK(listed == timed);
      }
    }
  }

  TEST_CASE("resnet MACs: ResNet-50 at 640x480 (conv + linear) and path accounting") {
    const auto model = drt::resnet_model::with_random_weights(drt::standard_resnet_config("resnet50"));
    const auto full = model.layers(480, 640);
    const double total = drt::total_macs(full);
    MESSAGE("resnet50 640x480: " << total / 1e9 << " GMACs");
    CHECK(total == doctest::Approx(25.0e9).epsilon(0.005));
    CHECK(model.total_macs(480, 640) == total);
    CHECK(drt::total_macs(model.layers(224, 224)) == doctest::Approx(4.089e9).epsilon(0.005));
    // macs() (checkpoint names) is the MAC layers of layers()
    const auto named = model.macs(480, 640);
    std::size_t with_macs = 0;
    for (const auto& l : full) with_macs += l.macs > 0;
    CHECK(named.size() == with_macs);
    CHECK(named.front().name == "embedder.embedder");
    CHECK(named[1].name == "encoder.stages.0.layers.0.shortcut");
    CHECK(named.back().name == "classifier.1");
    const auto* c1 = find_layer(full, "stage1.block1.conv1");
    REQUIRE(c1 != nullptr);
    CHECK((c1->k == 64 && c1->c == 64 && c1->p == 120 && c1->q == 160 && c1->r == 1));
    const auto* c2 = find_layer(full, "stage2.block1.conv2");
    REQUIRE(c2 != nullptr);
    CHECK((c2->k == 128 && c2->c == 128 && c2->p == 60 && c2->q == 80 && c2->r == 3 && c2->stride == 2));
    CHECK(find_layer(full, "stem.conv")->macs == doctest::Approx(240.0 * 320 * 64 * 3 * 49));
    CHECK(find_layer(full, "classifier")->macs == doctest::Approx(2048.0 * 1000));
    CHECK(find_layer(full, "classifier")->region == drt::model_region::decoder);
    CHECK(find_layer(full, "stage4.block3.conv3")->region == drt::model_region::encoder);

    // A path: depth, middle and width choices propagate into every consumer.
    const auto exec = model.compile(drt::resnet_path::parse("depths=2,2,3,2 expand=0.5 width=128,512,768,2048"));
    const auto sub = model.layers(480, 640, exec);
    CHECK(find_layer(sub, "stage1.block3.conv1") == nullptr);  // beyond depth 2
    CHECK(find_layer(sub, "stage1.block1.conv1")->k == 32);    // half of 64
    CHECK(find_layer(sub, "stage1.block1.conv2")->c == 32);
    CHECK(find_layer(sub, "stage1.block1.conv3")->k == 128);  // the stage width
    CHECK(find_layer(sub, "stage1.block1.shortcut")->k == 128);
    CHECK(find_layer(sub, "stage1.block2.conv1")->c == 128);  // reads the narrowed stream
    CHECK(find_layer(sub, "stage2.block1.conv1")->c == 128);  // the next stage reads the kept width
    CHECK(find_layer(sub, "stage2.block1.shortcut")->c == 128);
    CHECK(find_layer(sub, "stage3.block1.shortcut")->k == 768);
    CHECK(find_layer(sub, "classifier")->c == 2048);
    const double rel = drt::total_macs(sub) / total;
    MESSAGE("resnet50 640x480 path 'depths=2,2,3,2 expand=0.5 width=128,512,768,2048': " << rel << " of the MACs");
    CHECK(rel < 0.5);
  }
}
