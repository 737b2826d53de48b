// Agreement with the paper (Section V): SegFormer-B2 and Swin-T + UPerNet on the Table II designs.
// The layer lists are the CPU graph's (`segformer_model::layers`); Swin-T + UPerNet uses a temporary
// list built from the architecture until `upernet_swin_model::layers` exists. Where the model and the
// paper disagree the test asserts what the model reproduces and prints the rest (docs/accelerator.md).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <drt/accel/dse.hpp>
#include <drt/accel/estimate.hpp>
#include <drt/accel/report.hpp>
#include <drt/dynamic/path.hpp>
#include <drt/models/resnet.hpp>
#include <drt/models/segformer.hpp>

#include "test_support.hpp"

namespace {

const drt::segformer_model& b2() {
  static const drt::segformer_model m =
      drt::segformer_model::with_random_weights(drt::standard_segformer_config("segformer-b2", 150));
  return m;
}

/// Paper Table III paths a..g, counted as the paper counts them (decoder linears in full: propagate=0).
struct table3_row {
  char id;
  const char* path;
  double norm_miou;
};
const table3_row table3[] = {{'a', "depths=3,4,6,3 fuse_in=3072", 1.00}, {'b', "depths=3,4,6,3 fuse_in=1920", 0.98},
                             {'c', "depths=2,4,6,3 fuse_in=1664", 0.96}, {'d', "depths=2,3,6,3 fuse_in=1408", 0.92},
                             {'e', "depths=2,3,5,3 fuse_in=1024", 0.82}, {'f', "depths=3,2,5,2 fuse_in=896", 0.72},
                             {'g', "depths=2,3,4,3 fuse_in=512", 0.63}};

std::vector<drt::layer_info> b2_layers(const char* path) {
  auto p = drt::segformer_path::parse(path);
  p.propagate = false;
  return b2().layers(512, 512, b2().compile(p));
}

// ---------------------------------------------------------------------------------------------------
// TEMPORARY: Swin-T + UPerNet (ADE20K, 150 classes) layer list built from the architecture (embed 96,
// depths 2,2,6,2, heads 3,6,12,24, window 7 with the grid padded to whole windows as SwinBackbone runs
// it, UPerNet head 512 wide, pool scales 1,2,3,6), mirroring the MAC accounting of
// upernet_swin_model::macs (236.4 G at 512 x 512, fpn_bottleneck 65 %), with the layer names the
// in-progress `upernet_swin_model::layers(h, w)` uses. Replace with that function once it lands.
std::vector<drt::layer_info> temporary_swin_t_upernet_layers(std::size_t height, std::size_t width,
                                                             std::size_t classes = 150) {
  using drt::layer_kind;
  std::vector<drt::layer_info> out;
  auto add = [&](std::string name, layer_kind kind, drt::model_region region, std::size_t k, std::size_t c,
                 std::size_t p, std::size_t q, std::size_t r, std::size_t stride, std::size_t params,
                 std::size_t batch = 1) {
    drt::layer_info l;
    l.name = std::move(name);
    l.kind = kind;
    l.region = region;
    l.batch = batch;
    l.k = k;
    l.c = c;
    l.p = p;
    l.q = q;
    l.r = l.s = r;
    l.stride = stride;
    l.params = params;
    const bool has = kind == layer_kind::conv || kind == layer_kind::depthwise_conv || kind == layer_kind::linear ||
                     kind == layer_kind::attention_matmul;
    l.macs = has ? double(batch) * k * c * p * q * r * r : 0.0;
    out.push_back(std::move(l));
  };
  const auto enc = drt::model_region::encoder, dec = drt::model_region::decoder;
  const std::size_t embed = 96, patch = 4, ws = 7, D = 512;
  const std::size_t depths[4] = {2, 2, 6, 2}, heads[4] = {3, 6, 12, 24};
  std::size_t h = (height + patch - 1) / patch, w = (width + patch - 1) / patch;
  add("PatchEmbed_Conv2D", layer_kind::conv, enc, embed, 3, h, w, patch, patch, embed * 3 * patch * patch + embed);
  add("PatchEmbed_LayerNorm", layer_kind::norm, enc, embed, embed, h * w, 1, 1, 1, 2 * embed);
  std::vector<std::size_t> fh, fw, fc;
  for (std::size_t st = 0; st < 4; ++st) {
    const std::size_t C = embed << st, T = ws * ws, d = C / heads[st];
    const std::size_t nw = ((h + ws - 1) / ws) * ((w + ws - 1) / ws), rows = nw * T;
    for (std::size_t j = 0; j < depths[st]; ++j) {
      const std::string b = "Stage" + std::to_string(st + 1) + " Block" + std::to_string(j + 1) + " ";
      add(b + "layernorm_before", layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C);
      add(b + "attention.qkv", layer_kind::linear, enc, 3 * C, C, rows, 1, 1, 1, 3 * C * C + 3 * C);
      add(b + "attention.qk", layer_kind::attention_matmul, enc, T, d, T, 1, 1, 1, 0, heads[st] * nw);
      add(b + "attention.softmax", layer_kind::softmax, enc, T, T, T, 1, 1, 1, 0, heads[st] * nw);
      add(b + "attention.pv", layer_kind::attention_matmul, enc, d, T, T, 1, 1, 1, 0, heads[st] * nw);
      add(b + "attention.output", layer_kind::linear, enc, C, C, h * w, 1, 1, 1, C * C + C);
      add(b + "layernorm_after", layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C);
      add(b + "mlp.fc1", layer_kind::linear, enc, 4 * C, C, h * w, 1, 1, 1, 4 * C * C + 4 * C);
      add(b + "mlp.fc2", layer_kind::linear, enc, C, 4 * C, h * w, 1, 1, 1, 4 * C * C + C);
    }
    fh.push_back(h);
    fw.push_back(w);
    fc.push_back(C);
    add("hidden_states_norms.stage" + std::to_string(st + 1), layer_kind::norm, enc, C, C, h * w, 1, 1, 1, 2 * C);
    if (st + 1 < 4) {
      const std::size_t oh = (h + 1) / 2, ow = (w + 1) / 2;
      add("Stage" + std::to_string(st + 1) + " patch_merging.norm", layer_kind::norm, enc, 4 * C, 4 * C, oh * ow, 1, 1,
          1, 8 * C);
      add("Stage" + std::to_string(st + 1) + " patch_merging.reduction", layer_kind::linear, enc, 2 * C, 4 * C, oh * ow,
          1, 1, 1, 8 * C * C);
      h = oh;
      w = ow;
    }
  }
  // UPerNet head (ref: transformers modeling_upernet.py UperNetHead)
  const std::size_t L = 4, hl = fh[3], wl = fw[3];
  const std::size_t scales[4] = {1, 2, 3, 6};
  for (std::size_t i = 0; i < 4; ++i) {
    const std::size_t s = scales[i];
    add("psp_modules." + std::to_string(i) + ".pool", layer_kind::pool, dec, fc[3], fc[3], s, s, 1, 1, 0);
    add("psp_modules." + std::to_string(i), layer_kind::conv, dec, D, fc[3], s, s, 1, 1, D * fc[3]);
    add("psp_modules." + std::to_string(i) + ".upsample", layer_kind::resize, dec, D, D, hl, wl, 1, 1, 0);
  }
  add("bottleneck", layer_kind::conv, dec, D, fc[3] + 4 * D, hl, wl, 3, 1, D * (fc[3] + 4 * D) * 9);
  for (std::size_t i = 0; i + 1 < L; ++i)
    add("lateral_convs." + std::to_string(i), layer_kind::conv, dec, D, fc[i], fh[i], fw[i], 1, 1, D * fc[i]);
  for (std::size_t i = L - 1; i > 0; --i) {
    add("top_down." + std::to_string(i), layer_kind::resize, dec, D, D, fh[i - 1], fw[i - 1], 1, 1, 0);
    add("top_down." + std::to_string(i) + ".add", layer_kind::elementwise, dec, D, D, fh[i - 1], fw[i - 1], 1, 1, 0);
  }
  for (std::size_t i = 0; i + 1 < L; ++i)
    add("fpn_convs." + std::to_string(i), layer_kind::conv, dec, D, D, fh[i], fw[i], 3, 1, D * D * 9);
  for (std::size_t i = 1; i < L; ++i)
    add("fpn_upsample." + std::to_string(i), layer_kind::resize, dec, D, D, fh[0], fw[0], 1, 1, 0);
  add("fpn_bottleneck", layer_kind::conv, dec, D, L * D, fh[0], fw[0], 3, 1, D * L * D * 9);
  add("classifier", layer_kind::conv, dec, classes, D, fh[0], fw[0], 1, 1, classes * D + classes);
  add("logits_upsample", layer_kind::resize, dec, classes, classes, height, width, 1, 1, 0);
  return out;
}
// END TEMPORARY
// ---------------------------------------------------------------------------------------------------

double layer_share(const drt::model_estimate& e, const std::string& name) {
  return e.layer(name).cost.cycles / e.cycles;
}

}  // namespace

