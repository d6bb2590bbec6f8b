"""Missing-modality segmentation on the demo's held-out cases, one row per dropped sequence, through the bundle's own
commands as a user runs them (from ``bundle/``):

    python benchmarks/missing_modality.py --data demo/data --out runs/missing_modality --epochs 60 \
        [--figures docs/figures/missing_modality]   # also writes the table and its figures there (.md, .json)

1. Four synthesis models at the quick widths (``configs/synthesis.json --target_modality t``, each from the other
   three), and a segmentation model at the quick widths unless ``--seg_model`` is given: fold 1 validates, folds 2-4
   train, fold 0 (the held-out cases) is seen by none.
2. For each sequence t, the held-out cases without t (links to the other files) through
   ``configs/missing_modality_inference.json``; the complete cases through ``configs/inference.json``.
3. ``python -m custom_nets.brasyn`` for each t: BraSyn SSIM inside and outside the tumour, PSNR, MSE, and the Dice
   (WT/TC/ET, BraTS convention) of the segmentation with the synthesized t and with the real one; a picture per case
   in ``<out>/brasyn/<t>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bundle_runs import bundle  # noqa: E402
from figures import markdown_table, write_figures  # noqa: E402

from custom_nets.brasyn import REGIONS, evaluate  # noqa: E402
from custom_nets.data.conventions import CHANNELS  # noqa: E402

QUICK = "configs/quick.json"
HELD_OUT_TRAINING = {"fold": 1, "train_datalist": "$[d for d in @datalist if d['fold'] not in (0, @fold)]"}


def without(data: str, cases: list[str], dropped: str, folder: str) -> str:
    """``folder`` holding each case of ``cases`` as links to its files, the ``dropped`` sequence left out."""
    from custom_nets.data.datalist import scan_dataset

    _, entries = scan_dataset(data, required=())
    for entry in (e for e in entries if e["case"] in cases):
        case_folder = os.path.join(folder, entry["case"])
        os.makedirs(case_folder, exist_ok=True)
        for modality, path in zip(CHANNELS, entry["image"], strict=True):
            link = os.path.join(case_folder, os.path.basename(path))
            if modality != dropped and not os.path.lexists(link):
                os.symlink(path, link)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="demo/data", help="the demo dataset, with its datalist (5 folds)")
    parser.add_argument("--out", default="runs/missing_modality")
    parser.add_argument("--epochs", type=int, default=60, help="epochs of each synthesis model")
    parser.add_argument("--seg_model", default=None, help="a quick segmentation model that never saw fold 0")
    parser.add_argument("--seg_epochs", type=int, default=30)
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args()
    data, out = os.path.abspath(args.data), os.path.abspath(args.out)
    datalist = json.load(open(os.path.join(data, "datalist.json")))["training"]
    held_out = sorted(d["case"] for d in datalist if d["fold"] == 0)
    seconds = {}
    for target in CHANNELS:
        ckpt = os.path.join(out, "models", "synthesis", target)
        if not os.path.exists(os.path.join(ckpt, "model.pt")):
            seconds[f"train {target}"] = bundle(
                "training",
                ["configs/train.json", "configs/synthesis.json", QUICK],
                dataset_dir=data,
                target_modality=target,
                ckpt_dir=ckpt,
                output_dir=os.path.join(out, "train", target),
                epochs=args.epochs,
                **HELD_OUT_TRAINING,
            )
    seg_model = os.path.abspath(args.seg_model) if args.seg_model else os.path.join(out, "models", "model.pt")
    if not os.path.exists(seg_model):
        seconds["train segmentation"] = bundle(
            "training",
            ["configs/train.json", QUICK],
            dataset_dir=data,
            ckpt_dir=os.path.dirname(seg_model),
            output_dir=os.path.join(out, "train", "segmentation"),
            epochs=args.seg_epochs,
            **HELD_OUT_TRAINING,
        )
    common = {"model_files": f"['{seg_model}']", "overwrite": "true"}
    real_run = os.path.join(out, "runs", "real")
    seconds["inference, all four real"] = bundle(
        None,
        ["configs/inference.json", QUICK],
        dataset_dir=without(data, held_out, "", os.path.join(out, "held_out", "complete")),
        output_dir=real_run,
        save_png="false",
        **common,
    )
    summaries = {}
    for target in CHANNELS:
        run_dir = os.path.join(out, "runs", target)
        seconds[f"missing {target}"] = bundle(
            None,
            ["configs/inference.json", "configs/missing_modality_inference.json", QUICK],
            dataset_dir=without(data, held_out, target, os.path.join(out, "held_out", f"without_{target}")),
            ckpt_dir=os.path.join(out, "models"),
            output_dir=run_dir,
            **common,
        )
        summaries[target] = evaluate(run_dir, data, real_run, os.path.join(out, "brasyn", target))
    print(f"\nheld-out fold 0 ({len(held_out)} cases), one sequence dropped at a time; means over the cases")
    header = f"{'dropped':<9}{'SSIM tumour':>12}{'SSIM other':>11}{'PSNR':>7}{'MSE':>8}"
    header += "".join(f"{f'{r} real':>9}{f'{r} synth':>9}" for r in REGIONS)
    print(header)
    for target, summary in summaries.items():
        mean = {k: v["mean"] for k, v in summary["all"].items()}
        line = f"{target:<9}{mean['ssim_tumour']:>12.4f}{mean['ssim_non_tumour']:>11.4f}{mean['psnr']:>7.2f}"
        line += f"{mean['mse']:>8.4f}"
        line += "".join(f"{mean[f'dice_{r}_real']:>9.3f}{mean[f'dice_{r}_synthesized']:>9.3f}" for r in REGIONS)
        print(line)
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if args.figures:
        caption = (
            f"held-out fold 0 ({len(held_out)} cases), one sequence dropped at a time, means over the cases; four "
            f"synthesis models of {args.epochs} epochs and the segmentation model "
            f"{'given' if args.seg_model else f'of {args.seg_epochs} epochs'}, trained on folds 2-4 at the quick "
            "widths; real: the same segmentation model given all four real sequences"
        )
        header = ["dropped", "SSIM tumour", "SSIM non-tumour", "PSNR (dB)", "MSE"]
        header += [f"{r} real / synth" for r in REGIONS]
        rows = []
        for target, summary in summaries.items():
            mean = {k: v["mean"] for k, v in summary["all"].items()}
            rows.append(
                [target, f"{mean['ssim_tumour']:.4f}", f"{mean['ssim_non_tumour']:.4f}", f"{mean['psnr']:.2f}"]
                + [f"{mean['mse']:.4f}"]
                + [f"{mean[f'dice_{r}_real']:.3f} / {mean[f'dice_{r}_synthesized']:.3f}" for r in REGIONS]
            )
        figures = {"summaries": summaries, "seconds": seconds}
        write_figures(args.figures, figures, f"{caption}.\n\n{markdown_table(header, rows)}")


if __name__ == "__main__":
    main()
