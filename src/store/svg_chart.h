// Renders one metric series as a self-contained inline SVG line chart (axes, ticks, last value),
// used by the HTML report so it needs no scripts or network to draw.
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
std::string html_escape(const std::string& text);

}  // namespace ponder::store
