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
        "data pipeline at the quick config",
    ):
        assert figure in result.stdout, figure
