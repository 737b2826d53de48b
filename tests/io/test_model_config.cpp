// config.json reader for SegFormer: every graph-changing field, and the errors for bad configs.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include <drt/io/model_config.hpp>
#include <drt/models/segformer.hpp>

#include "test_support.hpp"

using namespace drt_test;

namespace {
nlohmann::json b0_json() {
  return nlohmann::json::parse(R"({"model_type":"segformer","num_channels":3,"num_encoder_blocks":4,
    "depths":[2,2,2,2],"sr_ratios":[8,4,2,1],"hidden_sizes":[32,64,160,256],"patch_sizes":[7,3,3,3],
    "strides":[4,2,2,2],"num_attention_heads":[1,2,5,8],"mlp_ratios":[4,4,4,4],"decoder_hidden_size":256,
    "hidden_act":"gelu","layer_norm_eps":1e-6,"id2label":{"0":"sky","1":"road","2":"car"}})");
}
}  // namespace

TEST_SUITE("io") {
TEST_CASE("segformer config: fields read") {
  const auto c = drt::parse_segformer_config(b0_json(), "config.json");
  CHECK(c.depths == std::vector<int>{2, 2, 2, 2});
  CHECK(c.hidden_sizes == std::vector<int>{32, 64, 160, 256});
  CHECK(c.sr_ratios == std::vector<int>{8, 4, 2, 1});
  CHECK(c.num_attention_heads == std::vector<int>{1, 2, 5, 8});
  CHECK(c.patch_sizes == std::vector<int>{7, 3, 3, 3});
  CHECK(c.strides == std::vector<int>{4, 2, 2, 2});
  CHECK(c.decoder_hidden_size == 256);
  CHECK(c.num_classes() == 3);
  CHECK(c.class_names[2] == "car");
  CHECK(c.layer_norm_eps == doctest::Approx(1e-6));
  CHECK(c.norm_eps == doctest::Approx(1e-5));  // what transformers actually uses
}

TEST_CASE("segformer config: the real fixture and model configs load") {
  const std::string p = source_dir() + "/data/models/segformer-b0-camvid/config.json";
  REQUIRE(std::filesystem::exists(p));
  const auto c = drt::load_segformer_config(p);
  CHECK(c.num_classes() == 11);
  CHECK(c.class_names[0] == "sky");
  CHECK(c.class_names[10] == "bicyclist");
  CHECK(c.dtype == "float16");
  CHECK(drt::read_model_type(p) == "segformer");
}

TEST_CASE("segformer config: unsupported or inconsistent values are rejected with the field named") {
  auto j = b0_json();
  SUBCASE("unknown model_type") {
    j["model_type"] = "mask2former";
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': model_type 'mask2former' is not supported here, expected 'segformer'",
                         drt::invalid_input);
  }
  SUBCASE("list length") {
    j["depths"] = {2, 2, 2};
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': field 'depths' has 3 entries, expected num_encoder_blocks = 4", drt::invalid_input);
  }
  SUBCASE("heads not dividing the width") {
    j["num_attention_heads"] = {1, 2, 3, 8};
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': stage 2 hidden size 160 is not a multiple of its 3 attention heads",
                         drt::invalid_input);
  }
  SUBCASE("activation") {
    j["hidden_act"] = "swish";
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': hidden_act 'swish' is not supported (gelu, relu)", drt::invalid_input);
  }
  SUBCASE("non-positive entry") {
    j["sr_ratios"] = {8, 4, 0, 1};
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': field 'sr_ratios' must hold integers in [1, 2^30], got [8,4,0,1]", drt::invalid_input);
  }
  SUBCASE("missing field") {
    j.erase("hidden_sizes");
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"), "config 'c.json': missing field 'hidden_sizes'",
                         drt::invalid_input);
  }
  SUBCASE("id2label with a gap") {
    j["id2label"] = {{"0", "a"}, {"2", "b"}};
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': id2label keys must be 0..1, got '2'", drt::invalid_input);
  }
  SUBCASE("no id2label") {
    j.erase("id2label");
    CHECK_THROWS_WITH_AS(drt::parse_segformer_config(j, "c.json"),
                         "config 'c.json': missing or empty 'id2label' (the number of classes comes from it)",
                         drt::invalid_input);
  }
  SUBCASE("not JSON") {
    const auto p = (std::filesystem::temp_directory_path() / "drt_bad_config.json").string();
    std::ofstream(p) << "{ nope";
    CHECK_THROWS_WITH_AS(drt::load_segformer_config(p), doctest::Contains(("config '" + p + "': not valid JSON (").c_str()),
                         drt::invalid_input);
  }
}

