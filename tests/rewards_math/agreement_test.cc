// Agreement of ponder's math reward with math-verify (the oracle, run here through the venv) on
// (gold, prediction) pairs built from the MATH and GSM8K answers by build_agreement_pairs.py.
#include <gtest/gtest.h>

#include <iostream>
#include <map>

#include "core/json_file.h"
#include "rewards/math_rewards.h"
#include "tests/common/test_util.h"

namespace ponder::rewards {
namespace {

// A disagreement is classified against the pair's construction: rewrites and identities are
// equivalent by construction, near misses and other problems' answers are not.
std::string classify(const nlohmann::json& pair, bool ponder_equal) {
  const std::string kind = pair["kind"];
  const bool constructed_equal = kind == "equivalent" || kind == "identity";
  const std::string side =
      ponder_equal ? "ponder accepts, math-verify rejects" : "ponder rejects, math-verify accepts";
  const std::string right = ponder_equal == constructed_equal
                                ? "ponder matches the construction"
                                : "math-verify matches the construction";
  return side + "; " + right + " (" + kind + "/" + pair["rule"].get<std::string>() + ")";
}

TEST(MathVerifyAgreement, AtLeast99PercentOnThreeThousandPairs) {
  testing_util::ScratchDir dir("agreement");
  const auto pairs_file = dir / "pairs.jsonl";
  testing_util::run_checked(testing_util::python() + " " + PONDER_SOURCE_DIR +
                            "/tests/rewards_math/build_agreement_pairs.py " +
                            testing_util::data_root().string() + " " + pairs_file.string());
  RewardRegistry registry;
  register_math_rewards(registry);
  const auto math = registry.create("math", nlohmann::json::object());
  int total = 0, agree = 0;
  std::map<std::string, int> classes;
  for_each_jsonl(pairs_file, [&](const nlohmann::json& pair, std::size_t) {
    if (pair.contains("summary")) return;
    ++total;
    const auto r =
        math->score({.completion = pair["completion"], .reference = {{"answer", pair["gold"]}}});
    const bool ponder_equal = r.value == 1.0;
    if (ponder_equal == pair["math_verify"].get<bool>()) {
      ++agree;
      return;
    }
    const std::string cls = classify(pair, ponder_equal);
    ++classes[cls];
    std::cout << "disagreement #" << pair["id"] << " [" << cls << "] gold " << pair["gold"]
              << " prediction " << pair["prediction"] << " ponder: " << r.details["reason"] << "\n";
  });
  for (const auto& [cls, n] : classes) std::cout << n << " x " << cls << "\n";
  std::cout << "agreement " << agree << "/" << total << " = " << 100.0 * agree / total << " %\n";
  EXPECT_GE(total, 3000);
  EXPECT_GE(agree, 0.99 * total);
}

}  // namespace
}  // namespace ponder::rewards
