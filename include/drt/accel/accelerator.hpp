#pragma once
/// @file accelerator.hpp
/// The MAGNet-style accelerator descriptor (paper Section V): NumPE processing elements, each with
/// K0 vector MAC units of C0 INT8 lanes, one activation buffer (AM) shared by the K0 units, K0 weight
/// buffers (WM in total), an accumulation buffer per unit; a global buffer (GB); DRAM.
///
/// `accelerator` is a literal type: every preset of Table II is a `constexpr` value, and the tiling,
/// cycle, energy and area functions of this directory are `constexpr`, so tests `static_assert` known
/// answers and the same code runs at run time for any path. The parameters the paper leaves open
/// (accumulator depth, global buffer, bandwidths, per-access energies) have documented defaults;
/// docs/accelerator.md says where each comes from and what it was calibrated against.

#include <array>
#include <cstddef>
#include <string>

#include "../core/error.hpp"

namespace drt {

namespace detail {
/// sqrt for constant expressions (Newton's method; x >= 0). <cmath> is not constexpr in C++17.
constexpr double cx_sqrt(double x) noexcept {
  if (x <= 0) return 0;
  double r = x < 1 ? 1.0 : x;
  for (int i = 0; i < 64; ++i) {
    const double next = 0.5 * (r + x / r);
    if (next == r) break;
    r = next;
  }
  return r;
}
}  // namespace detail

/// Energy per access at 5 nm, in pJ (sources and scaling in docs/accelerator.md, "Energy").
struct accel_energy_table {
  double mac_lane_pj = 0.023;    ///< one INT8 multiply + its adder-tree add (per lane of a vector MAC)
  double accumulate_pj = 0.030;  ///< one partial-sum update: 24-bit add + accumulation-buffer read/write
  /// SRAM read or write per byte = sram_pj_per_byte_fixed + sram_pj_per_byte_1kb * sqrt(bank size in KB):
  /// the square-root law fitted to Horowitz's 45 nm 8 KB / 32 KB / 1 MB figures (no fixed part), scaled
  /// to 5 nm. The fixed part is a sensitivity knob (docs: it decides whether narrow designs cost more).
  double sram_pj_per_byte_1kb = 0.147;
  double sram_pj_per_byte_fixed = 0;
  double gb_bank_kb = 256;        ///< global-buffer bank size (sets its per-byte energy)
  double noc_pj_per_byte = 0.40;  ///< one byte across the PE-array network (a multicast counts once)
  double dram_pj_per_byte = 32;   ///< 4 pJ/bit (LPDDR5 / HBM2 class interface + core)

  /// SRAM energy per byte for a bank of `kb` KB.
  constexpr double sram_pj_per_byte(double kb) const noexcept {
    return sram_pj_per_byte_fixed + sram_pj_per_byte_1kb * detail::cx_sqrt(kb);
  }
};

/// A MAGNet-style accelerator. Build one with the Table II presets (`table2_accelerator('D')`) or
/// from scratch; the `with_*` members return modified copies for design-space sweeps.
struct accelerator {
  const char* label = "custom";  ///< short name, e.g. "D" (must outlive the descriptor)
  unsigned k0 = 32;              ///< vector MAC units per PE (parallel output channels)
  unsigned c0 = 32;              ///< lanes per vector MAC unit (parallel input channels)
  unsigned num_pe = 16;          ///< processing elements
  unsigned wm_kb = 128;          ///< weight memory per PE, KB (K0 banks of wm_kb / K0)
  unsigned am_kb = 64;           ///< activation (input) memory per PE, KB
  double clock_ghz = 1.25;       ///< the paper's clock
  // --- parameters the paper leaves open (defaults documented in docs/accelerator.md) ---
  unsigned acc_depth = 16;           ///< accumulation-buffer entries per vector MAC: Q0 <= acc_depth
  unsigned gb_kb = 32 * 1024;        ///< global buffer: a layer's input / output stays on chip if <= gb_kb / 2
  double gb_bytes_per_cycle = 512;   ///< global buffer <-> PE array (network) bandwidth
  double dram_bytes_per_cycle = 48;  ///< DRAM bandwidth (60 GB/s at 1.25 GHz)
  unsigned psum_bytes = 4;           ///< partial sum exchanged in cross-PE reduction
  accel_energy_table energy{};

  constexpr const char* name() const noexcept { return label; }
  /// MAC lanes of the whole array (peak MACs per cycle).
  constexpr double peak_macs_per_cycle() const noexcept { return double(k0) * c0 * num_pe; }
  /// Peak MACs per second.
  constexpr double peak_macs_per_second() const noexcept { return peak_macs_per_cycle() * clock_ghz * 1e9; }
  constexpr double wm_bytes() const noexcept { return double(wm_kb) * 1024; }
  constexpr double am_bytes() const noexcept { return double(am_kb) * 1024; }
  constexpr double gb_bytes() const noexcept { return double(gb_kb) * 1024; }
  /// Milliseconds for `cycles` at the clock.
  constexpr double ms(double cycles) const noexcept { return cycles / (clock_ghz * 1e6); }

