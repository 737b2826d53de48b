// deadline_benchmark (issue 6): does the closed-loop deadline controller keep per-frame deadlines
// on a machine whose load changes, and what accuracy does it keep doing so?
//
// Every strategy sees the same frames, the same per-frame budgets and the same background load:
// the strategies run round robin on each frame (frame i: every strategy once, in an order rotated
// by i), and a load_generator busy-spins a core during fixed blocks of frames (or on a wall-clock
// schedule), so a load phase and any drift of the machine hit all strategies alike. Strategies: static paths (the LUT's
// most accurate entry, its cheapest, and entries spaced along its Pareto front between them),
// lut_policy (open loop) and deadline_controller (closed loop).
//
// Budgets span the table: by default from 1.2 x the cheapest path's median under load to 1.2 x the
// most accurate path's median under load, both timed at start-up (calibration), so the cheapest
// static path can keep every deadline and the most accurate one cannot. The trace is steps
// (seeded levels) for the first half and a sine for the second (or a file, one number per line).
//
// Output: a table on stdout, <prefix>.csv and <prefix>.json (per-frame rows and the summary), an SVG
// of budget and measured latency of the controller vs lut_policy with the load phases shaded, and
// progress on stderr. docs/deadline.md has the command and the results.
//
// Soak mode (--duration-s S, issue 16): deadline_controller alone over the frames, looped for S
// seconds of wall-clock time under a changing wall-clock load (seeded busy/idle phases, one spinning
// thread, ending with the run) and the budget trace repeated; every frame's latency, miss, failure
// (an exception: counted, the run goes on, the exit status is 1) and resident memory (VmRSS) go to
// <prefix>.csv/.json and an SVG of RSS and latency over time. docs/soak.md has the command and results.

#include <drt/engine/executor.hpp>
#include <drt/engine/lut.hpp>
#include <drt/engine/lut_build.hpp>
#include <drt/engine/policy.hpp>
#include <drt/io/file.hpp>
#include <drt/io/image.hpp>
#include <drt/io/svg.hpp>
#include <drt/models/any_model.hpp>

#include <nlohmann/json.hpp>

#include <CLI/CLI.hpp>

#include "bench_memory.hpp"
#include "load_generator.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace fs = std::filesystem;

namespace {

struct usage_error : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

std::string shared_dir() {
  if (const char* env = std::getenv("DRT_SHARED"); env && *env) return env;
#ifdef DRT_DEFAULT_SHARED_DIR
  return DRT_DEFAULT_SHARED_DIR;
#else
  return "../shared";
#endif
}
std::string source_dir() {
#ifdef DRT_SOURCE_DIR
  return DRT_SOURCE_DIR;
#else
  return ".";
#endif
}

struct options {
  std::string lut, frames, budget_mode = "mix", budget_trace, load_text, out_prefix = "docs/results/deadline",
                           svg = "docs/img/deadline.svg";
  std::vector<std::string> models;
  std::size_t memory_frames = 100, n_frames = 300, step_frames = 20, sine_period = 50, load_busy = 25, load_idle = 25,
              load_threads = 1, statics = 5, calib_runs = 5;
  unsigned seed = 1;
  int threads = 0;
  double budget_lo = 0, budget_hi = 0, miss_target = 0.01;
  bool no_load = false, out_prefix_set = false, svg_set = false;
  double duration_s = 0, warmup_s = -1;
  std::size_t rss_every = 1, csv_every = 1;
  std::string command;
};

double parse_number(const std::string& opt, const std::string& v, double min_exclusive) {
  char* end = nullptr;
  errno = 0;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(x) || !(x > min_exclusive))
    throw usage_error("option '" + opt + "' expects a number > " + drt::detail::budget_num(min_exclusive) + ", got '" +
                      v + "'");
  return x;
}
std::size_t parse_count(const std::string& opt, const std::string& v) {
  const double x = parse_number(opt, v, 0);
  if (x != std::floor(x)) throw usage_error("option '" + opt + "' expects a whole number, got '" + v + "'");
  return static_cast<std::size_t>(x);
}

