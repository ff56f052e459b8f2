#!/usr/bin/env bash
# `facetrain --config` / `facetrain train`: usage FACETRAIN=path/to/facetrain SOURCE=repo root cli_train_test.sh
# A tiny recipe (seconds): bad configs fail with file:line (exit 2); SIGTERM from outside ends the
# run with a loadable checkpoint (exit 143) and --resume auto finishes it; kill -9 at random moments,
# with a checkpoint every step, never leaves a corrupt checkpoint; eval, embed and export take a
# .ckpt; PyTorch reads it and loads its backbone into insightface's model.
set -uo pipefail
. "$(dirname "$0")/cli_lib.sh"
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/tiny.yaml" <<'EOF'
model: {type: mobilefacenet, embedding_size: 16, scale: 1, blocks: [1, 1, 1, 1]}
head: {type: arcface, scale: 16, margin: 0.2}
data:
  path: "{output}/synth"
  synthesize: {identities: 4, images_per_identity: 6, val_identities: 4, val_pairs: 20}
  workers: 1
train: {max_steps: 40, batch_size: 4, device: cpu}
eval: {targets: ["{output}/synth/synth_val.bin"], every_steps: 0, batch_size: 8}
checkpoint: {every_steps: 10, keep_last: 2}
log: {every_steps: 5}
EOF

# Bad recipes: exit 2, every problem with file:line:column, nothing trained.
printf 'model: {type: mbf}\nhead: {type: arcface, scale: big}\ndata: {path: %s/none}\ntrain: {epochs: 2, bacth_size: 8}\n' "$tmp" >"$tmp/bad.yaml"
check bad-type 2 'bad\.yaml:2:[0-9]+: head\.scale: expected a number' -- "$FACETRAIN" --config "$tmp/bad.yaml" --output "$tmp/bad"
check bad-unknown-key 2 "bad\.yaml:4:[0-9]+: train\.bacth_size: unknown key.*did you mean 'batch_size'" -- \
  "$FACETRAIN" --config "$tmp/bad.yaml" --output "$tmp/bad"
check bad-data-path 2 "bad\.yaml:3:[0-9]+: data\.path: '.*/none' does not exist" -- \
  "$FACETRAIN" --config "$tmp/bad.yaml" --output "$tmp/bad"
check bad-set 2 '--set train\.amp=fp32: train\.amp' -- "$FACETRAIN" train --config "$tmp/tiny.yaml" --set train.amp=fp32
check bad-fp16-cpu 2 'train\.amp: fp16 needs a CUDA device' -- \
  "$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/fp16" --set train.amp=fp16
check no-config 2 'a recipe is required' -- "$FACETRAIN" train --output "$tmp/x"
if [ -e "$tmp/bad/checkpoints" ]; then echo "FAIL bad-config: a bad recipe created checkpoints"; fail=1; fi

# SIGTERM from outside, mid-run: the step finishes, a checkpoint is written, exit 128 + 15.
"$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/run" --set train.max_steps=400 >"$tmp/run.out" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q 'step 10/400' "$tmp/run.out" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$pid"; wait "$pid"; rc=$?
if [ "$rc" -eq 143 ] && grep -q 'SIGTERM received' "$tmp/run.out" && grep -q 'continue with --resume auto' "$tmp/run.out"; then
  echo "ok   sigterm"; else echo "FAIL sigterm: exit $rc"; tail -5 "$tmp/run.out"; fail=1; fi
last=$(ls "$tmp/run/checkpoints"/step_*.ckpt | tail -1)
check sigterm-checkpoint-loads 0 'wrote the mobilefacenet backbone weights' -- \
  "$FACETRAIN" export --checkpoint "$last" --out "$tmp/after_term.pth"
check resume-auto 0 'done: 400 steps' -- "$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/run" --set train.max_steps=400 --resume auto
check fresh-run-refuses-old-checkpoints 2 'already holds checkpoints' -- "$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/run"

# kill -9 at random moments while a checkpoint is written every step: every checkpoint left is whole.
# Each kill comes at a random moment after training has started (a loaded machine may take
# seconds to get there).
for i in 1 2 3 4 5 6; do
  "$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/kill" --resume auto --set train.max_steps=100000 \
    --set checkpoint.every_steps=1 --set checkpoint.keep_last=3 >"$tmp/kill.$i.out" 2>&1 &
  pid=$!
  for _ in $(seq 600); do grep -q 'training from step' "$tmp/kill.$i.out" 2>/dev/null && break; sleep 0.1; done
  sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); print 0.5 + rand() * 2 }')"
  kill -KILL "$pid"; wait "$pid" 2>/dev/null
  cat "$tmp/kill.$i.out" >>"$tmp/kill.out"
done
bad=0; count=0
shopt -s nullglob
for f in "$tmp/kill/checkpoints"/step_*.ckpt; do
  count=$((count + 1))
  "$FACETRAIN" export --checkpoint "$f" --out "$tmp/k.pth" >/dev/null 2>&1 || { echo "corrupt: $f"; bad=1; }
done
shopt -u nullglob
if [ "$bad" -eq 0 ] && [ "$count" -ge 1 ]; then echo "ok   kill-9-during-checkpoints ($count whole checkpoints)"; else
  echo "FAIL kill-9-during-checkpoints: $count checkpoints, corrupt: $bad"; tail -5 "$tmp/kill.out"; fail=1; fi

# A finished run's checkpoint works with eval, embed and export (no --model: the .ckpt names it).
ckpt=$(ls "$tmp/run/checkpoints"/step_*.ckpt | tail -1)
check eval-ckpt 0 'synth_val +20 ' -- "$FACETRAIN" eval --checkpoint "$ckpt" --bin "$tmp/run/synth/synth_val.bin" --batch-size 8
check embed-ckpt 0 'wrote 40 embedding\(s\) of size 16' -- \
  "$FACETRAIN" embed --checkpoint "$ckpt" --bin "$tmp/run/synth/synth_val.bin" --out "$tmp/e.npy"
check export-ckpt 0 'wrote the mobilefacenet backbone weights' -- "$FACETRAIN" export --checkpoint "$ckpt" --out "$tmp/w.pth"
check resume-from-path-alone 0 'done: 400 steps' -- "$FACETRAIN" --resume "$ckpt"
check finetune-pth 0 'finetune: backbone weights from' -- \
  "$FACETRAIN" --config "$tmp/tiny.yaml" --output "$tmp/ft" --finetune "$tmp/w.pth" --set train.max_steps=2 --set data.synthesize.identities=5

# PyTorch: torch.load gives a dict; its backbone loads strictly into insightface's MobileFaceNet.
out=$(PYTHONPATH="$SOURCE/tests/python" "$py" -c "
import torch, insightface_models as m
d = torch.load('$ckpt')
net = m.build('mobilefacenet', embedding_size=16, blocks=(1, 1, 1, 1), scale=1)
net.load_state_dict(d['state_dict_backbone'], strict=True)
print('loaded', d['format'], d['step'], d['head_type'], tuple(d['state_dict_head']['weight'].shape))" 2>&1)
if grep -q 'loaded facetrain.checkpoint 400 arcface (4, 16)' <<<"$out"; then echo "ok   torch-load-ckpt"; else
  echo "FAIL torch-load-ckpt: $out"; fail=1; fi
for f in metrics.jsonl config.yaml train.log curves.png; do
  [ -s "$tmp/run/$f" ] || { echo "FAIL output: $tmp/run/$f missing or empty"; fail=1; }
done
exit $fail
