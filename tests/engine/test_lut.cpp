// LUT: JSON round trip, validation errors naming file/entry/value, the other-machine warning.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <drt/engine/lut.hpp>

#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {
drt::lut_entry entry(const std::string& path, double ms, double miou) {
  drt::lut_entry e;
  e.model = "segformer-b0-camvid";
  e.model_dir = "data/models/segformer-b0-camvid";
  e.path = path;
  e.macs = 1e9 * ms;
  e.latency_ms = ms;
  e.latency_p95_ms = ms * 1.1;
  e.miou = miou;
  return e;
}

drt::lookup_table small_table() {
  drt::lookup_table t;
  t.machine.cpu = "Test CPU 9000";
  t.machine.logical_cpus = 2;
  t.machine.threads = 2;
  t.machine.date = "2025-01-01T00:00:00Z";
  t.entries = {entry("full", 100, 0.52), entry("fuse_in=512", 60, 0.50), entry("pred_in=128", 80, 0.49),
               entry("depths=1,2,2,2 fuse_in=512", 50, 0.45)};
  t.entries[2].latency_source = "predicted";
  t.entries[2].predicted_latency_ms = 80;
  t.entries[2].measured_latency_ms = 85;
  t.entries[2].measured_latency_p95_ms = 99;
  t.info["input"] = {{"height", 360}, {"width", 480}};
  t.mark_pareto();
  t.normalize(0.52);
  return t;
}

std::string write_file(const std::string& name, const std::string& text) {
  const auto p = (fs::temp_directory_path() / name).string();
  std::ofstream(p) << text;
  return p;
}

/// A valid LUT document with `patch` applied to entry 0 (or to the top level when top is true).
std::string lut_text(const nlohmann::json& patch, bool top = false) {
  auto j = small_table().to_json();
  if (top)
    j.merge_patch(patch);
  else
    j["entries"][0].merge_patch(patch);
  return j.dump();
}
}  // namespace

