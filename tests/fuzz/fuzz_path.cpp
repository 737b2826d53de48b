// libFuzzer target: the execution-path parsers of the three families, text form (`parse`) and JSON
// form (`from_json`). Refusals must be drt::invalid_input naming the path; an accepted path must
// come back unchanged from its own canonical forms (to_string -> parse for text input, to_json ->
// from_json for both), since lookup tables store those forms and read them back.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include <drt/dynamic/path.hpp>
#include <drt/dynamic/resnet_path.hpp>
#include <drt/dynamic/upernet_path.hpp>

#include "fuzz_common.hpp"

namespace {

template <class Path>
void check_json_round_trip(const Path& p, const char* family) {
  const auto j = p.to_json();
  Path q;
  if (!drt_fuzz::refuses_cleanly("path JSON", [&] { q = Path::from_json(j); }))
    drt_fuzz::fail(std::string(family) + " path JSON " + j.dump() + " written by to_json() is refused by from_json()");
  if (q.to_json() != j)
    drt_fuzz::fail(std::string(family) + " path JSON round trip changed " + j.dump() + " to " + q.to_json().dump());
}

template <class Path>
void fuzz_family(const std::string& text, const nlohmann::json& j, const char* family) {
  Path p;
  if (drt_fuzz::refuses_cleanly(drt::detail::path_where(text), [&] { p = Path::parse(text); })) {
    const std::string canon = p.to_string();
    Path q;
    const std::string again = canon == "full" ? "" : canon;  // "full" is how to_string shows no keys
    if (!drt_fuzz::refuses_cleanly(drt::detail::path_where(again), [&] { q = Path::parse(again); }))
      drt_fuzz::fail(std::string(family) + " path '" + text + "': its canonical form '" + canon + "' is refused");
    if (q.to_string() != canon)
      drt_fuzz::fail(std::string(family) + " path '" + text + "': canonical form '" + canon + "' reads back as '" +
                     q.to_string() + "'");
    check_json_round_trip(p, family);
  }
  if (!j.is_discarded() && drt_fuzz::refuses_cleanly("path JSON", [&] { p = Path::from_json(j); }))
    check_json_round_trip(p, family);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  fuzz_family<drt::segformer_path>(text, j, "segformer");
  fuzz_family<drt::upernet_path>(text, j, "upernet");
  fuzz_family<drt::resnet_path>(text, j, "resnet");
  return 0;
}