/// The command line, parsed by CLI11; each value is checked by the setter its option names (the
/// message names the option and the value).
options parse_args(int argc, char** argv) {
  options o;
  o.lut = source_dir() + "/data/models/segformer-b0-camvid/lut.json";
  o.frames = shared_dir() + "/data/camvid/images";
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);

  CLI::App app{
      "Does the closed-loop deadline controller keep per-frame deadlines on a machine whose load\n"
      "changes, and what accuracy does it keep doing so? (docs/deadline.md; soak mode: docs/soak.md)",
      "deadline_benchmark"};
  app.set_help_flag("-h,--help", "show this help and exit");
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated option: the last wins
  app.get_formatter()->column_width(24);
  std::string group = "Options";
  // `--name VALUE`; `set` checks and stores the value.
  auto value = [&](const char* name, const char* value_name, const std::string& help,
                   std::function<void(const std::string&)> set) {
    app.add_option_function<std::string>(name, std::move(set), help)->type_name(value_name)->group(group);
  };
  auto count = [&](const char* name, std::size_t& field) {
    return [name, &field](const std::string& v) { field = parse_count(name, v); };
  };
  value("--lut", "FILE", "lookup table (default: data/models/segformer-b0-camvid/lut.json)",
        [&](const std::string& v) { o.lut = v; });
  value("--models", "A,B", "use only these models of the table (names as in the LUT)", [&](const std::string& v) {
    std::stringstream ss(v);
    for (std::string m; std::getline(ss, m, ',');)
      if (!m.empty()) o.models.push_back(m);
  });
  value("--frames", "DIR", "frames, PNG/JPEG in name order, looped (default: $DRT_SHARED/data/camvid/images)",
        [&](const std::string& v) { o.frames = v; });
  value("--n-frames", "N", "frames to run (default 300)", count("--n-frames", o.n_frames));
  value("--memory-frames", "N",
        "deadline_controller plans for the slowest speed of the last N frames (default 100; 0: purely reactive; "
        "> 0 also runs reactive_controller)",
        count("--memory-frames", o.memory_frames));
  value("--seed", "S", "seed of the budget steps (default 1)",
        [&](const std::string& v) { o.seed = static_cast<unsigned>(parse_number("--seed", v, -1)); });
  value("--threads", "T", "OpenMP threads of the inference (default: OpenMP's)",
        [&](const std::string& v) { o.threads = static_cast<int>(parse_count("--threads", v)); });
  value("--budget", "MODE", "steps | sine | mix (steps, then sine; default mix)", [&](const std::string& v) {
    if (v != "steps" && v != "sine" && v != "mix")
      throw usage_error("option '--budget' expects steps, sine or mix, got '" + v + "'");
    o.budget_mode = v;
  });
  value("--budget-trace", "FILE", "budgets from a file instead, one number of ms per line, used cyclically",
        [&](const std::string& v) { o.budget_trace = v; });
  value("--budget-lo-ms", "X", "lowest budget (default 1.5 x the cheapest path's loaded median, calibrated)",
        [&](const std::string& v) { o.budget_lo = drt::parse_budget_ms(v, "--budget-lo-ms"); });
  value("--budget-hi-ms", "X", "highest budget (default 1.2 x the most accurate path's loaded median)",
        [&](const std::string& v) { o.budget_hi = drt::parse_budget_ms(v, "--budget-hi-ms"); });
  value("--step-frames", "N", "frames per budget step (default 20)", count("--step-frames", o.step_frames));
  value("--sine-period", "N", "frames per sine period (default 50)", count("--sine-period", o.sine_period));
  value("--load-busy", "N", "load trace in frames: N frames with the load on ... (default 25)",
        count("--load-busy", o.load_busy));
  value("--load-idle", "N", "... then N frames with it off; the trace starts idle (default 25)",
        count("--load-idle", o.load_idle));
  value("--load", "SCHEDULE", "load in wall-clock seconds instead, e.g. idle:10,busy:20,idle:20",
        [&](const std::string& v) { o.load_text = v; });
  value("--load-threads", "N", "spinning threads during busy phases (default 1: one core)",
        count("--load-threads", o.load_threads));
  app.add_flag("--no-load", o.no_load, "no background load");
  value("--statics", "K", "static paths run, spaced along the front, cheapest and best included (default 5)",
        count("--statics", o.statics));
  value("--miss-target", "R", "the controller's target miss rate (default 0.01)",
        [&](const std::string& v) { o.miss_target = parse_number("--miss-target", v, 0); });
  value("--calib-runs", "N", "runs per path and load state in the calibration (default 5)",
        count("--calib-runs", o.calib_runs));
  value("--out-prefix", "P", "write P.csv and P.json (default docs/results/deadline)", [&](const std::string& v) {
    o.out_prefix = v;
    o.out_prefix_set = true;
  });
  value("--svg", "FILE", "plot (default docs/img/deadline.svg, or P.svg with --out-prefix P; 'none' to skip)",
        [&](const std::string& v) {
          o.svg = v;
          o.svg_set = true;
        });
  group = "Soak mode (issue 16): deadline_controller alone, for a wall-clock duration, resident memory sampled";
  value("--duration-s", "S",
        "run for S seconds, looping over the frames (each decoded when run); --n-frames is then the length of the "
        "budget trace, repeated (default 300)",
        [&](const std::string& v) { o.duration_s = parse_number("--duration-s", v, 0); });
  value("--warmup-s", "W", "RSS 'after warm-up' and its slope are taken from W s on (default min(120, S/4))",
        [&](const std::string& v) { o.warmup_s = parse_number("--warmup-s", v, -1e-300); });
  value("--rss-every", "N", "sample VmRSS every N frames (default 1)", count("--rss-every", o.rss_every));
  value("--csv-every", "K", "write every K-th frame (and every missed or failed one) to the CSV (default 1)",
        count("--csv-every", o.csv_every));
  app.footer(
      "Soak mode's default load: wall-clock busy/idle phases of seeded lengths (busy 5-60 s, idle 5-60 s),\n"
      "one spinning thread, ending with the run; outputs: docs/results/soak.{csv,json}, docs/img/soak_rss.svg\n"
      "(with --out-prefix P: P.csv, P.json, P_rss.svg).");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    std::exit(0);
  } catch (const CLI::ExtrasError&) {
    const auto extras = app.remaining();
    const std::string first = extras.empty() ? std::string() : extras.front();
    throw usage_error(first.size() > 1 && first[0] == '-' ? "unknown option '" + first.substr(0, first.find('=')) + "'"
                                                          : "unexpected argument '" + first + "'");
  } catch (const CLI::ParseError& e) {  // a missing value, a value for --no-load
    throw usage_error(e.what());
  }
  // An output prefix given without --svg takes the plot along, so that a trial run elsewhere does not
  // overwrite the plot in docs/.
  if (o.out_prefix_set && !o.svg_set && o.out_prefix != "none")
    o.svg = o.out_prefix + (o.duration_s > 0 ? "_rss.svg" : ".svg");
  if (o.duration_s > 0) {
    if (!o.out_prefix_set) o.out_prefix = "docs/results/soak";
    if (!o.svg_set && !o.out_prefix_set) o.svg = "docs/img/soak_rss.svg";
    if (o.warmup_s < 0) o.warmup_s = std::min(120.0, o.duration_s / 4);
    if (o.warmup_s >= o.duration_s)
      throw usage_error("--warmup-s " + drt::detail::budget_num(o.warmup_s) + " is not shorter than --duration-s " +
                        drt::detail::budget_num(o.duration_s));
    const unsigned cores = std::thread::hardware_concurrency();
    if (cores > 0 && o.load_threads >= cores)
      throw usage_error("--load-threads " + std::to_string(o.load_threads) + " would spin every one of the " +
                        std::to_string(cores) + " cores; the soak load is bounded to fewer");
  }
  if (o.statics < 2) throw usage_error("option '--statics' must be at least 2 (the cheapest and the best path)");
  if (o.budget_lo > 0 && o.budget_hi > 0 && o.budget_lo > o.budget_hi)
    throw usage_error("--budget-lo-ms " + drt::detail::budget_num(o.budget_lo) + " is above --budget-hi-ms " +
                      drt::detail::budget_num(o.budget_hi));
  return o;
}

double median(std::vector<double> v) { return drt::detail::median_of(std::move(v)); }
double percentile(std::vector<double> v, double q) {  // nearest rank
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(std::ceil(q * double(v.size())));
  return v[std::min(v.size() - 1, k > 0 ? k - 1 : 0)];
}
double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
std::string fmt(double v, int prec) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(prec) << v;
  return os.str();
}

/// Per-frame budgets: `steps` holds seeded levels (5 levels from lo to hi) for `step_frames` frames each;
/// `sine` is lo..hi with period `sine_period`; `mix` is steps for the first half, sine for the second.
std::vector<double> make_budgets(const options& o, double lo, double hi) {
  std::vector<double> b(o.n_frames);
  std::mt19937 rng(o.seed);
  double level = lo;
  for (std::size_t i = 0; i < o.n_frames; ++i) {
    const bool steps = o.budget_mode == "steps" || (o.budget_mode == "mix" && i < o.n_frames / 2);
    if (steps) {
      if (i % o.step_frames == 0) level = lo + (hi - lo) * double(rng() % 5) / 4.0;
      b[i] = level;
    } else {
      const double ph = 2 * M_PI * double(i) / double(o.sine_period);
      b[i] = lo + (hi - lo) * (0.5 + 0.5 * std::sin(ph));
    }
  }
  return b;
}

struct row {
  std::size_t frame = 0;
  double budget = 0, t_s = 0, expected_ms = 0, miou = 0, measured = 0;
  bool load_on = false, fits = true, miss = false;
  std::string strategy;
  std::size_t entry = 0;
};

struct strategy {
  std::string name;
  std::function<drt::frame_result<drt::tensor4>(const drt::tensor4&, double)> run;
};

struct summary {
  std::string name;
  std::size_t frames = 0, misses = 0, infeasible = 0, misses_loaded = 0, frames_loaded = 0;
  double mean_ms = 0, p99_ms = 0, mean_miou = 0;
  std::map<std::size_t, std::size_t> used;  // entry -> frames
  double miss_rate() const { return frames ? double(misses) / double(frames) : 0; }
};

summary summarize(const std::string& name, const std::vector<row>& rows) {
  summary s;
  s.name = name;
  std::vector<double> t;
  for (const auto& r : rows) {
    if (r.strategy != name) continue;
    ++s.frames;
    s.misses += r.miss;
    s.infeasible += !r.fits;
    s.frames_loaded += r.load_on;
    s.misses_loaded += r.miss && r.load_on;
    s.mean_miou += r.miou;
    t.push_back(r.measured);
    ++s.used[r.entry];
  }
  if (s.frames) {
    double sum = 0;
    for (double x : t) sum += x;
    s.mean_ms = sum / double(t.size());
    s.p99_ms = percentile(t, 0.99);
    s.mean_miou /= double(s.frames);
  }
  return s;
}

