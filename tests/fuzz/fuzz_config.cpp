// libFuzzer target: config.json readers of the three model families. Each input that is JSON goes
// to parse_segformer_config, parse_upernet_config and parse_resnet_config. Every refusal must be a
// drt::invalid_input / io_error naming the file; an accepted config must hold exactly the integers
// the file gives (no wrapping of 2^32 + 24 to 24).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <drt/io/model_config.hpp>
#include <drt/io/resnet_config.hpp>
#include <drt/io/upernet_config.hpp>

#include "fuzz_common.hpp"

namespace {

/// When the file gives `key` as a JSON integer, the parsed value must be that integer.
void same_int(const nlohmann::json& j, const char* key, long long parsed, const char* family) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_integer()) return;
  const auto& v = j[key];
  const bool same = v.is_number_unsigned() ? parsed >= 0 && v.get<std::uint64_t>() == static_cast<std::uint64_t>(parsed)
                                           : v.get<std::int64_t>() == parsed;
  if (!same)
    drt_fuzz::fail(std::string(family) + " config accepted " + key + " = " + v.dump() + " as " +
                   std::to_string(parsed));
}

void same_list(const nlohmann::json& j, const char* key, const std::vector<int>& parsed, const char* family) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_array()) return;
  const auto& v = j[key];
  if (v.size() != parsed.size())
    drt_fuzz::fail(std::string(family) + " config accepted " + key + " = " + v.dump() + " as " +
                   drt::shape_str(parsed));
  for (std::size_t i = 0; i < v.size(); ++i) {
    const nlohmann::json one = {{key, v[i]}};
    same_int(one, key, parsed[i], family);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Not JSON at all is the JSON library's business (drt wraps its parse error in read_json_file).
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  const std::string path = "fuzz/config.json";
  const std::string name = "config '" + path + "'";

  drt::segformer_config s;
  if (drt_fuzz::refuses_cleanly(name, [&] { s = drt::parse_segformer_config(j, path); })) {
    same_int(j, "num_channels", s.num_channels, "segformer");
    same_int(j, "num_encoder_blocks", s.num_encoder_blocks, "segformer");
    same_int(j, "decoder_hidden_size", s.decoder_hidden_size, "segformer");
    same_list(j, "depths", s.depths, "segformer");
    same_list(j, "sr_ratios", s.sr_ratios, "segformer");
    same_list(j, "hidden_sizes", s.hidden_sizes, "segformer");
    same_list(j, "patch_sizes", s.patch_sizes, "segformer");
    same_list(j, "strides", s.strides, "segformer");
    same_list(j, "num_attention_heads", s.num_attention_heads, "segformer");
    same_list(j, "mlp_ratios", s.mlp_ratios, "segformer");
  }

  drt::upernet_config u;
  if (drt_fuzz::refuses_cleanly(name, [&] { u = drt::parse_upernet_config(j, path); })) {
    same_int(j, "hidden_size", u.hidden_size, "upernet");
    same_list(j, "pool_scales", u.pool_scales, "upernet");
    if (j.contains("backbone_config")) {
      const auto& b = j["backbone_config"];
      same_int(b, "num_channels", u.backbone.num_channels, "upernet backbone");
      same_int(b, "patch_size", u.backbone.patch_size, "upernet backbone");
      same_int(b, "embed_dim", u.backbone.embed_dim, "upernet backbone");
      same_int(b, "window_size", u.backbone.window_size, "upernet backbone");
      same_list(b, "depths", u.backbone.depths, "upernet backbone");
      same_list(b, "num_heads", u.backbone.num_heads, "upernet backbone");
      same_list(b, "out_indices", u.backbone.out_indices, "upernet backbone");
    }
  }

  drt::resnet_config r;
  if (drt_fuzz::refuses_cleanly(name, [&] { r = drt::parse_resnet_config(j, path); })) {
    same_int(j, "num_channels", r.num_channels, "resnet");
    same_int(j, "embedding_size", r.embedding_size, "resnet");
    same_list(j, "hidden_sizes", r.hidden_sizes, "resnet");
    same_list(j, "depths", r.depths, "resnet");
  }
  return 0;
}
