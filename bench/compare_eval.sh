#!/usr/bin/env bash
# The evaluation benchmarks of docs/benchmarks.md:
#  1. the verification protocol on 6000 pairs (LFW's size): facetrain (bench_eval) beside
#     insightface's numpy code (python_verification_baseline.py), interleaved for ROUNDS rounds;
#  2. `facetrain eval --bin` on a 12 000-image synthetic .bin (6000 pairs), wall time, with a
#     random MobileFaceNet (speed does not depend on the weights).
#   bench/compare_eval.sh        env: BUILD_DIR (default build), ROUNDS (default 3), MODEL (default mbf)
# Needs python3-numpy and python3-torch (scripts/setup.sh --tests).
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
"$build/tools/facetrain" data synth --out "$dir" --identities 2 --images-per-identity 1 --val-identities 3000 \
  --val-pairs 6000 >/dev/null 2>&1
PYTHONPATH=tests/python $py -c "
import torch, insightface_models as m
torch.save(m.build('mobilefacenet' if '$model' == 'mbf' else '$model').state_dict(), '$dir/w.pth')"
start=$(date +%s.%N)
"$build/tools/facetrain" eval --checkpoint "$dir/w.pth" --model "$model" --bin "$dir/synth_val.bin" --batch-size 256 2>&1 |
  grep -E 'synth_val +[0-9]'
end=$(date +%s.%N)
$py -c "print('facetrain eval --bin, 12000 images (+ mirrors), $model, CPU: %.1f s wall, %.0f images/s' % ($end - $start, 12000 / ($end - $start)))"
