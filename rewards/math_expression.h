// Parser for LaTeX / plain-text scalar math expressions (\frac, \sqrt[n]{}, powers, functions,
// mixed numbers, % and !) into a tree evaluated exactly as rationals, else numerically (complex).
#pragma once

#include <complex>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

namespace ponder::rewards {

// A reduced fraction with 128-bit parts (den > 0); arithmetic reports overflow as nullopt.
struct Rational {
  __int128 num = 0;
  __int128 den = 1;
  bool operator==(const Rational&) const = default;
};

using Complex = std::complex<long double>;

// Whether |x - y| < min(relative * max(1, |x|, |y|), 10^-places): how close a decimal written
// with `places` digits after the point must be to an exact value (the 10^-places bound is exact).
bool rationals_close(const Rational& x, const Rational& y, int places, double relative);

struct ParsedExpression;

class MathExpression {
 public:
  // nullopt when the text is not a single expression or exceeds the work bound (4 KB, nesting
  // deeper than 64).
  static std::optional<MathExpression> parse(const std::string& text);
  ~MathExpression();
  MathExpression(MathExpression&&) noexcept;
  MathExpression& operator=(MathExpression&&) noexcept;

  const std::set<std::string>& variables() const;
  // The exact value when the expression is rational arithmetic on literals (integer powers,
  // factorials, binomials included); nullopt otherwise or on overflow.
  std::optional<Rational> exact() const;
  // The value at a point; NaN parts where undefined (division by zero, unknown variable).
  Complex evaluate(const std::map<std::string, Complex>& values) const;
  // Fewest digits after the point among the decimal literals ("0.25x" -> 2); -1 without any.
  int decimal_places() const;
  bool mentions_infinity() const;

 private:
  explicit MathExpression(std::unique_ptr<ParsedExpression> impl);
  std::unique_ptr<ParsedExpression> impl_;
};

}  // namespace ponder::rewards
