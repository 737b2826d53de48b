// Video decoding and encoding through FFmpeg's libraries (video.hpp); raw rgb24 frames from a pipe.

#include "video.hpp"

#include <drt/core/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#ifdef DRT_HAVE_FFMPEG
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

namespace drt_cli {

// ------------------------------------------------------------------------- raw rgb24

raw_reader::raw_reader(std::FILE* in, std::string name, std::size_t width, std::size_t height)
    : in_(in), name_(std::move(name)), width_(width), height_(height) {}

bool raw_reader::read(drt::rgb_image& out) {
  const std::size_t bytes = width_ * height_ * 3;
  out.width = width_;
  out.height = height_;
  out.pixels.resize(bytes);
  std::size_t got = 0;
  while (got < bytes) {
    const std::size_t n = std::fread(out.pixels.data() + got, 1, bytes - got, in_);
    if (n == 0) break;
    got += n;
  }
  if (got == bytes) {
    ++frames_;
    return true;
  }
  if (std::ferror(in_))
    throw drt::io_error("raw video '" + name_ + "': read error after frame " + std::to_string(frames_) + ": " +
                        std::strerror(errno));
  if (got == 0) return false;
  throw drt::invalid_input("raw video '" + name_ + "': the stream ends inside frame " + std::to_string(frames_) +
                           " (" + std::to_string(got) + " of " + std::to_string(bytes) + " bytes of a " +
                           std::to_string(width_) + "x" + std::to_string(height_) +
                           " rgb24 frame): is --raw WxH the producer's size?");
}

#ifdef DRT_HAVE_FFMPEG

namespace {

std::string av_error(int code) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(code, buf, sizeof buf);
  return buf;
}

std::string version_text(unsigned v) {
  return std::to_string(AV_VERSION_MAJOR(v)) + "." + std::to_string(AV_VERSION_MINOR(v)) + "." +
         std::to_string(AV_VERSION_MICRO(v));
}

/// FFmpeg's own messages: fatal ones only (ours name the file and say what failed).
void quiet_ffmpeg() {
  static const bool once = [] {
    av_log_set_level(AV_LOG_FATAL);
    return true;
  }();
  (void)once;
}

struct format_closer {
  void operator()(AVFormatContext* f) const { avformat_close_input(&f); }
};
struct codec_closer {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct frame_closer {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct packet_closer {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct sws_closer {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

}  // namespace

std::string ffmpeg_versions() {
  return "libavformat " + version_text(avformat_version()) + ", libavcodec " + version_text(avcodec_version()) +
         ", libswscale " + version_text(swscale_version()) + ", libavutil " + version_text(avutil_version());
}

// ------------------------------------------------------------------------- decoder

struct video_reader::impl {
  std::string path, where;
  std::unique_ptr<AVFormatContext, format_closer> fmt;
  std::unique_ptr<AVCodecContext, codec_closer> dec;
  std::unique_ptr<AVFrame, frame_closer> frame;
  std::unique_ptr<AVPacket, packet_closer> pkt;
  std::unique_ptr<SwsContext, sws_closer> sws;
  int stream = -1;
  video_info info;
  std::size_t out_w = 0, out_h = 0;
  std::size_t frames = 0;
  bool eof_sent = false, done = false;

  [[noreturn]] void fail(const std::string& what, int code) const {
    throw drt::invalid_input(where + ": " + what + ": " + av_error(code));
  }

