#pragma once
/// @file file.hpp
/// Whole files in and out, the one way drt touches the file system for user data.
///
/// Reading: `read_file` refuses folders, names the OS reason, and refuses files larger than a
/// stated limit before allocating (a hostile or mistaken path must not exhaust memory).
///
/// Writing is atomic: `output_files` writes each file to a temporary next to its target
/// (same folder, so the rename cannot cross file systems), checks every write, fsync and close,
/// and renames all of them into place only in `commit()`. A failed write (disk full, file size
/// limit, read-only folder) throws `io_error` naming the file and the OS reason and leaves no
/// partial file: neither the temporary nor, for a set of outputs, the ones already renamed.
/// ref: POSIX rename(2) replaces the target atomically within one file system.

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <unistd.h>

#include "../core/error.hpp"

namespace drt {

/// Files larger than this are refused by `read_file` unless the caller passes another limit:
/// 16 GiB covers every checkpoint drt supports (Swin-L + UPerNet in float32 is ~0.9 GiB).
inline constexpr std::size_t default_max_file_bytes = std::size_t{16} << 30;

namespace detail {

inline std::string os_reason(int err) { return err != 0 ? std::strerror(err) : "unknown reason"; }

}  // namespace detail

/// The whole of `path` as bytes. `what` names the file's role in errors ("safetensors", "image",
/// "config", "lut"): `what 'path': cannot open file (No such file or directory)`. Throws
/// drt::io_error for a folder, an unreadable or short file, or one larger than `max_bytes`.
inline std::vector<char> read_file(const std::string& what, const std::string& path,
                                   std::size_t max_bytes = default_max_file_bytes) {
  const std::string where = what + " '" + path + "'";
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw io_error(where + ": cannot open file (it is a directory)");
  errno = 0;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw io_error(where + ": cannot open file (" + detail::os_reason(errno) + ")");
  struct closer {
    std::FILE* f;
    ~closer() { std::fclose(f); }
  } close_f{f};
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) throw io_error(where + ": cannot read its size (" + ec.message() + ")");
  if (size > max_bytes)
    throw io_error(where + ": file is " + std::to_string(size) + " bytes, more than the limit of " +
                   std::to_string(max_bytes));
  std::vector<char> bytes(static_cast<std::size_t>(size));
  const std::size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), f);
  if (got != bytes.size())
    throw io_error(where + ": read " + std::to_string(got) + " of " + std::to_string(bytes.size()) + " bytes (" +
                   (std::ferror(f) ? detail::os_reason(errno) : std::string("file shrank while reading")) + ")");
  return bytes;
}

/// A JSON file parsed; `what` names its role in errors ("config", "lut"): a missing file, a folder
/// or a syntax error is reported as `what 'path': ...`. JSON files drt reads are small: the limit
/// (64 MiB by default) refuses anything else before reading it.
inline nlohmann::json read_json_file(const std::string& what, const std::string& path,
                                     std::size_t max_bytes = std::size_t{64} << 20) {
  const std::vector<char> bytes = read_file(what, path, max_bytes);
  try {
    return nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::exception& ex) {
    throw invalid_input(what + " '" + path + "': not valid JSON (" + ex.what() + ")");
  }
}

/// Whether JSON value `v` is an integer in [lo, hi]. Huge values are compared as they are written,
/// never wrapped into a narrower type (2^40 + 1 is not 1, 2^64 - 1 is not -1); 2.0 is not an integer.
inline bool json_integer_in(const nlohmann::json& v, long long lo, long long hi) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    return u <= static_cast<std::uint64_t>(LLONG_MAX) && static_cast<long long>(u) >= lo && static_cast<long long>(u) <= hi;
  }
  return v.is_number_integer() && v.get<long long>() >= lo && v.get<long long>() <= hi;
}

/// Runs `parse()` (which reads a parsed JSON document) and turns any nlohmann::json exception that
/// escapes its own checks into drt::invalid_input naming `where` ("config 'c.json'"): no JSON
/// library message reaches a user without the file it is about.
template <class Parse>
auto with_json_context(const std::string& where, Parse&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const nlohmann::json::exception& ex) {
    throw invalid_input(where + ": unexpected JSON value (" + ex.what() + ")");
  }
}

