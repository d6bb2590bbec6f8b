"""The demo recipe on the synthetic data of each task: synthesize, datalist, quick training, evaluation of the
held-out fold; prints the validation Dice per region (the last epoch's, from the training log) and the evaluation's
mean Dice and lesion-wise Dice per region, as JSON and as a Markdown table.

    python benchmarks/tasks_demo.py --out runs/tasks_demo --tasks brats2021 gli ped mets --num_cases 8 --epochs 6
        [--figures docs/figures/tasks_demo]      # also writes the table and its figures there (.md, .json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_runs import ROOT, bundle  # noqa: E402
from figures import markdown_table, write_figures  # noqa: E402


def run_task(task: str, out: str, num_cases: int, epochs: int, seed: int) -> dict:
    """The commands a user runs, as docs/tasks.md writes them: the data CLI, then the bundle's
    training, evaluation and inference; the figures come from the files they write."""
    from custom_nets.data.tasks import load_task

    data = os.path.join(out, task, "data")
    if not os.path.isfile(os.path.join(data, "datalist.json")):
        cli = [sys.executable, "-m", "custom_nets.data"]
        synthesize = ["synthesize", data, "--task", task, "--num_cases", str(num_cases), "--seed", str(seed)]
        subprocess.run([*cli, *synthesize], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([*cli, "datalist", data, "--num_folds", "4"], check=True)  # the task from the case ids
    quick = ["configs/train.json", "configs/quick.json"]
    models = os.path.join(out, task, "models")
    log = os.path.join(out, task, "training.log")
    seconds = bundle(
        "training",
        quick,
        log_file=log,
        dataset_dir=data,
        output_dir=os.path.join(out, task, "train"),
        ckpt_dir=models,
        epochs=epochs,
    )
    evaluation = os.path.join(out, task, "evaluate")
    bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", "configs/quick.json"],
        dataset_dir=data,
        ckpt_dir=models,
        output_dir=evaluation,
    )
    inference = os.path.join(out, task, "inference")
    bundle(
        None,
        ["configs/inference.json", "configs/quick.json"],
        dataset_dir=data,
        ckpt_dir=models,
        task=task,
        output_dir=inference,
    )
    summary = json.load(open(os.path.join(evaluation, "summary.json")))
    metrics = summary["metrics"]
    regions = load_task(task).region_names
    return {
        "task": task,
        "train_seconds": round(seconds, 1),
        "evaluation_cases": summary["num_cases"],
        "inference_written": json.load(open(os.path.join(inference, "inference_summary.json")))["summary"]["written"],
        "validation_dice": last_validation(log, regions),
        "dice": {r: round(metrics[f"dice_{r}"]["mean"], 3) for r in regions},
        "lesion_dice": {r: _mean(metrics[f"lesion_dice_{r}"]) for r in regions},
    }


def last_validation(log: str, regions) -> dict:
    """The last epoch's validation Dice per region, from the training log's ``Metrics --`` lines."""
    found = {}
    for line in open(log):
        for region in regions:
            if m := re.search(rf"val_dice_{re.escape(region)}: ([0-9.]+)", line, re.IGNORECASE):
                found[region] = round(float(m.group(1)), 3)
    return found


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
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args()
    results = [run_task(t, os.path.abspath(args.out), args.num_cases, args.epochs, args.seed) for t in args.tasks]
    caption = (
        f"{args.num_cases} synthetic cases per task (seed {args.seed}), 4 folds, quick widths, {args.epochs} epochs, "
        "evaluation of fold 0"
    )
    from custom_nets.utils import write_json

    write_json(os.path.join(args.out, "tasks_demo.json"), {"caption": caption, "results": results})
    rows = []
    for r in results:
        lesion = ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in r["lesion_dice"].items())
        rows.append(
            [
                f"`{r['task']}`",
                f"{r['train_seconds']:.0f}",
                ", ".join(f"{k} {v:.3f}" for k, v in r["validation_dice"].items()),
                ", ".join(f"{k} {v:.3f}" for k, v in r["dice"].items()),
                lesion,
                f"{r['inference_written']} of {args.num_cases}",
            ]
        )
    header = ["task", "train s", "validation Dice, last epoch", "evaluation mean Dice", "lesion-wise Dice", "inferred"]
    table = markdown_table(header, rows)
    print(caption)
    print(table)
    if args.figures:
        write_figures(args.figures, {"caption": caption, "results": results}, f"{caption}.\n\n{table}")


if __name__ == "__main__":
    main()
