#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on its embedded default: configs/quickstart.yaml
# writes a synthetic face dataset into build/quickstart/synth (first run only), trains a small
# MobileFaceNet with ArcFace on it on the CPU, and verifies it on pairs of unseen identities.
# Outputs in build/quickstart: train.log, metrics.jsonl, tensorboard/, checkpoints/, curves.png.
# Extra arguments go to the trainer (e.g. --set train.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build=${BUILD_DIR:-build}
out="$build/quickstart"
"$build/tools/facetrain" --version
# A new run each time (the synthetic data in $out/synth is kept and reused).
rm -rf "$out/checkpoints" "$out/metrics.jsonl" "$out/tensorboard" "$out/train.log" "$out/curves.png"
"$build/tools/facetrain" --config configs/quickstart.yaml --output "$out" "$@"
echo "quickstart: accuracy on unseen identities above; curves in $out/curves.png"
