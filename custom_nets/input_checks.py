"""A guard against silent nonsense: a model trained on skull-stripped, co-registered sequences (BraTS) segments an
unstripped head or misaligned sequences without any error. Each case's inputs are checked before the network runs,
and a case that does not look like what its task expects is skipped with the check that failed and what to do.

- skull-stripped (tasks whose ``skull_stripped`` is true, all but those whose data keep the head): non-zero voxels
  on the grid's border, or a rim of the non-zero region brighter than its inside in every sequence (a skull or scalp
  around the brain; a stripped brain's rim is cortex and CSF, darker than white matter in T1 at least);
- co-registered (several sequences): the non-zero outlines of the sequences overlap (Dice against the first).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from custom_nets.data.errors import DataError

ADVICE = (
    "skull-strip and co-register the sequences first (README, Clinical data), or set input_checks false if the "
    "model was trained on such inputs"
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


def outline_dice(image: np.ndarray) -> list[float]:
    """The Dice of each sequence's non-zero voxels with the first sequence's."""
    masks = image != 0
    first = masks[0]
    return [2.0 * float((first & m).sum()) / max(float(first.sum() + m.sum()), 1.0) for m in masks[1:]]


def input_problem(
    image: np.ndarray,
    sequences: Sequence[str],
    skull_stripped: bool = True,
    max_border_fraction: float = 0.05,
    max_rim_ratio: float = 1.2,
    min_outline_dice: float = 0.97,
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
        dice = outline_dice(image)
        worst = int(np.argmin(dice))
        if dice[worst] < min_outline_dice:
            return (
                f"input check 'co-registered' failed: the non-zero outlines of {sequences[0]} and "
                f"{sequences[worst + 1]} overlap with Dice {dice[worst]:.3f} (at least {min_outline_dice} for "
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
        max_border_fraction: float = 0.05,
        max_rim_ratio: float = 1.2,
        min_outline_dice: float = 0.97,
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
            "min_outline_dice": float(min_outline_dice),
        }

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> Mapping[Hashable, torch.Tensor]:
        if not self.enabled:
            return data
        for key in self.key_iterator(dict(data)):
            image = np.asarray(torch.as_tensor(data[key]).detach().cpu())
            names = self.sequences if len(self.sequences) == len(image) else [f"channel {i}" for i in range(len(image))]
            problem = input_problem(image, names, self.skull_stripped, **self.limits)
            if problem:
                raise InputCheckError(f"{problem[0]}; {ADVICE}.", problem[1])
        return data
