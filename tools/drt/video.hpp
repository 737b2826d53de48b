#pragma once
/// @file video.hpp
/// Video in and out for `drt segment --video`: a decoder of any container and codec FFmpeg reads,
/// an encoder (H.264 through libx264 when present, else MPEG-4 part 2, else the container's default
/// codec) and a reader of raw rgb24 frames from a pipe. Frames are drt::rgb_image.
///
/// The FFmpeg parts (video_reader, video_writer) exist only when the program is built with FFmpeg's
/// libraries (DRT_HAVE_FFMPEG, found by pkg-config); the library drt never depends on FFmpeg.
/// raw_reader needs nothing. Every error is a drt::invalid_input or drt::io_error naming the file.

#include <drt/io/image.hpp>

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>

namespace drt_cli {

/// What `drt` says when it was built without FFmpeg and a command needs it.
inline const char* const no_ffmpeg_message =
    "drt was built without FFmpeg, so it cannot read or write video: install libavformat-dev libavcodec-dev "
    "libswscale-dev libavutil-dev (Debian/Ubuntu; pkg-config must find them) and rebuild (cmake picks them up)";

/// Raw rgb24 frames of a fixed size, back to back (e.g. `ffmpeg ... -f rawvideo -pix_fmt rgb24 -`).
class raw_reader {
public:
  /// Reads from `in` (not owned); `name` names the stream in errors ("stdin").
  raw_reader(std::FILE* in, std::string name, std::size_t width, std::size_t height);
  /// The next frame; false at the end of the stream. Throws when the stream ends inside a frame.
  bool read(drt::rgb_image& out);

private:
  std::FILE* in_;
  std::string name_;
  std::size_t width_, height_;
  std::size_t frames_ = 0;
};

#ifdef DRT_HAVE_FFMPEG

/// "libavformat 59.27.100, libavcodec 59.37.100, ...": the FFmpeg libraries linked in.
std::string ffmpeg_versions();

struct video_info {
  std::size_t width = 0, height = 0;  ///< coded size
  double fps = 0;                     ///< frame rate (guessed by FFmpeg; 0 when unknown)
  long long frames = 0;               ///< frame count announced by the container (0: unknown)
  std::string codec;                  ///< decoder name
  std::string container;              ///< demuxer name
};

/// Decodes the best video stream of a file into RGB frames, optionally resized (swscale).
class video_reader {
public:
  /// Opens `path` (throws naming it when it is missing, not a video, or larger than `max_pixels`);
  /// out_width/out_height 0 keep the coded size.
  video_reader(const std::string& path, std::size_t max_pixels, std::size_t out_width = 0,
               std::size_t out_height = 0);
  ~video_reader();
  video_reader(const video_reader&) = delete;
  video_reader& operator=(const video_reader&) = delete;

  const video_info& info() const noexcept;
  std::size_t out_width() const noexcept;
  std::size_t out_height() const noexcept;
  /// The next frame; false at the end of the stream. Throws (naming the file and the frame) on a read
  /// or decode error, and at the end when fewer frames came than the container announced (truncated).
  bool read(drt::rgb_image& out);
  std::size_t frames_read() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> p_;
};

/// Encodes RGB frames into a video file whose container follows the extension (.mp4, .mkv, .avi ...).
/// A writer destroyed without `finish` (an error elsewhere) still flushes and closes the file, so a
/// run that stops early leaves a valid, shorter video.
class video_writer {
public:
  /// Throws naming `path` when the container is unknown, no encoder fits it, or the file cannot be
  /// written. `encoder` forces an encoder by FFmpeg name (empty: libx264, else mpeg4, else the
  /// container's default).
  video_writer(const std::string& path, std::size_t width, std::size_t height, double fps,
               const std::string& encoder = "");
  ~video_writer();
  video_writer(const video_writer&) = delete;
  video_writer& operator=(const video_writer&) = delete;

  /// Frame `pts` (in frames: 0, 1, 2 ...; gaps allowed, increasing) of the writer's size.
  void write(const drt::rgb_image& frame, long long pts);
  /// Flushes the encoder and writes the container's trailer.
  void finish();
  const std::string& encoder_name() const noexcept;
  std::size_t frames_written() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> p_;
};

#endif  // DRT_HAVE_FFMPEG

}  // namespace drt_cli
