"""Per-case BraTS metrics (Dice, HD95, sensitivity, specificity for WT, TC, ET) written to CSV and summarised.

The numbers come from MONAI's metric functions; on top of them, the BraTS conventions for empty regions:

- Dice: both empty -> 1, one empty -> 0 (``compute_dice(ignore_empty=False)``).
- HD95 (mm, from the voxel spacing): both empty -> 0; one empty -> the volume's diagonal in mm
  (373.13 for 240x240x155 at 1 mm) instead of MONAI's inf/nan.
- sensitivity: an empty reference has nothing to miss -> 1; specificity is always defined.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_dice, compute_hausdorff_distance, get_confusion_matrix

from custom_nets.handlers.regions import REGION_CHANNELS, case_name, decollated_items
from custom_nets.utils import is_main_process, sha256

REGIONS = ("WT", "TC", "ET")
METRICS = ("dice", "hd95", "sensitivity", "specificity")


def volume_diagonal_mm(shape: Sequence[int], spacing: Sequence[float]) -> float:
    return float(np.sqrt(np.sum((np.asarray(shape, dtype=float) * np.asarray(spacing, dtype=float)) ** 2)))


def region_metrics(pred: torch.Tensor, truth: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
    """Metrics of one binary region (spatial tensors of the same shape) with the BraTS conventions above."""
    p = (torch.as_tensor(pred) > 0.5).float()[None, None]
    g = (torch.as_tensor(truth) > 0.5).float()[None, None]
    dice = compute_dice(p, g, include_background=True, ignore_empty=False).item()
    p_any, g_any = bool(p.any()), bool(g.any())
    if p_any and g_any:
        hd95 = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=list(spacing)).item()
    elif not p_any and not g_any:
        hd95 = 0.0
    else:
        hd95 = volume_diagonal_mm(p.shape[2:], spacing)
    tp, fp, tn, fn = get_confusion_matrix(p, g, include_background=True)[0, 0].tolist()
    sensitivity = tp / (tp + fn) if (tp + fn) > 0 else 1.0
    specificity = tn / (tn + fp) if (tn + fp) > 0 else 1.0
    return {"dice": dice, "hd95": hd95, "sensitivity": sensitivity, "specificity": specificity}


def case_metrics(pred_regions: torch.Tensor, truth_regions: torch.Tensor, spacing: Sequence[float]) -> dict:
    """All metrics of one case from (3, ...) region masks ordered TC, WT, ET."""
    row = {}
    for region in REGIONS:
        channel = REGION_CHANNELS[region]
        for name, value in region_metrics(pred_regions[channel], truth_regions[channel], spacing).items():
            row[f"{name}_{region}"] = value
    return row


def summarise(rows: list[dict]) -> dict:
    summary = {}
    for key in [f"{m}_{r}" for m in METRICS for r in REGIONS]:
        values = np.array([row[key] for row in rows], dtype=float)
        summary[key] = {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "median": float(np.median(values)),
            "p25": float(np.percentile(values, 25)),
            "p75": float(np.percentile(values, 75)),
        }
    return summary


class BratsMetricsWriter:
    """Attach to an evaluator whose postprocessing leaves TC/WT/ET masks in ``pred`` and ``label``; writes
    ``<output_dir>/metrics.csv`` (one row per case) and ``summary.json`` (mean, std, median, 25th/75th percentile of
    every metric, the model file's sha256 and the config).

    Args:
        output_dir: where to write.
        model_files: checkpoint path(s) to fingerprint in the summary.
        config: anything JSON-serialisable to record (e.g. resolved config values).
        case_key: batch key holding the case name.
    """

    def __init__(
        self, output_dir: str, model_files: str | Sequence[str] = (), config: dict | None = None, case_key: str = "case"
    ) -> None:
        self.output_dir = output_dir
        self.model_files = [model_files] if isinstance(model_files, str) else list(model_files)
        self.config = config or {}
        self.case_key = case_key
        self.rows: list[dict] = []
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        items = decollated_items(engine)
        for item in items:
            label = item["label"]
            spacing = [float(s) for s in label.pixdim[:3]] if hasattr(label, "pixdim") else [1.0, 1.0, 1.0]
            case = case_name(item, self.case_key)
            row = {"case": case, **case_metrics(item["pred"], label, spacing)}
            self.rows.append(row)
            self.logger.info(
                f"{case}: Dice WT {row['dice_WT']:.4f} TC {row['dice_TC']:.4f} ET {row['dice_ET']:.4f}, "
                f"HD95 WT {row['hd95_WT']:.2f} TC {row['hd95_TC']:.2f} ET {row['hd95_ET']:.2f} mm"
            )

    def _write(self, engine: Engine) -> None:
        if not is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        columns = ["case"] + [f"{m}_{r}" for m in METRICS for r in REGIONS]
        with open(os.path.join(self.output_dir, "metrics.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        summary = {
            "num_cases": len(self.rows),
            "metrics": summarise(self.rows) if self.rows else {},
            "models": {path: sha256(path) for path in self.model_files},
            "conventions": "BraTS: Dice of empty vs empty = 1; HD95 in mm, 0 when both are empty and the volume "
            "diagonal when one is; sensitivity of an empty reference = 1",
            "config": self.config,
        }
        with open(os.path.join(self.output_dir, "summary.json"), "w") as f:
            json.dump(summary, f, indent=4, default=str)
        means = summary["metrics"]
        if means:
            dice = {r: means[f"dice_{r}"]["mean"] for r in REGIONS}
            self.logger.info(
                f"{len(self.rows)} cases; mean Dice WT {dice['WT']:.4f} TC {dice['TC']:.4f} ET {dice['ET']:.4f}; "
                f"written to {self.output_dir}/metrics.csv and summary.json"
            )
