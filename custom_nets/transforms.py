"""Transforms MONAI has no equivalent for."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.transforms import Spacingd as MonaiSpacingd
from monai.utils import convert_to_dst_type

from custom_nets.data.conventions import CHANNELS
from custom_nets.metrics import masked_image_metrics


class RelabelSmallEnhancingd(MapTransform):
    """A common BraTS post-processing step: when a case's predicted enhancing tumour has fewer than ``min_voxels``
    voxels, relabel it as necrosis (enhancing-free cases are frequent, and a few false ET voxels cost a full ET Dice
    of 0). Works on class maps: ``et_class`` and ``ncr_class`` are the task's (``Task.enhancing_relabel()``; 3 and 1
    for BraTS 2021); ``min_voxels`` 0 disables it."""

    def __init__(
        self,
        keys: KeysCollection,
        min_voxels: int = 0,
        et_class: int | None = 3,
        ncr_class: int | None = 1,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        # a task without an enhancing region (or its core) has nothing to relabel
        self.min_voxels = int(min_voxels) if et_class is not None and ncr_class is not None else 0
        self.et_class = et_class
        self.ncr_class = ncr_class

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if not self.min_voxels:
            return d
        for key in self.key_iterator(d):
            classes = d[key]
            enhancing = classes == self.et_class
            count = int(enhancing.sum())
            if 0 < count < self.min_voxels:
                classes = classes.clone()
                classes[enhancing] = self.ncr_class
                d[key] = classes
        return d


class Spacingd(MonaiSpacingd):
    """MONAI's ``Spacingd`` for inputs that carry other ``<key>_*`` entries. Subclassed because MONAI 1.6 calls
    ``.update()`` on every key that starts with ``<key>_`` (taking them for meta dicts), and MONAI Label passes
    ``image_path``, a string: those entries are set aside while it runs and put back unchanged."""

    def __call__(self, data, lazy: bool | None = None):
        d = dict(data)
        prefixes = tuple(f"{key}_" for key in self.keys)
        set_aside = {
            k: d.pop(k) for k in list(d) if isinstance(k, str) and k.startswith(prefixes) and not isinstance(d[k], dict)
        }
        d = super().__call__(d, lazy=lazy)
        d.update(set_aside)
        return d


class RegionMasksd(MapTransform):
    """A class map (1, ...) of class indices as one binary channel per region, each the union of its classes (e.g.
    ``regions=[[1, 2, 3], [1, 3], [3]]`` for WT, TC, ET). MONAI's ``ConvertToMultiChannelBasedOnBratsClassesd``
    knows only the BraTS 2021 labels and regions; a task's regions are data (``Task.region_classes()``)."""

    def __init__(self, keys: KeysCollection, regions: Sequence[Sequence[int]], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.regions = [[int(c) for c in region] for region in regions]
        if not self.regions or not all(self.regions):
            raise ValueError(f"regions must be non-empty lists of class indices, got {regions}.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            classes = d[key]
            if classes.shape[0] != 1:
                raise ValueError(f"'{key}' must be one channel of class indices, got shape {tuple(classes.shape)}.")
            masks = [torch.isin(classes[0], torch.tensor(region, device=classes.device)) for region in self.regions]
            regions = torch.stack(masks).to(torch.float32)
            d[key] = convert_to_dst_type(regions, classes, dtype=torch.float32)[0]
        return d


class CheckFinited(MapTransform):
    """Load-time guard for data that changed after its datalist was checked: raises ``DataError`` naming the file
    when an image holds NaN or infinite voxels (a non-finite input would otherwise surface as a non-finite loss, or
    in inference as a label map of background), and with ``nonempty`` when a channel is all zero (an empty brain).
    """

    def __init__(self, keys: KeysCollection, nonempty: bool = False, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.nonempty = nonempty

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        from custom_nets.data.errors import DataError

        d = dict(data)
        for key in self.key_iterator(d):
            value = torch.as_tensor(d[key])
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                bad = int((~torch.isfinite(value)).sum())
                raise DataError(
                    f"{_source(d, key)}: {bad} NaN or infinite voxels in '{key}'; expected finite intensities."
                )
            if self.nonempty:
                empty = [c for c in range(value.shape[0]) if not bool(value[c].any())]
                if empty:
                    raise DataError(f"{_source(d, key)}: channel(s) {empty} of '{key}' are all zero (an empty brain).")
        return d


def brain_percentile(volume: torch.Tensor | np.ndarray, percentile: float) -> float:
    """The ``percentile`` of the non-zero voxels (the brain of a skull-stripped volume); 1.0 for an empty volume.
    Exact, so the same voxels in any orientation or crop give the same value."""
    array = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    values = array[array != 0]
    if values.size == 0:
        return 1.0
    high = float(np.percentile(values, percentile))
    return high if high > 0 else 1.0


class SplitModalitiesd(MapTransform):
    """Turns one multi-modal image into a translation pair: ``image`` keeps the ``condition`` channels (in that
    order), ``label_key`` receives the ``target`` channel, and ``mask_key`` the brain mask (voxels non-zero in any
    channel, before the split). Channels are named, e.g. ``channels=("flair", "t1", "t1ce", "t2")``,
    ``condition=("t1", "t1ce", "t2")``, ``target="flair"``; ``target=None`` (inference) keeps the conditions only."""

    def __init__(
        self,
        keys: KeysCollection,
        condition: Sequence[str],
        target: str | None,
        channels: Sequence[str] = CHANNELS,
        label_key: str = "label",
        mask_key: str | None = "mask",
    ) -> None:
        super().__init__(keys)
        self.channels = [str(c).lower() for c in channels]
        names = [str(c).lower() for c in condition] + ([str(target).lower()] if target else [])
        unknown = [n for n in names if n not in self.channels]
        if unknown or not condition:
            raise ValueError(f"condition {list(condition)} / target {target!r}: expected names among {self.channels}.")
        if target and str(target).lower() in [str(c).lower() for c in condition]:
            raise ValueError(f"the target {target!r} is also a condition modality; choose it out of {list(condition)}.")
        self.condition = [self.channels.index(str(c).lower()) for c in condition]
        self.target = self.channels.index(str(target).lower()) if target else None
        self.label_key = label_key
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != len(self.channels):
                raise ValueError(
                    f"{_source(d, key)}: '{key}' has {image.shape[0]} channels, expected {len(self.channels)} "
                    f"({', '.join(self.channels)})."
                )
            if self.mask_key:
                d[self.mask_key] = (image != 0).any(dim=0, keepdim=True).to(torch.uint8)
            if self.target is not None:
                d[self.label_key] = image[[self.target]]
            d[key] = image[self.condition]
        return d


class ScaleBrainIntensityd(MapTransform):
    """Per channel, maps the brain of a skull-stripped volume linearly to ``[b_min, b_max]``: 0 (air) to ``b_min``
    and the ``upper`` percentile of the non-zero voxels to ``b_max`` (``clip``: values beyond are clipped). This is the
    ``[-1, 1]`` range a tanh generator needs, with air exactly at ``b_min``. The percentiles are written to
    ``<key>_scale`` (one per channel) so that a prediction can be brought back to the input's intensities:
    ``raw = (y - b_min) / (b_max - b_min) * scale``.

    MONAI's ``ScaleIntensityRangePercentilesd`` takes its percentiles over the whole grid, so its scale would depend on
    how much air the grid holds (BraTS 240x240x155 vs a cropped volume); here it depends on the brain alone."""

    def __init__(
        self,
        keys: KeysCollection,
        upper: float = 99.5,
        b_min: float = -1.0,
        b_max: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0 < upper <= 100 or b_max <= b_min:
            raise ValueError(f"expected 0 < upper <= 100 and b_min < b_max, got {upper}, {b_min}, {b_max}.")
        self.upper, self.b_min, self.b_max, self.clip = float(upper), float(b_min), float(b_max), bool(clip)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            scales = torch.tensor([brain_percentile(channel, self.upper) for channel in image], dtype=torch.float32)
            factor = (self.b_max - self.b_min) / scales.reshape(-1, *([1] * (image.ndim - 1)))
            scaled = image.float() * factor + self.b_min
            d[key] = scaled.clamp(self.b_min, self.b_max) if self.clip else scaled
            d[f"{key}_scale"] = scales
        return d


def from_brain_scale(scaled, scale: float, b_min: float = -1.0, b_max: float = 1.0):
    """The inverse of ``ScaleBrainIntensityd`` for one channel: ``(y - b_min) / (b_max - b_min) * scale``."""
    return (scaled - b_min) / (b_max - b_min) * scale


class ImageSimilarityd(MapTransform):
    """Postprocessing of a synthesis evaluator: MAE, PSNR and 3D SSIM of ``keys`` (the prediction) against
    ``label_key`` inside ``mask_key`` (see ``custom_nets.metrics.masked_image_metrics``), stored per case as
    ``mae``, ``psnr`` and ``ssim`` for the metrics, the CSV writer and the logs."""

    def __init__(
        self, keys: KeysCollection, label_key: str = "label", mask_key: str = "mask", data_range: float = 2.0
    ) -> None:
        super().__init__(keys)
        self.label_key, self.mask_key, self.data_range = label_key, mask_key, float(data_range)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            values = masked_image_metrics(d[key], d[self.label_key], d[self.mask_key], self.data_range)
            d.update({name: torch.tensor(value) for name, value in values.items()})
        return d


def _source(d: Mapping, key: Hashable) -> str:
    meta = getattr(d[key], "meta", {}) or {}
    return str(meta.get("filename_or_obj", d.get("case", key)))
