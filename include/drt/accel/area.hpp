#pragma once
/// @file area.hpp
/// Area of the PE array (what Table II reports: PEs with their MAC units, buffers and control; the
/// global buffer and DRAM interface are not included), as a linear model fitted to Table II:
///
///   area = NumPE * (a_pe + a_lane * K0 * C0 + a_wm * WM_KB + a_am * AM_KB)
///
/// fitted by least squares on the relative error over all 13 designs (docs/accelerator.md, "Area",
/// lists every residual; the largest is -6.8 % for G, the RMS 3.4 %).

#include "accelerator.hpp"

namespace drt {

/// The fitted coefficients, in um2 (5 nm).
struct accel_area_model {
  double per_pe_um2 = 6499;      ///< control, router, post-processing, register files
  double per_lane_um2 = 43.92;   ///< one INT8 MAC lane with its share of the adder tree and accumulator
  double per_wm_kb_um2 = 418.3;  ///< weight-buffer SRAM per KB (K0 narrow banks)
  double per_am_kb_um2 = 651.2;  ///< activation-buffer SRAM per KB (one wide bank)
};

/// PE-array area in mm2 under `m` (default: the Table II fit).
constexpr double pe_array_area_mm2(const accelerator& a, const accel_area_model& m = {}) noexcept {
  const double per_pe =
      m.per_pe_um2 + m.per_lane_um2 * double(a.k0) * a.c0 + m.per_wm_kb_um2 * a.wm_kb + m.per_am_kb_um2 * a.am_kb;
  return a.num_pe * per_pe * 1e-6;
}

}  // namespace drt
