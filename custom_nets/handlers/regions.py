"""BraTS regions as ``ConvertToMultiChannelBasedOnBratsClassesd`` orders them: channels TC, WT, ET."""

from __future__ import annotations

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
