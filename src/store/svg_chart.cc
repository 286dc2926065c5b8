#include "store/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <iterator>

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

namespace {

constexpr const char* kColours[] = {"#2060c0", "#d04020", "#20a040",
                                    "#9040c0", "#c09000", "#00a0b0"};
constexpr int kLeft = 56, kRight = 12, kTop = 26, kBottom = 28, kLegendRow = 15;

std::vector<std::pair<double, double>> finite_points(const Series& series) {
  std::vector<std::pair<double, double>> finite;
  for (const auto& p : series.points)
    if (std::isfinite(p.second)) finite.push_back(p);
  return finite;
}

// The chart frame: plot area, grid of the value range `y`, the first and last step under it.
std::string render_axes(Range y, double first_step, double last_step, int width, int height) {
  const int plot_w = width - kLeft - kRight, plot_h = height - kTop - kBottom;
  auto py = [&](double v) { return kTop + (1.0 - (v - y.low) / y.span()) * plot_h; };
  std::string svg = fmt::format(
      R"(<rect class="plot" x="{}" y="{}" width="{}" height="{}" fill="#f7f7fb" stroke="#999"/>)",
      kLeft, kTop, plot_w, plot_h);
  for (int i = 0; i <= 4; ++i) {
    const double value = y.low + y.span() * i / 4.0;
    svg += fmt::format(
        R"(<line x1="{0}" x2="{1}" y1="{2:.1f}" y2="{2:.1f}" stroke="#ddd"/>)"
        R"(<text x="{3}" y="{4:.1f}" font-size="10" text-anchor="end" font-family="sans-serif">{5}</text>)",
        kLeft, kLeft + plot_w, py(value), kLeft - 4, py(value) + 3, format_tick(value));
  }
  return svg +
         fmt::format(
             R"(<text x="{}" y="{}" font-size="10" font-family="sans-serif">step {}</text>)"
             R"(<text x="{}" y="{}" font-size="10" text-anchor="end" font-family="sans-serif">step {}</text>)",
             kLeft, height - 8, format_tick(first_step), kLeft + plot_w, height - 8,
             format_tick(last_step));
}

}  // namespace

std::string render_multi_line_chart(const std::string& title, const std::vector<Series>& series,
                                    int width, int height) {
  const bool legend = series.size() > 1;
  const int total_h = height + (legend ? kLegendRow * static_cast<int>(series.size()) : 0);
  const int plot_w = width - kLeft - kRight, plot_h = height - kTop - kBottom;
  std::vector<std::vector<std::pair<double, double>>> finite;
  double min_x = INFINITY, max_x = -INFINITY, min_y = INFINITY, max_y = -INFINITY;
  for (const Series& s : series) {
    finite.push_back(finite_points(s));
    for (const auto& [step, value] : finite.back()) {
      min_x = std::min(min_x, step), max_x = std::max(max_x, step);
      min_y = std::min(min_y, value), max_y = std::max(max_y, value);
    }
  }
  std::string svg = fmt::format(
      R"(<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}">)"
      R"(<rect width="100%" height="100%" fill="#fff"/>)"
      R"(<text x="{}" y="16" font-size="13" font-family="sans-serif" font-weight="bold">{}</text>)",
      width, total_h, width, total_h, kLeft, html_escape(title));
  if (!(min_x <= max_x))
    return svg + R"(<text x="60" y="110" font-size="12">no finite values</text></svg>)";
  const Range y = padded_range(min_y, max_y), x = padded_range(min_x, max_x);
  svg += render_axes(y, min_x, max_x, width, height);
  auto px = [&](double v) { return kLeft + (v - x.low) / x.span() * plot_w; };
  auto py = [&](double v) { return kTop + (1.0 - (v - y.low) / y.span()) * plot_h; };
  for (std::size_t i = 0; i < series.size(); ++i) {
    const char* colour = kColours[i % std::size(kColours)];
    const auto& points = finite[i];
    std::string line;
    for (const auto& [step, value] : points)
      line += fmt::format("{:.1f},{:.1f} ", px(step), py(value));
    svg += fmt::format(
        R"(<polyline class="series" fill="none" stroke="{}" stroke-width="2" points="{}"/>)",
        colour, line);
    if (points.size() == 1)
      svg += fmt::format(R"(<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"/>)",
                         px(points[0].first), py(points[0].second), colour);
    const std::string last = points.empty() ? "-" : format_tick(points.back().second);
    if (!legend) {
      svg += fmt::format(
          R"(<text x="{}" y="16" font-size="11" text-anchor="end" font-family="sans-serif">last {}</text>)",
          width - kRight, last);
      continue;
    }
    const int row = height + kLegendRow * static_cast<int>(i) + 4;
    svg += fmt::format(
        R"(<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" stroke="{3}" stroke-width="3"/>)"
        R"(<text class="legend" x="{4}" y="{5}" font-size="11" font-family="sans-serif">{6}: last {7}</text>)",
        kLeft, kLeft + 18, row, colour, kLeft + 24, row + 4, html_escape(series[i].name), last);
  }
  return svg + "</svg>";
}

std::string render_line_chart(const Series& series, int width, int height) {
  return render_multi_line_chart(series.name, {series}, width, height);
}

}  // namespace ponder::store
