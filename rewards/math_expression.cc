#include "rewards/math_expression.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <numbers>
#include <vector>

namespace ponder::rewards {

using Value = long double;
using Node = std::function<Value(const std::map<std::string, Value>&)>;

struct ParsedExpression {
  Node root;
  std::set<std::string> variables;
};

namespace {

constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxLength = 4096;

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}

  std::optional<Node> parse_all(std::set<std::string>& variables) {
    variables_ = &variables;
    auto node = expr(0);
    skip();
    if (!node || pos_ != s_.size()) return std::nullopt;
    return node;
  }

 private:
  void skip() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool eat(const std::string& token) {
    skip();
    if (s_.compare(pos_, token.size(), token) != 0) return false;
    // A command must not be a prefix of a longer command (\pi vs \pm).
    if (token[0] == '\\' && pos_ + token.size() < s_.size() &&
        std::isalpha(static_cast<unsigned char>(s_[pos_ + token.size()])) &&
        std::isalpha(static_cast<unsigned char>(token.back())))
      return false;
    pos_ += token.size();
    return true;
  }
  char peek() {
    skip();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }

  std::optional<Node> expr(int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    auto left = term(depth);
    while (left) {
      if (eat("+")) {
        auto right = term(depth);
        if (!right) return std::nullopt;
        left = [l = *left, r = *right](auto& v) { return l(v) + r(v); };
      } else if (eat("-")) {
        auto right = term(depth);
        if (!right) return std::nullopt;
        left = [l = *left, r = *right](auto& v) { return l(v) - r(v); };
      } else {
        break;
      }
    }
    return left;
  }

