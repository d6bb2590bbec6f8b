"""An axial montage of one case's sequences and its labels."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from custom_nets.data.datalist import DataError, choose_task, scan_dataset
from custom_nets.visualize import modality_montage


def _canonical(path: str) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def montage(data_dir: str, case: str | None = None, output_file: str | None = None, task: str | None = None) -> str:
    """Writes a PNG with one axial slice (through the tumour) of each of the task's sequences and the labels over the
    last, in the voxels' true proportions.

    Args:
        data_dir: any dataset folder the datalist tool recognises.
        case: case name; defaults to the first case.
        output_file: defaults to ``<case>_montage.png`` in the current folder.
        task: the dataset's task (its classes are drawn); by default chosen as the datalist tool chooses it.
    """
    layout, cases = scan_dataset(data_dir, task=task)
    task = choose_task(data_dir, layout, [c["case"] for c in cases], task)
    chosen = cases[0] if case is None else next((c for c in cases if c["case"] == case), None)
    if chosen is None:
        raise DataError(f"{data_dir}: no case named {case!r}; cases are {[c['case'] for c in cases][:10]}...")
    if isinstance(chosen["image"], list):
        images = {name: _canonical(p) for name, p in zip(task.sequences, chosen["image"], strict=True)}
    else:
        stacked = _canonical(chosen["image"])
        images = {name: stacked[..., i] for i, name in enumerate(task.sequences)}
    classes = None
    if "label" in chosen:
        classes = task.labels_to_classes(_canonical(chosen["label"]))
    output_file = output_file or f"{chosen['case']}_montage.png"
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    first = chosen["image"][0] if isinstance(chosen["image"], list) else chosen["image"]
    spacing = nib.as_closest_canonical(nib.load(first)).header.get_zooms()[:3]
    modality_montage(images, classes, output_file, title=chosen["case"], task=task, spacing=spacing)
    print(output_file)
    return output_file
