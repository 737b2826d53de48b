// Tests of the drt program's video stream (issue 21): the pipeline with a fake source, model and sink
// (test suite "pipeline", no FFmpeg needed) and, when the program is built with FFmpeg, the decoder
// and encoder and the `drt segment --video` error paths (test suite "video").

#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "frame_pipeline.hpp"
#include "video.hpp"

using drt_cli::bounded_queue;
using drt_cli::frame_record;
using drt_cli::pipeline_counts;
using drt_cli::pipeline_options;
using drt_cli::pipeline_stages;
using drt_cli::run_pipeline;

namespace {

void sleep_ms(double ms) { std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms)); }

/// A fake stream: `n` frames (their number as the frame), a model that sleeps `model_ms`, a sink that
/// keeps what it was given, and the log.
struct fake_stream {
  std::size_t n = 20;
  double model_ms = 1;
  std::size_t next = 0;
  std::vector<std::size_t> written;  // writer thread
  std::vector<frame_record> log;     // writer thread
  std::vector<double> budgets;       // calling thread

  pipeline_stages<std::size_t, std::size_t> stages() {
    pipeline_stages<std::size_t, std::size_t> st;
    st.read = [this]() -> std::optional<std::size_t> {
      if (next == n) return std::nullopt;
      return next++;
    };
    st.base_budget = [](const frame_record&) { return 40.0; };
    st.infer = [this](std::size_t&& f, frame_record& rec) {
      budgets.push_back(rec.budget_ms);
      sleep_ms(model_ms);
      rec.infer_ms = model_ms;
      rec.model = "fake";
      rec.path = "full";
      rec.missed = rec.infer_ms > rec.budget_ms;
      return f;
    };
    st.write = [this](std::size_t&& f, const frame_record& rec) {
      CHECK(f == rec.index);  // the frame travelled with its own record
      written.push_back(f);
    };
    st.log = [this](const frame_record& rec) { log.push_back(rec); };
    return st;
  }
};

/// Every source frame appears in the log exactly once, in order.
void check_log_complete(const std::vector<frame_record>& log, std::size_t n) {
  REQUIRE(log.size() == n);
  for (std::size_t i = 0; i < n; ++i) CHECK(log[i].index == i);
}

}  // namespace