TEST_CASE("segformer model: weights of the wrong shape and too-small inputs are named") {
  const std::string dir = source_dir() + "/data/models/segformer-b0-camvid";
  REQUIRE(std::filesystem::exists(dir + "/model.safetensors"));
  auto cfg = drt::load_segformer_config(dir + "/config.json");
  const drt::safetensors_file st(dir + "/model.safetensors");
  SUBCASE("config wider than the checkpoint") {
    cfg.decoder_hidden_size = 768;
    CHECK_THROWS_WITH_AS(drt::segformer_model(cfg, st),
                         ("safetensors '" + dir + "/model.safetensors': tensor 'decode_head.linear_c.0.proj.weight' has shape [256, 32], expected [768, 32]").c_str(),
                         drt::shape_error);
  }
  SUBCASE("input too small for the spatial reduction") {
    const drt::segformer_model m(cfg, st);
    CHECK_THROWS_WITH_AS(m.check_input(16, 64),
                         "segformer: input 16x64 is too small: stage 0 would be 4x16, smaller than its 8x8 spatial-reduction kernel",
                         drt::invalid_input);
    drt::tensor4 x = drt::tensor4::from_shape({1, 1, 64, 64});
    CHECK_THROWS_WITH_AS(m.forward(x), "segformer: pixel_values has shape [1, 1, 64, 64], expected [N, 3, H, W] with N >= 1",
                         drt::shape_error);
  }
}

TEST_CASE("config: integers that do not fit are refused, never wrapped; wrong types name the field (issue 16)") {
  using E = drt::invalid_input;
  auto with = [](const char* key, nlohmann::json v) {
    auto j = b0_json();
    j[key] = std::move(v);
    return j;
  };
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("depths", {2147483648LL, 2, 2, 2}), "c.json"),
                       "config 'c.json': field 'depths' must hold integers in [1, 2^30], got [2147483648,2,2,2]", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("hidden_sizes", {4294967320LL, 64, 160, 256}), "c.json"),
                       "config 'c.json': field 'hidden_sizes' must hold integers in [1, 2^30], got [4294967320,64,160,256]", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("decoder_hidden_size", 18446744073709551615ULL), "c.json"),
                       "config 'c.json': field 'decoder_hidden_size' must be an integer in [1, 2^30], got 18446744073709551615", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("hidden_act", 7), "c.json"),
                       "config 'c.json': field 'hidden_act' must be a string, got 7", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("model_type", 3), "c.json"),
                       "config 'c.json': field 'model_type' must be a string, got 3", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("dtype", false), "c.json"),
                       "config 'c.json': field 'dtype' must be a string, got false", E);
  CHECK_THROWS_WITH_AS(drt::parse_segformer_config(with("depths", "2,2,2,2"), "c.json"),
                       "config 'c.json': field 'depths' must be a list of integers, got \"2,2,2,2\"", E);
  CHECK(drt::parse_segformer_config(with("depths", {1073741824, 2, 2, 2}), "c.json").depths[0] == 1073741824);  // 2^30 fits
}

TEST_CASE("config: a folder or a missing file is named") {
  const std::string dir = std::filesystem::temp_directory_path().string();
  CHECK_THROWS_WITH_AS(drt::load_segformer_config(dir), ("config '" + dir + "': cannot open file (it is a directory)").c_str(),
                       drt::io_error);
}
}
