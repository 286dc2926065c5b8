#include "rewards/reward_eval.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>

#include "core/error.h"
#include "core/json_file.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "store/run_store.h"

namespace ponder::rewards {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kPredFields = {"completion", "prediction", "response", "output",
                                              "pred"};
const std::vector<std::string> kLabelFields = {"label", "expected", "correct", "is_correct"};
const std::vector<std::string> kCategoryFields = {"category", "type", "level", "subject"};
const std::vector<std::string> kPromptFields = {"prompt", "problem", "question"};

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The field named by the user, or the first usual name present in the first row ("" if none).
std::string resolve_field(const std::string& given, const std::vector<std::string>& usual,
                          const json& first_row) {
  if (!given.empty()) return given;
  for (const auto& name : usual)
    if (first_row.contains(name)) return name;
  return "";
}

std::string as_text(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

std::optional<bool> parse_label(const json& v, const std::string& where) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() > 0.5;
  if (v.is_string()) {
    const std::string s = v;
    if (s == "true" || s == "1" || s == "correct") return true;
    if (s == "false" || s == "0" || s == "incorrect") return false;
  }
  throw Error(where + ": label must be true/false or 0/1, got " + v.dump());
}

const json& required(const json& row, const std::string& field, const std::string& what,
                     const std::string& where) {
  if (!row.contains(field)) throw Error(where + ": no field '" + field + "' (" + what + ")");
  return row[field];
}

std::vector<RowResult> read_rows(const RewardEvalOptions& o, RewardEvalResult& result) {
  std::vector<RowResult> rows;
  std::string prompt_field;
  for_each_jsonl(o.data, [&](const json& row, std::size_t line) {
    if (o.limit != 0 && rows.size() >= o.limit) return;
    const std::string where = o.data.string() + ":" + std::to_string(line);
    if (!row.is_object()) throw Error(where + ": row is not a JSON object");
    if (rows.empty()) {
      result.pred_field = resolve_field(o.pred_field, kPredFields, row);
      if (result.pred_field.empty())
        throw Error(where + ": no prediction field (looked for " + joined(kPredFields) +
                    "); pass --pred-field");
      result.label_field = resolve_field(o.label_field, kLabelFields, row);
      result.category_field = resolve_field(o.category_field, kCategoryFields, row);
      prompt_field = resolve_field("", kPromptFields, row);
    }
    RowResult r{.line = line};
    r.sample.completion = as_text(required(row, result.pred_field, "the prediction", where));
    r.sample.reference =
        o.gold_field.empty() ? row : required(row, o.gold_field, "the gold answer", where);
    if (!prompt_field.empty() && row.contains(prompt_field))
      r.sample.prompt = as_text(row[prompt_field]);
    if (!result.label_field.empty())
      r.label = parse_label(required(row, result.label_field, "the label", where), where);
    if (!result.category_field.empty() && row.contains(result.category_field))
      r.category = as_text(row[result.category_field]);
    rows.push_back(std::move(r));
  });
  if (rows.empty()) throw Error(o.data.string() + ": no rows");
  return rows;
}

// Scores every row with one configuration; returns the wall time in seconds.
double score_rows(const Reward& reward, const RewardEvalOptions& o, std::vector<RowResult>& rows) {
  ThreadPool pool(o.threads);
  Progress progress("reward " + reward.name(), static_cast<std::int64_t>(rows.size()), "rows");
  const auto start = Clock::now();
  std::vector<std::future<std::pair<RewardResult, double>>> futures;
  futures.reserve(rows.size());
  for (const auto& row : rows)
    futures.push_back(pool.submit([&reward, &row] {
      const auto t = Clock::now();
      RewardResult r = reward.score(row.sample);
      return std::pair{std::move(r),
                       std::chrono::duration<double, std::milli>(Clock::now() - t).count()};
    }));
  for (std::size_t i = 0; i < rows.size(); ++i) {
    try {
      auto [r, ms] = futures[i].get();
      rows[i].results.push_back(std::move(r));
      rows[i].millis.push_back(ms);
    } catch (const std::exception& e) {
      rethrow_with_context(o.data.string() + ":" + std::to_string(rows[i].line), e);
    }
    progress.advance();
  }
  progress.finish();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double percentile(const std::vector<double>& sorted, double p) {
  const auto rank = static_cast<std::size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

RewardStats summarize(const std::vector<RowResult>& rows, std::size_t k, std::string title,
                      double seconds) {
  RewardStats s{.title = std::move(title)};
  std::vector<double> ms;
  for (const auto& row : rows) {
    const double value = row.results[k].value;
    for (GroupStats* g : {&s.all, &s.by_category[row.category]}) {
      ++g->rows;
      g->reward_sum += value;
      if (row.label) g->vs_label.add(passes(value), *row.label);
    }
    ms.push_back(row.millis[k]);
  }
  if (s.by_category.size() == 1 && s.by_category.begin()->first.empty()) s.by_category.clear();
  std::sort(ms.begin(), ms.end());
  s.p50_ms = percentile(ms, 0.50);
  s.p90_ms = percentile(ms, 0.90);
  s.p99_ms = percentile(ms, 0.99);
  s.max_ms = ms.back();
  s.rows_per_second = static_cast<double>(rows.size()) / std::max(seconds, 1e-9);
  return s;
}

std::string reason_of(const RewardResult& r) {
  if (r.details.contains("reason") && r.details["reason"].is_string())
    return r.details["reason"].get<std::string>();
  return r.details.dump();
}

std::string percent(std::size_t part, std::size_t whole) {
  return fmt::format("{:.2f} % ({}/{})",
                     whole ? 100.0 * static_cast<double>(part) / static_cast<double>(whole) : 0.0,
                     part, whole);
}

std::string format_stats(const RewardEvalResult& result) {
  std::string out = fmt::format("{:<28}", "");
  for (const auto& s : result.stats) out += fmt::format("  {:<40}", s.title.substr(0, 40));
  auto line = [&](const std::string& name, auto&& value_of) {
    out += fmt::format("\n{:<28}", name);
    for (const auto& s : result.stats) out += fmt::format("  {:<40}", value_of(s));
  };
  line("mean reward", [](const RewardStats& s) {
    return fmt::format("{:.4f}", s.all.reward_sum / static_cast<double>(s.all.rows));
  });
  if (result.has_labels())
    line("accuracy vs '" + result.label_field + "'", [](const RewardStats& s) {
      return percent(s.all.vs_label.tp + s.all.vs_label.tn, s.all.vs_label.total());
    });
  line("latency p50/p90/p99/max", [](const RewardStats& s) {
    return fmt::format("{:.3f}/{:.3f}/{:.3f}/{:.3f} ms", s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms);
  });
  line("throughput",
       [](const RewardStats& s) { return fmt::format("{:.1f} rows/s", s.rows_per_second); });
  return out + "\n";
}

std::string format_confusion(const std::string& title, const Confusion& c,
                             const std::string& row_name, const std::string& column_name) {
  return fmt::format(
      "\n{}\n{:>20}  {:>12}  {:>12}\n{:>20}  {:>12}  {:>12}\n{:>20}  {:>12}  {:>12}\n", title, "",
      column_name + " pass", column_name + " fail", row_name + " pass", c.tp, c.fp,
      row_name + " fail", c.fn, c.tn);
}

std::string format_categories(const RewardEvalResult& result) {
  if (result.stats[0].by_category.empty()) return "";
  std::string out = fmt::format("\nper {} ('{}'):\n{:<20} {:>7}", "category", result.category_field,
                                "category", "rows");
  for (std::size_t k = 0; k < result.stats.size(); ++k)
    out += fmt::format("  {:>12}", k ? "compare mean" : "mean") +
           (result.has_labels() ? fmt::format("  {:>9}", "accuracy") : "");
  for (const auto& [name, g] : result.stats[0].by_category) {
    out += fmt::format("\n{:<20} {:>7}", name.substr(0, 20), g.rows);
    for (const auto& s : result.stats) {
      const auto& sg = s.by_category.at(name);
      out += fmt::format("  {:>12.4f}", sg.reward_sum / static_cast<double>(sg.rows));
      if (result.has_labels())
        out += fmt::format("  {:>7.2f} %",
                           100.0 * static_cast<double>(sg.vs_label.tp + sg.vs_label.tn) /
                               static_cast<double>(sg.vs_label.total()));
    }
  }
  return out + "\n";
}

std::string format_disagreements(const RewardEvalResult& result, std::size_t max_listed) {
  const bool compare = result.stats.size() > 1;
  std::string listed;
  std::size_t count = 0;
  for (const auto& row : result.rows) {
    const bool a = passes(row.results[0].value);
    const bool differs = compare ? a != passes(row.results[1].value) : row.label && a != *row.label;
    if (!differs || ++count > max_listed) continue;
    listed += fmt::format("  line {}{}: {}", row.line,
                          row.category.empty() ? "" : " [" + row.category + "]",
                          row.label ? fmt::format("label {} | ", *row.label ? 1 : 0) : "");
    for (std::size_t k = 0; k < row.results.size(); ++k)
      listed += fmt::format("{}{} = {:.3g} ({})", k ? " | " : "", k ? "compare" : "reward",
                            row.results[k].value, reason_of(row.results[k]));
    listed += fmt::format("\n    prediction: {}\n", row.sample.completion.substr(0, 160));
  }
  const std::string what = compare ? "rows where the two configurations differ"
                                   : "disagreements with '" + result.label_field + "'";
  if (!compare && !result.has_labels()) return "";
  return fmt::format("\n{}: {} (first {} listed)\n{}", what, count, std::min(count, max_listed),
                     listed);
}

}  // namespace

std::string RewardSpec::title() const {
  return options.empty() ? name : name + " " + options.dump();
}

void Confusion::add(bool predicted, bool actual) {
  (predicted ? (actual ? tp : fp) : (actual ? fn : tn)) += 1;
}

bool passes(double reward) { return reward > 0.5; }

RewardEvalResult run_reward_eval(const RewardEvalOptions& o, const RewardRegistry& registry) {
  std::vector<RewardSpec> specs = {o.reward};
  if (o.compare) specs.push_back(*o.compare);
  std::vector<std::unique_ptr<Reward>> rewards;
  for (const auto& spec : specs) rewards.push_back(registry.create(spec.name, spec.options));
  RewardEvalResult result;
  result.rows = read_rows(o, result);
  for (std::size_t k = 0; k < rewards.size(); ++k) {
    const double seconds = score_rows(*rewards[k], o, result.rows);
    result.stats.push_back(summarize(result.rows, k, specs[k].title(), seconds));
  }
  if (o.compare)
    for (const auto& row : result.rows)
      result.a_vs_b.add(passes(row.results[0].value), passes(row.results[1].value));
  return result;
}

std::string format_reward_eval(const RewardEvalResult& result, std::size_t max_listed) {
  std::string out =
      fmt::format("{} rows, prediction field '{}'\n\n", result.rows.size(), result.pred_field);
  out += format_stats(result);
  if (result.has_labels())
    for (const auto& s : result.stats)
      out += format_confusion("confusion: " + s.title + " vs '" + result.label_field + "'",
                              s.all.vs_label, "reward", "label");
  if (result.stats.size() > 1) {
    out += format_confusion("confusion: reward (rows) vs compare (columns)", result.a_vs_b,
                            "reward", "compare");
    out += "agreement between the two: " +
           percent(result.a_vs_b.tp + result.a_vs_b.tn, result.a_vs_b.total()) + "\n";
  }
  if (!result.has_labels() && result.stats.size() == 1)
    out += "\n(no label field: mean reward only; add 'label' 0/1 to rows for accuracy)\n";
  return out + format_categories(result) + format_disagreements(result, max_listed);
}

void write_reward_eval_run(const RewardEvalResult& result, const RewardEvalOptions& o,
                           const std::filesystem::path& run_dir) {
  store::RunStore store(run_dir);
  json recipe = {{"command", "reward eval"},
                 {"data", o.data.string()},
                 {"reward", o.reward.name},
                 {"options", o.reward.options},
                 {"pred_field", result.pred_field},
                 {"label_field", result.label_field},
                 {"category_field", result.category_field}};
  if (o.compare) recipe["compare"] = {{"reward", o.compare->name}, {"options", o.compare->options}};
  store.begin_run({.kind = "reward-eval", .recipe = recipe});
  for (std::size_t k = 0; k < result.stats.size(); ++k) {
    std::vector<store::RolloutRecord> records;
    for (std::size_t i = 0; i < result.rows.size(); ++i) {
      const auto& row = result.rows[i];
      json details = row.results[k].details;
      details["line"] = row.line;
      details["millis"] = row.millis[k];
      if (row.label) details["label"] = *row.label;
      if (!row.category.empty()) details["category"] = row.category;
      records.push_back({.step = 0,
                         .split = k == 0 ? "eval" : "compare",
                         .group = static_cast<std::int64_t>(i),
                         .prompt = row.sample.prompt,
                         .completion = row.sample.completion,
                         .reward = row.results[k].value,
                         .reward_details = std::move(details)});
    }
    store.log_rollouts(records);
    const auto& s = result.stats[k];
    const std::string prefix = k == 0 ? "reward_eval/" : "reward_eval_compare/";
    std::map<std::string, double> metrics = {
        {prefix + "mean_reward", s.all.reward_sum / static_cast<double>(s.all.rows)},
        {prefix + "latency_p50_ms", s.p50_ms},
        {prefix + "latency_p90_ms", s.p90_ms},
        {prefix + "latency_p99_ms", s.p99_ms},
        {prefix + "latency_max_ms", s.max_ms},
        {prefix + "rows_per_s", s.rows_per_second}};
    if (result.has_labels())
      metrics[prefix + "accuracy"] = static_cast<double>(s.all.vs_label.tp + s.all.vs_label.tn) /
                                     static_cast<double>(s.all.vs_label.total());
    store.log_metrics(0, metrics);
  }
  store.flush();
}

}  // namespace ponder::rewards
