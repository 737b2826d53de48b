#pragma once
/// @file cost.hpp
/// Cycles and energy of one layer under one mapping (Listing 1 of the paper), as constant expressions.
///
/// Listing 1, outer to inner:
///   for k2 in K2: for p2 in P2: for q2 in Q2:            // temporal, array level (K2 = weight re-tiling)
///     spatial P2S, Q2S, K2S, C2S (and N2S for independent products) across PEs
///       for p1 in P1: for q1 in Q1: for k1 in K1:        // temporal, inside a PE
///         for r in R: for s in S: for c1 in C1:          // output stationary
///           for q0 in Q0:                                // local weight reuse (accumulator depth)
///             parallel k0 in K0, c0 in C0                // vector MAC units x lanes
///
/// Cycles = max(compute, DRAM bytes / DRAM bandwidth, network bytes / GB bandwidth), buffers double
/// buffered; a mapping that uses the whole weight buffer (no room to prefetch) adds its weight loads
/// to the critical path. Compute counts every ceiling: K rounded up to K0 units, C to C0 lanes, and
/// the most loaded PE of the spatial split. Energy counts MACs and every memory level at vector
/// granularity (docs/accelerator.md has the derivation and the per-access table).

#include <cstddef>

#include "accelerator.hpp"
#include "layer.hpp"

namespace drt {

/// How a layer is laid onto the K0 x C0 vector MACs.
enum class accel_vectorization : unsigned char {
  channels,         ///< lanes = input channels, units = output channels (the paper, Listing 1)
  depthwise_lanes,  ///< depthwise, the paper's way: units = channels, one useful lane per unit
  depthwise_rows,   ///< depthwise, improved: lanes = C0 input columns of one channel and kernel row,
                    ///< units = adjacent output columns (weights shifted per unit)
  im2col            ///< C < C0 convs, improved: lanes = the flattened R x S x C taps, units = output channels
};

inline const char* to_string(accel_vectorization v) noexcept {
  switch (v) {
    case accel_vectorization::channels:
      return "channels";
    case accel_vectorization::depthwise_lanes:
      return "depthwise_lanes";
    case accel_vectorization::depthwise_rows:
      return "depthwise_rows";
    case accel_vectorization::im2col:
      return "im2col";
  }
  return "?";
}

/// The tiling factors of Listing 1 for one layer (per-PE extents; the last tile of a loop may be short).
struct accel_mapping {
  accel_vectorization mode = accel_vectorization::channels;
  // spatial, across PEs
  std::size_t n2s = 1, p2s = 1, q2s = 1, k2s = 1, c2s = 1;
  // temporal, array level (K2 outermost; N2 = products per PE)
  std::size_t k2 = 1, p2 = 1, q2 = 1, n2 = 1;
  // temporal, inside a PE
  std::size_t p1 = 1, q1 = 1, k1 = 1;
  std::size_t c1 = 1;              ///< reduction vectors per kernel tap held by a PE
  std::size_t q0 = 1;              ///< outputs that reuse one weight vector (<= accumulator depth)
  bool wm_double_buffered = true;  ///< the weight tile fits in half the weight buffer (prefetched)

  constexpr std::size_t pes_used() const noexcept { return n2s * p2s * q2s * k2s * c2s; }
};

/// Cost of one layer under one mapping. Energies in pJ.
struct accel_cost {
  bool valid = false;
  double macs = 0;                        ///< useful multiply-accumulates
  double compute_cycles = 0;              ///< MAC-array cycles of the most loaded PE
  double fill_cycles = 0;                 ///< weight loads on the critical path (single-buffered weight tiles)
  double dram_cycles = 0, gb_cycles = 0;  ///< transfer time at each level's bandwidth
  double cycles = 0;                      ///< the layer's latency
  double dram_bytes = 0, gb_bytes = 0;    ///< traffic (gb_bytes: over the GB <-> PE network)
  double vector_ops = 0;                  ///< busy (unit, cycle) pairs
  // energy by component, pJ
  double e_mac = 0, e_accumulate = 0, e_am = 0, e_wm = 0, e_noc = 0, e_gb = 0, e_dram = 0;

