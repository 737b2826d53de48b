// The one path language (dynamic/knobs.hpp): every family's text and JSON forms, validation and knob
// listing come from its knob table. Round trips for every knob kind of the three families, the
// generic errors (unknown key naming the family's keys, duplicate keys, malformed values), the knob
// listing a sweep enumerates, and the paths drt has written (lookup tables, results) read back.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <drt/dynamic/knobs.hpp>
#include <drt/dynamic/path.hpp>
#include <drt/dynamic/resnet_path.hpp>
#include <drt/dynamic/upernet_path.hpp>

#include "test_support.hpp"

namespace {

drt::segformer_config tiny_segformer() {  // B0's geometry, no weights needed
  drt::segformer_config c;
  c.depths = {2, 2, 2, 2};
  c.hidden_sizes = {32, 64, 160, 256};
  c.decoder_hidden_size = 256;
  c.mlp_ratios = {4, 4, 4, 4};
  c.num_attention_heads = {1, 2, 5, 8};
  return c;
}

/// text -> struct -> text is the identity on the canonical form, and struct -> JSON -> struct too.
template <class Path>
void round_trip(const std::string& canonical) {
  CAPTURE(canonical);
  const Path p = Path::parse(canonical);
  CHECK(p.to_string() == canonical);
  const nlohmann::json j = p.to_json();
  CHECK(Path::from_json(j).to_string() == canonical);
  CHECK(Path::from_json(nlohmann::json::parse(j.dump())).to_json() == j);  // through the serialized text
  CHECK(drt::path_to_string(p) == canonical);
  CHECK(drt::path_to_json(p) == j);
}

template <class Path>
std::vector<std::string> knob_names() {
  std::vector<std::string> out;
  for (const auto& k : Path::family().knobs) out.emplace_back(k.name);
  return out;
}

const drt::knob_info& find(const std::vector<drt::knob_info>& ks, const std::string& name) {
  for (const auto& k : ks)
    if (k.name == name) return k;
  FAIL("no knob " << name);
  return ks.front();
}

}  // namespace