TEST_SUITE("pipeline") {
  TEST_CASE("bounded_queue: capacity, FIFO order, eviction hands the oldest's cargo on, close drains") {
    bounded_queue<std::vector<int>> q(2);
    CHECK(q.push({1}));
    CHECK(q.push({2}));
    auto absorb = [](std::vector<int>& next, std::vector<int>&& oldest) {
      oldest.insert(oldest.end(), next.begin(), next.end());
      next = std::move(oldest);
    };
    CHECK(q.push_evicting({3}, absorb));  // {1} makes room and rides on {2}
    CHECK(q.high_water() == 2);
    CHECK(*q.pop() == std::vector<int>{1, 2});
    CHECK(*q.pop() == std::vector<int>{3});
    bounded_queue<std::vector<int>> one(1);
    CHECK(one.push({7}));
    CHECK(one.push_evicting({8}, absorb));  // capacity 1: the newcomer carries it
    CHECK(*one.pop() == std::vector<int>{7, 8});
    q.push({4});
    q.close();
    CHECK_FALSE(q.push({5}));
    CHECK(*q.pop() == std::vector<int>{4});  // what was queued still comes out
    CHECK_FALSE(q.pop().has_value());
  }

  TEST_CASE("bounded_queue: a full queue blocks the producer until the consumer takes (back-pressure)") {
    bounded_queue<int> q(1);
    q.push(1);
    std::atomic<bool> pushed{false};
    std::thread producer([&] {
      q.push(2);
      pushed = true;
    });
    sleep_ms(30);
    CHECK_FALSE(pushed.load());
    CHECK(*q.pop() == 1);
    producer.join();
    CHECK(pushed.load());
    CHECK(*q.pop() == 2);
  }

  TEST_CASE("offline stream: every frame is inferred and written, in order, none dropped") {
    fake_stream s;
    s.n = 25;
    pipeline_options o;
    const pipeline_counts c = run_pipeline(o, s.stages());
    CHECK(c.read == 25);
    CHECK(c.processed == 25);
    CHECK(c.dropped == 0);
    CHECK(c.max_queued_in <= 2);
    CHECK(c.max_queued_out <= 2);
    REQUIRE(s.written.size() == 25);
    for (std::size_t i = 0; i < 25; ++i) CHECK(s.written[i] == i);
    check_log_complete(s.log, 25);
    for (const auto& r : s.log) {
      CHECK_FALSE(r.dropped);
      CHECK(r.pts_s == doctest::Approx(double(r.index) / 30.0));
      CHECK(r.e2e_ms >= r.infer_ms);
    }
  }

  TEST_CASE("a slow model behind a fast offline source: back-pressure, memory bounded, nothing dropped") {
    fake_stream s;
    s.n = 12;
    s.model_ms = 15;  // the source could give hundreds of frames meanwhile
    pipeline_options o;
    o.queue = 2;
    const pipeline_counts c = run_pipeline(o, s.stages());
    CHECK(c.dropped == 0);
    CHECK(c.processed == 12);
    CHECK(c.max_queued_in <= 2);
  }

  TEST_CASE("real-time source faster than the model: frames are dropped, counted and logged in order") {
    fake_stream s;
    s.n = 40;
    s.model_ms = 20;  // 50 fps at best, the source gives 200 fps
    pipeline_options o;
    o.realtime = true;
    o.pace_source = true;
    o.fps = 200;
    o.queue = 2;
    const pipeline_counts c = run_pipeline(o, s.stages());
    CHECK(c.read == 40);
    CHECK(c.processed + c.dropped == 40);
    CHECK(c.dropped >= 20);  // about 30: each 20 ms forward lets 4 frames arrive, 1 of them is kept
    CHECK(c.processed >= 5);
    CHECK(c.max_queued_in <= 2);
    check_log_complete(s.log, 40);
    std::size_t dropped = 0;
    for (const auto& r : s.log) dropped += r.dropped ? 1 : 0;
    CHECK(dropped == c.dropped);
    CHECK(s.written.size() == c.processed);
    CHECK_FALSE(s.log.back().dropped);  // the newest frame always survives
    for (const auto& r : s.log)
      if (r.dropped) CHECK(r.model.empty());
  }

  TEST_CASE("real-time source slower than the model: nothing is dropped") {
    fake_stream s;
    s.n = 15;
    s.model_ms = 2;
    pipeline_options o;
    o.realtime = true;
    o.pace_source = true;
    o.fps = 100;  // 10 ms per frame
    const pipeline_counts c = run_pipeline(o, s.stages());
    CHECK(c.dropped == 0);
    CHECK(c.processed == 15);
    CHECK(c.wall_ms >= 140 * 0.9);  // paced: frame 14 is not read before 140 ms
  }

  TEST_CASE("the budget is the base budget minus the pipeline overhead measured on the inference thread") {
    fake_stream s;
    s.n = 20;
    auto st = s.stages();
    st.infer = [&](std::size_t&& f, frame_record& rec) {
      s.budgets.push_back(rec.budget_ms);
      sleep_ms(8);
      rec.infer_ms = 2;  // reports 2 ms of forward: the other 6+ ms are overhead
      return f;
    };
    const pipeline_counts c = run_pipeline(pipeline_options{}, st);
    CHECK(c.processed == 20);
    CHECK(s.budgets.front() == doctest::Approx(40.0));  // nothing measured yet
    CHECK(s.budgets.back() < 40.0 - 5.0);
    CHECK(s.budgets.back() >= 20.0);  // never below half the base
    CHECK(s.log.back().base_budget_ms == doctest::Approx(40.0));
    CHECK(s.log.back().overhead_ms == doctest::Approx(40.0 - s.log.back().budget_ms));
  }

  TEST_CASE("a read error ends the stream: the frames before it are still written, then it is rethrown") {
    fake_stream s;
    s.n = 100;
    auto st = s.stages();
    auto read = st.read;
    st.read = [&, read]() -> std::optional<std::size_t> {
      if (s.next == 7) throw std::runtime_error("video 'x.mp4': truncated");
      return read();
    };
    CHECK_THROWS_WITH(run_pipeline(pipeline_options{}, st), "video 'x.mp4': truncated");
    CHECK(s.written.size() == 7);
    check_log_complete(s.log, 7);
  }

  TEST_CASE("a write error stops every stage, even an endless source") {
    fake_stream s;
    s.n = std::size_t(-1);
    auto st = s.stages();
    st.write = [](std::size_t&& f, const frame_record&) {
      if (f == 3) throw std::runtime_error("disk full");
    };
    CHECK_THROWS_WITH(run_pipeline(pipeline_options{}, st), "disk full");
  }

  TEST_CASE("an inference error stops the stream; the frames already inferred are written") {
    fake_stream s;
    s.n = 50;
    auto st = s.stages();
    auto infer = st.infer;
    st.infer = [&, infer](std::size_t&& f, frame_record& rec) {
      if (f == 5) throw std::runtime_error("model failed");
      return infer(std::move(f), rec);
    };
    CHECK_THROWS_WITH(run_pipeline(pipeline_options{}, st), "model failed");
    CHECK(s.written.size() == 5);
  }
}