/// Budget and measured latency of two strategies per frame, load phases shaded, misses ringed.
void write_svg(const std::string& file, const std::vector<row>& rows, const std::vector<double>& budgets,
               const std::string& title) {
  const double W = 1000, H = 440, L = 60, R = 190, T = 40, B = 50, pw = W - L - R, ph = H - T - B;
  const std::size_t n = budgets.size();
  std::map<std::string, std::vector<const row*>> by;
  for (const auto& r : rows) by[r.strategy].push_back(&r);
  double y1 = 0;
  for (double b : budgets) y1 = std::max(y1, b);
  for (const char* s : {"lut_policy", "deadline_controller"})
    for (const row* r : by[s]) y1 = std::max(y1, r->measured);
  y1 *= 1.05;
  auto sx = [&](double i) { return L + pw * i / double(std::max<std::size_t>(n - 1, 1)); };
  auto sy = [&](double v) { return T + ph - ph * std::min(v, y1) / y1; };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << L + pw / 2 << "' y='22' text-anchor='middle' font-size='14'>" << drt::detail::svg_escape(title)
    << "</text>\n";
  // Load-on frames (as the controller saw them), shaded.
  const auto& ctrl = by["deadline_controller"];
  for (std::size_t i = 0; i < ctrl.size();) {
    if (!ctrl[i]->load_on) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j + 1 < ctrl.size() && ctrl[j + 1]->load_on) ++j;
    o << "<rect x='" << sx(double(i) - 0.5) << "' y='" << T << "' width='" << sx(double(j) + 0.5) - sx(double(i) - 0.5)
      << "' height='" << ph << "' fill='#f3d9d9'/>\n";
    i = j + 1;
  }
  o << "<rect x='" << L << "' y='" << T << "' width='" << pw << "' height='" << ph
    << "' fill='none' stroke='black'/>\n";
  for (int t = 0; t <= 5; ++t) {
    const double yv = y1 * t / 5.0, xv = double(n - 1) * t / 5.0;
    o << "<text x='" << L - 6 << "' y='" << sy(yv) + 4 << "' text-anchor='end'>" << fmt(yv, 0) << "</text><line x1='"
      << L << "' y1='" << sy(yv) << "' x2='" << L + pw << "' y2='" << sy(yv) << "' stroke='#ddd'/>\n<text x='" << sx(xv)
      << "' y='" << T + ph + 16 << "' text-anchor='middle'>" << fmt(xv, 0) << "</text>\n";
  }
  o << "<text x='" << L + pw / 2 << "' y='" << H - 14
    << "' text-anchor='middle'>frame</text>\n<text transform='translate(16," << T + ph / 2
    << ") rotate(-90)' text-anchor='middle'>latency (ms)</text>\n";
  auto poly = [&](const std::vector<double>& y, const char* color, double width) {
    o << "<polyline fill='none' stroke='" << color << "' stroke-width='" << width << "' points='";
    for (std::size_t i = 0; i < y.size(); ++i) o << fmt(sx(double(i)), 1) << ',' << fmt(sy(y[i]), 1) << ' ';
    o << "'/>\n";
  };
  poly(budgets, "black", 1.5);
  struct ser {
    const char* name;
    const char* color;
  };
  const ser ss[] = {{"lut_policy", "#ff7f0e"}, {"deadline_controller", "#1f77b4"}};
  for (const auto& s : ss) {
    std::vector<double> y;
    for (const row* r : by[s.name]) y.push_back(r->measured);
    poly(y, s.color, 1.0);
    for (const row* r : by[s.name])
      if (r->miss)
        o << "<circle cx='" << fmt(sx(double(r->frame)), 1) << "' cy='" << fmt(sy(r->measured), 1)
          << "' r='2.5' fill='none' stroke='" << s.color << "'/>";
    o << '\n';
  }
  const std::pair<const char*, const char*> legend[] = {{"budget", "black"},
                                                        {"lut_policy measured", "#ff7f0e"},
                                                        {"deadline_controller measured", "#1f77b4"},
                                                        {"load on (shaded)", "#f3d9d9"}};
  for (std::size_t k = 0; k < 4; ++k)
    o << "<rect x='" << L + pw + 12 << "' y='" << T + 18.0 * double(k) << "' width='12' height='10' fill='"
      << legend[k].second << "'/><text x='" << L + pw + 30 << "' y='" << T + 18.0 * double(k) + 9 << "'>"
      << legend[k].first << "</text>\n";
  o << "<text x='" << L + pw + 12 << "' y='" << T + 18.0 * 4 + 9 << "'>circles: deadline misses</text>\n</svg>\n";
  drt::write_file_atomic("svg", file, o.str());
}

void ensure_parent(const std::string& file) {
  const auto p = fs::path(file).parent_path();
  if (!p.empty()) fs::create_directories(p);
}

// ---- Soak mode (issue 16) -------------------------------------------------------------------------
// deadline_controller alone over the frames, looped, for a wall-clock duration, under a changing
// wall-clock load: are there failed frames, does resident memory grow, how many deadlines are missed.

/// A changing, bounded load for the soak: after a 10 s idle lead-in, busy and idle phases of seeded
/// lengths (5-60 s each), until `duration_s` is covered. The last phase ends at `duration_s`, so the
/// generator stops by itself with the run; idle phases keep the duty cycle well under 100%.
drt::load_schedule soak_schedule(double duration_s, unsigned seed) {
  std::mt19937 rng(seed * 7919u + 17u);
  std::uniform_real_distribution<double> len(5.0, 60.0);
  drt::load_schedule s;
  double t = std::min(10.0, duration_s);
  s.phases.push_back({t, false});
  for (bool busy = true; t < duration_s; busy = !busy) {
    const double d = std::min(std::round(len(rng)), duration_s - t);
    s.phases.push_back({d, busy});
    t += d;
  }
  return s;
}

/// The 1-, 5- and 15-minute load averages (/proc/loadavg; zeros where unavailable).
std::array<double, 3> load_average() {
  std::array<double, 3> a{0, 0, 0};
  std::ifstream in("/proc/loadavg");
  in >> a[0] >> a[1] >> a[2];
  return a;
}

/// One soak frame, kept compact: the rows are allocated and touched before the run, so that storing
/// them does not show up as growth of the resident memory being measured.
struct soak_row {
  float t_s = 0, budget_ms = 0, latency_ms = 0, rss_mib = 0, loadavg = 0;
  std::uint32_t frame = 0;
  std::uint16_t entry = 0;
  std::uint8_t missed = 0, load_on = 0, failed = 0;
};

/// Least-squares slope of y over x (0 for fewer than 2 distinct x).
double ls_slope(const std::vector<double>& x, const std::vector<double>& y) {
  const double n = double(x.size());
  if (x.size() < 2) return 0;
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= n;
  my /= n;
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
  }
  return sxx > 0 ? sxy / sxx : 0;
}

