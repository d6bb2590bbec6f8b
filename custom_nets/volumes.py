"""What a reader of a label map asks first: how large each class and each region of the task is, in mL, on the
grid the map is written on (the input's own, with its header's voxel size), how many lesions each region has and how
large the largest is. Lesions are 26-connected components, as the official evaluation's connected components."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import cc3d
import numpy as np

from custom_nets.data.tasks import Task, load_task
from custom_nets.utils import atomic_path

VOLUMES_FILE = "volumes.csv"


def voxel_ml(zooms: Sequence[float]) -> float:
    """The volume of one voxel in mL from its three spatial sizes in mm."""
    return math.prod(float(z) for z in zooms[:3]) / 1000.0


def label_volumes(classes: np.ndarray, voxel_volume_ml: float, task: str | Task) -> dict[str, float | int]:
    """For a 3D map of ``task``'s class indices: ``<class>_ml`` for each class but the background, and for each region
    ``<region>_ml``, ``<region>_lesions`` and ``<region>_largest_ml`` (0 without a lesion), volumes rounded to 1e-4
    mL."""
    task = load_task(task)
    classes = np.asarray(classes)
    counts = np.bincount(classes.ravel().astype(np.int64), minlength=task.num_classes)
    volumes: dict[str, float | int] = {
        f"{name}_ml": round(float(counts[index]) * voxel_volume_ml, 4)
        for index, name in enumerate(task.class_names)
        if index
    }
    for region, region_classes in zip(task.regions, task.region_classes(), strict=True):
        mask = np.isin(classes, region_classes)
        components, lesions = cc3d.connected_components(mask.astype(np.uint8), connectivity=26, return_N=True)
        sizes = np.bincount(components.ravel())[1:] if lesions else np.zeros(1, np.int64)
        volumes[f"{region.name}_ml"] = round(float(mask.sum()) * voxel_volume_ml, 4)
        volumes[f"{region.name}_lesions"] = int(lesions)
        volumes[f"{region.name}_largest_ml"] = round(float(sizes.max()) * voxel_volume_ml, 4)
    return volumes


def title_volumes(volumes: dict, task: str | Task) -> str:
    """The regions' volumes for a picture's title: ``WT 12.3 mL, TC 4.5 mL, ET 1.2 mL``."""
    task = load_task(task)
    return ", ".join(f"{r.name} {volumes[f'{r.name}_ml']:.1f} mL" for r in task.regions)


def read_volumes_csv(output_dir: str) -> dict[str, dict]:
    """The rows of ``<output_dir>/volumes.csv`` by case (empty without the file)."""
    path = os.path.join(output_dir, VOLUMES_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path, newline="") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def merge_volumes_csv(output_dir: str, rows: dict[str, dict]) -> str | None:
    """``<output_dir>/volumes.csv`` with one row per case: the rows of ``rows`` (case -> volumes) replace those of
    the same case in the file already there (cases of an earlier run left as they were keep theirs); written
    atomically, and not at all when ``rows`` is empty. Returns the path, or None when there is no file."""
    path = os.path.join(output_dir, VOLUMES_FILE)
    if not rows:  # a run that wrote no case leaves the file as it was
        return path if os.path.isfile(path) else None
    merged = read_volumes_csv(output_dir)
    merged.update({case: {"case": case, **values} for case, values in rows.items()})
    columns = list(dict.fromkeys(key for row in merged.values() for key in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for case in sorted(merged):
        writer.writerow(merged[case])
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as f:
        f.write(text.getvalue())
    return path
