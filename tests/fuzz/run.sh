#!/usr/bin/env bash
# Builds a libFuzzer target with clang (ASan + UBSan) and runs it on its corpus.
#   tests/fuzz/run.sh TARGET [SECONDS]   fuzz for SECONDS (default 600), growing tests/fuzz/corpus/TARGET
#   tests/fuzz/run.sh TARGET 0           replay the committed corpus only (what ctest runs)
# Targets: pickle, recordio, idx, verification_bin. Needs clang-14 and libclang-rt-14-dev (scripts/setup.sh --tests installs them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=$1
seconds=${2:-600}
out=${FUZZ_BUILD_DIR:-$root/build-fuzz}
mkdir -p "$out"
case "$target" in
  pickle) sources=("$root/src/io/pickle.cpp" "$root/src/core/error.cpp") ;;
  recordio) sources=("$root/src/data/recordio.cpp" "$root/src/core/error.cpp" "$root/src/core/files.cpp") ;;
  idx) sources=("$root/src/data/recordio.cpp" "$root/src/core/error.cpp" "$root/src/core/files.cpp") ;;
  verification_bin) sources=("$root/src/io/verification_bin.cpp" "$root/src/io/pickle.cpp" "$root/src/core/error.cpp"
                             "$root/src/core/files.cpp") ;;
  *) echo "run.sh: unknown target '$target' (known: pickle, recordio, idx, verification_bin)" >&2; exit 2 ;;
esac
bin="$out/fuzz_$target"
clang++-14 -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -I"$root/include" "$here/fuzz_$target.cpp" "${sources[@]}" -o "$bin"
corpus="$here/corpus/$target"
if [ "$seconds" = 0 ]; then
  "$bin" -runs=0 "$corpus"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$bin" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 "$work" "$corpus"
  # Keep a minimal corpus that covers what the run found.
  "$bin" -merge=1 "$corpus" "$work" >/dev/null 2>&1
fi
