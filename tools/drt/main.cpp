// drt: command-line front end of the drt library. One command per source file (cmd_*.cpp); the
// command line is parsed by CLI11 (subcommands), option values are checked by the commands.
//
//   drt run MODEL_DIR --input CASE.safetensors --output OUT.safetensors
//   drt segment [MODEL_DIR] [IMAGE] [--out mask.png] [--overlay overlay.png] [--size HxW] [--threads T]
//   drt eval MODEL_DIR --data DIR [--path ...] [--ignore-index K] [--limit N] [--json OUT]
//   drt profile | sweep | accel | dse | lut | calibrate ...      ('drt <command> --help')
//
// Exit codes: 0 success, 1 an error from drt (bad file, bad model, ...), 2 a bad command line.

#include <drt/core/error.hpp>

#include <algorithm>
#include <cstring>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "commands.hpp"

namespace {

using drt_cli::usage_error;

/// CLI11's "The following argument was not expected: X" said as the old drt did: an unknown option
/// or a positional too many, named.
std::string describe_extras(const CLI::App& app, const CLI::ParseError& e) {
  const std::vector<std::string> extras = app.remaining();
  if (extras.empty()) return e.what();
  const std::string& first = extras.front();
  if (first.size() > 1 && first[0] == '-') return "unknown option '" + first.substr(0, first.find('=')) + "'";
  return "unexpected argument '" + first + "'";
}

int dispatch(int argc, char** argv) {
  CLI::App drt{"Dynamic real-time inference of vision transformers (SegFormer, Swin + UPerNet) and ResNet.", "drt"};
  drt.set_help_flag("-h,--help", "show this help and exit");
  drt.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a repeated option: the last wins
  drt.require_subcommand(1);
  auto help_format = std::make_shared<drt_cli::formatter>();
  help_format->column_width(26);
  drt.formatter(help_format);
  drt.footer(
      "'drt <command> --help' describes a command.\n"
      "Exit codes: 0 success, 1 an error from drt (bad file, bad model, ...), 2 a bad command line.");
  const std::vector<drt_cli::command> commands = {drt_cli::add_run_command(drt),   drt_cli::add_segment_command(drt),
                                                  drt_cli::add_eval_command(drt),  drt_cli::add_profile_command(drt),
                                                  drt_cli::add_sweep_command(drt), drt_cli::add_accel_command(drt),
                                                  drt_cli::add_dse_command(drt),   drt_cli::add_lut_command(drt),
                                                  drt_cli::add_calibrate_command(drt)};
  for (const auto& c : commands)
    c.app->footer("Exit codes: 0 success, 1 an error from drt (bad file, bad model, ...), 2 a bad command line.");

  if (argc < 2) {
    std::cerr << drt.help();
    return 2;
  }
  if (std::strcmp(argv[1], "help") == 0) {
    std::cout << drt.help();
    return 0;
  }
  const bool known = std::any_of(commands.begin(), commands.end(),
                                 [&](const drt_cli::command& c) { return c.app->get_name() == argv[1]; });
  if (argv[1][0] != '-' && !known) {
    std::cerr << "drt: unknown command '" << argv[1]
              << "' (commands: run, segment, eval, profile, sweep, accel, dse, lut, calibrate; see 'drt --help')\n";
    return 2;
  }
  try {
    drt.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << drt.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << drt.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::ParseError& e) {
    const auto parsed = drt.get_subcommands();
    if (parsed.empty()) {  // `drt --bogus`: the unknown option, not the missing command
      std::cerr << "drt: " << (drt.remaining().empty() ? std::string(e.what()) : describe_extras(drt, e))
                << " (see 'drt --help')\n";
      return 2;
    }
    const CLI::App& sub = *parsed.front();
    const std::string msg = dynamic_cast<const CLI::ExtrasError*>(&e) ? describe_extras(sub, e) : e.what();
    throw usage_error(sub.get_name(), msg);
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    for (const CLI::Option* o : c.app->get_options())  // CLI11 takes `--flag=VALUE` as a count; drt refuses it
      if (o->get_expected_max() == 0 && o->count() > 0 && o->results().back() != "true")
        throw usage_error(c.app->get_name(), "option '" + o->get_name() + "' takes no value");
    return c.main(drt_cli::parsed_args(*c.app));
  }
  throw std::logic_error("no command was parsed");
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const usage_error& e) {
    std::cerr << "drt " << e.command() << ": " << e.what() << " (see 'drt " << e.command() << " --help')\n";
    return 2;
  } catch (const drt::invalid_input& e) {  // bad file, tensor, config or argument value
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const drt::io_error& e) {  // missing, unreadable or unwritable file
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const std::bad_alloc&) {  // an input or model larger than this machine's memory
    std::cerr
        << "drt: error: out of memory (an input or model too large for this machine? --max-pixels bounds images)\n";
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {  // names the path(s) itself
    std::cerr << "drt: error: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {  // not expected from drt
    std::cerr << "drt: unexpected error: " << e.what() << '\n';
    return 1;
  }
}
