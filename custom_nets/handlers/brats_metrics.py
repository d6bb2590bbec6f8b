"""Per-case metrics of the task's regions, as the official BraTS 2023+ evaluation computes them, written to CSV and
summarised.

The official numbers come from panoptica (BrainLesion, Apache-2.0) configured like the organisers' evaluation
package: one label group per region of the task (a region of one label value is a ``LabelGroup``, of several a
``LabelMergeGroup``, as in their six configs), lesions approximated by connected components, matched one to one by
maximum bipartite matching on Dice with threshold 1e-6, then per region:

- ``dice``, ``hd95``, ``nsd``: global (``global_bin_dsc``, ``global_bin_hd95``, ``global_bin_nsd``). HD95 is the 95th
  percentile of the surface distances of both directions pooled. panoptica 2.1.7 computes the global metrics at unit
  voxel spacing whatever spacing it is given (NSD tolerance 0.5 voxel), and the lesion-wise ones in mm from the spacing
  (NSD tolerance: the smallest spacing).
- ``lesion_dice``, ``lesion_hd95``: the lesion-wise means (``sq_dsc``, ``sq_hd95``); ``lesion_tp``, ``lesion_fp``,
  ``lesion_fn``: matched, false and missed lesions.

They are computed on the label maps as the organisers' code reads the files: the written prediction and the
reference label file, each in its stored voxel order, as SimpleITK gives them to panoptica (axes reversed, (z, y, x),
with SimpleITK's spacing, which is in (x, y, z) order). The order matters: when several predicted lesions overlap a
reference lesion with the same Dice (one voxel each, say), the matching keeps the first in connected-component order,
which follows the array's axis order and orientation, and that lesion's HD95 is the one reported (measured: 35.96 mm as
nibabel reads the array, 37.29 mm in RAS, 36.59 mm as SimpleITK reads it, the organisers' value).

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

import nibabel as nib
import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, get_confusion_matrix

from custom_nets.data.errors import DataError
from custom_nets.data.tasks import Task, load_task
from custom_nets.handlers.case_metrics import CaseMetricsWriter

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


def metric_columns(task: str | Task) -> list[str]:
    """``metrics.csv``'s columns: every metric of ``METRICS`` for every region of the task."""
    return [f"{m}_{r}" for m in METRICS for r in load_task(task).region_names]


def official_evaluator(task: str | Task = "brats2021"):
    """panoptica's evaluator configured like the organisers' evaluation for the task's regions (see the module's
    docstring)."""
    task = load_task(task)
    return _evaluator(tuple((r.name, r.labels) for r in task.regions))


