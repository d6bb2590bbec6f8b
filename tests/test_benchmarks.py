"""The benchmark script runs and prints every figure (its numbers are measured, never asserted)."""

import subprocess
import sys

from tests.bundle_helpers import ROOT


def test_bench_prints_all_training_figures():
    cmd = [
        sys.executable,
        "benchmarks/bench.py",
        "--channels",
        "4,8,16,32",
        "--crop",
        "32",
        "--iterations",
        "1",
        "--skip_inference",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for figure in (
        "seconds / iteration",
        "peak memory (GiB)",
        "data wait",
        "generator forward",
        "discriminator forward",
        "optimizer steps",
        "TFLOP / iteration",
        "share of matmul peak",
        "ours / reference time per iteration",
        "discriminator update fraction",
        "allocator kept in-process: ",
        "throughput, ours / the reference loop in its plain environment: ",
        "data pipeline at the quick config",
    ):
        assert figure in result.stdout, figure


def test_bench_options_for_memory_and_cuda_levers_run():
    """The switches the CUDA check uses run here too (cudnn.benchmark is a no-op on CPU); live memory is labelled."""
    cmd = [sys.executable, "benchmarks/bench.py", "--channels", "4,8,16,32", "--crop", "32", "--iterations", "1"]
    cmd += ["--skip_reference", "--skip_data", "--skip_inference", "--live_memory", "--checkpointing", "levels"]
    cmd += ["--amp", "--amp_dtype", "bfloat16", "--channels_last", "--cudnn_benchmark"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "memory: live tensors (GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536)" in result.stdout
    assert "amp True (bfloat16), checkpointing G levels" in result.stdout
    assert "channels_last True" in result.stdout and "peak memory (GiB)" in result.stdout
