// Dynamic paths: text/JSON forms, validation messages, MAC accounting (paper Table III).
#include <doctest/doctest.h>

#include <drt/dynamic/path.hpp>
#include <drt/models/segformer.hpp>

#include "test_support.hpp"

TEST_SUITE("dynamic") {
TEST_CASE("segformer path: text form round trip and JSON") {
  const auto p = drt::segformer_path::parse("depths=2,3,5,3 fuse_in=1024  pred_in=768 skip=0.1,2.0 linear0_in=32");
  CHECK(p.depths == std::vector<int>{2, 3, 5, 3});
  CHECK(p.fuse_in == 1024);
  CHECK(p.pred_in == 768);
  CHECK(p.linear0_in == 32);
  REQUIRE(p.skip.size() == 2);
  CHECK(p.skip[0] == std::pair<int, int>{0, 1});
  CHECK(p.skip[1] == std::pair<int, int>{2, 0});
  CHECK(p.to_string() == "depths=2,3,5,3 skip=0.1,2.0 fuse_in=1024 pred_in=768 linear0_in=32");
  CHECK(drt::segformer_path::parse(p.to_string()).to_string() == p.to_string());
  CHECK(drt::segformer_path::from_json(p.to_json()).to_string() == p.to_string());
  CHECK(drt::segformer_path::parse("").to_string() == "full");
  CHECK(!p.block_runs(0, 1));
  CHECK(!p.block_runs(1, 3));  // beyond depth 3
  CHECK(p.block_runs(1, 2));
}

TEST_CASE("segformer path: malformed text and impossible values are named") {
  using P = drt::segformer_path;
  CHECK_THROWS_WITH_AS(P::parse("fuse_in=abc"), "path 'fuse_in=abc': fuse_in=abc is not a non-negative integer",
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("depths"), "path 'depths': cannot parse 'depths' (expected key=value)", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("bottleneck_in=512"),
                       "path 'bottleneck_in=512': key 'bottleneck_in' does not apply to segformer (keys: depths, skip, "
                       "fuse_in, pred_in, linear0_in, propagate, mlp, heads, tokens, precision)",
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("fuse_in=0"), "path 'fuse_in=0': fuse_in=0 keeps no channels", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("skip=3"), "path 'skip=3': skip entry '3' must be stage.block (e.g. 0.1)",
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("fuse_in=1 fuse_in=2"), "path 'fuse_in=1 fuse_in=2': key 'fuse_in' given twice",
                       drt::invalid_input);
  const auto b2 = drt::standard_segformer_config("segformer-b2");
  CHECK_THROWS_WITH_AS(P::parse("depths=4,4,6,3").validate(b2),
                       "path 'depths=4,4,6,3': stage 0 depth 4 exceeds the model's 3", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("depths=3,4,6").validate(b2),
                       "path 'depths=3,4,6': depths has 3 entries, the model has 4 stages", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("fuse_in=4000").validate(b2),
                       "path 'fuse_in=4000': fuse_in=4000 must be between 1 and 3072", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("pred_in=769").validate(b2),
                       "path 'pred_in=769': pred_in=769 must be between 1 and 768", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::parse("skip=1.4").validate(b2),
                       "path 'skip=1.4': skipped block 1.4 does not exist (depths 3,4,6,3)", drt::invalid_input);
  CHECK_THROWS_WITH_AS(P::from_json(nlohmann::json{{"fuse_in", "x"}}),
                       "path JSON: key 'fuse_in' has a malformed value \"x\"", drt::invalid_input);
}

TEST_CASE("segformer MACs: paper numbers and Table III paths on B2 512x512") {
  // Only the layer list is needed: build the B0/B1/B2 geometry with synthetic weights, with the
  // decoder as published (the paper's graph; the folded graph is checked below).
  drt::segformer_options published;
  published.fold_decoder = false;
  const auto b2 =
      drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150), 0, published);
  const auto full = b2.layers(512, 512);
  const double total = drt::total_macs(full);
  CHECK(total == doctest::Approx(62.3e9).epsilon(0.005));
  auto share = [&](const char* name) {
    for (const auto& l : full)
      if (l.name == name) return l.macs / total;
    FAIL("no layer " << name);
    return 0.0;
  };
  CHECK(share("Conv2DFuse") == doctest::Approx(0.62).epsilon(0.01));
  CHECK(share("Conv2DPred") == doctest::Approx(0.030).epsilon(0.05));
  CHECK(share("DecodeLinear0") == doctest::Approx(0.013).epsilon(0.05));

  struct row { const char* path; double paper, propagated; };
  // Paper Table III relative MACs; `propagate=0` counts them as the paper does (decoder linears in full).
  // drt's default also removes the dropped decoder-linear outputs, saving a little more.
  const row rows[] = {{"depths=3,4,6,3 fuse_in=3072", 1.000, 1.000}, {"depths=3,4,6,3 fuse_in=1920", 0.767, 0.751},
                      {"depths=2,4,6,3 fuse_in=1664", 0.695, 0.676}, {"depths=2,3,6,3 fuse_in=1408", 0.626, 0.606},
                      {"depths=2,3,5,3 fuse_in=1024", 0.527, 0.505}, {"depths=3,2,5,2 fuse_in=896", 0.491, 0.469},
                      {"depths=2,3,4,3 fuse_in=512", 0.401, 0.377}};
  for (const auto& r : rows) {
    const auto p = drt::segformer_path::parse(r.path);
    auto q = p;
    q.propagate = false;
    const double rel_paper = drt::total_macs(b2.layers(512, 512, b2.compile(q))) / total;
    const double rel_drt = drt::total_macs(b2.layers(512, 512, b2.compile(p))) / total;
    INFO(r.path << ": paper accounting " << rel_paper << ", propagated " << rel_drt);
    CHECK(std::round(rel_paper * 1000) / 1000 == doctest::Approx(r.paper));
    CHECK(std::round(rel_drt * 1000) / 1000 == doctest::Approx(r.propagated));
  }
  const auto b0 =
      drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b0", 150), 0, published);
  CHECK(drt::total_macs(b0.layers(512, 512)) == doctest::Approx(8.4e9).epsilon(0.01));
  const auto b1 =
      drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b1", 150), 0, published);
  CHECK(drt::total_macs(b1.layers(512, 512)) == doctest::Approx(15.9e9).epsilon(0.01));
}
}

