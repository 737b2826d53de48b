#pragma once
/// @file pareto.hpp
/// Pareto-optimal points of a (cost, value) set for the engine's lookup tables and policies:
/// `pareto_front(items, cost, value)` and `is_dominated`. The utility itself is generic and lives in
/// core/pareto.hpp (the accelerator model uses it too, without depending on the engine).

#include "../core/pareto.hpp"
