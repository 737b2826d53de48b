// drt segment --lut LUT --budget-ms X: let a lookup table choose the model and path for a per-frame
// latency budget, run it, and report the choice, its expected mIoU and the measured time; with
// --frames DIR, a video-like run over a folder of frames with a budget per frame (constant or a trace).

#include <drt/engine/executor.hpp>
#include <drt/engine/lut.hpp>
#include <drt/engine/lut_build.hpp>
#include <drt/engine/policy.hpp>
#include <drt/io/image.hpp>
#include <drt/layers/resize.hpp>
#include <drt/models/any_model.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "budget_run.hpp"
#include "commands.hpp"
#include "inputs.hpp"

namespace drt_cli {

namespace {

/// "95 % interval 0.5801-0.6390"
std::string interval_text(const drt::miou_interval& ci) {
  std::ostringstream os;
  os << std::fixed << std::setprecision(0) << 100 * ci.level << " % interval " << std::setprecision(4) << ci.low << "-"
     << ci.high;
  return os.str();
}

/// Options `drt segment` gains for budgeted inference: name, value placeholder (empty: a flag), help.
struct budget_option {
  const char* name;
  const char* value;
  const char* help;
};
const budget_option budget_options[] = {
    {"--lut", "LUT", "lookup table from 'drt sweep': the table chooses model and path per frame"},
    {"--budget-ms", "X", "latency budget per frame in milliseconds (with --lut)"},
    {"--budget-trace", "FILE", "budgets per frame, one number of ms per line, repeated (with --lut)"},
    {"--frames", "DIR", "run every image of DIR in name order as a video, one line per frame (with --lut)"},
    {"--policy", "NAME", "lut (open loop, default) or deadline (closed loop, adapts to the machine's speed)"},
    {"--p95", "",
     "lut policy: compare the budget with each path's p95 latency, not its median (one frame, hard deadline)"},
    {"--miss-target", "R", "deadline policy: deadline miss rate to stay under (default 0.01)"},
    {"--memory-frames", "N",
     "deadline policy: plan for the slowest speed seen in the last N frames (default: current speed)"}};

}  // namespace

void add_budget_options(CLI::App& segment) {
  for (const auto& o : budget_options) {
    if (*o.value)
      value_option(segment, o.name, o.value, o.help)->group("Budgeted inference (--lut)");
    else
      flag_option(segment, o.name, o.help)->group("Budgeted inference (--lut)");
  }
  add_video_options(segment);
}

/// True when the command line asks for budgeted inference; a budget option without --lut is a usage error.
bool wants_budget(const parsed_args& args) {
  check_video_options(args);
  if (args.has("--lut")) return true;
  for (const auto& o : budget_options)
    if (args.has(o.name)) throw usage_error(args.command(), std::string("option '") + o.name + "' needs '--lut'");
  return false;
}

namespace {

/// The loaded models of a budgeted run, keyed by LUT model name.
struct budget_models {
  std::map<std::string, std::unique_ptr<drt::any_model>> models;
  drt::model_graph graph;
};

int run_budget(const std::string& cmd, const parsed_args& args, const drt::lookup_table& table, frame_runner& runner,
               const std::string& image_path, const std::string& lut_file) {
  const bool has_trace = args.has("--budget-trace");
  const std::vector<double> budgets =
      has_trace ? drt::load_budget_trace(args.get("--budget-trace"))
                : std::vector<double>{drt::parse_budget_ms(args.get("--budget-ms"), "--budget-ms")};
  size_hw size;
  if (args.has("--size")) size = parse_size_limited(cmd, args);
  const std::size_t pixel_limit = max_pixels(cmd, args);
  auto load = [&](const std::string& path, drt::rgb_image& original) {
    original = drt::load_image(path, drt::channel_policy::convert, pixel_limit);
    return args.has("--size") ? drt::resize_image(original, size.height, size.width) : original;
  };
  auto size_note = [&](const drt::rgb_image& img) {
    const std::size_t lh = table.input_height(), lw = table.input_width();
    if (lh && (lh != img.height || lw != img.width))
      std::cerr << "drt " << cmd << ": warning: lut '" << lut_file << "' was measured at " << lh << "x" << lw
                << " but the input is " << img.height << "x" << img.width << ": its latencies may not hold\n";
  };
  std::cout << std::fixed;
  if (!args.has("--frames")) {
    drt::rgb_image original;
    const drt::rgb_image image = load(image_path, original);
    size_note(image);
    const drt::tensor4 x = drt::normalize_imagenet(image);
    const double budget = budgets[0];
    // warm-up: the path the budget picks, until its time settles
    const std::size_t warm = warm_until_settled([&] { return runner.step(x, budget).measured_ms; });
    const budget_step r = runner.step(x, budget);
    warn_nonfinite(cmd, "logits", r.logits);
    const drt::itensor3 classes = drt::upsample_argmax(r.logits, image.height, image.width);
    const std::string mask = args.get("--out", "segment_mask.png");
    const std::size_t k = r.logits.shape(1);
    const drt::palette pal = drt::class_palette(k);
    write_segmentation(mask, args.get("--overlay"), image, classes, pal,
                       args.has("--alpha") ? parse_fraction(cmd, "--alpha", args.get("--alpha")) : 0.5f);
    std::cout << std::setprecision(1) << "lut      " << lut_file << " (" << table.entries.size() << " entries, policy "
              << runner.policy_name() << ")\n"
              << "image    " << image_path << " (" << image.height << "x" << image.width << " HxW)\n"
              << "budget   " << budget << " ms\n"
              << "model    " << r.entry.model << '\n'
              << "path     " << r.entry.path << " (" << std::setprecision(2) << r.entry.macs / 1e9 << " GMACs)\n"
              << std::setprecision(4) << "expected mIoU " << r.entry.miou << " (" << std::setprecision(3)
              << r.entry.miou_normalized << " of the reference"
              << (r.choice.expected_miou_interval.valid()
                      ? "; " + interval_text(r.choice.expected_miou_interval) + " over the table's images"
                      : std::string())
              << ")\n"
              << std::setprecision(1) << "expected " << r.choice.expected_ms << " ms (table: median "
              << r.entry.latency_ms << ", p95 " << r.entry.latency_p95_ms << ", " << r.entry.latency_source << ")\n"
              << "time     " << r.measured_ms << " ms (forward, after " << warm << " warm-up run"
              << (warm == 1 ? "" : "s") << "): "
              << (r.choice.fits ? (r.missed ? "missed the budget" : "within the budget")
                                : "nothing in the table fits the budget; ran the cheapest path")
              << '\n'
              << "mask     " << mask << '\n';
    if (args.has("--overlay")) std::cout << "overlay  " << args.get("--overlay") << '\n';
    return 0;
  }
  const auto files = drt::list_image_files(args.get("--frames"));
  std::cout << "lut " << lut_file << ", policy " << runner.policy_name() << ", " << files.size() << " frames from "
            << args.get("--frames") << (has_trace ? ", budget trace " + args.get("--budget-trace") : "") << '\n'
            << std::left << std::setw(6) << "frame" << std::setw(22) << "image" << std::right << std::setw(9)
            << "budget"
            << "  " << std::left << std::setw(22) << "model" << std::setw(40) << "path" << std::right << std::setw(7)
            << "mIoU" << std::setw(10) << "expected" << std::setw(10) << "measured" << '\n';
  budget_stats stats;
  for (std::size_t i = 0; i < files.size(); ++i) {
    drt::rgb_image original;
    const drt::rgb_image image = load(files[i], original);
    const drt::tensor4 x = drt::normalize_imagenet(image);
    if (i == 0) {
      size_note(image);
      runner.warm_up(x);  // untimed and unseen by the policy: each model's cheapest candidate once
    }
    const double budget = budgets[i % budgets.size()];
    budget_step r = runner.step(x, budget);
    r.nonfinite = warn_nonfinite(cmd, "logits of frame " + std::to_string(i) + " ('" + files[i] + "')", r.logits) > 0;
    stats.add(r);
    std::cout << std::left << std::setw(6) << i << std::setw(22)
              << std::filesystem::path(files[i]).filename().string().substr(0, 21) << std::right << std::setprecision(1)
              << std::setw(9) << budget << "  " << std::left << std::setw(22) << r.entry.model.substr(0, 21)
              << std::setw(40) << r.entry.path.substr(0, 39) << std::right << std::setprecision(4) << std::setw(7)
              << r.entry.miou << std::setprecision(1) << std::setw(10) << r.choice.expected_ms << std::setw(10)
              << r.measured_ms << (r.missed ? " MISS" : "") << (r.choice.fits ? "" : " (nothing fits)") << '\n';
  }
  std::cout << '\n';
  stats.print(std::cout);
  return 0;
}

}  // namespace

/// `drt segment [MODEL_DIR] [IMAGE] --lut LUT (--budget-ms X | --budget-trace FILE) [--frames DIR]
/// [--policy lut|deadline] [--miss-target R] [--size HxW] [--out mask.png] [--overlay PATH] [--threads T]`.
/// `default_image` is used when no image is given.
int segment_budget_main(const parsed_args& args, const std::string& default_image) {
  const std::string cmd = "segment";
  namespace fs = std::filesystem;
  if (args.has("--path"))
    throw usage_error(cmd, "options '--path' and '--lut' exclude each other (the table chooses the path)");
  for (const char* o : {"--order", "--int8-ranges", "--no-fold"})
    if (args.has(o))
      throw usage_error(cmd, std::string("option '") + o +
                                 "' does not go with '--lut': the table records how its models were built (decoder "
                                 "graph, channel order, int8 ranges) and they are loaded that way");
  if (args.has("--budget-ms") == args.has("--budget-trace") && !args.has("--video"))  // video: the frame interval
    throw usage_error(cmd, "with '--lut' give exactly one of '--budget-ms' and '--budget-trace'");
  apply_threads(args);
  const std::string policy = args.get("--policy", "lut");
  if (policy != "lut" && policy != "deadline")
    throw usage_error(cmd, "option '--policy' expects 'lut' or 'deadline', got '" + policy + "'");
  if (args.has("--miss-target") && policy != "deadline")
    throw usage_error(cmd, "option '--miss-target' needs '--policy deadline'");
  if (args.has("--memory-frames") && policy != "deadline")
    throw usage_error(cmd, "option '--memory-frames' needs '--policy deadline'");
  if (args.has("--p95") && policy != "lut") throw usage_error(cmd, "option '--p95' needs '--policy lut'");

  // Positionals: [MODEL_DIR] [IMAGE], or a single IMAGE file.
  std::string model_dir, image = default_image;
  std::error_code ec;
  if (args.positional.size() == 1 && fs::is_regular_file(args.positional[0], ec))
    image = args.positional[0];
  else {
    if (!args.positional.empty()) model_dir = args.positional[0];
    if (args.positional.size() > 1) image = args.positional[1];
  }

  if (!args.has("--frames") && !args.has("--video")) {  // refuse unwritable outputs before loading anything
    drt::check_writable("png", args.get("--out", "segment_mask.png"));
    if (args.has("--overlay")) drt::check_writable("png", args.get("--overlay"));
  }
  const std::string lut_file = args.get("--lut");
  drt::lookup_table table = drt::load_lut(lut_file);
  const std::string warn = drt::machine_mismatch(table.machine, drt::machine_info::current(), "lut '" + lut_file + "'");
  if (!warn.empty()) std::cerr << "drt " << cmd << ": warning: " << warn << '\n';

  // Which models: MODEL_DIR's, or every model of the table whose directory can be found.
  std::map<std::string, std::string> dirs;  // model name -> directory
  std::set<std::string> in_table;
  for (const auto& e : table.entries) in_table.insert(e.model);
  if (!model_dir.empty()) {
    auto p = fs::path(model_dir);
    const std::string name = (p.filename().empty() ? p.parent_path() : p).filename().string();
    if (!in_table.count(name)) {
      std::string names;
      for (const auto& n : in_table) names += (names.empty() ? "" : ", ") + n;
      throw drt::invalid_input("lut '" + lut_file + "': no entries for model '" + name + "' (models in it: " + names +
                               ")");
    }
    dirs[name] = model_dir;
  } else {
    for (const auto& e : table.entries) {
      if (dirs.count(e.model)) continue;
      std::vector<fs::path> tries;
      if (!e.model_dir.empty()) {
        tries.push_back(e.model_dir);
        tries.push_back(fs::path(lut_file).parent_path() / e.model_dir);
      }
      bool found = false;
      std::error_code ec;
      for (const auto& t : tries)
        if (fs::exists(t / "config.json", ec)) {
          dirs[e.model] = t.string();
          found = true;
          break;
        }
      if (!found && dirs.find(e.model) == dirs.end())
        std::cerr << "drt " << cmd << ": warning: skipping the entries of model '" << e.model << "': directory '"
                  << e.model_dir << "' not found (give MODEL_DIR to use it)\n";
      if (!found) dirs[e.model] = "";
    }
    for (auto it = dirs.begin(); it != dirs.end();) it = it->second.empty() ? dirs.erase(it) : std::next(it);
    if (dirs.empty())
      throw drt::invalid_input("lut '" + lut_file + "': none of its models' directories were found; give MODEL_DIR");
  }
  table.entries.erase(std::remove_if(table.entries.begin(), table.entries.end(),
                                     [&](const drt::lut_entry& e) { return !dirs.count(e.model); }),
                      table.entries.end());
  table.mark_pareto();

  budget_models bm;
  for (const auto& [name, dir] : dirs) {
    // the decoder graph, channel order and int8 ranges the table was measured with
    const drt::segformer_options build = drt::lut_build(table, name, "lut '" + lut_file + "'");
    bm.models[name] = std::make_unique<drt::any_model>(drt::load_model(dir, weight_options(args), build));
    bm.graph.add(name, *bm.models[name]);
  }
  auto run = [&](frame_runner& runner) {
    if (args.has("--video")) return segment_video_main(args, table, runner, lut_file);
    return run_budget(cmd, args, table, runner, image, lut_file);
  };
  if (policy == "lut") {
    drt::lut_policy_options lo;
    lo.use_p95 = args.has("--p95");
    policy_runner<drt::lut_policy> runner(bm.graph, drt::lut_policy(table, lo));
    return run(runner);
  }
  drt::deadline_controller_options o;
  if (args.has("--miss-target")) {
    const float r = parse_fraction(cmd, "--miss-target", args.get("--miss-target"));
    if (!(r > 0 && r < 0.5f))
      throw usage_error(cmd,
                        "option '--miss-target' expects a rate in (0, 0.5), got '" + args.get("--miss-target") + "'");
    o.target_miss_rate = r;
  }
  if (args.has("--memory-frames"))
    o.memory_frames = parse_positive(cmd, "--memory-frames", args.get("--memory-frames"));
  policy_runner<drt::deadline_controller> runner(bm.graph, drt::deadline_controller(table, o));
  return run(runner);
}

}  // namespace drt_cli
