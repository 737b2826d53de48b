#pragma once
/// @file frame_pipeline.hpp
/// The stream of `drt segment --video`: three stages on three threads joined by two bounded queues,
///
///   reader thread            calling thread              writer thread
///   read (decode, resize,  -> infer (policy + forward) -> write (argmax, overlay, encode) + log
///   normalize) frame k+1      frame k                      frame k-1
///
/// so that decoding and encoding overlap the inference. The queues are bounded: an offline source
/// (a file) blocks when the inference falls behind (back-pressure, no frame lost); a real-time source
/// (`realtime`) never waits: when the queue ahead of the inference is full, its oldest frame is
/// dropped and counted, so memory stays flat and the inference always gets the newest frame. With
/// `pace_source`, frame i is not read before t0 + i / fps (a file played as a live camera).
///
/// Each frame's budget is its base budget (the frame interval, or --budget-ms) minus the pipeline's
/// overhead on the inference thread (the time of a frame's cycle spent outside the forward pass: the
/// policy, the hand-offs; not the wait for room in the output queue), estimated from recent frames.
///
/// Every source frame gets one record, dropped ones too, delivered to `log` in frame order on the
/// writer thread. Nothing here needs FFmpeg: the tests drive it with a fake source, model and sink.
///
/// Errors: an exception of `read` ends the stream but the frames read before it are still inferred
/// and written (a truncated video gives a shorter output); one of `infer` or `write` stops every
/// stage. `run` rethrows the first error after joining the threads.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace drt_cli {

/// A FIFO of at most `capacity` items shared by threads. `close` wakes every waiter: pushes then
/// fail and pops drain what is left, then return nothing.
template <class T>
class bounded_queue {
public:
  explicit bounded_queue(std::size_t capacity) : capacity_(std::max<std::size_t>(1, capacity)) {}

