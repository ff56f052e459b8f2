#!/usr/bin/env bash
# CLI checks: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_test.sh
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
check version 0 '^facetrain [0-9]+\.[0-9]+\.[0-9]+ \(LibTorch' -- "$FACETRAIN" --version
check help 0 'head-demo' -- "$FACETRAIN" --help
check heads 0 'curricularface +angular margin' -- "$FACETRAIN" heads
check unknown-subcommand 109 'didn.t expect|not expected|extras' -- "$FACETRAIN" trian
check missing-file 2 'error: .*nope.yaml: cannot open the file' -- "$FACETRAIN" head-demo --config nope.yaml
bad="$SOURCE/tests/integration/data/bad_head_demo.yaml"
check bad-config-scale 2 "bad_head_demo.yaml:6:10: head.scale: must be > 0, got -64" -- "$FACETRAIN" head-demo --config "$bad"
check bad-config-all 2 "3 configuration errors" -- "$FACETRAIN" head-demo --config "$bad"
check bad-config-hint 2 "bad_head_demo.yaml:7:3: head.margn: unknown key 'margn' \(did you mean 'margin'\?\)" -- "$FACETRAIN" head-demo --config "$bad"
check bad-config-type 2 "bad_head_demo.yaml:9:10: train.steps: expected an integer, got 'many'" -- "$FACETRAIN" head-demo --config "$bad"
check bad-set 2 "--set head.scale=-1: head.scale: must be > 0" -- "$FACETRAIN" head-demo --config "$SOURCE/configs/head_demo.yaml" --set head.scale=-1
check model-list 0 'mobilefacenet_large +MobileFaceNet, blocks \[2, 8, 12, 4\], scale 4' -- "$FACETRAIN" model list
check model-summary-r50 0 'parameters +43,590,848' -- "$FACETRAIN" model summary --type r50
check model-summary-flops 0 'GFLOPs +0\.449 ' -- "$FACETRAIN" model summary --type mbf
check model-summary-set 0 'parameters +37,167,552' -- "$FACETRAIN" model summary --type iresnet50 --set model.embedding_size=256
check model-summary-none 106 'Exactly 1 option from \[--config,--type\] is required' -- "$FACETRAIN" model summary
check model-summary-bad-key 2 "--set model.dropuot=0.1: model.dropuot: unknown key 'dropuot' \(did you mean 'dropout'\?\)" -- "$FACETRAIN" model summary --type r50 --set model.dropuot=0.1
check model-summary-bad-type 2 "unknown backbone type 'resnet50'.*did you mean 'iresnet50'" -- "$FACETRAIN" model summary --type resnet50
check data-align-missing 1 'error: .*nope.txt: cannot open the landmarks file' -- "$FACETRAIN" data align --images . --landmarks nope.txt --out /tmp/facetrain-cli-align
tmp=$(mktemp -d)
printf 'model:\n  type: mobilefacenet\n  scale: 0\n' > "$tmp/model.yaml"
check model-summary-config 2 "model.yaml:3:10: model.scale: must be >= 1, got 0" -- "$FACETRAIN" model summary --config "$tmp/model.yaml"
check demo 0 'held-out accuracy .*-> (8|9|10)[0-9.]*%' -- "$FACETRAIN" head-demo --config "$SOURCE/configs/head_demo.yaml" --set head.type=cosface --set head.margin=0.35 --plot "$tmp/loss.svg"
if ! grep -q '<polyline' "$tmp/loss.svg" 2>/dev/null; then echo "FAIL plot: no loss curve in $tmp/loss.svg"; fail=1; else echo "ok   plot"; fi
# bench head: one rank's head step. 200 000 classes of 64 on one rank with SGD hold centres,
# their gradient and momentum (3 x 51.2 MB): the measured peak must cover them.
check bench-head 0 'peak [0-9.]+ MiB, estimate [0-9.]+ MiB; [0-9.]+ s per step' -- "$FACETRAIN" bench head --classes 200000 \
  --world 1 --batch 8 --dim 64 --steps 2 --json "$tmp/bench.jsonl"
check bench-head-partial-fc 0 '\(20000 classes a step\)' -- "$FACETRAIN" bench head --classes 400000 --world 2 --batch 4 \
  --dim 64 --sample-rate 0.1 --steps 2 --json "$tmp/bench.jsonl"
if /usr/bin/python3 - "$tmp/bench.jsonl" <<'PY'
import json, sys
full, part = [json.loads(l) for l in open(sys.argv[1])]
assert full["peak_exact"] and full["peak_bytes"] >= 3 * 200000 * 64 * 4, full
assert full["local_classes"] == 200000 and part["local_classes"] == 200000 and part["rows"] == 8, part
assert part["sampled_classes"] == 20000 and part["estimate_bytes"] < full["estimate_bytes"], part
PY
then echo "ok   bench-head-json"; else echo "FAIL bench-head-json"; cat "$tmp/bench.jsonl"; fail=1; fi
# bench train: a tiny recipe's whole step, from memory and from its loader, with MFU against a peak.
cat >"$tmp/tiny.yaml" <<'EOF'
model: {type: mobilefacenet, embedding_size: 16, scale: 1, blocks: [1, 1, 1, 1]}
head: {type: arcface, scale: 16, chunk_size: 3}
data: {type: synthetic, identities: 8, images_per_identity: 4, workers: 1}
train: {batch_size: 4, device: cpu}
log: {tensorboard: false}
EOF
check bench-train 0 '\| loader \| [0-9.]+ \| [0-9.]+ ms .* [0-9.]+ % \|.*' -- "$FACETRAIN" bench train \
  --config "$tmp/tiny.yaml" --steps 3 --warmup 1 --peak-tflops 1 --json "$tmp/train.jsonl"
check bench-train-ratio 0 'loader / memory: [0-9.]+x' -- "$FACETRAIN" bench train --config "$tmp/tiny.yaml" --steps 2 --warmup 0
if /usr/bin/python3 -c '
import json, sys
r = json.loads(open(sys.argv[1]).readline())
assert [x["input"] for x in r["runs"]] == ["memory", "loader"], r
assert r["flops_per_image"] > 6 * 8 * 16 and all(0 < x["mfu"] < 1 and x["img_per_sec"] > 0 for x in r["runs"]), r
' "$tmp/train.jsonl"; then echo "ok   bench-train-json"; else echo "FAIL bench-train-json"; cat "$tmp/train.jsonl"; fail=1; fi
check bench-train-bad 2 "--input: must be memory, loader or both, got 'disk'" -- "$FACETRAIN" bench train --config "$tmp/tiny.yaml" --input disk
check bench-head-bad 2 '--sample-rate: must be in \(0, 1\], got 2' -- "$FACETRAIN" bench head --sample-rate 2
check bench-head-bad-device 2 "--device: must be cpu, cuda or cuda:N, got 'tpu'" -- "$FACETRAIN" bench head --device tpu
check bench-head-bad-index 1 "--device: cannot read 'cuda:x'" -- "$FACETRAIN" bench head --device cuda:x --classes 10 --world 1
check bench-head-bad-head 2 "unknown head type 'arcfce'" -- "$FACETRAIN" bench head --head '{type: arcfce}' --classes 10 --world 1
rm -rf "$tmp"
exit $fail
