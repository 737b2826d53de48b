// drt segment --video IN --out OUT --lut LUT: segment a video (any file FFmpeg reads, or raw rgb24
// frames on stdin) under a per-frame deadline as a pipelined stream (frame_pipeline.hpp): decoding
// and encoding overlap the inference, frames of a real-time source are dropped (and counted) when the
// inference falls behind. Writes the overlay video, a per-frame log (CSV or JSON lines), an SVG
// timeline and prints a summary. The per-frame step is the one of `--frames` (budget_run.hpp).

#include <drt/core/error.hpp>
#include <drt/core/parallel.hpp>
#include <drt/engine/lut.hpp>
#include <drt/io/image.hpp>
#include <drt/io/svg.hpp>
#include <drt/layers/resize.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "budget_run.hpp"
#include "commands.hpp"
#include "frame_pipeline.hpp"
#include "inputs.hpp"
#include "progress.hpp"
#include "video.hpp"

namespace drt_cli {

namespace {

const char* const video_group = "Video (--video, with --lut)";

struct video_option {
  const char* name;
  const char* value;  // empty: a flag
  const char* help;
};
const video_option video_options[] = {
    {"--video", "FILE",
     "segment a video (any container and codec FFmpeg reads; '-': raw rgb24 frames on stdin, with --raw) as a "
     "pipelined stream, writing the overlay video to --out"},
    {"--raw", "WxH", "with '--video -': the frame size of the raw rgb24 stream, width x height (e.g. 480x360)"},
    {"--source-fps", "F", "the source's frame rate (default: the container's; raw: 30); sets the frame budget"},
    {"--realtime", "",
     "a live source: a file is read at its frame rate, and frames that arrive while the inference is behind are "
     "dropped (and counted) instead of waiting"},
    {"--loop", "N", "play the file N times in a row (a long stream from a short clip)"},
    {"--log", "FILE", "per-frame log: CSV, or JSON lines when FILE ends in .json or .jsonl"},
    {"--timeline", "FILE", "SVG timeline of budget, latency and chosen path per frame"},
    {"--bench", "",
     "first run the inference alone on the clip's frames (decoded up front, at most 120), then the pipeline, and "
     "print both frame rates and their ratio"},
    {"--encoder", "NAME", "FFmpeg video encoder for --out (default: libx264, else mpeg4)"},
    {"--queue", "N", "frames each of the pipeline's two queues holds (default 2)"}};

#ifdef DRT_HAVE_FFMPEG

struct video_frame {
  drt::rgb_image image;  // at the model's input size: the overlay's photo
  drt::tensor4 x;        // normalized
};
struct inferred_frame {
  drt::rgb_image image;
  drt::tensor4 logits;
};

double parse_fps(const std::string& cmd, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v > 0 && v <= 1000))
    throw usage_error(cmd, "option '--source-fps' expects a frame rate in (0, 1000], got '" + text + "'");
  return v;
}

/// "WxH" (width first, as ffmpeg's -video_size).
size_hw parse_raw_size(const std::string& cmd, const std::string& text) {
  const size_hw hw = parse_size(cmd, "--raw", text);  // reads "AxB" as height A, width B
  size_hw s;
  s.width = hw.height;
  s.height = hw.width;
  return s;
}

double max_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // Linux: KiB
}
double current_rss_mb() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  long pages = 0, rss = 0;
  const int n = std::fscanf(f, "%ld %ld", &pages, &rss);
  std::fclose(f);
  return n == 2 ? double(rss) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0) : 0.0;
}

/// The photo blended with the class colours in place: (1 - alpha) * photo + alpha * colour.
void blend(drt::rgb_image& img, const drt::itensor3& classes, const drt::palette& pal, float alpha) {
  const std::int32_t* c = classes.data();
  std::uint8_t* px = img.pixels.data();
  const std::size_t n = img.width * img.height;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& col = pal[static_cast<std::size_t>(c[i])];
    const float rgb[3] = {float(col.r), float(col.g), float(col.b)};
    for (int k = 0; k < 3; ++k) {
      const float v = (1.0f - alpha) * float(px[3 * i + k]) + alpha * rgb[k];
      px[3 * i + k] = static_cast<std::uint8_t>(std::min(255.0f, v + 0.5f));
    }
  }
}