@lru_cache(maxsize=16)
def _evaluator(regions: tuple[tuple[str, tuple[int, ...]], ...]):
    from panoptica import (
        ConnectedComponentsInstanceApproximator,
        InputType,
        MaxBipartiteMatching,
        Metric,
        Panoptica_Evaluator,
    )
    from panoptica.utils.edge_case_handling import EdgeCaseHandler, EdgeCaseResult, MetricZeroTPEdgeCaseHandling
    from panoptica.utils.label_group import LabelGroup, LabelMergeGroup
    from panoptica.utils.segmentation_class import SegmentationClassGroups

    def zero_tp(result):
        return MetricZeroTPEdgeCaseHandling(no_instances_result=EdgeCaseResult.NAN, default_result=result)

    metrics = [Metric.DSC, Metric.HD95, Metric.NSD]
    return Panoptica_Evaluator(
        expected_input=InputType.SEMANTIC,
        instance_approximator=ConnectedComponentsInstanceApproximator(),
        instance_matcher=MaxBipartiteMatching(matching_metric=Metric.DSC, matching_threshold=1e-6),
        segmentation_class_groups=SegmentationClassGroups(
            {
                name: LabelMergeGroup(list(labels)) if len(labels) > 1 else LabelGroup(list(labels))
                for name, labels in regions
            }
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


def as_read_by_simpleitk(labels: np.ndarray) -> np.ndarray:
    """A label map in its stored voxel order (as nibabel reads it, (x, y, z)) as SimpleITK's ``GetArrayFromImage``
    gives it: the axes reversed, (z, y, x)."""
    return np.ascontiguousarray(np.transpose(np.asarray(labels)))


def official_metrics(
    pred_labels: np.ndarray, truth_labels: np.ndarray, spacing: Sequence[float], task: str | Task = "brats2021"
) -> dict:
    """``{metric}_{region}`` of ``OFFICIAL`` for one case, with the conventions above, from two label maps of one
    shape in the task's stored label values and in their files' voxel order (as nibabel reads them; ``spacing`` is
    the header's voxel size), computed as the organisers' code computes them on the files (see the module's
    docstring)."""
    task = load_task(task)
    pred = as_read_by_simpleitk(np.asarray(pred_labels).astype(np.uint8))
    truth = as_read_by_simpleitk(np.asarray(truth_labels).astype(np.uint8))
    if pred.shape != truth.shape:
        raise ValueError(f"prediction of shape {pred.shape[::-1]} and reference {truth.shape[::-1]} differ.")
    with warnings.catch_warnings():  # panoptica warns on every call that its global NSD uses a 0.5-voxel tolerance
        warnings.filterwarnings("ignore", message="The threshold is set to 0.5")
        spacing = tuple(float(s) for s in spacing)  # SimpleITK's GetSpacing(): (x, y, z), with the (z, y, x) array
        results = official_evaluator(task).evaluate(pred, truth, voxelspacing=spacing, verbose=False)
    row = {}
    for region in task.regions:
        values = results[region.name.lower()].to_dict()  # panoptica keeps group names in lower case
        both_empty = not np.isin(pred, region.labels).any() and not np.isin(truth, region.labels).any()
        for name, key in _PANOPTICA_KEYS.items():
            value = float(values[key])
            if both_empty and name in ("dice", "nsd"):
                value = 1.0
            elif both_empty and name == "hd95":
                value = 0.0
            elif np.isinf(value):
                value = MISS_HD95
            row[f"{name}_{region.name}"] = value
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


def case_metrics(
    pred_labels: np.ndarray, truth_labels: np.ndarray, spacing: Sequence[float], task: str | Task = "brats2021"
) -> dict:
    """All metrics of one case (``metric_columns(task)``) from two stored label maps (see ``official_metrics``)."""
    task = load_task(task)
    pred, truth = np.asarray(pred_labels), np.asarray(truth_labels)
    spacing = [float(s) for s in spacing]
    row = official_metrics(pred, truth, spacing, task)
    for region in task.regions:
        monai = region_metrics(
            torch.from_numpy(np.isin(pred, region.labels)), torch.from_numpy(np.isin(truth, region.labels)), spacing
        )
        for name in MONAI:
            row[f"{name}_{region.name}"] = monai[name]
    return {column: row[column] for column in metric_columns(task)}


class BratsMetricsWriter(CaseMetricsWriter):
    """Attach to an evaluator whose postprocessing leaves in ``pred_key`` the label map on the input's grid and in the
    task's stored values (as ``PredictionWriter`` writes it) and whose batch names the reference label file in
    ``truth_file_key`` (not a ``label_*`` key: MONAI 1.6's Spacingd updates the metadata of every ``label_*`` key);
    writes ``<output_dir>/metrics.csv`` (one row per case, ``metric_columns(task)``) and ``summary.json`` (see
    ``CaseMetricsWriter``). The reference is read from its file, as the organisers read it."""

    def __init__(
        self,
        output_dir: str,
        model_files: str | Sequence[str] = (),
        config: dict | None = None,
        case_key: str = "case",
        record=None,
        task: str | Task = "brats2021",
        pred_key: str = "pred_labels",
        truth_file_key: str = "truth_file",
    ) -> None:
        super().__init__(output_dir, model_files, config, case_key, record)
        self.task = load_task(task)
        self.columns = metric_columns(self.task)
        self.pred_key, self.truth_file_key = pred_key, truth_file_key
        self.conventions = (
            f"official BraTS 2023+ metrics (panoptica, the task {self.task.name}'s regions "
            f"{ {r.name: list(r.labels) for r in self.task.regions} } as label groups): dice/hd95/nsd global per "
            "region, HD95 pooled over both directions in mm, NSD at 1 voxel spacing; lesion_* lesion-wise (connected "
            "components, maximum bipartite matching on Dice > 1e-6); computed on the written label map and the "
            "reference file as SimpleITK reads them; infinite distances 373 mm; both sides empty: Dice and NSD 1, "
            "HD95 0, lesion-wise NaN (left out of the statistics). sensitivity/specificity and hd95_max_directed "
            "(MONAI, the larger directed 95th percentile) beside them"
        )

    def case_row(self, item: dict) -> dict:
        path = str(item[self.truth_file_key])
        reference = nib.load(path)
        truth = np.asanyarray(reference.dataobj)
        pred = np.asarray(torch.as_tensor(item[self.pred_key]).detach().cpu())
        pred = pred[0] if pred.ndim == truth.ndim + 1 else pred
        if pred.shape != truth.shape:
            raise DataError(
                f"{path}: the reference label has shape {truth.shape}, the prediction on the input's grid "
                f"{pred.shape}; the label must lie on the case's image grid."
            )
        return case_metrics(pred, truth, [float(s) for s in reference.header.get_zooms()[:3]], self.task)

    def describe(self, row: dict) -> str:
        regions = self.task.region_names
        return (
            "Dice "
            + " ".join(f"{r} {row[f'dice_{r}']:.4f}" for r in regions)
            + ", HD95 "
            + " ".join(f"{r} {row[f'hd95_{r}']:.2f}" for r in regions)
            + " mm, lesion Dice "
            + " ".join(f"{r} {row[f'lesion_dice_{r}']:.4f}" for r in regions)
        )