TEST_SUITE("accel") {
TEST_CASE("agreement: SegFormer-B2 (512x512, path a) on D takes 3.5 ms (within 5 %)") {
  const auto D = drt::table2_accelerator('D');
  const auto layers = b2_layers(table3[0].path);
  CHECK(drt::total_macs(layers) == doctest::Approx(62.34e9).epsilon(0.001));
  const auto e = drt::estimate(D, layers);
  MESSAGE("SegFormer-B2 path a on D: " << e.ms() << " ms (paper 3.5), utilization " << e.utilization() << ", "
                                       << e.energy_mj() << " mJ, " << e.pj_per_mac() << " pJ/MAC");
  CHECK(std::abs(e.ms() / 3.5 - 1) <= 0.05);
  CHECK(e.macs == doctest::Approx(drt::total_macs(layers)));
  // the lane-limited bound alone is 3.54 ms (62.3 G MACs at 100 % would be 3.04 ms): depthwise convs use
  // 1 lane of 32 and the C = 3 patch embedding 3 of 32
  double lane_bound = 0;
  for (const auto& l : layers) {
    const auto s = drt::to_accel_layer(l);
    if (s.op == drt::accel_op::none) continue;
    const double kv = std::ceil(double(s.k) / 32),
                 cv = s.op == drt::accel_op::depthwise ? 1 : std::ceil(double(s.c) / 32);
    lane_bound += double(s.n) * kv * cv * s.r * s.s * s.p * s.q / 16;
  }
  CHECK(D.ms(lane_bound) == doctest::Approx(3.537).epsilon(0.001));
  CHECK(e.cycles >= lane_bound);
  CHECK(layer_share(e, "Conv2DFuse") == doctest::Approx(0.53).epsilon(0.05));
}

TEST_CASE("agreement: Swin-T + UPerNet (512x512) on D takes 12.4 ms (within 8 %), fpn_bottleneck about 61 %") {
  const auto D = drt::table2_accelerator('D');
  const auto layers = temporary_swin_t_upernet_layers(512, 512);
  const double macs = drt::total_macs(layers);
  CHECK(macs == doctest::Approx(236.9e9).epsilon(0.005));
  double fb = 0;
  for (const auto& l : layers)
    if (l.name == "fpn_bottleneck") fb = l.macs;
  CHECK(fb / macs == doctest::Approx(0.65).epsilon(0.01));
  const auto e = drt::estimate(D, layers);
  const double share = layer_share(e, "fpn_bottleneck");
  const double convs = e.cycles_of(drt::layer_kind::conv) / e.cycles;
  MESSAGE("Swin-T + UPerNet on D: " << e.ms() << " ms (paper 12.4), fpn_bottleneck " << 100 * share
                                    << " % (paper 61), convolutions " << 100 * convs << " % (paper 89)");
  CHECK(std::abs(e.ms() / 12.4 - 1) <= 0.08);
  CHECK(std::abs(share - 0.61) <= 0.05);
  CHECK(std::abs(convs - 0.89) <= 0.03);
}

TEST_CASE("agreement: the 16-wide designs (H..M) are about 8 % faster than D on SegFormer-B2") {
  const auto layers = b2_layers(table3[0].path);
  const double d = drt::estimate(drt::table2_accelerator('D'), layers).ms();
  double sum = 0;
  for (char id = 'H'; id <= 'M'; ++id) {
    const double t = drt::estimate(drt::table2_accelerator(id), layers).ms();
    const double faster = d / t - 1;
    MESSAGE(std::string(1, id) << ": " << t << " ms, " << 100 * faster << " % faster than D");
    CHECK(faster >= 0.04);
    CHECK(faster <= 0.12);
    sum += faster;
  }
  CHECK(std::abs(sum / 6 - 0.08) <= 0.02);
}

TEST_CASE("agreement: C is faster than D..G across the Table III paths (paper: 1.03-1.19x)") {
  std::vector<double> ratios;
  for (const auto& row : table3) {
    const auto layers = b2_layers(row.path);
    const double c = drt::estimate(drt::table2_accelerator('C'), layers).ms();
    std::string line = std::string("path ") + row.id + ": C " + std::to_string(c) + " ms;";
    for (char id = 'D'; id <= 'G'; ++id) {
      const double r = drt::estimate(drt::table2_accelerator(id), layers).ms() / c;
      ratios.push_back(r);
      line += std::string(" ") + id + " " + std::to_string(r).substr(0, 5) + "x";
    }
    MESSAGE(line);
  }
  const double lo = *std::min_element(ratios.begin(), ratios.end());
  const double hi = *std::max_element(ratios.begin(), ratios.end());
  MESSAGE("D..G / C over paths a..g: " << lo << " .. " << hi << " (paper 1.03 .. 1.19)");
  CHECK(lo >= 1.0 - 1e-12);  // C is never slower
  CHECK(hi == doctest::Approx(1.19).epsilon(0.03));
  // the lower end is not reproduced: on the paths whose weights fit D's buffers, D ~ C (docs)
  CHECK(lo < 1.03);
  // throughput per mm2 relative to C, path a: paper 3.6 .. 4.8x
  const auto layers = b2_layers(table3[0].path);
  const double c_tpa = 1 / (drt::estimate(drt::table2_accelerator('C'), layers).ms() *
                            drt::pe_array_area_mm2(drt::table2_accelerator('C')));
  for (char id = 'D'; id <= 'G'; ++id) {
    const auto a = drt::table2_accelerator(id);
    const double tpa = 1 / (drt::estimate(a, layers).ms() * drt::pe_array_area_mm2(a)) / c_tpa;
    MESSAGE(std::string(1, id) << ": throughput per mm2 " << tpa << "x C's (paper 3.6 .. 4.8)");
    CHECK(tpa >= 3.0);
    CHECK(tpa <= 5.0);
  }
}

TEST_CASE("agreement: low-channel layers (C = 3 patch embedding, depthwise convs) cost the most energy per MAC") {
  const auto e = drt::estimate(drt::table2_accelerator('D'), b2_layers(table3[0].path));
  double low_min = 1e300, other_max = 0;
  std::string other_name;
  for (const auto& l : e.layers) {
    if (l.cost.macs == 0) continue;
    const bool low = l.kind == drt::layer_kind::depthwise_conv || l.name == "PatchEmbed1_Conv2D";
    if (low)
      low_min = std::min(low_min, l.cost.pj_per_mac());
    else if (l.cost.pj_per_mac() > other_max) {
      other_max = l.cost.pj_per_mac();
      other_name = l.name;
    }
  }
  MESSAGE("pJ/MAC on D: low-channel layers >= " << low_min << ", every other layer <= " << other_max << " ("
                                                << other_name << "), model average " << e.pj_per_mac());
  CHECK(low_min > 2 * other_max);
  CHECK(e.layer("Stage1 Block1 mlp.dwconv").cost.pj_per_mac() > 10 * e.pj_per_mac());
}

TEST_CASE("beyond the paper: the improved depthwise / C = 3 mapping on SegFormer-B2, D") {
  const auto D = drt::table2_accelerator('D');
  const auto layers = b2_layers(table3[0].path);
  drt::accel_options imp;
  imp.low_channel = drt::low_channel_mapping::improved;
  const auto base = drt::estimate(D, layers), better = drt::estimate(D, layers, imp);
  MESSAGE("improved low-channel mapping on D: " << base.ms() << " -> " << better.ms() << " ms ("
                                                << 100 * (1 - better.ms() / base.ms()) << " % less), "
                                                << base.energy_mj() << " -> " << better.energy_mj() << " mJ");
  CHECK(better.ms() < 0.95 * base.ms());
  CHECK(better.energy_pj < base.energy_pj);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& b = base.layers[i];
    const auto& n = better.layers[i];
    if (b.kind == drt::layer_kind::depthwise_conv || b.name == "PatchEmbed1_Conv2D") {
      CHECK(n.cost.cycles < b.cost.cycles);
      CHECK(n.mapping.mode != drt::accel_vectorization::channels);
    } else {
      CHECK(n.cost.cycles == b.cost.cycles);
    }
  }
}

