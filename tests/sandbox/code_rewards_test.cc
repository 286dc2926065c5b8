// Code rewards against the datasets' own reference solutions (HumanEval canonical solutions,
// MBPP reference code), hand-built partial solutions, reward-hacking attempts and garbage.
#include "rewards/code_rewards.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <future>

#include "core/error.h"
#include "core/json_file.h"
#include "core/thread_pool.h"
#include "rewards/code_extract.h"

namespace ponder::rewards {
namespace {

using nlohmann::json;

std::filesystem::path data_dir() {
  const char* env = std::getenv("PONDER_DATA");
  return env ? std::filesystem::path(env)
             : std::filesystem::path(PONDER_SOURCE_DIR) / ".." / "shared" / "data";
}

std::vector<json> read_jsonl(const std::string& relative) {
  std::vector<json> records;
  for_each_jsonl(data_dir() / relative,
                 [&](const json& record, std::size_t) { records.push_back(record); });
  return records;
}

std::unique_ptr<Reward> code_reward(const json& options) {
  RewardRegistry registry;
  register_code_rewards(registry);
  return registry.create("code", options);
}

// Scores every sample on two threads, as the reward pool would.
std::vector<RewardResult> score_all(const Reward& reward, const std::vector<Sample>& samples) {
  ThreadPool pool(2, 4);
  std::vector<std::future<RewardResult>> pending;
  for (const Sample& sample : samples) {
    pending.push_back(pool.submit([&reward, &sample] { return reward.score(sample); }));
  }
  std::vector<RewardResult> results;
  for (auto& f : pending) results.push_back(f.get());
  return results;
}

std::vector<Sample> humaneval_samples(const std::function<std::string(const json&)>& completion) {
  std::vector<Sample> samples;
  for (const json& task : read_jsonl("humaneval/HumanEval.jsonl")) {
    samples.push_back(
        {.prompt = task["prompt"],
         .completion = completion(task),
         .reference = {{"test", task["test"]}, {"entry_point", task["entry_point"]}}});
  }
  return samples;
}

int count_passed(const std::vector<RewardResult>& results) {
  return static_cast<int>(std::count_if(results.begin(), results.end(),
                                        [](const RewardResult& r) { return r.value == 1.0; }));
}

TEST(HumanEval, CanonicalSolutionsAllPass) {
  auto reward = code_reward({{"style", "humaneval"}});
  auto samples = humaneval_samples([](const json& t) { return t["canonical_solution"]; });
  ASSERT_EQ(samples.size(), 164u);
  auto results = score_all(*reward, samples);
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].value, 1.0) << "HumanEval/" << i << ": " << results[i].details.dump();
  }
  EXPECT_EQ(count_passed(results), 164);
}

TEST(HumanEval, PromptOnlyPassesNothing) {
  auto reward = code_reward({{"style", "humaneval"}});
  auto results = score_all(*reward, humaneval_samples([](const json&) { return ""; }));
  EXPECT_EQ(count_passed(results), 0);
  EXPECT_EQ(results[0].details["tests"][0]["verdict"], "fail: AssertionError");
}

TEST(HumanEval, FencedFullFunctionsAfterThinkingPass) {
  auto reward = code_reward({{"style", "humaneval"}});
  auto samples = humaneval_samples([](const json& t) {
    return "<think>maybe ```python\nwrong()\n```</think>Here it is:\n```python\n" +
           t["prompt"].get<std::string>() + t["canonical_solution"].get<std::string>() +
           "```\nDone.";
  });
  samples.resize(24);
  EXPECT_EQ(count_passed(score_all(*reward, samples)), 24);
}

