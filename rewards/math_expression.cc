#include "rewards/math_expression.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

namespace ponder::rewards {
namespace {

constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxLength = 4096;
constexpr int kMaxExactExponent = 256;

enum class Op : std::uint8_t {
  kNumber,
  kVariable,
  kPi,
  kE,
  kI,
  kInfinity,
  kAdd,
  kSub,
  kMul,
  kDiv,
  kPow,
  kNeg,
  kFactorial,
  kBinom,
  kFunction,
  kLogBase
};
enum class Fn : std::uint8_t {
  kSin,
  kCos,
  kTan,
  kCot,
  kSec,
  kCsc,
  kArcsin,
  kArccos,
  kArctan,
  kSinh,
  kCosh,
  kTanh,
  kLn,
  kLog10,
  kExp,
  kSqrt,
  kAbs
};

struct FunctionName {
  const char* latex;
  Fn fn;
};
constexpr FunctionName kFunctions[] = {
    {"\\sin", Fn::kSin},       {"\\cos", Fn::kCos},       {"\\tan", Fn::kTan},
    {"\\cot", Fn::kCot},       {"\\sec", Fn::kSec},       {"\\csc", Fn::kCsc},
    {"\\arcsin", Fn::kArcsin}, {"\\arccos", Fn::kArccos}, {"\\arctan", Fn::kArctan},
    {"\\sinh", Fn::kSinh},     {"\\cosh", Fn::kCosh},     {"\\tanh", Fn::kTanh},
    {"\\ln", Fn::kLn},         {"\\log", Fn::kLog10},     {"\\exp", Fn::kExp}};
constexpr const char* kGreek[] = {"\\alpha",      "\\beta",  "\\gamma",   "\\delta",  "\\epsilon",
                                  "\\varepsilon", "\\zeta",  "\\eta",     "\\theta",  "\\kappa",
                                  "\\lambda",     "\\mu",    "\\nu",      "\\xi",     "\\rho",
                                  "\\sigma",      "\\tau",   "\\phi",     "\\varphi", "\\chi",
                                  "\\psi",        "\\omega", "\\vartheta"};

// One tree node; children are indices into the parser's arena.
struct Node {
  Op op = Op::kNumber;
  int a = -1, b = -1;
  Fn fn = Fn::kSin;
  bool exact_ok = true;       // kNumber: value holds the literal exactly
  bool integer_frac = false;  // kDiv written as \frac{int}{int} (for mixed numbers)
  Rational value;             // kNumber
  long double approx = 0;     // kNumber
  std::string name;           // kVariable
};

__int128 gcd128(__int128 a, __int128 b) {
  if (a < 0) a = -a;
  if (b < 0) b = -b;
  while (b != 0) {
    const __int128 t = a % b;
    a = b;
    b = t;
  }
  return a;
}

std::optional<Rational> make_rational(__int128 num, __int128 den) {
  if (den == 0) return std::nullopt;
  if (den < 0) {
    if (num == std::numeric_limits<__int128>::min() || den == std::numeric_limits<__int128>::min())
      return std::nullopt;
    num = -num;
    den = -den;
  }
  const __int128 g = gcd128(num, den);
  return g > 1 ? Rational{num / g, den / g} : Rational{num, den};
}

std::optional<Rational> mul(const Rational& x, const Rational& y) {
  __int128 n, d;
  if (__builtin_mul_overflow(x.num, y.num, &n) || __builtin_mul_overflow(x.den, y.den, &d))
    return std::nullopt;
  return make_rational(n, d);
}

std::optional<Rational> add(const Rational& x, const Rational& y) {
  __int128 l, r, n, d;
  if (__builtin_mul_overflow(x.num, y.den, &l) || __builtin_mul_overflow(y.num, x.den, &r) ||
      __builtin_add_overflow(l, r, &n) || __builtin_mul_overflow(x.den, y.den, &d))
    return std::nullopt;
  return make_rational(n, d);
}

std::optional<Rational> rational_power(Rational base, __int128 exponent) {
  if (exponent < 0) {
    if (base.num == 0) return std::nullopt;
    auto inverted = make_rational(base.den, base.num);
    if (!inverted) return std::nullopt;
    base = *inverted;
    exponent = -exponent;
  }
  const bool trivial = base.den == 1 && (base.num == 0 || base.num == 1 || base.num == -1);
  if (exponent > kMaxExactExponent && !trivial) return std::nullopt;
  std::optional<Rational> result = Rational{1, 1};
  for (; exponent > 0 && result; --exponent) {
    result = mul(*result, base);
    if (trivial && exponent > 2) exponent = 2 - (exponent % 2);  // +-1 and 0 cycle quickly
  }
  return result;
}

std::optional<Rational> exact_sqrt(const Rational& x) {
  if (x.num < 0) return std::nullopt;
  auto root = [](__int128 v) -> std::optional<__int128> {
    __int128 r = static_cast<__int128>(std::sqrt(static_cast<long double>(v)));
    while (r > 0 && r * r > v) --r;
    while ((r + 1) * (r + 1) <= v) ++r;
    return r * r == v ? std::optional<__int128>(r) : std::nullopt;
  };
  const auto n = root(x.num), d = root(x.den);
  if (!n || !d) return std::nullopt;
  return Rational{*n, *d};
}

std::optional<Rational> exact_factorial(const Rational& x) {
  if (x.den != 1 || x.num < 0 || x.num > 33) return std::nullopt;  // 34! overflows 127 bits
  std::optional<Rational> result = Rational{1, 1};
  for (__int128 k = 2; k <= x.num && result; ++k) result = mul(*result, Rational{k, 1});
  return result;
}

std::optional<Rational> exact_binomial(const Rational& n, const Rational& k) {
  if (n.den != 1 || k.den != 1 || n.num < 0 || k.num < 0) return std::nullopt;
  if (k.num > n.num) return Rational{0, 1};
  if (k.num > 200) return std::nullopt;
  std::optional<Rational> result = Rational{1, 1};
  for (__int128 j = 1; j <= k.num && result; ++j)
    result = mul(*result, Rational{n.num - k.num + j, j});
  return result;
}

std::optional<Rational> exact_binary(Op op, const Rational& x, const Rational& y) {
  switch (op) {
    case Op::kAdd:
      return add(x, y);
    case Op::kSub: {
      const auto negated = mul(y, Rational{-1, 1});
      return negated ? add(x, *negated) : std::nullopt;
    }
    case Op::kMul:
      return mul(x, y);
    case Op::kDiv: {
      const auto inverse = make_rational(y.den, y.num);
      return inverse ? mul(x, *inverse) : std::nullopt;
    }
    case Op::kPow:
      return y.den == 1 ? rational_power(x, y.num) : std::nullopt;
    case Op::kBinom:
      return exact_binomial(x, y);
    default:
      return std::nullopt;
  }
}

long double to_long_double(const Rational& r) {
  return static_cast<long double>(r.num) / static_cast<long double>(r.den);
}

Complex nan_complex() { return {std::nanl(""), std::nanl("")}; }

bool is_real(const Complex& z) { return z.imag() == 0; }

Complex apply_function(Fn fn, const Complex& x) {
  switch (fn) {
    case Fn::kSin:
      return std::sin(x);
    case Fn::kCos:
      return std::cos(x);
    case Fn::kTan:
      return std::tan(x);
    case Fn::kCot:
      return Complex(1) / std::tan(x);
    case Fn::kSec:
      return Complex(1) / std::cos(x);
    case Fn::kCsc:
      return Complex(1) / std::sin(x);
    case Fn::kArcsin:
      return std::asin(x);
    case Fn::kArccos:
      return std::acos(x);
    case Fn::kArctan:
      return std::atan(x);
    case Fn::kSinh:
      return std::sinh(x);
    case Fn::kCosh:
      return std::cosh(x);
    case Fn::kTanh:
      return std::tanh(x);
    case Fn::kLn:
      return std::log(x);
    case Fn::kLog10:
      return std::log(x) / std::log(10.0L);
    case Fn::kExp:
      return std::exp(x);
    case Fn::kSqrt:
      return is_real(x) && x.real() >= 0 ? Complex(std::sqrt(x.real())) : std::sqrt(x);
    case Fn::kAbs:
      return std::abs(x);
  }
  return nan_complex();
}

Complex real_gamma_plus_one(const Complex& x) {
  return is_real(x) ? Complex(std::tgamma(x.real() + 1)) : nan_complex();
}

Complex complex_power(const Complex& base, const Complex& exponent) {
  if (is_real(base) && is_real(exponent)) {
    const long double b = base.real(), e = exponent.real();
    if (b >= 0 || e == std::floor(e)) return std::pow(b, e);
    // An odd root of a negative number: the real root (as in (-8)^(1/3) = -2).
    const long double inverse = 1 / e;
    if (std::fabs(inverse - std::round(inverse)) < 1e-12L &&
        static_cast<long long>(std::round(inverse)) % 2 != 0)
      return -std::pow(-b, e);
  }
  return std::pow(base, exponent);
}

}  // namespace

bool rationals_close(const Rational& x, const Rational& y, int places, double relative) {
  const auto negated = mul(y, Rational{-1, 1});
  auto diff = negated ? add(x, *negated) : std::nullopt;
  if (!diff) return false;
  if (diff->num < 0) diff->num = -diff->num;
  const long double scale =
      std::max({1.0L, std::fabs(to_long_double(x)), std::fabs(to_long_double(y))});
  if (!(to_long_double(*diff) < relative * scale)) return false;
  const auto bound = rational_power(Rational{10, 1}, -places);
  const auto scaled = bound ? mul(*diff, Rational{bound->den, 1}) : std::nullopt;  // diff * 10^k
  return scaled && scaled->num < scaled->den;
}

struct ParsedExpression {
  std::vector<Node> nodes;
  int root = -1;
  std::set<std::string> variables;
  int decimal_places = -1;
  bool infinity = false;

