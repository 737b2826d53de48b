// Listing-1 mapping search and per-layer costs: compile-time known answers, a plain work-item
// reference for the compute counts over odd shapes and every vectorization mode, a brute-force
// search over every tiling on a small accelerator, buffer limits, bandwidth bounds, error texts.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include <drt/accel/estimate.hpp>
#include <drt/accel/tiling.hpp>

#include "test_support.hpp"

namespace {

constexpr drt::accelerator accel_D = drt::table2_accelerator('D');
constexpr drt::accelerator C = drt::table2_accelerator('C');

// SegFormer-B2's first patch embedding (64 x 3 x 7 x 7, stride 4, 128 x 128 out) on D: C = 3 fills 3 of 32
// lanes, so it runs ceil(64/32) * ceil(3/32) * 49 * 128 * 128 / 16 PEs cycles, at 9.4 % utilization.
constexpr drt::accel_choice patch_embed1 = drt::map_layer(accel_D, drt::conv_layer(64, 3, 128, 128, 7, 4));
static_assert(patch_embed1.cost.valid, "maps");
static_assert(patch_embed1.cost.compute_cycles == 2.0 * 1 * 49 * 128 * 128 / 16, "lane-limited compute");
static_assert(patch_embed1.cost.cycles == 100352.0, "and nothing else limits it");
// Conv2DFuse (768 x 3072, 1x1, 128 x 128) on C: compute-bound, 38.65 G MACs / 16384 lanes.
constexpr drt::accel_choice fuse_c = drt::map_layer(C, drt::conv_layer(768, 3072, 128, 128, 1));
static_assert(fuse_c.cost.cycles == 768.0 * 3072 * 128 * 128 / 16384, "Conv2DFuse on C");
static_assert(fuse_c.mapping.k2 == 1 && fuse_c.mapping.wm_double_buffered, "C keeps its 2.36 MB of weights resident");
// On accel_D the 2.36 MB of weights exceed the 2 MB of weight buffers: two K2 passes, single buffered, the
// weight loads (2.36 MB at 48 B/cycle) on the critical path.
constexpr drt::accel_choice fuse_d = drt::map_layer(accel_D, drt::conv_layer(768, 3072, 128, 128, 1));
static_assert(fuse_d.mapping.k2 == 2 && !fuse_d.mapping.wm_double_buffered, "K2 = 2 on D");
static_assert(fuse_d.cost.cycles == fuse_c.cost.cycles + 768.0 * 3072 / 48, "compute + exposed weight loads");
// A kind without MACs costs nothing (fused in post-processing).
static_assert(drt::map_layer(accel_D, drt::accel_layer{drt::accel_op::none}).cost.cycles == 0, "post-processing");

/// A small accelerator whose buffers force K2 > 1, small tiles and cross-PE reduction on small layers.
drt::accelerator tiny() {
  drt::accelerator a;
  a.label = "tiny";
  a.k0 = 4;
  a.c0 = 4;
  a.num_pe = 4;
  a.wm_kb = 1;
  a.am_kb = 1;
  a.acc_depth = 4;
  a.gb_kb = 4;
  a.gb_bytes_per_cycle = 16;
  a.dram_bytes_per_cycle = 4;
  return a;
}

std::size_t cdiv(std::size_t a, std::size_t b) { return (a + b - 1) / b; }

/// Plain reference for the compute side of a mapping: enumerates every vector-MAC step (work item) of
/// the layer in the mode's own terms, gives it to the PE its spatial indices name, and counts.
struct compute_ref {
  double max_pe_cycles = 0, vector_ops = 0, useful_macs = 0;
};

compute_ref reference_compute(const drt::accelerator& a, const drt::accel_layer& l, const drt::accel_mapping& m) {
  using V = drt::accel_vectorization;
  std::vector<double> pe(m.n2s * m.p2s * m.q2s * m.k2s * m.c2s, 0.0);
  compute_ref r;
  // extents of the split dimensions in this mode: products, rows, Q positions, unit groups, vectors
  std::size_t N = l.n, P = l.p, Q = l.q, G = 0, CV = 1, taps = l.r * l.s;
  std::size_t nq = 0, g = 0, L = 0;
  switch (m.mode) {
    case V::channels:
      G = cdiv(l.k, a.k0), CV = cdiv(l.c, a.c0);
      break;
    case V::depthwise_lanes:
      g = std::min(a.k0, a.c0), G = cdiv(l.k, g);
      break;
    case V::depthwise_rows:
      nq = std::min<std::size_t>(a.k0, (a.c0 - l.s) / l.stride + 1);
      N = l.n * l.k, Q = cdiv(l.q, nq), G = 1, taps = l.r;
      break;
    case V::im2col:
      L = l.r * l.s * l.c, G = cdiv(l.k, a.k0), CV = cdiv(L, a.c0), taps = 1;
      break;
  }
  const std::size_t Np = cdiv(N, m.n2s), Pp = cdiv(P, m.p2s), Qp = cdiv(Q, m.q2s), Gp = cdiv(G, m.k2s),
                    Cp = cdiv(CV, m.c2s);
  for (std::size_t n = 0; n < N; ++n)
    for (std::size_t p = 0; p < P; ++p)
      for (std::size_t q = 0; q < Q; ++q)
        for (std::size_t gi = 0; gi < G; ++gi)
          for (std::size_t t = 0; t < taps; ++t)
            for (std::size_t cv = 0; cv < CV; ++cv) {
              double units = 0, lanes = 0;  // busy units, useful lanes per busy unit
              switch (m.mode) {
                case V::channels:
                  units = double(std::min<std::size_t>(a.k0, l.k - gi * a.k0));
                  lanes = double(std::min<std::size_t>(a.c0, l.c - cv * a.c0));
                  break;
                case V::depthwise_lanes:
                  units = double(std::min<std::size_t>(g, l.k - gi * g));
                  lanes = 1;
                  break;
                case V::depthwise_rows:
                  units = double(std::min<std::size_t>(nq, l.q - q * nq));
                  lanes = double(l.s);
                  break;
                case V::im2col:
                  units = double(std::min<std::size_t>(a.k0, l.k - gi * a.k0));
                  lanes = double(std::min<std::size_t>(a.c0, L - cv * a.c0));
                  break;
              }
              const std::size_t id = (((n / Np * m.p2s + p / Pp) * m.q2s + q / Qp) * m.k2s + gi / Gp) * m.c2s + cv / Cp;
              pe.at(id) += 1;
              r.vector_ops += units;
              r.useful_macs += units * lanes;
            }
  r.max_pe_cycles = *std::max_element(pe.begin(), pe.end());
  return r;
}

/// Every tiling the cost model accepts (all divisor splits, all K1, P1, Q tiles, Q0 and both weight
/// bufferings) for one mode; the best by the search's own order.
drt::accel_cost brute_force(const drt::accelerator& a, const drt::accel_layer& l, drt::accel_vectorization v) {
  using drt::detail::cdiv;
  const auto pr = drt::detail::array_problem_of(a, l, v);
  drt::accel_cost best;
  if (!pr.valid) return best;
  const std::size_t PE = a.num_pe;
  for (std::size_t dn = 1; dn <= std::min(PE, pr.n); ++dn)
    for (std::size_t dp = 1; dn * dp <= PE && dp <= pr.p; ++dp)
      for (std::size_t dq = 1; dn * dp * dq <= PE && dq <= pr.q; ++dq)
        for (std::size_t dk = 1; dn * dp * dq * dk <= PE && dk <= pr.kg; ++dk)
          for (std::size_t dc = 1; dn * dp * dq * dk * dc <= PE && dc <= pr.cv; ++dc) {
            if (PE % (dn * dp * dq * dk * dc)) continue;
            drt::accel_mapping m;
            m.mode = v;
            m.n2s = dn, m.p2s = dp, m.q2s = dq, m.k2s = dk, m.c2s = dc;
            const std::size_t Pp = cdiv(pr.p, dp), Qp = cdiv(pr.q, dq), Kp = cdiv(pr.kg, dk);
            m.c1 = cdiv(pr.cv, dc);
            m.n2 = cdiv(pr.n, dn);
            for (int db = 0; db < 2; ++db)
              for (std::size_t k1 = 1; k1 <= Kp; ++k1)
                for (std::size_t p1 = 1; p1 <= Pp; ++p1)
                  for (std::size_t qt = 1; qt <= Qp; ++qt)
                    for (std::size_t q0 = 1; q0 <= std::min<std::size_t>(qt, a.acc_depth); ++q0) {
                      if (qt % q0) continue;
                      m.wm_double_buffered = db == 0;
                      m.k1 = k1, m.k2 = cdiv(Kp, k1), m.p1 = p1, m.p2 = cdiv(Pp, p1);
                      m.q0 = q0, m.q1 = qt / q0, m.q2 = cdiv(Qp, qt);
                      const auto c = drt::detail::evaluate(a, l, pr, m);
                      if (drt::detail::better(c, best)) best = c;
                    }
          }
  return best;
}

/// The odd shapes of the sweep: k and c below, at and above the vector widths, not multiples of them.
std::vector<drt::accel_layer> odd_layers() {
  return {
      drt::conv_layer(5, 7, 5, 6, 3, 1),   drt::conv_layer(9, 3, 7, 5, 3, 2),   drt::conv_layer(4, 4, 4, 4, 1, 1),
      drt::conv_layer(13, 17, 3, 3, 3, 1), drt::conv_layer(3, 2, 6, 6, 3, 1),   drt::conv_layer(8, 5, 2, 9, 2, 2),
      drt::matmul_layer(11, 6, 10),        drt::matmul_layer(7, 9, 5, 3, true), drt::matmul_layer(1, 12, 3),
      drt::depthwise_layer(6, 5, 7, 3, 1), drt::depthwise_layer(9, 6, 6, 3, 2), drt::depthwise_layer(4, 3, 11, 3, 1)};
}

}  // namespace