TEST_CASE("agreement: ResNet-50 (640x480) on C, D, G (paper, OFA sub-networks: D and G 1.5-4.5 % slower than C)") {
  // The paper's OFA sub-networks are not available; the full ResNet-50 graph (classifier included) stands in.
  const auto r50 = drt::resnet_model::with_random_weights(drt::standard_resnet_config("resnet50", 1000));
  const auto layers = r50.layers(480, 640);
  const double c = drt::estimate(drt::table2_accelerator('C'), layers).ms();
  for (char id : {'D', 'G'}) {
    const double t = drt::estimate(drt::table2_accelerator(id), layers).ms();
    MESSAGE("ResNet-50 640x480: " << std::string(1, id) << " " << t << " ms, " << 100 * (t / c - 1)
                                  << " % slower than C (" << c << " ms)");
    CHECK(t >= c);
    CHECK(t / c - 1 <= 0.10);
  }
}

TEST_CASE("accelerator estimate: Pareto view, JSON report, and evaluation speed") {
  // Fig. 11 view: each design averaged over the Table III paths.
  std::vector<std::vector<drt::layer_info>> paths;
  for (const auto& row : table3) paths.push_back(b2_layers(row.path));
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<drt::dse_point> pts;
  for (const auto& a : drt::table2_accelerators) {
    drt::dse_point avg;
    avg.accel = a.name();
    avg.area_mm2 = drt::pe_array_area_mm2(a);
    for (std::size_t i = 0; i < paths.size(); ++i) {
      const auto p = drt::make_dse_point(a, std::string(1, table3[i].id), paths[i], table3[i].norm_miou);
      avg.ms += p.ms / double(paths.size());
      avg.energy_pj += p.energy_pj;
      avg.macs += p.macs;
    }
    pts.push_back(avg);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  drt::mark_pareto(pts);
  std::string front;
  for (const auto& p : pts)
    if (p.pareto) front += p.accel;
  MESSAGE("91 (design, path) estimates in " << secs << " s; Pareto-optimal designs: " << front
                                            << " (paper: D, E, G)");
#ifndef DRT_SANITIZED_BUILD
  CHECK(secs < 10.0);
#endif
  CHECK(front.find('E') != std::string::npos);
  CHECK(front.find('G') != std::string::npos);
  for (std::size_t i = 0; i < pts.size(); ++i) pts[i].k0 = drt::table2_accelerators[i].k0;
  const std::string fig11 = drt::dse_fig11_svg(pts, "Fig. 11 view");
  CHECK(fig11.rfind("<svg ", 0) == 0);
  CHECK(fig11.find("</svg>") != std::string::npos);
  CHECK(fig11.find(">G</text>") != std::string::npos);
  const std::string csv = drt::dse_csv(pts);
  CHECK(csv.rfind("accel,path,ms,cycles,energy_mj,macs,pj_per_mac,area_mm2,throughput_per_mm2,accuracy,pareto\n",
                  0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 14);
  std::vector<drt::dse_point> fig10_pts;
  for (char id : {'C', 'D'})
    for (std::size_t i = 0; i < paths.size(); ++i)
      fig10_pts.push_back(drt::make_dse_point(drt::table2_accelerator(id), std::string(1, table3[i].id), paths[i],
                                              table3[i].norm_miou));
  const std::string fig10 = drt::dse_fig10_svg(fig10_pts, "Fig. 10 view");
  CHECK(fig10.find("<polyline") != std::string::npos);
  CHECK(fig10.find(">C</text>") != std::string::npos);
  // the JSON report of `drt accel --format json`
  const auto e = drt::estimate(drt::table2_accelerator('D'), paths[0]);
  const auto j = drt::to_json(e);
  CHECK(j["accelerator"]["name"] == "D");
  CHECK(j["accelerator"]["area_mm2"].get<double>() == doctest::Approx(2.347).epsilon(0.001));
  CHECK(j["total"]["ms"].get<double>() == doctest::Approx(e.ms()));
  CHECK(j["layers"].size() == paths[0].size());
  CHECK(j["layers"][0]["name"] == "PatchEmbed1_Conv2D");
  CHECK(j["layers"][0]["mapping"]["spatial"]["K2S"].is_number());
  CHECK_THROWS_WITH_AS(e.layer("nope"), "accelerator estimate: no layer named 'nope' among 239 layers",
                       drt::invalid_input);
}
}
