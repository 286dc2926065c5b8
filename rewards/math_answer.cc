#include "rewards/math_answer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <regex>

#include "rewards/math_expression.h"

namespace ponder::rewards {
namespace {

constexpr std::size_t kMaxAnswerBytes = 4096;

std::string trim(std::string s) {
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

std::string strip_text_commands(std::string s) {
  // \text{...} and \mbox{...}: units after a value are dropped, a lone \text{...} is unwrapped.
  for (const char* cmd : {"\\text", "\\textbf", "\\mbox", "\\mathrm", "\\textrm"}) {
    for (std::size_t at = s.find(cmd); at != std::string::npos; at = s.find(cmd, at)) {
      const std::size_t open = at + std::strlen(cmd);
      std::size_t close = 0;
      if (open >= s.size() || s[open] != '{') {
        at = open;
        continue;
      }
      const auto inner = brace_group(s, open, &close);
      if (!inner) break;
      const std::string rest = trim(s.substr(0, at) + s.substr(close + 1));
      const bool is_unit = !rest.empty() && std::string(cmd) != "\\mathrm";
      s.replace(at, close + 1 - at, is_unit ? "" : *inner);
    }
  }
  return s;
}

std::vector<std::string> split_top_level(const std::string& s, char separator) {
  std::vector<std::string> parts;
  int depth = 0;
  std::string current;
  for (char c : s) {
    if (c == '(' || c == '[' || c == '{') ++depth;
    if (c == ')' || c == ']' || c == '}') --depth;
    if (c == separator && depth == 0) {
      parts.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  parts.push_back(current);
  return parts;
}

struct Structured {
  char open = 0, close = 0;  // brackets of a tuple/interval/set; 0 for a bare list
  std::vector<std::string> items;
  bool unordered = false;
};

Structured structure(const std::string& norm) {
  Structured st;
  std::string body = norm;
  if (body.size() >= 4 && body.starts_with("\\{") && body.ends_with("\\}")) {
    st.unordered = true;
    body = body.substr(2, body.size() - 4);
  } else if (body.size() >= 2 && std::string("([").find(body.front()) != std::string::npos &&
             std::string(")]").find(body.back()) != std::string::npos &&
             split_top_level(body.substr(1, body.size() - 2), ',').size() > 1) {
    st.open = body.front();
    st.close = body.back();
    body = body.substr(1, body.size() - 2);
  } else {
    st.unordered = true;  // "1, 2" or "x=1 or x=2": several answers, any order
  }
  for (auto& item : split_top_level(body, ',')) st.items.push_back(item);
  return st;
}

bool close_enough(long double a, long double b, double tolerance) {
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tolerance * std::max<long double>({1.0L, std::fabs(a), std::fabs(b)});
}

// Equal as expressions: same value at several points for every variable either side uses.
bool scalar_equal(const std::string& a, const std::string& b, double tolerance, std::string& how) {
  if (a == b) {
    how = "same normalised text";
    return true;
  }
  const auto ea = MathExpression::parse(a), eb = MathExpression::parse(b);
  if (!ea || !eb) return false;
  std::set<std::string> vars = ea->variables();
  vars.insert(eb->variables().begin(), eb->variables().end());
  const long double points[][3] = {{1.37L, 2.11L, 0.73L}, {2.9L, 1.23L, 3.7L}, {0.61L, 4.3L, 1.9L}};
  int compared = 0;
  for (const auto& p : points) {
    std::map<std::string, long double> values;
    int k = 0;
    for (const auto& v : vars) {
      values[v] = p[k % 3] + 0.17L * k;
      ++k;
    }
    const long double x = ea->evaluate(values), y = eb->evaluate(values);
    if (std::isnan(x) || std::isnan(y)) continue;
    if (!close_enough(x, y, tolerance)) return false;
    ++compared;
    if (vars.empty()) break;
  }
  how = vars.empty() ? "numerically equal" : "equal at random points";
  return compared > 0;
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
  static const std::regex answer_is(R"([Tt]he (?:final )?answer is[:\s]*([^\n]*))");
  std::smatch m;
  std::string last;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), answer_is);
       it != std::sregex_iterator(); ++it)
    last = (*it)[1];
  if (!last.empty()) {
    while (!last.empty() && (last.back() == '.' || last.back() == '$' || last.back() == ' '))
      last.pop_back();
    if (!last.empty() && last.front() == '$') last.erase(0, 1);
    return Extraction{trim(last), "answer_is"};
  }
  if (!options.last_number_fallback) return std::nullopt;
  static const std::regex number(R"(-?\d[\d,]*(?:\.\d+)?)");
  std::string found;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), number);
       it != std::sregex_iterator(); ++it)
    found = it->str();
  if (found.empty()) return std::nullopt;
  return Extraction{found, "last_number"};
}

