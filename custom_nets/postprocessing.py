"""Post-processing of the label map per region of the task, and its choice on the validation fold, as nnU-Net
chooses its post-processing.

- ``RemoveSmallLesionsd``: per region, the connected components (26-connected, as the official evaluation's lesions)
  smaller than the region's minimum are removed; ``"largest"`` keeps its largest component only. Removed voxels become
  background, except those of the enhancing region ``et`` of a task that has a core class (``Task.enhancing_relabel``):
  they become core, the BraTS habit of calling a few false enhancing voxels necrosis.
- ``PostprocessingSelection``: attached to ``run evaluating --select_postprocessing true``; for every case it records,
  per region, each component's size and its overlap with the reference, so that the region's Dice under every setting
  of ``grid`` is known without re-running the model; at the end it keeps, per region, the setting of the highest mean
  Dice (both empty: 1, as BraTS counts it) only where it beats no post-processing, and writes
  ``<ckpt_dir>/postprocessing.json``, which inference reads by default (``postprocessing_file``).

The regions are chosen one at a time, each on its own Dice, on the network's grid (``spacing``): sizes are in its
voxels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Hashable, Mapping, Sequence

import cc3d
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from custom_nets.data.tasks import Task, load_task
from custom_nets.handlers.regions import decollated_items
from custom_nets.utils import is_main_process, sha256, write_json

LARGEST = "largest"
DEFAULT_GRID = (0, 10, 25, 50, 100, 200, 500, 1000, LARGEST)
logger = logging.getLogger(__name__)


def read_settings(path: str, task: str | Task | None = None) -> dict:
    """The post-processing chosen for a model (``postprocessing.json``), or ``{}`` when there is none; refused, naming
    the file, when it is not JSON or was chosen for another task than ``task``."""
    if not path or not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            settings = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"post-processing file {path}: expected the JSON that evaluation writes ({error}).") from None
    if not isinstance(settings, dict) or not isinstance(settings.get("min_lesion_voxels", {}), dict):
        raise ValueError(f"post-processing file {path}: expected an object with 'min_lesion_voxels' {{region: size}}.")
    if task is not None and settings.get("task", load_task(task).name) != load_task(task).name:
        raise ValueError(
            f"post-processing file {path} was chosen for task {settings['task']}, this run's task is "
            f"{load_task(task).name}: choose again (run evaluating --select_postprocessing true) or remove the file."
        )
    return settings


def _check_minimum(region: str, value) -> int | str:
    if value == LARGEST or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"minimum lesion size of region '{region}': expected voxels (>= 0) or '{LARGEST}', got {value!r}.")


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """26-connected component labels of a mask and each component's voxel count (index 0 = background)."""
    labels = cc3d.connected_components(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=26)
    return labels, np.bincount(labels.ravel())


def kept_components(sizes: np.ndarray, minimum: int | str) -> np.ndarray:
    """Which components (of ``sizes``, index 0 = background) a minimum size (or ``"largest"``) keeps."""
    keep = np.zeros(len(sizes), dtype=bool)
    if len(sizes) <= 1:
        return keep
    if minimum == LARGEST:
        keep[1 + int(np.argmax(sizes[1:]))] = True
    else:
        keep[1:] = sizes[1:] >= int(minimum)
    return keep


class RemoveSmallLesionsd(MapTransform):
    """Per region of ``task``, removes the lesions smaller than ``min_voxels[region]`` from a class map (1, ...) of
    the task's class indices (see the module's docstring). Regions not named are left as they are."""

    def __init__(
        self, keys: KeysCollection, task: str | Task, min_voxels: Mapping[str, int | str] | None = None
    ) -> None:
        super().__init__(keys)
        self.task = load_task(task)
        self.min_voxels = {str(r): _check_minimum(str(r), v) for r, v in dict(min_voxels or {}).items()}
        unknown = sorted(set(self.min_voxels) - set(self.task.region_names))
        if unknown:
            raise ValueError(
                f"min_lesion_voxels names {unknown}; the task {self.task.name} has {self.task.region_names}."
            )
        self.region_classes = dict(zip(self.task.region_names, self.task.region_classes(), strict=True))
        et_class, core_class = self.task.enhancing_relabel()
        self.replacement = {
            name: core_class if classes == [et_class] and core_class is not None else 0
            for name, classes in self.region_classes.items()
        }

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        active = {r: m for r, m in self.min_voxels.items() if m != 0}
        for key in self.key_iterator(d):
            if not active:
                continue
            classes = torch.as_tensor(d[key])
            array = np.asarray(classes.detach().cpu())
            result = array.copy()
            for region, minimum in active.items():
                labels, sizes = _components(np.isin(array[0], self.region_classes[region]))
                removed = ~kept_components(sizes, minimum)
                removed[0] = False
                result[0][removed[labels]] = self.replacement[region]
            d[key] = convert_to_dst_type(torch.as_tensor(result), classes, dtype=classes.dtype)[0]
        return d


