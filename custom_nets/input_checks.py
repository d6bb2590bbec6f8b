"""A guard against silent nonsense: a model trained on skull-stripped, co-registered sequences (BraTS) segments an
unstripped head or misaligned sequences without any error. Each case's inputs are checked before the network runs,
and a case that does not look like what its task expects is skipped with the check that failed and what to do.

- skull-stripped (tasks whose ``skull_stripped`` is true, all but those whose data keep the head): non-zero voxels
  on the grid's border, or a rim of the non-zero region brighter than its inside in every sequence (a skull or scalp
  around the brain; a stripped brain's rim is cortex and CSF, darker than white matter in T1 at least);
- co-registered (several sequences): the outline of each sequence's non-zero voxels lies within a few mm of the
  first sequence's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data.utils import affine_to_spacing
from monai.transforms import MapTransform
from scipy import ndimage

from custom_nets.data.errors import DataError

# the defaults of inference.json's max_border_fraction, max_rim_ratio and max_outline_mm
LIMITS = {"max_border_fraction": 0.05, "max_rim_ratio": 1.2, "max_outline_mm": 3.0}
ADVICE = (
    "skull-strip and co-register the sequences first: set preprocess true, or run python -m custom_nets.preprocess "
    "(docs/clinical.md); or set input_checks false if the model was trained on such inputs"
)


def border_fraction(foreground: np.ndarray) -> float:
    """The fraction of the voxels on the six faces of the grid that are in ``foreground``."""
    faces = [np.take(foreground, index, axis=axis) for axis in range(3) for index in (0, -1)]
    return float(sum(f.sum() for f in faces)) / float(sum(f.size for f in faces))


def rim_ratio(image: np.ndarray, foreground: np.ndarray, rim_voxels: int = 3) -> float:
    """The smallest, over the sequences of ``image`` (C, X, Y, Z), of the median of the outer ``rim_voxels`` of
    ``foreground`` over the median of its inside (0 when the inside is too small to tell)."""
    inside = ndimage.binary_erosion(foreground, iterations=rim_voxels)
    rim = foreground & ~inside
    if inside.sum() < 1000 or not rim.any():
        return 0.0
    ratios = [float(np.median(c[rim])) / max(float(np.median(c[inside])), 1e-6) for c in image]
    return min(ratios)


def outline_distances(image: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> list[float]:
    """For each sequence after the first, the 95th percentile of the distances (mm) from the outline of its non-zero
    voxels to the first sequence's outline: 0 for one mask, about 1-2 voxels where an interpolated series smears its
    edge, the displacement where a sequence is moved or turned."""
    masks = image != 0
    present = np.argwhere(masks.any(0))
    low, high = np.maximum(present.min(0) - 3, 0), present.max(0) + 4
    box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
    first = masks[0][box]
    outside = ndimage.distance_transform_edt(~first, sampling=spacing)  # to the nearest voxel of the first
    inside = ndimage.distance_transform_edt(first, sampling=spacing) - min(spacing)  # its outline's voxels: 0
    distance = np.where(first, inside, outside)
    found = []
    for mask in masks[1:]:
        mask = mask[box]
        outline = mask & ~ndimage.binary_erosion(mask)
        found.append(float(np.percentile(distance[outline], 95)) if outline.any() else float("inf"))
    return found


def input_problem(
    image: np.ndarray,
    sequences: Sequence[str],
    skull_stripped: bool = True,
    max_border_fraction: float = LIMITS["max_border_fraction"],
    max_rim_ratio: float = LIMITS["max_rim_ratio"],
    max_outline_mm: float = LIMITS["max_outline_mm"],
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
) -> tuple[str, list[int]] | None:
    """Why ``image`` (C, X, Y, Z, one channel per sequence) does not look like its task's inputs and the channels
    concerned, or None."""
    foreground = (image != 0).any(0)
    if not foreground.any():
        return None  # an empty case is refused by its own check
    every = list(range(len(image)))
    if skull_stripped:
        border = border_fraction(foreground)
        if border > max_border_fraction:
            return (
                f"input check 'skull-stripped' failed: {border:.1%} of the grid's border voxels are non-zero (at most "
                f"{max_border_fraction:.1%} around a skull-stripped brain; an unstripped head reaches the border)",
                every,
            )
        ratio = rim_ratio(image, foreground)
        if ratio > max_rim_ratio:
            return (
                f"input check 'skull-stripped' failed: the outer 3 voxels of the non-zero region are {ratio:.2f} times "
                f"as bright as its inside in every sequence (at most {max_rim_ratio} for a skull-stripped brain; a "
                f"skull or scalp around it)",
                every,
            )
    if len(sequences) > 1:
        distances = outline_distances(image, spacing)
        worst = int(np.argmax(distances))
        if distances[worst] > max_outline_mm:
            return (
                f"input check 'co-registered' failed: the outline of {sequences[worst + 1]}'s non-zero voxels lies "
                f"{distances[worst]:.1f} mm from {sequences[0]}'s (95th percentile; at most {max_outline_mm} mm for "
                f"co-registered sequences)",
                [0, worst + 1],
            )
    return None


class InputCheckError(DataError):
    """A case whose inputs do not look like what its task expects; ``channels``: the inputs concerned (their files
    are named by ``custom_nets.cases.failure_reason``)."""

    def __init__(self, message: str, channels: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.channels = list(channels)


class CheckInputsd(MapTransform):
    """``input_problem`` of the image in ``keys`` (channels in ``task``'s sequence order, or ``sequences``): raises
    ``InputCheckError`` with the failed check and the advice; ``enabled=False`` passes everything."""

    def __init__(
        self,
        keys: KeysCollection,
        task=None,
        enabled: bool = True,
        max_border_fraction: float = LIMITS["max_border_fraction"],
        max_rim_ratio: float = LIMITS["max_rim_ratio"],
        max_outline_mm: float = LIMITS["max_outline_mm"],
        sequences: Sequence[str] | None = None,
    ) -> None:
        super().__init__(keys)
        from custom_nets.data.tasks import load_task

        definition = load_task(task) if task is not None else None
        self.sequences = list(sequences or (definition.sequences if definition else ()))
        self.skull_stripped = bool(definition.skull_stripped) if definition else True
        self.enabled = bool(enabled)
        self.limits = {
            "max_border_fraction": float(max_border_fraction),
            "max_rim_ratio": float(max_rim_ratio),
            "max_outline_mm": float(max_outline_mm),
        }

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> Mapping[Hashable, torch.Tensor]:
        if not self.enabled:
            return data
        for key in self.key_iterator(dict(data)):
            image = np.asarray(torch.as_tensor(data[key]).detach().cpu())
            names = self.sequences if len(self.sequences) == len(image) else [f"channel {i}" for i in range(len(image))]
            affine = getattr(data[key], "affine", None)
            spacing = (1.0,) * 3 if affine is None else tuple(float(v) for v in affine_to_spacing(affine, r=3))
            problem = input_problem(image, names, self.skull_stripped, spacing=spacing, **self.limits)
            if problem:
                raise InputCheckError(f"{problem[0]}; {ADVICE}.", problem[1])
        return data
