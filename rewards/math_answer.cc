#include "rewards/math_answer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <vector>

#include "rewards/math_expression.h"

namespace ponder::rewards {
namespace {

constexpr std::size_t kMaxAnswerBytes = 4096;
constexpr std::size_t kMaxItems = 64;  // larger collections are compared as sorted text
constexpr int kMaxStructureDepth = 4;
constexpr int kMaxComparisons = 1024;

bool is_digit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool is_alpha(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\n\r");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\n\r") - begin + 1);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (std::size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}

// Content of the brace group opening at `open`, or nullopt if unbalanced.
std::optional<std::string> brace_group(const std::string& s, std::size_t open,
                                       std::size_t* end = nullptr) {
  int depth = 0;
  for (std::size_t i = open; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    if (s[i] == '}' && --depth == 0) {
      if (end) *end = i;
      return s.substr(open + 1, i - open - 1);
    }
  }
  return std::nullopt;
}

std::optional<std::string> last_boxed(const std::string& text) {
  std::size_t at = std::string::npos;
  for (const char* cmd : {"\\boxed", "\\fbox"}) {
    const auto found = text.rfind(cmd);
    if (found != std::string::npos && (at == std::string::npos || found > at)) at = found;
  }
  if (at == std::string::npos) return std::nullopt;
  std::size_t i = text.find_first_not_of(' ', at + (text.compare(at, 6, "\\boxed") == 0 ? 6 : 5));
  if (i == std::string::npos) return std::nullopt;
  if (text[i] == '{') return brace_group(text, i);
  const auto end = text.find_first_of("$\n", i);
  return trim(text.substr(i, end == std::string::npos ? end : end - i));
}

// "... the answer is $17$." -> "17": the first $...$ after it (which may span lines), else the
// rest of the line.
std::optional<std::string> answer_is(const std::string& text) {
  const auto at = text.rfind("answer is");
  if (at == std::string::npos) return std::nullopt;
  std::size_t begin = text.find_first_not_of(" :", at + 9);
  if (begin == std::string::npos) return std::nullopt;
  std::string rest;
  if (text[begin] == '$') {
    auto close = text.find('$', begin + 1);
    while (close != std::string::npos && text[close - 1] == '\\') close = text.find('$', close + 1);
    rest =
        text.substr(begin + 1, close == std::string::npos ? std::string::npos : close - begin - 1);
  } else {
    const auto end = text.find('\n', begin);
    rest = text.substr(begin, end == std::string::npos ? end : end - begin);
  }
  while (!rest.empty() && (rest.back() == '.' || rest.back() == '$' || rest.back() == ' '))
    rest.pop_back();
  rest = trim(rest);
  return rest.empty() ? std::nullopt : std::optional(rest);
}

// The last number in the text: -?digits with thousands commas and a decimal part.
std::optional<std::string> last_number(const std::string& text) {
  std::size_t end = text.size();
  while (end > 0 && !is_digit(text[end - 1])) --end;
  if (end == 0) return std::nullopt;
  std::size_t begin = end;
  while (begin > 0 && (is_digit(text[begin - 1]) || text[begin - 1] == ',' ||
                       (text[begin - 1] == '.' && begin >= 2 && is_digit(text[begin - 2]))))
    --begin;
  while (text[begin] == ',' || text[begin] == '.') ++begin;
  if (begin > 0 && text[begin - 1] == '-') --begin;
  return text.substr(begin, end - begin);
}

std::string drop_text_commands(std::string s) {
  // \text{or} / \text{and} between answers separate them; other \text{...} after a value is a
  // unit (dropped, with a ^2 / ^3 after it); a lone \text{...} is unwrapped.
  for (const char* cmd : {"\\textbf", "\\textrm", "\\text", "\\mbox", "\\mathrm", "\\mathbf"}) {
    const std::size_t len = std::strlen(cmd);
    for (std::size_t at = s.find(cmd); at != std::string::npos; at = s.find(cmd, at)) {
      std::size_t close = 0;
      if (at + len >= s.size() || s[at + len] != '{') {
        at += len;
        continue;
      }
      const auto inner = brace_group(s, at + len, &close);
      if (!inner) break;
      const std::string word = trim(*inner);
      std::size_t after = close + 1;
      if (word == "or" || word == "and") {
        s.replace(at, after - at, ",");
        continue;
      }
      const bool is_unit = !trim(s.substr(0, at) + s.substr(after)).empty() &&
                           std::strcmp(cmd, "\\mathrm") != 0 && std::strcmp(cmd, "\\mathbf") != 0;
      if (is_unit && after + 1 < s.size() && s[after] == '^' && (is_digit(s[after + 1])))
        after += 2;
      else if (is_unit && s.compare(after, 4, "^{2}") == 0)
        after += 4;
      s.replace(at, after - at, is_unit ? "" : *inner);
    }
  }
  return s;
}

// "11,\\! 111,\\! 100": TeX's thin-space-after-comma thousands style loses the spaces.
std::string join_spaced_thousands(std::string s) {
  for (std::size_t at = s.find(",\\!"); at != std::string::npos; at = s.find(",\\!", at + 1)) {
    std::size_t end = at + 3;
    while (end < s.size() && is_space(s[end])) ++end;
    s.replace(at, end - at, ",");
  }
  return s;
}

// Removes thousands separators ("1,234,567" -> "1234567") in answers without brackets.
std::string drop_thousands_separators(const std::string& s) {
  if (s.find_first_of("([{") != std::string::npos) return s;
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t j = i;
    const bool boundary = i == 0 || (!is_digit(s[i - 1]) && s[i - 1] != '.');
    while (j < s.size() && is_digit(s[j])) ++j;
    const std::size_t lead = j - i;
    std::size_t k = j, groups = 0;
    while (k + 3 < s.size() && s[k] == ',' && is_digit(s[k + 1]) && is_digit(s[k + 2]) &&
           is_digit(s[k + 3]) && (k + 4 >= s.size() || !is_digit(s[k + 4]))) {
      k += 4;
      ++groups;
    }
    if (boundary && lead >= 1 && lead <= 3 && groups > 0) {
      for (std::size_t c = i; c < k; ++c)
        if (s[c] != ',') out += s[c];
      i = k;
    } else if (lead > 0) {
      out += s.substr(i, lead);
      i = j;
    } else {
      out += s[i++];
    }
  }
  return out;
}

