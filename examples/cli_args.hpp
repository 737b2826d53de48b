#pragma once
/// @file cli_args.hpp
/// A tiny command-line parser for the `drt` program: a command is a table of options, parsing
/// fills positionals and option values, and every mistake is a `usage_error` (exit code 2).

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
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

/// One option of a command: `--name VALUE` (or `--name=VALUE`), or a flag when `value` is empty.
struct option_spec {
  std::string name;   ///< with the dashes: "--out"
  std::string value;  ///< placeholder shown in the usage ("PATH"); empty for a flag
  std::string help;
};

/// A command: its positionals (all optional past `min_positional`) and its options.
struct command_spec {
  std::string name;                  ///< "segment"
  std::string synopsis;              ///< "[MODEL_DIR] [IMAGE] [options]"
  std::string summary;               ///< one line
  std::vector<std::string> details;  ///< extra usage lines (positionals, defaults)
  std::vector<option_spec> options;  ///< --help is implicit
  std::size_t min_positional = 0;
  std::size_t max_positional = 0;
};

/// The result of parsing one command's arguments.
struct parsed_args {
  bool help = false;
  std::vector<std::string> positional;
  std::map<std::string, std::string> values;  ///< option name -> value ("" for flags); last one wins

  bool has(const std::string& name) const { return values.count(name) != 0; }
  std::string get(const std::string& name, const std::string& fallback = "") const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second;
  }
};

inline void print_usage(std::ostream& os, const command_spec& cmd) {
  os << "usage: drt " << cmd.name << ' ' << cmd.synopsis << "\n\n" << cmd.summary << '\n';
  for (const auto& line : cmd.details) os << line << '\n';
  os << "\noptions:\n";
  std::size_t width = 10;  // "-h, --help"
  for (const auto& o : cmd.options) width = std::max(width, o.name.size() + (o.value.empty() ? 0 : o.value.size() + 1));
  auto row = [&](const std::string& left, const std::string& help) {
    os << "  " << left << std::string(width + 2 - left.size(), ' ') << help << '\n';
  };
  for (const auto& o : cmd.options) row(o.value.empty() ? o.name : o.name + ' ' + o.value, o.help);
  row("-h, --help", "show this help and exit");
}

/// Parse `argv[first..argc)` against `cmd`. `--` ends the options; `-h`/`--help` set `help`
/// and stop checking the rest.
inline parsed_args parse_args(const command_spec& cmd, int argc, char** argv, int first) {
  parsed_args out;
  bool options_done = false;
  for (int i = first; i < argc; ++i) {
    const std::string arg = argv[i];
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      if (out.positional.size() == cmd.max_positional) throw usage_error(cmd.name, "unexpected argument '" + arg + "'");
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      options_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      out.help = true;
      return out;
    }
    const auto eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    const option_spec* spec = nullptr;
    for (const auto& o : cmd.options)
      if (o.name == name) spec = &o;
    if (!spec) throw usage_error(cmd.name, "unknown option '" + name + "'");
    if (spec->value.empty()) {
      if (eq != std::string::npos) throw usage_error(cmd.name, "option '" + name + "' takes no value");
      out.values[name] = "";
    } else if (eq != std::string::npos) {
      out.values[name] = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc) throw usage_error(cmd.name, "option '" + name + "' needs a value (" + spec->value + ")");
      out.values[name] = argv[++i];
    }
    if (!spec->value.empty() && out.values[name].empty())
      throw usage_error(cmd.name, "option '" + name + "' needs a non-empty value (" + spec->value + ")");
  }
  if (out.positional.size() < cmd.min_positional)
    throw usage_error(cmd.name, "missing arguments; usage: drt " + cmd.name + " " + cmd.synopsis);
  return out;
}

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

}  // namespace drt_cli