std::string csv_quote(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (const char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}
std::string json_quote(const std::string& s) {
  std::string q = "\"";
  for (const char ch : s) {
    if (ch == '"' || ch == '\\') q += '\\';
    if (static_cast<unsigned char>(ch) < 0x20) continue;
    q += ch;
  }
  return q + "\"";
}

/// The per-frame log, written as the frames leave the pipeline (so a long stream needs no memory).
class frame_log {
public:
  frame_log(const std::string& path) : path_(path) {
    const auto dot = path.rfind('.');
    const std::string ext = dot == std::string::npos ? "" : path.substr(dot);
    json_ = ext == ".json" || ext == ".jsonl";
    out_.open(path, std::ios::binary | std::ios::trunc);
    if (!out_) throw drt::io_error("log '" + path + "': cannot open it for writing");
    out_ << std::fixed;
    if (!json_)
      out_ << "frame,pts_s,dropped,model,path,expected_miou,base_budget_ms,overhead_ms,budget_ms,expected_ms,"
              "latency_ms,deadline_met,fits,e2e_ms,rss_mb\n";
  }
  void add(const frame_record& r, double rss_mb) {
    if (json_) {
      out_ << "{\"frame\":" << r.index << std::setprecision(4) << ",\"pts_s\":" << r.pts_s
           << ",\"dropped\":" << (r.dropped ? "true" : "false");
      if (!r.dropped)
        out_ << ",\"model\":" << json_quote(r.model) << ",\"path\":" << json_quote(r.path)
             << ",\"expected_miou\":" << r.miou << std::setprecision(3) << ",\"base_budget_ms\":" << r.base_budget_ms
             << ",\"overhead_ms\":" << r.overhead_ms << ",\"budget_ms\":" << r.budget_ms
             << ",\"expected_ms\":" << r.expected_ms << ",\"latency_ms\":" << r.infer_ms
             << ",\"deadline_met\":" << (r.missed ? "false" : "true") << ",\"fits\":" << (r.fits ? "true" : "false")
             << ",\"e2e_ms\":" << r.e2e_ms;
      out_ << std::setprecision(1) << ",\"rss_mb\":" << rss_mb << "}\n";
    } else {
      out_ << r.index << ',' << std::setprecision(4) << r.pts_s << ',' << (r.dropped ? 1 : 0) << ',';
      if (r.dropped)
        out_ << ",,,,,,,,,,,";
      else
        out_ << csv_quote(r.model) << ',' << csv_quote(r.path) << ',' << r.miou << ',' << std::setprecision(3)
             << r.base_budget_ms << ',' << r.overhead_ms << ',' << r.budget_ms << ',' << r.expected_ms << ','
             << r.infer_ms << ',' << (r.missed ? 0 : 1) << ',' << (r.fits ? 1 : 0) << ',' << r.e2e_ms << ',';
      out_ << std::setprecision(1) << rss_mb << '\n';
    }
    if (!out_) throw drt::io_error("log '" + path_ + "': write failed (disk full?)");
  }
  void close() {
    out_.close();
    if (!out_) throw drt::io_error("log '" + path_ + "': write failed (disk full?)");
  }

private:
  std::string path_;
  bool json_ = false;
  std::ofstream out_;
};

/// The timeline's samples, thinned out (every 2nd kept, then every 4th ...) past `cap` so that a
/// stream of any length fits in bounded memory and a readable SVG.
class timeline {
public:
  void add(const frame_record& r) {
    if (r.index % stride_ != 0) return;
    samples_.push_back({double(r.index), r.budget_ms, r.infer_ms, r.dropped, r.model + " " + r.path});
    if (samples_.size() > cap_) {
      stride_ *= 2;
      std::vector<sample> kept;
      for (auto& s : samples_)
        if (static_cast<std::size_t>(s.frame) % stride_ == 0) kept.push_back(std::move(s));
      samples_ = std::move(kept);
    }
  }
  void save(const std::string& path, const std::string& title) const {
    drt::xy_chart chart;
    chart.title = title;
    chart.x_label = stride_ > 1 ? "frame (every " + std::to_string(stride_) + "th shown)" : "frame";
    chart.y_label = "ms";
    drt::xy_chart::series_data budget{"budget", {}, {}, true, 0};
    std::map<std::string, std::size_t> uses;
    for (const auto& s : samples_)
      if (!s.dropped) ++uses[s.path];
    std::vector<std::pair<std::size_t, std::string>> order;
    for (const auto& [p, n] : uses) order.push_back({n, p});
    std::sort(order.rbegin(), order.rend());
    const std::size_t shown = std::min<std::size_t>(order.size(), 8);
    std::map<std::string, std::size_t> series_of;
    std::vector<drt::xy_chart::series_data> paths;
    for (std::size_t i = 0; i < shown; ++i) {
      series_of[order[i].second] = i;
      paths.push_back({"latency: " + order[i].second, {}, {}, false, 1.8});
    }
    drt::xy_chart::series_data other{"latency: other paths", {}, {}, false, 1.8};
    drt::xy_chart::series_data dropped{"dropped frame", {}, {}, false, 2.5};
    for (const auto& s : samples_) {
      if (s.dropped) {
        dropped.x.push_back(s.frame);
        dropped.y.push_back(0);
        continue;
      }
      budget.x.push_back(s.frame);
      budget.y.push_back(s.budget);
      const auto it = series_of.find(s.path);
      auto& dst = it == series_of.end() ? other : paths[it->second];
      dst.x.push_back(s.frame);
      dst.y.push_back(s.latency);
    }
    chart.series.push_back(std::move(budget));
    for (auto& p : paths) chart.series.push_back(std::move(p));
    if (!other.x.empty()) chart.series.push_back(std::move(other));
    if (!dropped.x.empty()) chart.series.push_back(std::move(dropped));
    chart.save(path);
  }

private:
  struct sample {
    double frame, budget, latency;
    bool dropped;
    std::string path;
  };
  std::vector<sample> samples_;
  std::size_t stride_ = 1, cap_ = 3000;
};

#endif  // DRT_HAVE_FFMPEG

}  // namespace

