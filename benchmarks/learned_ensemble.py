"""Mean against learned ensemble (the Vox2Vox paper's 3x3x3 ensembler) on the demo data, through the bundle's own
commands, as a user would run them (from ``bundle/``):

    python benchmarks/learned_ensemble.py --data demo/data --out runs/learned_ensemble --epochs 30 \
        [--figures docs/figures/learned_ensemble]   # writes <figures>_dice and <figures>_uncertainty (.md, .json)

1. Fold models k = 1..4 at the quick widths: fold k validates, folds {1..4} minus k train; fold 0 (the demo's
   held-out cases) is seen by no member (``--train_datalist`` excludes it).
2. ``configs/train_ensembler.json``: the ensembler trains on the members' outputs for folds 1-4, the members'
   validation cases (each case seen in training by all members but one, as in the paper, whose ensembler trained
   on the training set of its ten fold models).
3. Inference on fold 0 with ``--ensemble mean`` and ``--ensemble learned``; per-region Dice by the BraTS
   convention (``custom_nets.handlers.brats_metrics.official_metrics``).
4. ``run evaluating`` on fold 0 with the learned ensemble's members: the per-case uncertainty score of the members'
   disagreement against the per-case Dice (``uncertainty_correlation.json``, Spearman's rank correlation).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil

import nibabel as nib
import numpy as np
from bundle_runs import bundle
from figures import markdown_table, write_figures

MEMBERS = (1, 2, 3, 4)


def dice_table(data: str, predictions: str, cases: list[str]) -> dict[str, float]:
    from custom_nets.handlers.brats_metrics import official_metrics

    rows = []
    for case in cases:
        truth = nib.load(os.path.join(data, case, f"{case}_seg.nii.gz"))
        pred = nib.load(os.path.join(predictions, f"{case}.nii.gz"))
        row = official_metrics(np.asarray(pred.dataobj), np.asarray(truth.dataobj), truth.header.get_zooms()[:3])
        rows.append(row)
    return {r: float(np.mean([row[f"dice_{r}"] for row in rows])) for r in ("WT", "TC", "ET")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo/data", help="the demo dataset, with its datalist (5 folds)")
    parser.add_argument("--out", default="runs/learned_ensemble")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of each fold model")
    parser.add_argument("--ensembler_epochs", type=int, default=20)
    parser.add_argument("--figures", help="write the figures to <FIGURES>_dice and <FIGURES>_uncertainty (.json, .md)")
    args = parser.parse_args()
    data, out = os.path.abspath(args.data), os.path.abspath(args.out)
    datalist = json.load(open(os.path.join(data, "datalist.json")))["training"]
    held_out = sorted(d["case"] for d in datalist if d["fold"] == 0)
    quick = ["configs/train.json", "configs/quick.json"]
    seconds = {}
    for k in MEMBERS:
        ckpt = os.path.join(out, "models", f"fold{k}")
        if not os.path.exists(os.path.join(ckpt, "model.pt")):
            seconds[f"fold{k}"] = bundle(
                "training",
                quick,
                dataset_dir=data,
                fold=k,
                train_datalist="$[d for d in @datalist if d['fold'] not in (0, @fold)]",
                ckpt_dir=ckpt,
                output_dir=os.path.join(out, "train", f"fold{k}"),
                epochs=args.epochs,
            )
    seconds["ensembler"] = bundle(
        "training",
        ["configs/train.json", "configs/train_ensembler.json", "configs/quick.json"],
        dataset_dir=data,
        ckpt_dir=os.path.join(out, "models"),
        output_dir=os.path.join(out, "train", "ensembler"),
        ensemble_folds=list(MEMBERS),
        ensembler_epochs=args.ensembler_epochs,
    )
    held_out_dir = os.path.join(out, "held_out")
    for case in held_out:
        if not os.path.isdir(os.path.join(held_out_dir, case)):
            shutil.copytree(os.path.join(data, case), os.path.join(held_out_dir, case))
    members = "[" + ",".join(f"'{os.path.join(out, 'models', f'fold{k}', 'model.pt')}'" for k in MEMBERS) + "]"
    results = {}
    for ensemble in ("mean", "learned"):
        predictions = os.path.join(out, f"inference_{ensemble}")
        seconds[ensemble] = bundle(
            None,
            ["configs/inference.json", "configs/quick.json"],
            dataset_dir=held_out_dir,
            ckpt_dir=os.path.join(out, "models"),
            model_files=members,
            ensemble=ensemble,
            output_dir=predictions,
            overwrite="true",
            save_png="false",
        )
        results[ensemble] = dice_table(data, predictions, held_out)
    print(f"\nheld-out fold 0 ({len(held_out)} cases), {len(MEMBERS)} members, mean Dice (BraTS convention)")
    print(f"{'ensemble':<10}{'WT':>8}{'TC':>8}{'ET':>8}{'seconds':>10}")
    for ensemble, dice in results.items():
        print(
            f"{ensemble:<10}" + "".join(f"{dice[r]:>8.3f}" for r in ("WT", "TC", "ET")) + f"{seconds[ensemble]:>10.1f}"
        )
    evaluation = os.path.join(out, "evaluate_learned")
    seconds["evaluate"] = bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", "configs/quick.json"],
        dataset_dir=data,
        ckpt_dir=os.path.join(out, "models"),
        model_files=members,
        ensemble="learned",
        output_dir=evaluation,
    )
    correlation = json.load(open(os.path.join(evaluation, "uncertainty_correlation.json")))
    with open(os.path.join(evaluation, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    print(f"\nper case (learned ensemble, held-out fold 0), reviewed first first: {correlation['review_first']}")
    print(f"{'case':<20}{'uncertainty':>12}{'member_dice':>12}{'dice WT':>9}{'dice TC':>9}{'dice ET':>9}")
    for row in sorted(rows, key=lambda r: -float(r["uncertainty"])):
        print(
            f"{row['case']:<20}{float(row['uncertainty']):>12.4f}{float(row['member_dice']):>12.4f}"
            + "".join(f"{float(row[f'dice_{r}']):>9.3f}" for r in ("WT", "TC", "ET"))
        )
    spearman = correlation["spearman_uncertainty_vs"]
    print("Spearman (uncertainty vs Dice): " + ", ".join(f"{k} {v}" for k, v in spearman.items()))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if args.figures:
        caption = (
            f"{len(MEMBERS)} members at the quick widths, one per fold 1-4, each trained {args.epochs} epochs on the "
            f"other three; the ensembler {args.ensembler_epochs} epochs on folds 1-4; held-out fold 0, "
            f"{len(held_out)} cases"
        )
        dice_rows = [[f"`ensemble {e}`", *(f"{d[r]:.3f}" for r in ("WT", "TC", "ET"))] for e, d in results.items()]
        table = markdown_table(["mean Dice (BraTS convention)", "WT", "TC", "ET"], dice_rows)
        write_figures(f"{args.figures}_dice", {"dice": results, "seconds": seconds}, f"{caption}.\n\n{table}")
        case_rows = [
            [row["case"], f"{float(row['uncertainty']):.4f}", f"{float(row['member_dice']):.4f}"]
            + [f"{float(row[f'dice_{r}']):.3f}" for r in ("WT", "TC", "ET")]
            for row in sorted(rows, key=lambda r: -float(r["uncertainty"]))
        ]
        header = ["held-out case (reviewed first at the top)", "uncertainty", "member_dice", "WT", "TC", "ET"]
        spearman_line = "Spearman's rank correlation of `uncertainty` with Dice: " + ", ".join(
            f"{k} {v}" for k, v in spearman.items()
        )
        write_figures(
            f"{args.figures}_uncertainty",
            {"cases": rows, "correlation": correlation},
            f"{caption}; `run evaluating` with `ensemble learned`.\n\n{markdown_table(header, case_rows)}\n"
            f"{spearman_line}.\n",
        )


if __name__ == "__main__":
    main()
