"""One case made BraTS-like: every sequence rigidly registered to the reference sequence and resampled onto its grid
(its native space: the outputs of the segmentation land on the reference series), then, for a skull-stripped task,
one brain mask (deepbet, on the T1) applied to every sequence. Written as ``<work_dir>/<case>_<sequence>.nii.gz``
with the mask (``<case>_brain_mask.nii.gz``) and each registration's transform (``<case>_<sequence>.tfm``, ITK's
text format: points of the reference's space to the sequence's)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import itk
import numpy as np

from custom_nets.data.errors import DataError
from custom_nets.data.images import MAX_VOXELS_PER_IMAGE, check_image_files
from custom_nets.utils import atomic_path

STRIP_ORDER = ("t1", "t1n", "t1ce", "t1c")  # deepbet was trained on T1-weighted scans
BRAIN_ML_RANGE = (400.0, 2500.0)  # far outside it, a mask is not a brain (an infant's is about 500 mL)


def strip_sequence(sequences: Sequence[str], reference: str) -> str:
    """The sequence the brain mask is computed on: the first T1-weighted one, else the reference."""
    return next((s for s in STRIP_ORDER if s in sequences), reference)


def read_scans(
    case: str,
    sequences: Sequence[str],
    reference: str,
    files: Sequence[str] | None = None,
    dicom: Mapping | None = None,
    max_voxels: int = MAX_VOXELS_PER_IMAGE,
) -> tuple[dict[str, itk.Image], str | None]:
    """``{sequence: ITK image}`` of one case, before any alignment: its NIfTI ``files`` (in ``sequences``' order, each
    checked first: readable, finite, not empty, within ``max_voxels``) or its DICOM series (``dicom``: ``folder``,
    ``work_dir``, ``rules``, ``mapping_file``), read in whatever frames of reference they lie; and the reference
    series' folder of a DICOM case (None for NIfTI)."""
    if dicom is not None:
        from custom_nets.dicom.convert import read_case_series

        images, series_dir = read_case_series(
            case,
            dicom["folder"],
            list(sequences),
            reference,
            dicom["work_dir"],
            dicom.get("rules"),
            dicom.get("mapping_file", "modalities.json"),
            max_voxels,
            same_frame=False,
        )
        return {s: images[s] for s in sequences}, series_dir
    check_image_files({"case": case, "image": list(files)}, max_voxels)
    return {s: itk.imread(path, itk.F) for s, path in zip(sequences, files, strict=True)}, None


def _write(image: itk.Image, path: str) -> str:
    with atomic_path(path) as temporary:
        itk.imwrite(image, temporary, compression=True)
    return path


def prepare_case(
    case: str,
    images: Mapping[str, itk.Image],
    reference: str,
    work_dir: str,
    skull_strip: bool = True,
    brain_ml_range: Sequence[float] = BRAIN_ML_RANGE,
    names: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], dict]:
    """Registers, resamples and (``skull_strip``) masks the sequences ``images`` of one case onto the ``reference``
    sequence's grid; returns ``{sequence: written path}`` and the record of what was done (per sequence the
    registration's rotation, translation, mutual information, iterations and stop condition; the brain's volume in
    mL; seconds per step). ``names`` maps a sequence to its file name (default ``<case>_<sequence>.nii.gz``). Raises
    ``DataError`` naming the case when a registration does not converge or the brain mask's volume is outside
    ``brain_ml_range``; nothing is written for such a case but what was written before the failure."""
    from custom_nets.preprocess.registration import as_float, resample_onto, rigid_register

    if reference not in images:
        raise DataError(f"case {case}: no {reference} sequence to register the others to (has {sorted(images)}).")
    os.makedirs(work_dir, exist_ok=True)
    fixed = as_float(images[reference])
    record: dict = {"reference": reference, "registration": {}, "seconds": {}}
    aligned = {reference: fixed}
    for sequence, image in images.items():
        if sequence == reference:
            continue
        start = time.perf_counter()
        found = rigid_register(fixed, image)
        record["seconds"][f"register {sequence}"] = round(time.perf_counter() - start, 2)
        record["registration"][sequence] = found.record()
        if not found.converged:
            raise DataError(
                f"case {case}: the registration of {sequence} to {reference} did not converge ({found.stop}; mutual "
                f"information {-found.initial_metric:.3f} -> {-found.metric:.3f})."
            )
        itk.transformwrite([found.transform], os.path.join(work_dir, f"{case}_{sequence}.tfm"))
        aligned[sequence] = resample_onto(image, fixed, found.transform)
    if skull_strip:
        from custom_nets.preprocess.skull_strip import brain_mask

        stripped_on = strip_sequence(list(images), reference)
        start = time.perf_counter()
        mask, volume = brain_mask(aligned[stripped_on])
        record["seconds"]["skull strip"] = round(time.perf_counter() - start, 2)
        record["brain_ml"] = round(volume, 1)
        record["skull_stripped_on"] = stripped_on
        low, high = (float(v) for v in brain_ml_range)
        if not low <= volume <= high:
            raise DataError(
                f"case {case}: the brain mask computed on {stripped_on} holds {volume:.0f} mL, outside a brain's "
                f"{low:.0f}-{high:.0f} mL (brain_ml_range): not skull-stripped."
            )
        mask_image = itk.image_from_array(mask.astype(np.uint8))
        mask_image.CopyInformation(fixed)
        _write(mask_image, os.path.join(work_dir, f"{case}_brain_mask.nii.gz"))
        for sequence, image in aligned.items():
            masked = itk.array_from_image(image) * mask
            stripped = itk.image_from_array(masked.astype(np.float32))
            stripped.CopyInformation(fixed)
            aligned[sequence] = stripped
    names = dict(names or {})
    paths = {
        sequence: _write(aligned[sequence], os.path.join(work_dir, names.get(sequence, f"{case}_{sequence}.nii.gz")))
        for sequence in images
    }
    return paths, record
