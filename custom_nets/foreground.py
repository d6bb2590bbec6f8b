"""The foreground of an input that keeps the head (an unstripped, defaced scan such as BraTS-MEN-RT's T1c).

The bundle takes "the brain" to be the non-zero voxels: crops and the sliding window's box are the non-zero region's,
background samples are non-zero voxels, z-scoring is over them. For a skull-stripped brain that is exact. For a head
it is not: scanner noise makes the air non-zero, so the "brain box" is the whole field of view, background crops come
from air and the z-scoring mixes air with tissue. ``HeadMaskd`` sets the voxels outside the head to 0, after which
every one of those steps works on the head as it does on a brain. The head is the usual mask of the field (as in
ANTs' ``get_mask``): Otsu's threshold on the smoothed image, its large connected components (the brain, and the
scalp beyond the dark skull), each axial slice filled to its convex hull (an axial section of a head is close to
convex; hole filling alone leaves the dark skull out wherever defacing or the skull base opens it to the air).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import convex_hull_image


def head_mask(
    image: np.ndarray | torch.Tensor,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    sigma_mm: float = 1.0,
    min_fraction: float = 0.01,
) -> np.ndarray:
    """The head of ``image`` (C, X, Y, Z; the channels of one case on one grid, Z the slice axis) as a boolean
    (X, Y, Z) mask; all False for an image of one value.

    Args:
        image: the case's sequences; each is scaled by its 99th percentile of magnitude before they are summed.
        spacing: voxel size in mm, so that the smoothing is the same in mm on any grid.
        sigma_mm: Gaussian smoothing before the threshold (noise in the air is not the head).
        min_fraction: connected components above the threshold of at least this fraction of the largest one's
            voxels are kept: the brain, the scalp beyond the dark skull (which the brain may outweigh) and a bright
            mass between them; specks of noise are not. Each axial slice of them is then filled to its convex hull,
            which closes the dark skull, the CSF and a cavity between them even where defacing opened the scalp.
    """
    image = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
    volume = np.zeros(image.shape[1:], dtype=np.float32)
    for channel in image:
        scale = float(np.percentile(np.abs(channel), 99))
        volume += channel / scale if scale > 0 else channel
    smoothed = ndimage.gaussian_filter(volume, sigma=sigma_mm / np.asarray(spacing, dtype=float))
    if float(smoothed.max()) <= float(smoothed.min()):
        return np.zeros(volume.shape, dtype=bool)
    components, count = ndimage.label(smoothed > threshold_otsu(smoothed))
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    mask = np.isin(components, np.flatnonzero(sizes >= min_fraction * sizes.max()))
    for z in np.flatnonzero(mask.any(axis=(0, 1))):
        mask[..., z] = convex_hull_image(mask[..., z])
    return mask


class HeadMaskd(MapTransform):
    """Sets the voxels of ``keys`` outside the head (``head_mask``) to 0, so that the non-zero region is the head;
    ``enabled=False`` (a skull-stripped task, whose non-zero voxels are the brain) passes the data unchanged. Its
    spacing is read from the image's affine. Not invertible, and nothing to invert: outputs keep the full grid."""

    def __init__(
        self,
        keys: KeysCollection,
        enabled: bool = True,
        sigma_mm: float = 1.0,
        min_fraction: float = 0.01,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.enabled = bool(enabled)
        self.sigma_mm = float(sigma_mm)
        self.min_fraction = float(min_fraction)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if not self.enabled:
            return d
        for key in self.key_iterator(d):
            image = d[key]
            affine = getattr(image, "affine", None)
            spacing = (1.0,) * 3 if affine is None else tuple(float(v) for v in affine_to_spacing(affine, r=3))
            mask = head_mask(image, spacing, self.sigma_mm, self.min_fraction)
            inside = convert_to_dst_type(torch.from_numpy(mask)[None], image, dtype=torch.bool)[0]
            d[key] = image * inside
        return d