TEST_SUITE("video") {
  TEST_CASE("the message of a build without FFmpeg says what to install") {
    const std::string m = drt_cli::no_ffmpeg_message;
    CHECK(m.find("drt was built without FFmpeg") == 0);
    CHECK(m.find("libavformat-dev libavcodec-dev libswscale-dev libavutil-dev") != std::string::npos);
    CHECK(m.find("rebuild") != std::string::npos);
  }

  TEST_CASE("raw rgb24 frames: whole frames, the end, and a stream that ends inside a frame") {
    const std::string path = (std::filesystem::temp_directory_path() / "drt_video_raw_test.rgb").string();
    {
      std::ofstream f(path, std::ios::binary);
      const std::string bytes(4 * 2 * 3 * 2 + 5, '\x7f');  // 2 frames of 4x2 and 5 bytes more
      f << bytes;
    }
    std::FILE* in = std::fopen(path.c_str(), "rb");
    REQUIRE(in);
    drt_cli::raw_reader r(in, "test pipe", 4, 2);
    drt::rgb_image img;
    CHECK(r.read(img));
    CHECK(img.width == 4);
    CHECK(img.height == 2);
    CHECK(img.pixels.size() == 24);
    CHECK(r.read(img));
    CHECK_THROWS_WITH_AS(r.read(img), doctest::Contains("raw video 'test pipe': the stream ends inside frame 2"),
                         drt::invalid_input);
    std::fclose(in);
    std::filesystem::remove(path);
  }

#ifdef DRT_HAVE_FFMPEG
  namespace fs = std::filesystem;

  drt::rgb_image pattern(std::size_t w, std::size_t h, std::size_t k) {
    drt::rgb_image img;
    img.width = w;
    img.height = h;
    img.pixels.resize(w * h * 3);
    for (std::size_t y = 0; y < h; ++y)
      for (std::size_t x = 0; x < w; ++x) {
        std::uint8_t* p = &img.pixels[(y * w + x) * 3];
        p[0] = static_cast<std::uint8_t>((x * 4 + k * 8) & 0xff);
        p[1] = static_cast<std::uint8_t>((y * 4) & 0xff);
        p[2] = static_cast<std::uint8_t>(128);
      }
    return img;
  }

  std::string temp_path(const std::string& name) { return (fs::temp_directory_path() / name).string(); }

  void make_clip(const std::string& path, std::size_t frames, std::size_t w, std::size_t h, double fps,
                 const std::string& encoder = "") {
    drt_cli::video_writer out(path, w, h, fps, encoder);
    for (std::size_t k = 0; k < frames; ++k) out.write(pattern(w, h, k), static_cast<long long>(k));
    out.finish();
    CHECK(out.frames_written() == frames);
  }

  TEST_CASE("round trip: frames written are read back with their count, size and frame rate") {
    const std::string path = temp_path("drt_video_roundtrip.mp4");
    make_clip(path, 12, 64, 48, 25);
    drt_cli::video_reader in(path, drt::default_max_pixels);
    CHECK(in.info().width == 64);
    CHECK(in.info().height == 48);
    CHECK(in.info().fps == doctest::Approx(25.0));
    CHECK(in.info().frames == 12);
    drt::rgb_image img;
    std::size_t n = 0;
    double diff = 0;
    while (in.read(img)) {
      REQUIRE(img.width == 64);
      REQUIRE(img.height == 48);
      const drt::rgb_image want = pattern(64, 48, n);
      for (std::size_t i = 0; i < img.pixels.size(); ++i) diff += std::abs(int(img.pixels[i]) - int(want.pixels[i]));
      ++n;
    }
    CHECK(n == 12);
    CHECK(diff / double(12 * 64 * 48 * 3) < 6.0);  // lossy, but the picture survives
    CHECK_FALSE(in.read(img));  // stays at the end
    fs::remove(path);
  }

  TEST_CASE("round trip through another container and encoder, resized while decoding") {
    const std::string path = temp_path("drt_video_roundtrip.avi");
    make_clip(path, 7, 80, 60, 10, "mpeg4");
    drt_cli::video_reader in(path, drt::default_max_pixels, 40, 30);
    CHECK(in.info().codec == "mpeg4");
    CHECK(in.info().fps == doctest::Approx(10.0));
    drt::rgb_image img;
    std::size_t n = 0;
    while (in.read(img)) {
      CHECK(img.width == 40);
      CHECK(img.height == 30);
      ++n;
    }
    CHECK(n == 7);
    fs::remove(path);
  }

  TEST_CASE("errors name the file: missing, not a video, truncated, unknown container") {
    CHECK_THROWS_WITH_AS(drt_cli::video_reader("/nonexistent/v.mp4", drt::default_max_pixels),
                         doctest::Contains("video '/nonexistent/v.mp4': cannot open file"), drt::io_error);
    const std::string junk = temp_path("drt_video_junk.mp4");
    {
      std::ofstream f(junk, std::ios::binary);
      f << std::string(5000, 'j');
    }
    CHECK_THROWS_WITH_AS(drt_cli::video_reader(junk, drt::default_max_pixels),
                         doctest::Contains(("video '" + junk + "': cannot open it as a video").c_str()), drt::invalid_input);
    CHECK_THROWS_WITH_AS(drt_cli::video_writer(temp_path("drt_video.notacontainer"), 64, 48, 25),
                         doctest::Contains("no container format"), drt::invalid_input);
    fs::remove(junk);

    const std::string full = temp_path("drt_video_full.mp4"), cut = temp_path("drt_video_cut.mp4");
    make_clip(full, 30, 64, 48, 25);
    {
      std::ifstream f(full, std::ios::binary);
      const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      std::ofstream o(cut, std::ios::binary);
      o << bytes.substr(0, bytes.size() * 6 / 10);
    }
    drt_cli::video_reader in(cut, drt::default_max_pixels);  // the index comes first (faststart)
    drt::rgb_image img;
    std::size_t n = 0;
    bool threw = false;
    try {
      while (in.read(img)) ++n;
    } catch (const drt::invalid_input& e) {
      threw = true;
      CHECK(std::string(e.what()).find("video '" + cut + "'") == 0);
      CHECK(std::string(e.what()).find("truncated") != std::string::npos);
    }
    CHECK(threw);
    CHECK(n > 0);
    CHECK(n < 30);
    fs::remove(full);
    fs::remove(cut);
  }

  TEST_CASE("a writer dropped without finish (an error elsewhere) still leaves a valid, shorter video") {
    const std::string path = temp_path("drt_video_unfinished.mkv");
    {
      drt_cli::video_writer out(path, 64, 48, 25);
      for (long long k = 0; k < 5; ++k) out.write(pattern(64, 48, std::size_t(k)), k * 2);  // gaps: dropped frames
    }
    drt_cli::video_reader in(path, drt::default_max_pixels);
    drt::rgb_image img;
    std::size_t n = 0;
    while (in.read(img)) ++n;
    CHECK(n == 5);
    fs::remove(path);
  }

#ifdef DRT_CLI_PATH
  std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }

  TEST_CASE("drt segment --video on a truncated file: an error naming it, and a valid shorter output") {
    const std::string full = temp_path("drt_cli_full.mp4"), cut = temp_path("drt_cli_cut.mp4");
    const std::string out = temp_path("drt_cli_partial.mp4"), err = temp_path("drt_cli_partial.err");
    make_clip(full, 16, 128, 96, 15);
    const std::string bytes = slurp(full);
    {
      std::ofstream o(cut, std::ios::binary);
      o << bytes.substr(0, bytes.size() * 6 / 10);
    }
    fs::remove(out);
    const std::string lut = std::string(DRT_SOURCE_DIR) + "/data/models/segformer-b0-camvid/lut.json";
    const std::string command = std::string("OMP_NUM_THREADS=2 '") + DRT_CLI_PATH + "' segment --video '" + cut +
                                "' --out '" + out + "' --lut '" + lut + "' --policy deadline > /dev/null 2> '" +
                                err + "'";
    const int rc = std::system(command.c_str());
    CHECK(rc != 0);
    const std::string msg = slurp(err);
    INFO(msg);
    CHECK(msg.find("drt: error: video '" + cut + "': truncated or corrupt") != std::string::npos);
    CHECK(msg.find("frames segmented before the error are in '" + out + "'") != std::string::npos);
    drt_cli::video_reader in(out, drt::default_max_pixels);
    CHECK(in.info().width == 128);
    CHECK(in.info().height == 96);
    drt::rgb_image img;
    std::size_t n = 0;
    while (in.read(img)) ++n;
    CHECK(n > 0);
    CHECK(n < 16);
    for (const auto& p : {full, cut, out, err}) fs::remove(p);
  }
#endif  // DRT_CLI_PATH
#endif  // DRT_HAVE_FFMPEG
}
