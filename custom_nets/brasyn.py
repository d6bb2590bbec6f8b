"""Evaluation of missing-modality inference by the BraSyn challenge's protocol (BraTS 2023-2025 "Brain MR Image
Synthesis for Tumor Segmentation"), per case and synthesized sequence:

- image quality: the real and the synthesized volume are each clipped to their own 0.5 and 99.5 percentiles (over the
  whole grid, the lower one at least 0) and scaled to [0, 1]; SSIM (3D, Gaussian window of 11 voxels, sigma 1.5) of
  the two volumes multiplied by the tumour mask (any tumour label) and by its complement, the challenge's two scores;
  PSNR (data range 1) and MSE over the whole volume. The metrics are torchmetrics' with its defaults, as the
  challenge's evaluation code calls them (SSIM's data range is the larger of the two volumes' ranges; recent
  torchmetrics average the SSIM map over the whole grid, its borders reflection-padded).
- segmentation: Dice of WT, TC and ET (the BraTS convention, ``official_metrics``) of the segmentation made with the
  synthesized sequence, and, given the run of ``inference.json`` on the complete cases, of the one made with the real
  sequence.

    python -m custom_nets.brasyn --run_dir runs/missing_modality_inference --dataset_dir ../demo/data \\
        --real_run_dir runs/inference

``dataset_dir`` holds the complete cases (the real sequences and the labels); ``run_dir`` is the output folder of
``configs/missing_modality_inference.json``, whose ``inference_summary.json`` says which sequence was synthesized
for each case. Writes ``<output_dir>/metrics.csv`` (one row per case), ``summary.json`` (means per synthesized
sequence) and a picture per case, and prints one row per synthesized sequence.
"""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import torch
import torchmetrics
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
from torchmetrics.functional.regression import mean_squared_error
from tqdm import tqdm

from custom_nets.data.datalist import DataError, choose_task, scan_dataset
from custom_nets.data.tasks import Task
from custom_nets.handlers.brats_metrics import official_metrics
from custom_nets.handlers.case_metrics import summarise
from custom_nets.missing_modality import SYNTHESIZED_NAME
from custom_nets.utils import atomic_path, write_json
from custom_nets.visualize import missing_modality_figure

REGIONS = ("WT", "TC", "ET")  # the regions of the task brats2021 (benchmarks/missing_modality.py's table)
IMAGE_COLUMNS = ("ssim_tumour", "ssim_non_tumour", "psnr", "mse")


def percentile_scaled(volume: np.ndarray, lower: float = 0.5, upper: float = 99.5) -> np.ndarray:
    """``volume`` clipped to its own ``lower`` and ``upper`` percentiles (the lower one at least 0) and scaled to
    [0, 1], as BraSyn normalises the real and the synthesized volume before comparing them."""
    volume = np.asarray(volume, dtype=np.float64)
    low, high = np.percentile(volume, [lower, upper])
    low = max(low, 0.0)
    if high <= low:
        raise ValueError(f"the volume's {lower} and {upper} percentiles coincide ({low}): nothing to scale.")
    return (np.clip(volume, low, high) - low) / (high - low)


def image_metrics(real: np.ndarray, synthesized: np.ndarray, tumour: np.ndarray) -> dict[str, float]:
    """``{"ssim_tumour", "ssim_non_tumour", "psnr", "mse"}`` of one synthesized volume against the real one (both
    on one grid, raw intensities), ``tumour`` the boolean tumour mask (see the module's docstring)."""
    if real.shape != synthesized.shape or real.shape != tumour.shape:
        raise ValueError(
            f"real {real.shape}, synthesized {synthesized.shape} and tumour mask {tumour.shape} must share one grid."
        )
    return scaled_metrics(percentile_scaled(real), percentile_scaled(synthesized), tumour)


def scaled_metrics(real: np.ndarray, synthesized: np.ndarray, tumour: np.ndarray) -> dict[str, float]:
    """``image_metrics`` of two volumes already scaled by ``percentile_scaled``."""
    x = torch.as_tensor(np.ascontiguousarray(synthesized), dtype=torch.float32)[None, None]
    y = torch.as_tensor(np.ascontiguousarray(real), dtype=torch.float32)[None, None]
    mask = torch.as_tensor(np.asarray(tumour, dtype=bool))[None, None].float()
    return {
        "ssim_tumour": float(structural_similarity_index_measure(x * mask, y * mask)),
        "ssim_non_tumour": float(structural_similarity_index_measure(x * (1 - mask), y * (1 - mask))),
        "psnr": float(peak_signal_noise_ratio(x, y, data_range=1.0)),
        "mse": float(mean_squared_error(x, y)),
    }