  /// Waits for room; false when the queue was closed (the item is not queued).
  bool push(T v) {
    std::unique_lock<std::mutex> lock(m_);
    not_full_.wait(lock, [&] { return closed_ || q_.size() < capacity_; });
    if (closed_) return false;
    q_.push_back(std::move(v));
    high_water_ = std::max(high_water_, q_.size());
    not_empty_.notify_one();
    return true;
  }
  /// Never waits: when the queue is full its oldest item makes room; `absorb(next, std::move(oldest))`
  /// then hands it to the item that becomes the oldest (the new one when the capacity is 1), so that
  /// what it carried is not lost. False when the queue was closed (nothing is queued).
  template <class Absorb>
  bool push_evicting(T v, Absorb&& absorb) {
    std::lock_guard<std::mutex> lock(m_);
    if (closed_) return false;
    if (q_.size() >= capacity_) {
      T oldest = std::move(q_.front());
      q_.pop_front();
      absorb(q_.empty() ? v : q_.front(), std::move(oldest));
    }
    q_.push_back(std::move(v));
    high_water_ = std::max(high_water_, q_.size());
    not_empty_.notify_one();
    return true;
  }
  /// Waits for an item; nothing once the queue is closed and empty.
  std::optional<T> pop() {
    std::unique_lock<std::mutex> lock(m_);
    not_empty_.wait(lock, [&] { return closed_ || !q_.empty(); });
    if (q_.empty()) return std::nullopt;
    std::optional<T> v(std::move(q_.front()));
    q_.pop_front();
    not_full_.notify_one();
    return v;
  }
  void close() {
    std::lock_guard<std::mutex> lock(m_);
    closed_ = true;
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  /// Closes and forgets the queued items.
  void abort() {
    std::lock_guard<std::mutex> lock(m_);
    closed_ = true;
    q_.clear();
    not_full_.notify_all();
    not_empty_.notify_all();
  }
  std::size_t capacity() const noexcept { return capacity_; }
  std::size_t high_water() const {
    std::lock_guard<std::mutex> lock(m_);
    return high_water_;
  }

private:
  std::size_t capacity_;
  mutable std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<T> q_;
  std::size_t high_water_ = 0;
  bool closed_ = false;
};

/// What the log says of one source frame (times in ms on the pipeline's clock, 0 = its start).
struct frame_record {
  std::size_t index = 0;     ///< source frame number, 0-based (across loops of a looped file)
  double pts_s = 0;          ///< presentation time: index / fps
  bool dropped = false;      ///< never inferred: the real-time source outran the inference
  double arrival_ms = 0;     ///< when the source delivered it (a paced source: when it was due)
  double base_budget_ms = 0; ///< the frame's budget before the overhead (frame interval or --budget-ms)
  double overhead_ms = 0;    ///< the pipeline overhead taken off the base budget
  double budget_ms = 0;      ///< what the policy was given: base - overhead
  double infer_ms = 0;       ///< the forward pass
  double e2e_ms = 0;         ///< arrival to written
  std::string model, path;   ///< the table entry that ran
  double miou = 0;           ///< its expected mIoU
  double expected_ms = 0;    ///< the policy's latency estimate
  bool missed = false;       ///< infer_ms > budget_ms
  bool fits = true;          ///< false: nothing in the table was expected to fit
};

struct pipeline_options {
  std::size_t queue = 2;     ///< capacity of each queue (frames)
  bool realtime = false;     ///< a live source: drop the oldest queued frame instead of waiting
  bool pace_source = false;  ///< read frame i no earlier than t0 + i / fps
  double fps = 30;           ///< the source's frame rate (pts, pacing)
  std::size_t overhead_window = 30;  ///< frames of overhead samples; the estimate is their 90th percentile
};

struct pipeline_counts {
  std::size_t read = 0;       ///< frames the source delivered
  std::size_t processed = 0;  ///< inferred and written
  std::size_t dropped = 0;    ///< dropped before inference
  double wall_ms = 0;         ///< first read to last write
  std::size_t max_queued_in = 0, max_queued_out = 0;  ///< high-water marks of the two queues
  double fps() const { return wall_ms > 0 ? 1000.0 * double(processed) / wall_ms : 0.0; }
};

/// The stages of a pipeline over source frames of type Frame whose inference gives a Result.
template <class Frame, class Result>
struct pipeline_stages {
  /// The next frame, decoded and ready for the model; nothing at the end of the source (reader thread).
  std::function<std::optional<Frame>()> read;
  /// The frame's base budget (before the overhead is taken off).
  std::function<double(const frame_record&)> base_budget;
  /// Inference of a frame under `rec.budget_ms` (calling thread); fills the record's model fields.
  std::function<Result(Frame&&, frame_record& rec)> infer;
  /// Post-processing and output of an inferred frame (writer thread, in frame order).
  std::function<void(Result&&, const frame_record&)> write;
  /// Every source frame's record, dropped ones too, in frame order (writer thread; may be empty).
  std::function<void(const frame_record&)> log;
  /// Runs first on the reader and the writer thread (e.g. one OpenMP thread there; may be empty).
  std::function<void()> thread_start;
};

namespace detail {
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t i = std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size())));
  return v[i];
}
}  // namespace detail

