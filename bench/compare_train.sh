#!/usr/bin/env bash
# The training-step benchmark of docs/benchmarks.md: facetrain's Trainer::step (bench_train) beside
# the same step in PyTorch (python_train_step.py: same model, head, batch, clipping, SGD), on the
# same machine, interleaved for ROUNDS rounds; medians and their ratio.
#   bench/compare_train.sh   env: BUILD_DIR (build), ROUNDS (3), MODEL (mobilefacenet), BATCH (32),
#                            CLASSES (1000), STEPS (python steps per round, 10)
# Needs python3-torch (scripts/setup.sh --tests).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
rounds=${ROUNDS:-3}
model=${MODEL:-mobilefacenet}
batch=${BATCH:-32}
classes=${CLASSES:-1000}
steps=${STEPS:-10}
py=/usr/bin/python3
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
  FACETRAIN_BENCH_MODEL=$model FACETRAIN_BENCH_BATCH=$batch FACETRAIN_BENCH_CLASSES=$classes \
    "$build/bench/facetrain_bench_train" --benchmark_min_time=5 --benchmark_format=json 2>/dev/null |
    $py -c 'import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(json.dumps({"impl":"C++","seconds":b["real_time"]/1e3}))' >>"$results"
  $py bench/python_train_step.py "$model" "$batch" "$classes" "$steps" |
    $py -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"impl":"Python","seconds":r["seconds_per_step"]}))' >>"$results"
done
$py - "$results" "$model" "$batch" "$classes" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
c = statistics.median(r["seconds"] for r in rows if r["impl"] == "C++")
p = statistics.median(r["seconds"] for r in rows if r["impl"] == "Python")
print("training step, %s + arcface, batch %s, %s classes, %d rounds, median seconds per step" % (sys.argv[2], sys.argv[3], sys.argv[4], len(rows) // 2))
print("| facetrain | PyTorch (python3-torch) | PyTorch / facetrain |")
print("|---|---|---|")
print("| %.3f s (%.1f img/s) | %.3f s (%.1f img/s) | %.2fx |" % (c, int(sys.argv[3]) / c, p, int(sys.argv[3]) / p, p / c))
PY
