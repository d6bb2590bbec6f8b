"""A synthetic BraTS-like dataset: procedural skull-stripped brains with gliomas, written in the BraTS 2021 layout.

Each case is drawn from its own random stream (seeded by ``(seed, case index)``), so the same seed gives the same
bytes and any case can be regenerated alone. Anatomy: an irregular brain outline, a cortical grey-matter ribbon with
gyri and sulci, white matter, the interhemispheric fissure, lateral ventricles and deep grey nuclei. Tumour: an
irregular lesion with a necrotic core (label 1), an enhancing rim (label 4, bright on T1ce only) and surrounding
edema (label 2, bright on T2 and FLAIR, spreading through white matter); some cases have no enhancing tumour.
Each modality has its own tissue contrasts, a smooth bias field, partial-volume blur and Rician noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from tqdm import tqdm

from custom_nets.utils import save_nifti

MODALITIES = ("t1", "t1ce", "t2", "flair")
BACKGROUND, CSF, GREY, WHITE, NECROSIS, EDEMA, ENHANCING = range(7)
# relative intensities per tissue class (index as above) and modality
CONTRAST = {
    "t1": (0.0, 0.25, 0.65, 0.85, 0.30, 0.55, 0.62),
    "t1ce": (0.0, 0.25, 0.65, 0.85, 0.25, 0.55, 1.45),
    "t2": (0.0, 1.50, 0.85, 0.60, 1.30, 1.15, 0.90),
    "flair": (0.0, 0.15, 0.80, 0.60, 0.60, 1.40, 1.00),
}
BRATS_LABEL = {NECROSIS: 1, EDEMA: 2, ENHANCING: 4}


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], cells: int) -> np.ndarray:
    """Zero-mean, unit-scale random field varying over about ``cells`` periods per axis."""
    coarse = torch.from_numpy(rng.standard_normal((1, 1, cells + 1, cells + 1, cells + 1)).astype(np.float32))
    field = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)[0, 0].numpy()
    return field / (field.std() + 1e-8)


def _ellipsoid(grid: np.ndarray, centre: Sequence[float], radii: Sequence[float]) -> np.ndarray:
    return sum(((grid[i] - centre[i]) / radii[i]) ** 2 for i in range(3))


def brain_tissue(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Tissue class map (BACKGROUND, CSF, GREY, WHITE) of one skull-stripped brain."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij"))
    half = np.asarray(shape, dtype=np.float32) / 2
    radii = np.array([0.80, 0.88, 0.82]) * rng.uniform(0.95, 1.05, 3)
    r = np.sqrt(_ellipsoid(grid, (0.0, 0.0, 0.0), radii)) * (1 + 0.04 * smooth_noise(rng, shape, 5))
    brain = r < 1.0
    voxel = 1.0 / (radii.mean() * half.mean())  # one voxel in normalised radius units
    tissue = np.where(brain, GREY, BACKGROUND).astype(np.uint8)
    # the grey ribbon is 3-15 % of the radius deep; the fold field makes gyri of white matter reach into it
    tissue[r < 0.88 - 0.06 * np.clip(smooth_noise(rng, shape, 12), -1.5, 1.5)] = WHITE
    sulci = (smooth_noise(rng, shape, 18) > 0.9) & (r > 0.8)
    tissue[brain & (sulci | (r > 1.0 - 1.2 * voxel))] = CSF
    fissure = (np.abs(grid[0]) * half[0] < 1.0) & (r > 0.55) & (grid[2] > -0.4)
    tissue[brain & fissure] = CSF
    for side in (-1.0, 1.0):
        nucleus = _ellipsoid(grid, (side * 0.2, -0.05, 0.0), (0.11, 0.16, 0.12)) < 1
        tissue[brain & nucleus] = GREY
        ventricle = _ellipsoid(grid, (side * rng.uniform(0.09, 0.14), 0.05, 0.12), (0.07, 0.32, 0.11)) < 1
        tissue[brain & ventricle] = CSF
    return tissue


def add_tumour(rng: np.random.Generator, tissue: np.ndarray, enhancing: bool) -> np.ndarray:
    """Writes NECROSIS / ENHANCING / EDEMA into ``tissue`` (in place) and returns it."""
    shape = tissue.shape
    candidates = np.argwhere(ndimage.binary_erosion(tissue >= GREY, iterations=max(2, min(shape) // 6)))
    if len(candidates) == 0:
        candidates = np.argwhere(tissue >= GREY)
    centre = candidates[rng.integers(len(candidates))]
    radius = rng.uniform(0.08, 0.17) * min(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    distance = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) / radius
    d_core = distance * np.exp(-0.35 * smooth_noise(rng, shape, 8))
    d_edema = distance * np.exp(-0.3 * smooth_noise(rng, shape, 5))
    brain = tissue > BACKGROUND
    core_fraction = 0.0 if rng.random() < 0.15 else rng.uniform(0.5, 0.8)
    edema_extent = rng.uniform(1.3, 1.9)
    edema = brain & (d_edema < edema_extent) & ((tissue == WHITE) | (d_edema < 1.3))
    tumour = brain & (d_core < 1.0)
    tissue[edema] = EDEMA
    tissue[tumour] = ENHANCING if enhancing else NECROSIS
    tissue[brain & (d_core < core_fraction)] = NECROSIS
    return tissue


def render(rng: np.random.Generator, tissue: np.ndarray, modality: str) -> np.ndarray:
    """One modality's image from the tissue map: contrast, texture, partial volume, bias field, Rician noise."""
    shape = tissue.shape
    contrast = np.asarray(CONTRAST[modality], dtype=np.float32) * rng.uniform(0.95, 1.05, len(CONTRAST[modality]))
    image = contrast[tissue] * (1 + 0.04 * smooth_noise(rng, shape, 20))
    image = ndimage.gaussian_filter(image, sigma=0.6)
    image *= np.exp(0.12 * smooth_noise(rng, shape, 2))
    sigma = 0.025
    noisy = np.sqrt((image + sigma * rng.standard_normal(shape)) ** 2 + (sigma * rng.standard_normal(shape)) ** 2)
    image = np.where(tissue > BACKGROUND, noisy, 0.0) * rng.uniform(400, 1200)
    return image.astype(np.float32)


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """1 mm voxels with BraTS's axis directions (i: right to left, j: front to back, k: bottom to top)."""
    return np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, shape[1] - 1], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def synthesize_case(seed: int, index: int, shape: Sequence[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Returns ({modality: float32 image}, uint8 BraTS 2021 labels {0, 1, 2, 4}) of case ``index``."""
    rng = np.random.default_rng([seed, index])
    tissue = add_tumour(rng, brain_tissue(rng, shape), enhancing=rng.random() > 0.25)
    images = {m: render(rng, tissue, m) for m in MODALITIES}
    labels = np.zeros(shape, dtype=np.uint8)
    for tissue_class, label in BRATS_LABEL.items():
        labels[tissue == tissue_class] = label
    return images, labels


def _save(array: np.ndarray, affine: np.ndarray, path: str) -> None:
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    save_nifti(image, path)


def synthesize(
    output_dir: str,
    num_cases: int = 20,
    seed: int = 0,
    shape: Sequence[int] = (128, 128, 96),
    prefix: str = "BraTS2021",
    progress: bool = True,
) -> list[str]:
    """Writes ``num_cases`` synthetic cases in the BraTS 2021 layout under ``output_dir`` and returns their folders.

    Args:
        output_dir: dataset folder; one sub-folder ``<prefix>_<00000>`` per case.
        num_cases: number of cases.
        seed: the same seed gives the same bytes.
        shape: volume size in voxels (1 mm isotropic); each axis at least 32.
        prefix: case name prefix.
        progress: show a progress bar.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"shape must be three sizes of at least 32 voxels, got {shape}.")
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}.")
    affine = brats_affine(shape)
    folders = []
    for index in tqdm(range(num_cases), desc="synthesize", disable=not progress):
        case = f"{prefix}_{index:05d}"
        folder = os.path.join(output_dir, case)
        os.makedirs(folder, exist_ok=True)
        images, labels = synthesize_case(seed, index, shape)
        for modality, image in images.items():
            _save(image, affine, os.path.join(folder, f"{case}_{modality}.nii.gz"))
        _save(labels, affine, os.path.join(folder, f"{case}_seg.nii.gz"))
        folders.append(folder)
    print(f"{output_dir}: {num_cases} synthetic cases of {shape[0]}x{shape[1]}x{shape[2]} voxels (seed {seed})")
    return folders