/// Runs the stream to its end (or its first error, rethrown here after every thread has stopped).
template <class Frame, class Result>
pipeline_counts run_pipeline(const pipeline_options& opt, const pipeline_stages<Frame, Result>& st) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  auto now_ms = [&] { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); };

  struct in_item {
    frame_record rec;
    Frame frame;
    std::vector<frame_record> dropped_before;  ///< frames dropped since the previous one, in order
  };
  struct out_item {
    frame_record rec;
    Result result;
    std::vector<frame_record> dropped_before;
  };
  bounded_queue<in_item> in_q(opt.queue);
  bounded_queue<out_item> out_q(opt.queue);
  pipeline_counts counts;
  std::mutex err_m;
  std::exception_ptr first_error;
  auto fail = [&](std::exception_ptr e) {
    std::lock_guard<std::mutex> lock(err_m);
    if (!first_error) first_error = e;
  };
  double last_write_ms = 0;

  std::thread reader([&] {
    try {
      if (st.thread_start) st.thread_start();
      for (std::size_t i = 0;; ++i) {
        double arrival = now_ms();
        if (opt.pace_source) {
          const double due = 1000.0 * double(i) / opt.fps;
          if (due > arrival) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(due - arrival));
          arrival = std::max(arrival, due);
        }
        std::optional<Frame> f = st.read();
        if (!f) break;
        ++counts.read;
        in_item item{frame_record{}, std::move(*f), {}};
        item.rec.index = i;
        item.rec.pts_s = double(i) / opt.fps;
        item.rec.arrival_ms = arrival;
        const bool queued = opt.realtime ? in_q.push_evicting(std::move(item),
                                                              [&](in_item& next, in_item&& oldest) {
                                                                ++counts.dropped;  // reader thread only
                                                                oldest.rec.dropped = true;
                                                                auto& d = oldest.dropped_before;
                                                                d.push_back(std::move(oldest.rec));
                                                                d.insert(d.end(), next.dropped_before.begin(),
                                                                         next.dropped_before.end());
                                                                next.dropped_before = std::move(d);
                                                              })
                                         : in_q.push(std::move(item));
        if (!queued) break;  // closed: the inference stopped
      }
    } catch (...) {
      fail(std::current_exception());
    }
    in_q.close();  // the frames read so far are still inferred and written
  });

  std::thread writer([&] {
    try {
      if (st.thread_start) st.thread_start();
      while (auto item = out_q.pop()) {
        if (st.log)
          for (const auto& d : item->dropped_before) st.log(d);
        st.write(std::move(item->result), item->rec);
        last_write_ms = now_ms();
        item->rec.e2e_ms = last_write_ms - item->rec.arrival_ms;
        ++counts.processed;  // writer thread only
        if (st.log) st.log(item->rec);
      }
    } catch (...) {
      fail(std::current_exception());
      out_q.abort();  // the inference stops at its next push
      in_q.abort();   // and the reader at its next push
    }
  });

  // Inference on the calling thread (the OpenMP master thread of the forward passes).
  try {
    std::deque<double> overheads;
    double overhead = 0;
    while (auto item = in_q.pop()) {
      const double start = now_ms();
      frame_record& rec = item->rec;
      rec.base_budget_ms = st.base_budget(rec);
      rec.overhead_ms = overhead;
      rec.budget_ms = std::max(rec.base_budget_ms - overhead, 0.5 * rec.base_budget_ms);
      Result result = st.infer(std::move(item->frame), rec);
      out_item out{std::move(rec), std::move(result), std::move(item->dropped_before)};
      const double infer_ms = out.rec.infer_ms;
      const double before_push = now_ms();
      if (!out_q.push(std::move(out))) break;  // the writer failed
      // Waiting for room in the output queue is not counted: a writer slower than the frame rate is
      // not something a cheaper path fixes (a real-time source then drops frames, counted).
      const double push_wait = now_ms() - before_push;
      overheads.push_back(std::max(0.0, now_ms() - start - infer_ms - push_wait));
      while (overheads.size() > std::max<std::size_t>(1, opt.overhead_window)) overheads.pop_front();
      overhead = detail::percentile(std::vector<double>(overheads.begin(), overheads.end()), 0.9);
    }
  } catch (...) {
    fail(std::current_exception());
    in_q.abort();
  }
  out_q.close();
  reader.join();
  writer.join();
  counts.wall_ms = last_write_ms;
  counts.max_queued_in = in_q.high_water();
  counts.max_queued_out = out_q.high_water();
  if (first_error) std::rethrow_exception(first_error);
  return counts;
}

}  // namespace drt_cli