TEST_CASE("segformer MACs with the decoder folded: B0/B1/B2 512x512 and Table III's paths on B2") {
  // The folded graph (the default): linear_c + Conv2DFuse become per-stage GEMMs D x C_s at each
  // stage's own resolution. B2's 62.34 G become 23.68 G, less than the paper's smallest path g
  // (0.401 x 62.34 = 25.0 G); fuse_in then saves only the stage GEMMs whose whole slot it drops.
  const auto b2 = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150));
  REQUIRE(b2.decoder_folded());
  const double total = drt::total_macs(b2.layers(512, 512));
  CHECK(total == doctest::Approx(23.683e9).epsilon(0.0005));
  for (const auto& l : b2.layers(512, 512)) CHECK(l.name != "Conv2DFuse");
  struct row { const char* path; double folded; };
  const row rows[] = {{"depths=3,4,6,3 fuse_in=3072", 1.000}, {"depths=3,4,6,3 fuse_in=1920", 0.966},
                      {"depths=2,4,6,3 fuse_in=1664", 0.910}, {"depths=2,3,6,3 fuse_in=1408", 0.850},
                      {"depths=2,3,5,3 fuse_in=1024", 0.791}, {"depths=3,2,5,2 fuse_in=896", 0.766},
                      {"depths=2,3,4,3 fuse_in=512", 0.722},  {"pred_in=384", 0.927}};
  for (const auto& r : rows) {
    const double rel = drt::total_macs(b2.layers(512, 512, b2.compile(drt::segformer_path::parse(r.path)))) / total;
    INFO(r.path << ": " << rel);
    CHECK(std::round(rel * 1000) / 1000 == doctest::Approx(r.folded));
  }
  // propagate only changes the unfolded graph's accounting
  CHECK(drt::total_macs(b2.layers(512, 512, b2.compile(drt::segformer_path::parse("fuse_in=1920 propagate=0")))) ==
        drt::total_macs(b2.layers(512, 512, b2.compile(drt::segformer_path::parse("fuse_in=1920")))));
  // A hand-made execution beyond the model is refused, not counted.
  drt::segformer_execution bad;
  bad.head.pred_in = 769;
  CHECK_THROWS_WITH_AS(b2.layers(512, 512, bad),
                       "decode head: channels fuse_in=3072 (max 3072), pred_in=769 (max 768), linear0_in=64 (max 64) "
                       "exceed the model",
                       drt::invalid_input);
  const auto b0 = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b0", 150));
  CHECK(drt::total_macs(b0.layers(512, 512)) == doctest::Approx(4.093e9).epsilon(0.001));
  const auto b1 = drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b1", 150));
  CHECK(drt::total_macs(b1.layers(512, 512)) == doctest::Approx(11.583e9).epsilon(0.001));
}