bool is_variable_name(const std::string& s) {
  if (s.empty() || !is_alpha(s[0])) return false;
  if (s.size() == 1) return true;
  return s[1] == '_' && s.size() > 2 && std::all_of(s.begin() + 2, s.end(), [](char c) {
           return std::isalnum(c) || c == '{' || c == '}';
         });
}

// "x = 5", "f(x) = 2x", "x \in [1,2)" -> the right-hand side.
std::string drop_assignment(const std::string& s) {
  auto lhs_ok = [](std::string lhs) {
    lhs = trim(lhs);
    if (lhs.size() == 4 && lhs[1] == '(' && is_alpha(lhs[2]) && lhs[3] == ')')
      lhs = lhs.substr(0, 1);
    return is_variable_name(lhs);
  };
  const auto eq = s.find('=');
  if (eq != std::string::npos && s.find('=', eq + 1) == std::string::npos &&
      s.find(',') == std::string::npos && lhs_ok(s.substr(0, eq)))
    return trim(s.substr(eq + 1));
  const auto in = s.find("\\in");
  if (in != std::string::npos && lhs_ok(s.substr(0, in)) &&
      (in + 3 >= s.size() || !is_alpha(s[in + 3])))
    return trim(s.substr(in + 3));
  return s;
}

// "52_8", "1202_{3}": a number written in a base; the base itself is the question's.
std::string drop_base_subscript(const std::string& s) {
  const auto at = s.find('_');
  if (at == std::string::npos || at == 0) return s;
  const std::string digits = s.substr(s[0] == '-' ? 1 : 0, at - (s[0] == '-' ? 1 : 0));
  std::string base = s.substr(at + 1);
  if (base.size() > 2 && base.front() == '{' && base.back() == '}')
    base = base.substr(1, base.size() - 2);
  const bool ok = !digits.empty() && std::any_of(digits.begin(), digits.end(), is_digit) &&
                  std::all_of(digits.begin(), digits.end(),
                              [](char c) { return is_digit(c) || (c >= 'A' && c <= 'Z'); }) &&
                  !base.empty() && base.size() <= 2 &&
                  std::all_of(base.begin(), base.end(), is_digit);
  return ok ? s.substr(0, at) : s;
}

