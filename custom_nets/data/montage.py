"""An axial montage of one case's four modalities and its labels."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np

from custom_nets.data.conventions import CHANNELS, labels_to_classes
from custom_nets.data.datalist import DataError, scan_dataset
from custom_nets.visualize import modality_montage


def _canonical(path: str) -> np.ndarray:
    return np.asanyarray(nib.as_closest_canonical(nib.load(path)).dataobj)


def montage(data_dir: str, case: str | None = None, output_file: str | None = None) -> str:
    """Writes a PNG with one axial slice (through the tumour) of FLAIR, T1, T1ce, T2 and the labels over T2.

    Args:
        data_dir: any dataset folder the datalist tool recognises.
        case: case name; defaults to the first case.
        output_file: defaults to ``<case>_montage.png`` in the current folder.
    """
    layout, cases = scan_dataset(data_dir)
    chosen = cases[0] if case is None else next((c for c in cases if c["case"] == case), None)
    if chosen is None:
        raise DataError(f"{data_dir}: no case named {case!r}; cases are {[c['case'] for c in cases][:10]}...")
    if isinstance(chosen["image"], list):
        images = {name: _canonical(p) for name, p in zip(CHANNELS, chosen["image"], strict=True)}
    else:
        stacked = _canonical(chosen["image"])
        images = {name: stacked[..., i] for i, name in enumerate(CHANNELS)}
    classes = None
    if "label" in chosen:
        classes = labels_to_classes(_canonical(chosen["label"]), layout.label_convention)
    output_file = output_file or f"{chosen['case']}_montage.png"
    os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
    modality_montage(images, classes, output_file, title=chosen["case"])
    print(output_file)
    return output_file
