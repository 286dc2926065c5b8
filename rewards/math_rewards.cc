#include "rewards/math_rewards.h"

#include <chrono>

#include "core/error.h"
#include "rewards/math_answer.h"

namespace ponder::rewards {
namespace {

// The gold answer of a reference: a string or number, an object's "answer" field; a GSM8K
// solution ("... #### 72") gives the part after "####".
std::string gold_answer(const nlohmann::json& reference) {
  if (reference.is_string()) {
    const std::string text = reference;
    const auto marker = text.rfind("####");
    return marker == std::string::npos ? text : text.substr(marker + 4);
  }
  if (reference.is_number()) return reference.dump();
  if (reference.is_object() && reference.contains("answer"))
    return gold_answer(reference["answer"]);
  return "";
}

// 1 when the completion's final answer equals the reference answer, else 0.
class MathReward : public Reward {
 public:
  explicit MathReward(const nlohmann::json& o) {
    extract_.last_number_fallback = o.value("last_number_fallback", true);
    equivalence_.relative_tolerance = o.value("relative_tolerance", 1e-6);
  }
  std::string name() const override { return "math"; }
  RewardResult score(const Sample& sample) const override {
    const auto start = std::chrono::steady_clock::now();
    RewardResult r;
    const std::string gold = gold_answer(sample.reference);
    r.details["gold"] = gold;
    const auto extracted = extract_answer(sample.completion, extract_);
    if (gold.empty()) {
      r.details["reason"] = "sample has no reference answer";
    } else if (!extracted) {
      r.details["reason"] = "no answer found in the completion";
    } else
      try {
        const Verdict v = answers_equivalent(extracted->answer, gold, equivalence_);
        r.value = v.equivalent ? 1.0 : 0.0;
        r.details.update({{"extracted", extracted->answer},
                          {"method", extracted->method},
                          {"reason", v.reason},
                          {"normalized", v.details}});
      } catch (const std::exception& e) {  // a checker bug must cost one sample, not the run
        r.value = 0.0;
        r.details["reason"] = std::string("checker error: ") + e.what();
      }
    r.details["micros"] = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
    return r;
  }

 private:
  ExtractOptions extract_;
  EquivalenceOptions equivalence_;
};

// R1 format: "<think>...</think>" followed by a non-empty answer (optionally in answer tags).
class FormatReward : public Reward {
 public:
  explicit FormatReward(const nlohmann::json& o)
      : think_open_(o.value("think_open", "<think>")),
        think_close_(o.value("think_close", "</think>")),
        answer_open_(o.value("answer_open", "")),
        answer_close_(o.value("answer_close", "")),
        prompt_opens_think_(o.value("prompt_opens_think", false)) {}
  std::string name() const override { return "format"; }
  RewardResult score(const Sample& sample) const override {
    RewardResult r;
    const std::string& c = sample.completion;
    const auto open = prompt_opens_think_ ? std::size_t{0} : c.find(think_open_);
    const auto close = c.find(think_close_, open == std::string::npos ? 0 : open);
    if (open == std::string::npos || close == std::string::npos) {
      r.details["reason"] = "missing " + (open == std::string::npos ? think_open_ : think_close_);
      return r;
    }
    std::string after = c.substr(close + think_close_.size());
    if (!answer_open_.empty()) {
      const auto a = after.find(answer_open_), b = after.find(answer_close_);
      if (a == std::string::npos || b == std::string::npos || b < a) {
        r.details["reason"] =
            "missing " + answer_open_ + "..." + answer_close_ + " after " + think_close_;
        return r;
      }
      after = after.substr(a + answer_open_.size(), b - a - answer_open_.size());
    }
    if (after.find_first_not_of(" \n\t") == std::string::npos) {
      r.details["reason"] = "empty answer after " + think_close_;
      return r;
    }
    r.value = 1.0;
    r.details["reason"] = "well formed";
    return r;
  }

 private:
  std::string think_open_, think_close_, answer_open_, answer_close_;
  bool prompt_opens_think_;
};

// DAPO soft overlong punishment: 0 up to max_tokens - buffer, then linearly down to -1 at max.
class OverlongReward : public Reward {
 public:
  explicit OverlongReward(const nlohmann::json& o)
      : max_tokens_(o.at("max_tokens").get<double>()), buffer_(o.value("buffer", max_tokens_ / 4)) {
    if (buffer_ <= 0 || buffer_ > max_tokens_)
      throw Error("reward overlong: buffer must be in (0, max_tokens]");
  }
  std::string name() const override { return "overlong"; }
  RewardResult score(const Sample& sample) const override {
    const double length = sample.metadata.value("completion_tokens", 0.0);
    RewardResult r;
    const double start = max_tokens_ - buffer_;
    r.value = length <= start ? 0.0 : -std::min(1.0, (length - start) / buffer_);
    r.details = {{"completion_tokens", length}, {"punish_after", start}};
    return r;
  }

 private:
  double max_tokens_, buffer_;
};

}  // namespace

void register_math_rewards(RewardRegistry& registry) {
  registry.add("math", [](const nlohmann::json& o) { return std::make_unique<MathReward>(o); });
  registry.add("format", [](const nlohmann::json& o) { return std::make_unique<FormatReward>(o); });
  registry.add("overlong",
               [](const nlohmann::json& o) { return std::make_unique<OverlongReward>(o); });
}

}  // namespace ponder::rewards
