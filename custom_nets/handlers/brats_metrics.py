"""Per-case BraTS metrics for WT, TC and ET, as the official BraTS 2023+ evaluation computes them, written to CSV and
summarised.

The official numbers come from panoptica (BrainLesion, Apache-2.0) configured like the organisers' glioma evaluation:
regions merged from the labels (ET = {3}, TC = {1, 3}, WT = {1, 2, 3} in the canonical classes, which are the BraTS
2023 labels), lesions approximated by connected components, matched one to one by maximum bipartite matching on Dice
with threshold 1e-6, then per region:

- ``dice``, ``hd95``, ``nsd``: global (``global_bin_dsc``, ``global_bin_hd95``, ``global_bin_nsd``). HD95 is the 95th
  percentile of the surface distances of both directions pooled. panoptica 2.1.7 computes the global metrics at unit
  voxel spacing whatever spacing it is given (NSD tolerance 0.5 voxel), and the lesion-wise ones in mm from the spacing
  (NSD tolerance: the smallest spacing); on BraTS's 1 mm grid, and on the evaluation's grid (``spacing``, 1 mm by
  default), the two agree.
- ``lesion_dice``, ``lesion_hd95``: the lesion-wise means (``sq_dsc``, ``sq_hd95``); ``lesion_tp``, ``lesion_fp``,
  ``lesion_fn``: matched, false and missed lesions.

Conventions: an infinite distance (one side empty) is 373 mm, the official penalty (the diameter of the SRI-24 cube).
Both sides empty: Dice and NSD 1, HD95 0 (the BraTS convention); the lesion-wise values are NaN there, as the official
evaluation reports them, and are left out of the summary's statistics (counted as ``non_finite``). No lesion matched
while the region exists on either side: lesion Dice 0, lesion HD95 373.

Also per region, from MONAI: ``sensitivity`` and ``specificity`` (an empty reference has nothing to miss:
sensitivity 1), and ``hd95_max_directed``, MONAI's ``compute_hausdorff_distance(percentile=95)``: the larger of the
two directed 95th percentiles, which is what this bundle reported as HD95 before (373 when one side is empty).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, get_confusion_matrix

from custom_nets.handlers.case_metrics import CaseMetricsWriter
from custom_nets.handlers.regions import REGION_CHANNELS, regions_to_classes

REGIONS = ("WT", "TC", "ET")
REGION_LABELS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
MISS_HD95 = 373.0
OFFICIAL = ("dice", "hd95", "nsd", "lesion_dice", "lesion_hd95", "lesion_tp", "lesion_fp", "lesion_fn")
MONAI = ("sensitivity", "specificity", "hd95_max_directed")
METRICS = OFFICIAL + MONAI
_PANOPTICA_KEYS = {
    "dice": "global_bin_dsc",
    "hd95": "global_bin_hd95",
    "nsd": "global_bin_nsd",
    "lesion_dice": "sq_dsc",
    "lesion_hd95": "sq_hd95",
    "lesion_tp": "tp",
    "lesion_fp": "fp",
    "lesion_fn": "fn",
}


@lru_cache(maxsize=1)
def official_evaluator():
    """panoptica's evaluator configured like the BraTS 2023+ glioma evaluation (see the module's docstring)."""
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        MaxBipartiteMatching,
        Metric,
        Panoptica_Evaluator,
    )
    from panoptica.utils.edge_case_handling import EdgeCaseHandler, EdgeCaseResult, MetricZeroTPEdgeCaseHandling
    from panoptica.utils.label_group import LabelMergeGroup
    from panoptica.utils.segmentation_class import SegmentationClassGroups

    def zero_tp(result):
        return MetricZeroTPEdgeCaseHandling(no_instances_result=EdgeCaseResult.NAN, default_result=result)

    metrics = [Metric.DSC, Metric.HD95, Metric.NSD]
    return Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=MaxBipartiteMatching(matching_metric=Metric.DSC, matching_threshold=1e-6),
        segmentation_class_groups=SegmentationClassGroups(
            {region.lower(): LabelMergeGroup(list(labels)) for region, labels in REGION_LABELS.items()}
        ),
        edge_case_handler=EdgeCaseHandler(
            {
                Metric.DSC: zero_tp(EdgeCaseResult.ZERO),
                Metric.NSD: zero_tp(EdgeCaseResult.ZERO),
                Metric.HD95: zero_tp(EdgeCaseResult.INF),
            }
        ),
        instance_metrics=metrics,
        global_metrics=metrics,
    )


def official_metrics(pred_classes: np.ndarray, truth_classes: np.ndarray, spacing: Sequence[float]) -> dict:
    """``{metric}_{region}`` of ``OFFICIAL`` for one case, from canonical class maps (0 background, 1 NCR/NET,
    2 edema, 3 enhancing tumour) of one shape, with the conventions above."""
    pred, truth = np.asarray(pred_classes, dtype=np.uint8), np.asarray(truth_classes, dtype=np.uint8)
    with warnings.catch_warnings():  # panoptica warns on every call that its global NSD uses a 0.5-voxel tolerance
        warnings.filterwarnings("ignore", message="The threshold is set to 0.5")
        spacing = tuple(float(s) for s in spacing)
        results = official_evaluator().evaluate(pred, truth, voxelspacing=spacing, verbose=False)
    row = {}
    for region, labels in REGION_LABELS.items():
        values = results[region.lower()].to_dict()
        both_empty = not np.isin(pred, labels).any() and not np.isin(truth, labels).any()
        for name, key in _PANOPTICA_KEYS.items():
            value = float(values[key])
            if both_empty and name in ("dice", "nsd"):
                value = 1.0
            elif both_empty and name == "hd95":
                value = 0.0
            elif np.isinf(value):
                value = MISS_HD95
            row[f"{name}_{region}"] = value
    return row


def region_metrics(pred: torch.Tensor, truth: torch.Tensor, spacing: Sequence[float]) -> dict[str, float]:
    """MONAI's metrics of one binary region (spatial tensors of one shape): ``dice`` (empty vs empty 1),
    ``hd95_max_directed`` (0 when both are empty, 373 when one is), ``sensitivity``, ``specificity``."""
    p = (torch.as_tensor(pred) > 0.5).float()[None, None]
    g = (torch.as_tensor(truth) > 0.5).float()[None, None]
    dice = compute_dice(p, g, include_background=True, ignore_empty=False).item()
    p_any, g_any = bool(p.any()), bool(g.any())
    if p_any and g_any:
        hd95 = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=list(spacing)).item()
    else:
        hd95 = 0.0 if not p_any and not g_any else MISS_HD95
    tp, fp, tn, fn = get_confusion_matrix(p, g, include_background=True)[0, 0].tolist()
    sensitivity = tp / (tp + fn) if (tp + fn) > 0 else 1.0
    specificity = tn / (tn + fp) if (tn + fp) > 0 else 1.0
    return {"dice": dice, "hd95_max_directed": hd95, "sensitivity": sensitivity, "specificity": specificity}


def case_metrics(pred_regions: torch.Tensor, truth_regions: torch.Tensor, spacing: Sequence[float]) -> dict:
    """All metrics of one case from (3, ...) region masks ordered TC, WT, ET."""
    row = official_metrics(regions_to_classes(pred_regions), regions_to_classes(truth_regions), spacing)
    for region in REGIONS:
        channel = REGION_CHANNELS[region]
        monai = region_metrics(pred_regions[channel], truth_regions[channel], spacing)
        for name in MONAI:
            row[f"{name}_{region}"] = monai[name]
    return {f"{m}_{r}": row[f"{m}_{r}"] for m in METRICS for r in REGIONS}


class BratsMetricsWriter(CaseMetricsWriter):
    """Attach to an evaluator whose postprocessing leaves TC/WT/ET masks in ``pred`` and ``label``; writes
    ``<output_dir>/metrics.csv`` (one row per case, the columns of ``METRICS`` for WT, TC and ET) and
    ``summary.json`` (see ``CaseMetricsWriter``)."""

    columns = [f"{m}_{r}" for m in METRICS for r in REGIONS]
    conventions = (
        "official BraTS 2023+ metrics (panoptica, glioma configuration): dice/hd95/nsd global per region, HD95 pooled "
        "over both directions in mm, NSD at 1 voxel spacing; lesion_* lesion-wise (connected components, maximum "
        "bipartite matching on Dice > 1e-6); infinite distances 373 mm; both sides empty: Dice and NSD 1, HD95 0, "
        "lesion-wise NaN (left out of the statistics). sensitivity/specificity and hd95_max_directed (MONAI, the "
        "larger directed 95th percentile) beside them"
    )

    def case_row(self, item: dict) -> dict:
        label = item["label"]
        spacing = [float(s) for s in label.pixdim[:3]] if hasattr(label, "pixdim") else [1.0, 1.0, 1.0]
        return case_metrics(item["pred"], label, spacing)

    def describe(self, row: dict) -> str:
        return (
            f"Dice WT {row['dice_WT']:.4f} TC {row['dice_TC']:.4f} ET {row['dice_ET']:.4f}, "
            f"HD95 WT {row['hd95_WT']:.2f} TC {row['hd95_TC']:.2f} ET {row['hd95_ET']:.2f} mm, "
            f"lesion Dice WT {row['lesion_dice_WT']:.4f} TC {row['lesion_dice_TC']:.4f} ET {row['lesion_dice_ET']:.4f}"
        )