void add_video_options(CLI::App& segment) {
  for (const auto& o : video_options) {
    if (*o.value)
      value_option(segment, o.name, o.value, o.help)->group(video_group);
    else
      flag_option(segment, o.name, o.help)->group(video_group);
  }
}

void check_video_options(const parsed_args& args) {
  const std::string cmd = args.command();
  if (!args.has("--video")) {
    for (const auto& o : video_options)
      if (args.has(o.name)) throw usage_error(cmd, std::string("option '") + o.name + "' needs '--video'");
    return;
  }
#ifndef DRT_HAVE_FFMPEG
  throw drt::invalid_input(no_ffmpeg_message);
#else
  if (!args.has("--lut"))
    throw usage_error(cmd, "option '--video' needs '--lut' (the table chooses the model and path of each frame)");
  if (args.has("--frames")) throw usage_error(cmd, "options '--video' and '--frames' exclude each other");
  if (args.has("--overlay"))
    throw usage_error(cmd, "with '--video', '--out' is the overlay video ('--alpha 1': the class colours alone); "
                           "'--overlay' is for images");
  if (args.has("--budget-ms") && args.has("--budget-trace"))
    throw usage_error(cmd, "give at most one of '--budget-ms' and '--budget-trace'");
  const bool raw = args.get("--video") == "-";
  if (raw != args.has("--raw"))
    throw usage_error(cmd, raw ? "'--video -' (raw rgb24 frames on stdin) needs '--raw WxH'"
                               : "option '--raw' needs '--video -' (raw frames on stdin)");
  if (raw && args.has("--loop")) throw usage_error(cmd, "option '--loop' needs a file, not '--video -'");
  if (args.has("--raw")) parse_raw_size(cmd, args.get("--raw"));
  if (args.has("--source-fps")) parse_fps(cmd, args.get("--source-fps"));
  if (args.has("--loop")) parse_positive(cmd, "--loop", args.get("--loop"));
  if (args.has("--queue")) parse_positive(cmd, "--queue", args.get("--queue"));
  if (raw && args.has("--bench")) throw usage_error(cmd, "option '--bench' needs a file, not '--video -'");
  // Outputs that cannot be written are refused before the models load.
  drt::check_writable("video", args.get("--out", "segment.mp4"));
  if (args.has("--log")) drt::check_writable("log", args.get("--log"));
  if (args.has("--timeline")) drt::check_writable("svg", args.get("--timeline"));
#endif
}

