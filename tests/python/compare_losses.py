#!/usr/bin/env python3
"""Compares the per-step training losses of two runs' metrics.jsonl files.

usage: compare_losses.py A/metrics.jsonl B/metrics.jsonl FIRST LAST TOLERANCE
Every step in [FIRST, LAST] must have a loss in both files, and |a - b| <= TOLERANCE * max(1, |a|).
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
    print(f"steps {first}-{last}: largest relative difference {worst:.3g} (tolerance {tol:g})")
    for line in bad:
        print("  " + line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
