#!/usr/bin/env python3
"""Golden files for facetrain's backbone interop tests, made with PyTorch (Debian's python3-torch).

  make  --type T [--embedding-size D] [--blocks a,b,c,d] [--scale S] [--half] --out DIR
        Builds the insightface-structured model (insightface_models.py) with random weights and
        calibrated BatchNorm statistics (seed 0), writes DIR/weights.pth (torch.save of its
        state_dict, zip format; float16 with --half) and DIR/expected.pth: 'eval' and 'train'
        embeddings of the fixed input below, and 'after.<buffer>' = every buffer after the
        train-mode forward.
  keys  --type T [...]
        Prints one line per state-dict entry: "name dtype d0xd1x..." in state_dict order.
  flops --type T [...]
        Prints "params N" and "macs N": parameters, and multiply-accumulates for one 112x112 image
        counted by forward hooks with ptflops' rules (conv: kernel * in/groups * out per output
        position, + out per position with a bias; linear: input numel * out (+ out with a bias);
        BatchNorm: 2 per input element when affine; PReLU: 1 per output element).
  check --type T [...] --weights W --expected E
        Loads W (written by facetrain) into the PyTorch model with strict=True and compares its
        eval- and train-mode embeddings of the fixed input with E's 'eval' and 'train' (written by
        facetrain from the same weights). Exit status 0 when they agree within 1e-4 of the largest
        magnitude.

The input is [4, 3, 112, 112] float32 with element i (flat index) = ((i * 7919) % 2001) / 1000 - 1,
which facetrain's tests compute the same way (exact in float64, then rounded to float32).

The committed golden tests/data/backbones/mbf_tiny was made with:
  /usr/bin/python3 tests/python/backbone_goldens.py make --type mobilefacenet --embedding-size 64 \
      --blocks 1,1,1,1 --scale 1 --half --out tests/data/backbones/mbf_tiny
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import insightface_models  # noqa: E402

TOLERANCE = 1e-4


def fixed_input():
    n = 4 * 3 * 112 * 112
    i = torch.arange(n, dtype=torch.int64)
    return (((i * 7919) % 2001).double() / 1000 - 1).float().reshape(4, 3, 112, 112)


def build(args):
    blocks = tuple(int(b) for b in args.blocks.split(",")) if args.blocks else None
    return insightface_models.build(args.type, args.embedding_size, blocks, args.scale)


def randomize(model):
    """Random weights everywhere (features.weight too), then BatchNorm statistics calibrated on
    random images, so that eval-mode activations stay in a sane range even in IResNet-200."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(p.shape, generator=g))
            elif isinstance(dict(model.named_modules()).get(name.rsplit(".", 1)[0]), torch.nn.PReLU):
                p.copy_(0.25 + 0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
    bns = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average while calibrating
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 112, 112, generator=g))
    for m in bns:
        m.momentum = 0.1


def forward_both(model, x):
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    model.train()
    with torch.no_grad():
        train_out = model(x)
    return eval_out, train_out


def make(args):
    torch.manual_seed(0)
    model = build(args)
    randomize(model)
    state = model.state_dict()
    if args.half:
        state = type(state)((k, v.half() if v.is_floating_point() else v) for k, v in state.items())
        model.load_state_dict(state)  # the model now holds the float16-rounded values
    os.makedirs(args.out, exist_ok=True)
    torch.save(state, os.path.join(args.out, "weights.pth"))
    eval_out, train_out = forward_both(model, fixed_input())
    expected = {"eval": eval_out, "train": train_out}
    for name, b in model.named_buffers():
        expected["after." + name] = b
    torch.save(expected, os.path.join(args.out, "expected.pth"))
    print("wrote %s: %d tensors, eval |max| %.4g" % (args.out, len(state), eval_out.abs().max().item()))


def close(name, got, want):
    scale = want.abs().max().item()
    err = (got - want).abs().max().item()
    ok = err <= TOLERANCE * max(scale, 1e-30)
    print("%s: max |diff| %.3g, largest magnitude %.3g -> %s" % (name, err, scale, "ok" if ok else "MISMATCH"))
    return ok


def check(args):
    model = build(args)
    state = torch.load(args.weights)
    if not isinstance(state, dict):
        print("weights file holds a %s, not a mapping" % type(state).__name__)
        return 1
    model.load_state_dict(state, strict=True)
    expected = torch.load(args.expected)
    eval_out, train_out = forward_both(model, fixed_input())
    ok = close("eval", eval_out, expected["eval"]) & close("train", train_out, expected["train"])
    return 0 if ok else 1


def keys(args):
    for name, t in build(args).state_dict().items():
        print("%s %s %s" % (name, str(t.dtype).replace("torch.", ""), "x".join(str(d) for d in t.shape) or "scalar"))
    return 0


def flops(args):
    model = build(args).eval()
    total = [0]

    def hook(m, inputs, output):
        x = inputs[0]
        if isinstance(m, torch.nn.Conv2d):
            positions = output.shape[0] * output.shape[2] * output.shape[3]
            per = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups) * m.out_channels
            total[0] += per * positions + (m.out_channels * positions if m.bias is not None else 0)
        elif isinstance(m, torch.nn.Linear):
            total[0] += x.numel() * output.shape[-1] + (output.shape[-1] if m.bias is not None else 0)
        elif isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            total[0] += x.numel() * (2 if m.affine else 1)
        elif isinstance(m, torch.nn.PReLU):
            total[0] += output.numel()

    for m in model.modules():
        m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 112, 112))
    print("params %d" % sum(p.numel() for p in model.parameters()))
    print("macs %d" % total[0])
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["make", "check", "keys", "flops"])
    p.add_argument("--type", required=True)
    p.add_argument("--embedding-size", type=int, default=512)
    p.add_argument("--blocks")
    p.add_argument("--scale", type=int)
    p.add_argument("--half", action="store_true")
    p.add_argument("--out")
    p.add_argument("--weights")
    p.add_argument("--expected")
    args = p.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return {"make": make, "check": check, "keys": keys, "flops": flops}[args.command](args)


if __name__ == "__main__":
    sys.exit(main() or 0)
