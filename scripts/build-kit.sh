#!/usr/bin/env bash
# Builds the dependency kit that scripts/gpu-kit.sh made (Debian 12's sources of zlib, libpng,
# libjpeg-turbo, nasm, OpenCV core/imgproc/imgcodecs, yaml-cpp, fmt, spdlog, CLI11, nlohmann-json,
# GoogleTest, Google Benchmark, and CMake and Ninja for machines without them) into KIT/prefix:
# static libraries, position-independent, with the C++ ABI of the LibTorch they will link with.
# Needs a C and C++ compiler, and make where CMake 3.18+ or nasm is missing; nothing from a package
# registry.
#
# usage: scripts/build-kit.sh [KIT]     KIT defaults to kit/ in the repository
#   env: JOBS=N (default: every core), CXX11_ABI=0|1 (default: the ABI of python3's torch, else 1)
# Each package is built once (a stamp in KIT/prefix/stamps names its version and ABI); logs are in
# KIT/logs. scripts/build-gpu.sh runs this, then builds facetrain against the kit.
set -euo pipefail
cd "$(dirname "$0")/.."
kit=$(realpath -m "${1:-kit}")
prefix="$kit/prefix"
jobs=${JOBS:-$(nproc)}
[ -f "$kit/SOURCES.txt" ] || { echo "build-kit: $kit/SOURCES.txt not found: make the kit with scripts/gpu-kit.sh" >&2; exit 1; }

if [ -z "${CXX11_ABI:-}" ]; then
  CXX11_ABI=$(python3 -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))' 2>/dev/null || echo 1)
fi
case "$CXX11_ABI" in 0|1) ;; *) echo "build-kit: CXX11_ABI must be 0 or 1, not '$CXX11_ABI'" >&2; exit 2 ;; esac

for tool in cc c++; do
  command -v "$tool" >/dev/null || { echo "build-kit: '$tool' is needed and not found" >&2; exit 1; }
done
# .tar.xz with tar and xz, or with Python's tarfile where xz is missing.
unpack() {
  if command -v tar >/dev/null && command -v xz >/dev/null; then tar -C "$2" -xf "$1"; return; fi
  local py; py=$(command -v python3 || command -v python) || { echo "build-kit: neither xz nor python3 to unpack $1" >&2; return 1; }
  "$py" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
}
mkdir -p "$prefix/bin" "$prefix/stamps" "$kit/logs" "$kit/work"
export PATH="$prefix/bin:$PATH"

# The packages in build order; each has a function build_<name> run in its unpacked tree.
order=(cmake ninja-build nasm zlib libpng1.6 libjpeg-turbo opencv yaml-cpp fmtlib spdlog cli11
       nlohmann-json3 googletest benchmark)

cmake_new_enough() {
  command -v cmake >/dev/null || return 1
  local v; v=$(cmake --version | sed -n '1s/.* \([0-9]*\.[0-9]*\).*/\1/p')
  [ "$(printf '%s\n3.18\n' "$v" | sort -V | head -1)" = "3.18" ]
}

# One CMake package: configure, build and install with the kit's common settings.
# CMAKE_POLICY_VERSION_MINIMUM: CMake 4 (pip's, on the GPU machine) refuses projects that ask for
# a CMake older than 3.5, as zlib, libpng and yaml-cpp of Debian 12 do; older CMakes ignore it.
# `-include cstdint`: GCC 13's libstdc++ no longer brings <cstdint> in through other headers, and
# Debian 12's sources (written for GCC 12) use uint8_t and friends without including it.
cmake_package() {
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S . -B _build "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_INSTALL_LIBDIR=lib \
    -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DBUILD_SHARED_LIBS=OFF -DBUILD_TESTING=OFF \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 --no-warn-unused-cli \
    -DCMAKE_CXX_FLAGS="-D_GLIBCXX_USE_CXX11_ABI=$CXX11_ABI -include cstdint" "$@"
  cmake --build _build -j "$jobs"
  cmake --install _build
}
# Fails when a package's configuration picked a library outside the kit (a machine's own -dev).
only_kit_libraries() {
  local found
  found=$(grep -hoE '/[^ ;"]*lib(z|png[0-9]*|jpeg)\.(so|a)[^ ;"]*' _build/CMakeCache.txt | grep -v "^$prefix/" | sort -u || true)
  [ -z "$found" ] || { echo "build-kit: $1 found libraries outside the kit: $found"; return 1; }
}