  /// A copy with one parameter changed, e.g. a.with(&accelerator::gb_kb, 1024u); the named
  /// setters below are the common ones.
  template <class T, class V>
  constexpr accelerator with(T accelerator::*field, V v) const noexcept {
    auto a = *this;
    a.*field = static_cast<T>(v);
    return a;
  }
  constexpr accelerator with_label(const char* v) const noexcept { return with(&accelerator::label, v); }
  constexpr accelerator with_gb_kb(unsigned v) const noexcept { return with(&accelerator::gb_kb, v); }
  constexpr accelerator with_dram_bytes_per_cycle(double v) const noexcept {
    return with(&accelerator::dram_bytes_per_cycle, v);
  }
  constexpr accelerator with_gb_bytes_per_cycle(double v) const noexcept {
    return with(&accelerator::gb_bytes_per_cycle, v);
  }
  constexpr accelerator with_acc_depth(unsigned v) const noexcept { return with(&accelerator::acc_depth, v); }
  constexpr accelerator with_energy(const accel_energy_table& e) const noexcept {
    return with(&accelerator::energy, e);
  }

  /// True when every size is positive (checked by the cost functions at run time).
  constexpr bool valid() const noexcept {
    return k0 > 0 && c0 > 0 && num_pe > 0 && wm_kb > 0 && am_kb > 0 && clock_ghz > 0 && acc_depth > 0 && gb_kb > 0 &&
           gb_bytes_per_cycle > 0 && dram_bytes_per_cycle > 0 && psum_bytes > 0;
  }
};

/// A Table II design: K0 = C0 = `width`, WM / AM in KB per PE, `pes` PEs; open parameters at defaults.
constexpr accelerator make_table2_accelerator(const char* label, unsigned width, unsigned wm_kb, unsigned am_kb,
                                              unsigned pes) noexcept {
  accelerator a;
  a.label = label;
  a.k0 = a.c0 = width;
  a.wm_kb = wm_kb;
  a.am_kb = am_kb;
  a.num_pe = pes;
  return a;
}

/// Paper Table II, designs A..M (area in the paper: see `table2_paper_area_mm2`).
inline constexpr std::array<accelerator, 13> table2_accelerators{
    make_table2_accelerator("A", 32, 1024, 64, 32), make_table2_accelerator("B", 32, 128, 64, 32),
    make_table2_accelerator("C", 32, 1024, 64, 16), make_table2_accelerator("D", 32, 128, 64, 16),
    make_table2_accelerator("E", 32, 128, 32, 16),  make_table2_accelerator("F", 32, 64, 64, 16),
    make_table2_accelerator("G", 32, 64, 32, 16),   make_table2_accelerator("H", 16, 128, 32, 64),
    make_table2_accelerator("I", 16, 128, 16, 64),  make_table2_accelerator("J", 16, 64, 32, 64),
    make_table2_accelerator("K", 16, 64, 16, 64),   make_table2_accelerator("L", 16, 32, 32, 64),
    make_table2_accelerator("M", 16, 32, 16, 64)};

/// The PE-array areas the paper reports for A..M (mm2, 5 nm), in table order.
inline constexpr std::array<double, 13> table2_paper_area_mm2{16.7, 4.5, 8.3, 2.3, 1.9, 2.0, 1.7,
                                                              6.1,  5.4, 4.2, 3.5, 3.3, 2.6};

/// Table II design `id` ('A'..'M', either case). Throws drt::invalid_input for any other letter.
constexpr accelerator table2_accelerator(char id) {
  const char up = (id >= 'a' && id <= 'z') ? char(id - 'a' + 'A') : id;
  if (up < 'A' || up > 'M')
    throw invalid_input(std::string("accelerator '") + id + "' is not a Table II design (A..M)");
  return table2_accelerators[static_cast<std::size_t>(up - 'A')];
}

/// Run-time lookup by name ("D", "d"). Throws drt::invalid_input naming the value and the choices.
inline accelerator find_accelerator(const std::string& name) {
  if (name.size() == 1) {
    const char up = (name[0] >= 'a' && name[0] <= 'z') ? char(name[0] - 'a' + 'A') : name[0];
    if (up >= 'A' && up <= 'M') return table2_accelerators[static_cast<std::size_t>(up - 'A')];
  }
  throw invalid_input("accelerator '" + name + "' is not a Table II design (A..M)");
}

}  // namespace drt
