#include "store/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "core/error.h"
#include "store/svg_chart.h"

namespace ponder::store {
namespace {

constexpr int kSamplesPerSide = 2;

constexpr const char* kStyle = R"css(
body{font-family:sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px} h2{font-size:18px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{border:1px solid #ccc;border-radius:4px}
table.info td{padding:2px 12px 2px 0;vertical-align:top}
details{margin:6px 0;background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f3f3;padding:6px;font-size:12px}
.sample{border-left:4px solid #aaa;padding-left:8px;margin:8px 0}
.best{border-color:#3a3} .worst{border-color:#c33}
)css";

std::string render_info(const RunStore& store) {
  const auto info = store.run_info();
  if (!info) return "<p>No run information recorded.</p>";
  return fmt::format(
      "<table class=\"info\"><tr><td>kind</td><td>{}</td></tr><tr><td>seed</td><td>{}</td></tr>"
      "<tr><td>git revision</td><td>{}</td></tr><tr><td>versions</td><td>{}</td></tr></table>"
      "<details><summary>resolved recipe</summary><pre>{}</pre></details>",
      html_escape(info->kind), info->seed, html_escape(info->git_revision),
      html_escape(info->versions.dump()), html_escape(info->recipe.dump(2)));
}

std::string render_charts(const RunStore& store) {
  std::map<std::string, Series> by_name;
  for (const auto& point : store.metrics()) {
    auto& series = by_name[point.name];
    series.name = point.name;
    series.points.emplace_back(static_cast<double>(point.step), point.value);
  }
  if (by_name.empty()) return "<p>No metrics logged yet.</p>";
  std::string html = "<div class=\"charts\">";
  for (auto& [name, series] : by_name) html += render_line_chart(series);
  return html + "</div>";
}

// The latest value of every "summary/..." metric (a run's headline numbers), or nothing.
std::string render_summary(const RunStore& store) {
  std::map<std::string, double> latest;
  for (const auto& point : store.metrics())
    if (point.name.starts_with("summary/")) latest[point.name.substr(8)] = point.value;
  if (latest.empty()) return "";
  std::string html = "<h2>Summary</h2><table class=\"info\">";
  for (const auto& [name, value] : latest)
    html += fmt::format("<tr><td>{}</td><td>{:.4g}</td></tr>", html_escape(name), value);
  return html + "</table>";
}

std::string render_sample(const RolloutRecord& r, const char* side) {
  return fmt::format(
      "<div class=\"sample {}\"><b>{} — reward {:.4g}</b>, {} tokens, finish: {}, group {}"
      "<pre>{}</pre><details><summary>prompt</summary><pre>{}</pre></details>"
      "<details><summary>reward details</summary><pre>{}</pre></details></div>",
      side, side, r.reward, r.tokens, html_escape(r.finish_reason), r.group,
      html_escape(r.completion), html_escape(r.prompt), html_escape(r.reward_details.dump(2)));
}

std::string render_rollouts(const RunStore& store) {
  std::map<std::pair<std::string, std::int64_t>, std::vector<RolloutRecord>> by_step;
  for (auto& r : store.rollouts()) by_step[{r.split, r.step}].push_back(std::move(r));
  if (by_step.empty()) return "<p>No rollouts logged yet.</p>";
  std::string html;
  for (auto it = by_step.rbegin(); it != by_step.rend(); ++it) {
    auto& rows = it->second;
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.reward > b.reward; });
    double mean = 0;
    for (const auto& r : rows) mean += r.reward;
    mean /= static_cast<double>(rows.size());
    html += fmt::format(
        "<details class=\"step\"><summary>{} step {} — {} samples, mean reward {:.4g}"
        "</summary>",
        html_escape(it->first.first), it->first.second, rows.size(), mean);
    const std::size_t best = std::min<std::size_t>(kSamplesPerSide, rows.size());
    for (std::size_t i = 0; i < best; ++i) html += render_sample(rows[i], "best");
    const std::size_t worst_start =
        std::max(best, rows.size() - std::min<std::size_t>(kSamplesPerSide, rows.size()));
    for (std::size_t i = rows.size(); i-- > worst_start;) html += render_sample(rows[i], "worst");
    html += "</details>";
  }
  return html;
}

}  // namespace

std::string render_report(const RunStore& store, const std::string& title) {
  return fmt::format(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>{1}</style>"
      "</head><body><h1>{0}</h1>{2}{3}<h2>Metrics</h2>{4}<h2>Rollouts</h2>{5}</body></html>\n",
      html_escape(title), kStyle, render_info(store), render_summary(store), render_charts(store),
      render_rollouts(store));
}

std::filesystem::path write_report(const std::filesystem::path& run_dir) {
  if (!std::filesystem::exists(run_dir / "run.db"))
    throw Error(run_dir.string() + ": not a run directory (no run.db)");
  RunStore store(run_dir);
  const auto out = run_dir / "report.html";
  std::ofstream file(out, std::ios::binary);
  if (!file) throw Error(out.string() + ": cannot write report");
  file << render_report(store,
                        "ponder run " + std::filesystem::absolute(run_dir).filename().string());
  if (!file) throw Error(out.string() + ": write failed");
  return out;
}

}  // namespace ponder::store
