"""Peak memory of one training iteration against activation checkpointing and batch size: the bundle's trainer
(``training_step.train_ours``) at full widths for every generator checkpointing mode (``none``, ``network``,
``levels``) and batch, each in its own process with the allocator setting that makes peak resident memory count live
tensors (as CUDA's ``max_memory_allocated`` does); seconds per iteration are measured in the same runs, so they are
slower than training's (every freed block goes back to the system).

    python benchmarks/memory.py --crop 128 --batches 1,2,4 [--figures docs/figures/checkpointing]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402
from common import LIVE_MEMORY_TUNABLES, run_child  # noqa: E402
from figures import markdown_table, write_figures  # noqa: E402
from training_step import train_ours  # noqa: E402

MODES = ("none", "network", "levels")


def measure(crop: int, batches: list[int], modes: list[str], extra: list[str]) -> dict:
    """``{batch: {mode: figures}}``."""
    os.environ["GLIBC_TUNABLES"] = LIVE_MEMORY_TUNABLES  # the children read it at their start
    results: dict = {}
    for batch in batches:
        for mode in modes:
            args = bench.arguments().parse_args(["--crop", str(crop), "--batch", str(batch), *extra])
            args.checkpointing = mode
            figures = run_child(train_ours, args)
            print(
                f"batch {batch}, checkpointing {mode}: {figures['peak_memory_gib']:.2f} GiB live, "
                f"{figures['seconds_per_iteration']:.2f} s / iteration",
                flush=True,
            )
            results.setdefault(batch, {})[mode] = figures
    return results


def change(value: float, base: float) -> str:
    return f" ({value / base - 1:+.0%})" if value != base else ""


def table(results: dict, crop: int, modes: list[str]) -> str:
    header = [f"{crop}^3, full widths, fp32", *(f"`{m}`" for m in modes)]
    rows = []
    for key, label, unit in (
        ("peak_memory_gib", "peak live GiB", ".2f"),
        ("seconds_per_iteration", "s / iteration", ".2f"),
    ):
        for batch, by_mode in results.items():
            base = by_mode[modes[0]][key]
            rows.append(
                [
                    f"batch {batch}: {label}",
                    *(f"{by_mode[m][key]:{unit}}{change(by_mode[m][key], base)}" for m in modes),
                ]
            )
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--channels", default="64,128,256,512")
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"--modes: {', '.join(unknown)} is not one of {', '.join(MODES)}")
    extra = ["--iterations", str(args.iterations), "--channels", args.channels]
    results = measure(args.crop, args.batches, args.modes, extra)
    markdown = table(results, args.crop, args.modes)
    print(markdown)
    if args.figures:
        write_figures(args.figures, {str(b): r for b, r in results.items()}, markdown)


if __name__ == "__main__":
    main()
