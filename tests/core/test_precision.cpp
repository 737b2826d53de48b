// precision and precision_plan (core/precision.hpp): the text form, and the path knob that carries it
// (`precision=` in the path languages of SegFormer, Swin + UPerNet and ResNet: text, JSON, validation).
#include <doctest/doctest.h>

#include <drt/core/precision.hpp>
#include <drt/dynamic/path.hpp>
#include <drt/models/segformer.hpp>
#include <drt/dynamic/resnet_path.hpp>
#include <drt/dynamic/upernet_path.hpp>

TEST_SUITE("core") {
  TEST_CASE("precision_plan: whole model, per region, canonical text and errors") {
    const auto all = drt::precision_plan::parse("int8", "t");
    CHECK(all.all == drt::precision::int8);
    CHECK(all.regions.empty());
    CHECK(all.of("encoder") == drt::precision::int8);
    CHECK(all.to_string() == "int8");
    const auto mixed = drt::precision_plan::parse("encoder:int8,decoder:bf16", "t");
    CHECK(mixed.of("encoder") == drt::precision::int8);
    CHECK(mixed.of("decoder") == drt::precision::bf16);
    CHECK(mixed.of("elsewhere") == drt::precision::fp32);
    CHECK(mixed.to_string() == "encoder:int8,decoder:bf16");
    CHECK(mixed.uses(drt::precision::bf16));
    CHECK_FALSE(mixed.is_fp32());
    const auto rest = drt::precision_plan::parse("all:bf16,decoder:fp32", "t");
    CHECK(rest.of("encoder") == drt::precision::bf16);
    CHECK(rest.of("decoder") == drt::precision::fp32);
    CHECK(rest.to_string() == "all:bf16,decoder:fp32");
    CHECK(drt::precision_plan::parse(rest.to_string(), "t") == rest);
    CHECK(drt::precision_plan::parse("float32", "t").is_fp32());
    CHECK(drt::precision_plan::parse("encoder:fp32", "t").is_fp32());
    CHECK_THROWS_WITH_AS(drt::precision_plan::parse("int4", "where"),
                         "where: precision 'int4' is not one of fp32, bf16, int8", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::precision_plan::parse("encoder:int8,encoder:bf16", "w"),
                         "w: precision region 'encoder' given twice", drt::invalid_input);
    // the whole-model value first and bare, then regions
    const auto first = drt::precision_plan::parse("int8,attention:fp32", "t");
    CHECK(first.all == drt::precision::int8);
    CHECK(first.of("encoder") == drt::precision::int8);
    REQUIRE(first.named("attention"));
    CHECK(*first.named("attention") == drt::precision::fp32);
    CHECK_FALSE(first.named("encoder"));
    CHECK(first.to_string() == "all:int8,attention:fp32");
    CHECK(drt::precision_plan::parse(first.to_string(), "t") == first);
    CHECK_THROWS_WITH_AS(drt::precision_plan::parse("encoder:int8,bf16", "w"),
                         "w: precision entry 'bf16' must be region:precision (e.g. encoder:int8)", drt::invalid_input);
  }

  TEST_CASE("segformer path: the precision knob in text, JSON and validation") {
    const auto c = drt::standard_segformer_config("segformer-b0");
    const auto p = drt::segformer_path::parse("mlp=0.5 precision=encoder:int8,decoder:bf16");
    CHECK(p.precision.of("encoder") == drt::precision::int8);
    CHECK(p.to_string() == "mlp=0.5 precision=encoder:int8,decoder:bf16");
    CHECK(p.to_json().dump() == R"({"mlp":[0.5],"precision":"encoder:int8,decoder:bf16"})");
    CHECK(drt::segformer_path::from_json(p.to_json()).to_string() == p.to_string());
    p.validate(c);
    // fp32 is the full model's value, however written (one path, one name)
    CHECK(drt::segformer_path::parse("precision=fp32").to_string() == "full");
    CHECK(drt::segformer_path::parse("precision=encoder:fp32").to_json().dump() == "{}");
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("precision=head:int8").validate(c),
                         "path 'precision=head:int8': precision region 'head' is not a region of segformer "
                         "(regions: encoder,decoder,attention)",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::segformer_path::parse("precision=fp16"),
                         "path 'precision=fp16': precision 'fp16' is not one of fp32, bf16, int8", drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::segformer_path::from_json(nlohmann::json::parse(R"({"precision": 8})")),
                         "path JSON: key 'precision' has a malformed value 8", drt::invalid_input);
    // the attention products: a region of their own, in any precision
    const auto a = drt::segformer_path::parse("precision=int8,attention:fp32");
    CHECK(a.to_string() == "precision=all:int8,attention:fp32");
    a.validate(c);
    CHECK(a.attention_arithmetic() == drt::precision::fp32);
    drt::segformer_path::parse("precision=attention:bf16").validate(c);
    const auto a8 = drt::segformer_path::parse("precision=int8,attention:int8");
    a8.validate(c);
    CHECK(a8.attention_arithmetic() == drt::precision::int8);
    CHECK(drt::segformer_path::parse("precision=encoder:fp32,attention:int8").attention_arithmetic() ==
          drt::precision::int8);
    drt::segformer_path q;
    drt::set_path_knob(q, "precision", 2.0);  // a sweep's numeric value: 0 fp32, 1 bf16, 2 int8
    CHECK(q.to_string() == "precision=int8");
    CHECK_THROWS_AS(drt::set_path_knob(q, "precision", 3.0), drt::invalid_input);
    const auto knobs = drt::path_knobs<drt::segformer_path>(c);
    REQUIRE(knobs.back().name == "precision");
    CHECK(knobs.back().kind == drt::knob_kind::precision);
    CHECK(knobs.back().max == 2);
  }

  TEST_CASE("upernet path: the precision knob lowers the Swin backbone (region encoder)") {
    const auto c = drt::standard_upernet_swin_config("swin-t-upernet");
    const auto p = drt::upernet_path::parse("precision=bf16 depths=2,2,4,2");
    CHECK(p.precision.of("encoder") == drt::precision::bf16);
    CHECK(p.to_string() == "depths=2,2,4,2 precision=bf16");
    CHECK(drt::upernet_path::from_json(p.to_json()).to_string() == p.to_string());
    p.validate(c);
    drt::upernet_path::parse("precision=encoder:int8").validate(c);
    CHECK(drt::upernet_path::parse("precision=fp32").to_string() == "full");
    CHECK_THROWS_WITH_AS(drt::upernet_path::parse("precision=decoder:bf16").validate(c),
                         "path 'precision=decoder:bf16': precision region 'decoder' is not a region of upernet "
                         "(regions: encoder)",
                         drt::invalid_input);
  }

  TEST_CASE("resnet path: the precision knob lowers the 1x1 convs (region encoder)") {
    const auto c = drt::standard_resnet_config("resnet50");
    const auto p = drt::resnet_path::parse("precision=int8 expand=0.5");
    CHECK(p.precision.of("encoder") == drt::precision::int8);
    CHECK(p.to_string() == "expand=0.5 precision=int8");
    CHECK(drt::resnet_path::from_json(p.to_json()).to_string() == p.to_string());
    p.validate(c);
    drt::resnet_path::parse("precision=encoder:bf16").validate(c);
    CHECK(drt::resnet_path::parse("precision=fp32").to_string() == "full");
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse("precision=decoder:int8").validate(c),
                         "path 'precision=decoder:int8': precision region 'decoder' is not a region of resnet "
                         "(regions: encoder)",
                         drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt::resnet_path::parse("precision=int4"),
                         doctest::Contains("precision 'int4' is not one of fp32, bf16, int8"), drt::invalid_input);
  }
}