// Whitespace goes, except one space that keeps a command apart from a letter ("\sec x").
std::string squeeze_spaces(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (!is_space(s[i])) {
      out += s[i];
      continue;
    }
    while (i + 1 < s.size() && is_space(s[i + 1])) ++i;
    std::size_t word = out.size();
    while (word > 0 && is_alpha(out[word - 1])) --word;
    const bool after_command = word < out.size() && word > 0 && out[word - 1] == '\\';
    if (after_command && i + 1 < s.size() && is_alpha(s[i + 1])) out += ' ';
  }
  return out;
}

std::string unwrap_boxed(std::string s) {
  for (const char* cmd : {"\\boxed{", "\\fbox{"}) {
    std::size_t end = 0;
    if (s.starts_with(cmd) && brace_group(s, std::strlen(cmd) - 1, &end) && end + 1 == s.size())
      s = s.substr(std::strlen(cmd), s.size() - std::strlen(cmd) - 1);
  }
  return s;
}

std::vector<std::string> split_top_level(const std::string& s, const std::string& separator) {
  std::vector<std::string> parts;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (depth == 0 && s.compare(i, separator.size(), separator) == 0) {
      parts.push_back(s.substr(start, i - start));
      start = i + separator.size();
      i = start - 1;
    }
  }
  parts.push_back(s.substr(start));
  return parts;
}

}  // namespace

std::optional<Extraction> extract_answer(const std::string& text, const ExtractOptions& options) {
  if (auto boxed = last_boxed(text)) return Extraction{trim(*boxed), "boxed"};
  if (const auto at = text.rfind("####"); at != std::string::npos) {
    const auto end = text.find('\n', at);
    return Extraction{trim(text.substr(at + 4, end == std::string::npos ? end : end - at - 4)),
                      "gsm8k"};
  }
  if (const auto open = text.rfind("<answer>"); open != std::string::npos) {
    const auto close = text.find("</answer>", open);
    if (close != std::string::npos)
      return Extraction{trim(text.substr(open + 8, close - open - 8)), "answer_tag"};
  }
  if (auto stated = answer_is(text)) return Extraction{*stated, "answer_is"};
  if (!options.last_number_fallback) return std::nullopt;
  if (auto number = last_number(text)) return Extraction{*number, "last_number"};
  return std::nullopt;
}

std::string normalize_answer(const std::string& answer) {
  std::string s = unwrap_boxed(trim(answer.substr(0, kMaxAnswerBytes)));
  s = join_spaced_thousands(s);
  for (const char* noise :
       {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle", "\\$", "$", "^\\circ",
        "^{\\circ}", "\xC2\xB0", "\\dollar", "\\qquad", "\\quad", "~"})
    replace_all(s, noise, "");
  const std::pair<const char*, const char*> rewrites[] = {{"{,}", ","},
                                                          {"\\dfrac", "\\frac"},
                                                          {"\\tfrac", "\\frac"},
                                                          {"\\%", "%"},
                                                          {"\\leqslant", "\\le"},
                                                          {"\\geqslant", "\\ge"},
                                                          {"\\leq", "\\le"},
                                                          {"\\geq", "\\ge"},
                                                          {"\\lt", "<"},
                                                          {"\\gt", ">"},
                                                          {"\xE2\x89\xA4", "\\le"},
                                                          {"\xE2\x89\xA5", "\\ge"},
                                                          {"{bmatrix}", "{pmatrix}"},
                                                          {"{vmatrix}", "{pmatrix}"},
                                                          {"{matrix}", "{pmatrix}"},
                                                          {"\\lvert", "|"},
                                                          {"\\rvert", "|"},
                                                          {"\\ ", " "}};
  for (const auto& [from, to] : rewrites) replace_all(s, from, to);
  s = drop_text_commands(s);
  for (const char* conjunction : {" or ", " and "}) replace_all(s, conjunction, ",");
  s = trim(s);
  s = drop_thousands_separators(s);
  s = drop_base_subscript(drop_assignment(trim(s)));
  s = squeeze_spaces(s);
  while (!s.empty() && (s.back() == '.' || s.back() == ',')) s.pop_back();
  return s;
}

