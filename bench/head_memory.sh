#!/usr/bin/env bash
# Peak memory and time of one rank's margin-head step (class centres, logits, distributed
# cross-entropy, backward, SGD with momentum) at 1 M and 2 M classes, sample_rate 1 and 0.1:
# `facetrain bench head`, each configuration in its own process (its own peak), in one run.
#   bench/head_memory.sh   env: BUILD_DIR (build), WORLD (ranks the classes are split over, 8),
#                          BATCH (per rank, 128), DIM (512), HEAD ({type: arcface}), STEPS (2),
#                          CLASSES ("1000000 2000000"), RATES ("1 0.1"), CHUNKS (head.chunk_size
#                          values, "0": the plain cross-entropy), OPTIMIZER (sgd | adamw | none)
# Prints a markdown table: measured peak, the trainer's estimate, and time per step.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
world=${WORLD:-8}
batch=${BATCH:-128}
dim=${DIM:-512}
head=${HEAD:-"{type: arcface}"}
steps=${STEPS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for classes in ${CLASSES:-1000000 2000000}; do
  for rate in ${RATES:-1 0.1}; do
    for chunk in ${CHUNKS:-0}; do
      "$build/tools/facetrain" bench head --head "$head" --classes "$classes" --world "$world" --batch "$batch" \
        --dim "$dim" --sample-rate "$rate" --chunk "$chunk" --optimizer "${OPTIMIZER:-sgd}" --steps "$steps" \
        --json "$tmp/results.jsonl" >&2
    done
  done
done
/usr/bin/python3 - "$tmp/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
gib = lambda b: "%.2f GiB" % (b / 2**30) if b >= 2**30 else "%.0f MiB" % (b / 2**20)
r0 = rows[0]
print("head %s, D %d, %d ranks, batch %d per rank (%d rows), optimizer %s, %d steps"
      % (r0["head"], r0["embedding_size"], r0["world_size"], r0["batch_size"], r0["rows"], r0["optimizer"], r0["steps"]))
print("| classes | per rank | sample_rate | chunk | classes a step | peak (measured) | estimate | s / step |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print("| %d | %d | %g | %s | %d | %s | %s | %.2f |" % (r["num_classes"], r["local_classes"], r["sample_rate"],
          r["chunk"] or "plain", r["sampled_classes"], gib(r["peak_bytes"]), gib(r["estimate_bytes"]),
          r["seconds_per_step"]))
PY
