// Accelerator descriptor: Table II presets, lookup errors, and the area model fitted to Table II
// (checked at compile time and at run time).
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <drt/accel/accelerator.hpp>
#include <drt/accel/area.hpp>

#include "test_support.hpp"

namespace {

// Table II, compile time: every preset's parameters and its area within 10% of the paper's.
constexpr bool table2_areas_within(double tol) {
  for (std::size_t i = 0; i < drt::table2_accelerators.size(); ++i) {
    const double model = drt::pe_array_area_mm2(drt::table2_accelerators[i]);
    const double paper = drt::table2_paper_area_mm2[i];
    const double rel = model > paper ? (model - paper) / paper : (paper - model) / paper;
    if (rel > tol) return false;
  }
  return true;
}
static_assert(table2_areas_within(0.10), "Table II areas within 10%");
static_assert(table2_areas_within(0.07), "the fit's largest residual is 6.8% (G)");
static_assert(!table2_areas_within(0.06), "the documented largest residual is still 6.8%");

constexpr drt::accelerator D = drt::table2_accelerator('D');
static_assert(D.k0 == 32 && D.c0 == 32 && D.num_pe == 16 && D.wm_kb == 128 && D.am_kb == 64, "Table II, D");
static_assert(D.peak_macs_per_cycle() == 16384.0, "32 x 32 lanes x 16 PEs");
static_assert(drt::table2_accelerator('m').k0 == 16 && drt::table2_accelerator('M').num_pe == 64, "Table II, M");
static_assert(drt::table2_accelerator('A').wm_kb == 1024 && drt::table2_accelerator('A').num_pe == 32, "Table II, A");
static_assert(D.ms(1.25e6) == 1.0, "1.25 GHz: 1.25 M cycles per ms");
static_assert(D.with_dram_bytes_per_cycle(96).dram_bytes_per_cycle == 96 && D.dram_bytes_per_cycle == 48,
              "with_* returns a modified copy");
static_assert(drt::detail::cx_sqrt(2.0) * drt::detail::cx_sqrt(2.0) > 1.999999 &&
                  drt::detail::cx_sqrt(2.0) * drt::detail::cx_sqrt(2.0) < 2.000001,
              "constexpr sqrt");

}  // namespace

TEST_SUITE("accel") {
TEST_CASE("accelerator: Table II presets and their names") {
  const char* names = "ABCDEFGHIJKLM";
  for (std::size_t i = 0; i < 13; ++i) {
    const auto& a = drt::table2_accelerators[i];
    CHECK(std::string(a.name()) == std::string(1, names[i]));
    CHECK(a.k0 == a.c0);
    CHECK(a.clock_ghz == 1.25);
    CHECK(a.valid());
    CHECK(drt::find_accelerator(std::string(1, names[i])).num_pe == a.num_pe);
    CHECK(drt::find_accelerator(std::string(1, char(names[i] - 'A' + 'a'))).wm_kb == a.wm_kb);
  }
  // C..M have the same peak, 16384 MACs per cycle (32 x 32 x 16 or 16 x 16 x 64); A and B twice that
  for (const auto& a : drt::table2_accelerators)
    CHECK(a.peak_macs_per_cycle() == (a.num_pe == 32 ? 32768.0 : 16384.0));
}

TEST_CASE("accelerator: unknown names are refused with the choices") {
  CHECK_THROWS_WITH_AS(drt::find_accelerator("N"), "accelerator 'N' is not a Table II design (A..M)",
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(drt::find_accelerator("DD"), "accelerator 'DD' is not a Table II design (A..M)",
                       drt::invalid_input);
  CHECK_THROWS_WITH_AS(drt::table2_accelerator('z'), "accelerator 'z' is not a Table II design (A..M)",
                       drt::invalid_input);
  drt::accelerator bad;
  bad.num_pe = 0;
  CHECK(!bad.valid());
}

TEST_CASE("area: the Table II fit and its residuals") {
  // The residuals docs/accelerator.md lists (model vs paper, %).
  const double documented[13] = {-0.1, 4.3, 0.5, 2.0, 6.0, -4.1, -6.8, -3.3, -3.2, -0.4, 0.4, 0.8, 2.3};
  double sq = 0;
  for (std::size_t i = 0; i < 13; ++i) {
    const auto& a = drt::table2_accelerators[i];
    const double model = drt::pe_array_area_mm2(a), paper = drt::table2_paper_area_mm2[i];
    const double res = 100 * (model / paper - 1);
    INFO(a.name() << ": model " << model << " mm2, paper " << paper << " mm2, residual " << res << " %");
    CHECK(std::abs(res) <= 10.0);
    CHECK(std::abs(res - documented[i]) < 0.06);
    sq += res * res;
  }
  CHECK(std::abs(std::sqrt(sq / 13) - 3.4) < 0.05);
  // Area grows with every resource: lanes, buffers, PEs.
  const auto D = drt::table2_accelerator('D');
  auto more = D;
  more.wm_kb *= 2;
  CHECK(drt::pe_array_area_mm2(more) > drt::pe_array_area_mm2(D));
  more = D;
  more.am_kb *= 2;
  CHECK(drt::pe_array_area_mm2(more) > drt::pe_array_area_mm2(D));
  more = D;
  more.num_pe *= 2;
  CHECK(drt::pe_array_area_mm2(more) == doctest::Approx(2 * drt::pe_array_area_mm2(D)));
}
}
