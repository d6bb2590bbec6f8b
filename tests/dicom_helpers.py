"""DICOM series written with ITK (GDCM) from synthetic NIfTI cases: one single-frame MR file per slice, each slice
a one-slice 3D image so that GDCM writes its position, orientation and spacing."""

import os
import zlib

import itk
import nibabel as nib
import numpy as np

STUDY = "1.2.826.0.1.3680043.8.498.10"
FRAME = "1.2.826.0.1.3680043.8.498.11"


def rotation(z_degrees: float, x_degrees: float) -> np.ndarray:
    a, b = np.deg2rad(z_degrees), np.deg2rad(x_degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def itk_volume(voxels_ijk: np.ndarray, spacing, origin, direction) -> itk.Image:
    """An ITK float image whose index (i, j, k) holds ``voxels_ijk[i, j, k]``."""
    image = itk.image_from_array(np.ascontiguousarray(np.transpose(voxels_ijk, (2, 1, 0)).astype(np.float32)))
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection(itk.matrix_from_array(np.asarray(direction, dtype=float)))
    return image


def coarser(image: itk.Image, factor: int = 2) -> itk.Image:
    """The same volume on a grid ``factor`` times coarser along its slice axis (same origin and orientation)."""
    size = list(image.GetLargestPossibleRegion().GetSize())
    spacing = list(image.GetSpacing())
    size[2], spacing[2] = size[2] // factor, spacing[2] * factor
    return itk.resample_image_filter(
        image,
        size=size,
        output_spacing=spacing,
        output_origin=image.GetOrigin(),
        output_direction=image.GetDirection(),
    )


def write_series(image: itk.Image, folder: str, description: str, series_uid: str, number: int, frame=FRAME):
    """``image`` as a DICOM MR series in ``folder`` (16-bit signed integers), one file per slice."""
    os.makedirs(folder, exist_ok=True)
    voxels = itk.array_from_image(image)  # (k, j, i)
    spacing = np.asarray(image.GetSpacing())
    origin = np.asarray(image.GetOrigin())
    direction = itk.array_from_matrix(image.GetDirection())
    for k in range(voxels.shape[0]):
        one = itk.image_from_array(np.ascontiguousarray(np.rint(voxels[k : k + 1]).astype(np.int16)))
        one.SetSpacing(spacing.tolist())
        one.SetOrigin((origin + direction @ np.array([0.0, 0.0, k * spacing[2]])).tolist())
        one.SetDirection(image.GetDirection())
        tags = one.GetMetaDataDictionary()
        for tag, value in {
            "0008|0060": "MR",
            "0008|103e": description,
            "0010|0010": "Synthetic^Patient",
            "0010|0020": "SYN001",
            "0020|000d": STUDY,
            "0020|000e": series_uid,
            "0020|0011": str(number),
            "0020|0013": str(k + 1),
            "0020|0052": frame,
            "0008|0018": f"{series_uid}.{k + 1}",
            # what a scanner's MR image carries and the validator asks for
            "0008|0008": "ORIGINAL\\PRIMARY\\OTHER",
            "0008|0070": "Synthetic",
            "0018|5100": "HFS",
            "0020|0060": "",
            "0020|1040": "",
            "0018|0050": f"{spacing[2]:g}",
            "0018|0020": "SE",
            "0018|0021": "NONE",
            "0018|0022": "",
            "0018|0023": "3D",
            "0018|0080": "500",
            "0018|0081": "10",
            "0018|0091": "1",
        }.items():
            tags[tag] = value
        io = itk.GDCMImageIO.New()
        io.KeepOriginalUIDOn()
        itk.imwrite(one, os.path.join(folder, f"{number:03d}_{k + 1:04d}.dcm"), imageio=io)


def dicom_case(
    nifti_case: str,
    folder: str,
    series: dict,
    direction: np.ndarray,
    origin=(-30.0, -40.0, -20.0),
    mixed: bool = False,
    coarse=("t2",),
    frames: dict | None = None,
) -> dict:
    """Writes the case folder ``nifti_case`` (BraTS 2021 names) as DICOM series: ``series`` maps a modality to its
    SeriesDescription (several entries may share a modality through ``"t1#2"`` keys); modalities in ``coarse`` are
    written on a grid twice as coarse along the slice axis; ``frames`` gives other frames of reference. Returns
    ``{key: (series_uid, image)}``."""
    name = os.path.basename(nifti_case.rstrip("/"))
    written = {}
    for number, (key, description) in enumerate(series.items(), start=1):
        modality = key.split("#")[0]
        voxels = np.asanyarray(nib.load(os.path.join(nifti_case, f"{name}_{modality}.nii.gz")).dataobj)
        image = itk_volume(voxels, (1.0, 1.0, 1.0), origin, direction)
        if key in coarse:
            image = coarser(image)
        uid = f"1.2.826.0.1.3680043.8.498.{zlib.crc32(f'{folder}{key}'.encode())}.{number}"
        target = folder if mixed else os.path.join(folder, f"series_{number}")
        write_series(image, target, description, uid, number, (frames or {}).get(key, FRAME))
        written[key] = (uid, image)
    return written


def dciodvfy_errors(path) -> list[str]:
    """The lines starting with ``Error`` that DICOM's validator ``dciodvfy`` (Debian package ``dicom3tools``)
    prints for the file ``path``. Skips without the tool, unless ``VOX2VOX_REQUIRE_DCIODVFY`` is set (``.ci/run``
    installs it and sets it), where its absence fails."""
    import shutil
    import subprocess

    import pytest

    tool = shutil.which("dciodvfy")
    if tool is None:
        if os.environ.get("VOX2VOX_REQUIRE_DCIODVFY"):
            pytest.fail("dciodvfy is not installed (apt-get install dicom3tools) but VOX2VOX_REQUIRE_DCIODVFY is set")
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
