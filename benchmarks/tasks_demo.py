"""The demo recipe on the synthetic data of each task: synthesize, datalist, quick training, evaluation of the
held-out fold; prints the validation Dice per region (the last epoch's, from the training log) and the evaluation's
mean Dice and lesion-wise Dice per region, as JSON and as a Markdown table.

    python benchmarks/tasks_demo.py --out runs/tasks_demo --tasks brats2021 gli ped mets --num_cases 8 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_runs import ROOT, bundle  # noqa: E402


def run_task(task: str, out: str, num_cases: int, epochs: int, seed: int) -> dict:
    from custom_nets.data import write_datalist
    from custom_nets.data.synthetic import synthesize
    from custom_nets.data.tasks import load_task

    data = os.path.join(out, task, "data")
    if not os.path.isfile(os.path.join(data, "datalist.json")):
        synthesize(data, num_cases=num_cases, seed=seed, task=task, progress=False)
        write_datalist(data, num_folds=4, seed=0)
    quick = ["configs/train.json", "configs/quick.json"]
    models = os.path.join(out, task, "models")
    seconds = bundle(
        "training", quick, dataset_dir=data, output_dir=os.path.join(out, task, "train"), ckpt_dir=models, epochs=epochs
    )
    evaluation = os.path.join(out, task, "evaluate")
    bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", "configs/quick.json"],
        dataset_dir=data,
        ckpt_dir=models,
        output_dir=evaluation,
    )
    metrics = json.load(open(os.path.join(evaluation, "summary.json")))["metrics"]
    regions = load_task(task).region_names
    return {
        "task": task,
        "train_seconds": round(seconds, 1),
        "evaluation_cases": json.load(open(os.path.join(evaluation, "summary.json")))["num_cases"],
        "dice": {r: round(metrics[f"dice_{r}"]["mean"], 3) for r in regions},
        "lesion_dice": {r: _mean(metrics[f"lesion_dice_{r}"]) for r in regions},
    }


def _mean(stats: dict) -> float | None:
    value = stats["mean"]
    return None if value != value else round(value, 3)  # NaN: no lesion on either side in any case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "tasks_demo"))
    parser.add_argument("--tasks", nargs="+", default=["brats2021", "gli", "ped", "mets"])
    parser.add_argument("--num_cases", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=21)
    args = parser.parse_args()
    results = [run_task(t, os.path.abspath(args.out), args.num_cases, args.epochs, args.seed) for t in args.tasks]
    import monai
    import torch

    header = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"MONAI {monai.__version__}, {time.strftime('%Y-%m-%d')}: {args.num_cases} synthetic cases per task "
        f"(seed {args.seed}), 4 folds, quick widths, {args.epochs} epochs, evaluation of fold 0"
    )
    json.dump({"header": header, "results": results}, open(os.path.join(args.out, "tasks_demo.json"), "w"), indent=4)
    print(header)
    print("| task | train s | evaluation mean Dice per region | lesion-wise Dice per region |")
    print("| --- | --- | --- | --- |")
    for r in results:
        dice = ", ".join(f"{k} {v:.3f}" for k, v in r["dice"].items())
        lesion = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in r["lesion_dice"].items())
        print(f"| {r['task']} | {r['train_seconds']:.0f} | {dice} | {lesion} |")


if __name__ == "__main__":
    main()
