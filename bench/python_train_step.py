"""The training step of bench/bench_train.cpp, in PyTorch: insightface's MobileFaceNet (or an
IResNet) and ArcFace head (insightface arcface_torch: normalised FC, CombinedMarginLoss with
m2 = 0.5, s = 64), cross-entropy, clip_grad_norm_(5) as insightface clips, SGD (momentum 0.9,
weight decay 5e-4) on a fixed random batch.

usage: python_train_step.py MODEL BATCH CLASSES STEPS  ->  one JSON line {"seconds_per_step": ...}
Debian's python3-torch (the same LibTorch 1.13 underneath as facetrain's CPU build).
"""
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
    model, batch, classes, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.manual_seed(0)
    net = insightface_models.build(model)
    head = ArcFace(512, classes)
    net.train()
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4)
    images = torch.rand(batch, 3, 112, 112) * 2 - 1
    labels = torch.randint(classes, (batch,))

    def step():
        loss = torch.nn.functional.cross_entropy(head(net(images), labels), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    print(json.dumps({"seconds_per_step": seconds, "model": model, "batch": batch, "classes": classes,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
