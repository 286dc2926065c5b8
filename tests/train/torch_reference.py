"""PyTorch reference for the GRPO loss and AdamW tests (torch 2.11, CPU, float64).

Reads inputs written by the C++ test (JSON), prints the reference values as JSON:
advantages (GRPO and Dr.GRPO), clipped loss under each aggregation, KL estimators, and the
parameters after 5 torch.optim.AdamW steps on a fixed quadratic problem."""
import json
import sys

import torch

x = json.load(open(sys.argv[1]))
rewards = torch.tensor(x["rewards"], dtype=torch.float64)
adv_std = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-6)
adv_dr = rewards - rewards.mean(1, keepdim=True)

logp = torch.tensor(x["logprobs"], dtype=torch.float64)
old = torch.tensor(x["old_logprobs"], dtype=torch.float64)
mask = torch.tensor(x["mask"], dtype=torch.float64)
adv = torch.tensor(x["advantages"], dtype=torch.float64)[:, None]
ratio = torch.exp(logp - old)
per_token = -torch.min(ratio * adv, torch.clamp(ratio, 1 - x["clip_low"], 1 + x["clip_high"]) * adv)
losses = {
    "token_mean": ((per_token * mask).sum() / mask.sum()).item(),
    "sequence_mean": ((per_token * mask).sum(1) / mask.sum(1)).mean().item(),
    "constant": ((per_token * mask).sum() / (mask.shape[0] * x["max_tokens"])).item(),
}
ref = torch.tensor(x["ref_logprobs"], dtype=torch.float64)
log_r = logp - ref
kl = {"k1": log_r.tolist(), "k2": (0.5 * log_r ** 2).tolist(), "k3": (torch.exp(-log_r) + log_r - 1).tolist()}

w = torch.tensor(x["adam_init"], dtype=torch.float32, requires_grad=True)
target = torch.tensor(x["adam_target"], dtype=torch.float32)
opt = torch.optim.AdamW([w], lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
for _ in range(5):
    opt.zero_grad()
    ((w - target) ** 2 * torch.arange(1, w.numel() + 1)).sum().backward()
    opt.step()
print(json.dumps({"adv_std": adv_std.tolist(), "adv_dr": adv_dr.tolist(), "losses": losses, "kl": kl,
                  "adam": w.detach().tolist()}))
