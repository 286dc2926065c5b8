// Logit-distillation losses: forward KL, reverse KL and Jensen-Shannon divergence between a teacher
// known by its top-k log-probs plus the mass of all other tokens, and a student's full log-probs.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>

namespace ponder::train {

// The teacher at P positions: its k most likely tokens, their log-probs, and the probability of
// every other token together (the tail, 1 - sum exp(logprobs)).
struct TeacherTopK {
  at::Tensor ids;       // [P, k] int64
  at::Tensor logprobs;  // [P, k] float32
  at::Tensor tail;      // [P] float32 in [0, 1]
};

// The k most likely tokens of each row of full log-probs [P, vocab] (k <= vocab).
TeacherTopK top_k_of(const at::Tensor& logprobs, std::int64_t k);

enum class Divergence { kForwardKl, kReverseKl, kJsd };
// forward_kl | reverse_kl | jsd; anything else throws naming the field.
Divergence parse_divergence(const std::string& name);

// Per-position divergence [P] (nats) between teacher and student with both distributions
// collapsed onto k + 1 outcomes: the teacher's k tokens and "any other token". With k = vocab it
// is the exact divergence; with k < vocab it is a lower bound of it (coarsening never increases a
// KL or JS divergence) that still pulls the student's mass off the teacher's unlikely tokens.
//   forward_kl  KL(teacher || student)   (mode covering; classic logit distillation)
//   reverse_kl  KL(student || teacher)   (mode seeking; on-policy distillation)
//   jsd         (KL(T || M) + KL(S || M)) / 2 with M = (T + S) / 2
// student_logprobs [P, vocab] (log_softmax of the logits) is differentiable.
at::Tensor distill_divergence(const at::Tensor& student_logprobs, const TeacherTopK& teacher,
                              Divergence divergence);

}  // namespace ponder::train
