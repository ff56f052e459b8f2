#!/usr/bin/env bash
# Installs everything facetrain needs to build and test, from Debian 12 packages.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
#
# usage: scripts/setup.sh [--tests] [--bench]
#   --tests  also installs what the tests need beyond the build: Debian's PyTorch and NumPy
#            (python3-torch, python3-numpy), which make and check the interop goldens, and
#            clang-14 with libFuzzer (libclang-rt-14-dev) for the fuzz targets.
#   --bench  also installs the Python baselines' packages (python3-numpy, python3-opencv) that
#            bench/compare_loader.sh runs beside the C++ loader.
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build make git ca-certificates pkg-config
  # LibTorch 1.13 (CPU) and what its CMake config and distributed headers need
  libtorch-dev libgloo-dev libopenblas0-pthread
  # everything else
  libopencv-dev libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
for arg in "$@"; do
  case "$arg" in
    --tests) packages+=(python3 python3-torch python3-numpy clang-14 libclang-rt-14-dev) ;;
    --bench) packages+=(python3 python3-numpy python3-opencv) ;;
    *) echo "setup: unknown option '$arg' (known: --tests, --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