  void convert(drt::rgb_image& out) {
    const AVFrame* f = frame.get();
    if (f->width != int(info.width) || f->height != int(info.height))
      throw drt::invalid_input(where + ": frame " + std::to_string(frames) + " is " + std::to_string(f->width) + "x" +
                               std::to_string(f->height) + " but the stream is " + std::to_string(info.width) + "x" +
                               std::to_string(info.height) + " (WxH): size changes are not supported");
    sws.reset(sws_getCachedContext(sws.release(), f->width, f->height, AVPixelFormat(f->format), int(out_w),
                                   int(out_h), AV_PIX_FMT_RGB24, SWS_BILINEAR, nullptr, nullptr, nullptr));
    if (!sws) throw drt::invalid_input(where + ": cannot convert its pixel format to RGB");
    out.width = out_w;
    out.height = out_h;
    out.pixels.resize(out_w * out_h * 3);
    uint8_t* dst[4] = {out.pixels.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {int(out_w * 3), 0, 0, 0};
    sws_scale(sws.get(), f->data, f->linesize, 0, f->height, dst, dst_stride);
    ++frames;
  }
};

video_reader::video_reader(const std::string& path, std::size_t max_pixels, std::size_t out_width,
                           std::size_t out_height)
    : p_(std::make_unique<impl>()) {
  quiet_ffmpeg();
  auto& p = *p_;
  p.path = path;
  p.where = "video '" + path + "'";
  AVFormatContext* fmt = nullptr;
  int rc = avformat_open_input(&fmt, path.c_str(), nullptr, nullptr);
  if (rc < 0) {
    if (rc == AVERROR(ENOENT)) throw drt::io_error(p.where + ": cannot open file: " + av_error(rc));
    p.fail("cannot open it as a video", rc);
  }
  p.fmt.reset(fmt);
  if ((rc = avformat_find_stream_info(fmt, nullptr)) < 0) p.fail("cannot read its stream information", rc);
  const AVCodec* codec = nullptr;
  p.stream = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (p.stream < 0)
    throw drt::invalid_input(p.where + ": " +
                             (p.stream == AVERROR_DECODER_NOT_FOUND ? "no decoder for its video stream"
                                                                    : "no video stream in it"));
  AVStream* st = fmt->streams[p.stream];
  p.dec.reset(avcodec_alloc_context3(codec));
  if (!p.dec) throw std::bad_alloc();
  if ((rc = avcodec_parameters_to_context(p.dec.get(), st->codecpar)) < 0) p.fail("bad codec parameters", rc);
  p.dec->thread_count = 1;  // the cores belong to the inference; one frame at a time is fast enough
  if ((rc = avcodec_open2(p.dec.get(), codec, nullptr)) < 0) p.fail("cannot open its decoder", rc);
  if (p.dec->width <= 0 || p.dec->height <= 0) throw drt::invalid_input(p.where + ": its video has no frame size");
  p.info.width = std::size_t(p.dec->width);
  p.info.height = std::size_t(p.dec->height);
  drt::check_pixel_limit(p.where, p.info.height, p.info.width, max_pixels);
  const AVRational r = av_guess_frame_rate(fmt, st, nullptr);
  p.info.fps = r.num > 0 && r.den > 0 ? av_q2d(r) : 0.0;
  p.info.frames = st->nb_frames;
  p.info.codec = codec->name;
  p.info.container = fmt->iformat->name;
  p.out_w = out_width ? out_width : p.info.width;
  p.out_h = out_height ? out_height : p.info.height;
  p.frame.reset(av_frame_alloc());
  p.pkt.reset(av_packet_alloc());
  if (!p.frame || !p.pkt) throw std::bad_alloc();
}

video_reader::~video_reader() = default;
const video_info& video_reader::info() const noexcept { return p_->info; }
std::size_t video_reader::out_width() const noexcept { return p_->out_w; }
std::size_t video_reader::out_height() const noexcept { return p_->out_h; }
std::size_t video_reader::frames_read() const noexcept { return p_->frames; }

bool video_reader::read(drt::rgb_image& out) {
  auto& p = *p_;
  if (p.done) return false;
  for (;;) {
    int rc = avcodec_receive_frame(p.dec.get(), p.frame.get());
    if (rc == 0) {
      p.convert(out);
      av_frame_unref(p.frame.get());
      return true;
    }
    if (rc == AVERROR_EOF) {
      p.done = true;
      if (p.info.frames > 0 && static_cast<long long>(p.frames) < p.info.frames)
        throw drt::invalid_input(p.where + ": truncated or corrupt: decoded " + std::to_string(p.frames) +
                                 " of the " + std::to_string(p.info.frames) + " frames its container announces");
      return false;
    }
    if (rc != AVERROR(EAGAIN)) p.fail("cannot decode frame " + std::to_string(p.frames), rc);
    if (p.eof_sent) p.fail("decoder stalled after frame " + std::to_string(p.frames), rc);
    // The decoder wants input: the next packet of our stream.
    for (;;) {
      rc = av_read_frame(p.fmt.get(), p.pkt.get());
      if (rc == AVERROR_EOF) {
        avcodec_send_packet(p.dec.get(), nullptr);  // drain
        p.eof_sent = true;
        break;
      }
      if (rc < 0) {
        p.done = true;
        p.fail("cannot read past frame " + std::to_string(p.frames) + " (truncated or corrupt)", rc);
      }
      if (p.pkt->stream_index != p.stream) {
        av_packet_unref(p.pkt.get());
        continue;
      }
      rc = avcodec_send_packet(p.dec.get(), p.pkt.get());
      av_packet_unref(p.pkt.get());
      if (rc < 0 && rc != AVERROR(EAGAIN)) {
        p.done = true;
        p.fail("truncated or corrupt data after frame " + std::to_string(p.frames), rc);
      }
      break;
    }
  }
}

// ------------------------------------------------------------------------- encoder

struct video_writer::impl {
  std::string path, where, encoder;
  AVFormatContext* oc = nullptr;  // avformat_free_context
  std::unique_ptr<AVCodecContext, codec_closer> enc;
  std::unique_ptr<AVFrame, frame_closer> frame;
  std::unique_ptr<AVPacket, packet_closer> pkt;
  std::unique_ptr<SwsContext, sws_closer> sws;
  AVStream* st = nullptr;
  std::size_t in_w = 0, in_h = 0, frames = 0;
  bool header = false, finished = false, io_open = false;

