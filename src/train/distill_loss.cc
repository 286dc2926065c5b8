#include "train/distill_loss.h"

#include <cmath>

#include "core/error.h"

namespace ponder::train {
namespace {

// Probabilities below this count as this: log 0 would make 0 * log 0 terms NaN in the backward.
constexpr double kTinyMass = 1e-12;

// log of a probability mass, clamped away from 0.
at::Tensor log_mass(const at::Tensor& mass) { return mass.clamp_min(kTinyMass).log(); }

// KL(a || b) per row of bucketed distributions given as log-probs [P, k + 1].
at::Tensor kl_rows(const at::Tensor& log_a, const at::Tensor& log_b) {
  return (log_a.exp() * (log_a - log_b)).sum(-1);
}

}  // namespace

TeacherTopK top_k_of(const at::Tensor& logprobs, std::int64_t k) {
  if (k < 1 || k > logprobs.size(-1))
    throw Error("top_k: expected 1 <= k <= vocab (" + std::to_string(logprobs.size(-1)) +
                "), got " + std::to_string(k));
  const auto [values, ids] = logprobs.detach().to(at::kFloat).topk(k, -1);
  const at::Tensor tail = (1 - values.to(at::kDouble).exp().sum(-1)).clamp(0, 1).to(at::kFloat);
  return {ids, values, tail};
}

Divergence parse_divergence(const std::string& name) {
  if (name == "forward_kl") return Divergence::kForwardKl;
  if (name == "reverse_kl") return Divergence::kReverseKl;
  if (name == "jsd") return Divergence::kJsd;
  throw Error("divergence: unsupported value '" + name +
              "' (expected one of: forward_kl, reverse_kl, jsd)");
}

at::Tensor distill_divergence(const at::Tensor& student_logprobs, const TeacherTopK& teacher,
                              Divergence divergence) {
  // teacher, student [P, k + 1]: the k teacher tokens, then the tail bucket
  const at::Tensor teacher_top = teacher.logprobs.to(at::kFloat);
  const at::Tensor log_t = at::cat({teacher_top, log_mass(teacher.tail).unsqueeze(-1)}, -1);
  const at::Tensor student_top = student_logprobs.gather(-1, teacher.ids);
  const at::Tensor student_tail = 1 - student_top.exp().sum(-1);
  const at::Tensor log_s = at::cat({student_top, log_mass(student_tail).unsqueeze(-1)}, -1);
  switch (divergence) {
    case Divergence::kForwardKl:
      return kl_rows(log_t, log_s);
    case Divergence::kReverseKl:
      return kl_rows(log_s, log_t);
    case Divergence::kJsd: {
      const at::Tensor log_m = at::logaddexp(log_t, log_s) - std::log(2.0);
      return 0.5 * (kl_rows(log_t, log_m) + kl_rows(log_s, log_m));
    }
  }
  throw Error("distill_divergence: unknown divergence");
}

}  // namespace ponder::train
