"""Transforms MONAI has no equivalent for."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


class RelabelSmallEnhancingd(MapTransform):
    """A common BraTS post-processing step: when a case's predicted enhancing tumour has fewer than ``min_voxels``
    voxels, relabel it as necrosis (enhancing-free cases are frequent, and a few false ET voxels cost a full ET Dice
    of 0). Works on canonical class maps (1 NCR/NET, 3 ET); ``min_voxels`` 0 disables it."""

    def __init__(
        self,
        keys: KeysCollection,
        min_voxels: int = 0,
        et_class: int = 3,
        ncr_class: int = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_voxels = int(min_voxels)
        self.et_class = et_class
        self.ncr_class = ncr_class

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            classes = d[key]
            enhancing = classes == self.et_class
            count = int(enhancing.sum())
            if 0 < count < self.min_voxels:
                classes = classes.clone()
                classes[enhancing] = self.ncr_class
                d[key] = classes
        return d


class CheckFinited(MapTransform):
    """Load-time guard for data that changed after its datalist was checked: raises ``DataError`` naming the file
    when an image holds NaN or infinite voxels (a non-finite input would otherwise surface as a non-finite loss)."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        from custom_nets.data.datalist import DataError

        d = dict(data)
        for key in self.key_iterator(d):
            value = torch.as_tensor(d[key])
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                meta = getattr(d[key], "meta", {}) or {}
                source = meta.get("filename_or_obj", d.get("case", key))
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(f"{source}: {bad} NaN or infinite voxels in '{key}'; expected finite intensities.")
        return d
