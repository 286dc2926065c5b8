// A small parser for LaTeX / plain-text math expressions (numbers, + - * / ^, implicit
// multiplication, \frac, \sqrt[n]{}, \pi, \infty, functions, %, !) evaluated at given variables.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace ponder::rewards {

struct ParsedExpression;

class MathExpression {
 public:
  // nullopt when the text is not a single expression (or exceeds the work bound).
  static std::optional<MathExpression> parse(const std::string& text);
  ~MathExpression();
  MathExpression(MathExpression&&) noexcept;
  MathExpression& operator=(MathExpression&&) noexcept;

  const std::set<std::string>& variables() const;
  // NaN when undefined at this point (division by zero, log of a negative...).
  long double evaluate(const std::map<std::string, long double>& values) const;

 private:
  explicit MathExpression(std::unique_ptr<ParsedExpression> impl);
  std::unique_ptr<ParsedExpression> impl_;
};

}  // namespace ponder::rewards
