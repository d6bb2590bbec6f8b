"""A case's image files read with errors that name the case and the file, and sized from their headers before any
voxel is decoded: a 3.5 MB ``.nii.gz`` can claim 1024x1024x768 voxels, 3 GB of float32 per sequence."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import nibabel as nib
import numpy as np

from custom_nets.data.conventions import CHANNELS
from custom_nets.data.errors import DataError

# well above any MRI a scanner writes (a 0.5 mm isotropic head is about 400x500x400)
MAX_VOXELS_PER_IMAGE = 1024 * 1024 * 512


def check_voxel_budget(case: str, what: str, shape: Sequence[int], max_voxels: int = MAX_VOXELS_PER_IMAGE) -> None:
    """Raises ``DataError`` naming ``what`` (a file or a series), its shape and the budget when ``shape`` holds more
    than ``max_voxels`` voxels."""
    voxels = math.prod(int(n) for n in shape)
    if voxels > int(max_voxels):
        raise DataError(
            f"case {case}: {what} holds {'x'.join(str(int(n)) for n in shape)} = {voxels:,} voxels, more than "
            f"max_voxels_per_image {int(max_voxels):,}; it was not decoded (raise max_voxels_per_image if it is a "
            f"real image)."
        )


def read_header(path: str, case: str, max_voxels: int = MAX_VOXELS_PER_IMAGE) -> nib.Nifti1Image:
    """The image with its header read and its voxels not yet decoded; refused over ``max_voxels``."""
    try:
        image = nib.load(path)
    except Exception as e:  # nibabel raises many types for corrupt files
        raise DataError(f"case {case}: cannot read {path} ({type(e).__name__}: {e}).") from e
    check_voxel_budget(case, path, image.shape, max_voxels)
    return image


def read_voxels(
    path: str, case: str, max_voxels: int = MAX_VOXELS_PER_IMAGE
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The voxels, affine and shape of one file; its header is checked against ``max_voxels`` first."""
    image = read_header(path, case, max_voxels)
    try:
        data = np.asanyarray(image.dataobj)
    except Exception as e:  # truncated or corrupt voxel data
        raise DataError(f"case {case}: cannot read {path} ({type(e).__name__}: {e}).") from e
    return data, image.affine, tuple(image.shape)


def check_case_grid(
    entry: dict[str, Any], max_voxels: int = MAX_VOXELS_PER_IMAGE
) -> tuple[str, tuple[int, ...], np.ndarray]:
    """From the headers alone (no voxel data is read): the modalities of one case are 3D volumes (or one 4D image
    with a channel per modality) on one grid, each within ``max_voxels``. Raises ``DataError``; returns the first
    image's path, shape, affine."""
    case = entry["case"]
    one_4d_image = not isinstance(entry["image"], list)
    images = [entry["image"]] if one_4d_image else entry["image"]
    reference = None
    channels = len(entry.get("sequences", CHANNELS))
    for path in images:
        header = read_header(path, case, max_voxels)
        shape, affine = tuple(header.shape), header.affine
        if one_4d_image and (len(shape) != 4 or shape[3] != channels):
            raise DataError(f"case {case}: {path} has shape {shape}, expected a 4D image with {channels} channels.")
        if not one_4d_image and len(shape) != 3:
            raise DataError(f"case {case}: {path} has shape {shape}, expected a 3D volume.")
        if reference is None:
            reference = (path, shape[:3], affine)
        elif shape[:3] != reference[1]:
            raise DataError(f"case {case}: {path} has shape {shape[:3]}, but {reference[0]} has {reference[1]}.")
        elif not np.allclose(affine, reference[2], atol=1e-3):
            raise DataError(
                f"case {case}: the affine of {path} differs from that of {reference[0]} "
                f"(modalities must be co-registered on one grid):\n{affine}\nvs\n{reference[2]}"
            )
    return reference


def check_image_files(entry: dict[str, Any], max_voxels: int = MAX_VOXELS_PER_IMAGE) -> None:
    """Reads the voxels of every image file of one case and raises ``DataError`` naming the first file that claims
    more than ``max_voxels`` voxels, cannot be read (truncated or corrupt), holds NaN or infinite voxels, or is all
    zero (an empty brain), and a label file that cannot be read."""
    case = os.path.basename(os.path.normpath(str(entry["case"])))
    for path in entry["image"] if isinstance(entry["image"], list) else [entry["image"]]:
        data, _, _ = read_voxels(path, case, max_voxels)
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise DataError(f"case {case}: {path} has {bad} NaN or infinite voxels; expected finite intensities.")
        volumes = np.moveaxis(data, -1, 0) if data.ndim == 4 else [data]
        for channel, volume in enumerate(volumes):
            if not np.any(volume):
                where = f"channel {channel} of {path}" if data.ndim == 4 else path
                raise DataError(
                    f"case {case}: {where} is all zero (an empty brain); expected a skull-stripped MRI volume."
                )
    if entry.get("label"):
        read_voxels(entry["label"], case, max_voxels)
