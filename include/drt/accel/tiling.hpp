#pragma once
/// @file tiling.hpp
/// The mapping search of Listing 1, as a constant expression.
///
/// Search space, per vectorization mode allowed by `accel_options`:
/// - spatial split N2S x P2S x Q2S x K2S x C2S: every factorization of NumPE into divisors, each factor
///   no larger than its extent (if none uses every PE, the same with PEs left idle);
/// - weight tile: the largest K1 whose weights fit half the weight buffer (double buffered,
///   prefetched), and the largest that fits the whole buffer (single buffered, loads exposed), K1
///   balanced over the fewest K2 passes: no weight re-tiling (K2 = 1) wherever the buffer allows;
/// - Q tile: ceil(Qp / 2^i) for i = 0.. (Qp = per-PE positions), Q0 the balanced split of it within the
///   accumulator depth; P1 the most rows whose input tile fits half the activation buffer, balanced.
/// Objective: fewest cycles, then least energy. About 10^3 candidates per layer on the Table II designs.

#include <cstddef>

#include "accelerator.hpp"
#include "cost.hpp"
#include "layer.hpp"

namespace drt {

/// Which mappings the search may use for low-channel layers.
enum class low_channel_mapping : unsigned char {
  paper,    ///< as the paper: depthwise convs one lane per unit, C < C0 convs with C on the lanes
  improved  ///< also depthwise_rows for depthwise convs and im2col for convs with C < C0 (the faster wins)
};

struct accel_options {
  low_channel_mapping low_channel = low_channel_mapping::paper;
};

/// A layer's chosen mapping and its cost.
struct accel_choice {
  accel_mapping mapping;
  accel_cost cost;
};

namespace detail {

/// True when `x` is better than `best`: fewer cycles, then less energy.
constexpr bool better(const accel_cost& x, const accel_cost& best) noexcept {
  if (!x.valid) return false;
  if (!best.valid) return true;
  const double tol = 1e-9 * (best.cycles > 1 ? best.cycles : 1.0);
  if (x.cycles < best.cycles - tol) return true;
  if (x.cycles > best.cycles + tol) return false;
  return x.energy_pj() < best.energy_pj();
}

/// The best temporal tiling for one spatial split (weight tile, Q tile, P tile); updates `best`.
/// Returns true when some tiling fits.
constexpr bool search_temporal(const accelerator& a, const accel_layer& l, const array_problem& pr, accel_mapping m,
                               accel_choice& best) noexcept {
  const std::size_t Np = cdiv(pr.n, m.n2s), Pp = cdiv(pr.p, m.p2s), Qp = cdiv(pr.q, m.q2s);
  const std::size_t Kp = cdiv(pr.kg, m.k2s), C1 = cdiv(pr.cv, m.c2s);
  m.c1 = C1;
  m.n2 = Np;
  bool any = false;
  std::size_t last_k2 = 0;
  for (int pass = 0; pass < 2; ++pass) {
    m.wm_double_buffered = pass == 0;
    const double wcap = m.wm_double_buffered ? a.wm_bytes() / 2 : a.wm_bytes();
    const double per_group = weight_tile_bytes(pr, 1, C1);
    if (per_group > wcap) continue;
    std::size_t k1 = static_cast<std::size_t>(wcap / per_group);
    if (k1 > Kp) k1 = Kp;
    m.k2 = cdiv(Kp, k1);
    m.k1 = cdiv(Kp, m.k2);
    if (m.k2 == last_k2) continue;  // single buffering gains nothing when it does not cut K2
    last_k2 = m.k2;
    const double am_half = a.am_bytes() / 2;
    std::size_t prev_qt = 0;
    for (std::size_t div = 1;; div *= 2) {
      const std::size_t qt0 = cdiv(Qp, div);
      if (qt0 != prev_qt) {
        prev_qt = qt0;
        m.q1 = cdiv(qt0, a.acc_depth);
        m.q0 = cdiv(qt0, m.q1);
        const std::size_t qt = m.q1 * m.q0;
        m.q2 = cdiv(Qp, qt);
        // the most rows whose input tile fits half the activation buffer
        const double row_bytes = input_tile_bytes(pr, 1, qt, C1) / double(pr.row_halo);  // bytes per input row
        const double rows_fit = am_half / row_bytes;
        if (rows_fit >= double(pr.row_halo)) {
          std::size_t p1 = static_cast<std::size_t>((rows_fit - double(pr.row_halo)) / double(pr.row_step)) + 1;
          if (p1 > Pp) p1 = Pp;
          m.p2 = cdiv(Pp, p1);
          m.p1 = cdiv(Pp, m.p2);
          const accel_cost c = evaluate(a, l, pr, m);
          any = any || c.valid;
          if (better(c, best.cost)) {
            best.mapping = m;
            best.cost = c;
          }
        }
      }
      if (qt0 <= 1) break;
    }
  }
  return any;
}

/// Enumerates the spatial splits (divisors of NumPE, each within its extent) for one mode.
constexpr void search_mode(const accelerator& a, const accel_layer& l, accel_vectorization v,
                           accel_choice& best) noexcept {
  const array_problem pr = array_problem_of(a, l, v);
  if (!pr.valid) return;
  const std::size_t P = a.num_pe;
  const std::size_t cap_c = pr.c_splittable ? pr.cv : 1;
  accel_mapping m;
  m.mode = v;
  for (int allow_idle = 0; allow_idle < 2; ++allow_idle) {
    bool found = false;
    for (std::size_t dn = 1; dn <= P && dn <= pr.n; ++dn) {
      if (P % dn) continue;
      const std::size_t r1 = P / dn;
      for (std::size_t dp = 1; dp <= r1 && dp <= pr.p; ++dp) {
        if (r1 % dp) continue;
        const std::size_t r2 = r1 / dp;
        for (std::size_t dq = 1; dq <= r2 && dq <= pr.q; ++dq) {
          if (r2 % dq) continue;
          const std::size_t r3 = r2 / dq;
          for (std::size_t dk = 1; dk <= r3 && dk <= pr.kg; ++dk) {
            if (r3 % dk) continue;
            const std::size_t r4 = r3 / dk;
            for (std::size_t dc = allow_idle ? 1 : r4; dc <= r4 && dc <= cap_c; ++dc) {
              if (r4 % dc) continue;
              m.n2s = dn;
              m.p2s = dp;
              m.q2s = dq;
              m.k2s = dk;
              m.c2s = dc;
              if (search_temporal(a, l, pr, m, best)) found = true;
            }
          }
        }
      }
    }
    if (found) break;
  }
}

}  // namespace detail

/// The best mapping of `l` on `a` (Listing 1; see the file comment for the search space).
/// For kinds without MACs (accel_op::none) the result is valid with zero cycles and energy: they run
/// in the post-processing unit fused with their producer. `cost.valid` is false when nothing fits
/// (one K0 group of weights or one input row too big for the buffers even split over every PE).
constexpr accel_choice map_layer(const accelerator& a, const accel_layer& l, const accel_options& o = {}) noexcept {
  accel_choice best;
  if (l.op == accel_op::none) {
    best.cost.valid = true;
    return best;
  }
  if (!a.valid()) return best;
  const bool improved = o.low_channel == low_channel_mapping::improved;
  if (l.op == accel_op::depthwise) {
    detail::search_mode(a, l, accel_vectorization::depthwise_lanes, best);
    if (improved) detail::search_mode(a, l, accel_vectorization::depthwise_rows, best);
  } else {
    detail::search_mode(a, l, accel_vectorization::channels, best);
    if (improved && l.op == accel_op::conv && l.c < a.c0) detail::search_mode(a, l, accel_vectorization::im2col, best);
  }
  return best;
}

}  // namespace drt