def region_dice(pred_kept: float, overlap: float, truth: float) -> float:
    """Dice of a region from its voxel counts; both empty: 1 (the BraTS convention)."""
    return 1.0 if pred_kept + truth == 0 else 2.0 * overlap / (pred_kept + truth)


class PostprocessingSelection:
    """Attach to the evaluator of ``run evaluating``: its postprocessing leaves in ``pred_key`` and ``label_key`` the
    task's region masks (``RegionMasksd``, channels in the task's region order) on the network's grid, without any
    post-processing. Writes ``output_file`` (see the module's docstring) when the evaluation completes; rank 0.

    Args:
        output_file: where the chosen settings go (``<ckpt_dir>/postprocessing.json``).
        task: the task whose regions are chosen for.
        grid: the settings tried per region: minimum sizes in voxels, and ``"largest"``.
        model_files, config: fingerprinted and recorded in the file.
    """

    def __init__(
        self,
        output_file: str,
        task: str | Task,
        grid: Sequence[int | str] = DEFAULT_GRID,
        model_files: str | Sequence[str] = (),
        config: dict | None = None,
        pred_key: str = "pred",
        label_key: str = "label",
    ) -> None:
        self.output_file = output_file
        self.task = load_task(task)
        self.grid = [_check_minimum("grid", g) for g in grid]
        if 0 not in self.grid:
            self.grid.insert(0, 0)
        self.model_files = [model_files] if isinstance(model_files, str) else list(model_files)
        self.config = config or {}
        self.pred_key, self.label_key = pred_key, label_key
        self.dice: dict[str, dict[str, list[float]]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.dice.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def case_dice(self, pred_regions, truth_regions) -> dict[str, dict[str, float]]:
        """``{region: {setting: Dice}}`` of one case from (R, ...) region masks."""
        pred = np.asarray(torch.as_tensor(pred_regions).detach().cpu()) > 0.5
        truth = np.asarray(torch.as_tensor(truth_regions).detach().cpu()) > 0.5
        result = {}
        for index, region in enumerate(self.task.region_names):
            labels, sizes = _components(pred[index])
            overlaps = np.bincount(labels[truth[index]].ravel(), minlength=len(sizes))
            truth_voxels = float(truth[index].sum())
            result[region] = {}
            for setting in self.grid:
                keep = kept_components(sizes, setting)
                result[region][str(setting)] = region_dice(
                    float(sizes[keep].sum()), float(overlaps[keep].sum()), truth_voxels
                )
        return result

    def _collect(self, engine: Engine) -> None:
        for item in decollated_items(engine):
            for region, by_setting in self.case_dice(item[self.pred_key], item[self.label_key]).items():
                for setting, value in by_setting.items():
                    self.dice.setdefault(region, {}).setdefault(setting, []).append(value)

    def choose(self) -> tuple[dict[str, int | str], dict[str, dict[str, float]]]:
        """The kept settings (only where they beat no post-processing) and every setting's mean Dice."""
        means = {r: {s: float(np.mean(v)) for s, v in by.items()} for r, by in self.dice.items()}
        chosen: dict[str, int | str] = {}
        for region, by_setting in means.items():
            best = max(by_setting, key=lambda s: (by_setting[s], -self.grid.index(_setting(s))))
            if by_setting[best] > by_setting["0"] + 1e-9:
                chosen[region] = _setting(best)
        return chosen, means

    def _write(self, engine: Engine) -> None:
        if not is_main_process() or not self.dice:
            return
        chosen, means = self.choose()
        cases = len(next(iter(next(iter(self.dice.values())).values())))
        write_json(
            self.output_file,
            {
                "min_lesion_voxels": chosen,
                "task": self.task.name,
                "chosen_on": {"num_cases": cases, "grid": self.grid, **self.config},
                "mean_dice": means,
                "models": {path: sha256(path) for path in self.model_files},
            },
        )
        gains = ", ".join(f"{r} {v} ({means[r]['0']:.4f} -> {means[r][str(v)]:.4f})" for r, v in chosen.items())
        logger.info(
            f"post-processing chosen on {cases} case(s): {gains or 'none beats no post-processing'}; "
            f"written to {self.output_file} (inference reads it by default)"
        )


def _setting(text: str) -> int | str:
    return LARGEST if text == LARGEST else int(text)