def _voxels(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _case_row(
    case: str, target: str, entry: dict, run_dir: str, real_run_dir: str | None, task: Task, png: bool
) -> tuple[dict, dict | None, dict | None]:
    """The case's row, and, with ``png``, the volumes of its picture in RAS; the label and the segmentations hold the
    task's stored label values."""
    real_file = entry["image"][task.sequences.index(target)]
    label_file = entry.get("label")
    if not real_file or not label_file:
        missing = "real " + target if not real_file else "label"
        raise DataError(f"case {case}: the dataset has no {missing} file to evaluate against.")
    synthesized_file = os.path.join(run_dir, SYNTHESIZED_NAME.format(case=case, target=target) + ".nii.gz")
    label = nib.load(label_file)
    truth_labels = np.asanyarray(label.dataobj)
    truth = task.labels_to_classes(truth_labels)
    real, synthesized = _voxels(real_file), _voxels(synthesized_file)
    if real.shape != synthesized.shape or real.shape != truth.shape:
        raise DataError(
            f"case {case}: real {target} {real.shape}, synthesized {synthesized.shape} and label {truth.shape} must "
            f"share one grid ({real_file}, {synthesized_file}, {label_file})."
        )
    real, synthesized = percentile_scaled(real), percentile_scaled(synthesized)  # once, for the scores and picture
    row = {"case": case, "synthesized": target, **scaled_metrics(real, synthesized, truth > 0)}
    spacing = label.header.get_zooms()[:3]
    segmentations = {"synthesized": os.path.join(run_dir, f"{case}.nii.gz")}
    if real_run_dir:
        segmentations["real"] = os.path.join(real_run_dir, f"{case}.nii.gz")
    classes = {}
    for source, path in segmentations.items():
        segmentation = _voxels(path)
        classes[source] = task.labels_to_classes(segmentation)
        dice = official_metrics(segmentation, truth_labels, spacing, task)
        row.update({f"dice_{r}_{source}": float(dice[f"dice_{r}"]) for r in task.region_names})
    if not png:
        return row, None, None

    def ras(volume: np.ndarray) -> np.ndarray:
        return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(np.asarray(volume), label.affine)).dataobj)

    # as the scores see them: each volume clipped to its own percentiles and scaled to [0, 1]
    images = {f"real {target}": ras(real), f"synthesized {target}": ras(synthesized)}
    labels = {"ground truth": ras(truth)}
    labels.update({f"segmented with {source} {target}": ras(c) for source, c in reversed(classes.items())})
    return row, images, labels


def evaluate(
    run_dir: str,
    dataset_dir: str,
    real_run_dir: str | None = None,
    output_dir: str | None = None,
    png: bool = True,
) -> dict:
    """Evaluates every case ``run_dir``'s record lists as written with a synthesized sequence; see the module's
    docstring. A case that cannot be evaluated (its real sequence or label absent, files off one grid) is reported and
    left out. Returns the summary."""
    output_dir = output_dir or os.path.join(run_dir, "brasyn")
    record_file = os.path.join(run_dir, "inference_summary.json")
    if not os.path.isfile(record_file):
        raise FileNotFoundError(f"{record_file} does not exist: run configs/missing_modality_inference.json first.")
    with open(record_file) as f:
        record = json.load(f)["cases"]
    layout, cases = scan_dataset(dataset_dir, required=())
    task = choose_task(dataset_dir, layout, [e["case"] for e in cases])
    entries = {e["case"]: e for e in cases}
    chosen = [
        (c, r["synthesized"]) for c, r in sorted(record.items()) if r["status"] == "written" and r.get("synthesized")
    ]
    rows, failures = [], {}
    for case, target in tqdm(chosen, desc="BraSyn evaluation", unit="case"):
        try:
            if case not in entries:
                raise DataError(f"case {case}: not in {dataset_dir}.")
            row, images, labels = _case_row(case, target, entries[case], run_dir, real_run_dir, task, png)
        except Exception as error:  # one case that cannot be evaluated must not stop the others
            failures[case] = str(error) if isinstance(error, DataError) else f"case {case}: {error!r}"
            continue
        rows.append(row)
        if png:
            picture = os.path.join(output_dir, f"{case}.png")
            missing_modality_figure(images, labels, picture, title=case, task=task)
    columns = [k for k in (rows[0] if rows else {}) if k not in ("case", "synthesized")]
    os.makedirs(output_dir, exist_ok=True)
    with atomic_path(os.path.join(output_dir, "metrics.csv")) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "synthesized", *columns])
        writer.writeheader()
        writer.writerows(rows)
    targets = sorted({row["synthesized"] for row in rows}, key=task.sequences.index)
    summary = {
        "num_cases": len(rows),
        "by_synthesized": {
            t: {"num_cases": len(of_t), "metrics": summarise(of_t, columns)}
            for t in targets
            for of_t in [[r for r in rows if r["synthesized"] == t]]
        },
        "all": summarise(rows, columns) if rows else {},
        "failures": failures,
        "conventions": __doc__.split("\n\n")[0],
        "task": task.record(),
        "torchmetrics": torchmetrics.__version__,
    }
    write_json(os.path.join(output_dir, "summary.json"), summary)
    _print_table(summary, targets, real_run_dir is not None, task.region_names)
    for case, reason in failures.items():
        print(f"  not evaluated {case}: {reason}")
    print(f"BraSyn evaluation of {len(rows)} case(s): {output_dir}/metrics.csv, summary.json")
    return summary


def _print_table(summary: dict, targets: list[str], with_real: bool, regions=REGIONS) -> None:
    sources = ("synthesized", "real") if with_real else ("synthesized",)
    header = f"{'synthesized':<12}{'cases':>6}{'SSIM tum':>10}{'SSIM non':>10}{'PSNR':>8}{'MSE':>9}"
    header += "".join(f"{f'{r} {s[:5]}':>11}" for s in sources for r in regions)
    print(header)
    for target in targets:
        stats = summary["by_synthesized"][target]
        mean = {k: v["mean"] for k, v in stats["metrics"].items()}
        line = f"{target:<12}{stats['num_cases']:>6}{mean['ssim_tumour']:>10.4f}{mean['ssim_non_tumour']:>10.4f}"
        line += f"{mean['psnr']:>8.2f}{mean['mse']:>9.5f}"
        line += "".join(f"{mean[f'dice_{r}_{s}']:>11.3f}" for s in sources for r in regions)
        print(line)


def main() -> None:
    import fire

    def command(
        run_dir: str, dataset_dir: str, real_run_dir: str | None = None, output_dir: str | None = None, png=True
    ):
        evaluate(run_dir, dataset_dir, real_run_dir, output_dir, png)

    from custom_nets.utils import refusing

    command.__doc__ = __doc__
    fire.Fire(refusing(command), name="custom_nets.brasyn")


if __name__ == "__main__":
    main()