namespace {

struct Interval {
  std::string lo, hi;
  bool lo_closed = false, hi_closed = false;
};

enum class Kind { kScalar, kSequence, kCollection, kIntervals, kMatrix };

// A normalised answer's shape: one value, a tuple or interval in brackets, an unordered
// collection ({...} or "a, b"), a union of intervals (or inequalities), or a matrix.
struct Answer {
  Kind kind = Kind::kScalar;
  std::string text;
  char open = 0, close = 0;
  std::vector<std::string> items;
  std::size_t columns = 0;
  std::vector<Interval> intervals;
};

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kScalar:
      return "a single value";
    case Kind::kSequence:
      return "a tuple";
    case Kind::kCollection:
      return "a set of answers";
    case Kind::kIntervals:
      return "intervals";
    case Kind::kMatrix:
      return "a matrix";
  }
  return "";
}

bool bracketed(const std::string& s, char& open, char& close) {
  if (s.size() < 2 || std::string("([").find(s.front()) == std::string::npos ||
      std::string(")]").find(s.back()) == std::string::npos)
    return false;
  int depth = 0;  // the opening bracket must close at the very end
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(' || s[i] == '[' || s[i] == '{') ++depth;
    if (s[i] == ')' || s[i] == ']' || s[i] == '}') --depth;
    if (depth == 0 && i + 1 < s.size()) return false;
  }
  open = s.front();
  close = s.back();
  return true;
}

std::optional<Interval> as_interval(const std::string& s) {
  char open = 0, close = 0;
  if (!bracketed(s, open, close)) return std::nullopt;
  const auto parts = split_top_level(s.substr(1, s.size() - 2), ",");
  if (parts.size() != 2) return std::nullopt;
  return Interval{parts[0], parts[1], open == '[', close == ']'};
}

// "x > 3" -> (3, \infty); "-1 \le x < 2" -> [-1, 2).
std::optional<Interval> inequality(const std::string& s) {
  std::vector<std::string> parts;
  std::vector<std::pair<bool, bool>> ops;  // (less, strict)
  std::size_t start = 0;
  int depth = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '(' || s[i] == '[' || s[i] == '{') ++depth;
    if (s[i] == ')' || s[i] == ']' || s[i] == '}') --depth;
    std::size_t len = 0;
    std::pair<bool, bool> op;
    if (depth != 0) continue;
    if (s[i] == '<' || s[i] == '>') {
      len = 1;
      op = {s[i] == '<', true};
    } else if (s.compare(i, 3, "\\le") == 0 || s.compare(i, 3, "\\ge") == 0) {
      len = 3;
      op = {s[i + 1] == 'l', false};
    }
    if (len == 0) continue;
    parts.push_back(trim(s.substr(start, i - start)));
    ops.push_back(op);
    start = i + len;
    i = start - 1;
  }
  parts.push_back(trim(s.substr(start)));
  if (parts.size() == 2 && is_variable_name(parts[0])) {
    const auto [less, strict] = ops[0];
    return less ? Interval{"-\\infty", parts[1], false, !strict}
                : Interval{parts[1], "\\infty", !strict, false};
  }
  if (parts.size() == 2 && is_variable_name(parts[1])) {
    const auto [less, strict] = ops[0];
    return less ? Interval{parts[0], "\\infty", !strict, false}
                : Interval{"-\\infty", parts[0], false, !strict};
  }
  if (parts.size() == 3 && is_variable_name(parts[1]) && ops[0].first == ops[1].first) {
    const bool less = ops[0].first;
    const auto& lo = less ? parts[0] : parts[2];
    const auto& hi = less ? parts[2] : parts[0];
    return Interval{lo, hi, !(less ? ops[0] : ops[1]).second, !(less ? ops[1] : ops[0]).second};
  }
  return std::nullopt;
}

bool as_intervals(const std::vector<std::string>& parts, std::vector<Interval>& out) {
  for (const auto& p : parts) {
    auto interval = inequality(p);
    if (!interval) interval = as_interval(p);
    if (!interval) return false;
    out.push_back(*interval);
  }
  return true;
}