build_cmake() {
  if cmake_new_enough; then echo "cmake $(cmake --version | head -1) is here; not building it"; return; fi
  command -v make >/dev/null || { echo "build-kit: neither CMake 3.18+ nor make (to build CMake) is here"; return 1; }
  ./bootstrap --prefix="$prefix" --parallel="$jobs" -- -DCMAKE_BUILD_TYPE=Release -DCMAKE_USE_OPENSSL=OFF -DBUILD_TESTING=OFF
  make -j "$jobs" && make install
}
build_ninja-build() {
  if command -v ninja >/dev/null; then echo "ninja $(ninja --version) is here; not building it"; return; fi
  cmake -S . -B _build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_POLICY_VERSION_MINIMUM=3.5 --no-warn-unused-cli
  cmake --build _build -j "$jobs" --target ninja
  install -m 755 _build/ninja "$prefix/bin/ninja"
}
build_nasm() {
  if command -v nasm >/dev/null; then echo "nasm is here; not building it"; return; fi
  if ! command -v make >/dev/null; then echo "no make here: no nasm, so libjpeg-turbo without SIMD"; return; fi
  ./configure --prefix="$prefix" && make -j "$jobs" nasm && install -m 755 nasm "$prefix/bin/nasm"
}
build_zlib() {
  # Debian's tree lacks win32/, which zlib's CMakeLists.txt lists on every platform (a Windows resource).
  mkdir -p win32 && touch win32/zlib1.rc
  cmake_package
  rm -f "$prefix"/lib/libz.so*
}
# The kit's own zlib, libpng and libjpeg, named file by file: these projects ask for CMake versions
# older than policy CMP0074, so *_ROOT is ignored, and a machine's own -dev packages would be found
# (and then be missing where the kit travels).
kit_zlib=(-DZLIB_INCLUDE_DIR="$prefix/include" -DZLIB_LIBRARY="$prefix/lib/libz.a"
          -DZLIB_LIBRARY_RELEASE="$prefix/lib/libz.a")
kit_png=(-DPNG_PNG_INCLUDE_DIR="$prefix/include" -DPNG_LIBRARY="$prefix/lib/libpng.a"
         -DPNG_LIBRARY_RELEASE="$prefix/lib/libpng.a")
kit_jpeg=(-DJPEG_INCLUDE_DIR="$prefix/include" -DJPEG_LIBRARY="$prefix/lib/libjpeg.a"
          -DJPEG_LIBRARY_RELEASE="$prefix/lib/libjpeg.a")
build_libpng1.6() {
  cmake_package -DPNG_SHARED=OFF -DPNG_STATIC=ON -DPNG_TESTS=OFF -DPNG_EXECUTABLES=OFF -DPNG_BUILD_ZLIB=OFF \
    "${kit_zlib[@]}"
  ln -sf libpng16.a "$prefix/lib/libpng.a" 2>/dev/null || true
}
build_libjpeg-turbo() {
  local simd=(-DWITH_SIMD=OFF)
  command -v nasm >/dev/null && simd=(-DREQUIRE_SIMD=ON -DCMAKE_ASM_NASM_COMPILER="$(command -v nasm)")
  # Its own GNUInstallDirs takes a relative CMAKE_INSTALL_LIBDIR from the working directory.
  cmake_package -DENABLE_SHARED=OFF -DENABLE_STATIC=ON -DWITH_TURBOJPEG=OFF "${simd[@]}" \
    -DCMAKE_INSTALL_LIBDIR="$prefix/lib"
}
build_opencv() {
  # Only what facetrain calls (decode JPEG/PNG, resize, warpAffine, PNG plots); nothing found on
  # the machine is let in (no TBB, OpenCL, GUI, video or other codecs), nothing is downloaded.
  cmake_package -DBUILD_LIST=core,imgproc,imgcodecs -DOPENCV_FORCE_3RDPARTY_BUILD=OFF \
    -DBUILD_ZLIB=OFF -DBUILD_PNG=OFF -DBUILD_JPEG=OFF -DWITH_PNG=ON -DWITH_JPEG=ON \
    "${kit_zlib[@]}" "${kit_png[@]}" "${kit_jpeg[@]}" \
    -DWITH_TIFF=OFF -DWITH_WEBP=OFF -DWITH_OPENJPEG=OFF -DWITH_JASPER=OFF -DWITH_OPENEXR=OFF \
    -DWITH_SPNG=OFF -DWITH_GDAL=OFF -DWITH_GDCM=OFF -DWITH_IMGCODEC_PFM=ON \
    -DWITH_IPP=OFF -DWITH_ITT=OFF -DWITH_OPENCL=OFF -DWITH_CUDA=OFF -DWITH_TBB=OFF -DWITH_OPENMP=OFF \
    -DWITH_EIGEN=OFF -DWITH_LAPACK=OFF -DWITH_PROTOBUF=OFF -DWITH_ADE=OFF -DWITH_QUIRC=OFF \
    -DWITH_GTK=OFF -DWITH_QT=OFF -DWITH_FFMPEG=OFF -DWITH_GSTREAMER=OFF -DWITH_V4L=OFF -DWITH_1394=OFF \
    -DWITH_VA=OFF -DWITH_VA_INTEL=OFF -DWITH_CAROTENE=OFF -DWITH_OPENVX=OFF -DWITH_VULKAN=OFF \
    -DBUILD_TESTS=OFF -DBUILD_PERF_TESTS=OFF -DBUILD_EXAMPLES=OFF -DBUILD_opencv_apps=OFF \
    -DBUILD_DOCS=OFF -DBUILD_JAVA=OFF -DBUILD_opencv_python3=OFF -DOPENCV_GENERATE_PKGCONFIG=OFF
  only_kit_libraries opencv
}
build_yaml-cpp() { cmake_package -DYAML_CPP_BUILD_TESTS=OFF -DYAML_CPP_BUILD_TOOLS=OFF -DYAML_BUILD_SHARED_LIBS=OFF; }
build_fmtlib() { cmake_package -DFMT_TEST=OFF -DFMT_DOC=OFF; }
build_spdlog() { cmake_package -DSPDLOG_FMT_EXTERNAL=ON -DSPDLOG_BUILD_EXAMPLE=OFF -DSPDLOG_BUILD_TESTS=OFF; }
build_cli11() { cmake_package -DCLI11_BUILD_TESTS=OFF -DCLI11_BUILD_EXAMPLES=OFF -DCLI11_BUILD_DOCS=OFF; }
build_nlohmann-json3() { cmake_package -DJSON_BuildTests=OFF -DJSON_Install=ON; }
build_googletest() { cmake_package -DBUILD_GMOCK=ON -DINSTALL_GTEST=ON; }
build_benchmark() {
  # Debian's patches take the version from its build (GIT_VERSION), not from git.
  local version; version=$(sed -n 's/^benchmark \([0-9.]*\).*/\1/p' "$kit/SOURCES.txt")
  cmake_package -DGIT_VERSION="$version" -DBENCHMARK_ENABLE_TESTING=OFF -DBENCHMARK_ENABLE_GTEST_TESTS=OFF \
    -DBENCHMARK_ENABLE_WERROR=OFF -DBENCHMARK_ENABLE_LIBPFM=OFF
}