  constexpr double energy_pj() const noexcept { return e_mac + e_accumulate + e_am + e_wm + e_noc + e_gb + e_dram; }
  /// Useful MACs per peak MAC slot over the layer's cycles.
  constexpr double utilization(const accelerator& a) const noexcept {
    return cycles > 0 ? macs / (cycles * a.peak_macs_per_cycle()) : 0.0;
  }
  /// Energy per useful MAC, pJ.
  constexpr double pj_per_mac() const noexcept { return macs > 0 ? energy_pj() / macs : 0.0; }
};

namespace detail {

constexpr std::size_t cdiv(std::size_t a, std::size_t b) noexcept { return (a + b - 1) / b; }
constexpr double dmax(double a, double b) noexcept { return a > b ? a : b; }
constexpr std::size_t smin(std::size_t a, std::size_t b) noexcept { return a < b ? a : b; }

/// The loop nest a vectorization mode gives the array: what the mapping splits and how the
/// buffers fill. Built by `array_problem_of`.
struct array_problem {
  bool valid = false;
  std::size_t n = 1, p = 1, q = 1;  ///< products, rows, positions along Q (the Q0 dimension)
  std::size_t kg = 1;               ///< unit groups (each up to K0 busy units)
  double units_active = 1;          ///< average busy units per group
  std::size_t cv = 1;               ///< reduction vectors per tap
  std::size_t taps = 1;             ///< kernel taps looped per vector
  bool c_splittable = true;         ///< C2S may split cv across PEs (cross-PE reduction)
  // input tile of p1 rows x qt positions: rows = (p1-1)*row_step + row_halo, cols likewise
  std::size_t row_step = 1, row_halo = 1, col_step = 1, col_halo = 1;
  double in_bytes = 1;           ///< AM bytes per input position per reduction vector
  bool input_per_group = false;  ///< each unit group reads its own input (no sharing across K)
  double w_bytes = 1;            ///< WM bytes per unit group per (vector, tap)
  double w_read_bytes = 1;       ///< bytes of one weight-buffer read feeding a unit
  bool weights_shared_across_n = true;
};

constexpr array_problem array_problem_of(const accelerator& a, const accel_layer& l, accel_vectorization v) noexcept {
  array_problem pr;
  if (l.op == accel_op::none) return pr;
  const std::size_t K0 = a.k0, C0 = a.c0;
  pr.n = l.n;
  pr.p = l.p;
  pr.q = l.q;
  pr.row_step = l.stride;
  pr.row_halo = l.r;
  pr.col_step = l.stride;
  pr.col_halo = l.s;
  pr.weights_shared_across_n = !l.operand_is_activation;
  switch (v) {
    case accel_vectorization::channels:
      if (l.op == accel_op::depthwise) return pr;
      pr.kg = cdiv(l.k, K0);
      pr.units_active = double(l.k) / double(pr.kg);
      pr.cv = cdiv(l.c, C0);
      pr.taps = l.r * l.s;
      pr.in_bytes = double(C0);
      pr.w_bytes = double(K0) * C0;
      pr.w_read_bytes = double(C0);
      break;
    case accel_vectorization::depthwise_lanes: {
      if (l.op != accel_op::depthwise) return pr;
      const std::size_t g = smin(K0, C0);  // channels of one input vector that the units can take
      pr.kg = cdiv(l.k, g);
      pr.units_active = double(l.k) / double(pr.kg);
      pr.cv = 1;
      pr.taps = l.r * l.s;
      pr.c_splittable = false;
      pr.in_bytes = double(C0);
      pr.input_per_group = true;
      pr.w_bytes = double(g);
      pr.w_read_bytes = 1;
      break;
    }
    case accel_vectorization::depthwise_rows: {
      if (l.op != accel_op::depthwise || C0 < l.s) return pr;
      const std::size_t nq = smin(K0, (C0 - l.s) / l.stride + 1);  // output columns per input vector
      pr.n = l.n * l.k;                                            // every channel is its own product
      pr.q = cdiv(l.q, nq);                                        // column chunks
      pr.kg = 1;
      pr.units_active = double(l.q) / double(pr.q);
      pr.cv = 1;
      pr.taps = l.r;
      pr.c_splittable = false;
      pr.col_step = nq * l.stride;
      pr.col_halo = (nq - 1) * l.stride + l.s;
      pr.in_bytes = 1;  // one channel, channel-planar in the AM
      pr.w_bytes = double(l.s);
      pr.w_read_bytes = double(l.s);
      pr.weights_shared_across_n = false;
      break;
    }
    case accel_vectorization::im2col:
      if (l.op != accel_op::conv) return pr;
      pr.kg = cdiv(l.k, K0);
      pr.units_active = double(l.k) / double(pr.kg);
      pr.cv = cdiv(l.r * l.s * l.c, C0);
      pr.taps = 1;
      pr.row_step = pr.row_halo = pr.col_step = pr.col_halo = 1;  // patches are expanded on the way in
      pr.in_bytes = double(C0);
      pr.w_bytes = double(K0) * C0;
      pr.w_read_bytes = double(C0);
      break;
  }
  pr.valid = true;
  return pr;
}

/// Input-tile bytes of one PE for p1 rows x qt positions (one unit group's worth).
constexpr double input_tile_bytes(const array_problem& pr, std::size_t p1, std::size_t qt, std::size_t c1) noexcept {
  const double rows = double((p1 - 1) * pr.row_step + pr.row_halo);
  const double cols = double((qt - 1) * pr.col_step + pr.col_halo);
  return rows * cols * double(c1) * pr.in_bytes;
}

/// Weight-tile bytes of one PE holding k1 unit groups.
constexpr double weight_tile_bytes(const array_problem& pr, std::size_t k1, std::size_t c1) noexcept {
  return double(k1) * double(pr.taps) * double(c1) * pr.w_bytes;
}

/// Cost of `m` (factors already consistent with `pr`).
constexpr accel_cost evaluate(const accelerator& a, const accel_layer& l, const array_problem& pr,
                              const accel_mapping& m) noexcept {
  accel_cost c;
  if (!pr.valid || m.pes_used() == 0 || m.pes_used() > a.num_pe) return c;
  if (!pr.c_splittable && m.c2s != 1) return c;
  const std::size_t Np = cdiv(pr.n, m.n2s), Pp = cdiv(pr.p, m.p2s), Qp = cdiv(pr.q, m.q2s);
  const std::size_t Kp = cdiv(pr.kg, m.k2s), C1 = cdiv(pr.cv, m.c2s);
  const std::size_t qt = m.q1 * m.q0;
  if (m.c1 != C1 || m.k1 * m.k2 < Kp || m.p1 * m.p2 < Pp || qt * m.q2 < Qp || m.q0 > a.acc_depth) return c;
  const double wcap = m.wm_double_buffered ? a.wm_bytes() / 2 : a.wm_bytes();
  if (weight_tile_bytes(pr, m.k1, C1) > wcap) return c;
  if (input_tile_bytes(pr, m.p1, qt, C1) > a.am_bytes() / 2) return c;

  c.valid = true;
  c.macs = l.macs();
  c.compute_cycles = double(Np) * Pp * Qp * Kp * pr.taps * C1;

  // --- traffic ---
  const double half_gb = a.gb_bytes() / 2;
  const double W = l.weight_bytes(), I = l.input_bytes(), O = l.output_bytes();
  // weights: from DRAM (parameters) or from wherever the producing layer left them (attention operands)
  const bool w_in_dram = !l.operand_is_activation || W > half_gb;
  const double w_copies = double(m.p2s * m.q2s) * (pr.weights_shared_across_n ? double(m.n2s) : 1.0);
  // inputs: per PE, rows and columns summed over its tiles (halo re-read at tile edges)
  const double rows = double((Pp - m.p2) * pr.row_step + m.p2 * pr.row_halo);
  const double cols = double((Qp - m.q2) * pr.col_step + m.q2 * pr.col_halo);
  const double per_pe_pass = double(Np) * rows * cols * double(C1) * pr.in_bytes;
  double per_pe_in = 0, streams = 0;
  if (pr.input_per_group) {  // every group reads its own channels once, whatever K2
    per_pe_in = per_pe_pass * double(Kp);
    streams = double(m.pes_used());
  } else {  // re-read once per K2 pass; PEs that differ only in K2S share it (multicast)
    per_pe_in = per_pe_pass * double(m.k2);
    streams = double(m.n2s * m.p2s * m.q2s * m.c2s);
  }
  const double gb_in = per_pe_in * streams;
  const double am_writes = per_pe_in * double(m.pes_used());
  const bool in_dram = I > half_gb, out_dram = O > half_gb;
  const double dram_in = in_dram ? I * (pr.input_per_group ? 1.0 : double(m.k2)) : 0.0;
  const double reduction = double(m.c2s - 1) * O * a.psum_bytes;
  c.gb_bytes = gb_in + W + O + reduction;
  c.dram_bytes = (w_in_dram ? W : 0.0) + dram_in + (out_dram ? O : 0.0);
  c.dram_cycles = c.dram_bytes / a.dram_bytes_per_cycle;
  c.gb_cycles = c.gb_bytes / a.gb_bytes_per_cycle;
  if (m.wm_double_buffered) {
    c.cycles = dmax(c.compute_cycles, dmax(c.dram_cycles, c.gb_cycles));
  } else {
    const double src_bw = w_in_dram ? a.dram_bytes_per_cycle : a.gb_bytes_per_cycle;
    c.fill_cycles = W / (src_bw < a.gb_bytes_per_cycle ? src_bw : a.gb_bytes_per_cycle);
    const double rest_dram = (c.dram_bytes - (w_in_dram ? W : 0.0)) / a.dram_bytes_per_cycle;
    const double rest_gb = (c.gb_bytes - W) / a.gb_bytes_per_cycle;
    c.cycles = c.fill_cycles + dmax(c.compute_cycles, dmax(rest_dram, rest_gb));
  }

  // --- energy (pJ) ---
  const auto& e = a.energy;
  const double group_cycles = double(pr.n) * pr.p * pr.q * pr.kg * pr.taps * pr.cv;  // one AM read each
  c.vector_ops = group_cycles * pr.units_active;
  c.e_mac = c.vector_ops * a.c0 * e.mac_lane_pj;
  c.e_accumulate = c.vector_ops * e.accumulate_pj;
  const double am_pj = e.sram_pj_per_byte(a.am_kb), wm_pj = e.sram_pj_per_byte(double(a.wm_kb) / a.k0);
  c.e_am = (group_cycles * a.c0 + am_writes) * am_pj;
  const double weight_reads = c.vector_ops * double(m.q1 * m.q2) / double(Qp);  // one per Q0 outputs
  c.e_wm = (weight_reads * pr.w_read_bytes + W * w_copies) * wm_pj;
  c.e_noc = c.gb_bytes * e.noc_pj_per_byte;
  c.e_gb = (gb_in + W + O + c.dram_bytes) * e.sram_pj_per_byte(e.gb_bank_kb);
  c.e_dram = c.dram_bytes * e.dram_pj_per_byte;
  return c;
}

}  // namespace detail

/// Cost of `l` on `a` under `m`; `valid` is false when `m` does not fit the buffers or the layer.
constexpr accel_cost layer_cost(const accelerator& a, const accel_layer& l, const accel_mapping& m) noexcept {
  return detail::evaluate(a, l, detail::array_problem_of(a, l, m.mode), m);
}

}  // namespace drt
