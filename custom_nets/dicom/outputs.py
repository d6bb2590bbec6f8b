"""DICOM outputs of a DICOM case, on its reference series' grid: the label map as a DICOM Segmentation (highdicom)
that references the reference series, and a synthesized sequence as a derived MR series."""

from __future__ import annotations

import copy
import logging
import os
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from custom_nets.data.errors import DataError
from custom_nets.dicom.series import dicom_files, slice_order
from custom_nets.utils import PARTIAL_PREFIX, atomic_path

MANUFACTURER = "Vox2Vox MONAI bundle"
logging.getLogger("highdicom").setLevel(logging.WARNING)  # it logs every module it copies at INFO


def segments(task) -> dict[int, tuple[str, hd.sr.CodedConcept, hd.sr.CodedConcept]]:
    """Class index -> (segment label, segmented property category, type) from the task's ``codes`` and
    ``categories`` (scheme, value, meaning; by default a neoplasm, a morphologically abnormal structure)."""
    from custom_nets.data.tasks import load_task

    def concept(code) -> hd.sr.CodedConcept:
        scheme, value, meaning = code
        return hd.sr.CodedConcept(value=str(value), scheme_designator=str(scheme), meaning=str(meaning))

    task = load_task(task)
    abnormal = codes.SCT.MorphologicallyAbnormalStructure
    found = {}
    for index, name in enumerate(task.class_names[1:], start=1):
        kind = concept(task.codes.get(name) or ("SCT", "108369006", "Neoplasm"))
        category = concept(task.categories[name]) if name in task.categories else abnormal
        found[index] = (task.descriptions.get(name, name), category, kind)
    return found


def software_version() -> str:
    """The installed package's version, for the DICOM objects' SoftwareVersions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custom_nets")
    except PackageNotFoundError:
        return "0"


def new_instance(source: pydicom.Dataset, series_offset: int) -> dict:
    """highdicom's identity arguments of a new one-instance series in ``source``'s study, numbered
    ``series_offset`` after ``source``'s series."""
    return {
        "series_instance_uid": hd.UID(),
        "series_number": int(source.get("SeriesNumber") or 0) + series_offset,
        "sop_instance_uid": hd.UID(),
        "instance_number": 1,
        "manufacturer": MANUFACTURER,
    }


def read_series(series_dir: str) -> list[pydicom.Dataset]:
    """The reference series' datasets in ITK's slice order; a missing SliceThickness (highdicom needs it) is taken
    as the distance between the first two slices."""
    datasets = [pydicom.dcmread(path) for path in dicom_files(series_dir)]
    if not datasets:
        raise DataError(f"no DICOM files in {series_dir}.")
    datasets = [datasets[i] for i in slice_order(datasets)]
    if len(datasets) > 1 and any("SliceThickness" not in d for d in datasets):
        first, second = (np.asarray(d.ImagePositionPatient, dtype=float) for d in datasets[:2])
        thickness = f"{float(np.linalg.norm(second - first)):.6g}"
        for d in datasets:
            d.SliceThickness = d.get("SliceThickness") or thickness
    return datasets


def frames_of(volume: np.ndarray, reference: nib.Nifti1Image, datasets: list[pydicom.Dataset], case: str):
    """``volume`` (on the grid of ``reference``, the NIfTI written from the series by ITK: voxel [i, j, k] = column
    i, row j of the k-th slice in ITK's order) as frames (slices, rows, columns) in ``datasets``' order; checks that
    the grid is the series' (size, and the first slice's position against the NIfTI origin)."""
    rows, columns = int(datasets[0].Rows), int(datasets[0].Columns)
    if volume.shape != (columns, rows, len(datasets)):
        raise DataError(
            f"case {case}: a volume of shape {volume.shape} is not on the grid of its reference series "
            f"({columns} columns, {rows} rows, {len(datasets)} slices)."
        )
    origin_lps = reference.affine[:3, 3] * np.array([-1.0, -1.0, 1.0])
    first = np.asarray(datasets[0].ImagePositionPatient, dtype=float)
    if not np.allclose(first, origin_lps, atol=1e-2):
        raise DataError(
            f"case {case}: the first slice of the reference series lies at {first}, the volume's origin at "
            f"{origin_lps} (LPS): they are not one grid."
        )
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))


def write_segmentation(
    classes: np.ndarray, reference: nib.Nifti1Image, series_dir: str, path: str, case: str, task="brats2021"
) -> str:
    """A DICOM Segmentation (binary, one segment per class of the task present or not, coded as its ``codes`` say)
    of the class map ``classes`` (the task's class indices) on the grid of ``reference``, referencing the series in
    ``series_dir``; written atomically to ``path``."""
    datasets = read_series(series_dir)
    frames = frames_of(np.asarray(classes, dtype=np.uint8), reference, datasets, case)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="Vox2Vox", version=software_version(), family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=category,
            segmented_property_type=concept,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, (label, category, concept) in segments(task).items()
    ]
    segmentation = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        **new_instance(datasets[0], 9000),
        manufacturer_model_name="Vox2Vox",
        software_versions=software_version(),
        device_serial_number="0",
        series_description="Vox2Vox tumour segmentation",
        omit_empty_frames=False,
    )
    with atomic_path(path) as temporary:
        segmentation.save_as(temporary)
    return path


def write_derived_series(
    volume: np.ndarray, reference: nib.Nifti1Image, series_dir: str, folder: str, description: str, case: str
) -> str:
    """``volume`` (on the grid of ``reference``) as a derived MR series: the reference series' slices with new UIDs,
    ImageType DERIVED\\SECONDARY, ``description`` and the volume's voxels rounded to 16-bit integers. The folder is
    written under a temporary name and renamed, so it exists only complete."""
    datasets = read_series(series_dir)
    frames = frames_of(np.asarray(volume, dtype=np.float32), reference, datasets, case)
    pixels = np.clip(np.rint(frames), -32768, 32767).astype(np.int16)
    series_uid = generate_uid()
    parent = os.path.dirname(os.path.abspath(folder))
    temporary = os.path.join(parent, f"{PARTIAL_PREFIX}{os.getpid()}-{os.path.basename(folder)}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    for k, source in enumerate(datasets):
        ds = copy.deepcopy(source)
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SeriesDescription = description
        ds.SeriesNumber = int(source.get("SeriesNumber") or 0) + 8000
        flavour = list(source.get("ImageType") or [])[2:3] or ["OTHER"]  # MR images need a third value
        ds.ImageType = ["DERIVED", "SECONDARY", *flavour]
        ds.DerivationDescription = f"synthesized by Vox2Vox from the case's other sequences ({MANUFACTURER})"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        for tag in ("WindowCenter", "WindowWidth", "LargestImagePixelValue", "SmallestImagePixelValue"):
            if tag in ds:
                delattr(ds, tag)
        ds.PixelData = pixels[k].tobytes()
        ds.save_as(os.path.join(temporary, f"{k + 1:05d}.dcm"), enforce_file_format=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)
    return folder