  bool starts_primary() {
    const char c = peek();
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '(' || c == '{' || c == '.')
      return true;
    if (c != '\\') return false;
    for (const char* cmd : {"\\frac", "\\sqrt", "\\pi", "\\infty", "\\sin", "\\cos", "\\tan",
                            "\\log", "\\ln", "\\exp", "\\binom"})
      if (s_.compare(pos_, std::strlen(cmd), cmd) == 0) return true;
    return false;
  }

  std::optional<Node> term(int depth) {
    auto left = unary(depth);
    while (left) {
      bool divide = false;
      if (eat("*") || eat("\\cdot") || eat("\\times")) {
      } else if (eat("/") || eat("\\div")) {
        divide = true;
      } else if (!starts_primary()) {
        break;
      }
      auto right = unary(depth);
      if (!right) return std::nullopt;
      if (divide)
        left = [l = *left, r = *right](auto& v) { return l(v) / r(v); };
      else
        left = [l = *left, r = *right](auto& v) { return l(v) * r(v); };
    }
    return left;
  }

  std::optional<Node> unary(int depth) {
    if (eat("-")) {
      auto inner = unary(depth + 1);
      if (!inner) return std::nullopt;
      return [n = *inner](auto& v) { return -n(v); };
    }
    if (eat("+")) return unary(depth + 1);
    return power(depth);
  }

  std::optional<Node> power(int depth) {
    auto base = postfix(depth);
    if (!base || !eat("^")) return base;
    auto exponent = peek() == '{' ? group(depth + 1) : unary(depth + 1);
    if (!exponent) return std::nullopt;
    return [b = *base, e = *exponent](auto& v) { return std::pow(b(v), e(v)); };
  }

  std::optional<Node> postfix(int depth) {
    auto node = primary(depth);
    while (node) {
      if (eat("%")) {
        node = [n = *node](auto& v) { return n(v) / 100; };
      } else if (eat("!")) {
        node = [n = *node](auto& v) { return std::tgamma(n(v) + 1); };
      } else {
        break;
      }
    }
    return node;
  }

  // {expr}, or a single digit/letter as in \frac12.
  std::optional<Node> group(int depth) {
    if (eat("{")) {
      auto inner = expr(depth + 1);
      if (!inner || !eat("}")) return std::nullopt;
      return inner;
    }
    skip();
    if (pos_ < s_.size() && std::isalnum(static_cast<unsigned char>(s_[pos_]))) {
      const char c = s_[pos_++];
      if (std::isdigit(static_cast<unsigned char>(c)))
        return [x = Value(c - '0')](auto&) { return x; };
      return variable(std::string(1, c));
    }
    return primary(depth + 1);
  }

  Node variable(const std::string& name) {
    variables_->insert(name);
    return [name](const std::map<std::string, Value>& v) {
      auto it = v.find(name);
      return it == v.end() ? std::nanl("") : it->second;
    };
  }

  std::optional<Node> number() {
    const std::size_t start = pos_;
    while (pos_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.'))
      ++pos_;
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E') && pos_ + 1 < s_.size() &&
        (std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])) || s_[pos_ + 1] == '-')) {
      pos_ += 2;
      while (pos_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    const std::string text = s_.substr(start, pos_ - start);
    if (text.empty() || text == "." || std::count(text.begin(), text.end(), '.') > 1)
      return std::nullopt;
    const Value x = std::strtold(text.c_str(), nullptr);
    return [x](auto&) { return x; };
  }

  std::optional<Node> function(const char* name, Value (*f)(Value), int depth) {
    if (!eat(name)) return std::nullopt;
    auto arg = peek() == '(' || peek() == '{' ? primary(depth + 1) : power(depth + 1);
    if (!arg) return std::nullopt;
    return [a = *arg, f](auto& v) { return f(a(v)); };
  }

  std::optional<Node> primary(int depth) {
    if (depth > kMaxDepth) return std::nullopt;
    const char c = peek();
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') return number();
    if (eat("(") || eat("{")) {
      const char close = s_[pos_ - 1] == '(' ? ')' : '}';
      auto inner = expr(depth + 1);
      if (!inner || !eat(std::string(1, close))) return std::nullopt;
      return inner;
    }
    const bool binom = eat("\\binom");
    if (binom || eat("\\frac")) {
      auto top = group(depth + 1);
      auto bottom = top ? group(depth + 1) : std::nullopt;
      if (!bottom) return std::nullopt;
      if (binom)
        return [t = *top, b = *bottom](auto& v) {
          return std::tgamma(t(v) + 1) / (std::tgamma(b(v) + 1) * std::tgamma(t(v) - b(v) + 1));
        };
      return [t = *top, b = *bottom](auto& v) { return t(v) / b(v); };
    }
    if (eat("\\sqrt")) {
      std::optional<Node> index;
      if (eat("[")) {
        index = expr(depth + 1);
        if (!index || !eat("]")) return std::nullopt;
      }
      auto radicand = group(depth + 1);
      if (!radicand) return std::nullopt;
      if (index) return [i = *index, r = *radicand](auto& v) { return std::pow(r(v), 1 / i(v)); };
      return [r = *radicand](auto& v) { return std::sqrt(r(v)); };
    }
    if (eat("\\pi")) return [](auto&) { return std::numbers::pi_v<Value>; };
    if (eat("\\infty")) return [](auto&) { return std::numeric_limits<Value>::infinity(); };
    for (auto [name, f] : std::initializer_list<std::pair<const char*, Value (*)(Value)>>{
             {"\\sin", [](Value x) { return std::sin(x); }},
             {"\\cos", [](Value x) { return std::cos(x); }},
             {"\\tan", [](Value x) { return std::tan(x); }},
             {"\\ln", [](Value x) { return std::log(x); }},
             {"\\log", [](Value x) { return std::log(x); }},
             {"\\exp", [](Value x) { return std::exp(x); }}})
      if (auto node = function(name, f, depth)) return node;
    if (std::isalpha(static_cast<unsigned char>(c))) return variable(std::string(1, s_[pos_++]));
    return std::nullopt;
  }

  const std::string& s_;
  std::size_t pos_ = 0;
  std::set<std::string>* variables_ = nullptr;
};

}  // namespace

MathExpression::MathExpression(std::unique_ptr<ParsedExpression> impl) : impl_(std::move(impl)) {}
MathExpression::~MathExpression() = default;
MathExpression::MathExpression(MathExpression&&) noexcept = default;
MathExpression& MathExpression::operator=(MathExpression&&) noexcept = default;

std::optional<MathExpression> MathExpression::parse(const std::string& text) {
  if (text.empty() || text.size() > kMaxLength) return std::nullopt;
  auto impl = std::make_unique<ParsedExpression>();
  Parser parser(text);
  auto root = parser.parse_all(impl->variables);
  if (!root) return std::nullopt;
  impl->root = std::move(*root);
  return MathExpression(std::move(impl));
}

const std::set<std::string>& MathExpression::variables() const { return impl_->variables; }

long double MathExpression::evaluate(const std::map<std::string, long double>& values) const {
  return impl_->root(values);
}

}  // namespace ponder::rewards