bool as_matrix(const std::string& s, Answer& a) {
  const std::string begin = "\\begin{pmatrix}", end = "\\end{pmatrix}";
  if (!s.starts_with(begin) || !s.ends_with(end)) return false;
  const auto rows =
      split_top_level(s.substr(begin.size(), s.size() - begin.size() - end.size()), "\\\\");
  for (const auto& row : rows) {
    if (trim(row).empty() && &row == &rows.back() && rows.size() > 1) continue;  // trailing "\\"
    const auto cells = split_top_level(row, "&");
    if (a.columns != 0 && cells.size() != a.columns) return false;
    a.columns = cells.size();
    a.items.insert(a.items.end(), cells.begin(), cells.end());
  }
  a.kind = Kind::kMatrix;
  return true;
}

Answer structure(const std::string& norm) {
  Answer a;
  a.text = norm;
  if (as_matrix(norm, a)) return a;
  if (const auto pieces = split_top_level(norm, "\\cup"); pieces.size() > 1) {
    if (as_intervals(pieces, a.intervals)) a.kind = Kind::kIntervals;
    return a;
  }
  if (norm.size() >= 4 && norm.starts_with("\\{") && norm.ends_with("\\}")) {
    a.kind = Kind::kCollection;
    a.items = split_top_level(norm.substr(2, norm.size() - 4), ",");
    return a;
  }
  if (bracketed(norm, a.open, a.close)) {
    a.items = split_top_level(norm.substr(1, norm.size() - 2), ",");
    if (a.items.size() > 1) a.kind = Kind::kSequence;
    return a;
  }
  if (auto items = split_top_level(norm, ","); items.size() > 1) {
    a.kind = as_intervals(items, a.intervals) ? Kind::kIntervals : Kind::kCollection;
    a.items = std::move(items);
    return a;
  }
  if (auto interval = inequality(norm)) {
    a.kind = Kind::kIntervals;
    a.intervals = {*interval};
    return a;
  }
  if (const auto pm = split_top_level(norm, "\\pm"); pm.size() == 2) {
    a.kind = Kind::kCollection;
    a.items = {pm[0] + "+" + pm[1], pm[0] + "-" + pm[1]};
  }
  return a;
}

bool is_integer_literal(const std::string& s) {
  const std::size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
  return s.size() > start && std::all_of(s.begin() + start, s.end(), is_digit);
}

std::string strip_leading_zeros(const std::string& s) {
  const bool negative = s[0] == '-';
  std::string digits = s.substr(negative ? 1 : 0);
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size() - 1));
  return (negative && digits != "0" ? "-" : "") + digits;
}

