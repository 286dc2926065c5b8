// Renders metric series as self-contained inline SVG line charts (axes, ticks, last values, a
// legend when several runs share a chart), used by the HTML reports so they need no scripts.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace ponder::store {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (step, value), sorted by step
};

std::string render_line_chart(const Series& series, int width = 420, int height = 220);
// Several series on shared axes, one colour each (the first as render_line_chart's), each named
// with its last value in a legend under the plot.
std::string render_multi_line_chart(const std::string& title, const std::vector<Series>& series,
                                    int width = 420, int height = 220);
std::string html_escape(const std::string& text);

}  // namespace ponder::store
