#!/usr/bin/env bash
# Issue 7's CUDA measurements as one prepared run (about 6 minutes on one H200; each line is its own bench.py).
# Full widths, 128^3. Prints the figures and writes each run's JSON under ${OUT:-benchmarks/cuda_results}.
#
# The device machine has torch but not MONAI, Ignite or nibabel; carry them as wheels (see the device tool's notes)
# and put them on PYTHONPATH before running this script.
set -euo pipefail
out=${OUT:-benchmarks/cuda_results}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=".:${PYTHONPATH:-}"  # custom_nets from this checkout
common=(--crop 128 --iterations 10 --warmup 3 --skip_data)

run() {
    local name=$1
    shift
    echo "== $name: $*"
    python benchmarks/bench.py "${common[@]}" "$@" --json "$out/$name.json" 2>&1 | grep -v Warning |
        grep -E "machine|config|seconds|peak memory|GFLOP|share|ratio|/ plain|/ reference" || true
}

run fp32  # ours, the reference loop and inference
run amp_fp16 --amp --skip_reference
run amp_bf16 --amp --amp_dtype bfloat16 --skip_reference
run cudnn_benchmark --cudnn_benchmark --skip_reference
run channels_last --channels_last --skip_reference --skip_inference
run compile --compile --skip_reference --skip_inference
for mode in none network levels; do
    run "batch4_$mode" --batch 4 --checkpointing "$mode" --skip_reference --skip_inference
done
