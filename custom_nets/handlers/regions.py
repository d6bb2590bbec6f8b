"""BraTS regions as ``ConvertToMultiChannelBasedOnBratsClassesd`` orders them: channels TC, WT, ET."""

from __future__ import annotations

import os

import numpy as np
import torch

REGION_CHANNELS = {"TC": 0, "WT": 1, "ET": 2}


def regions_to_classes(regions: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, ...) TC/WT/ET masks back to one canonical class map: 3 ET, 1 TC without ET, 2 WT without TC."""
    regions = np.asarray(regions.detach().cpu() if isinstance(regions, torch.Tensor) else regions) > 0.5
    classes = np.zeros(regions.shape[1:], dtype=np.uint8)
    classes[regions[REGION_CHANNELS["WT"]]] = 2
    classes[regions[REGION_CHANNELS["TC"]]] = 1
    classes[regions[REGION_CHANNELS["ET"]]] = 3
    return classes


def decollated_items(engine) -> list[dict]:
    """Per-case dicts of an engine's last iteration: the batch's keys (e.g. ``case``) merged with the output's."""
    outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    batches = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(outputs)
    return [{**(b if isinstance(b, dict) else {}), **o} for b, o in zip(batches, outputs, strict=False)]


def case_name(item: dict, key: str = "case") -> str:
    """The case name of a decollated item. ``load_decathlon_datalist`` turns any value that names an existing path
    into a path, and a BraTS case name is also its folder's name, so only the last component is kept."""
    if item.get(key):
        return os.path.basename(os.path.normpath(str(item[key])))
    image = item.get("image")
    meta = getattr(image, "meta", {}) or {}
    return os.path.basename(str(meta.get("filename_or_obj", "case"))).split(".nii")[0]