# What each package must leave in the prefix.
declare -A installs=(
  [zlib]="lib/libz.a include/zlib.h" [libpng1.6]="lib/libpng.a include/png.h"
  [libjpeg-turbo]="lib/libjpeg.a include/jpeglib.h"
  [opencv]="lib/libopencv_core.a lib/libopencv_imgproc.a lib/libopencv_imgcodecs.a lib/cmake/opencv4/OpenCVConfig.cmake"
  [yaml-cpp]="lib/libyaml-cpp.a" [fmtlib]="lib/libfmt.a" [spdlog]="lib/libspdlog.a"
  [cli11]="include/CLI/CLI.hpp" [nlohmann-json3]="include/nlohmann/json.hpp"
  [googletest]="lib/libgtest.a lib/libgmock.a" [benchmark]="lib/libbenchmark.a"
)

n=${#order[@]}
i=0
start=$SECONDS
for p in "${order[@]}"; do
  i=$((i + 1))
  line=$(grep "^$p " "$kit/SOURCES.txt") || { echo "build-kit: $p is not in $kit/SOURCES.txt" >&2; exit 1; }
  stamp="$prefix/stamps/$p"
  want="$line abi=$CXX11_ABI"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "build-kit: [$i/$n] $p already built"
    continue
  fi
  t=$SECONDS
  echo "build-kit: [$i/$n] $p ($(echo "$line" | cut -d' ' -f2)) ... $((SECONDS - start)) s so far"
  rm -rf "$kit/work/$p"
  unpack "$kit/src/$p.tar.xz" "$kit/work"
  # A plain command, not an `if` or `||` operand: there bash would ignore `set -e` inside the
  # build function, and a failed step would pass unnoticed.
  set +e
  (
    set -e
    cd "$kit/work/$p"
    "build_$p"
    for f in ${installs[$p]:-}; do
      [ -e "$prefix/$f" ] || { echo "build-kit: $p did not install $prefix/$f"; exit 1; }
    done
  ) >"$kit/logs/$p.log" 2>&1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$kit/logs/$p.log" >&2
    echo "build-kit: $p failed; its whole log is $kit/logs/$p.log" >&2
    exit 1
  fi
  rm -rf "$kit/work/$p"
  echo "$want" >"$stamp"
  echo "build-kit: [$i/$n] $p done in $((SECONDS - t)) s"
done
echo "build-kit: $prefix is ready (C++ ABI $CXX11_ABI, $((SECONDS - start)) s)"