  std::optional<Rational> exact(int i) const;
  Complex evaluate(int i, const std::map<std::string, Complex>& values) const;
};

std::optional<Rational> ParsedExpression::exact(int i) const {
  const Node& n = nodes[i];
  switch (n.op) {
    case Op::kNumber:
      return n.exact_ok ? std::optional(n.value) : std::nullopt;
    case Op::kNeg:
    case Op::kFactorial:
    case Op::kFunction: {
      if (n.op == Op::kFunction && n.fn != Fn::kSqrt) return std::nullopt;
      const auto x = exact(n.a);
      if (!x) return std::nullopt;
      if (n.op == Op::kNeg) return mul(*x, Rational{-1, 1});
      return n.op == Op::kFactorial ? exact_factorial(*x) : exact_sqrt(*x);
    }
    case Op::kAdd:
    case Op::kSub:
    case Op::kMul:
    case Op::kDiv:
    case Op::kPow:
    case Op::kBinom: {
      const auto x = exact(n.a);
      const auto y = x ? exact(n.b) : std::nullopt;
      return y ? exact_binary(n.op, *x, *y) : std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

Complex ParsedExpression::evaluate(int i, const std::map<std::string, Complex>& values) const {
  const Node& n = nodes[i];
  switch (n.op) {
    case Op::kNumber:
      return n.approx;
    case Op::kVariable: {
      auto it = values.find(n.name);
      return it == values.end() ? nan_complex() : it->second;
    }
    case Op::kPi:
      return std::numbers::pi_v<long double>;
    case Op::kE:
      return std::numbers::e_v<long double>;
    case Op::kI:
      return Complex(0, 1);
    case Op::kInfinity:
      return std::numeric_limits<long double>::infinity();
    case Op::kNeg:
      return -evaluate(n.a, values);
    case Op::kFactorial:
      return real_gamma_plus_one(evaluate(n.a, values));
    case Op::kFunction:
      return apply_function(n.fn, evaluate(n.a, values));
    default:
      break;
  }
  const Complex x = evaluate(n.a, values), y = evaluate(n.b, values);
  switch (n.op) {
    case Op::kAdd:
      return x + y;
    case Op::kSub:
      return x - y;
    case Op::kMul:
      return x * y;
    case Op::kDiv:  // dividing by 0 or by an overflowed value says nothing about the quotient
      return y == Complex(0) || (!std::isfinite(std::abs(y)) && !infinity) ? nan_complex() : x / y;
    case Op::kPow:
      return complex_power(x, y);
    case Op::kBinom:
      return real_gamma_plus_one(x) / (real_gamma_plus_one(y) * real_gamma_plus_one(x - y));
    case Op::kLogBase:
      return std::log(y) / std::log(x);
    default:
      return nan_complex();
  }
}

namespace {

class Parser {
 public:
  Parser(const std::string& text, ParsedExpression& out) : s_(text), out_(out) {}

  bool parse_all() {
    out_.root = expr(0);
    skip();
    return out_.root >= 0 && pos_ == s_.size();
  }

 private:
  int node(Node n) {
    out_.nodes.push_back(std::move(n));
    return static_cast<int>(out_.nodes.size()) - 1;
  }
  int binary(Op op, int a, int b) { return a < 0 || b < 0 ? -1 : node({.op = op, .a = a, .b = b}); }
  int constant(Op op) { return node({.op = op}); }

  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool at(const char* token) {
    skip();
    const std::size_t len = std::strlen(token);
    if (s_.compare(pos_, len, token) != 0) return false;
    // A command must not be a prefix of a longer command (\pi vs \pm).
    return !(token[0] == '\\' && pos_ + len < s_.size() &&
             std::isalpha(static_cast<unsigned char>(s_[pos_ + len])));
  }
  bool eat(const char* token) {
    if (!at(token)) return false;
    pos_ += std::strlen(token);
    return true;
  }
  char peek() {
    skip();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }

  bool at_function() {
    for (const auto& f : kFunctions)
      if (at(f.latex)) return true;
    return false;
  }
  bool starts_factor() {
    const char c = peek();
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '(' || c == '{' || c == '.')
      return true;
    if (c != '\\') return false;
    for (const char* cmd : {"\\frac", "\\sqrt", "\\binom", "\\pi", "\\infty"})
      if (at(cmd)) return true;
    for (const char* g : kGreek)
      if (at(g)) return true;
    return at_function();
  }

  int expr(int depth) {
    if (depth > kMaxDepth) return -1;
    int left = term(depth);
    while (left >= 0) {
      if (eat("+")) {
        left = binary(Op::kAdd, left, term(depth));
      } else if (peek() == '-') {
        ++pos_;
        left = binary(Op::kSub, left, term(depth));
      } else {
        break;
      }
    }
    return left;
  }

  bool is_integer_literal(int i) const {
    const Node& n = out_.nodes[i];
    return n.op == Op::kNumber && n.exact_ok && n.value.den == 1 && n.value.num >= 0;
  }

  // "2\frac{1}{2}" is the mixed number 5/2 (also after a minus sign), not a product.
  int mixed_number(int left, int depth) {
    const Node& l = out_.nodes[left];
    const bool negated = l.op == Op::kNeg && is_integer_literal(l.a);
    if (!(is_integer_literal(left) || negated) || !at("\\frac")) return -1;
    const std::size_t saved = pos_;
    const int frac = power(depth);
    if (frac >= 0 && out_.nodes[frac].integer_frac) {
      const int whole = negated ? out_.nodes[left].a : left;
      const int sum = binary(Op::kAdd, whole, frac);
      return negated ? node({.op = Op::kNeg, .a = sum}) : sum;
    }
    pos_ = saved;
    return -1;
  }

  int term(int depth) {
    int left = unary(depth);
    while (left >= 0) {
      if (eat("*") || eat("\\cdot") || eat("\\times")) {
        left = binary(Op::kMul, left, unary(depth));
      } else if (eat("/") || eat("\\div") || eat(":")) {  // a ratio 3:1 is the quotient
        left = binary(Op::kDiv, left, unary(depth));
      } else if (const int mixed = mixed_number(left, depth); mixed >= 0) {
        left = mixed;
      } else if (starts_factor()) {
        left = binary(Op::kMul, left, power(depth));
      } else {
        break;
      }
    }
    return left;
  }

  int unary(int depth) {
    if (depth > kMaxDepth) return -1;
    if (peek() == '-') {
      ++pos_;
      const int inner = unary(depth + 1);
      return inner < 0 ? -1 : node({.op = Op::kNeg, .a = inner});
    }
    if (eat("+")) return unary(depth + 1);
    return power(depth);
  }

  int exponent(int depth) { return peek() == '{' ? group(depth + 1) : unary(depth + 1); }

  int power(int depth) {
    const int base = postfix(depth);
    if (base < 0 || !eat("^")) return base;
    return binary(Op::kPow, base, exponent(depth));
  }

  int postfix(int depth) {
    int n = primary(depth);
    while (n >= 0) {
      if (eat("%")) {
        n = binary(Op::kDiv, n, number_node(Rational{100, 1}));
      } else if (eat("!")) {
        n = node({.op = Op::kFactorial, .a = n});
      } else {
        break;
      }
    }
    return n;
  }

  int number_node(Rational r) { return node({.value = r, .approx = to_long_double(r)}); }

  // {expr}, or a single digit/letter/command as in \frac12 and \frac\pi4.
  int group(int depth) {
    if (eat("{")) {
      const int inner = expr(depth + 1);
      return inner >= 0 && eat("}") ? inner : -1;
    }
    skip();
    if (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_])))
      return number_node(Rational{s_[pos_++] - '0', 1});
    if (pos_ < s_.size() && std::isalpha(static_cast<unsigned char>(s_[pos_])))
      return letter(std::string(1, s_[pos_++]));
    return primary(depth + 1);
  }

  int letter(const std::string& name) {
    if (name == "e") return constant(Op::kE);
    if (name == "i") return constant(Op::kI);
    return variable(name);
  }

  int variable(std::string name) {
    if (eat("_")) {  // x_1, a_{n+1}: part of the name
      skip();
      if (pos_ >= s_.size()) return -1;
      if (s_[pos_] == '{') {
        const std::size_t close = s_.find('}', pos_);
        if (close == std::string::npos) return -1;
        name += "_" + s_.substr(pos_ + 1, close - pos_ - 1);
        pos_ = close + 1;
      } else {
        name += std::string("_") + s_[pos_++];
      }
    }
    out_.variables.insert(name);
    return node({.op = Op::kVariable, .name = std::move(name)});
  }

  int number() {
    const std::size_t start = pos_;
    std::size_t digits = 0, point = std::string::npos;
    __int128 num = 0;
    bool exact = true;
    for (; pos_ < s_.size(); ++pos_) {
      const char c = s_[pos_];
      if (c == '.' && point == std::string::npos) {
        point = pos_;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        ++digits;
        exact = exact && !__builtin_mul_overflow(num, 10, &num) &&
                !__builtin_add_overflow(num, c - '0', &num);
      } else {
        break;
      }
    }
    if (digits == 0) return -1;
    const int places = point == std::string::npos ? 0 : static_cast<int>(pos_ - point - 1);
    int exponent10 = 0;
    if (pos_ + 1 < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E') &&
        (std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])) ||
         (s_[pos_ + 1] == '-' && pos_ + 2 < s_.size() &&
          std::isdigit(static_cast<unsigned char>(s_[pos_ + 2]))))) {
      const std::size_t exp_start = ++pos_;
      if (s_[pos_] == '-') ++pos_;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
      const std::string e = s_.substr(exp_start, pos_ - exp_start);
      exponent10 = e.size() > 6 ? (e[0] == '-' ? -999999 : 999999) : std::stoi(e);
    }
    Node n{.op = Op::kNumber};
    n.approx = std::strtold(s_.substr(start, pos_ - start).c_str(), nullptr);
    if (n.approx == 0 && (num != 0 || !exact)) n.approx = std::nanl("");  // underflowed
    std::optional<Rational> value = Rational{num, 1};
    if (exact && places - exponent10 != 0)
      value = mul(*value,
                  rational_power(Rational{10, 1}, exponent10 - places).value_or(Rational{0, 1}));
    n.exact_ok = exact && value && std::abs(exponent10 - places) <= 38;
    if (n.exact_ok) n.value = *value;
    if (point != std::string::npos) {
      const int effective = std::max(0, places - exponent10);
      if (out_.decimal_places < 0 || effective < out_.decimal_places)
        out_.decimal_places = effective;
    }
    return node(std::move(n));
  }

  int function(Fn fn, int depth) {
    int exponent_node = -1, base = -1;
    if (fn == Fn::kLog10 && eat("_")) {
      base = group(depth + 1);
      if (base < 0) return -1;
    }
    if (eat("^")) {
      exponent_node = exponent(depth);
      if (exponent_node < 0) return -1;
    }
    int arg;
    const char c = peek();
    if (c == '(' || c == '{' || c == '[') {
      arg = primary(depth + 1);
    } else {
      arg = power(depth + 1);
      while (arg >= 0 && starts_factor() && !at_function())
        arg = binary(Op::kMul, arg, power(depth + 1));
    }
    if (arg < 0) return -1;
    int result = base >= 0 ? binary(Op::kLogBase, base, arg)
                           : node({.op = Op::kFunction, .a = arg, .fn = fn});
    if (exponent_node >= 0) {
      const Node& e = out_.nodes[exponent_node];
      const bool inverse = e.op == Op::kNeg && out_.nodes[e.a].op == Op::kNumber &&
                           out_.nodes[e.a].value == Rational{1, 1} && fn <= Fn::kTan;
      if (inverse && base < 0) {  // \sin^{-1} x is arcsin x
        out_.nodes[result].fn = static_cast<Fn>(static_cast<int>(fn) + 6);
        return result;
      }
      result = binary(Op::kPow, result, exponent_node);
    }
    return result;
  }

  int bracketed(int depth) {
    const char open = s_[pos_ - 1];
    const char* close = open == '(' ? ")" : open == '[' ? "]" : "}";
    const int inner = expr(depth + 1);
    return inner >= 0 && eat(close) ? inner : -1;
  }

  int primary(int depth) {
    if (depth > kMaxDepth) return -1;
    const char c = peek();
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return number();
    if (eat("(") || eat("{") || eat("[")) return bracketed(depth);
    if (eat("|")) {
      const int inner = expr(depth + 1);
      return inner >= 0 && eat("|") ? node({.op = Op::kFunction, .a = inner, .fn = Fn::kAbs}) : -1;
    }
    if (eat("\\frac")) {
      const int top = group(depth + 1);
      const int bottom = top >= 0 ? group(depth + 1) : -1;
      const int div = binary(Op::kDiv, top, bottom);
      if (div >= 0)
        out_.nodes[div].integer_frac = is_integer_literal(top) && is_integer_literal(bottom);
      return div;
    }
    if (eat("\\binom")) {
      const int top = group(depth + 1);
      return binary(Op::kBinom, top, top >= 0 ? group(depth + 1) : -1);
    }
    if (eat("\\sqrt")) return root(depth);
    if (eat("\\pi")) return constant(Op::kPi);
    if (eat("\\infty")) {
      out_.infinity = true;
      return constant(Op::kInfinity);
    }
    for (const auto& f : kFunctions)
      if (eat(f.latex)) return function(f.fn, depth + 1);
    for (const char* g : kGreek)
      if (eat(g)) return variable(g + 1);
    if (std::isalpha(static_cast<unsigned char>(c))) return letter(std::string(1, s_[pos_++]));
    return -1;
  }

  int root(int depth) {
    int index = -1;
    if (eat("[")) {
      index = expr(depth + 1);
      if (index < 0 || !eat("]")) return -1;
    }
    const int radicand = group(depth + 1);
    if (radicand < 0) return -1;
    if (index < 0) return node({.op = Op::kFunction, .a = radicand, .fn = Fn::kSqrt});
    return binary(Op::kPow, radicand, binary(Op::kDiv, number_node(Rational{1, 1}), index));
  }

  const std::string& s_;
  ParsedExpression& out_;
  std::size_t pos_ = 0;
};

}  // namespace

MathExpression::MathExpression(std::unique_ptr<ParsedExpression> impl) : impl_(std::move(impl)) {}
MathExpression::~MathExpression() = default;
MathExpression::MathExpression(MathExpression&&) noexcept = default;
MathExpression& MathExpression::operator=(MathExpression&&) noexcept = default;

std::optional<MathExpression> MathExpression::parse(const std::string& text) {
  if (text.empty() || text.size() > kMaxLength) return std::nullopt;
  auto impl = std::make_unique<ParsedExpression>();
  Parser parser(text, *impl);
  if (!parser.parse_all()) return std::nullopt;
  return MathExpression(std::move(impl));
}

const std::set<std::string>& MathExpression::variables() const { return impl_->variables; }

std::optional<Rational> MathExpression::exact() const { return impl_->exact(impl_->root); }

Complex MathExpression::evaluate(const std::map<std::string, Complex>& values) const {
  return impl_->evaluate(impl_->root, values);
}

int MathExpression::decimal_places() const { return impl_->decimal_places; }

bool MathExpression::mentions_infinity() const { return impl_->infinity; }

}  // namespace ponder::rewards
