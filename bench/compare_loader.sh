#!/usr/bin/env bash
# The loader benchmark of docs/benchmarks.md: the C++ loader (bench_loader) and the Python baseline
# (python_loader_baseline.py) on the same .rec, 1 and 2 workers, interleaved for ROUNDS rounds;
# prints the median images/s of each and the ratio C++ / Python.
#   bench/compare_loader.sh [REC]      env: BUILD_DIR (default build), ROUNDS (default 3)
# Without REC it writes 5000 synthetic faces (100 identities x 50) with `facetrain data synth`.
# Needs the Python baseline's packages: scripts/setup.sh --bench.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
rounds=${ROUNDS:-3}
py=/usr/bin/python3
rec=${1:-}
if [ -z "$rec" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  "$build/tools/facetrain" data synth --out "$dir" --identities 100 --images-per-identity 50 --val-identities 2 --val-pairs 2 >/dev/null 2>&1
  rec=$dir/train.rec
fi
results=$(mktemp)
for round in $(seq "$rounds"); do
  for workers in 1 2; do
    FACETRAIN_BENCH_REC=$rec FACETRAIN_BENCH_WORKERS=$workers "$build/bench/facetrain_bench_loader" \
      --benchmark_min_time=3 --benchmark_format=json 2>/dev/null |
      $py -c 'import json,sys; b=json.load(sys.stdin)["benchmarks"][0]; print(json.dumps({"impl":"C++","workers":int(b["workers"]),"images_per_s":b["items_per_second"]}))' >>"$results"
    $py bench/python_loader_baseline.py "$rec" --workers "$workers" --epochs 2 |
      $py -c 'import json,sys; r=json.load(sys.stdin); print(json.dumps({"impl":"Python","workers":r["workers"],"images_per_s":r["images_per_s"]}))' >>"$results"
  done
done
$py - "$results" "$rec" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("file: %s, %d rounds, median images/s" % (sys.argv[2], len(rows) // 4))
print("| workers | C++ images/s | Python images/s | C++ / Python | C++ per worker | Python per worker |")
print("|---|---|---|---|---|---|")
for w in (1, 2):
    c = statistics.median(r["images_per_s"] for r in rows if r["impl"] == "C++" and r["workers"] == w)
    p = statistics.median(r["images_per_s"] for r in rows if r["impl"] == "Python" and r["workers"] == w)
    print("| %d | %.0f | %.0f | %.2f | %.0f | %.0f |" % (w, c, p, c / p, c / w, p / w))
PY
rm -f "$results"