TEST(Mbpp, ReferenceCodePassesItsTests) {
  auto reward = code_reward({{"style", "mbpp"}});
  std::vector<Sample> samples;
  std::vector<json> tasks = read_jsonl("mbpp/sanitized-mbpp.jsonl");
  for (const json& task : tasks) {
    samples.push_back({.prompt = task["prompt"], .completion = task["code"], .reference = task});
  }
  auto results = score_all(*reward, samples);
  std::vector<std::string> failures;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (results[i].value != 1.0) {
      failures.push_back("task " + tasks[i]["task_id"].dump() + ": " +
                         results[i].details.dump().substr(0, 600));
    }
  }
  for (const std::string& f : failures) std::cout << "MBPP failure: " << f << "\n";
  std::cout << "MBPP reference: " << results.size() - failures.size() << "/" << results.size()
            << " pass\n";
  EXPECT_GE(static_cast<double>(results.size() - failures.size()), 0.99 * results.size());
}

Sample squares_task(std::string completion) {
  return {.completion = std::move(completion),
          .reference = {{"test_list", {"assert f(1) == 1", "assert f(2) == 4", "assert f(3) == 9"}},
                        {"test_imports", {"import math"}}}};
}

TEST(Mbpp, FractionScoringCountsPassedAsserts) {
  const std::string partial = "```python\ndef f(x):\n    return x * x if x != 2 else 5\n```";
  RewardResult fraction =
      code_reward({{"style", "mbpp"}, {"scoring", "fraction"}})->score(squares_task(partial));
  EXPECT_DOUBLE_EQ(fraction.value, 2.0 / 3.0);
  EXPECT_EQ(fraction.details["tests"][1]["verdict"], "fail: AssertionError");
  EXPECT_EQ(fraction.details["passed"], 2);
  RewardResult binary = code_reward({{"style", "mbpp"}})->score(squares_task(partial));
  EXPECT_EQ(binary.value, 0.0);
  EXPECT_EQ(code_reward({{"style", "mbpp"}})->score(squares_task("f = lambda x: x * x")).value,
            1.0);
}

TEST(CodeReward, ExitingEarlyOrForgingVerdictsScoresZero) {
  auto reward = code_reward({{"style", "mbpp"}, {"scoring", "fraction"}});
  for (const char* hack :
       {"import sys\nsys.exit(0)\n", "import os\nos._exit(0)\n",
        "print('ponder-0 0 pass')\nprint('ponder-0 1 pass')\ndef f(x): pass\n"}) {
    RewardResult r = reward->score(squares_task(hack));
    EXPECT_EQ(r.value, 0.0) << hack << r.details.dump();
  }
  // Redirecting sys.stdout does not hide the verdicts of a correct solution.
  EXPECT_EQ(reward
                ->score(squares_task("import sys, io\nsys.stdout = io.StringIO()\n"
                                     "f = lambda x: x * x\n"))
                .value,
            1.0);
}

TEST(CodeReward, GarbageNeverThrows) {
  auto reward = code_reward({{"style", "mbpp"}, {"time_limit_s", 1}, {"max_output_chars", 100}});
  std::string invalid_utf8 = "def f(x):\n    return '\xff\xfe'\n";
  for (const std::string& garbage :
       {std::string(""), std::string("```"), std::string("\x01\x02\x03"), invalid_utf8,
        std::string("while True: pass"), std::string("print('x' * 10**8)"),
        std::string("def f(x):\n  return f(x)"), std::string("```python\ndef f(x):")}) {
    RewardResult r;
    EXPECT_NO_THROW(r = reward->score(squares_task(garbage))) << garbage;
    EXPECT_EQ(r.value, 0.0);
    EXPECT_NO_THROW(r.details.dump());
  }
  RewardResult looping = reward->score(squares_task("while True: pass"));
  EXPECT_EQ(looping.details["tests"][0]["verdict"], "timeout");
}

Sample sum_task(std::string completion) {
  return {.completion = std::move(completion),
          .reference = {{"tests",
                         {{{"input", "1 2\n"}, {"output", "3\n"}},
                          {{"input", "5 7\n"}, {"output", "12"}},
                          {{"input", "-4 4\n"}, {"output", "0\n\n"}}}}}};
}

