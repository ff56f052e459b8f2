#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on its embedded default.
# Until the trainer exists (issue 6) the main job is the head demo: a margin head trained on
# random clusters, on CPU, in seconds; its loss curve goes to build/head_demo_loss.svg.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
build=${BUILD_DIR:-build}
"$build/tools/facetrain" --version
"$build/tools/facetrain" --help
"$build/tools/facetrain" heads
"$build/tools/facetrain" model list
"$build/tools/facetrain" model summary --type mobilefacenet
# The embedded dataset the trainer will train on: synthetic faces, written as insightface files.
"$build/tools/facetrain" data synth --out "$build/synth" --identities 50 --images-per-identity 10 --val-pairs 200
"$build/tools/facetrain" data inspect "$build/synth/train.rec"
"$build/tools/facetrain" head-demo --config configs/head_demo.yaml --plot "$build/head_demo_loss.svg" "$@"
