#!/usr/bin/env bash
# Throughput of training on 1 process against 2 (facetrain launch), on this machine, interleaved
# for ROUNDS rounds: the quickstart model and head, the same global batch either way.
#   bench/compare_dist.sh   env: BUILD_DIR (build), ROUNDS (3), BATCH (global batch, 64), STEPS (40),
#                           THREADS (OpenMP threads of the one process, default: all cores; the two
#                           processes get half each)
# Prints img/s (median over rounds of the steady-state rate: metrics.jsonl past the first 10 steps)
# and the ratio 2 processes / 1 process.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
rounds=${ROUNDS:-3}
batch=${BATCH:-64}
steps=${STEPS:-40}
threads=${THREADS:-$(nproc)}
half=$(( threads / 2 > 0 ? threads / 2 : 1 ))
facetrain=$build/tools/facetrain
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--config configs/quickstart.yaml --set "data.path=$tmp/synth" --set "train.max_steps=$steps"
        --set "eval.targets=[]" --set checkpoint.every_steps=0 --set log.every_steps=10 --set log.tensorboard=false)
rate() {  # steady-state img/s of a run: the mean of the metrics records after step 10
  /usr/bin/python3 -c '
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
v = [x["samples_per_sec"] for x in r if "samples_per_sec" in x and x["step"] > 10]
print(sum(v) / len(v))' "$1/metrics.jsonl"
}
"$facetrain" data synth --out "$tmp/synth" --identities 100 --images-per-identity 20 >/dev/null
results=$tmp/results
for round in $(seq "$rounds"); do
  rm -rf "$tmp/one" "$tmp/two"
  OMP_NUM_THREADS=$threads "$facetrain" "${common[@]}" --output "$tmp/one" --set "train.batch_size=$batch" >/dev/null 2>&1
  echo "one $(rate "$tmp/one")" >>"$results"
  OMP_NUM_THREADS=$half "$facetrain" launch --nproc 2 -- "${common[@]}" --output "$tmp/two" \
    --set "train.batch_size=$((batch / 2))" >/dev/null 2>&1
  echo "two $(rate "$tmp/two")" >>"$results"
done
/usr/bin/python3 - "$results" "$batch" "$threads" "$half" "$rounds" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
one = statistics.median(float(v) for k, v in rows if k == "one")
two = statistics.median(float(v) for k, v in rows if k == "two")
print("quickstart model, global batch %s, %s rounds, median img/s" % (sys.argv[2], sys.argv[5]))
print("| 1 process (%s threads) | 2 processes (%s threads each, Gloo) | 2 / 1 |" % (sys.argv[3], sys.argv[4]))
print("|---|---|---|")
print("| %.1f | %.1f | %.2fx |" % (one, two, two / one))
PY
