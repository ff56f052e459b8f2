#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds and runs an outside project that does
# find_package(facetrain) and the README's snippet.
# usage: package_test.sh BUILD_DIR SOURCE_DIR [PREFIX_PATH]
#   PREFIX_PATH: the build's CMAKE_PREFIX_PATH, ':'-separated (where its dependencies were found: a
#   LibTorch, the GPU kit), searched after the install prefix, as a user's project would be.
set -euo pipefail
build=$1 src=$2 deps=${3:-}
deps=${deps//:/;}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -x "$tmp/prefix/bin/facetrain"
test -f "$tmp/prefix/include/facetrain/heads.h"
test -f "$tmp/prefix/include/facetrain/backbones.h"
test -f "$tmp/prefix/include/facetrain/io.h"
test -f "$tmp/prefix/include/facetrain/version.h"
cmake -S "$src/tests/integration/package_consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix${deps:+;$deps}" >/dev/null
cmake --build "$tmp/consumer" -j2 >/dev/null
(cd "$tmp" && "$tmp/consumer/consumer")
"$tmp/prefix/bin/facetrain" --version
