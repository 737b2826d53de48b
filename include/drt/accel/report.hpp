#pragma once
/// @file report.hpp
/// JSON forms of the accelerator, a mapping and a model estimate (the `drt accel --format json`
/// layout): `{accelerator: {..., area_mm2}, total: {cycles, ms, energy_mj, macs, utilization},
/// layers: [{name, kind, macs, mapping: {...}, cycles, utilization, energy_mj}, ...]}`; and the
/// `--format csv` one (`to_csv`: one row per layer, then a `total` row).

#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "accelerator.hpp"
#include "area.hpp"
#include "cost.hpp"
#include "estimate.hpp"

namespace drt {

inline nlohmann::json to_json(const accelerator& a) {
  nlohmann::json j;
  j["name"] = a.name();
  j["k0"] = a.k0;
  j["c0"] = a.c0;
  j["num_pe"] = a.num_pe;
  j["wm_kb"] = a.wm_kb;
  j["am_kb"] = a.am_kb;
  j["clock_ghz"] = a.clock_ghz;
  j["acc_depth"] = a.acc_depth;
  j["gb_kb"] = a.gb_kb;
  j["gb_bytes_per_cycle"] = a.gb_bytes_per_cycle;
  j["dram_bytes_per_cycle"] = a.dram_bytes_per_cycle;
  j["area_mm2"] = pe_array_area_mm2(a);
  return j;
}

inline nlohmann::json to_json(const accel_mapping& m) {
  nlohmann::json j;
  j["mode"] = to_string(m.mode);
  j["spatial"] = {{"N2S", m.n2s}, {"P2S", m.p2s}, {"Q2S", m.q2s}, {"K2S", m.k2s}, {"C2S", m.c2s}};
  j["array"] = {{"K2", m.k2}, {"P2", m.p2}, {"Q2", m.q2}, {"N2", m.n2}};
  j["pe"] = {{"P1", m.p1}, {"Q1", m.q1}, {"K1", m.k1}, {"C1", m.c1}, {"Q0", m.q0}};
  j["wm_double_buffered"] = m.wm_double_buffered;
  return j;
}

inline nlohmann::json to_json(const model_estimate& e) {
  nlohmann::json j;
  j["accelerator"] = to_json(e.accel);
  j["low_channel_mapping"] = e.options.low_channel == low_channel_mapping::improved ? "improved" : "paper";
  j["total"] = {{"cycles", e.cycles},
                {"ms", e.ms()},
                {"energy_mj", e.energy_mj()},
                {"macs", e.macs},
                {"utilization", e.utilization()},
                {"pj_per_mac", e.pj_per_mac()},
                {"dram_bytes", e.dram_bytes}};
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& l : e.layers) {
    nlohmann::json r;
    r["name"] = l.name;
    r["module"] = l.module;
    r["kind"] = to_string(l.kind);
    r["macs"] = l.cost.macs;
    if (l.shape.op != accel_op::none) r["mapping"] = to_json(l.mapping);
    r["cycles"] = l.cost.cycles;
    r["compute_cycles"] = l.cost.compute_cycles;
    r["utilization"] = l.cost.utilization(e.accel);
    r["energy_mj"] = l.cost.energy_pj() * 1e-9;
    r["dram_bytes"] = l.cost.dram_bytes;
    layers.push_back(std::move(r));
  }
  j["layers"] = std::move(layers);
  return j;
}

/// One row per layer and a final `total` row:
/// name,kind,macs,cycles,compute_cycles,utilization,energy_mj,dram_bytes,mode,N2S,P2S,Q2S,K2S,C2S,K2,P2,Q2,N2,P1,Q1,K1,C1,Q0,wm_double_buffered
/// (the tiling fields empty for layers without MACs, which cost nothing).
inline std::string to_csv(const model_estimate& e) {
  std::ostringstream o;
  o.precision(10);
  o << "name,kind,macs,cycles,compute_cycles,utilization,energy_mj,dram_bytes,mode,N2S,P2S,Q2S,K2S,C2S,K2,P2,Q2,N2,P1,"
       "Q1,K1,C1,Q0,wm_double_buffered\n";
  for (const auto& l : e.layers) {
    o << '"' << l.name << "\"," << to_string(l.kind) << ',' << l.cost.macs << ',' << l.cost.cycles << ','
      << l.cost.compute_cycles << ',' << l.cost.utilization(e.accel) << ',' << l.cost.energy_pj() * 1e-9 << ','
      << l.cost.dram_bytes << ',';
    if (l.shape.op != accel_op::none) {
      const auto& m = l.mapping;
      o << to_string(m.mode) << ',' << m.n2s << ',' << m.p2s << ',' << m.q2s << ',' << m.k2s << ',' << m.c2s << ','
        << m.k2 << ',' << m.p2 << ',' << m.q2 << ',' << m.n2 << ',' << m.p1 << ',' << m.q1 << ',' << m.k1 << ','
        << m.c1 << ',' << m.q0 << ',' << (m.wm_double_buffered ? 1 : 0) << '\n';
    } else {
      o << ",,,,,,,,,,,,,,,\n";
    }
  }
  o << "total,," << e.macs << ',' << e.cycles << ",," << e.utilization() << ',' << e.energy_mj() << ','
    << e.dram_bytes << ",,,,,,,,,,,,,,,\n";
  return o.str();
}

}  // namespace drt
