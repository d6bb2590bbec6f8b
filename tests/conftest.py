import os

import nibabel as nib
import numpy as np
import pytest

from custom_nets.data.synthetic import brats_affine, synthesize, synthesize_case

SMALL = (32, 32, 32)


def save(array, path, affine=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)
    return path


@pytest.fixture(scope="session")
def small_cases():
    """Three synthetic cases (images dict, BraTS 2021 labels) of 32^3 voxels."""
    return [synthesize_case(seed=7, index=i, shape=SMALL) for i in range(3)]


def write_brats2021(root, cases, with_label=True):
    affine = brats_affine(SMALL)
    for i, (images, labels) in enumerate(cases):
        case = f"BraTS2021_{i:05d}"
        for modality, image in images.items():
            save(image, os.path.join(root, case, f"{case}_{modality}.nii.gz"), affine)
        if with_label:
            save(labels, os.path.join(root, case, f"{case}_seg.nii.gz"), affine)
    return str(root)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory):
    """A synthetic BraTS 2021 dataset of 6 cases at 48x48x32 made by the package's own synthesizer."""
    root = tmp_path_factory.mktemp("synthetic")
    synthesize(str(root), num_cases=6, seed=3, shape=(48, 48, 32), progress=False)
    return str(root)
