// libFuzzer target: the lookup-table reader (lut_from_json). Every refusal must be a
// drt::invalid_input naming the LUT; an accepted table must survive its own JSON form.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include <drt/engine/lut.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  const std::string where = "lut 'fuzz/lut.json'";
  drt::lookup_table t;
  if (!drt_fuzz::refuses_cleanly(where, [&] { t = drt::lut_from_json(j, where); })) return 0;
  // The accessors the CLI uses on a loaded table.
  (void)t.input_height();
  (void)t.input_width();
  (void)t.front();
  for (std::size_t i = 0; i <= t.entries.size(); ++i) (void)t.entry_where(i);
  // What save_lut writes for an accepted table must read back as the same table.
  const auto again = t.to_json();
  drt::lookup_table t2;
  if (!drt_fuzz::refuses_cleanly(where, [&] { t2 = drt::lut_from_json(again, where); }))
    drt_fuzz::fail("an accepted LUT does not read back from its own to_json(): " + again.dump());
  if (t2.to_json() != again)
    drt_fuzz::fail("LUT round trip changed it: " + again.dump() + " -> " + t2.to_json().dump());
  return 0;
}