/// Two panels over wall-clock time: resident memory (y from 0, so a flat line looks flat), and per
/// time bucket the mean budget, the mean and max latency, load phases shaded, misses ticked.
std::string soak_svg(const std::vector<soak_row>& rows, double duration_s, double warmup_s, const std::string& title) {
  const double W = 1000, L = 70, R = 200, T = 40, P1 = 190, gap = 55, P2 = 230, B = 45;
  const double H = T + P1 + gap + P2 + B, pw = W - L - R;
  // Up to 900 time buckets, about 8 frames or more each (so that no bucket of a short run is empty).
  const std::size_t nb = std::min<std::size_t>(900, std::max<std::size_t>(rows.size() / 8, 1));
  const double tmax = std::max(duration_s, rows.empty() ? 1.0 : double(rows.back().t_s));
  const bool minutes = tmax >= 600;  // time axis in minutes for long runs, else seconds
  struct bucket {
    double rss = 0, budget = 0, lat = 0, lat_max = 0;
    std::size_t n = 0, ok = 0, misses = 0, load = 0;
  };
  std::vector<bucket> b(nb);
  double rss_max = 0, ms_max = 0, budget_max = 0;
  for (const auto& r : rows) {
    auto& k = b[std::min(nb - 1, std::size_t(double(r.t_s) / tmax * double(nb)))];
    ++k.n;
    k.rss = std::max(k.rss, double(r.rss_mib));
    k.budget += r.budget_ms;
    k.load += r.load_on;
    k.misses += r.missed || r.failed;
    if (!r.failed) {
      ++k.ok;
      k.lat += r.latency_ms;
      k.lat_max = std::max(k.lat_max, double(r.latency_ms));
    }
    rss_max = std::max(rss_max, double(r.rss_mib));
    ms_max = std::max({ms_max, double(r.latency_ms), double(r.budget_ms)});
    budget_max = std::max(budget_max, double(r.budget_ms));
  }
  // Axes end at 5 round steps (1, 2, 2.5 or 5 x 10^k); latency is clipped at 2.5 x the highest budget,
  // so that rare spikes do not flatten the budget and mean-latency lines.
  auto round_top = [](double v) {
    const double raw = std::max(v, 1e-9) / 5, p = std::pow(10.0, std::floor(std::log10(raw)));
    for (const double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (m * p >= raw) return 5 * m * p;
    return 50 * p;
  };
  const double y1 = round_top(std::max(1.0, rss_max * 1.1));
  const double y2 = round_top(std::max(1.0, std::min(ms_max, 2.5 * budget_max)));
  auto sx = [&](double t) { return L + pw * t / tmax; };
  auto sy1 = [&](double v) { return T + P1 - P1 * v / y1; };
  const double T2 = T + P1 + gap;
  auto sy2 = [&](double v) { return T2 + P2 - P2 * std::min(v, y2) / y2; };
  auto bt = [&](std::size_t i) { return (double(i) + 0.5) * tmax / double(nb); };
  std::ostringstream o;
  o << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='11'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << L + pw / 2 << "' y='22' text-anchor='middle' font-size='14'>" << drt::detail::svg_escape(title)
    << "</text>\n";
  // Load shading (bottom panel): buckets where the load was on for most frames.
  for (std::size_t i = 0; i < nb;) {
    if (!(b[i].n && 2 * b[i].load > b[i].n)) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j + 1 < nb && b[j + 1].n && 2 * b[j + 1].load > b[j + 1].n) ++j;
    o << "<rect x='" << fmt(sx(double(i) * tmax / double(nb)), 1) << "' y='" << T2 << "' width='"
      << fmt(sx(double(j + 1) * tmax / double(nb)) - sx(double(i) * tmax / double(nb)), 1) << "' height='" << P2
      << "' fill='#f3d9d9'/>\n";
    i = j + 1;
  }
  for (const auto& [top, ph, ymax, label] :
       {std::tuple<double, double, double, const char*>{T, P1, y1, "resident memory (MiB)"},
        std::tuple<double, double, double, const char*>{T2, P2, y2, "latency (ms)"}}) {
    o << "<rect x='" << L << "' y='" << top << "' width='" << pw << "' height='" << ph
      << "' fill='none' stroke='black'/>\n";
    for (int t = 0; t <= 5; ++t) {
      const double yv = ymax * t / 5.0, y = top + ph - ph * t / 5.0;
      o << "<text x='" << L - 6 << "' y='" << y + 4 << "' text-anchor='end'>" << fmt(yv, yv == std::round(yv) ? 0 : 1)
        << "</text><line x1='" << L << "' y1='" << y << "' x2='" << L + pw << "' y2='" << y << "' stroke='#ddd'/>\n";
      if (top == T2)  // right axis of the bottom panel: the share of missed frames per bucket
        o << "<text x='" << L + pw + 6 << "' y='" << y + 4 << "' fill='#d62728'>" << 20 * t << "%</text>\n";
    }
    for (int t = 0; t <= 6; ++t) {
      const double tv = tmax * t / 6.0;
      o << "<text x='" << sx(tv) << "' y='" << top + ph + 15 << "' text-anchor='middle'>"
        << (minutes ? fmt(tv / 60, 1) : fmt(tv, 0)) << "</text>\n";
    }
    o << "<text transform='translate(18," << top + ph / 2 << ") rotate(-90)' text-anchor='middle'>" << label
      << "</text>\n<text x='" << L + pw / 2 << "' y='" << top + ph + 30 << "' text-anchor='middle'>"
      << (minutes ? "minutes" : "seconds") << "</text>\n";
  }
  o << "<line x1='" << sx(warmup_s) << "' y1='" << T << "' x2='" << sx(warmup_s) << "' y2='" << T + P1
    << "' stroke='#888' stroke-dasharray='4,3'/><text x='" << sx(warmup_s) + 4 << "' y='" << T + 12
    << "' fill='#666'>warm-up ends</text>\n";
  auto poly = [&](auto value, auto sy, const char* color, double width) {
    o << "<polyline fill='none' stroke='" << color << "' stroke-width='" << width << "' points='";
    for (std::size_t i = 0; i < nb; ++i) {
      double v;
      if (value(b[i], v)) o << fmt(sx(bt(i)), 1) << ',' << fmt(sy(v), 1) << ' ';
    }
    o << "'/>\n";
  };
  poly([](const bucket& k, double& v) { return k.n ? (v = k.rss, true) : false; }, sy1, "#2ca02c", 1.5);
  poly([](const bucket& k, double& v) { return k.ok ? (v = k.lat_max, true) : false; }, sy2, "#9ecae1", 1.0);
  poly([](const bucket& k, double& v) { return k.ok ? (v = k.lat / double(k.ok), true) : false; }, sy2, "#1f77b4", 1.2);
  poly([](const bucket& k, double& v) { return k.n ? (v = k.budget / double(k.n), true) : false; }, sy2, "black", 1.2);
  poly([](const bucket& k, double& v) { return k.n ? (v = double(k.misses) / double(k.n), true) : false; },
       [&](double f) { return T2 + P2 - P2 * f; }, "#d62728", 0.8);
  const std::pair<const char*, const char*> legend[] = {
      {"VmRSS (max per bucket)", "#2ca02c"},    {"budget (mean per bucket)", "black"},
      {"latency (mean per bucket)", "#1f77b4"}, {"latency (max per bucket)", "#9ecae1"},
      {"load on (shaded)", "#f3d9d9"},          {"missed frames (right axis)", "#d62728"}};
  for (std::size_t k = 0; k < 6; ++k)
    o << "<rect x='" << L + pw + 12 << "' y='" << T + 18.0 * double(k) << "' width='12' height='10' fill='"
      << legend[k].second << "'/><text x='" << L + pw + 30 << "' y='" << T + 18.0 * double(k) + 9 << "'>"
      << legend[k].first << "</text>\n";
  o << "<text x='" << L + pw + 12 << "' y='" << T + 18.0 * 6 + 9 << "'>" << nb << " buckets of "
    << fmt(tmax / double(nb), 1) << " s</text>\n<text x='" << L + pw + 12 << "' y='" << T + 18.0 * 7 + 9
    << "'>latency clipped at " << fmt(y2, 0) << " ms</text>\n</svg>\n";
  return o.str();
}

