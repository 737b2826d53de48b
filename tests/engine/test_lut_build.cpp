// How a lookup table's models were built (engine/lut_build.hpp): recorded per model by drt sweep,
// read back by every user of a table (drt segment --lut, the deadline benchmark, the examples), kept
// by drt lut merge; a table without the record means the defaults.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include <drt/engine/lut.hpp>
#include <drt/engine/lut_build.hpp>

namespace {
drt::lookup_table table_of(const char* model) {
  drt::lookup_table t;
  drt::lut_entry e;
  e.model = model;
  e.path = "full";
  e.latency_ms = 10;
  e.latency_p95_ms = 12;
  e.miou = 0.5;
  e.decoder_folded = true;
  t.entries.push_back(e);
  t.machine = drt::machine_info::current();
  t.info["reference"] = {{"model", model}, {"path", "full"}, {"miou", 0.5}};
  return t;
}
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("lut_build: the channel order and int8 ranges a table was measured with come back with it") {
    auto t = table_of("b0");
    // no record: the defaults (weight order, each call's own int8 range), the decoder as the entries say
    const auto d = drt::lut_build(t, "b0", "lut 't.json'");
    CHECK(d.fold_decoder);
    CHECK(d.order.method == "weight");
    CHECK(d.order.groups.empty());
    CHECK(d.int8 == nullptr);

    drt::segformer_options b;
    b.order.method = "calibrated";
    b.order.calibration = "camvid-calib (40 images)";
    b.order.groups["segformer.encoder.block.0.0.mlp"] = {2, 0, 1};
    auto c = std::make_shared<drt::int8_calibration>();
    c->method = "percentile";
    c->source = "camvid-calib";
    c->ranges["segformer.encoder.block.0.0.mlp.dense1"] = {-2.5f, 3.25f};
    b.int8 = c;
    drt::record_lut_build(t, "b0", b);
    CHECK(t.info["builds"]["b0"]["int8_ranges"]["method"] == "percentile");
    // through the file, as drt segment --lut reads it
    const auto back = drt::lut_build(drt::lut_from_json(t.to_json(), "lut 't.json'"), "b0", "lut 't.json'");
    CHECK(back.order.method == "calibrated");
    CHECK(back.order.fingerprint() == b.order.fingerprint());
    REQUIRE(back.int8 != nullptr);
    CHECK(back.int8->method == "percentile");
    CHECK(back.int8->ranges.at("segformer.encoder.block.0.0.mlp.dense1") == std::make_pair(-2.5f, 3.25f));

    // drt lut merge keeps each table's record
    auto other = table_of("b1");
    drt::record_lut_build(other, "b1", drt::segformer_options{});
    const auto merged = drt::merge_luts({t, other}, "drt lut merge");
    CHECK(merged.info["builds"]["b0"] == t.info["builds"]["b0"]);
    CHECK(merged.info["builds"]["b1"]["int8_ranges"].is_null());
    REQUIRE(drt::lut_build(merged, "b0", "m").int8 != nullptr);
    CHECK(drt::lut_build(merged, "b1", "m").int8 == nullptr);

    // malformed records are refused by name
    auto bad = t;
    bad.info["builds"]["b0"]["int8_ranges"] = {{"ranges", {{"x", {3, 1}}}}};
    CHECK_THROWS_WITH_AS(drt::lut_build(bad, "b0", "lut 'bad.json'"),
                         "lut 'bad.json': builds of model 'b0': int8_ranges: range of layer 'x' [3.000000, 1.000000] "
                         "must be finite with lo <= hi",
                         drt::invalid_input);
    bad.info["builds"]["b0"] = 3;
    CHECK_THROWS_WITH_AS(drt::lut_build(bad, "b0", "lut 'bad.json'"), "lut 'bad.json': builds of model 'b0' is not an object",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::lut_build(t, "b7", "lut 't.json'"), "lut 't.json': no entry uses model 'b7'",
                         drt::invalid_input);
  }
}
