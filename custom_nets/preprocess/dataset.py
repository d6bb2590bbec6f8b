"""``preprocess``: every case of a folder (NIfTI in a task's layout, or DICOM series) through ``prepare_case`` into
a dataset folder the bundle reads; each case stands alone."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence

import itk
import nibabel as nib
import numpy as np
from tqdm import tqdm

from custom_nets.cases import CaseRecord
from custom_nets.data.datalist import DataError, choose_task, scan_dataset
from custom_nets.data.tasks import load_task
from custom_nets.preprocess.case import BRAIN_ML_RANGE, prepare_case, read_scans
from custom_nets.utils import atomic_path


def _is_case_folder(folder: str) -> bool:
    """A folder holding image files itself (one case), not case folders."""
    from pydicom.misc import is_dicom

    if not os.path.isdir(folder):
        return False  # scan_dataset names the missing folder
    names = [n for n in os.listdir(folder) if not n.startswith(".") and os.path.isfile(os.path.join(folder, n))]
    return any(n.endswith((".nii", ".nii.gz")) or is_dicom(os.path.join(folder, n)) for n in names)


def preprocess(
    dataset_dir: str,
    output_dir: str,
    task: str | None = None,
    reference: str | None = None,
    skull_strip: bool | None = None,
    brain_ml_range: Sequence[float] = BRAIN_ML_RANGE,
    overwrite: bool = False,
    max_voxels_per_image: int = 1024 * 1024 * 512,
) -> str:
    """Makes each case of ``dataset_dir`` (or the one case folder ``dataset_dir``) BraTS-like in ``output_dir``:
    every sequence rigidly registered to ``reference`` and resampled onto its grid, then skull-stripped, written in the
    task's file names with the brain mask, the transforms and ``preprocess_record.json`` (per case: what was done, the
    registrations' parameters and mutual information, the brain's volume, seconds per step; skipped cases with the
    reason). Exits with 1 when a case was skipped.

    Args:
        dataset_dir: case folders of NIfTI files (a task's layout) or DICOM series, or one such case folder.
        output_dir: where the prepared dataset goes; run the bundle's inference on it.
        task: the task (its sequences and file names); by default chosen from the case ids and files, as the data
            CLI's ``datalist`` chooses it.
        reference: the sequence the others are registered to, whose grid the outputs lie on (default: the task's first
            sequence, as ``dicom_reference_modality``).
        skull_strip: run brain extraction (default: when the task's inputs are skull-stripped).
        brain_ml_range: a brain mask outside this volume range (mL) skips the case.
        overwrite: redo cases whose prepared files exist.
        max_voxels_per_image: a file or series whose header claims more voxels is refused before it is decoded.
    """
    dataset_dir = os.path.abspath(dataset_dir)
    with tempfile.TemporaryDirectory() as view:
        scanned = dataset_dir
        if _is_case_folder(dataset_dir):  # one case: scanned as the only case of a folder
            scanned = os.path.join(view, "cases")
            os.makedirs(scanned)
            os.symlink(dataset_dir, os.path.join(scanned, os.path.basename(dataset_dir)))
        from custom_nets.dicom.series import is_dicom_case

        problems: list = []
        chosen_task = load_task(task) if task is not None else None
        layout, cases = scan_dataset(scanned, problems=problems, dicom=is_dicom_case, task=chosen_task)
        chosen_task = choose_task(dataset_dir, layout, [c["case"] for c in cases], chosen_task)
        reference = str(reference or chosen_task.sequences[0]).lower()
        if reference not in chosen_task.sequences:
            raise ValueError(
                f"reference {reference!r} is not a sequence of the task {chosen_task.name}: "
                f"{list(chosen_task.sequences)}."
            )
        strip = chosen_task.skull_stripped if skull_strip is None else bool(skull_strip)
        files = chosen_task.layouts[0]
        record = CaseRecord(
            output_dir,
            file_name="preprocess_record.json",
            task="preprocess",
            settings={"task": chosen_task.record(), "reference": reference, "skull_strip": strip},
        )
        for case, message in problems:
            record.skipped(case, message)
        for entry in tqdm(cases, desc="preprocess", unit="case"):
            case = entry["case"]
            folder = os.path.join(output_dir, case)
            names = {
                s: f"{case}{suffix}.nii.gz"
                for s, suffix in zip(chosen_task.sequences, files.sequence_suffixes, strict=True)
            }
            if not overwrite and all(os.path.exists(os.path.join(folder, n)) for n in names.values()):
                record.left(case)
                continue
            try:
                if "dicom" in entry:
                    sources, dicom = (
                        None,
                        {"folder": entry["dicom"], "work_dir": os.path.join(output_dir, ".dicom", case)},
                    )
                elif isinstance(entry["image"], list):
                    sources, dicom = entry["image"], None
                else:
                    raise DataError(f"case {case}: a 4D Decathlon image holds co-registered sequences already.")
                images, _ = read_scans(
                    case, chosen_task.sequences, reference, sources, dicom, int(max_voxels_per_image)
                )
                _, done = prepare_case(case, images, reference, folder, strip, brain_ml_range, names)
                if entry.get("label"):
                    done["label"] = _copy_label(
                        entry["label"], images[reference], os.path.join(folder, f"{case}{files.label_suffix}.nii.gz")
                    )
                record.note(case, **done)
                record.written(case)
            except DataError as error:
                record.skipped(case, str(error))
            except Exception as error:  # ITK failing on a file or a registration
                record.skipped(case, f"case {case}: {type(error).__name__}: {error}")
        shutil.rmtree(os.path.join(output_dir, ".dicom"), ignore_errors=True)
        record.finish()
    return output_dir


def _copy_label(path: str, reference: itk.Image, target: str) -> str:
    """The case's label copied beside the prepared sequences when it lies on the reference's grid (the prepared
    sequences do), else left out (said in the record)."""
    label = nib.load(path)
    from custom_nets.preprocess.skull_strip import itk_to_nifti

    grid = itk_to_nifti(reference)
    if label.shape[:3] != grid.shape or not np.allclose(label.affine, grid.affine, atol=1e-3):
        return f"not copied: {path} is not on the reference's grid"
    with atomic_path(target) as temporary:
        shutil.copyfile(path, temporary)
    return "copied"
