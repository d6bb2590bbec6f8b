"""Synthetic heads as a scanner gives them, for tasks whose inputs are not skull-stripped (BraTS-MEN-RT).

A brain of ``custom_nets.data.synthetic`` is set inside a head: a CSF space, the skull (dark), the scalp (bright fat)
and air with Rician noise (not 0, as in any unprocessed scan), the face removed (set to 0, as defacing does). The
radiotherapy target is an extra-axial dural-based mass at the convexity that enhances on T1c and pushes into the
brain; in some cases it has been operated on, leaving a cavity with an enhancing margin, which the target (gross
tumour volume with its at-risk margin) covers; some cases have no target. The head is drawn at 1 mm and then acquired
on a native grid (``acquire``): in-plane 0.5 mm, or 0.9 mm with 3 mm slices (slice profile: a Gaussian of the
slice thickness's full width at half maximum), or 1 mm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

# the native grids of the cases, in turn (case index modulo their number)
NATIVE_SPACINGS = ((0.5, 0.5, 1.0), (0.9, 0.9, 3.0), (1.0, 1.0, 1.0))
BRAIN_FRACTION = 0.78  # the brain's extent as a fraction of the field of view, per axis


def embed_brain(brain: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``brain`` (a tissue map smaller than ``shape``) centred in a tissue map of ``shape``, a little high."""
    tissue = np.zeros(tuple(shape), dtype=brain.dtype)
    start = [(s - b) // 2 for s, b in zip(shape, brain.shape, strict=True)]
    start[2] = min(start[2] + max(1, (shape[2] - brain.shape[2]) // 4), shape[2] - brain.shape[2])
    tissue[tuple(slice(o, o + b) for o, b in zip(start, brain.shape, strict=True))] = brain
    return tissue


def add_head(
    rng: np.random.Generator, tissue: np.ndarray, csf: int, skull: int, scalp: int, noise
) -> tuple[np.ndarray, np.ndarray]:
    """Writes the CSF space, skull and scalp around the brain (the non-zero voxels of ``tissue``) in place; returns
    the tissue map and the defaced region (front and bottom of the face, outside the skull). ``noise(shape, cells)``
    is a smooth random field (``synthetic.smooth_noise`` bound to ``rng``)."""
    shape = tissue.shape
    brain = tissue > 0
    distance = ndimage.distance_transform_edt(~brain) * (1 + 0.08 * noise(shape, 4))
    size = min(shape)
    skull_from, scalp_from = 2.0, 2.0 + max(2.0, 0.04 * size)
    head_to = scalp_from + max(2.5, 0.05 * size) * rng.uniform(0.9, 1.2)
    outside = ~brain
    tissue[outside & (distance <= skull_from)] = csf
    tissue[outside & (distance > skull_from) & (distance <= scalp_from)] = skull
    tissue[outside & (distance > scalp_from) & (distance <= head_to)] = scalp
    j, k = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    face = (j < 0.3 * shape[1]) & (k < 0.5 * shape[2])  # index j runs front to back, k bottom to top
    defaced = face[None] & (distance > skull_from + 1)
    tissue[defaced] = 0
    return tissue, defaced


def add_dural_target(
    rng: np.random.Generator, tissue: np.ndarray, brain: np.ndarray, enhancing: int, cavity: int, noise
) -> np.ndarray:
    """An extra-axial mass on the dura of the convexity, enhancing, pushing into ``brain`` and kept inside the
    skull (the CSF space); with probability 0.4 a post-operative bed instead: a cavity with an enhancing margin.
    Returns the target (the gross tumour volume) as a boolean map."""
    shape = tissue.shape
    surface = np.argwhere(brain & ~ndimage.binary_erosion(brain, iterations=2))
    top = surface[:, 2] > np.percentile(surface[:, 2], 40)  # the convexity, not the skull base
    surface = surface[top] if top.any() else surface
    centre = surface[rng.integers(len(surface))].astype(np.float32)
    radius = rng.uniform(0.10, 0.16) * min(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    distance = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) / radius
    distance *= np.exp(-0.15 * noise(shape, 6))
    intracranial = ndimage.binary_dilation(brain, iterations=2)
    target = (distance < 1.0) & intracranial
    tissue[target] = enhancing
    if rng.random() < 0.4:
        tissue[target & (distance < rng.uniform(0.55, 0.75))] = cavity
    return target


def acquire(volume: np.ndarray, spacing: Sequence[float], labels: bool = False) -> np.ndarray:
    """``volume`` (1 mm voxels) as a scanner with voxels of ``spacing`` mm over the same field of view records it:
    each axis blurred by its voxel's profile where it is coarser than 1 mm, then sampled at the voxel centres
    (linear interpolation; nearest for ``labels``). The voxel ``i`` of the result is centred at ``i * s + (s - 1)
    / 2`` in the 1 mm grid's voxel coordinates (``native_affine``)."""
    spacing = np.asarray(spacing, dtype=float)
    shape = np.maximum(np.floor(np.asarray(volume.shape) / spacing), 1).astype(int)
    offset = (spacing - 1) / 2
    if labels:
        return ndimage.affine_transform(volume, spacing, offset, output_shape=tuple(shape), order=0, mode="nearest")
    sigma = np.where(spacing > 1, spacing / 2.355, 0)
    blurred = ndimage.gaussian_filter(volume.astype(np.float32), sigma) if sigma.any() else volume
    resampled = ndimage.affine_transform(blurred, spacing, offset, output_shape=tuple(shape), order=1, mode="nearest")
    return resampled.astype(np.float32)


def native_affine(affine: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """The affine of ``acquire``'s grid, from the 1 mm grid's ``affine``."""
    spacing = np.asarray(spacing, dtype=float)
    scale = np.eye(4)
    scale[:3, :3] = np.diag(spacing)
    scale[:3, 3] = (spacing - 1) / 2
    return np.asarray(affine, dtype=float) @ scale
