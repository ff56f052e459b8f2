#!/usr/bin/env bash
# Configures and builds facetrain in build/ (Release, Ninja, -j2 by default: these machines have
# 2 cores). usage: scripts/build.sh [extra cmake args...]   env: JOBS=N, BUILD_DIR=dir
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "${JOBS:-2}"