int run_soak(const options& o, const drt::lookup_table& table, const drt::model_graph& graph,
             const std::function<drt::tensor4(std::size_t)>& load_frame, const std::vector<double>& budgets,
             std::size_t n_files, double lo, double hi, const nlohmann::json& calibration) {
  const bool write_files = !o.out_prefix.empty() && o.out_prefix != "none";
  const bool write_plot = !o.svg.empty() && o.svg != "none";
  const std::string csv = o.out_prefix + ".csv", js = o.out_prefix + ".json";
  // Refuse an unwritable output now, not after the run.
  if (write_files) {
    ensure_parent(o.out_prefix);
    drt::check_writable("csv", csv);
    drt::check_writable("json", js);
  }
  if (write_plot) {
    ensure_parent(o.svg);
    drt::check_writable("svg", o.svg);
  }
  drt::deadline_controller_options dco;
  dco.target_miss_rate = o.miss_target;
  dco.memory_frames = o.memory_frames;
  drt::executor<drt::model_graph, drt::deadline_controller> ex(graph, drt::deadline_controller(table, dco));

  const drt::load_schedule schedule = o.no_load             ? drt::load_schedule{}
                                      : o.load_text.empty() ? soak_schedule(o.duration_s, o.seed)
                                                            : drt::load_schedule::parse(o.load_text);
  const std::string load_desc = o.no_load ? std::string("none") : schedule.describe();
  std::cout << "soak " << o.duration_s << " s: deadline_controller (memory_frames " << o.memory_frames << ", target "
            << fmt(o.miss_target, 3) << "), threads " << drt::max_threads() << ", budgets cycled every "
            << budgets.size() << " frames\n"
            << "load "
            << (o.no_load ? "none"
                          : "busy " + fmt(schedule.busy_seconds(), 0) + " s of " + fmt(schedule.total_seconds(), 0) +
                                " s in " + std::to_string(schedule.phases.size()) + " phases")
            << " (" << o.load_threads << " spinning thread" << (o.load_threads == 1 ? "" : "s") << ")\n";

  // Rows: allocated and touched now (an upper bound of 100 frames/s), so storing them adds no RSS.
  const std::size_t cap = static_cast<std::size_t>(std::ceil(o.duration_s * 100)) + 1000;
  std::vector<soak_row> rows(cap);
  for (auto& r : rows) r.frame = ~std::uint32_t{0};  // a non-zero store: every page is resident now
  std::size_t n_rows = 0, failures = 0, misses = 0, frames = 0;
  std::vector<std::string> failure_msgs;
  std::map<std::size_t, std::size_t> used;
  const auto la_start = load_average();
  const double rss_before = drt_bench::proc_status_mib("VmRSS:");
  double rss_now = rss_before, la_now = la_start[0], la_read_at = -1;

  drt::load_generator load(o.no_load ? drt::load_schedule::on_off(0, 0, 0) : schedule, o.load_threads);
  const double t_start = now_s();
  load.start();
  double last_progress = 0, el = 0;
  for (std::size_t i = 0; (el = now_s() - t_start) < o.duration_s; ++i) {
    soak_row r;
    r.frame = static_cast<std::uint32_t>(i);
    r.t_s = static_cast<float>(el);
    r.budget_ms = static_cast<float>(budgets[i % budgets.size()]);
    r.load_on = load.busy_now();
    try {
      const drt::tensor4 x = load_frame(i);
      const auto res = ex.run(x, budgets[i % budgets.size()]);
      r.latency_ms = static_cast<float>(res.measured_ms);
      r.missed = res.missed;
      r.entry = static_cast<std::uint16_t>(res.choice.entry);
      misses += res.missed;
      ++used[res.choice.entry];
    } catch (const std::exception& e) {  // a failed frame: counted, reported, the run goes on
      r.failed = 1;
      ++failures;
      if (failure_msgs.size() < 20) failure_msgs.push_back("frame " + std::to_string(i) + ": " + e.what());
    }
    ++frames;
    if (i % o.rss_every == 0) rss_now = drt_bench::proc_status_mib("VmRSS:");
    if (el - la_read_at >= 1) {  // /proc/loadavg changes every 5 s
      la_now = load_average()[0];
      la_read_at = el;
    }
    r.rss_mib = static_cast<float>(rss_now);
    r.loadavg = static_cast<float>(la_now);  // /proc/loadavg has 2 decimals
    if (n_rows < cap) rows[n_rows++] = r;
    if (el - last_progress >= 30) {
      last_progress = el;
      std::cerr << "[soak] " << fmt(el, 0) << " / " << fmt(o.duration_s, 0) << " s, frame " << frames << ", misses "
                << misses << " (" << fmt(100.0 * double(misses) / double(frames), 2) << "%), failures " << failures
                << ", RSS " << fmt(rss_now, 1) << " MiB, load " << (r.load_on ? "on" : "off") << ", loadavg "
                << fmt(la_now, 2) << '\n';
    }
  }
  const double wall = now_s() - t_start;
  const double rss_end = drt_bench::proc_status_mib("VmRSS:"), hwm = drt_bench::proc_status_mib("VmHWM:");
  const auto la_end = load_average();
  load.stop();
  rows.resize(n_rows);

  // RSS figures: the first frame's sample, the first sample at or after the warm-up, max, end, and
  // the least-squares slope over the samples after the warm-up.
  double rss_first = rows.empty() ? rss_before : rows.front().rss_mib, rss_warm = rss_end, rss_max = rss_before;
  bool warm_seen = false;
  std::vector<double> tx, ry, lat;
  double la_sum = 0, la_max = 0, miou_sum = 0;
  std::size_t frames_load = 0, misses_load = 0, misses_cheapest = 0;
  const std::size_t cheapest = table.front().front();
  for (const auto& r : rows) {
    rss_max = std::max(rss_max, double(r.rss_mib));
    if (r.t_s >= o.warmup_s) {
      if (!warm_seen) rss_warm = r.rss_mib;
      warm_seen = true;
      tx.push_back(r.t_s / 3600.0);
      ry.push_back(r.rss_mib);
    }
    la_sum += r.loadavg;
    la_max = std::max(la_max, double(r.loadavg));
    frames_load += r.load_on;
    misses_load += r.load_on && r.missed;
    misses_cheapest += r.missed && r.entry == cheapest;
    if (!r.failed) {
      lat.push_back(r.latency_ms);
      miou_sum += table.entries[r.entry].miou;
    }
  }
  rss_max = std::max(rss_max, rss_end);
  const double slope = ls_slope(tx, ry);
  const double miss_rate = frames ? double(misses) / double(frames) : 0;
  const double la_mean = rows.empty() ? 0 : la_sum / double(rows.size());
  double mean_ms = 0;
  for (double v : lat) mean_ms += v;
  mean_ms = lat.empty() ? 0 : mean_ms / double(lat.size());
  const double p99 = lat.empty() ? 0 : percentile(lat, 0.99), pmax = lat.empty() ? 0 : percentile(lat, 1.0);

  std::cout << "\nframes " << frames << " in " << fmt(wall, 0) << " s (" << fmt(double(frames) / wall, 1)
            << " frames/s, " << fmt(double(frames) / double(std::max<std::size_t>(1, n_files)), 1)
            << " passes over the folder)\n"
            << "failures " << failures << '\n'
            << "misses " << misses << " (" << fmt(100 * miss_rate, 2) << "%), with the load on " << misses_load
            << " of " << frames_load << " frames; " << misses_cheapest
            << " on the cheapest path (no faster path existed)\n"
            << "latency mean " << fmt(mean_ms, 1) << " ms, p99 " << fmt(p99, 1) << " ms, max " << fmt(pmax, 1)
            << " ms; mean expected mIoU " << fmt(lat.empty() ? 0 : miou_sum / double(lat.size()), 4) << ", "
            << used.size() << " paths used\n"
            << "RSS MiB: before " << fmt(rss_before, 1) << ", first frame " << fmt(rss_first, 1) << ", after warm-up ("
            << fmt(o.warmup_s, 0) << " s) " << fmt(rss_warm, 1) << ", max " << fmt(rss_max, 1) << ", end "
            << fmt(rss_end, 1) << " (VmHWM " << fmt(hwm, 1) << "); slope after warm-up " << fmt(slope, 3) << " MiB/h\n"
            << "load: busy " << fmt(load.busy_seconds(), 0) << " s of " << fmt(wall, 0) << " s; load average start "
            << fmt(la_start[0], 2) << ", mean " << fmt(la_mean, 2) << ", max " << fmt(la_max, 2) << ", end "
            << fmt(la_end[0], 2) << " (1 min)\n";

  if (write_files) {
    std::ostringstream c;
    c << "frame,time_s,budget_ms,latency_ms,missed,failed,load_on,entry,path,rss_MiB,loadavg_1min\n";
    std::size_t written = 0;
    for (const auto& r : rows) {
      if (r.frame % o.csv_every != 0 && !r.missed && !r.failed) continue;
      ++written;
      c << r.frame << ',' << fmt(r.t_s, 3) << ',' << fmt(r.budget_ms, 2) << ',' << fmt(r.latency_ms, 2) << ','
        << int(r.missed) << ',' << int(r.failed) << ',' << int(r.load_on) << ',' << r.entry << ",\""
        << (r.failed ? std::string() : table.entries[r.entry].path) << "\"," << fmt(r.rss_mib, 2) << ','
        << fmt(r.loadavg, 2) << '\n';
    }
    nlohmann::json hist = nlohmann::json::array();
    for (const auto& [e, cnt] : used)
      hist.push_back({{"entry", e},
                      {"model", table.entries[e].model},
                      {"path", table.entries[e].path},
                      {"miou", table.entries[e].miou},
                      {"latency_ms", table.entries[e].latency_ms},
                      {"frames", cnt}});
    nlohmann::json j;
    j["command"] = o.command;
    j["machine"] = drt::machine_info::current().to_json();
    j["setup"] = {
        {"mode", "soak"},
        {"strategy", "deadline_controller"},
        {"memory_frames", o.memory_frames},
        {"miss_target", o.miss_target},
        {"lut", o.lut},
        {"frames_dir", o.frames},
        {"frame_decoding", "each frame decoded from its file when it is run (no cache), outside the timed inference"},
        {"threads", drt::max_threads()},
        {"duration_s", o.duration_s},
        {"warmup_s", o.warmup_s},
        {"rss_every_frames", o.rss_every},
        {"budget",
         {{"mode", o.budget_trace.empty() ? o.budget_mode : "trace"},
          {"file", o.budget_trace},
          {"lo_ms", lo},
          {"hi_ms", hi},
          {"cycle_frames", budgets.size()},
          {"step_frames", o.step_frames},
          {"sine_period", o.sine_period}}},
        {"load",
         {{"schedule", load_desc},
          {"threads", o.load_threads},
          {"scheduled_busy_s", schedule.busy_seconds()},
          {"busy_s", load.busy_seconds()},
          {"busy_fraction_of_run", load.busy_seconds() / wall}}}};
    j["calibration"] = calibration;
    j["result"] = {{"frames", frames},
                   {"failures", failures},
                   {"failure_messages", failure_msgs},
                   {"misses", misses},
                   {"miss_rate", miss_rate},
                   {"frames_load_on", frames_load},
                   {"misses_load_on", misses_load},
                   {"misses_on_cheapest_path", misses_cheapest},
                   {"mean_ms", mean_ms},
                   {"p99_ms", p99},
                   {"max_ms", pmax},
                   {"mean_expected_miou", lat.empty() ? 0 : miou_sum / double(lat.size())},
                   {"paths_used", hist},
                   {"wall_s", wall}};
    j["rss_MiB"] = {{"before_first_frame", rss_before},
                    {"first_frame", rss_first},
                    {"after_warmup", rss_warm},
                    {"max", rss_max},
                    {"end", rss_end},
                    {"vm_hwm", hwm},
                    {"slope_after_warmup_MiB_per_h", slope},
                    {"samples_after_warmup", tx.size()},
                    {"note",
                     "VmRSS from /proc/self/status; the per-frame rows are allocated and touched before "
                     "the run, so storing them is not counted as growth"}};
    auto r2 = [](double v) { return std::round(v * 100) / 100; };
    j["load_average_1min"] = {{"start", la_start[0]},
                              {"mean", r2(la_mean)},
                              {"max", r2(la_max)},
                              {"end", la_end[0]},
                              {"start_5_15", {la_start[1], la_start[2]}},
                              {"end_5_15", {la_end[1], la_end[2]}},
                              {"note", "whole machine (/proc/loadavg), other jobs included"}};
    j["csv"] = {{"file", csv},
                {"rows", written},
                {"every", o.csv_every},
                {"note", o.csv_every > 1 ? "every K-th frame plus every missed or failed frame" : "every frame"}};
    drt::output_files out;  // both or neither
    out.add("csv", csv, c.str());
    out.add("json", js, j.dump(1) + '\n');
    out.commit();
    std::cout << "wrote " << csv << " (" << written << " rows), " << js << '\n';
  }
  if (write_plot) {
    drt::write_file_atomic(
        "svg", o.svg,
        soak_svg(rows, o.duration_s, o.warmup_s,
                 "Soak: deadline_controller, " + std::to_string(frames) + " frames in " + fmt(wall / 60, 1) +
                     " min; RSS slope after warm-up " + fmt(slope, 2) + " MiB/h; " + std::to_string(misses) +
                     " misses, " + std::to_string(failures) + " failures"));
    std::cout << "wrote " << o.svg << '\n';
  }
  if (failures > 0) {
    std::cerr << "deadline_benchmark: error: " << failures << " of " << frames
              << " frames failed (first: " << failure_msgs.front() << ")\n";
    return 1;
  }
  return 0;
}