TEST_SUITE("engine") {
  TEST_CASE("lut: pareto flags, normalization and a JSON round trip through a file") {
    const auto t = small_table();
    CHECK(t.entries[0].pareto);
    CHECK(t.entries[1].pareto);
    CHECK_FALSE(t.entries[2].pareto);  // slower than fuse_in=512 and less accurate
    CHECK(t.entries[3].pareto);
    CHECK(t.front() == std::vector<std::size_t>{3, 1, 0});
    CHECK(t.entries[1].miou_normalized == doctest::Approx(0.50 / 0.52));
    const auto file = (fs::temp_directory_path() / "drt_lut_roundtrip.json").string();
    drt::save_lut(t, file);
    const auto u = drt::load_lut(file);
    REQUIRE(u.entries.size() == 4);
    CHECK(u.version == drt::lut_format_version);
    CHECK(u.machine.cpu == "Test CPU 9000");
    CHECK(u.input_height() == 360);
    CHECK(u.input_width() == 480);
    for (std::size_t i = 0; i < 4; ++i) {
      CHECK(u.entries[i].path == t.entries[i].path);
      CHECK(u.entries[i].latency_ms == t.entries[i].latency_ms);
      CHECK(u.entries[i].latency_p95_ms == t.entries[i].latency_p95_ms);
      CHECK(u.entries[i].miou == t.entries[i].miou);
      CHECK(u.entries[i].pareto == t.entries[i].pareto);
      CHECK(u.entries[i].latency_source == t.entries[i].latency_source);
      CHECK(u.entries[i].decoder_folded);  // the default graph, written as "decoder": "folded"
    }
    CHECK(u.entries[2].predicted_latency_ms == 80);
    CHECK(u.entries[2].measured_latency_ms == 85);
    CHECK(u.entries[2].measured_latency_p95_ms == 99);
    CHECK(std::isnan(u.entries[0].measured_latency_ms));
    const auto j = drt::load_lut(file).to_json();
    CHECK(j["format"] == "drt-lut");
    CHECK(j["version"] == 1);
    for (const char* key :
         {"model", "path", "macs", "latency_ms", "latency_p95_ms", "miou", "miou_normalized", "pareto", "decoder"})
      CHECK(j["entries"][0].contains(key));
    CHECK(j["entries"][0]["decoder"] == "folded");
    // A table written before the fold (no "decoder") was measured on the unfolded graph.
    auto old = j;
    for (auto& e : old["entries"]) e.erase("decoder");
    old["entries"][1]["decoder"] = "unfolded";
    const auto v = drt::lut_from_json(old, "lut 'old.json'");
    CHECK_FALSE(v.entries[0].decoder_folded);
    CHECK_FALSE(v.entries[1].decoder_folded);
  }

  TEST_CASE("lut: an entry's miou_interval round-trips and is checked") {
    auto t = small_table();
    t.entries.resize(1);
    auto e = t.entries[0];
    e.model = "m";
    e.path = "full";
    t.entries.clear();
    e.latency_ms = e.latency_p95_ms = 10;
    e.miou = 0.6;
    e.miou_ci.low = 0.55;
    e.miou_ci.high = 0.64;
    e.miou_ci.resamples = 1000;
    t.entries.push_back(e);
    e.path = "depths=1,1,1,1";
    e.miou_ci = drt::miou_interval{};  // none: not written
    t.entries.push_back(e);
    t.normalize(0.6);
    t.mark_pareto();
    const auto j = t.to_json();
    CHECK(j["entries"][0]["miou_interval"]["low"] == 0.55);
    CHECK(j["entries"][0]["miou_interval"]["level"] == 0.95);
    CHECK_FALSE(j["entries"][1].contains("miou_interval"));
    const auto u = drt::lut_from_json(j, "lut 'ci.json'");
    CHECK(u.entries[0].miou_ci.low == 0.55);
    CHECK(u.entries[0].miou_ci.high == 0.64);
    CHECK(u.entries[0].miou_ci.resamples == 1000);
    CHECK_FALSE(u.entries[1].miou_ci.valid());
    auto bad = j;
    bad["entries"][0]["miou_interval"]["low"] = 0.7;
    CHECK_THROWS_WITH_AS(drt::lut_from_json(bad, "lut 'ci.json'"),
                         doctest::Contains("lut 'ci.json': entry 0 (m 'full'): miou_interval: low 0.7 and high 0.64"),
                         drt::invalid_input);
    bad = j;
    bad["entries"][0]["miou_interval"] = 3;
    CHECK_THROWS_WITH_AS(drt::lut_from_json(bad, "lut 'ci.json'"), doctest::Contains("must be an object"),
                         drt::invalid_input);
  }

  TEST_CASE("lut: a LUT from another machine warns, the same machine does not") {
    const auto t = small_table();
    auto here = t.machine;
    here.date = "2030-01-01T00:00:00Z";  // the date is not compared
    CHECK(drt::machine_mismatch(t.machine, here, "lut 'a.json'").empty());
    here.cpu = "Other CPU";
    here.logical_cpus = 8;
    here.threads = 8;
    CHECK(drt::machine_mismatch(t.machine, here, "lut 'a.json'") ==
          "lut 'a.json' was measured on another machine (Test CPU 9000, 2 logical CPUs, 2 threads, "
          "2025-01-01T00:00:00Z); this one is Other CPU, 8 logical CPUs, 8 threads: its latencies may not hold here");
    here = t.machine;
    here.threads = 1;  // same CPU, fewer threads: latencies differ too
    CHECK_FALSE(drt::machine_mismatch(t.machine, here, "lut 'a.json'").empty());
    // one model name, two vector ISAs (VMs report "AMD EPYC" for Zen 3 and Zen 5 alike)
    here = t.machine;
    auto measured = t.machine;
    measured.isa = "avx2";
    here.isa = "avx512";
    CHECK(drt::machine_mismatch(measured, here, "lut 'a.json'") ==
          "lut 'a.json' was measured on another machine (Test CPU 9000 (avx2), 2 logical CPUs, 2 threads, "
          "2025-01-01T00:00:00Z); this one is Test CPU 9000 (avx512), 2 logical CPUs, 2 threads: its latencies may "
          "not hold here");
    measured.isa.clear();  // a table that did not record its ISA is compared on the rest
    CHECK(drt::machine_mismatch(measured, here, "lut 'a.json'").empty());
    const auto now = drt::machine_info::current(3);
    CHECK(now.threads == 3);
    CHECK((now.isa == "avx512" || now.isa == "avx2" || now.isa == "sse"));
    CHECK_FALSE(now.cpu.empty());
    CHECK(now.date.size() == 20);
  }

  TEST_CASE("lut: bad files give errors naming the file, the entry and the value") {
    CHECK_THROWS_WITH_AS(drt::load_lut("/nonexistent/lut.json"),
                         "lut '/nonexistent/lut.json': cannot open file (No such file or directory)", drt::io_error);
    CHECK_THROWS_WITH_AS(drt::load_lut(fs::temp_directory_path().string()),
                         ("lut '" + fs::temp_directory_path().string() + "': cannot open file (it is a directory)").c_str(),
                         drt::io_error);
    auto check = [](const std::string& text, const std::string& message) {
      const auto f = write_file("drt_bad_lut.json", text);
      CHECK_THROWS_WITH_AS(drt::load_lut(f), ("lut '" + f + "': " + message).c_str(), drt::invalid_input);
    };
    const auto f = write_file("drt_bad_lut.json", "{\"version\": 1,");
    CHECK_THROWS_AS(drt::load_lut(f), drt::invalid_input);
    try {
      drt::load_lut(f);
    } catch (const drt::invalid_input& e) {
      CHECK(std::string(e.what()).rfind("lut '" + f + "': not valid JSON (", 0) == 0);
    }
    check("[1, 2]", "expected a JSON object with 'version', 'machine' and 'entries'");
    check(lut_text({{"version", 2}}, true), "version 2 is not supported (this drt reads version 1)");
    check(lut_text({{"version", "1"}}, true), "field 'version' must be an integer, got \"1\"");
    check(lut_text({{"format", "other"}}, true), "format \"other\" is not a drt lookup table (\"drt-lut\")");
    check(lut_text({{"entries", nlohmann::json::array()}}, true),
          "'entries' is empty, expected at least one measured path");
    check(lut_text({{"machine", nullptr}}, true), "missing object 'machine' (cpu, logical_cpus, threads, date)");
    check(lut_text({{"latency_ms", -3}}),
          "entry 0 (segformer-b0-camvid 'full'): latency_ms -3 must be a positive number of milliseconds");
    check(lut_text({{"latency_p95_ms", 0}}),
          "entry 0 (segformer-b0-camvid 'full'): latency_p95_ms 0 must be a positive number of milliseconds");
    check(lut_text({{"miou", 1.5}}), "entry 0 (segformer-b0-camvid 'full'): miou 1.5 must be in [0, 1]");
    check(lut_text({{"measured_latency_ms", -2}}),
          "entry 0 (segformer-b0-camvid 'full'): measured_latency_ms -2 must be a positive number of milliseconds");
    check(lut_text({{"miou", nullptr}}), "entry 0 (segformer-b0-camvid 'full'): missing field 'miou'");
    check(lut_text({{"latency_ms", "fast"}}),
          "entry 0 (segformer-b0-camvid 'full'): field 'latency_ms' must be a number, got \"fast\"");
    check(lut_text({{"pareto", 1}}),
          "entry 0 (segformer-b0-camvid 'full'): field 'pareto' must be true or false, got 1");
    check(lut_text({{"decoder", "half"}}),
          "entry 0 (segformer-b0-camvid 'full'): field 'decoder' is \"half\", expected \"folded\" or \"unfolded\"");
    check(lut_text({{"decoder", true}}),
          "entry 0 (segformer-b0-camvid 'full'): field 'decoder' must be a string, got true");
    check(lut_text({{"latency_source", "guessed"}}),
          "entry 0 (segformer-b0-camvid 'full'): latency_source 'guessed' must be \"measured\" or \"predicted\"");
    check(lut_text({{"model", nullptr}}), "entry 0: missing field 'model'");
    // issue 16: integers never wrap, wrong types name the field
    check(lut_text({{"version", 1099511627777ULL}}, true),
          "version 1099511627777 is not supported (this drt reads version 1)");  // 2^40 + 1, not 1
    check(lut_text({{"input", {{"height", "360"}, {"width", 480}}}}, true),
          "input: field 'height' must be an integer in [1, 1048576], got \"360\"");
    check(lut_text({{"input", 360}}, true), "field 'input' must be an object {height, width}, got 360");
    check(lut_text({{"machine", {{"threads", 4294967298ULL}}}}, true),
          "machine: field 'threads' must be an integer in [1, 1048576], got 4294967298");
    check(lut_text({{"machine", {{"threads", 2.5}}}}, true), "machine: field 'threads' must be an integer in [1, 1048576], got 2.5");
  }
}