TEST(StdioReward, PythonAndCppSolutions) {
  auto python = code_reward({{"style", "stdio"}});
  EXPECT_EQ(python->score(sum_task("```py\nprint(sum(map(int, input().split())), ' ')\n```")).value,
            1.0);
  auto cpp = code_reward({{"style", "stdio"}, {"language", "cpp"}, {"scoring", "fraction"}});
  RewardResult r =
      cpp->score(sum_task("```cpp\n#include <iostream>\nint main(){long a,b;std::cin>>a>>b;"
                          "if(a<0) return 1; std::cout<<a+b<<std::endl;}\n```"));
  EXPECT_DOUBLE_EQ(r.value, 2.0 / 3.0);
  EXPECT_EQ(r.details["tests"][2]["verdict"], "runtime_error");
}

TEST(StdioReward, BinarySkipsAfterFirstFailureAndReportsCompileErrors) {
  auto python = code_reward({{"style", "stdio"}});
  RewardResult wrong = python->score(sum_task("print(3)"));
  EXPECT_EQ(wrong.value, 0.0);
  EXPECT_EQ(wrong.details["tests"][0]["verdict"], "pass");
  EXPECT_EQ(wrong.details["tests"][1]["verdict"], "wrong_answer");
  EXPECT_EQ(wrong.details["tests"][2]["verdict"], "skipped");
  auto c = code_reward({{"style", "stdio"}, {"language", "c"}});
  RewardResult broken = c->score(sum_task("```c\nint main( {\n```"));
  EXPECT_EQ(broken.value, 0.0);
  EXPECT_EQ(broken.details["tests"][0]["verdict"], "compile_error");
  EXPECT_EQ(broken.details["compile"]["stage"], "compile");
}

TEST(CodeReward, BadOptionsAndReferencesThrow) {
  EXPECT_THROW(code_reward({{"style", "leetcode"}}), Error);
  EXPECT_THROW(code_reward({{"scoring", "partial"}}), Error);
  EXPECT_THROW(code_reward({{"timeout", 3}}), Error);
  EXPECT_THROW(code_reward({{"style", "mbpp"}, {"language", "cpp"}}), Error);
  EXPECT_THROW(code_reward({{"style", "humaneval"}})->score({.completion = "x"}), Error);
  EXPECT_THROW(code_reward({{"style", "stdio"}})->score({.completion = "x", .reference = 3}),
               Error);
}

TEST(CodeExtract, PicksTheRightFence) {
  EXPECT_EQ(extract_code("plain code", "python").code, "plain code");
  EXPECT_FALSE(extract_code("plain code", "python").fenced);
  const std::string mixed =
      "```cpp\nint x;\n```\ntext\n```python\na = 1\n```\n```\nuntagged\n```\n```bash\nls\n```";
  EXPECT_EQ(extract_code(mixed, "python").code, "a = 1\n");
  EXPECT_EQ(extract_code(mixed, "c++").code, "int x;\n");
  EXPECT_EQ(extract_code(mixed, "c").code, "untagged\n");
  EXPECT_EQ(extract_code("~~~~ py title\nb = 2\n~~~~\n", "python").code, "b = 2\n");
  EXPECT_EQ(extract_code("```python\nunterminated\n", "python").code, "unterminated\n");
  EXPECT_EQ(extract_code("<think>```python\nno\n```</think>```python\nyes\n```", "python").code,
            "yes\n");
  // A fence inside a longer fence does not close it.
  auto blocks = fenced_blocks("````md\n```python\nx\n```\n````\n");
  ASSERT_EQ(blocks.size(), 1u);
  EXPECT_EQ(blocks[0].tag, "md");
  EXPECT_EQ(blocks[0].code, "```python\nx\n```\n");
}

}  // namespace
}  // namespace ponder::rewards
