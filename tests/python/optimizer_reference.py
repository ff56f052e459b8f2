"""PyTorch's own optimizers on the parameters and gradients tests/unit/test_train.cpp writes.

usage: optimizer_reference.py IN.pth OUT.pth STEPS sgd|adamw MOMENTUM NESTEROV BETA1 BETA2 EPS

IN.pth holds p0, p1, p2 (initial parameters) and g<k>_<i> (the gradient of parameter i at step k).
Two groups as in the C++ test: {p0, p1} lr 0.1, weight decay 5e-4; {p2} lr 0.03, no decay; before
step k every lr is its base times (1 - 0.1 k). Writes the final p0, p1, p2 to OUT.pth.
torch.optim.SGD / AdamW of Debian's PyTorch 1.13 (single-tensor code path on CPU).
"""
import sys

import torch

src, dst, steps, kind = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
momentum, nesterov = float(sys.argv[5]), sys.argv[6] == "1"
beta1, beta2, eps = float(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9])
state = torch.load(src)
params = [state[f"p{i}"].clone().requires_grad_(True) for i in range(3)]
groups = [{"params": params[:2], "lr": 0.1, "weight_decay": 5e-4}, {"params": params[2:], "lr": 0.03, "weight_decay": 0.0}]
bases = [0.1, 0.03]
if kind == "sgd":
    opt = torch.optim.SGD(groups, lr=0.1, momentum=momentum, nesterov=nesterov)
else:
    opt = torch.optim.AdamW(groups, lr=0.1, betas=(beta1, beta2), eps=eps)
for k in range(steps):
    for group, base in zip(opt.param_groups, bases):
        group["lr"] = base * (1.0 - 0.1 * k)
    for i, p in enumerate(params):
        p.grad = state[f"g{k}_{i}"].clone()
    opt.step()
    opt.zero_grad(set_to_none=True)
torch.save({f"p{i}": p.detach() for i, p in enumerate(params)}, dst)