TEST_SUITE("accel") {
TEST_CASE("tiling: compute counts equal a plain work-item reference (odd shapes, every mode)") {
  using V = drt::accel_vectorization;
  auto big = accel_D;
  for (const auto& a : {tiny(), big, drt::table2_accelerator('M')})
    for (const auto& l : odd_layers())
      for (V v : {V::channels, V::depthwise_lanes, V::depthwise_rows, V::im2col}) {
        const auto pr = drt::detail::array_problem_of(a, l, v);
        if (!pr.valid) continue;
        // the best mapping of this mode
        drt::accel_choice best;
        drt::detail::search_mode(a, l, v, best);
        INFO(a.name() << " " << drt::to_string(v) << " layer N" << l.n << " K" << l.k << " C" << l.c << " P" << l.p
                      << " Q" << l.q << " R" << l.r << " stride" << l.stride);
        REQUIRE(best.cost.valid);
        const auto ref = reference_compute(a, l, best.mapping);
        CHECK(best.cost.compute_cycles == ref.max_pe_cycles);
        CHECK(best.cost.vector_ops == doctest::Approx(ref.vector_ops));
        CHECK(ref.useful_macs == doctest::Approx(l.macs()));
        CHECK(best.cost.macs == l.macs());
        // the mapping is self-consistent: same cost when re-evaluated, factors cover the extents,
        // tiles fit the buffers, utilization <= 1
        const auto again = drt::layer_cost(a, l, best.mapping);
        CHECK(again.cycles == best.cost.cycles);
        CHECK(again.energy_pj() == best.cost.energy_pj());
        const auto& m = best.mapping;
        CHECK(m.pes_used() <= a.num_pe);
        CHECK(m.k1 * m.k2 * m.k2s >= pr.kg);
        CHECK(m.p1 * m.p2 * m.p2s >= pr.p);
        CHECK(m.q0 * m.q1 * m.q2 * m.q2s >= pr.q);
        CHECK(m.q0 <= a.acc_depth);
        CHECK(drt::detail::weight_tile_bytes(pr, m.k1, m.c1) <= (m.wm_double_buffered ? 0.5 : 1.0) * a.wm_bytes());
        CHECK(drt::detail::input_tile_bytes(pr, m.p1, m.q1 * m.q0, m.c1) <= 0.5 * a.am_bytes());
        CHECK(best.cost.utilization(a) <= 1.0 + 1e-12);
        CHECK(best.cost.cycles >= best.cost.compute_cycles);
      }
}

TEST_CASE("tiling: the search finds the fewest cycles of every tiling (brute force, small accelerator)") {
  const auto a = tiny();
  for (const auto& l : odd_layers())
    for (auto lc : {drt::low_channel_mapping::paper, drt::low_channel_mapping::improved}) {
      drt::accel_options o;
      o.low_channel = lc;
      const auto s = drt::map_layer(a, l, o);
      using V = drt::accel_vectorization;
      drt::accel_cost b;
      auto consider = [&](V v) {
        const auto c = brute_force(a, l, v);
        if (drt::detail::better(c, b)) b = c;
      };
      if (l.op == drt::accel_op::depthwise) {
        consider(V::depthwise_lanes);
        if (lc == drt::low_channel_mapping::improved) consider(V::depthwise_rows);
      } else {
        consider(V::channels);
        if (lc == drt::low_channel_mapping::improved && l.op == drt::accel_op::conv && l.c < a.c0)
          consider(V::im2col);
      }
      INFO("layer N" << l.n << " K" << l.k << " C" << l.c << " P" << l.p << " Q" << l.q << " R" << l.r);
      REQUIRE(s.cost.valid);
      REQUIRE(b.valid);
      CHECK(s.cost.cycles == doctest::Approx(b.cycles));
      CHECK(s.cost.energy_pj() <= 1.05 * b.energy_pj());  // the search's bounded candidates cost <= 5 % energy
    }
}

TEST_CASE("tiling: lane and vector waste from every ceiling (k, c around K0 and C0)") {
  // P x Q = 16 x 16 splits evenly over 16 PEs, so compute = ceil(K/K0) ceil(C/C0) R S P Q / PEs exactly
  // (bandwidths made ample so that compute decides the mapping).
  const auto fast = accel_D.with_dram_bytes_per_cycle(1e9).with_gb_bytes_per_cycle(1e9);
  for (std::size_t k : {1, 31, 32, 33, 64, 150})
    for (std::size_t c : {3, 31, 32, 33, 96}) {
      const auto l = drt::conv_layer(k, c, 16, 16, 3, 1);
      const auto ch = drt::map_layer(fast, l);
      INFO("K " << k << " C " << c);
      REQUIRE(ch.cost.valid);
      const double lanes = double(cdiv(k, 32)) * cdiv(c, 32) * 9 * 16 * 16 / 16;
      CHECK(ch.cost.compute_cycles == lanes);
      CHECK(ch.cost.cycles == lanes);
      CHECK(ch.cost.utilization(fast) <= double(k) * c / (cdiv(k, 32) * 32.0 * cdiv(c, 32) * 32.0) + 1e-12);
    }
  // 150 classes on 32 units: 150 / 160 of the lanes
  const auto pred = drt::map_layer(accel_D, drt::conv_layer(150, 768, 128, 128, 1));
  CHECK(pred.cost.utilization(accel_D) == doctest::Approx(150.0 / 160.0));
  // depthwise, the paper's way: one useful lane of 32
  const auto dw = drt::map_layer(accel_D, drt::depthwise_layer(256, 128, 128, 3));
  CHECK(dw.mapping.mode == drt::accel_vectorization::depthwise_lanes);
  CHECK(dw.cost.utilization(accel_D) == doctest::Approx(1.0 / 32));
}

TEST_CASE("tiling: the improved low-channel mappings") {
  drt::accel_options imp;
  imp.low_channel = drt::low_channel_mapping::improved;
  // C = 3 patch embedding: R x S x C = 147 taps in ceil(147/32) = 5 vectors instead of 49 x 1
  const auto pe = drt::map_layer(accel_D, drt::conv_layer(64, 3, 128, 128, 7, 4), imp);
  CHECK(pe.mapping.mode == drt::accel_vectorization::im2col);
  CHECK(pe.cost.compute_cycles == 2.0 * 5 * 128 * 128 / 16);
  CHECK(pe.cost.utilization(accel_D) == doctest::Approx(147.0 / 160));
  // depthwise 3x3: 30 output columns per 32-lane row vector, 3 useful lanes each
  const auto dw = drt::map_layer(accel_D, drt::depthwise_layer(256, 128, 128, 3), imp);
  CHECK(dw.mapping.mode == drt::accel_vectorization::depthwise_rows);
  CHECK(dw.cost.compute_cycles == 256.0 * 128 * cdiv(128, 30) * 3 / 16);
  CHECK(dw.cost.cycles < drt::map_layer(accel_D, drt::depthwise_layer(256, 128, 128, 3)).cost.cycles / 2);
  // layers with C >= C0 are unchanged
  const auto lin = drt::matmul_layer(4096, 128, 512);
  CHECK(drt::map_layer(accel_D, lin, imp).cost.cycles == drt::map_layer(accel_D, lin).cost.cycles);
}

TEST_CASE("tiling: memory bounds (weight re-tiling, bandwidth, global buffer)") {
  // Weights beyond the weight buffers force K2 > 1 or a single-buffered tile.
  const auto l = drt::conv_layer(768, 3072, 128, 128, 1);
  CHECK(drt::map_layer(accel_D, l).mapping.k2 == 2);
  CHECK(drt::map_layer(drt::table2_accelerator('G'), l).mapping.k2 == 3);  // 1 MB of weight buffers
  CHECK(drt::map_layer(C, l).mapping.k2 == 1);
  // With a slow DRAM a weight-heavy layer on a tiny input is DRAM bound: cycles = bytes / bandwidth.
  const auto fc = drt::matmul_layer(16, 2048, 2048);
  const auto slow = accel_D.with_dram_bytes_per_cycle(4);
  const auto c = drt::map_layer(slow, fc).cost;
  CHECK(c.cycles == doctest::Approx(c.dram_bytes / 4));
  CHECK(c.dram_bytes >= 2048.0 * 2048);
  // Activations that fit half the global buffer never touch DRAM; larger ones do.
  const auto small = drt::matmul_layer(1024, 64, 64);
  CHECK(drt::map_layer(accel_D, small).cost.dram_bytes == doctest::Approx(64.0 * 64));
  const auto big = drt::matmul_layer(1 << 18, 64, 64);  // 16 MB in, 16 MB out > 16 MB
  CHECK(drt::map_layer(accel_D.with_gb_kb(8 * 1024), big).cost.dram_bytes ==
        doctest::Approx(64.0 * 64 + 2.0 * (1 << 18) * 64));
  // attention operands come from the global buffer when they fit
  const auto qk = drt::matmul_layer(4096, 64, 256, 2, true);
  CHECK(drt::map_layer(accel_D, qk).cost.dram_bytes == 0);
}

TEST_CASE("tiling: graph layers become accelerator layers; errors are named") {
  drt::layer_info li;
  li.name = "Stage1 Block1 attention.qk";
  li.kind = drt::layer_kind::attention_matmul;
  li.batch = 2;
  li.k = 256;
  li.c = 64;
  li.p = 4096;
  const auto l = drt::to_accel_layer(li);
  CHECK(l.op == drt::accel_op::matmul);
  CHECK(l.operand_is_activation);
  CHECK(l.p == 1);  // the paper: input 1 x m, tokens on Q
  CHECK(l.q == 4096);
  CHECK(l.macs() == 2.0 * 256 * 64 * 4096);
  li.kind = drt::layer_kind::softmax;
  CHECK(drt::to_accel_layer(li).op == drt::accel_op::none);
  li.kind = drt::layer_kind::depthwise_conv;
  li.k = 256, li.c = 1, li.p = 128, li.q = 128, li.r = li.s = 3, li.batch = 1;
  CHECK(drt::to_accel_layer(li) == drt::depthwise_layer(256, 128, 128, 3));
  li.kind = drt::layer_kind::conv;
  li.q = 0;
  CHECK_THROWS_WITH_AS(
      drt::to_accel_layer(li),
      "accelerator: layer 'Stage1 Block1 attention.qk' has a zero extent (batch 1, k 256, c 1, p 128, "
      "q 0, r 3, s 3, stride 1)",
      drt::invalid_input);
  // a 3x3 conv whose one K0 group of weights exceeds the weight buffer even over every PE
  auto small = tiny();
  small.wm_kb = 1;
  CHECK_THROWS_WITH_AS(
      drt::map_layer_checked(small, drt::conv_layer(4, 4096, 4, 4, 3), "huge"),
      "accelerator 'tiny': layer 'huge' (N 1, K 4, C 4096, P 4, Q 4, R 3, S 3, stride 1) does not fit: no "
      "split over 4 PEs puts one K0 group of its weights in the 1 KB weight buffer and one input row in half "
      "the 1 KB activation buffer",
      drt::invalid_input);
}
}
