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

#include <drt/engine/executor.hpp>
#include <drt/engine/load_generator.hpp>
#include <drt/engine/lut.hpp>
#include <drt/engine/policy.hpp>
#include <drt/io/image.hpp>
#include <drt/io/svg.hpp>
#include <drt/models/segformer.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
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
#include <vector>

namespace fs = std::filesystem;

namespace {

/// A policy that always runs one entry (the static baselines). `fits` says whether its table latency
/// fits the budget.
class static_policy {
public:
  static_policy(drt::lookup_table table, std::size_t entry) : table_(std::move(table)), candidates_{entry} {
    if (entry >= table_.entries.size())
      throw drt::invalid_input("static_policy: entry " + std::to_string(entry) + " of a table of " +
                               std::to_string(table_.entries.size()));
  }
  drt::policy_choice choose(double budget_ms) const {
    drt::check_budget_ms(budget_ms);
    drt::policy_choice c;
    c.entry = candidates_[0];
    c.budget_ms = budget_ms;
    c.expected_ms = table_.entries[c.entry].latency_ms;
    c.fits = c.expected_ms <= budget_ms;
    c.expected_miou = table_.entries[c.entry].miou;
    return c;
  }
  void observe(const drt::policy_choice&, double) noexcept {}
  const drt::lookup_table& table() const noexcept { return table_; }
  const std::vector<std::size_t>& candidates() const noexcept { return candidates_; }
  static const char* name() noexcept { return "static"; }

private:
  drt::lookup_table table_;
  std::vector<std::size_t> candidates_;
};

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

const char* usage_text =
    "usage: deadline_benchmark [options]\n"
    "  --lut FILE            lookup table (default: data/models/segformer-b0-camvid/lut.json)\n"
    "  --models A,B          use only these models of the table (names as in the LUT)\n"
    "  --frames DIR          frames, PNG/JPEG in name order, looped (default: $DRT_SHARED/data/camvid/images)\n"
    "  --n-frames N          frames to run (default 300)\n"
    "  --memory-frames N     deadline_controller plans for the slowest speed of the last N frames\n"
    "                        (default 100; 0: purely reactive; > 0 also runs reactive_controller)\n"
    "  --seed S              seed of the budget steps (default 1)\n"
    "  --threads T           OpenMP threads of the inference (default: OpenMP's)\n"
    "  --budget MODE         steps | sine | mix (steps, then sine; default mix)\n"
    "  --budget-trace FILE   budgets from a file instead, one number of ms per line, used cyclically\n"
    "  --budget-lo-ms X      lowest budget (default 1.5 x the cheapest path's loaded median, calibrated)\n"
    "  --budget-hi-ms X      highest budget (default 1.2 x the most accurate path's loaded median)\n"
    "  --step-frames N       frames per budget step (default 20)\n"
    "  --sine-period N       frames per sine period (default 50)\n"
    "  --load-busy N         load trace in frames: N frames with the load on ... (default 25)\n"
    "  --load-idle N         ... then N frames with it off; the trace starts idle (default 25)\n"
    "  --load SCHEDULE       load in wall-clock seconds instead, e.g. idle:10,busy:20,idle:20\n"
    "  --load-threads N      spinning threads during busy phases (default 1: one core)\n"
    "  --no-load             no background load\n"
    "  --statics K           static paths run, spaced along the front, cheapest and best included (default 5)\n"
    "  --miss-target R       the controller's target miss rate (default 0.01)\n"
    "  --calib-runs N        runs per path and load state in the calibration (default 5)\n"
    "  --out-prefix P        write P.csv and P.json (default docs/results/deadline)\n"
    "  --svg FILE            plot (default docs/img/deadline.svg; 'none' to skip)\n";

struct options {
  std::string lut, frames, budget_mode = "mix", budget_trace, load_text, out_prefix = "docs/results/deadline",
                           svg = "docs/img/deadline.svg";
  std::vector<std::string> models;
  std::size_t memory_frames = 100, n_frames = 300, step_frames = 20, sine_period = 50, load_busy = 25, load_idle = 25, load_threads = 1,
              statics = 5, calib_runs = 5;
  unsigned seed = 1;
  int threads = 0;
  double budget_lo = 0, budget_hi = 0, miss_target = 0.01;
  bool no_load = false;
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

options parse_args(int argc, char** argv) {
  options o;
  o.lut = source_dir() + "/data/models/segformer-b0-camvid/lut.json";
  o.frames = shared_dir() + "/data/camvid/images";
  for (int i = 0; i < argc; ++i) o.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << usage_text;
      std::exit(0);
    }
    if (a == "--no-load") {
      o.no_load = true;
      continue;
    }
    if (i + 1 >= argc) throw usage_error("option '" + a + "' needs a value (or is unknown; see --help)");
    const std::string v = argv[++i];
    if (a == "--lut")
      o.lut = v;
    else if (a == "--models") {
      std::stringstream ss(v);
      for (std::string m; std::getline(ss, m, ',');)
        if (!m.empty()) o.models.push_back(m);
    } else if (a == "--frames")
      o.frames = v;
    else if (a == "--memory-frames")
      o.memory_frames = parse_count(a, v);
    else if (a == "--n-frames")
      o.n_frames = parse_count(a, v);
    else if (a == "--seed")
      o.seed = static_cast<unsigned>(parse_number(a, v, -1));
    else if (a == "--threads")
      o.threads = static_cast<int>(parse_count(a, v));
    else if (a == "--budget") {
      if (v != "steps" && v != "sine" && v != "mix")
        throw usage_error("option '--budget' expects steps, sine or mix, got '" + v + "'");
      o.budget_mode = v;
    } else if (a == "--budget-trace")
      o.budget_trace = v;
    else if (a == "--budget-lo-ms")
      o.budget_lo = drt::parse_budget_ms(v, "--budget-lo-ms");
    else if (a == "--budget-hi-ms")
      o.budget_hi = drt::parse_budget_ms(v, "--budget-hi-ms");
    else if (a == "--step-frames")
      o.step_frames = parse_count(a, v);
    else if (a == "--sine-period")
      o.sine_period = parse_count(a, v);
    else if (a == "--load")
      o.load_text = v;
    else if (a == "--load-busy")
      o.load_busy = parse_count(a, v);
    else if (a == "--load-idle")
      o.load_idle = parse_count(a, v);
    else if (a == "--load-threads")
      o.load_threads = parse_count(a, v);
    else if (a == "--statics")
      o.statics = parse_count(a, v);
    else if (a == "--miss-target")
      o.miss_target = parse_number(a, v, 0);
    else if (a == "--calib-runs")
      o.calib_runs = parse_count(a, v);
    else if (a == "--out-prefix")
      o.out_prefix = v;
    else if (a == "--svg")
      o.svg = v;
    else
      throw usage_error("unknown option '" + a + "' (see --help)");
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
  drt::detail::svg_write(file, o.str());
}

void ensure_parent(const std::string& file) {
  const auto p = fs::path(file).parent_path();
  if (!p.empty()) fs::create_directories(p);
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
  std::map<std::string, std::unique_ptr<drt::segformer_model>> models;
  drt::segformer_graph graph;
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
    models[e.model] = std::make_unique<drt::segformer_model>(drt::segformer_model::from_dir(dir));
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
  auto time_once = [&](const drt::segformer_graph::plan_type& p) {
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

  // Budgets.
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
    auto ex = std::make_shared<drt::executor<drt::segformer_graph, static_policy>>(graph, static_policy(table, e));
    strategies.push_back({name, [ex](const drt::tensor4& x, double b) { return ex->run(x, b); }});
  }
  {
    auto ex = std::make_shared<drt::executor<drt::segformer_graph, drt::lut_policy>>(graph, drt::lut_policy(table));
    strategies.push_back({"lut_policy", [ex](const drt::tensor4& x, double b) { return ex->run(x, b); }});
    drt::deadline_controller_options dco;
    dco.target_miss_rate = o.miss_target;
    if (o.memory_frames > 0) {  // the purely reactive controller beside the cautious one, for comparison
      auto rc = std::make_shared<drt::executor<drt::segformer_graph, drt::deadline_controller>>(
          graph, drt::deadline_controller(table, dco));
      strategies.push_back({"reactive_controller", [rc](const drt::tensor4& x, double b) { return rc->run(x, b); }});
    }
    dco.memory_frames = o.memory_frames;
    auto dc = std::make_shared<drt::executor<drt::segformer_graph, drt::deadline_controller>>(
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
    std::ofstream c(csv);
    if (!c) throw drt::io_error("csv '" + csv + "': cannot open for writing");
    c << "frame,budget_ms,load_on,strategy,entry,model,path,fits,expected_ms,expected_miou,measured_ms,miss,t_s\n";
    for (const auto& r : rows)
      c << r.frame << ',' << fmt(r.budget, 2) << ',' << r.load_on << ',' << r.strategy << ',' << r.entry << ','
        << table.entries[r.entry].model << ",\"" << table.entries[r.entry].path << "\"," << r.fits << ','
        << fmt(r.expected_ms, 2) << ',' << fmt(r.miou, 4) << ',' << fmt(r.measured, 2) << ',' << r.miss << ','
        << fmt(r.t_s, 3) << '\n';
    if (!c) throw drt::io_error("csv '" + csv + "': write failed");
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
    j["calibration"] = {{"runs", o.calib_runs},
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
    std::ofstream jo(js);
    if (!jo) throw drt::io_error("json '" + js + "': cannot open for writing");
    jo << j.dump(1) << '\n';
    if (!jo) throw drt::io_error("json '" + js + "': write failed");
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
    std::cerr << "deadline_benchmark: error: " << e.what() << "\n" << usage_text;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "deadline_benchmark: error: " << e.what() << '\n';
    return 1;
  }
}
