#pragma once
/// @file progress.hpp
/// The one progress printer of the program: a status line on stderr, overwritten in place on a
/// terminal (at most every half second), or a new line per step and at most every 15 s when stderr
/// is a file or a pipe (logs stay short). The library reports progress through callbacks and prints
/// nothing; every long command of `drt` shows it through this.

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

namespace drt_cli {

class progress_line {
public:
  explicit progress_line(std::string prefix) : prefix_(std::move(prefix)), tty_(isatty(2) != 0) {}
  ~progress_line() { finish(); }
  progress_line(const progress_line&) = delete;
  progress_line& operator=(const progress_line&) = delete;

  /// Shows `text`; `step` names the current step (a new step always prints), `last` forces the line
  /// (the end of a step).
  void update(const std::string& text, const std::string& step = {}, bool last = false) {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_).count();
    const bool new_step = step != step_;
    if (!(new_step || last || since >= (tty_ ? 0.5 : 15.0))) return;
    last_ = now;
    step_ = step;
    std::fprintf(stderr, "%s%s: %s%s", tty_ ? "\r\033[K" : "", prefix_.c_str(), text.c_str(), tty_ ? "" : "\n");
    std::fflush(stderr);
    open_ = tty_;
  }
  /// A message on a line of its own (the status line, if any, is cleared first).
  void note(const std::string& text) {
    std::fprintf(stderr, "%s%s: %s\n", tty_ ? "\r\033[K" : "", prefix_.c_str(), text.c_str());
    open_ = false;
  }
  /// Ends an open status line.
  void finish() {
    if (open_) std::fprintf(stderr, "\n");
    open_ = false;
  }

private:
  std::string prefix_;
  bool tty_;
  bool open_ = false;
  std::string step_;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace drt_cli