#ifndef DRT_HAVE_FFMPEG

int segment_video_main(const parsed_args&, const drt::lookup_table&, frame_runner&, const std::string&) {
  throw drt::invalid_input(no_ffmpeg_message);
}

#else

int segment_video_main(const parsed_args& args, const drt::lookup_table& table, frame_runner& runner,
                       const std::string& lut_file) {
  const std::string cmd = "segment";
  const std::string in_path = args.get("--video"), out_path = args.get("--out", "segment.mp4");
  const bool raw = in_path == "-";
  const bool realtime = args.has("--realtime");
  const std::size_t loops = args.has("--loop") ? parse_positive(cmd, "--loop", args.get("--loop")) : 1;
  const float alpha = args.has("--alpha") ? parse_fraction(cmd, "--alpha", args.get("--alpha")) : 0.5f;
  const std::size_t pixel_limit = max_pixels(cmd, args);
  size_hw size;  // 0x0: the source's size
  if (args.has("--size")) size = parse_size_limited(cmd, args);

  // The source: a file through FFmpeg (reopened for every loop) or raw frames on stdin.
  std::unique_ptr<video_reader> file;
  std::unique_ptr<raw_reader> pipe;
  std::size_t width = 0, height = 0;
  double fps = 0;
  std::string source_text;
  if (raw) {
    const size_hw r = parse_raw_size(cmd, args.get("--raw"));
    drt::check_pixel_limit("--raw " + args.get("--raw"), r.height, r.width, pixel_limit);
    pipe = std::make_unique<raw_reader>(stdin, "stdin", r.width, r.height);
    width = size.width ? size.width : r.width;
    height = size.height ? size.height : r.height;
    fps = args.has("--source-fps") ? parse_fps(cmd, args.get("--source-fps")) : 30.0;
    source_text = "stdin (raw rgb24 " + std::to_string(r.width) + "x" + std::to_string(r.height) + ")";
  } else {
    file = std::make_unique<video_reader>(in_path, pixel_limit, size.width, size.height);
    const video_info& vi = file->info();
    width = file->out_width();
    height = file->out_height();
    fps = args.has("--source-fps") ? parse_fps(cmd, args.get("--source-fps")) : vi.fps;
    if (!(fps > 0)) {
      std::cerr << "drt " << cmd << ": warning: video '" << in_path
                << "' has no frame rate; assuming 30 fps (give --source-fps)\n";
      fps = 30;
    }
    std::ostringstream os;
    os << in_path << " (" << vi.container << ", " << vi.codec << ", " << vi.width << "x" << vi.height << ", "
       << std::setprecision(4) << (vi.fps > 0 ? vi.fps : 0.0) << " fps"
       << (vi.frames > 0 ? ", " + std::to_string(vi.frames) + " frames" : std::string()) << ")";
    source_text = os.str();
  }
  const double interval_ms = 1000.0 / fps;
  if (table.input_height() && (table.input_height() != height || table.input_width() != width))
    std::cerr << "drt " << cmd << ": warning: lut '" << lut_file << "' was measured at " << table.input_height()
              << "x" << table.input_width() << " but the frames are " << height << "x" << width
              << ": its latencies may not hold\n";
  std::vector<double> budgets;
  if (args.has("--budget-trace")) budgets = drt::load_budget_trace(args.get("--budget-trace"));
  if (args.has("--budget-ms")) budgets = {drt::parse_budget_ms(args.get("--budget-ms"), "--budget-ms")};

  // Reads the next source frame at the model's size: the file's, its next loop's, or stdin's.
  std::size_t loop = 0;
  auto next_image = [&](drt::rgb_image& img) -> bool {
    if (pipe) {
      if (!pipe->read(img)) return false;
      if (size.height && (img.height != size.height || img.width != size.width))
        img = drt::resize_image(img, size.height, size.width);
      return true;
    }
    while (!file->read(img)) {
      if (++loop >= loops) return false;
      file = std::make_unique<video_reader>(in_path, pixel_limit, size.width, size.height);
    }
    return true;
  };

  // The first frame, before the stream: the warm-up (untimed, unseen by the policy) runs on it.
  std::optional<drt::rgb_image> first(std::in_place);
  if (!next_image(*first)) throw drt::invalid_input("video '" + in_path + "': no frames");
  runner.warm_up(drt::normalize_imagenet(*first));

  std::cout << std::fixed;
  double alone_fps = 0;
  std::size_t alone_frames = 0;
  if (args.has("--bench")) {
    // Inference alone: the clip's frames (at most 120) decoded up front, normalized outside the
    // timing, each frame's step timed back to back with nothing else running.
    std::vector<drt::rgb_image> frames{*first};
    {
      video_reader again(in_path, pixel_limit, size.width, size.height);
      drt::rgb_image img;
      again.read(img);  // the first frame, already held
      while (frames.size() < 120 && again.read(img)) frames.push_back(img);
    }
    const double base = budgets.empty() ? interval_ms : budgets[0];
    double total_ms = 0;
    for (const auto& img : frames) {
      const drt::tensor4 x = drt::normalize_imagenet(img);
      const auto t0 = std::chrono::steady_clock::now();
      const budget_step s = runner.step(x, realtime ? std::min(base, interval_ms) : base);
      total_ms += ms_since(t0);
      (void)s;
    }
    alone_frames = frames.size();
    alone_fps = 1000.0 * double(frames.size()) / total_ms;
  }

  video_writer out(out_path, width, height, fps, args.get("--encoder"));
  std::unique_ptr<frame_log> log;
  if (args.has("--log")) log = std::make_unique<frame_log>(args.get("--log"));
  timeline tl;
  budget_stats stats;
  std::vector<double> e2e;
  double overhead_sum = 0;
  std::size_t written = 0, dropped_seen = 0, missed_seen = 0;
  progress_line progress("drt segment");
  std::optional<drt::palette> pal;

  pipeline_options po;
  po.realtime = realtime;
  po.pace_source = realtime && !raw;
  po.fps = fps;
  po.queue = args.has("--queue") ? parse_positive(cmd, "--queue", args.get("--queue")) : 2;

  pipeline_stages<video_frame, inferred_frame> st;
  st.thread_start = [] {  // the reader and writer leave the cores to the inference: one OpenMP thread each,
    drt::set_threads(1);   // and 5 nice levels below it (they fill the gaps of the forward pass)
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    errno = 0;
    const int nice_now = getpriority(PRIO_PROCESS, tid);
    if (errno == 0) setpriority(PRIO_PROCESS, tid, std::min(19, nice_now + 5));
  };
  st.read = [&]() -> std::optional<video_frame> {
    video_frame f;
    if (first) {
      f.image = std::move(*first);
      first.reset();
    } else if (!next_image(f.image)) {
      return std::nullopt;
    }
    f.x = drt::normalize_imagenet(f.image);
    return f;
  };
  st.base_budget = [&](const frame_record& r) {
    const double b = budgets.empty() ? interval_ms : budgets[r.index % budgets.size()];
    return realtime ? std::min(b, interval_ms) : b;
  };
  st.infer = [&](video_frame&& f, frame_record& rec) {
    budget_step s = runner.step(f.x, rec.budget_ms);
    s.nonfinite = warn_nonfinite(cmd, "logits of frame " + std::to_string(rec.index), s.logits) > 0;
    stats.add(s);
    rec.model = s.entry.model;
    rec.path = s.entry.path;
    rec.miou = s.entry.miou;
    rec.expected_ms = s.choice.expected_ms;
    rec.infer_ms = s.measured_ms;
    rec.missed = s.missed;
    rec.fits = s.choice.fits;
    return inferred_frame{std::move(f.image), std::move(s.logits)};
  };
  st.write = [&](inferred_frame&& r, const frame_record& rec) {
    if (!pal) pal = drt::class_palette(r.logits.shape(1));
    const drt::itensor3 cls = drt::upsample_argmax(r.logits, r.image.height, r.image.width);
    blend(r.image, cls, *pal, alpha);
    out.write(r.image, static_cast<long long>(rec.index));
  };
  st.log = [&](const frame_record& rec) {
    if (rec.dropped) {
      ++dropped_seen;
    } else {
      ++written;
      missed_seen += rec.missed ? 1 : 0;
      e2e.push_back(rec.e2e_ms);
      overhead_sum += rec.overhead_ms;
    }
    if (log) log->add(rec, current_rss_mb());
    tl.add(rec);
    std::ostringstream os;
    os << "frame " << rec.index << ": " << written << " segmented, " << dropped_seen << " dropped, "
       << missed_seen << " deadline misses";
    progress.update(os.str());
  };

  pipeline_counts counts;
  try {
    counts = run_pipeline(po, st);
  } catch (...) {
    progress.finish();
    try {
      out.finish();
    } catch (...) {
    }
    std::cerr << "drt " << cmd << ": the " << out.frames_written() << " frames segmented before the error are in '"
              << out_path << "'\n";
    throw;
  }
  progress.finish();
  out.finish();
  if (log) log->close();
  if (args.has("--timeline"))
    tl.save(args.get("--timeline"), std::string("drt segment --video: budget and latency per frame (policy ") +
                                        runner.policy_name() + ")");

  std::sort(e2e.begin(), e2e.end());
  const auto pct = [&](double q) {
    return e2e.empty() ? 0.0 : e2e[std::min(e2e.size() - 1, static_cast<std::size_t>(q * double(e2e.size())))];
  };
  std::cout << std::setprecision(1) << "video    " << source_text
            << (loops > 1 ? " x " + std::to_string(loops) + " loops" : std::string()) << '\n'
            << "source   " << std::setprecision(2) << fps << " fps (frame interval " << interval_ms << " ms), "
            << (realtime ? "real time: frames are dropped when the inference falls behind"
                         : "offline: every frame is segmented (back-pressure)")
            << '\n'
            << "out      " << out_path << " (" << out.encoder_name() << ", " << width << "x" << height << ", "
            << fps << " fps, " << out.frames_written() << " frames)\n"
            << "lut      " << lut_file << " (policy " << runner.policy_name() << "), budget "
            << (budgets.empty() ? std::string("the frame interval")
                                : args.has("--budget-ms") ? args.get("--budget-ms") + " ms"
                                                          : "trace " + args.get("--budget-trace"))
            << (realtime && !budgets.empty() ? " (at most the frame interval)" : "")
            << " minus the pipeline overhead\n"
            << "stream   " << counts.read << " frames read, " << counts.processed << " segmented, " << counts.dropped
            << " dropped (" << std::setprecision(1) << 100.0 * double(counts.dropped) / double(std::max<std::size_t>(1, counts.read))
            << " %)\n";
  stats.print(std::cout);
  std::cout << std::setprecision(1) << "pipeline " << std::setprecision(2) << counts.fps() << " fps ("
            << counts.processed << " frames in " << std::setprecision(1) << counts.wall_ms / 1000.0
            << " s), end-to-end latency median " << pct(0.5) << " ms, p99 " << pct(0.99)
            << " ms, overhead taken off the budget mean " << std::setprecision(2)
            << overhead_sum / double(std::max<std::size_t>(1, written)) << " ms\n";
  if (args.has("--bench"))
    std::cout << "bench    inference alone " << alone_fps << " fps (" << alone_frames
              << " frames in series), pipeline " << counts.fps() << " fps: ratio " << std::setprecision(3)
              << counts.fps() / alone_fps << '\n';
  std::cout << std::setprecision(1) << "memory   max RSS " << max_rss_mb() << " MB\n";
  if (log) std::cout << "log      " << args.get("--log") << '\n';
  if (args.has("--timeline")) std::cout << "timeline " << args.get("--timeline") << '\n';
  return 0;
}

#endif  // DRT_HAVE_FFMPEG

}  // namespace drt_cli
