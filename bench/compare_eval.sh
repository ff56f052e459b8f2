#!/usr/bin/env bash
# The evaluation benchmarks of docs/benchmarks.md:
#  1. the verification protocol on 6000 pairs (LFW's size): facetrain (bench_eval) beside
#     insightface's numpy code (python_verification_baseline.py), interleaved for ROUNDS rounds;
#  2. a whole .bin evaluation (decode, backbone on images and mirrors, protocol) on a synthetic
#     .bin of PAIRS pairs (default 6000: 12 000 images), `facetrain eval --bin` beside the same
#     work in PyTorch + numpy (python_eval_baseline.py), with a random MobileFaceNet (speed does
#     not depend on the weights), E2E_ROUNDS rounds (default 1).
#   bench/compare_eval.sh   env: BUILD_DIR (default build), ROUNDS (3), MODEL (mbf), PAIRS (6000), E2E_ROUNDS (1)
# Needs python3-numpy, python3-torch and python3-opencv (scripts/setup.sh --tests --bench).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
rounds=${ROUNDS:-3}
model=${MODEL:-mbf}
py=/usr/bin/python3
results=$(mktemp)
for round in $(seq "$rounds"); do
  "$build/bench/facetrain_bench_eval" --benchmark_filter=BM_VerificationProtocol --benchmark_min_time=2 \
    --benchmark_format=json 2>/dev/null |
    $py -c 'import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(json.dumps({"impl":"C++","seconds":b["real_time"]/1e3}))' >>"$results"
  $py bench/python_verification_baseline.py 6000 1 |
    $py -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"impl":"Python","seconds":r["seconds"]}))' >>"$results"
done
$py - "$results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
c = statistics.median(r["seconds"] for r in rows if r["impl"] == "C++")
p = statistics.median(r["seconds"] for r in rows if r["impl"] == "Python")
print("verification protocol, 6000 pairs x 512, %d rounds, median seconds" % (len(rows) // 2))
print("| facetrain | insightface (numpy) | numpy / facetrain |")
print("|---|---|---|")
print("| %.3f s | %.3f s | %.1fx |" % (c, p, p / c))
PY

dir=$(mktemp -d)
trap 'rm -rf "$dir" "$results"' EXIT
pairs=${PAIRS:-6000}
"$build/tools/facetrain" data synth --out "$dir" --identities 2 --images-per-identity 1 --val-identities $((pairs / 2)) \
  --val-pairs "$pairs" >/dev/null 2>&1
PYTHONPATH=tests/python $py -c "
import torch, insightface_models as m
torch.save(m.build('mobilefacenet' if '$model' == 'mbf' else '$model').state_dict(), '$dir/w.pth')"
e2e=$(mktemp)
for round in $(seq "${E2E_ROUNDS:-1}"); do
  start=$(date +%s.%N)
  "$build/tools/facetrain" eval --checkpoint "$dir/w.pth" --model "$model" --bin "$dir/synth_val.bin" --batch-size 256 >/dev/null 2>&1
  end=$(date +%s.%N)
  echo "{\"impl\": \"C++\", \"seconds\": $($py -c "print($end - $start)")}" >>"$e2e"
  $py bench/python_eval_baseline.py "$dir/synth_val.bin" "$dir/w.pth" "$([ "$model" = mbf ] && echo mobilefacenet || echo "$model")" 256 |
    $py -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"impl":"Python","seconds":r["seconds"]}))' >>"$e2e"
done
$py - "$e2e" "$pairs" "$model" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
c = statistics.median(r["seconds"] for r in rows if r["impl"] == "C++")
p = statistics.median(r["seconds"] for r in rows if r["impl"] == "Python")
n = 2 * int(sys.argv[2])
print("whole .bin evaluation, %d images (+ mirrors), %s, CPU, %d round(s), median seconds" % (n, sys.argv[3], len(rows) // 2))
print("| facetrain eval --bin | insightface-style PyTorch + numpy | Python / facetrain | facetrain images/s |")
print("|---|---|---|---|")
print("| %.1f s | %.1f s | %.2fx | %.0f |" % (c, p, p / c, n / c))
PY
rm -f "$e2e"
