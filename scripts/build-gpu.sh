#!/usr/bin/env bash
# The CUDA build of facetrain on a machine with no package registry (the lent GPU machine: CUDA 13,
# PyTorch 2.x, CMake, ninja, a C++ compiler). The other dependencies come from the kit that
# scripts/gpu-kit.sh made on a Debian machine and that travelled with the tree (at most 64 MiB):
# scripts/build-kit.sh builds it into KIT/prefix, then facetrain is configured against it and
# python3's LibTorch. docs/gpu.md has the whole recipe.
#
# usage: scripts/build-gpu.sh [KIT [BUILD]]     KIT defaults to kit/, BUILD to build-gpu/
#   env: JOBS=N (default: every core)
#        PYTHON=python3 (the Python whose torch gives LibTorch, its C++ ABI and the interop tests)
#        TORCH_PREFIX=DIR (LibTorch's CMake prefix; default: PYTHON's torch.utils.cmake_prefix_path)
#        FACETRAIN_CUDA=ON|OFF (default ON: build the facetrain_cuda target when LibTorch has CUDA)
#        CUDA_ARCH=9.0 (TORCH_CUDA_ARCH_LIST for LibTorch's CMake; default: 9.0, Hopper)
#        TARGETS="facetrain_cli facetrain_cuda_tests" (build only these; default: everything)
# Then: ctest --test-dir BUILD -R _CUDA (the GPU tests), or the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$(realpath -m "${1:-kit}")
build=$(realpath -m "${2:-build-gpu}")
jobs=${JOBS:-$(nproc)}
python=${PYTHON:-python3}
start=$SECONDS

command -v "$python" >/dev/null || { echo "build-gpu: '$python' not found (set PYTHON)" >&2; exit 1; }
if [ -z "${TORCH_PREFIX:-}" ]; then
  TORCH_PREFIX=$("$python" -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
    { echo "build-gpu: $python cannot import torch (set PYTHON or TORCH_PREFIX)" >&2; exit 1; }
fi
abi=$("$python" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))' 2>/dev/null || echo 1)
echo "build-gpu: LibTorch at $TORCH_PREFIX (C++ ABI $abi), kit $kit, build $build, $jobs jobs"

CXX11_ABI=$abi JOBS=$jobs bash scripts/build-kit.sh "$kit"
export PATH="$kit/prefix/bin:$PATH"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The kit's prefix comes first, so its packages are found before any on the machine.
TORCH_CUDA_ARCH_LIST=${CUDA_ARCH:-9.0} cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$kit/prefix;$TORCH_PREFIX" -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON \
  -DFACETRAIN_CUDA="${FACETRAIN_CUDA:-ON}" -DFACETRAIN_TEST_PYTHON="$(command -v "$python")"
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$jobs" "${targets[@]}"
echo "build-gpu: built in $((SECONDS - start)) s; facetrain is $build/tools/facetrain"
grep -q '^FACETRAIN_WITH_CUDA:INTERNAL=ON' "$build/CMakeCache.txt" && echo "build-gpu: with the CUDA code (facetrain_cuda)" ||
  echo "build-gpu: WITHOUT the CUDA code (LibTorch has no CUDA, or FACETRAIN_CUDA=OFF)"