std::string normalize_answer(const std::string& answer) {
  std::string s = trim(answer.substr(0, kMaxAnswerBytes));
  for (const char* noise : {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle",
                            "\\$", "$", "^\\circ", "^{\\circ}", "\xC2\xB0", "\\dollar"})
    replace_all(s, noise, "");
  static const std::regex conjunction(R"(\\(?:text|textrm|mbox)\{\s*(?:or|and)\s*\})");
  s = std::regex_replace(s, conjunction, ",");
  replace_all(s, "\\dfrac", "\\frac");
  replace_all(s, "\\tfrac", "\\frac");
  replace_all(s, "\\%", "%");
  replace_all(s, "\\le ", "\\leq ");
  replace_all(s, "\\ ", " ");
  s = strip_text_commands(s);
  static const std::regex thousands(R"((^|[^\d.])(\d{1,3}(?:,\d{3})+)(?![\d]))");
  if (s.find_first_of("([{") == std::string::npos) {
    std::string out;
    std::smatch m;
    std::string rest = s;
    while (std::regex_search(rest, m, thousands)) {
      std::string digits = m[2];
      digits.erase(std::remove(digits.begin(), digits.end(), ','), digits.end());
      out += m.prefix().str() + m[1].str() + digits;
      rest = m.suffix();
    }
    s = out + rest;
  }
  // "x = 5" -> "5" (a single equation naming one variable)
  static const std::regex assignment(R"(^\s*[a-zA-Z](?:_\{?\w+\}?)?\s*=\s*([^=]+)$)");
  std::smatch m;
  if (std::regex_match(s, m, assignment)) s = m[1];
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }),
          s.end());
  while (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

Verdict answers_equivalent(const std::string& predicted, const std::string& gold,
                           const EquivalenceOptions& options) {
  Verdict v;
  std::string p = normalize_answer(predicted), g = normalize_answer(gold);
  v.details = {{"predicted_normalized", p}, {"gold_normalized", g}};
  if (p.empty()) {
    v.reason = "empty prediction";
    return v;
  }
  std::string how;
  if (scalar_equal(p, g, options.relative_tolerance, how)) {
    v.equivalent = true;
    v.reason = how;
    return v;
  }
  const Structured sp = structure(p), sg = structure(g);
  if (sp.items.size() != sg.items.size() || sp.open != sg.open || sp.close != sg.close ||
      sp.unordered != sg.unordered || sp.items.size() < 2) {
    v.reason = "different values";
    return v;
  }
  std::vector<bool> used(sg.items.size(), false);
  for (std::size_t i = 0; i < sp.items.size(); ++i) {
    bool matched = false;
    for (std::size_t j = 0; j < sg.items.size() && !matched; ++j) {
      if (used[j] || (!sp.unordered && i != j)) continue;
      std::string unused;
      const auto a = normalize_answer(sp.items[i]), b = normalize_answer(sg.items[j]);
      if (scalar_equal(a, b, options.relative_tolerance, unused)) matched = used[j] = true;
    }
    if (!matched) {
      v.reason =
          "element " + std::to_string(i) + " (" + sp.items[i] + ") has no equal in the gold answer";
      return v;
    }
  }
  v.equivalent = true;
  v.reason = sp.unordered ? "same elements (order ignored)" : "same elements in order";
  return v;
}

}  // namespace ponder::rewards