bool is_word(const std::string& s) {
  return s.size() >= 3 && std::all_of(s.begin(), s.end(), is_alpha);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string to_string(const Rational& r) {
  auto str = [](__int128 v) {
    if (v == 0) return std::string("0");
    const bool negative = v < 0;
    std::string out;
    for (; v != 0; v /= 10) out += static_cast<char>('0' + (negative ? -(v % 10) : v % 10));
    if (negative) out += '-';
    return std::string(out.rbegin(), out.rend());
  };
  return r.den == 1 ? str(r.num) : str(r.num) + "/" + str(r.den);
}

// |x - y| within the noise of long double evaluation, or, when a decimal literal takes part, under
// the smaller of the relative tolerance and one unit in its last written place (so 0.333333 and
// a truncated 0.7647058823 pass for 1/3 and 13/17, but 12345.68 != 12345.67).
bool close_enough(const Complex& x, const Complex& y, int decimals, double relative) {
  const long double scale = std::max<long double>({1.0L, std::abs(x), std::abs(y)});
  const long double noise = 1e-12L * scale, diff = std::abs(x - y);
  if (diff <= noise) return true;
  return decimals >= 0 &&
         diff < noise + std::min<long double>(relative * scale, std::pow(10.0L, -decimals));
}

struct Comparison {
  bool equal = false;
  std::string how;
};

// Per-verdict state: the tolerance and the work left (scalar comparisons), so nested
// collections cannot multiply into a hang.
struct Context {
  double relative = 1e-6;
  int comparisons_left = kMaxComparisons;
};

Comparison out_of_work() {
  return {false, "work bound reached (" + std::to_string(kMaxComparisons) + " comparisons)"};
}

Comparison compare_values(const MathExpression& x, const MathExpression& y, double relative) {
  const int decimals = std::min(x.decimal_places() < 0 ? 99 : x.decimal_places(),
                                y.decimal_places() < 0 ? 99 : y.decimal_places());
  const int places = decimals == 99 ? -1 : decimals;
  const auto ex = x.exact(), ey = y.exact();
  if (ex && ey) {
    if (*ex == *ey) return {true, "exactly equal (" + to_string(*ex) + ")"};
    const bool close = places >= 0 && rationals_close(*ex, *ey, places, relative);
    return {close, close ? "equal to the " + std::to_string(places) + " decimals written"
                         : "different values " + to_string(*ex) + " vs " + to_string(*ey)};
  }
  std::set<std::string> vars = x.variables();
  vars.insert(y.variables().begin(), y.variables().end());
  int compared = 0;
  for (int point = 0; point < (vars.empty() ? 1 : 5); ++point) {
    std::map<std::string, Complex> values;
    int k = 0;
    for (const auto& v : vars)
      values[v] = 0.5L + std::fmod(0.618034L * (point * 7 + k++ * 3 + 1), 3.0L);
    const Complex a = x.evaluate(values), b = y.evaluate(values);
    const bool a_ok = std::isfinite(a.real()) && std::isfinite(a.imag());
    const bool b_ok = std::isfinite(b.real()) && std::isfinite(b.imag());
    if (!a_ok || !b_ok) {
      if (x.mentions_infinity() && y.mentions_infinity() && a == b && std::isinf(a.real()))
        return {true, "same infinity"};
      continue;
    }
    if (!close_enough(a, b, places, relative))
      return {false, vars.empty() ? "different values" : "different values at a test point"};
    ++compared;
  }
  if (compared == 0) return {false, "not comparable (undefined or overflowing values)"};
  return {true, vars.empty() ? "numerically equal"
                             : "equal at " + std::to_string(compared) + " test points"};
}

Comparison scalar_equal(const std::string& a, const std::string& b, Context& ctx) {
  if (a == b) return {true, "same normalised text"};
  if (--ctx.comparisons_left < 0) return out_of_work();
  if (is_integer_literal(a) && is_integer_literal(b)) {
    const bool same = strip_leading_zeros(a) == strip_leading_zeros(b);
    return {same, same ? "same integer" : "different integers " + a + " vs " + b};
  }
  if (is_word(a) || is_word(b)) {
    const bool same = lower(a) == lower(b);
    return {same, same ? "same word" : "different words"};
  }
  const auto x = MathExpression::parse(a);
  const auto y = x ? MathExpression::parse(b) : std::nullopt;
  if (!x || !y) return {false, "different text, and '" + (x ? b : a) + "' is not an expression"};
  return compare_values(*x, *y, ctx.relative);
}

Comparison compare_answers(const std::string& p, const std::string& g, Context& ctx, int depth);

Comparison compare_items(const std::vector<std::string>& p, const std::vector<std::string>& g,
                         bool ordered, Context& ctx, int depth) {
  if (p.size() != g.size())
    return {false, std::to_string(p.size()) + " elements vs " + std::to_string(g.size())};
  if (p.size() > kMaxItems) {
    auto sp = p, sg = g;
    std::sort(sp.begin(), sp.end());
    std::sort(sg.begin(), sg.end());
    return {sp == sg, "compared as text (more than 64 elements)"};
  }
  std::vector<bool> used(g.size(), false);
  for (std::size_t i = 0; i < p.size(); ++i) {
    bool matched = false;
    for (std::size_t j = 0; j < g.size() && !matched; ++j) {
      if (used[j] || (ordered && i != j)) continue;
      matched = used[j] =
          compare_answers(normalize_answer(p[i]), normalize_answer(g[j]), ctx, depth + 1).equal;
    }
    if (!matched)
      return {false, "element " + std::to_string(i + 1) + " (" + trim(p[i]) +
                         ") has no equal in the gold answer"};
  }
  return {true, ordered ? "same elements in order" : "same elements (order ignored)"};
}

Comparison compare_intervals(const std::vector<Interval>& p, const std::vector<Interval>& g,
                             Context& ctx) {
  if (p.size() != g.size()) return {false, "different number of intervals"};
  std::vector<bool> used(g.size(), false);
  for (const auto& x : p) {
    bool matched = false;
    for (std::size_t j = 0; j < g.size() && !matched; ++j) {
      const auto& y = g[j];
      matched = used[j] = !used[j] && x.lo_closed == y.lo_closed && x.hi_closed == y.hi_closed &&
                          scalar_equal(normalize_answer(x.lo), normalize_answer(y.lo), ctx).equal &&
                          scalar_equal(normalize_answer(x.hi), normalize_answer(y.hi), ctx).equal;
    }
    if (!matched)
      return {false, "interval with ends " + x.lo + ", " + x.hi + " (or its brackets) differs"};
  }
  return {true, "same intervals"};
}

Comparison compare_answers(const std::string& p, const std::string& g, Context& ctx, int depth) {
  if (p == g) return {true, "same normalised text"};
  if (--ctx.comparisons_left < 0) return out_of_work();
  if (depth > kMaxStructureDepth) return {false, "nested too deeply; texts differ"};
  Answer ap = structure(p), ag = structure(g);
  for (Answer* a : {&ap, &ag})  // a tuple of two numbers may also be read as an interval
    if (a->kind == Kind::kSequence && (ap.kind == Kind::kIntervals || ag.kind == Kind::kIntervals))
      if (auto interval = as_interval(a->text)) {
        a->kind = Kind::kIntervals;
        a->intervals = {*interval};
      }
  if (ap.kind == Kind::kCollection && ap.items.size() == 1)
    ap = structure(normalize_answer(ap.items[0]));
  if (ag.kind == Kind::kCollection && ag.items.size() == 1)
    ag = structure(normalize_answer(ag.items[0]));
  if (ap.kind != ag.kind)
    return {false,
            std::string(kind_name(ap.kind)) + " vs " + kind_name(ag.kind) + " in the gold answer"};
  switch (ap.kind) {
    case Kind::kScalar:
      return scalar_equal(ap.text, ag.text, ctx);
    case Kind::kIntervals:
      return compare_intervals(ap.intervals, ag.intervals, ctx);
    case Kind::kCollection:
      return compare_items(ap.items, ag.items, false, ctx, depth);
    case Kind::kMatrix:
      if (ap.columns != ag.columns) return {false, "matrices of different shapes"};
      return compare_items(ap.items, ag.items, true, ctx, depth);
    case Kind::kSequence:
      if (ap.open != ag.open || ap.close != ag.close) return {false, "different brackets"};
      return compare_items(ap.items, ag.items, true, ctx, depth);
  }
  return {};
}

}  // namespace

