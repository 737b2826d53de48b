#pragma once
/// @file cli.hpp
/// What the commands of the `drt` program share: how a command is declared (a CLI11 subcommand) and
/// read back after parsing, and the checked conversions of option values (every mistake a
/// `usage_error`, exit code 2, naming the option and the value). inputs.hpp has what they do alike
/// with untrusted inputs.
///
/// CLI11 is a dependency of this program only, never of the library headers.

#include <CLI/CLI.hpp>

#include <drt/core/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace drt_cli {

/// Wrong command line: unknown option, missing value, malformed number. The message is one
/// sentence without the program name; `main` prefixes it and exits with 2.
class usage_error : public std::runtime_error {
public:
  usage_error(std::string command, const std::string& msg) : std::runtime_error(msg), command_(std::move(command)) {}
  const std::string& command() const noexcept { return command_; }

private:
  std::string command_;
};

/// What one command was given, read from its parsed CLI11 subcommand: the positionals in order and
/// the options by name (a repeated option: the last value wins).
class parsed_args {
public:
  explicit parsed_args(const CLI::App& app) : app_(&app) {
    for (const CLI::Option* o : app.get_options()) {
      if (o->get_positional()) {
        positional.insert(positional.end(), o->results().begin(), o->results().end());
      } else if (o->count() > 0 && o->get_expected_max() != 0 && !o->results().empty() && o->results().back().empty()) {
        throw usage_error(app.get_name(),
                          "option '" + o->get_name() + "' needs a non-empty value (" + o->get_type_name() + ")");
      }
    }
  }
  bool has(const std::string& name) const {
    const CLI::Option* o = app_->get_option_no_throw(name);
    return o != nullptr && o->count() > 0;
  }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    const CLI::Option* o = app_->get_option_no_throw(name);
    if (o == nullptr || o->count() == 0 || o->results().empty()) return fallback;
    return o->results().back();
  }
  const std::string& command() const { return app_->get_name(); }

  std::vector<std::string> positional;

private:
  const CLI::App* app_;
};

/// One command of the program: its subcommand of the `drt` app and the function that runs it.
struct command {
  CLI::App* app = nullptr;
  int (*main)(const parsed_args&) = nullptr;
};

/// The help layout of `drt`: CLI11's, except that `drt --help` lists each command by its one-line brief
/// while `drt <command> --help` opens with the command's full description.
class formatter : public CLI::Formatter {
public:
  std::map<std::string, std::string> briefs;  ///< command name -> its line in `drt --help`

  std::string make_subcommand(const CLI::App* sub) const override {
    const auto it = briefs.find(sub->get_name());
    std::stringstream out;
    CLI::detail::format_help(out, sub->get_display_name(true), it == briefs.end() ? sub->get_description() : it->second,
                             column_width_);
    return out.str();
  }
};

/// A subcommand of `drt` (whose formatter is a `drt_cli::formatter`): `brief` is its line in `drt
/// --help`; `description` opens its own help, above the usage line and the options.
inline CLI::App* add_command(CLI::App& drt, const std::string& name, const std::string& brief,
                             const std::string& description) {
  CLI::App* app = drt.add_subcommand(name, description + "\n");
  if (auto f = std::dynamic_pointer_cast<formatter>(drt.get_formatter())) f->briefs[name] = brief;
  return app;
}

/// `--name VALUE`: the value is read (and checked) by the command.
inline CLI::Option* value_option(CLI::App& app, const std::string& name, const std::string& value_name,
                                 const std::string& help) {
  return app.add_option(name)->description(help)->type_name(value_name);
}
/// `--name` without a value.
inline CLI::Option* flag_option(CLI::App& app, const std::string& name, const std::string& help) {
  return app.add_flag(name)->description(help);
}
/// A positional argument (optional unless `->required()`).
inline CLI::Option* positional_option(CLI::App& app, const std::string& name, const std::string& help) {
  return app.add_option(name)->description(help)->type_name("");
}

// ------------------------------------------------------------------------- shared options

