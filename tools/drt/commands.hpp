#pragma once
/// @file commands.hpp
/// The commands of the `drt` program, one source file each: `add_X_command` declares the command
/// (its CLI11 subcommand, options and help) on the program's app and returns it with its entry point.

#include <drt/engine/lut.hpp>

#include "cli.hpp"

namespace drt_cli {

command add_run_command(CLI::App& drt);      // cmd_run.cpp
command add_segment_command(CLI::App& drt);  // cmd_segment.cpp (+ cmd_segment_budget.cpp)
command add_eval_command(CLI::App& drt);     // cmd_eval.cpp
command add_profile_command(CLI::App& drt);  // cmd_profile.cpp
command add_sweep_command(CLI::App& drt);    // cmd_sweep.cpp
command add_accel_command(CLI::App& drt);    // cmd_accel.cpp
command add_dse_command(CLI::App& drt);      // cmd_dse.cpp
command add_lut_command(CLI::App& drt);      // cmd_lut.cpp
command add_calibrate_command(CLI::App& drt);  // cmd_calibrate.cpp

/// `drt segment --lut ...` (cmd_segment_budget.cpp): the budget options of `segment`, whether a
/// command line asks for budgeted inference, and running it.
void add_budget_options(CLI::App& segment);
bool wants_budget(const parsed_args& args);
int segment_budget_main(const parsed_args& args, const std::string& default_image);

/// `drt segment --video ...` (cmd_segment_video.cpp): its options, their check (before any model
/// loads; without FFmpeg it says how to enable video), and the pipelined run over a video stream.
class frame_runner;
void add_video_options(CLI::App& segment);
void check_video_options(const parsed_args& args);
int segment_video_main(const parsed_args& args, const drt::lookup_table& table, frame_runner& runner,
                       const std::string& lut_file);

}  // namespace drt_cli
