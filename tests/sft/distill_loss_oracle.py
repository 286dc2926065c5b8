"""PyTorch reference for ponder's distillation divergences (torch 2.11, CPU, float64).

Input JSON (written by distill_test.cc): student and teacher logits [P, V] and a list of k.
For each k and each divergence (forward_kl, reverse_kl, jsd) prints the per-position values and
the gradient of their mean with respect to the student logits. Both distributions are collapsed
onto k + 1 outcomes: the teacher's k most likely tokens and one bucket for every other token; for
k = V this is the plain full-vocabulary divergence, which is checked against F.kl_div as well."""
import json
import sys

import torch
import torch.nn.functional as F

x = json.load(open(sys.argv[1]))
teacher_logits = torch.tensor(x["teacher_logits"], dtype=torch.float64)
out = {}
for k in x["ks"]:
    student_logits = torch.tensor(x["student_logits"], dtype=torch.float64, requires_grad=True)
    t_full = teacher_logits.softmax(-1)
    s_full = student_logits.softmax(-1)
    top_p, top_i = t_full.topk(k, -1)
    t = torch.cat([top_p, (1 - top_p.sum(-1, keepdim=True)).clamp_min(0)], -1)
    s_top = s_full.gather(-1, top_i)
    s = torch.cat([s_top, (1 - s_top.sum(-1, keepdim=True)).clamp_min(0)], -1)

    def kl(a, b):
        return torch.where(a > 0, a * (a.clamp_min(1e-300).log() - b.clamp_min(1e-300).log()), 0).sum(-1)

    m = 0.5 * (t + s)
    values = {"forward_kl": kl(t, s), "reverse_kl": kl(s, t), "jsd": 0.5 * (kl(t, m) + kl(s, m))}
    if k == teacher_logits.shape[-1]:
        full = F.kl_div(student_logits.log_softmax(-1), teacher_logits.log_softmax(-1),
                        log_target=True, reduction="none").sum(-1)
        assert torch.allclose(full, values["forward_kl"], atol=1e-12), (full, values["forward_kl"])
    out[str(k)] = {}
    for name, v in values.items():
        (grad,) = torch.autograd.grad(v.mean(), student_logits, retain_graph=True)
        out[str(k)][name] = {"values": v.tolist(), "grad": grad.tolist()}
print(json.dumps(out))