TEST_SUITE("dynamic") {
  TEST_CASE("knobs: the tables name each family's keys in canonical order") {
    CHECK(drt::segformer_path::family().keys() == drt::segformer_path::keys);
    CHECK(drt::upernet_path::family().keys() == drt::upernet_path::keys);
    CHECK(drt::resnet_path::family().keys() == drt::resnet_path::keys);
    using K = drt::knob_kind;
    const auto& s = drt::segformer_path::family().knobs;
    REQUIRE(s.size() == 10);
    CHECK(s[6].kind() == K::fractions);
    CHECK(s[7].kind() == K::fractions);  // heads
    CHECK(s[8].kind() == K::fractions);  // tokens
    CHECK(s[9].kind() == K::precision);
    CHECK(s[0].kind() == K::int_list);
    CHECK(s[1].kind() == K::skip_pairs);
    CHECK(s[2].kind() == K::integer);
    CHECK(s[5].kind() == K::boolean);
    CHECK(drt::resnet_path::family().knobs[2].kind() == K::fractions);
    CHECK(knob_names<drt::upernet_path>() ==
          std::vector<std::string>{"depths", "skip", "bottleneck_in", "fpn_out", "fpn_in", "pred_in", "mlp", "heads",
                                   "precision"});
    for (const auto& k : drt::resnet_path::family().knobs) CHECK(std::string(k.prunes).size() > 0);
  }

  TEST_CASE("knobs: text <-> struct <-> JSON round trips, every kind of every family") {
    // integer, int list, skip pairs, bool
    round_trip<drt::segformer_path>("depths=2,1,0,2 skip=0.1,3.0 fuse_in=640 pred_in=96 linear0_in=16 propagate=0");
    round_trip<drt::segformer_path>("skip=1.1");
    round_trip<drt::segformer_path>("full");
    round_trip<drt::segformer_path>("mlp=0.5");
    round_trip<drt::segformer_path>("depths=2,2,2,2 mlp=1,1,0.75,0.5");
    round_trip<drt::upernet_path>("depths=2,2,4,2 skip=2.1,0.0 bottleneck_in=1024 fpn_out=256 fpn_in=384 pred_in=256");
    round_trip<drt::upernet_path>("fpn_in=1");
    // fractions, including the ones %g would print with an exponent
    round_trip<drt::resnet_path>("depths=2,3,4,2 expand=0.5,0.75,1,0.25 width=128,256,768,2048");
    round_trip<drt::resnet_path>("mid=1");
    round_trip<drt::resnet_path>("expand=0.0000001,999999999999,0.0001234");
    // keys in any order, extra spaces, "propagate=1" and "full" are the defaults
    CHECK(drt::segformer_path::parse("  propagate=1 pred_in=8   depths=1,1,1,1 ").to_string() ==
          "depths=1,1,1,1 pred_in=8");
    CHECK(drt::segformer_path::parse("full").to_string() == "full");
    // a fraction knob that keeps every unit is the full model's value: one path, one name
    CHECK(drt::segformer_path::parse("mlp=1").to_string() == "full");
    CHECK(drt::segformer_path::parse("depths=2,2,2,2 mlp=1,1,1,1").to_string() == "depths=2,2,2,2");
    CHECK(drt::segformer_path::from_json(nlohmann::json::parse(R"({"mlp":[1,1]})")).to_string() == "full");
    CHECK(drt::segformer_path::parse("mlp=1,0.5").to_string() == "mlp=1,0.5");
    {
      drt::segformer_path g;
      drt::set_path_knob(g, "mlp", {1.0});  // as a sweep's knob grid sets it
      CHECK(g.to_string() == "full");
      CHECK(g.to_json() == nlohmann::json::object());
    }
    CHECK(drt::segformer_path::parse("").to_json() == nlohmann::json::object());
    CHECK(drt::resnet_path::from_json(nlohmann::json::object()).to_string() == "full");
    // the JSON form's shape per kind
    const auto j = drt::segformer_path::parse("depths=1,2,2,2 skip=0.0 fuse_in=5 propagate=0").to_json();
    CHECK(j == nlohmann::json::parse(R"({"depths":[1,2,2,2],"skip":[[0,0]],"fuse_in":5,"propagate":false})"));
    CHECK(drt::resnet_path::parse("expand=0.5").to_json() == nlohmann::json::parse(R"({"expand":[0.5]})"));
    // the JSON form takes integers for fractions, and false/true for the bool
    CHECK(drt::resnet_path::from_json(nlohmann::json::parse(R"({"expand":[1,0.5]})")).to_string() == "expand=1,0.5");
    CHECK(drt::segformer_path::from_json(nlohmann::json::parse(R"({"propagate":true})")).to_string() == "full");
  }

  TEST_CASE("knobs: unknown and duplicate keys, malformed values, per family") {
    using E = drt::invalid_input;
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("mid=3"),
                         "path 'mid=3': key 'mid' does not apply to segformer (keys: depths, skip, fuse_in, pred_in, "
                         "linear0_in, propagate, mlp, heads, tokens, precision)",
                         E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::parse("propagate=0"),
                         "path 'propagate=0': key 'propagate' does not apply to upernet (keys: depths, skip, "
                         "bottleneck_in, fpn_out, fpn_in, pred_in, mlp, heads, precision)",
                         E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::from_json(nlohmann::json{{"fuse_in", 3}}),
                         "path JSON: key 'fuse_in' does not apply to resnet (keys: depths, mid, expand, width, precision)", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("skip=0.1 depths=1,1,1,1 skip=0.0"),
                         "path 'skip=0.1 depths=1,1,1,1 skip=0.0': key 'skip' given twice", E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse("expand=0.5 expand=0.5"),
                         "path 'expand=0.5 expand=0.5': key 'expand' given twice", E);
    CHECK_THROWS_WITH_AS(drt::upernet_path::parse("depths=2 depths=2"), "path 'depths=2 depths=2': key 'depths' given twice",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("full fuse_in=3"),
                         "path 'full fuse_in=3': cannot parse 'full' (expected key=value)", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("propagate=yes"), "path 'propagate=yes': propagate=yes must be 0 or 1",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("linear0_in=0"), "path 'linear0_in=0': linear0_in=0 keeps no channels",
                         E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse("width=1,-2"), "path 'width=1,-2': width=-2 is not a non-negative integer",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("skip=0.1,"), "path 'skip=0.1,': skip entry '' must be stage.block (e.g. 0.1)",
                         E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(nlohmann::json{{"depths", 3}}),
                         "path JSON: key 'depths' has a malformed value 3", E);
    CHECK_THROWS_WITH_AS(drt::resnet_path::from_json(nlohmann::json{{"expand", 0.5}}),
                         "path JSON: key 'expand' has a malformed value 0.5", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(nlohmann::json{{"propagate", "0"}}),
                         "path JSON: key 'propagate' has a malformed value \"0\"", E);
  }

  TEST_CASE("knobs: validation from the table's ranges") {
    using E = drt::invalid_input;
    const auto c = tiny_segformer();
    CHECK_NOTHROW(drt::segformer_path::parse("depths=0,2,1,2 skip=3.1 fuse_in=1024 pred_in=256 linear0_in=32").validate(c));
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("linear0_in=33").validate(c),
                         "path 'linear0_in=33': linear0_in=33 must be between 1 and 32", E);
    // a negative depth (only the JSON form can spell one) is refused in every family
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(nlohmann::json{{"depths", {1, -1, 1, 1}}}).validate(c),
                         "path 'depths=1,-1,1,1': stage 1 depth -1 is negative", E);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(nlohmann::json{{"skip", {{0, -1}}}}).validate(c),
                         "path 'skip=0.-1': skipped block 0.-1 does not exist (depths 2,2,2,2)", E);
    const auto r18 = drt::standard_resnet_config("resnet18");
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse("expand=1,1,1,1,1,1,1,0").validate(r18),
                         "path 'expand=1,1,1,1,1,1,1,0': block 3.1 expand=0 must be a fraction in (0, 1]", E);
    CHECK_NOTHROW(drt::resnet_path::parse("mid=1,2,3,4,5,6,7,8").validate(r18));
  }

  TEST_CASE("knobs: path_knobs lists what a sweep enumerates") {
    using K = drt::knob_kind;
    using L = drt::knob_layout;
    const auto s = drt::path_knobs<drt::segformer_path>(tiny_segformer());
    REQUIRE(s.size() == 10);
    const auto& tokens = find(s, "tokens");
    CHECK(tokens.layout == L::per_block);
    REQUIRE(tokens.entries.size() == 8);
    CHECK(tokens.entries.front().range.min == 0.25);  // one token per 2x2 window stays
    CHECK(tokens.step == 0);                           // continuous: the grid is the image's
    const auto& heads = find(s, "heads");
    CHECK(heads.kind == K::fractions);
    CHECK(heads.layout == L::per_block);
    REQUIRE(heads.entries.size() == 8);
    CHECK(heads.entries.back().range.step == doctest::Approx(1.0 / 8));  // stage 3: 8 heads
    const auto& mlp = find(s, "mlp");
    CHECK(mlp.kind == K::fractions);
    CHECK(mlp.layout == L::per_block);
    REQUIRE(mlp.entries.size() == 8);  // one per block
    CHECK(mlp.entries.back().range.step == doctest::Approx(1.0 / 1024));
    CHECK(mlp.min_exclusive);
    const auto& depths = find(s, "depths");
    CHECK(depths.kind == K::int_list);
    CHECK(depths.layout == L::per_stage);
    REQUIRE(depths.entries.size() == 4);
    CHECK(depths.entries[3].stage == 3);
    CHECK(depths.entries[3].range.max == 2);
    CHECK(depths.min == 0);
    const auto& fuse = find(s, "fuse_in");
    CHECK(fuse.kind == K::integer);
    CHECK(fuse.layout == L::scalar);
    CHECK(fuse.min == 1);
    CHECK(fuse.max == 1024);
    CHECK(fuse.step == 1);
    CHECK(fuse.doc().find("Conv2DFuse") != std::string::npos);
    CHECK(!fuse.propagates.empty());
    const auto& skip = find(s, "skip");
    CHECK(skip.layout == L::pairs);
    CHECK(skip.entries.size() == 4);
    CHECK(skip.max == 1);  // block indices 0..1
    const auto& prop = find(s, "propagate");
    CHECK(prop.kind == K::boolean);
    CHECK((prop.min == 0 && prop.max == 1));

    const auto r50 = drt::standard_resnet_config("resnet50");
    const auto r = drt::path_knobs<drt::resnet_path>(r50);
    const auto& mid = find(r, "mid");
    CHECK(mid.layout == L::per_block);
    CHECK(mid.entries.size() == r50.num_blocks());
    CHECK(mid.entries.back().stage == 3);
    CHECK(mid.entries.back().block == 2);
    CHECK(mid.entries.back().range.max == 512);
    const auto& expand = find(r, "expand");
    CHECK(expand.kind == K::fractions);
    CHECK(expand.min_exclusive);
    CHECK(expand.max == 1);
    CHECK(find(r, "width").max == 2048);
    CHECK(find(r, "depths").min == 1);

    auto t = drt::standard_upernet_swin_config("swin-t-upernet");
    const auto u = drt::path_knobs<drt::upernet_path>(t);
    CHECK(find(u, "bottleneck_in").max == 2048);
    CHECK(u.size() == 9);
    CHECK(find(u, "precision").kind == K::precision);  // issue 20: the Swin backbone's arithmetic
    CHECK(find(u, "heads").entries.back().range.step == doctest::Approx(1.0 / 24));  // Swin-T stage 3: 24 heads
    CHECK(find(u, "mlp").entries.size() == 12);  // Swin-T: 2 + 2 + 6 + 2 blocks
    CHECK(find(u, "mlp").entries.back().range.step == doctest::Approx(1.0 / 3072));
    t.backbone.out_indices = {4};  // one level: no fpn convs, so no fpn_in knob
    const auto one = drt::path_knobs<drt::upernet_path>(t);
    CHECK(one.size() == 8);
    for (const auto& k : one) CHECK(k.name != "fpn_in");
  }

  TEST_CASE("knobs: set_path_knob sets a knob by name from numbers") {
    drt::segformer_path s;
    drt::set_path_knob(s, "fuse_in", 512);
    drt::set_path_knob(s, "depths", std::vector<double>{1, 2, 2, 1});
    drt::set_path_knob(s, "propagate", 0);
    CHECK(s.to_string() == "depths=1,2,2,1 fuse_in=512 propagate=0");
    drt::resnet_path r;
    drt::set_path_knob(r, "expand", 0.25);
    CHECK(r.to_string() == "expand=0.25");
    using E = drt::invalid_input;
    CHECK_THROWS_WITH_AS(drt::set_path_knob(r, "fuse_in", 3),
                         "path: key 'fuse_in' does not apply to resnet (keys: depths, mid, expand, width, precision)", E);
    CHECK_THROWS_WITH_AS(drt::set_path_knob(s, "pred_in", std::vector<double>{1, 2}),
                         "path: key 'pred_in' takes one value, got 2", E);
    CHECK_THROWS_WITH_AS(drt::set_path_knob(s, "skip", 1),
                         "path: key 'skip' holds stage.block pairs: set it through the text form", E);
  }

  TEST_CASE("knobs: every path drt has written reads back unchanged") {
    const std::string src = drt_test::source_dir();
    const std::vector<std::string> files = {"/data/models/segformer-b0-camvid/lut.json",
                                            "/docs/results/lut_segformer_b0_camvid.json",
                                            "/docs/results/lut_segformer_b0_camvid_int8.json",
                                            "/docs/results/lut_segformer_camvid.json",
                                            "/docs/results/lut_segformer_camvid_hybrid.json"};
    std::size_t paths = 0;
    for (const auto& f : files) {
      std::ifstream in(src + f);
      REQUIRE_MESSAGE(in.good(), "missing " << src + f);
      const auto j = nlohmann::json::parse(in);
      for (const auto& e : j.at("entries")) {
        const std::string text = e.at("path").get<std::string>();
        CAPTURE(text);
        const auto p = drt::segformer_path::parse(text);
        CHECK(p.to_string() == text);
        CHECK(drt::segformer_path::from_json(p.to_json()).to_string() == text);
        ++paths;
      }
    }
    CHECK(paths > 100);
  }
}
