#include "store/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "core/error.h"
#include "store/svg_chart.h"

namespace ponder::store {
namespace {

constexpr int kSamplesPerSide = 2;
constexpr std::size_t kTailValues = 10;  // a comparison's final value: mean of this many

constexpr const char* kStyle = R"css(
body{font-family:sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:22px} h2{font-size:18px;margin-top:28px}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{border:1px solid #ccc;border-radius:4px}
table.info td,table.info th{padding:2px 12px 2px 0;vertical-align:top;text-align:left}
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

// The recipe's leaves by dotted path ("optim.lr"), each as compact JSON (arrays whole).
void flatten(const nlohmann::json& j, const std::string& path,
             std::map<std::string, std::string>& out) {
  if (!j.is_object() || j.empty()) {
    out[path] = j.dump();
    return;
  }
  for (const auto& [key, value] : j.items())
    flatten(value, path.empty() ? key : path + "." + key, out);
}

std::string render_recipe_differences(const std::vector<ComparedRun>& runs) {
  std::vector<std::map<std::string, std::string>> fields(runs.size());
  std::set<std::string> keys;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (const auto info = runs[i].store->run_info()) {
      flatten(info->recipe, "", fields[i]);
      fields[i]["(command)"] = info->kind;
    }
    for (const auto& [key, value] : fields[i]) keys.insert(key);
  }
  std::string rows;
  for (const auto& key : keys) {
    std::vector<std::string> values;
    for (const auto& f : fields) values.push_back(f.contains(key) ? f.at(key) : "-");
    if (std::all_of(values.begin(), values.end(), [&](auto& v) { return v == values[0]; }))
      continue;
    rows += "<tr><td>" + html_escape(key) + "</td>";
    for (const auto& v : values) rows += "<td>" + html_escape(v) + "</td>";
    rows += "</tr>";
  }
  if (rows.empty()) return "<p>The runs' recipes are identical.</p>";
  std::string head = "<table class=\"info recipe-diff\"><tr><th>recipe field</th>";
  for (const auto& run : runs) head += "<th>" + html_escape(run.label) + "</th>";
  return head + "</tr>" + rows + "</table>";
}

// Metric name -> one series per run, in run order (empty where a run did not log the metric).
std::map<std::string, std::vector<Series>> series_by_metric(const std::vector<ComparedRun>& runs) {
  std::map<std::string, std::vector<Series>> out;
  for (std::size_t i = 0; i < runs.size(); ++i)
    for (const auto& point : runs[i].store->metrics()) {
      auto& all = out[point.name];
      if (all.empty())
        for (const auto& run : runs) all.push_back({run.label, {}});
      all[i].points.emplace_back(static_cast<double>(point.step), point.value);
    }
  return out;
}

double tail_mean(const Series& series) {
  const std::size_t n = std::min(kTailValues, series.points.size());
  double sum = 0;
  for (std::size_t k = series.points.size() - n; k < series.points.size(); ++k)
    sum += series.points[k].second;
  return sum / static_cast<double>(n);
}

std::string render_final_values(const std::map<std::string, std::vector<Series>>& metrics) {
  std::string html = fmt::format(
      "<table class=\"info finals\"><tr><th>metric (mean of the last {} values)</th>", kTailValues);
  for (const auto& s : metrics.begin()->second) html += "<th>" + html_escape(s.name) + "</th>";
  html += "</tr>";
  for (const auto& [name, series] : metrics) {
    html += "<tr><td>" + html_escape(name) + "</td>";
    const double base = series[0].points.empty() ? NAN : tail_mean(series[0]);
    for (std::size_t i = 0; i < series.size(); ++i) {
      if (series[i].points.empty()) {
        html += "<td>-</td>";
        continue;
      }
      const double value = tail_mean(series[i]);
      html += fmt::format("<td>{:.5g}", value);
      if (i > 0 && std::isfinite(base) && base != 0)
        html += fmt::format(" ({:+.2f}%)", 100 * (value - base) / std::abs(base));
      html += "</td>";
    }
    html += "</tr>";
  }
  return html + "</table>";
}

}  // namespace

std::string render_comparison(const std::vector<ComparedRun>& runs, const std::string& title) {
  const auto metrics = series_by_metric(runs);
  std::string charts = "<p>No metrics logged.</p>", finals;
  if (!metrics.empty()) {
    charts = "<div class=\"charts\">";
    for (const auto& [name, series] : metrics) charts += render_multi_line_chart(name, series);
    charts += "</div>";
    finals = "<h2>Final values</h2>" + render_final_values(metrics);
  }
  return fmt::format(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>{1}</style>"
      "</head><body><h1>{0}</h1><h2>Recipe differences</h2>{2}{3}<h2>Metrics</h2>{4}"
      "</body></html>\n",
      html_escape(title), kStyle, render_recipe_differences(runs), finals, charts);
}

std::string render_report(const RunStore& store, const std::string& title) {
  return fmt::format(
      "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{0}</title><style>{1}</style>"
      "</head><body><h1>{0}</h1>{2}{3}<h2>Metrics</h2>{4}<h2>Rollouts</h2>{5}</body></html>\n",
      html_escape(title), kStyle, render_info(store), render_summary(store), render_charts(store),
      render_rollouts(store));
}

namespace {

void require_run_dir(const std::filesystem::path& run_dir) {
  if (!std::filesystem::exists(run_dir / "run.db"))
    throw Error(run_dir.string() + ": not a run directory (no run.db)");
}

void write_html(const std::filesystem::path& out, const std::string& html) {
  std::ofstream file(out, std::ios::binary);
  if (!file) throw Error(out.string() + ": cannot write report");
  file << html;
  if (!file) throw Error(out.string() + ": write failed");
}

// The run directory's name ("runs/bf16/" -> "bf16").
std::string run_name(const std::filesystem::path& run_dir) {
  const auto path = std::filesystem::absolute(run_dir).lexically_normal();
  return (path.has_filename() ? path : path.parent_path()).filename().string();
}

}  // namespace

std::filesystem::path write_comparison(const std::vector<std::filesystem::path>& run_dirs,
                                       const std::filesystem::path& out) {
  if (run_dirs.size() < 2) throw Error("report: comparing runs needs at least two run directories");
  std::vector<std::unique_ptr<RunStore>> stores;
  std::vector<ComparedRun> runs;
  std::set<std::string> names;
  for (const auto& dir : run_dirs) {
    require_run_dir(dir);
    stores.push_back(std::make_unique<RunStore>(dir));
    names.insert(run_name(dir));
  }
  for (std::size_t i = 0; i < run_dirs.size(); ++i)  // paths as given when names repeat
    runs.push_back({names.size() == run_dirs.size() ? run_name(run_dirs[i]) : run_dirs[i].string(),
                    stores[i].get()});
  std::string title = "ponder runs";
  for (const auto& run : runs) title += (&run == &runs[0] ? " " : " vs ") + run.label;
  write_html(out, render_comparison(runs, title));
  return out;
}

std::filesystem::path write_report(const std::filesystem::path& run_dir) {
  require_run_dir(run_dir);
  RunStore store(run_dir);
  const auto out = run_dir / "report.html";
  write_html(out, render_report(store, "ponder run " + run_name(run_dir)));
  return out;
}

}  // namespace ponder::store
