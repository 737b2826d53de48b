// io/file.hpp: whole-file reads with named errors, atomic writes that leave nothing behind on failure.
#include <doctest/doctest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <drt/io/file.hpp>

#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {
struct scratch_dir {
  fs::path dir;
  scratch_dir() : dir(fs::temp_directory_path() / ("drt_test_file_" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~scratch_dir() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
  /// Names in the folder (temporaries included: they start with '.').
  std::vector<std::string> listing() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Simulates a full disk: writes past `bytes` fail with EFBIG while in scope (SIGXFSZ ignored).
struct file_size_limit {
  rlimit old{};
  void (*old_handler)(int) = nullptr;
  explicit file_size_limit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &old);
    old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit lim = old;
    lim.rlim_cur = bytes;
    setrlimit(RLIMIT_FSIZE, &lim);
  }
  ~file_size_limit() {
    setrlimit(RLIMIT_FSIZE, &old);
    std::signal(SIGXFSZ, old_handler);
  }
};
}  // namespace

TEST_SUITE("io") {
TEST_CASE("read_file: the bytes, or an error naming the role, the file and the reason") {
  scratch_dir tmp;
  const std::string p = tmp.file("a.bin");
  std::ofstream(p, std::ios::binary) << "hello";
  const auto bytes = drt::read_file("config", p);
  CHECK(std::string(bytes.begin(), bytes.end()) == "hello");
  CHECK_THROWS_WITH_AS(drt::read_file("config", tmp.file("missing.json")),
                       ("config '" + tmp.file("missing.json") + "': cannot open file (No such file or directory)").c_str(),
                       drt::io_error);
  CHECK_THROWS_WITH_AS(drt::read_file("lut", tmp.dir.string()),
                       ("lut '" + tmp.dir.string() + "': cannot open file (it is a directory)").c_str(), drt::io_error);
  CHECK_THROWS_WITH_AS(drt::read_file("image", p, 4),
                       ("image '" + p + "': file is 5 bytes, more than the limit of 4").c_str(), drt::io_error);
  CHECK(drt::read_file("empty", (std::ofstream(tmp.file("e")), tmp.file("e"))).empty());
}

TEST_CASE("read_json_file: syntax errors name the file") {
  scratch_dir tmp;
  const std::string p = tmp.file("bad.json");
  std::ofstream(p) << "{\"a\": ";
  CHECK_THROWS_WITH_AS(drt::read_json_file("lut", p), doctest::Contains(("lut '" + p + "': not valid JSON (").c_str()), drt::invalid_input);
  std::ofstream(p) << "{\"a\": 1}";
  CHECK(drt::read_json_file("lut", p)["a"] == 1);
}

TEST_CASE("write_file_atomic replaces the target in one step and leaves no temporary") {
  scratch_dir tmp;
  const std::string p = tmp.file("out.json");
  std::ofstream(p) << "old contents";
  drt::write_file_atomic("json", p, std::string("new"));
  CHECK(slurp(p) == "new");
  CHECK(tmp.listing() == std::vector<std::string>{"out.json"});
  CHECK_THROWS_WITH_AS(drt::write_file_atomic("json", tmp.file("nope/out.json"), std::string("x")),
                       ("json '" + tmp.file("nope/out.json") + "': cannot open for writing (No such file or directory)").c_str(),
                       drt::io_error);
  CHECK_THROWS_WITH_AS(drt::write_file_atomic("csv", tmp.dir.string(), std::string("x")),
                       ("csv '" + tmp.dir.string() + "': cannot write (it is a directory)").c_str(), drt::io_error);
}

TEST_CASE("a full disk: the write fails with the reason, the old file stays, nothing partial is left") {
  scratch_dir tmp;
  const std::string p = tmp.file("big.bin");
  std::ofstream(p) << "previous";
  const std::string payload(1 << 20, 'x');
  {
    file_size_limit limit(64 * 1024);
    CHECK_THROWS_WITH_AS(drt::write_file_atomic("safetensors", p, payload),
                         ("safetensors '" + p + "': write failed after 65536 of 1048576 bytes (File too large); no file was left behind").c_str(),
                         drt::io_error);
  }
  CHECK(slurp(p) == "previous");
  CHECK(tmp.listing() == std::vector<std::string>{"big.bin"});
}

TEST_CASE("output_files: a set of outputs lands together or not at all") {
  scratch_dir tmp;
  const std::string mask = tmp.file("mask.png"), overlay = tmp.file("overlay.png");
  SUBCASE("the second file fails: the first is not left behind") {
    file_size_limit limit(16 * 1024);
    drt::output_files out;
    out.add("png", mask, std::string(1000, 'm'));
    CHECK_THROWS_WITH_AS(out.add("png", overlay, std::string(100000, 'o')), doctest::Contains(("png '" + overlay + "': write failed after").c_str()),
                         drt::io_error);
    CHECK(tmp.listing().empty());
  }
  SUBCASE("destroyed without commit (an exception on the way): nothing lands") {
    {
      drt::output_files out;
      out.add("png", mask, std::string("m"));
      CHECK(tmp.listing().size() == 1);  // only the temporary
      CHECK(!fs::exists(mask));
    }
    CHECK(tmp.listing().empty());
  }
  SUBCASE("commit moves every file into place") {
    drt::output_files out;
    out.add("png", mask, std::string("m"));
    out.add("png", overlay, std::string("o"));
    out.commit();
    CHECK(tmp.listing() == std::vector<std::string>{"mask.png", "overlay.png"});
    CHECK(slurp(overlay) == "o");
  }
}

TEST_CASE("check_writable: an unwritable output is known before the work") {
  scratch_dir tmp;
  drt::check_writable("lut", tmp.file("lut.json"));
  CHECK(tmp.listing().empty());  // the probe is removed
  CHECK_THROWS_WITH_AS(drt::check_writable("lut", tmp.file("no/lut.json")),
                       ("lut '" + tmp.file("no/lut.json") + "': cannot open for writing (No such file or directory)").c_str(),
                       drt::io_error);
}
}
