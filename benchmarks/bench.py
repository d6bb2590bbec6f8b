"""Speed and memory of Vox2Vox training and full-volume inference, ours against a reference-style loop: the command
line over one module per measurement (training_step.py, data_wait.py, inference_speed.py, cache_plan.py; memory.py
sweeps checkpointing and batch sizes).

    python benchmarks/bench.py                       # 64^3 crops, full widths, 3 timed iterations after 1 warm-up
    python benchmarks/bench.py --crop 128 --iterations 2 --skip_inference
    python benchmarks/bench.py --channels 16,32,64,128 --amp --checkpointing levels
    python benchmarks/bench.py --crop 128 --batch 4 --checkpointing --live_memory --skip_reference --skip_inference
    python benchmarks/bench.py --cache_plan          # bytes per cached BraTS-sized case, projected for BraTS 2021
    python benchmarks/bench.py --variant paper --skip_reference --skip_data --skip_inference   # the authors' networks
    python benchmarks/bench.py --figures docs/figures/speed_64   # also writes speed_64_<measurement>.json and .md

Each measurement runs in a fresh process so that its peak memory is its own: peak resident memory (CPU) or peak
allocated memory (CUDA). With ``--live_memory`` the CPU figure counts live tensors, as the CUDA one does: the fast
allocator setting of the Makefile keeps freed memory resident, which inflates peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import data_wait  # noqa: E402
import inference_speed  # noqa: E402
import training_step  # noqa: E402
from common import LIVE_MEMORY_TUNABLES, matmul_gflops  # noqa: E402
from figures import machine, write_figures  # noqa: E402

from custom_nets.allocator import keep_freed_memory  # noqa: E402
from custom_nets.networks.generator import CHECKPOINTING  # noqa: E402
from custom_nets.networks.variants import VARIANTS  # noqa: E402
from custom_nets.utils import write_json  # noqa: E402


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=lambda s: tuple(int(c) for c in s.split(",")), default=(64, 128, 256, 512))
    parser.add_argument("--variant", choices=VARIANTS, default="vox2vox", help="networks of both training loops")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--amp_dtype", choices=("float16", "bfloat16"), help="default: float16 on CUDA, else bfloat16")
    parser.add_argument("--cudnn_benchmark", action="store_true", help="torch.backends.cudnn.benchmark (CUDA)")
    parser.add_argument("--channels_last", action="store_true", help="networks and batches in channels_last_3d")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks (training)")
    parser.add_argument(
        "--checkpointing",
        nargs="?",
        const="network",
        default="none",
        choices=CHECKPOINTING,
        help="activation checkpointing in the generator (no value: network)",
    )
    parser.add_argument("--d_checkpointing", action="store_true", help="activation checkpointing in the discriminator")
    parser.add_argument("--no_fused", dest="fused", action="store_false")
    parser.add_argument("--d_threshold", type=float, default=0.8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--skip_reference", action="store_true")
    parser.add_argument("--skip_inference", action="store_true")
    parser.add_argument("--skip_data", action="store_true", help="skip the data-pipeline measurement")
    parser.add_argument("--data_dir", help="dataset (with datalist.json) for the data-pipeline measurement")
    parser.add_argument("--num_workers", type=int, help="loader workers for the data-pipeline measurement")
    parser.add_argument("--data_cases", type=int, default=10, help="synthetic cases of the data-pipeline measurement")
    parser.add_argument("--dice_model", help="a quick-config model: compare the inferers' Dice on its held-out fold")
    parser.add_argument("--dice_data", default="demo/data", help="the dataset that model was trained on")
    parser.add_argument("--json", help="also write all the figures to this file")
    parser.add_argument(
        "--figures", help="write each measurement's figures to <FIGURES>_<measurement>.json and .md (docs/figures/...)"
    )
    parser.add_argument(
        "--cache_plan",
        action="store_true",
        help="only measure bytes per cached BraTS-sized case and project the default configs' cache for BraTS 2021",
    )
    parser.add_argument(
        "--live_memory",
        action="store_true",
        help="CPU: peak memory of live tensors (as CUDA's max_memory_allocated) rather than of the fast allocator; "
        "slower iterations",
    )
    return parser


def settings(args) -> str:
    return (
        f"crop {args.crop}^3, batch {args.batch}, widths {'-'.join(map(str, args.channels))}, variant {args.variant}, "
        f"amp {args.amp} ({args.amp_dtype or 'default dtype'}), checkpointing G {args.checkpointing} "
        f"D {args.d_checkpointing}, fused Adam {args.fused}, cudnn.benchmark {args.cudnn_benchmark}, "
        f"channels_last {args.channels_last}, compile {args.compile}, {args.iterations} timed iterations after "
        f"{args.warmup} warm-up"
    )


def memory_setting(args) -> str:
    if torch.device(args.device).type == "cuda":
        return "memory: peak allocated (torch.cuda.max_memory_allocated)"
    meaning = "live tensors" if args.live_memory else "peak resident memory"
    return f"memory: {meaning} (GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'glibc defaults')})"


def main(argv: list[str] | None = None) -> None:
    args = arguments().parse_args(argv)
    if args.cache_plan:
        import cache_plan

        plan = cache_plan.measure()
        cache_plan.report(plan)
        if args.json:
            write_json(args.json, {"cache_plan": plan})
        if args.figures:
            write_figures(f"{args.figures}_cache_plan", plan, cache_plan.table(plan))
        return
    if args.live_memory:
        os.environ["GLIBC_TUNABLES"] = LIVE_MEMORY_TUNABLES

    device = torch.device(args.device)
    matmul = matmul_gflops(device)
    print(f"machine: {machine()}; torch {torch.__version__}; fp32 matmul {matmul:.0f} GFLOP/s")
    print(f"config: {settings(args)}")
    print(memory_setting(args))
    if device.type == "cpu":
        kept = keep_freed_memory()
        how = "freed memory kept in-process" if kept["applied"] else "as the environment sets it"
        print(f"allocator: {how} ({kept['reason']})")
    results = {"machine": machine(), "matmul_gflops": matmul, "config": vars(args)}
    caption = f"{settings(args)}; {memory_setting(args)}; fp32 matmul {matmul:.0f} GFLOP/s.\n\n"

    def figures(name: str, table: str) -> None:
        if args.figures:
            write_figures(f"{args.figures}_{name}", {"config": vars(args), name: results[name]}, caption + table)

    if not args.skip_training:
        results["training"] = training_step.measure(args, matmul, reference=not args.skip_reference)
        figures("training", training_step.report(results["training"]))
    if not args.skip_data:
        results["data_wait"] = data_wait.measure(args)
        figures("data_wait", data_wait.report(results["data_wait"]))
    if not args.skip_inference:
        results["inference"] = inference_speed.measure(args)
        figures("inference", inference_speed.report(results["inference"]))
    if args.dice_model:
        results["dice"] = inference_speed.measure_dice(args)
        figures("dice", inference_speed.report_dice(results["dice"]))
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
