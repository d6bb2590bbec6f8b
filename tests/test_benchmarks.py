"""The benchmark scripts run, print every figure and write them for the docs (their numbers are measured, never
asserted)."""

import json
import subprocess
import sys

from tests.bundle_helpers import ROOT


def test_bench_prints_and_writes_all_training_figures(tmp_path):
    """With the switches the CUDA check uses (cudnn.benchmark is a no-op on CPU); live memory is labelled."""
    stem = tmp_path / "speed"
    cmd = [sys.executable, "benchmarks/bench.py", "--channels", "4,8,16,32", "--crop", "32", "--iterations", "1"]
    cmd += ["--skip_inference", "--data_cases", "5", "--figures", str(stem)]
    cmd += ["--live_memory", "--checkpointing", "levels"]
    cmd += ["--amp", "--amp_dtype", "bfloat16", "--channels_last", "--cudnn_benchmark"]
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
        "share of matmul",
        "ours / reference time per iteration",
        "discriminator update fraction",
        "allocator kept in-process: ",
        "data pipeline at the quick config",
    ):
        assert figure in result.stdout, figure
    # one JSON and one Markdown table per measurement, each under the line that says where it was measured
    for measurement in ("training", "data_wait"):
        table = (tmp_path / f"speed_{measurement}.md").read_text()
        provenance = json.loads((tmp_path / f"speed_{measurement}.json").read_text())["provenance"]
        assert table.startswith(f"*{provenance['machine']}; torch {provenance['torch']}, MONAI {provenance['monai']}")
        assert "`python benchmarks/bench.py --channels 4,8,16,32 --crop 32 --iterations 1" in table
        assert "crop 32^3, batch 1, widths 4-8-16-32" in table and "\n| --- |" in table
        assert "memory: live tensors" in table
    training = json.loads((tmp_path / "speed_training.json").read_text())["figures"]["training"]
    assert set(training) == {"ours", "ours_allocator_off", "reference"}
    assert training["ours"]["seconds_per_iteration"] > 0
    assert not (tmp_path / "speed_inference.md").exists()
    assert "memory: live tensors (GLIBC_TUNABLES=glibc.malloc.mmap_threshold=65536)" in result.stdout
    assert "amp True (bfloat16), checkpointing G levels" in result.stdout and "channels_last True" in result.stdout
