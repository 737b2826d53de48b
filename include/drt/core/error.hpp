#pragma once
/// @file error.hpp
/// Typed exceptions. Every message is one sentence naming the thing, the rule and the values.

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace drt {

/// A file, tensor, config or argument given by the user is malformed or inconsistent.
class invalid_input : public std::invalid_argument {
public:
  using std::invalid_argument::invalid_argument;
};

/// Reading a file failed (missing, unreadable, truncated).
class io_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// A tensor does not have the shape a layer requires.
class shape_error : public invalid_input {
public:
  using invalid_input::invalid_input;
};

/// `[a, b, c]` for any integer sequence (used in every shape message).
template <class Seq>
std::string shape_str(const Seq& shape) {
  std::ostringstream os;
  os << '[';
  bool first = true;
  for (auto v : shape) {
    if (!first) os << ", ";
    os << static_cast<long long>(v);
    first = false;
  }
  os << ']';
  return os.str();
}

}  // namespace drt
