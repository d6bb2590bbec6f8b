"""Per-case BraTS metrics (Dice, HD95, sensitivity, specificity for WT, TC, ET) written to CSV and summarised.

The numbers come from MONAI's metric functions; on top of them, the BraTS conventions for empty regions:

- Dice: both empty -> 1, one empty -> 0 (``compute_dice(ignore_empty=False)``).
- HD95 (mm, from the voxel spacing): both empty -> 0; one empty -> the volume's diagonal in mm
  (373.13 for 240x240x155 at 1 mm) instead of MONAI's inf/nan.
- sensitivity: an empty reference has nothing to miss -> 1; specificity is always defined.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, get_confusion_matrix

from custom_nets.handlers.case_metrics import CaseMetricsWriter
from custom_nets.handlers.regions import REGION_CHANNELS

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


class BratsMetricsWriter(CaseMetricsWriter):
    """Attach to an evaluator whose postprocessing leaves TC/WT/ET masks in ``pred`` and ``label``; writes
    ``<output_dir>/metrics.csv`` (one row per case: Dice, HD95, sensitivity, specificity of WT, TC, ET) and
    ``summary.json`` (see ``CaseMetricsWriter``)."""

    columns = [f"{m}_{r}" for m in METRICS for r in REGIONS]
    conventions = (
        "BraTS: Dice of empty vs empty = 1; HD95 in mm, 0 when both are empty and the volume diagonal when one is; "
        "sensitivity of an empty reference = 1"
    )

    def case_row(self, item: dict) -> dict:
        label = item["label"]
        spacing = [float(s) for s in label.pixdim[:3]] if hasattr(label, "pixdim") else [1.0, 1.0, 1.0]
        return case_metrics(item["pred"], label, spacing)

    def describe(self, row: dict) -> str:
        return (
            f"Dice WT {row['dice_WT']:.4f} TC {row['dice_TC']:.4f} ET {row['dice_ET']:.4f}, "
            f"HD95 WT {row['hd95_WT']:.2f} TC {row['hd95_TC']:.2f} ET {row['hd95_ET']:.2f} mm"
        )
