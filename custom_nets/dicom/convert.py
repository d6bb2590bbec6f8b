"""A DICOM case as the NIfTI volumes the bundle's pipeline reads: each chosen series read with MONAI's ``ITKReader``
(ITK/GDCM) and, when its grid differs from the reference series', resampled onto that grid in physical space with
ITK (linear interpolation, no registration), then written as ``<work_dir>/<case>_<modality>.nii.gz``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import itk
import numpy as np
from monai.data import ITKReader
from pydicom.misc import is_dicom

from custom_nets.data.errors import DataError
from custom_nets.data.images import MAX_VOXELS_PER_IMAGE, check_voxel_budget
from custom_nets.dicom.series import MAPPING_FILE, Series, assign_modalities, find_series
from custom_nets.utils import atomic_path

FloatImage = itk.Image[itk.F, 3]


def series_folder(series: Series, work_dir: str) -> str:
    """A folder holding this series alone: its own folder when no other DICOM file is there, otherwise a folder of
    links under ``work_dir`` (ITK reads a series from a folder)."""
    folders = {os.path.dirname(f) for f in series.files}
    if len(folders) == 1:
        folder = folders.pop()
        members = set(series.files)
        others = (os.path.join(folder, n) for n in os.listdir(folder))
        if not any(p not in members and os.path.isfile(p) and is_dicom(p) for p in others):
            return folder
    linked = os.path.join(work_dir, "series", series.uid)
    os.makedirs(linked, exist_ok=True)
    for i, path in enumerate(series.files):
        link = os.path.join(linked, f"{i:05d}.dcm")
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(path), link)
    return linked


def _read(case: str, modality: str, series: Series, work_dir: str) -> itk.Image:
    folder = series_folder(series, work_dir)
    try:
        image = ITKReader().read(folder)
    except Exception as error:
        raise DataError(
            f"case {case}: cannot read the {modality} series {series} ({type(error).__name__}: {error})."
        ) from error
    if image.GetImageDimension() != 3:
        raise DataError(f"case {case}: the {modality} series {series} is not a 3D volume.")
    return itk.cast_image_filter(image, ttype=(type(image), FloatImage))


def same_grid(a: itk.Image, b: itk.Image, atol: float = 1e-4) -> bool:
    return (
        tuple(a.GetLargestPossibleRegion().GetSize()) == tuple(b.GetLargestPossibleRegion().GetSize())
        and np.allclose(np.asarray(a.GetSpacing()), np.asarray(b.GetSpacing()), atol=atol)
        and np.allclose(np.asarray(a.GetOrigin()), np.asarray(b.GetOrigin()), atol=atol)
        and np.allclose(itk.array_from_matrix(a.GetDirection()), itk.array_from_matrix(b.GetDirection()), atol=atol)
    )


def read_case_series(
    case: str,
    folder: str,
    modalities: Sequence[str],
    reference: str,
    work_dir: str,
    rules: Mapping[str, str] | None = None,
    mapping_file: str = MAPPING_FILE,
    max_voxels: int = MAX_VOXELS_PER_IMAGE,
    same_frame: bool = True,
) -> tuple[dict[str, itk.Image], str]:
    """``{modality: ITK image}`` of the series chosen for ``reference`` and ``modalities``, and the folder of the
    reference series. Raises ``DataError`` naming the case and the series when a modality is missing or ambiguous, a
    series' headers claim more than ``max_voxels`` voxels (checked before any pixel data is read), or, with
    ``same_frame``, a series lies in another frame of reference than the reference's (it would need registration)."""
    series = find_series(case, folder)
    needed = list(dict.fromkeys([reference, *modalities]))
    chosen = assign_modalities(case, folder, series, needed, rules, mapping_file)
    frame = chosen[reference].frame_of_reference
    for modality, s in chosen.items():
        if same_frame and s.frame_of_reference != frame:
            raise DataError(
                f"case {case}: the {modality} series {s} lies in frame of reference {s.frame_of_reference or '(none)'}"
                f", the {reference} series {chosen[reference]} in {frame or '(none)'}: they need registration, which "
                f"this step does not do (it resamples in physical space only; set preprocess true to register)."
            )
    for modality, s in chosen.items():
        check_voxel_budget(case, f"the {modality} series {s}", s.shape, max_voxels)
    os.makedirs(work_dir, exist_ok=True)
    images = {modality: _read(case, modality, s, work_dir) for modality, s in chosen.items()}
    return images, series_folder(chosen[reference], work_dir)


def convert_case(
    case: str,
    folder: str,
    modalities: Sequence[str],
    reference: str,
    work_dir: str,
    rules: Mapping[str, str] | None = None,
    mapping_file: str = MAPPING_FILE,
    max_voxels: int = MAX_VOXELS_PER_IMAGE,
) -> tuple[list[str], str]:
    """Writes ``<work_dir>/<case>_<m>.nii.gz`` for each of ``modalities`` on the grid of the ``reference`` modality's
    series (``read_case_series``, one frame of reference); returns those paths and the folder of the reference series
    (for the DICOM outputs)."""
    images, series_dir = read_case_series(
        case, folder, modalities, reference, work_dir, rules, mapping_file, max_voxels
    )
    grid = images[reference]
    paths = []
    for modality in modalities:
        image = images[modality]
        if not same_grid(image, grid):
            interpolator = itk.LinearInterpolateImageFunction[FloatImage, itk.D].New()
            image = itk.resample_image_filter(
                image, reference_image=grid, use_reference_image=True, interpolator=interpolator, default_pixel_value=0
            )
        path = os.path.join(work_dir, f"{case}_{modality}.nii.gz")
        with atomic_path(path) as temporary:
            itk.imwrite(image, temporary, compression=True)
        paths.append(path)
    return paths, series_dir
