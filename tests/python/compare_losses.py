#!/usr/bin/env python3
"""Compares the per-step training losses of two runs' metrics.jsonl files.

usage: compare_losses.py A/metrics.jsonl B/metrics.jsonl FIRST LAST TOLERANCE
Every step in [FIRST, LAST] must have a loss in both files, and |a - b| <= TOLERANCE * max(1, |a|);
evaluations both runs made must agree in XNorm to 1e-2 relative (their accuracies are counted).
Prints the largest difference either way; exits 1 when a step is missing or too far apart.
"""
import json
import sys


def losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record and record["loss"] is not None:
                out[record["step"]] = record["loss"]
    return out


# XNorm (the mean embedding norm of a verification set) is compared to 1e-2 relative, whatever the
# loss tolerance: a few steps into a run, eval-mode BatchNorm divides by running variances still
# far above the batch variances, so the embeddings are tiny (XNorm ~0.05) and carry the float32
# noise of the convolutions magnified (seen: 4e-3 between 1 and 2 processes, losses equal to 3e-7).
# A wrong gather or a wrong split would change it entirely, and the accuracies are counted.
XNORM_TOLERANCE = 1e-2


def evals(path):
    out = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            for name, m in record.get("eval", {}).items():
                out[(record["step"], name)] = m
    return out


def main():
    a_path, b_path, first, last, tol = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    a, b = losses(a_path), losses(b_path)
    worst, bad = 0.0, []
    for step in range(first, last + 1):
        if step not in a or step not in b:
            bad.append(f"step {step}: missing in {'the first' if step not in a else 'the second'} run")
            continue
        diff = abs(a[step] - b[step])
        worst = max(worst, diff / max(1.0, abs(a[step])))
        if diff > tol * max(1.0, abs(a[step])):
            bad.append(f"step {step}: {a[step]!r} vs {b[step]!r}")
    # Evaluation records present in both runs: XNorm within the tolerance, accuracy reported.
    ea, eb = evals(a_path), evals(b_path)
    shared = sorted(set(ea) & set(eb))
    same_accuracy = 0
    for key in shared:
        xa, xb = ea[key]["xnorm"], eb[key]["xnorm"]
        if abs(xa - xb) > XNORM_TOLERANCE * abs(xa):
            bad.append(f"eval {key}: xnorm {xa!r} vs {xb!r}")
        same_accuracy += ea[key]["accuracy"] == eb[key]["accuracy"]
    note = f"; {len(shared)} evaluations, {same_accuracy} with equal accuracy" if shared else ""
    print(f"steps {first}-{last}: largest relative difference {worst:.3g} (tolerance {tol:g}){note}")
    for line in bad:
        print("  " + line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
