#!/usr/bin/env bash
# Makes the dependency kit for a machine with no package registry (the lent GPU machine): the
# Debian 12 source packages of everything facetrain needs besides LibTorch, trimmed to what the
# build uses, in one folder under 64 MiB (what a device run can carry). scripts/build-kit.sh builds
# them there; docs/gpu.md has the whole recipe.
#
# usage (as root on a Debian 12 machine that reaches Debian's archive):
#   scripts/gpu-kit.sh [KIT]        KIT defaults to kit/ in the repository (ignored by git)
#
# The machine's own apt configuration is left alone: the deb-src list and its package lists live
# in a temporary folder for this run.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$(realpath -m "${1:-kit}")
limit=$((64 * 1024 * 1024))

# Source package, and the folders of its tree the build needs ("." for all of it).
# OpenCV: core, imgproc and imgcodecs only (decode, resize/warp, PNG plots), no samples or data
# (its top CMakeLists.txt still adds doc/ and data/, whose own CMakeLists.txt do nothing here).
# nlohmann-json: its CMake files and headers, not its 8 MB of test data.
packages=(zlib libpng1.6 libjpeg-turbo nasm opencv yaml-cpp fmtlib spdlog cli11 nlohmann-json3
          googletest benchmark cmake ninja-build)
declare -A keep=(
  [opencv]="CMakeLists.txt LICENSE cmake include platforms doc/CMakeLists.txt data/CMakeLists.txt modules/core modules/imgproc modules/imgcodecs"
  [nlohmann-json3]="CMakeLists.txt LICENSE.MIT cmake include single_include meson.build nlohmann_json.natvis"
)

command -v apt-get >/dev/null || { echo "gpu-kit: needs a Debian machine (apt-get)" >&2; exit 1; }
command -v dpkg-source >/dev/null || { echo "gpu-kit: needs dpkg-dev (apt-get install dpkg-dev)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/parts" "$tmp/lists/partial" "$tmp/dl"
. /etc/os-release
cat >"$tmp/parts/src.sources" <<EOF
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME} ${VERSION_CODENAME}-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o "Dir::Etc::SourceList=/dev/null" -o "Dir::Etc::SourceParts=$tmp/parts"
          -o "Dir::State::Lists=$tmp/lists" -o "APT::Sandbox::User=root")
echo "gpu-kit: reading the source lists of ${VERSION_CODENAME}"
apt-get "${apt_opts[@]}" update -qq

rm -rf "$kit"
mkdir -p "$kit/src"
: >"$kit/SOURCES.txt"
for p in "${packages[@]}"; do
  echo "gpu-kit: $p"
  (cd "$tmp/dl" && apt-get "${apt_opts[@]}" source -qq "$p" >/dev/null 2>"$tmp/err") || {
    cat "$tmp/err" >&2; echo "gpu-kit: could not fetch the source package $p" >&2; exit 1; }
  dir=$(find "$tmp/dl" -mindepth 1 -maxdepth 1 -type d | head -1)
  version=$(cd "$dir" && dpkg-parsechangelog -S Version)
  out="$tmp/tree/$p"
  mkdir -p "$out"
  if [ -n "${keep[$p]:-}" ]; then
    for f in ${keep[$p]}; do
      [ -e "$dir/$f" ] || { echo "gpu-kit: $p $version has no $f" >&2; exit 1; }
      mkdir -p "$out/$(dirname "$f")"
      cp -a "$dir/$f" "$out/$f"
    done
    # Tests and performance tests are not built; their sources are half of OpenCV's modules.
    find "$out" -type d \( -name test -o -name perf \) -path '*/modules/*' -prune -exec rm -rf {} +
  else
    cp -a "$dir/." "$out/"
  fi
  rm -rf "$out/debian" "$out/.pc"
  tar -C "$tmp/tree" -cJf "$kit/src/$p.tar.xz" "$p"
  printf '%s %s %s\n' "$p" "$version" "$(sha256sum "$kit/src/$p.tar.xz" | cut -d' ' -f1)" >>"$kit/SOURCES.txt"
  rm -rf "$tmp/dl"/* "$tmp/tree"
done

size=$(du -sb "$kit" | cut -f1)
echo "gpu-kit: $kit holds $(ls "$kit/src" | wc -l) source trees, $((size / 1024 / 1024)) MiB"
if [ "$size" -gt "$limit" ]; then
  echo "gpu-kit: that is over the 64 MiB a device run carries" >&2
  exit 1
fi
