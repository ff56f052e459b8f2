#!/usr/bin/env bash
# Everything issue 8 measures on a GPU, in one run (the lent GPU machine gives one command of at
# most 10 minutes): the CUDA build (scripts/build-gpu.sh against the carried kit), the GPU tests
# (ctest -R _CUDA), then, as ratios from the same run on the same GPU,
#   * facetrain bench train (in-memory batches and the .rec loader) against
#     bench/python_train_step.py eager and with torch.compile, arcface_torch's step
#     (ArcFace s 64 m 0.5, SGD 0.1/0.9/5e-4, clip 5, 93 431 classes as MS1MV3), for
#     iresnet50, iresnet100 and mobilefacenet at batch 128 and 256, bf16 and fp16;
#   * peak GPU memory of head + cross-entropy at C = 1 M and 2 M, B = 512, D = 512, plain and chunked.
# The most wanted figures come first; each measurement is skipped once DEADLINE seconds have gone
# by since the start, and everything is written as it comes, so a run cut short keeps what it has.
#
# usage: bench/gpu_bench.sh OUT        env: KIT (kit), BUILD (build-gpu), DEADLINE (540),
#                                           STEPS (20), PEAK_TFLOPS (989.4: H100/H200 SXM dense bf16/fp16)
# OUT gets: env.txt, build.log, ctest_cuda.log, train.jsonl (facetrain), python.jsonl (PyTorch),
# head.jsonl, summary.md (the tables of docs/benchmarks.md), and bench.log (all of the above's output):
# eight files, what a device run brings back.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:?usage: bench/gpu_bench.sh OUT}")
mkdir -p "$out"
kit=${KIT:-kit}
build=${BUILD:-build-gpu}
deadline=${DEADLINE:-540}
steps=${STEPS:-20}
peak=${PEAK_TFLOPS:-989.4}
classes=93431
err=$(mktemp)
trap 'rm -f "$err"' EXIT
exec > >(tee -a "$out/bench.log") 2>&1
left() { echo $((deadline - SECONDS)); }
time_for() { # time_for SECONDS WHAT: true when SECONDS fit before the deadline
  if [ "$(left)" -lt "$1" ]; then echo "gpu_bench: skipped ($2): $(left) s left"; return 1; fi
}

{
  date -u +%FT%TZ; nproc; free -g | head -2
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
  command -v cmake ninja c++ nvcc; c++ --version | head -1
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

echo "gpu_bench: building ($(left) s left)"
# The command and the GPU tests only: the CPU suite is CI's.
if ! TARGETS="facetrain_cli facetrain_cuda_tests" bash scripts/build-gpu.sh "$kit" "$build" >"$out/build.log" 2>&1; then
  tail -n 60 "$out/build.log"
  echo "gpu_bench: the build failed; the whole log is build.log"
  exit 1
fi
tail -n 3 "$out/build.log"
ft="$build/tools/facetrain"

if time_for 120 "GPU tests"; then
  timeout $(( $(left) > 240 ? 180 : 90 )) ctest --test-dir "$build" -R _CUDA --output-on-failure >"$out/ctest_cuda.log" 2>&1
  echo "gpu_bench: ctest -R _CUDA exited $?"; tail -n 5 "$out/ctest_cuda.log"
fi

data="$build/gpu_bench_data"
[ -f "$data/train.rec" ] || "$ft" data synth --out "$data" --identities 200 --images-per-identity 20 --val-pairs 20 >/dev/null

facetrain_run() { # MODEL BATCH AMP
  time_for 40 "facetrain $1 $2 $3" || return 0
  timeout 150 "$ft" bench train --config bench/gpu_bench.yaml --steps "$steps" --warmup 5 --peak-tflops "$peak" \
    --set model.type="$1" --set train.batch_size="$2" --set train.amp="$3" --set data.path="$data" \
    --set data.num_classes=$classes --json "$out/train.jsonl" |
    tail -n 6
}
python_run() { # MODEL BATCH AMP [--compile]
  time_for 40 "python $*" || return 0
  local line mode=eager
  [ "${4:-}" = --compile ] && mode=compile
  line=$(timeout 240 python3 bench/python_train_step.py "$1" "$2" $classes "$steps" --device cuda --amp "$3" \
         --warmup 5 ${4:-} 2>"$err" | tail -n 1)
  [ -n "$line" ] || { echo "gpu_bench: python $* gave no result"; tail -n 5 "$err"; return 0; }
  printf '{"model":"%s","batch":%s,"amp":"%s","mode":"%s","result":%s}\n' "$1" "$2" "$3" "$mode" "$line" >>"$out/python.jsonl"
  echo "python $*: $line"
}
head_run() { # CLASSES CHUNK
  time_for 30 "head $1 $2" || return 0
  timeout 120 "$ft" bench head --device cuda --classes "$1" --world 1 --batch 512 --dim 512 --chunk "$2" \
    --optimizer sgd --steps 3 --json "$out/head.jsonl" | tail -n 1
}

# 1. The headline: iresnet50, batch 128, both precisions, the three implementations.
for amp in bf16 fp16; do
  facetrain_run iresnet50 128 $amp
  python_run iresnet50 128 $amp
  python_run iresnet50 128 $amp --compile
done
# 2. The head's memory (short).
for c in 1000000 2000000; do head_run $c 0; head_run $c 65536; done
# 3. The rest of the grid, eager first; compile last (it costs a minute a model).
for model in mobilefacenet iresnet100 iresnet50; do
  for batch in 128 256; do
    for amp in bf16 fp16; do
      [ "$model/$batch" = iresnet50/128 ] && continue
      facetrain_run $model $batch $amp
      python_run $model $batch $amp
    done
  done
done
for model in mobilefacenet iresnet100 iresnet50; do
  for batch in 128 256; do
    for amp in bf16 fp16; do
      [ "$model/$batch" = iresnet50/128 ] && continue
      python_run $model $batch $amp --compile
    done
  done
done

python3 bench/gpu_summary.py "$out" >"$out/summary.md" && cat "$out/summary.md"
echo "gpu_bench: done after $SECONDS s"
