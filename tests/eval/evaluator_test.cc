// The evaluator: metrics of scored items against hand-computed values (equivalent answers vote
// together), scoring given responses with the real math and code rewards into a run store, and
// generation on a tiny random model (chunking never changes the samples).
#include "eval/evaluator.h"

#include <gtest/gtest.h>

#include "core/error.h"
#include "model/init_model.h"
#include "rewards/builtin.h"
#include "tests/common/test_util.h"

namespace ponder::eval {
namespace {

using nlohmann::json;

SampleResult sample(bool correct, std::optional<std::string> answer, std::int64_t tokens,
                    std::string finish = "stop") {
  SampleResult s{{"...", tokens, std::move(finish)}, correct ? 1.0 : 0.0, correct, json::object()};
  if (answer) s.details["extracted"] = *answer;
  return s;
}

// A: gold 4, B: gold 3, C: no answers at all.
std::vector<ItemResult> three_items() {
  return {{"A",
           {sample(true, "4", 10), sample(false, "5", 20, "length"), sample(true, "4.0", 30),
            sample(false, "5", 40)}},
          {"B",
           {sample(true, "3", 10), sample(false, "0.5", 10), sample(false, "\\frac{1}{2}", 10),
            sample(false, "1/2", 10, "length")}},
          {"C",
           {sample(false, std::nullopt, 5), sample(false, std::nullopt, 5),
            sample(false, std::nullopt, 5), sample(false, std::nullopt, 5, "length")}}};
}

TEST(TaskMetrics, MatchHandComputedValues) {
  const auto m = task_metrics(three_items(), {}, true);
  EXPECT_DOUBLE_EQ(m.at("items"), 3);
  EXPECT_DOUBLE_EQ(m.at("samples"), 12);
  EXPECT_NEAR(m.at("pass@1"), (2.0 / 4 + 1.0 / 4 + 0) / 3, 1e-12);
  // pass@2 per item: 1 - C(n-c,2)/C(4,2): A 1 - 1/6, B 1 - 3/6, C 0
  EXPECT_NEAR(m.at("pass@2"), (5.0 / 6 + 0.5 + 0) / 3, 1e-12);
  EXPECT_NEAR(m.at("pass@4"), 2.0 / 3, 1e-12);
  // maj@2: A ties 4/5 -> 4 (first seen), B ties 3/0.5 -> 3, C none.
  EXPECT_NEAR(m.at("maj@2"), 2.0 / 3, 1e-12);
  // maj@4: A {4, 4.0} ties {5, 5} -> 4; B {0.5, \frac{1}{2}, 1/2} beats {3}; C none.
  EXPECT_NEAR(m.at("maj@4"), 1.0 / 3, 1e-12);
  EXPECT_NEAR(m.at("reward_mean"), 3.0 / 12, 1e-12);
  EXPECT_NEAR(m.at("length_tokens"), (100.0 + 40 + 20) / 12, 1e-12);
  EXPECT_NEAR(m.at("truncated"), 3.0 / 12, 1e-12);
  EXPECT_FALSE(m.contains("maj@1"));
  EXPECT_FALSE(task_metrics(three_items(), {}, false).contains("maj@2"));
}

TEST(TaskMetrics, ChosenKsAndErrors) {
  const auto m = task_metrics(three_items(), {3}, false);
  EXPECT_EQ(m.count("pass@1") + m.count("pass@3") + m.count("pass@4") + m.count("pass@2"), 3u);
  // pass@3: A 1 - C(2,3)/C(4,3) = 1, B 1 - C(3,3)/C(4,3) = 3/4, C 0
  EXPECT_NEAR(m.at("pass@3"), (1 + 0.75) / 3, 1e-12);
  EXPECT_THROW(task_metrics(three_items(), {5}, true), Error);
  EXPECT_THROW(task_metrics(three_items(), {0}, true), Error);
  auto uneven = three_items();
  uneven[2].samples.resize(2);
  uneven[2].samples[1].response.tokens.reset();
  EXPECT_THROW(task_metrics(uneven, {4}, true), Error);  // k above the smallest item's n
  const auto m2 = task_metrics(uneven, {}, true);
  EXPECT_TRUE(m2.contains("pass@2"));
  EXPECT_FALSE(m2.contains("pass@4"));
  EXPECT_FALSE(m2.contains("length_tokens"));  // one sample has no token count
  EXPECT_THROW(task_metrics({}, {}, true), Error);
}

TEST(EvaluateResponses, ScoresWithTheMathRewardIntoTheStore) {
  testing_util::ScratchDir dir("eval_responses");
  const auto math = rewards::builtin_rewards().create("math", json::object());
  const std::vector<datasets::Example> items = {
      {"q1", "What is 2+2?", {{"answer", "4"}}, ""},
      {"q2", "Half of 1?", {{"answer", "\\frac{1}{2}"}}, ""}};
  const EvalTask task{"t", items, math.get(), true};
  const std::vector<std::vector<Response>> responses = {
      {{"so \\boxed{4}", 5, "stop"}, {"\\boxed{5}", 3, "stop"}},
      {{"it is \\boxed{0.5}", 6, "stop"}, {"hmm", 8, "length"}, {"\\boxed{1/2}", 4, "stop"}}};
  ThreadPool pool(2);
  store::RunStore store(dir.path());
  const TaskResult r = evaluate_responses(task, responses, {.step = 7}, pool, &store);
  EXPECT_NEAR(r.metrics.at("pass@1"), (1.0 / 2 + 2.0 / 3) / 2, 1e-12);
  EXPECT_NEAR(r.metrics.at("maj@2"), (1.0 + 1.0) / 2, 1e-12);  // q2: 0.5 first, hmm no vote
  EXPECT_TRUE(r.items[1].samples[2].correct);
  EXPECT_EQ(r.items[1].samples[1].details["reason"], "no answer found in the completion");
  store.flush();
  const auto rows = store.rollouts(7);
  ASSERT_EQ(rows.size(), 5u);
  for (const auto& row : rows) {
    EXPECT_EQ(row.split, "eval");
    EXPECT_EQ(row.reward_details["task"], "t");
    EXPECT_TRUE(row.reward_details["details"].contains("gold"));
  }
  std::set<std::string> names;
  for (const auto& m : store.metrics()) names.insert(m.name);
  EXPECT_TRUE(names.count("eval/t/pass@1") && names.count("eval/t/maj@2") &&
              names.count("eval/t/truncated") && names.count("eval/t/length_tokens"));
}

TEST(EvaluateResponses, BrokenReferencesNameTheTaskAndItem) {
  const auto code = rewards::builtin_rewards().create("code", {{"style", "humaneval"}});
  const std::vector<datasets::Example> items = {{"HumanEval/x", "q", {{"entry_point", "f"}}, ""}};
  const EvalTask task{"he", items, code.get(), false};
  ThreadPool pool(1);
  try {
    evaluate_responses(task, {{{"def f(): pass"}}}, {}, pool, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("task he, item HumanEval/x: reward 'code'"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(evaluate_responses(task, {{}}, {}, pool, nullptr), Error);
  EXPECT_THROW(evaluate_responses(task, {}, {}, pool, nullptr), Error);
}

TEST(Evaluate, TinyModelSamplesDoNotDependOnChunking) {
  testing_util::ScratchDir dir("eval_tiny");
  model::init_model(
      model::preset_config("tiny-llama"), dir / "m",
      {.seed = 3, .tokenizer_dir = testing_util::data_root() / "tokenizers/minimind"});
  auto lm = model::load_causal_lm(dir / "m", at::kCPU, at::kFloat);
  const auto tokenizer = model::Tokenizer::from_directory(dir / "m");
  engine::RolloutEngine engine(*lm, &tokenizer,
                               {.block_size = 16, .num_blocks = 128, .show_progress = false});
  const auto math = rewards::builtin_rewards().create("math", json::object());
  const std::vector<datasets::Example> items = {{"a", "1+1?", {{"answer", "2"}}, ""},
                                                {"b", "2+2?", {{"answer", "4"}}, ""},
                                                {"c", "3+3?", {{"answer", "6"}}, ""}};
  const EvalTask task{"arith", items, math.get(), true};
  ThreadPool pool(2);
  const Generator generator{engine, tokenizer, model::ChatFormat::kChatML};
  EvalOptions options{.n = 2, .sampling = {.temperature = 1.0, .max_tokens = 6, .seed = 11}};
  const TaskResult whole = evaluate(generator, task, options, pool, nullptr);
  options.chunk_samples = 2;  // one item per generate call
  const TaskResult chunked = evaluate(generator, task, options, pool, nullptr);
  ASSERT_EQ(whole.items.size(), 3u);
  std::set<std::string> texts;
  for (std::size_t i = 0; i < 3; ++i)
    for (std::size_t s = 0; s < 2; ++s) {
      const Response& r = whole.items[i].samples[s].response;
      EXPECT_EQ(r.text, chunked.items[i].samples[s].response.text);
      ASSERT_TRUE(r.tokens);
      EXPECT_LE(*r.tokens, 6);
      EXPECT_EQ(r.finish_reason == "length", *r.tokens == 6);
      EXPECT_TRUE(whole.items[i].samples[s].details.contains("gold"));
      texts.insert(r.text);
    }
  EXPECT_GT(texts.size(), 1u);  // items and samples get their own random streams
  EXPECT_TRUE(whole.metrics.contains("maj@2"));
  EXPECT_GE(whole.metrics.at("length_tokens"), 1.0);
}

}  // namespace
}  // namespace ponder::eval