inline void add_threads_option(CLI::App& app) { value_option(app, "--threads", "T", "OpenMP threads (default: all)"); }
inline void add_path_option(CLI::App& app, const std::string& help = "dynamic execution path (default: full model)") {
  value_option(app, "--path", "TEXT", help);
}
inline void add_allow_nonfinite_option(CLI::App& app) {
  flag_option(app, "--allow-nonfinite", "load checkpoints holding NaN or infinite weights (refused by default)");
}
/// How SegFormer graphs are built: --no-fold and --order (read by inputs.hpp's segformer_build).
inline void add_no_fold_option(CLI::App& app) {
  flag_option(app, "--no-fold",
              "build SegFormer's decoder as published (linear_c, upsample, concat, Conv2DFuse) instead of folding it "
              "exactly into per-stage GEMMs (docs/decoder_fold.md): the paper's accounting and its fuse_in knob");
  value_option(app, "--order", "ORDER",
               "order of the channels that `mlp=` and `pred_in=` prefixes keep (docs/channel_order.md): weight "
               "(from the weights), checkpoint, or a JSON file (a calibrated order from 'drt calibrate', with the "
               "classifier refit for pred_in, or a lookup table that records one); default: MODEL_DIR/channel_order.json "
               "when the model directory holds one, else weight");
  value_option(app, "--int8-ranges", "FILE",
               "calibrated int8 input ranges of the GEMM layers ('drt calibrate --int8'), for paths with "
               "precision=int8 (default: each layer call's own range; docs/precision.md)");
}

// ------------------------------------------------------------------------- value conversions

namespace detail {

/// A strictly positive decimal integer below 10^9 filling all of `text`, or 0.
inline std::size_t positive_or_zero(const std::string& text) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::stoul(text);
}

}  // namespace detail

/// A strictly positive integer, e.g. for --threads.
inline std::size_t parse_positive(const std::string& command, const std::string& option, const std::string& text) {
  const std::size_t v = detail::positive_or_zero(text);
  if (v == 0) throw usage_error(command, "option '" + option + "' expects a positive integer, got '" + text + "'");
  return v;
}

/// A class index to ignore in label maps: an integer in [0, 255] (label PNGs hold 8-bit indices; 0
/// is a valid class).
inline int parse_label_index(const std::string& command, const std::string& option, const std::string& text) {
  const std::size_t v = text == "0" ? 0 : detail::positive_or_zero(text);
  if ((v == 0 && text != "0") || v > 255)
    throw usage_error(command, "option '" + option + "' expects a label index in [0, 255], got '" + text + "'");
  return static_cast<int>(v);
}

struct size_hw {
  std::size_t height = 0;
  std::size_t width = 0;
};

/// "HxW" with positive integers, e.g. "360x480".
inline size_hw parse_size(const std::string& command, const std::string& option, const std::string& text) {
  const auto x = text.find_first_of("xX");
  size_hw s;
  if (x != std::string::npos) {
    s.height = detail::positive_or_zero(text.substr(0, x));
    s.width = detail::positive_or_zero(text.substr(x + 1));
  }
  if (s.height == 0 || s.width == 0)
    throw usage_error(command,
                      "option '" + option + "' expects HxW with positive integers (e.g. 360x480), got '" + text + "'");
  return s;
}

/// A number in [0, 1] filling all of `text`.
inline float parse_fraction(const std::string& command, const std::string& option, const std::string& text) {
  char* end = nullptr;
  const float v = std::strtof(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || !(v >= 0.0f && v <= 1.0f))
    throw usage_error(command, "option '" + option + "' expects a number in [0, 1], got '" + text + "'");
  return v;
}

/// "a,b,c" split at commas (empty parts kept).
inline std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto comma = s.find(',', start);
    out.push_back(s.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

// ------------------------------------------------------------------------- shared behaviour

/// --threads T for the forward pass (nothing when absent).
inline void apply_threads(const parsed_args& args) {
  if (args.has("--threads"))
    drt::set_threads(static_cast<int>(parse_positive(args.command(), "--threads", args.get("--threads"))));
}

/// A default data path: under the source tree baked in at build time when it exists there,
/// otherwise relative to the working directory.
inline std::string resolve_default(const std::string& rel) {
#ifdef DRT_SOURCE_DIR
  const std::filesystem::path in_tree = std::filesystem::path(DRT_SOURCE_DIR) / rel;
  std::error_code ec;
  if (std::filesystem::exists(in_tree, ec)) return in_tree.string();
#endif
  return rel;
}

inline const char* const default_model = "data/models/segformer-b0-camvid";
inline const char* const default_image = "data/images/0016E5_07959.png";

inline double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace drt_cli
