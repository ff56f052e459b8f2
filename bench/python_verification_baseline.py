#!/usr/bin/env python3
"""The Python side of bench/compare_eval.sh: insightface's verification protocol (the numpy code of
tests/python/verification_reference.py, i.e. verification.py's normalize + evaluate) on [2N, 512]
float64 embeddings shaped like bench_eval's (genuine pairs noisy copies, impostors independent).
Prints JSON {"pairs", "seconds"}: the median of ROUNDS timed runs.
Usage: python_verification_baseline.py [PAIRS] [ROUNDS]"""
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'tests', 'python'))
import verification_reference as ref  # noqa: E402


def main():
    pairs = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.default_rng(1)
    base = rng.standard_normal((pairs, 512))
    e = np.empty((2 * pairs, 512))
    issame = np.arange(pairs) % 2 == 0
    e[0::2] = base
    e[1::2] = np.where(issame[:, None], base + 0.8 * rng.standard_normal((pairs, 512)), rng.standard_normal((pairs, 512)))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        emb = ref.normalize(e)
        e1, e2 = emb[0::2], emb[1::2]
        ref.calculate_roc(np.arange(0, 4, 0.01), e1, e2, issame, nrof_folds=10)
        ref.calculate_val(np.arange(0, 4, 0.001), e1, e2, issame, 1e-3, nrof_folds=10)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"pairs": pairs, "seconds": statistics.median(times)}))


if __name__ == '__main__':
    main()