Verdict answers_equivalent(const std::string& predicted, const std::string& gold,
                           const EquivalenceOptions& options) {
  Verdict v;
  if (predicted.size() > kMaxAnswerBytes || gold.size() > kMaxAnswerBytes) {
    v.equivalent = trim(predicted) == trim(gold);
    v.reason = "over 4096 bytes: compared as text only";
    v.details = {{"predicted_bytes", predicted.size()}, {"gold_bytes", gold.size()}};
    return v;
  }
  const std::string p = normalize_answer(predicted), g = normalize_answer(gold);
  v.details = {{"predicted_normalized", p}, {"gold_normalized", g}};
  if (p.empty()) {
    v.reason = "empty prediction";
    return v;
  }
  Context ctx{.relative = options.relative_tolerance};
  Comparison c = compare_answers(p, g, ctx, 0);
  // "50%" also matches 50 (the percentage's number), as graders commonly accept.
  for (const auto& [x, y] : {std::pair{p, g}, std::pair{g, p}}) {
    if (c.equal || x.size() < 2 || x.back() != '%') continue;
    const Comparison without = compare_answers(x.substr(0, x.size() - 1), y, ctx, 0);
    if (without.equal) c = {true, without.how + " (ignoring %)"};
  }
  v.equivalent = c.equal;
  v.reason = c.how;
  return v;
}

}  // namespace ponder::rewards
