// Error type thrown at ponder's boundaries (files, recipes, checkpoints, CLI arguments).
// The message always names what failed (a file, a JSON path, a tensor) and what was expected.
#pragma once

#include <stdexcept>
#include <string>

namespace ponder {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Prefixes an error with where it happened: `with_context("recipe.json", e)` -> "recipe.json: ...".
[[noreturn]] inline void rethrow_with_context(const std::string& where, const std::exception& e) {
  throw Error(where + ": " + e.what());
}

}  // namespace ponder
