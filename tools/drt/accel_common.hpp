#pragma once
/// @file accel_common.hpp
/// What `drt accel` and `drt dse` share: the class count of --arch models and the mapping options.

#include <drt/accel/estimate.hpp>

#include <cstddef>

#include "cli.hpp"

namespace drt_cli {

inline std::size_t accel_classes(const std::string& cmd, const parsed_args& args) {
  return args.has("--classes") ? parse_positive(cmd, "--classes", args.get("--classes")) : 0;  // 0: family default
}

inline drt::accel_options accel_opts(const parsed_args& args) {
  drt::accel_options o;
  if (args.has("--improved")) o.low_channel = drt::low_channel_mapping::improved;
  return o;
}

}  // namespace drt_cli