/// A set of output files written together: each `add` writes a complete temporary file, `commit`
/// renames them all into place. Until `commit` succeeds no target is touched; when it fails, or
/// when the set is destroyed uncommitted (an exception on the way), every temporary is removed.
class output_files {
public:
  output_files() = default;
  output_files(const output_files&) = delete;
  output_files& operator=(const output_files&) = delete;
  ~output_files() { discard(); }

  /// Write `size` bytes to a temporary next to `path`. `what` names the file's role in errors.
  void add(const std::string& what, const std::string& path, const void* data, std::size_t size) {
    const std::string where = what + " '" + path + "'";
    const std::filesystem::path target(path);
    std::error_code ec;
    if (std::filesystem::is_directory(target, ec)) throw io_error(where + ": cannot write (it is a directory)");
    const std::string tmp = temp_name(target);
    errno = 0;
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) throw io_error(where + ": cannot open for writing (" + detail::os_reason(errno) + ")");
    pending_.push_back({tmp, path, where});
    const char* p = static_cast<const char*>(data);
    std::size_t left = size;
    while (left > 0) {
      const ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : ENOSPC;
        ::close(fd);
        discard();
        throw io_error(where + ": write failed after " + std::to_string(size - left) + " of " + std::to_string(size) +
                       " bytes (" + detail::os_reason(err) + "); no file was left behind");
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    // fsync: a file system with delayed allocation reports a full disk only here or at close.
    const int sync_err = ::fsync(fd) == 0 ? 0 : errno;
    const int close_err = ::close(fd) == 0 ? 0 : errno;
    if (sync_err != 0 || close_err != 0) {
      discard();
      throw io_error(where + ": write failed (" + detail::os_reason(sync_err ? sync_err : close_err) +
                     "); no file was left behind");
    }
  }
  void add(const std::string& what, const std::string& path, const std::string& bytes) {
    add(what, path, bytes.data(), bytes.size());
  }
  void add(const std::string& what, const std::string& path, const std::vector<unsigned char>& bytes) {
    add(what, path, bytes.data(), bytes.size());
  }

  /// Rename every temporary onto its target. When one rename fails, the targets already renamed
  /// are removed as well (a set of outputs is all or nothing) and io_error names the failing one.
  void commit() {
    std::vector<std::string> done;
    for (std::size_t i = 0; i < pending_.size(); ++i) {
      const auto& f = pending_[i];
      errno = 0;
      if (std::rename(f.tmp.c_str(), f.target.c_str()) != 0) {
        const int err = errno;
        for (const auto& d : done) std::remove(d.c_str());
        pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(i));
        discard();
        throw io_error(f.where + ": cannot move the written file into place (" + detail::os_reason(err) +
                       "); no file was left behind");
      }
      done.push_back(f.target);
    }
    pending_.clear();
  }

  /// Remove every temporary not yet committed.
  void discard() noexcept {
    for (const auto& f : pending_) ::unlink(f.tmp.c_str());
    pending_.clear();
  }

private:
  struct pending {
    std::string tmp, target, where;
  };

  /// `.name.drt-tmp-PID-N` in the target's folder: hidden, unique per process and call.
  static std::string temp_name(const std::filesystem::path& target) {
    static unsigned counter = 0;
    const std::filesystem::path dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    return (dir / ("." + target.filename().string() + ".drt-tmp-" + std::to_string(::getpid()) + "-" +
                   std::to_string(__atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED))))
        .string();
  }

  std::vector<pending> pending_;
};

/// Write one file atomically (see `output_files`).
inline void write_file_atomic(const std::string& what, const std::string& path, const void* data, std::size_t size) {
  output_files out;
  out.add(what, path, data, size);
  out.commit();
}
inline void write_file_atomic(const std::string& what, const std::string& path, const std::string& bytes) {
  write_file_atomic(what, path, bytes.data(), bytes.size());
}

/// Throws io_error naming `path` unless a file can be created in its folder (checked by creating
/// and removing a temporary): lets a long job refuse an unwritable output before it starts.
inline void check_writable(const std::string& what, const std::string& path) {
  output_files probe;
  probe.add(what, path, "", 0);
  probe.discard();
}

}  // namespace drt
