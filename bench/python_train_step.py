"""The training step of bench/bench_train.cpp, in PyTorch: insightface's MobileFaceNet (or an
IResNet) and ArcFace head (insightface arcface_torch: normalised FC, CombinedMarginLoss with
m2 = 0.5, s = 64), cross-entropy, clip_grad_norm_(5) as insightface clips, SGD (momentum 0.9,
weight decay 5e-4) on a fixed random batch.

usage: python_train_step.py MODEL BATCH CLASSES STEPS [--device cuda] [--amp bf16|fp16] [--compile]
       [--channels-last] [--warmup N]  ->  one JSON line {"seconds_per_step": ..., "img_per_sec": ...}
On the CPU: Debian's python3-torch (the same LibTorch 1.13 underneath as facetrain's CPU build).
On a GPU: the machine's PyTorch 2.x, eager or torch.compile, as arcface_torch trains (autocast of
the backbone, fp16 with GradScaler(growth_interval=100), the head in float32).
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import insightface_models  # noqa: E402


class ArcFace(torch.nn.Module):
    def __init__(self, embedding_size, classes, s=64.0, m=0.5):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.normal(0, 0.01, (classes, embedding_size)))
        self.s, self.m = s, m
        self.theta = math.cos(math.pi - m)
        self.sinmm = math.sin(math.pi - m) * m

    def forward(self, x, labels):
        logits = torch.nn.functional.linear(torch.nn.functional.normalize(x), torch.nn.functional.normalize(self.weight))
        logits = logits.clamp(-1, 1)
        index = torch.where(labels != -1)[0]
        target = logits[index, labels[index].view(-1)]
        with torch.no_grad():
            target.arccos_()
            logits.arccos_()
            final = target + self.m
            logits[index, labels[index].view(-1)] = final
            logits.cos_()
        return logits * self.s


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("batch", type=int)
    p.add_argument("classes", type=int)
    p.add_argument("steps", type=int)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="autocast of the backbone as arcface_torch (fp16: GradScaler, as its fp16 recipes)")
    p.add_argument("--compile", action="store_true", help="torch.compile the backbone and head (PyTorch 2.x)")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--warmup", type=int, default=1, help="steps before timing (compilation happens there)")
    a = p.parse_args()
    device = torch.device(a.device)
    if a.amp == "fp16" and device.type != "cuda":
        sys.exit("fp16 needs CUDA (use bf16 on the CPU)")
    torch.manual_seed(0)
    net = insightface_models.build(a.model).to(device)
    head = ArcFace(512, a.classes).to(device)
    if a.channels_last:
        net = net.to(memory_format=torch.channels_last)
    net.train()
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(a.batch, 3, 112, 112, device=device) * 2 - 1
    if a.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(a.classes, (a.batch,), device=device)
    run_net, run_head = net, head
    if a.compile:
        if not hasattr(torch, "compile"):
            print(json.dumps({"error": "torch.compile needs PyTorch 2.x; this is " + torch.__version__}))
            sys.exit(3)
        run_net, run_head = torch.compile(net), torch.compile(head)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(a.amp)
    scaler = None
    if a.amp == "fp16":  # torch.amp.GradScaler("cuda") from PyTorch 2.3; torch.cuda.amp's before
        scaler = (torch.amp.GradScaler("cuda", growth_interval=100) if hasattr(torch.amp, "GradScaler")
                  else torch.cuda.amp.GradScaler(growth_interval=100))

    def step():
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            embeddings = run_net(images)
        loss = torch.nn.functional.cross_entropy(run_head(embeddings.float(), labels), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
        else:
            loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(a.warmup):
        step().item()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    loss.item()
    sync()
    seconds = (time.perf_counter() - start) / a.steps
    out = {"seconds_per_step": seconds, "img_per_sec": a.batch / seconds, "model": a.model, "batch": a.batch,
           "classes": a.classes, "device": str(device), "amp": a.amp, "compile": a.compile,
           "channels_last": a.channels_last, "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
