#include "store/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace ponder::store {
namespace {

struct Range {
  double low, high;
  double span() const { return high - low; }
};

Range padded_range(double low, double high) {
  if (!(high > low)) {
    const double pad = std::abs(low) > 0 ? std::abs(low) * 0.1 : 1.0;
    return {low - pad, high + pad};
  }
  const double pad = (high - low) * 0.05;
  return {low - pad, high + pad};
}

std::string format_tick(double value) {
  if (value != 0 && (std::abs(value) >= 1e5 || std::abs(value) < 1e-3))
    return fmt::format("{:.2e}", value);
  return fmt::format("{:.4g}", value);
}

}  // namespace

std::string html_escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string render_line_chart(const Series& series, int width, int height) {
  constexpr int kLeft = 56, kRight = 12, kTop = 26, kBottom = 28;
  const int plot_w = width - kLeft - kRight, plot_h = height - kTop - kBottom;
  std::vector<std::pair<double, double>> finite;
  for (const auto& p : series.points)
    if (std::isfinite(p.second)) finite.push_back(p);
  std::string svg = fmt::format(
      R"(<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)"
      R"(<rect width="100%" height="100%" fill="#fff"/>)"
      R"(<text x="{}" y="16" font-size="13" font-family="sans-serif" font-weight="bold">{}</text>)",
      width, height, width, height, kLeft, html_escape(series.name));
  if (finite.empty())
    return svg + R"(<text x="60" y="110" font-size="12">no finite values</text></svg>)";
  auto [min_y, max_y] = std::minmax_element(finite.begin(), finite.end(),
                                            [](auto& a, auto& b) { return a.second < b.second; });
  const Range y = padded_range(min_y->second, max_y->second);
  const Range x = padded_range(finite.front().first, finite.back().first);
  auto px = [&](double v) { return kLeft + (v - x.low) / x.span() * plot_w; };
  auto py = [&](double v) { return kTop + (1.0 - (v - y.low) / y.span()) * plot_h; };
  svg += fmt::format(
      R"(<rect class="plot" x="{}" y="{}" width="{}" height="{}" fill="#f7f7fb" stroke="#999"/>)",
      kLeft, kTop, plot_w, plot_h);
  for (int i = 0; i <= 4; ++i) {
    const double value = y.low + y.span() * i / 4.0;
    svg += fmt::format(
        R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#ddd"/>)"
        R"(<text x="{3}" y="{4:.1f}" font-size="10" text-anchor="end" font-family="sans-serif">{5}</text>)",
        kLeft, kLeft + plot_w, py(value), kLeft - 4, py(value) + 3, format_tick(value));
  }
  svg += fmt::format(
      R"(<text x="{}" y="{}" font-size="10" font-family="sans-serif">step {}</text>)"
      R"(<text x="{}" y="{}" font-size="10" text-anchor="end" font-family="sans-serif">step {}</text>)",
      kLeft, height - 8, format_tick(finite.front().first), kLeft + plot_w, height - 8,
      format_tick(finite.back().first));
  std::string points;
  for (const auto& [step, value] : finite)
    points += fmt::format("{:.1f},{:.1f} ", px(step), py(value));
  svg += fmt::format(
      R"(<polyline class="series" fill="none" stroke="#2060c0" stroke-width="2" points="{}"/>)",
      points);
  if (finite.size() == 1)
    svg += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="#2060c0"/>)",
                       px(finite[0].first), py(finite[0].second));
  svg += fmt::format(
      R"(<text x="{}" y="16" font-size="11" text-anchor="end" font-family="sans-serif">last {}</text></svg>)",
      width - kRight, format_tick(finite.back().second));
  return svg;
}

}  // namespace ponder::store