int run(const options& o) {
  if (o.threads > 0) drt::set_threads(o.threads);
  // Inputs first, so a bad frame folder or trace file fails before minutes of loading and timing.
  const auto files = drt::list_image_files(o.frames);
  const std::vector<double> trace =
      o.budget_trace.empty() ? std::vector<double>{} : drt::load_budget_trace(o.budget_trace);
  // The table, restricted to --models, and its models.
  drt::lookup_table table = drt::load_lut(o.lut);
  const std::string warn = drt::machine_mismatch(table.machine, drt::machine_info::current(), "lut '" + o.lut + "'");
  if (!warn.empty()) std::cerr << "deadline_benchmark: warning: " << warn << '\n';
  if (!o.models.empty()) {
    std::set<std::string> keep(o.models.begin(), o.models.end()), have;
    for (const auto& e : table.entries) have.insert(e.model);
    for (const auto& m : keep)
      if (!have.count(m)) {
        std::string names;
        for (const auto& n : have) names += (names.empty() ? "" : ", ") + n;
        throw drt::invalid_input("lut '" + o.lut + "': no entries for model '" + m + "' (models in it: " + names + ")");
      }
    table.entries.erase(std::remove_if(table.entries.begin(), table.entries.end(),
                                       [&](const drt::lut_entry& e) { return !keep.count(e.model); }),
                        table.entries.end());
  }
  table.mark_pareto();
  std::map<std::string, std::unique_ptr<drt::any_model>> models;
  drt::model_graph graph;
  for (const auto& e : table.entries) {
    if (models.count(e.model)) continue;
    std::vector<fs::path> tries;
    if (!e.model_dir.empty()) tries = {fs::path(e.model_dir), fs::path(o.lut).parent_path() / e.model_dir};
    std::string dir;
    for (const auto& t : tries)
      if (fs::exists(t / "config.json")) {
        dir = t.string();
        break;
      }
    if (dir.empty())
      throw drt::io_error("lut '" + o.lut + "': model '" + e.model + "': directory '" + e.model_dir +
                          "' not found (as given or relative to the LUT's folder); use --models to leave it out");
    std::cerr << "[deadline] loading " << e.model << " from " << dir << '\n';
    // the decoder graph, channel order and int8 ranges the table was measured with
    const drt::segformer_options build = drt::lut_build(table, e.model, "lut '" + o.lut + "'");
    models[e.model] = std::make_unique<drt::any_model>(drt::load_model(dir, {}, build));
    graph.add(e.model, *models[e.model]);
  }
  const std::vector<std::size_t> front = table.front();  // cheapest first
  const std::size_t cheapest = front.front(), best = front.back();

  // Frames (decoded on the fly, resized to the table's input size when it differs).
  const std::size_t lh = table.input_height(), lw = table.input_width();
  auto load_frame = [&](std::size_t i) {
    drt::rgb_image img = drt::load_image(files[i % files.size()]);
    if (lh && (img.height != lh || img.width != lw)) img = drt::resize_image(img, lh, lw);
    return drt::normalize_imagenet(img);
  };

  // Calibration: the cheapest and the best path, unloaded and with the load on, alternately.
  const drt::tensor4 x0 = load_frame(0);
  const auto plan_c = graph.plan(table.entries[cheapest]), plan_b = graph.plan(table.entries[best]);
  for (const auto& [name, m] : models) {  // warm-up: each model once, untimed
    for (const std::size_t i : front)
      if (table.entries[i].model == name) {
        graph.run(x0, graph.plan(table.entries[i]));
        break;
      }
  }
  graph.run(x0, plan_b);
  auto time_once = [&](const drt::model_graph::plan_type& p) {
    const double t0 = drt::steady_clock_ms{}.now_ms();
    graph.run(x0, p);
    return drt::steady_clock_ms{}.now_ms() - t0;
  };
  std::vector<double> cu, bu, cl, bl;
  for (std::size_t k = 0; k < o.calib_runs; ++k) {
    cu.push_back(time_once(plan_c));
    bu.push_back(time_once(plan_b));
  }
  if (!o.no_load) {
    drt::load_generator calib_load(drt::load_schedule::on_off(3600, 0, 1), o.load_threads);
    calib_load.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (std::size_t k = 0; k < o.calib_runs; ++k) {
      cl.push_back(time_once(plan_c));
      bl.push_back(time_once(plan_b));
    }
  } else {
    cl = cu;
    bl = bu;
  }
  const double mcu = median(cu), mbu = median(bu), mcl = median(cl), mbl = median(bl);
  std::cout << std::fixed << std::setprecision(1) << "calibration (median of " << o.calib_runs
            << " runs on frame 0; table latency in brackets):\n"
            << "  cheapest " << table.entries[cheapest].label() << " [" << table.entries[cheapest].latency_ms
            << "]: " << mcu << " ms unloaded, " << mcl << " ms loaded\n"
            << "  best     " << table.entries[best].label() << " [" << table.entries[best].latency_ms << "]: " << mbu
            << " ms unloaded, " << mbl << " ms loaded\n";

  const nlohmann::json calibration = {{"runs", o.calib_runs},
                                      {"cheapest",
                                       {{"entry", cheapest},
                                        {"label", table.entries[cheapest].label()},
                                        {"table_ms", table.entries[cheapest].latency_ms},
                                        {"unloaded_ms", mcu},
                                        {"loaded_ms", mcl}}},
                                      {"best",
                                       {{"entry", best},
                                        {"label", table.entries[best].label()},
                                        {"table_ms", table.entries[best].latency_ms},
                                        {"unloaded_ms", mbu},
                                        {"loaded_ms", mbl}}}};

  // Budgets (with --duration-s: one cycle of --n-frames frames, repeated).
  std::vector<double> budgets;
  // The lowest budget leaves the cheapest path room for the load's noise (its loaded p99 is ~1.4x its
  // loaded median here): with 1.2x even the cheapest static path missed 1.2% of its frames, so no
  // policy could meet a 1% target and the "best static path under 1%" did not exist.
  double lo = o.budget_lo > 0 ? o.budget_lo : 1.5 * mcl, hi = o.budget_hi > 0 ? o.budget_hi : 1.2 * mbl;
  if (hi < lo) hi = lo;
  if (!o.budget_trace.empty()) {
    for (std::size_t i = 0; i < o.n_frames; ++i) budgets.push_back(trace[i % trace.size()]);
    lo = *std::min_element(budgets.begin(), budgets.end());
    hi = *std::max_element(budgets.begin(), budgets.end());
  } else {
    budgets = make_budgets(o, lo, hi);
  }
  std::cout << "budgets " << (o.budget_trace.empty() ? o.budget_mode : "trace '" + o.budget_trace + "'") << ", " << lo
            << " .. " << hi << " ms\n";
  if (o.duration_s > 0) return run_soak(o, table, graph, load_frame, budgets, files.size(), lo, hi, calibration);

  // Strategies: static entries spaced by index along the front, then the two policies.
  std::vector<std::size_t> statics;
  const std::size_t k = std::min(o.statics, front.size());
  for (std::size_t j = 0; j < k; ++j) {
    const std::size_t idx = front[k == 1 ? 0 : (j * (front.size() - 1) + (k - 1) / 2) / (k - 1)];
    if (std::find(statics.begin(), statics.end(), idx) == statics.end()) statics.push_back(idx);
  }
  std::vector<strategy> strategies;
  std::map<std::string, std::size_t> static_entry;
  for (std::size_t j = 0; j < statics.size(); ++j) {
    const std::size_t e = statics[j];
    const std::string name = e == best       ? "static_full"
                             : e == cheapest ? "static_cheapest"
                                             : "static_" + std::to_string(j);
    static_entry[name] = e;
    auto ex =
        std::make_shared<drt::executor<drt::model_graph, drt::static_policy>>(graph, drt::static_policy(table, e));
    strategies.push_back({name, [ex](const drt::tensor4& x, double b) { return ex->run(x, b); }});
  }
  {
    auto ex = std::make_shared<drt::executor<drt::model_graph, drt::lut_policy>>(graph, drt::lut_policy(table));
    strategies.push_back({"lut_policy", [ex](const drt::tensor4& x, double b) { return ex->run(x, b); }});
    drt::deadline_controller_options dco;
    dco.target_miss_rate = o.miss_target;
    if (o.memory_frames > 0) {  // the purely reactive controller beside the cautious one, for comparison
      auto rc = std::make_shared<drt::executor<drt::model_graph, drt::deadline_controller>>(
          graph, drt::deadline_controller(table, dco));
      strategies.push_back({"reactive_controller", [rc](const drt::tensor4& x, double b) { return rc->run(x, b); }});
    }
    dco.memory_frames = o.memory_frames;
    auto dc = std::make_shared<drt::executor<drt::model_graph, drt::deadline_controller>>(
        graph, drt::deadline_controller(table, dco));
    strategies.push_back({"deadline_controller", [dc](const drt::tensor4& x, double b) { return dc->run(x, b); }});
  }

  // The load and the run. Default: a load trace in frames (the same frames are loaded for every
  // strategy and on every machine): during a busy block a load_generator spins one core (per load
  // thread); it is stopped and joined when the block ends. With --load, one generator plays a
  // wall-clock schedule for the whole run instead.
  const bool time_load = !o.no_load && !o.load_text.empty();
  const drt::load_schedule schedule = time_load ? drt::load_schedule::parse(o.load_text) : drt::load_schedule{};
  auto frame_busy = [&](std::size_t i) {
    return !o.no_load && !time_load && (i % (o.load_busy + o.load_idle)) >= o.load_idle;
  };
  const std::string load_desc = o.no_load   ? std::string("none")
                                : time_load ? "wall-clock schedule " + schedule.describe()
                                            : "frames: idle " + std::to_string(o.load_idle) + ", busy " +
                                                  std::to_string(o.load_busy) + ", repeated";
  std::cout << "load " << (load_desc.size() > 90 ? load_desc.substr(0, 90) + "..." : load_desc) << " ("
            << o.load_threads << " spinning thread" << (o.load_threads == 1 ? "" : "s") << ")\n"
            << "frames " << o.n_frames << " from " << o.frames << " (" << files.size() << " files, looped), "
            << strategies.size() << " strategies round robin per frame, threads " << drt::max_threads() << "\n\n";

  std::vector<row> rows;
  rows.reserve(o.n_frames * strategies.size());
  drt::load_generator clock_load(time_load ? schedule : drt::load_schedule::on_off(0, 0, 0), o.load_threads);
  std::unique_ptr<drt::load_generator> block_load;  // the current busy block's generator (frame mode)
  double block_busy_s = 0;
  auto end_block = [&] {
    if (!block_load) return;
    block_load->stop();
    block_busy_s += block_load->busy_seconds();
    block_load.reset();
  };
  const double t_start = now_s();
  clock_load.start();
  double last_progress = 0;
  for (std::size_t i = 0; i < o.n_frames; ++i) {
    const drt::tensor4 x = load_frame(i);
    if (frame_busy(i) && !block_load) {
      block_load = std::make_unique<drt::load_generator>(drt::load_schedule::on_off(3600, 0, 1), o.load_threads);
      block_load->start();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the spinner get its core
    } else if (!frame_busy(i)) {
      end_block();
    }
    for (std::size_t s = 0; s < strategies.size(); ++s) {
      const auto& st = strategies[(s + i) % strategies.size()];
      row r;
      r.frame = i;
      r.budget = budgets[i];
      r.strategy = st.name;
      r.t_s = now_s() - t_start;
      r.load_on = time_load ? clock_load.busy_now() : frame_busy(i);
      const auto res = st.run(x, budgets[i]);
      r.entry = res.choice.entry;
      r.fits = res.choice.fits;
      r.expected_ms = res.choice.expected_ms;
      r.miou = res.entry.miou;
      r.measured = res.measured_ms;
      r.miss = res.missed;
      rows.push_back(r);
    }
    const double el = now_s() - t_start;
    if (el - last_progress > 10 || i + 1 == o.n_frames) {
      last_progress = el;
      std::size_t mc = 0, ml = 0;
      for (const auto& r : rows) {
        mc += r.strategy == "deadline_controller" && r.miss;
        ml += r.strategy == "lut_policy" && r.miss;
      }
      std::cerr << "[deadline] frame " << i + 1 << "/" << o.n_frames << ", " << fmt(el, 0) << " s, ETA "
                << fmt(el / double(i + 1) * double(o.n_frames - i - 1), 0) << " s, load "
                << (rows.back().load_on ? "on" : "off") << ", misses so far: controller " << mc << ", lut_policy " << ml
                << '\n';
    }
  }
  end_block();
  clock_load.stop();
  const double wall = now_s() - t_start;
  const double load_busy_s = time_load ? clock_load.busy_seconds() : block_busy_s;

  // Summary.
  std::vector<summary> sums;
  for (const auto& st : strategies) sums.push_back(summarize(st.name, rows));
  const summary* best_static = nullptr;
  for (const auto& s : sums)
    if (static_entry.count(s.name) && s.miss_rate() < 0.01 && (!best_static || s.mean_miou > best_static->mean_miou))
      best_static = &s;
  const summary& ctrl = sums.back();
  std::cout << std::left << std::setw(20) << "strategy" << std::right << std::setw(8) << "misses" << std::setw(8)
            << "miss %" << std::setw(13) << "miss % load" << std::setw(10) << "mean ms" << std::setw(10) << "p99 ms"
            << std::setw(8) << "mIoU" << std::setw(7) << "paths"
            << "  entry (static) / most used\n";
  for (const auto& s : sums) {
    std::size_t top = 0, topn = 0;
    for (const auto& [e, c] : s.used)
      if (c > topn) {
        top = e;
        topn = c;
      }
    std::cout << std::left << std::setw(20) << s.name << std::right << std::setw(8) << s.misses << std::setw(8)
              << fmt(100 * s.miss_rate(), 1) << std::setw(13)
              << (s.frames_loaded ? fmt(100.0 * double(s.misses_loaded) / double(s.frames_loaded), 1) : "-")
              << std::setw(10) << fmt(s.mean_ms, 1) << std::setw(10) << fmt(s.p99_ms, 1) << std::setw(8)
              << fmt(s.mean_miou, 4) << std::setw(7) << s.used.size() << "  " << table.entries[top].label() << " x"
              << topn << '\n';
  }
  std::cout << "\nbest static <1%-miss path (among the " << statics.size() << " static entries run): "
            << (best_static ? best_static->name + " " + table.entries[static_entry[best_static->name]].label() +
                                  ", mIoU " + fmt(best_static->mean_miou, 4)
                            : std::string("none"))
            << '\n';
  const bool miss_ok = ctrl.miss_rate() < 0.01;
  const bool acc_ok = best_static && ctrl.mean_miou >= 0.95 * best_static->mean_miou;
  std::cout << "goal: controller misses " << fmt(100 * ctrl.miss_rate(), 2) << "% (< 1%: " << (miss_ok ? "yes" : "no")
            << "), mean expected mIoU " << fmt(ctrl.mean_miou, 4) << " vs 0.95 x best static "
            << (best_static ? fmt(0.95 * best_static->mean_miou, 4) : std::string("-")) << " ("
            << (acc_ok ? "yes" : "no") << ") -> " << (miss_ok && acc_ok ? "MET" : "NOT MET") << '\n'
            << "load: on for " << fmt(load_busy_s, 0) << " s of the " << fmt(wall, 0) << " s run ("
            << fmt(100 * load_busy_s / wall, 1) << "%)\n";
  std::cout << "paths used (controller):\n";
  for (const auto& [e, c] : ctrl.used)
    std::cout << "  " << std::setw(5) << c << "  " << table.entries[e].label() << '\n';

  // Files.
  if (!o.out_prefix.empty() && o.out_prefix != "none") {
    ensure_parent(o.out_prefix);
    const std::string csv = o.out_prefix + ".csv", js = o.out_prefix + ".json";
    std::ostringstream c;
    c << "frame,budget_ms,load_on,strategy,entry,model,path,fits,expected_ms,expected_miou,measured_ms,miss,t_s\n";
    for (const auto& r : rows)
      c << r.frame << ',' << fmt(r.budget, 2) << ',' << r.load_on << ',' << r.strategy << ',' << r.entry << ','
        << table.entries[r.entry].model << ",\"" << table.entries[r.entry].path << "\"," << r.fits << ','
        << fmt(r.expected_ms, 2) << ',' << fmt(r.miou, 4) << ',' << fmt(r.measured, 2) << ',' << r.miss << ','
        << fmt(r.t_s, 3) << '\n';
    nlohmann::json j;
    j["command"] = o.command;
    j["machine"] = drt::machine_info::current().to_json();
    j["setup"] = {{"lut", o.lut},
                  {"models", o.models},
                  {"frames_dir", o.frames},
                  {"frames", o.n_frames},
                  {"seed", o.seed},
                  {"threads", drt::max_threads()},
                  {"order", "round robin per frame, rotated by frame index"},
                  {"budget",
                   {{"mode", o.budget_trace.empty() ? o.budget_mode : "trace"},
                    {"file", o.budget_trace},
                    {"lo_ms", lo},
                    {"hi_ms", hi},
                    {"step_frames", o.step_frames},
                    {"sine_period", o.sine_period}}},
                  {"load",
                   {{"mode", o.no_load   ? "none"
                             : time_load ? "seconds"
                                         : "frames"},
                    {"description", load_desc},
                    {"busy_frames", o.load_busy},
                    {"idle_frames", o.load_idle},
                    {"threads", o.load_threads},
                    {"busy_s", load_busy_s},
                    {"busy_fraction_of_run", load_busy_s / wall}}},
                  {"miss_target", o.miss_target},
                  {"wall_s", wall}};
    j["calibration"] = calibration;
    j["summary"] = nlohmann::json::array();
    for (const auto& s : sums) {
      nlohmann::json u = nlohmann::json::array();
      for (const auto& [e, cnt] : s.used)
        u.push_back({{"entry", e},
                     {"model", table.entries[e].model},
                     {"path", table.entries[e].path},
                     {"miou", table.entries[e].miou},
                     {"latency_ms", table.entries[e].latency_ms},
                     {"frames", cnt}});
      j["summary"].push_back({{"strategy", s.name},
                              {"frames", s.frames},
                              {"misses", s.misses},
                              {"miss_rate", s.miss_rate()},
                              {"frames_load_on", s.frames_loaded},
                              {"misses_load_on", s.misses_loaded},
                              {"infeasible", s.infeasible},
                              {"mean_ms", s.mean_ms},
                              {"p99_ms", s.p99_ms},
                              {"mean_expected_miou", s.mean_miou},
                              {"paths_used", u}});
    }
    j["best_static_under_1pct"] =
        best_static ? nlohmann::json{{"strategy", best_static->name},
                                     {"entry", static_entry[best_static->name]},
                                     {"label", table.entries[static_entry[best_static->name]].label()},
                                     {"mean_expected_miou", best_static->mean_miou}}
                    : nlohmann::json(nullptr);
    j["goal"] = {{"controller_miss_rate", ctrl.miss_rate()},
                 {"controller_mean_expected_miou", ctrl.mean_miou},
                 {"miss_under_1pct", miss_ok},
                 {"miou_within_5pct_of_best_static", acc_ok},
                 {"met", miss_ok && acc_ok}};
    j["frames"] = nlohmann::json::array();
    for (const auto& r : rows)
      j["frames"].push_back({{"frame", r.frame},
                             {"budget", r.budget},
                             {"load_on", r.load_on},
                             {"strategy", r.strategy},
                             {"entry", r.entry},
                             {"path", table.entries[r.entry].label()},
                             {"fits", r.fits},
                             {"expected_ms", r.expected_ms},
                             {"expected_miou", r.miou},
                             {"measured_ms", r.measured},
                             {"miss", r.miss},
                             {"t_s", r.t_s}});
    drt::output_files out;  // both or neither
    out.add("csv", csv, c.str());
    out.add("json", js, j.dump(1) + '\n');
    out.commit();
    std::cout << "\nwrote " << csv << ", " << js << '\n';
  }
  if (!o.svg.empty() && o.svg != "none") {
    ensure_parent(o.svg);
    write_svg(o.svg, rows, budgets,
              "Per-frame budget and measured latency: deadline_controller vs lut_policy (" +
                  std::to_string(o.n_frames) + " frames)");
    std::cout << "wrote " << o.svg << '\n';
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const usage_error& e) {
    std::cerr << "deadline_benchmark: error: " << e.what() << " (see 'deadline_benchmark --help')\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "deadline_benchmark: error: " << e.what() << '\n';
    return 1;
  }
}
