"""Brain extraction with deepbet (Fisch et al. 2024, MIT): two small 3D U-Nets whose weights install inside its wheel,
so nothing is downloaded at run time. It was trained on T1-weighted scans; the preprocessing runs it on the case's T1
(or T1c) and applies the one mask to every sequence."""

from __future__ import annotations

from functools import lru_cache

import itk
import nibabel as nib
import numpy as np


@lru_cache(maxsize=1)
def _extractor():
    import torch
    from deepbet.bet import BrainExtraction

    return BrainExtraction(no_gpu=not torch.cuda.is_available())


def itk_to_nifti(image: itk.Image) -> nib.Nifti1Image:
    """An ITK image as the nibabel image with the same voxels and (RAS) affine, without a file (MONAI's reader)."""
    from monai.data import ITKReader

    voxels, meta = ITKReader(affine_lps_to_ras=True).get_data(image)
    return nib.Nifti1Image(np.asarray(voxels, dtype=np.float32), np.asarray(meta["affine"], dtype=float))


def brain_mask(image: itk.Image) -> tuple[np.ndarray, float]:
    """deepbet's brain mask of ``image`` as a boolean array in ITK's (z, y, x) voxel order, and its volume in mL."""
    nifti = itk_to_nifti(image)
    _, mask, _ = _extractor().run(nifti)
    inside = np.asanyarray(mask.dataobj) > 0  # on nifti's grid, reoriented back by deepbet: (x, y, z)
    volume_ml = float(inside.sum() * np.prod(np.asarray(image.GetSpacing(), dtype=float)) / 1000.0)
    return np.ascontiguousarray(np.transpose(inside, (2, 1, 0))), volume_ml