  [[noreturn]] void fail(const std::string& what, int code) const {
    throw drt::io_error(where + ": " + what + ": " + av_error(code));
  }
  /// Sends `f` (nullptr: flush) and writes every packet the encoder gives back.
  void encode(const AVFrame* f) {
    int rc = avcodec_send_frame(enc.get(), f);
    if (rc < 0 && !(f == nullptr && rc == AVERROR_EOF)) fail("cannot encode frame " + std::to_string(frames), rc);
    for (;;) {
      rc = avcodec_receive_packet(enc.get(), pkt.get());
      if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
      if (rc < 0) fail("cannot encode frame " + std::to_string(frames), rc);
      av_packet_rescale_ts(pkt.get(), enc->time_base, st->time_base);
      pkt->stream_index = st->index;
      rc = av_interleaved_write_frame(oc, pkt.get());  // takes the packet's reference
      if (rc < 0) fail("cannot write (disk full?)", rc);
    }
  }
  void close() noexcept {
    if (io_open) avio_closep(&oc->pb);
    io_open = false;
    if (oc) avformat_free_context(oc);
    oc = nullptr;
  }
};

video_writer::video_writer(const std::string& path, std::size_t width, std::size_t height, double fps,
                           const std::string& encoder)
    : p_(std::make_unique<impl>()) {
  quiet_ffmpeg();
  auto& p = *p_;
  p.path = path;
  p.where = "video '" + path + "'";
  p.in_w = width;
  p.in_h = height;
  if (width < 2 || height < 2) throw drt::invalid_input(p.where + ": frames of " + std::to_string(width) + "x" +
                                                        std::to_string(height) + " are too small to encode");
  if (!(fps > 0)) throw drt::invalid_input(p.where + ": frame rate must be positive");
  int rc = avformat_alloc_output_context2(&p.oc, nullptr, nullptr, path.c_str());
  if (rc < 0 || !p.oc)
    throw drt::invalid_input(p.where + ": no container format for its extension (use .mp4, .mkv, .avi, .mov)");
  try {
    // The encoder: asked for, else libx264, else mpeg4, else the container's default; each only if
    // the container can hold it and it opens.
    std::vector<const AVCodec*> tries;
    if (!encoder.empty()) {
      const AVCodec* c = avcodec_find_encoder_by_name(encoder.c_str());
      if (!c || c->type != AVMEDIA_TYPE_VIDEO)
        throw drt::invalid_input(p.where + ": no video encoder named '" + encoder + "' in this FFmpeg");
      tries.push_back(c);
    } else {
      for (const char* name : {"libx264", "mpeg4"})
        if (const AVCodec* c = avcodec_find_encoder_by_name(name)) tries.push_back(c);
      if (p.oc->oformat->video_codec != AV_CODEC_ID_NONE)
        if (const AVCodec* c = avcodec_find_encoder(p.oc->oformat->video_codec)) tries.push_back(c);
    }
    const AVRational rate = av_d2q(fps, 100000);
    // Even sizes: yuv420p needs them; an odd last row or column is dropped.
    const int w = int(width) & ~1, h = int(height) & ~1;
    std::string why = "no encoder available";
    for (const AVCodec* c : tries) {
      if (avformat_query_codec(p.oc->oformat, c->id, FF_COMPLIANCE_NORMAL) != 1) {
        why = std::string("container '") + p.oc->oformat->name + "' cannot hold " + c->name;
        continue;
      }
      std::unique_ptr<AVCodecContext, codec_closer> ctx(avcodec_alloc_context3(c));
      if (!ctx) throw std::bad_alloc();
      ctx->width = w;
      ctx->height = h;
      ctx->time_base = av_inv_q(rate);
      ctx->framerate = rate;
      ctx->pix_fmt = AV_PIX_FMT_YUV420P;
      ctx->gop_size = std::max(1, int(fps + 0.5));
      ctx->thread_count = 1;  // the cores belong to the inference
      if (p.oc->oformat->flags & AVFMT_GLOBALHEADER) ctx->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
      AVDictionary* o = nullptr;
      if (std::string(c->name) == "libx264") {
        av_dict_set(&o, "preset", "ultrafast", 0);  // the cheapest: its CPU is taken from the inference
        av_dict_set(&o, "tune", "zerolatency", 0);  // no look-ahead: a frame in, a packet out
        av_dict_set(&o, "crf", "23", 0);
      } else {
        ctx->bit_rate = std::max<int64_t>(400000, int64_t(double(w) * h * fps * 0.15));
        ctx->max_b_frames = 0;
      }
      rc = avcodec_open2(ctx.get(), c, &o);
      av_dict_free(&o);
      if (rc < 0) {
        why = std::string(c->name) + ": " + av_error(rc);
        continue;
      }
      p.enc = std::move(ctx);
      p.encoder = c->name;
      break;
    }
    if (!p.enc) throw drt::invalid_input(p.where + ": cannot open a video encoder (" + why + ")");
    p.st = avformat_new_stream(p.oc, nullptr);
    if (!p.st) throw std::bad_alloc();
    p.st->time_base = p.enc->time_base;
    p.st->avg_frame_rate = rate;
    if ((rc = avcodec_parameters_from_context(p.st->codecpar, p.enc.get())) < 0) p.fail("codec parameters", rc);
    if (!(p.oc->oformat->flags & AVFMT_NOFILE)) {
      if ((rc = avio_open(&p.oc->pb, path.c_str(), AVIO_FLAG_WRITE)) < 0) p.fail("cannot open it for writing", rc);
      p.io_open = true;
    }
    AVDictionary* mux = nullptr;  // MP4 / MOV: the index first, so a cut file still plays up to the cut
    const std::string muxer = p.oc->oformat->name;
    if (muxer == "mp4" || muxer == "mov") av_dict_set(&mux, "movflags", "+faststart", 0);
    rc = avformat_write_header(p.oc, &mux);
    av_dict_free(&mux);
    if (rc < 0) p.fail("cannot write its header", rc);
    p.header = true;
    p.frame.reset(av_frame_alloc());
    p.pkt.reset(av_packet_alloc());
    if (!p.frame || !p.pkt) throw std::bad_alloc();
    p.frame->format = AV_PIX_FMT_YUV420P;
    p.frame->width = w;
    p.frame->height = h;
    if ((rc = av_frame_get_buffer(p.frame.get(), 0)) < 0) p.fail("cannot allocate a frame", rc);
    p.sws.reset(sws_getContext(int(width), int(height), AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_YUV420P, SWS_BILINEAR,
                               nullptr, nullptr, nullptr));
    if (!p.sws) throw drt::invalid_input(p.where + ": cannot convert RGB to YUV 4:2:0");
  } catch (...) {
    p.enc.reset();
    p.close();
    throw;
  }
}

video_writer::~video_writer() {
  try {
    finish();
  } catch (...) {  // a failing disk: what was written stays, the error was reported by the caller's run
  }
  p_->close();
}

const std::string& video_writer::encoder_name() const noexcept { return p_->encoder; }
std::size_t video_writer::frames_written() const noexcept { return p_->frames; }

void video_writer::write(const drt::rgb_image& img, long long pts) {
  auto& p = *p_;
  if (p.finished) throw std::logic_error("video_writer::write after finish");
  if (img.width != p.in_w || img.height != p.in_h || img.pixels.size() != img.width * img.height * 3)
    throw drt::invalid_input(p.where + ": frame of " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                             " but the video is " + std::to_string(p.in_w) + "x" + std::to_string(p.in_h));
  int rc = av_frame_make_writable(p.frame.get());
  if (rc < 0) p.fail("cannot allocate a frame", rc);
  const uint8_t* src[4] = {img.pixels.data(), nullptr, nullptr, nullptr};
  const int src_stride[4] = {int(img.width * 3), 0, 0, 0};
  sws_scale(p.sws.get(), src, src_stride, 0, int(img.height), p.frame->data, p.frame->linesize);
  p.frame->pts = pts;
  p.encode(p.frame.get());
  ++p.frames;
}

void video_writer::finish() {
  auto& p = *p_;
  if (p.finished || !p.header) return;
  p.finished = true;
  p.encode(nullptr);
  const int rc = av_write_trailer(p.oc);
  if (rc < 0) p.fail("cannot write its trailer", rc);
  if (p.io_open) {
    const int rc2 = avio_closep(&p.oc->pb);
    p.io_open = false;
    if (rc2 < 0) p.fail("cannot close it", rc2);
  }
}

#endif  // DRT_HAVE_FFMPEG

}  // namespace drt_cli
