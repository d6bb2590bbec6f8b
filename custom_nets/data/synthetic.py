"""Synthetic BraTS-like datasets: procedural skull-stripped brains with tumours, one scheme per task.

Each case is drawn from its own random stream (seeded by ``(seed, case index)``), so the same seed gives the same
bytes and any case can be regenerated alone. Anatomy: an irregular brain outline, a cortical grey-matter ribbon with
gyri and sulci, white matter, the interhemispheric fissure, lateral ventricles and deep grey nuclei. Tumour: an
irregular lesion with a necrotic core (label 1), an enhancing rim (label 4, bright on T1ce only) and surrounding
edema (label 2, bright on T2 and FLAIR, spreading through white matter); some cases have no enhancing tumour.
Each modality has its own tissue contrasts, a smooth bias field, partial-volume blur and Rician noise.

Per task (``--task``; written in the BraTS 2021 layout for ``brats2021``, else in the BraTS 2023+ layout with the
challenge's case ids, e.g. ``BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1c.nii.gz``): ``gli`` adds a resection cavity
(dark on T1, T1ce and FLAIR, bright on T2) beside residual tumour in about half the cases; ``ped`` a cyst (bright on
T2, not suppressed on FLAIR) in most; ``mets`` replaces the glioma by two to five small enhancing lesions, some with
a necrotic core, and a cavity in some cases; ``men`` and ``goat`` an extra-axial dural-based mass that enhances;
``men-rt`` one T1c of an unstripped, defaced head on a native anisotropic grid with the mass or its post-operative
bed as the radiotherapy target (``custom_nets.data.synthetic_head``).
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

from custom_nets.data.synthetic_head import (
    BRAIN_FRACTION,
    NATIVE_SPACINGS,
    acquire,
    add_dural_target,
    add_head,
    embed_brain,
    native_affine,
)
from custom_nets.utils import save_nifti

MODALITIES = ("t1", "t1ce", "t2", "flair")
BACKGROUND, CSF, GREY, WHITE, NECROSIS, EDEMA, ENHANCING, CAVITY, CYST, SKULL, SCALP = range(11)
# relative intensities per tissue class (index as above) and modality
CONTRAST = {
    "t1": (0.0, 0.25, 0.65, 0.85, 0.30, 0.55, 0.62, 0.18, 0.32, 0.08, 1.10),
    "t1ce": (0.0, 0.25, 0.65, 0.85, 0.25, 0.55, 1.45, 0.18, 0.32, 0.08, 1.10),
    "t2": (0.0, 1.50, 0.85, 0.60, 1.30, 1.15, 0.90, 1.60, 1.70, 0.10, 0.90),
    "flair": (0.0, 0.15, 0.80, 0.60, 0.60, 1.40, 1.00, 0.10, 0.55, 0.05, 0.90),
}
# the synthesizer's name of each task sequence it renders
RENDERED = {"t1c": "t1ce", "t1n": "t1", "t2w": "t2", "t2f": "flair"}
BRATS_LABEL = {NECROSIS: 1, EDEMA: 2, ENHANCING: 4}
# the task's class (by name) each tumour tissue is labelled as; a tissue a task has no class for is not drawn
SCHEMES = {
    "brats2021": {NECROSIS: "NCR/NET", EDEMA: "edema", ENHANCING: "enhancing"},
    "msd": {NECROSIS: "non-enhancing", EDEMA: "edema", ENHANCING: "enhancing"},
    "gli": {NECROSIS: "NETC", EDEMA: "SNFH", ENHANCING: "ET", CAVITY: "RC"},
    "mets": {NECROSIS: "NETC", EDEMA: "SNFH", ENHANCING: "ET", CAVITY: "RC"},
    "ped": {ENHANCING: "ET", NECROSIS: "NETC", CYST: "CC", EDEMA: "ED"},
    "men": {NECROSIS: "NETC", EDEMA: "SNFH", ENHANCING: "ET"},
    "goat": {NECROSIS: "NETC", EDEMA: "SNFH", ENHANCING: "ET"},
    "men-rt": {ENHANCING: "GTV", CAVITY: "GTV"},
}


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


def _sphere(shape: Sequence[int], centre: Sequence[float], radius: float, rng: np.random.Generator) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    distance = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) / radius
    return distance * np.exp(-0.25 * smooth_noise(rng, shape, 6)) < 1.0


def _tumour_box(tissue: np.ndarray) -> tuple[np.ndarray, float]:
    lesion = np.argwhere(np.isin(tissue, (NECROSIS, ENHANCING)))
    if len(lesion) == 0:
        lesion = np.argwhere(tissue == EDEMA)
    centre = lesion.mean(0)
    return centre, float(np.abs(lesion - centre).max(0).mean())


def add_cavity(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """A resection cavity (CSF-like) centred beside the tumour core, taking half of it: residual tumour remains."""
    centre, extent = _tumour_box(tissue)
    direction = rng.standard_normal(3)
    centre = centre + direction / np.linalg.norm(direction) * 0.6 * extent
    cavity = _sphere(tissue.shape, centre, rng.uniform(0.6, 0.8) * extent, rng) & (tissue > BACKGROUND)
    tissue[cavity] = CAVITY
    return tissue


def add_cyst(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """A cyst inside the tumour, off its centre, with its enhancing or non-enhancing wall around it."""
    centre, extent = _tumour_box(tissue)
    centre = centre + rng.uniform(-0.3, 0.3, 3) * extent
    tissue[_sphere(tissue.shape, centre, rng.uniform(0.35, 0.55) * extent, rng) & (tissue > BACKGROUND)] = CYST
    return tissue


def add_metastases(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """Two to five small enhancing lesions in the brain, some with a necrotic core, each with its own edema."""
    shape = tissue.shape
    brain = tissue > BACKGROUND
    candidates = np.argwhere(ndimage.binary_erosion(tissue >= GREY, iterations=max(2, min(shape) // 8)))
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    for _ in range(int(rng.integers(2, 6))):
        centre = candidates[rng.integers(len(candidates))]
        radius = rng.uniform(0.03, 0.07) * min(shape)
        distance = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) / radius
        distance *= np.exp(-0.2 * smooth_noise(rng, shape, 8))
        tissue[brain & (distance < rng.uniform(1.8, 2.8)) & (tissue != ENHANCING) & (tissue != NECROSIS)] = EDEMA
        tissue[brain & (distance < 1.0)] = ENHANCING
        if rng.random() < 0.5:
            tissue[brain & (distance < 0.5)] = NECROSIS
    return tissue


def add_meningioma(rng: np.random.Generator, tissue: np.ndarray) -> np.ndarray:
    """An extra-axial dural-based mass: a dome on the brain's outer surface that enhances, pushing into the brain,
    with edema in the brain beside it and sometimes a non-enhancing core."""
    shape = tissue.shape
    brain = tissue > BACKGROUND
    surface = np.argwhere(brain & ~ndimage.binary_erosion(brain, iterations=2))
    surface = surface[surface[:, 2] > shape[2] * 0.4]  # the convexity, not the skull base
    centre = surface[rng.integers(len(surface))].astype(np.float32)
    radius = rng.uniform(0.12, 0.18) * min(shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    distance = np.sqrt(sum((grid[i] - centre[i]) ** 2 for i in range(3))) / radius
    distance *= np.exp(-0.15 * smooth_noise(rng, shape, 6))
    mass = distance < 1.0
    tissue[brain & ~mass & (distance < rng.uniform(1.3, 1.6)) & (tissue == WHITE)] = EDEMA
    tissue[mass] = ENHANCING  # the mass is kept in the skull-stripped volume, as BraTS-MEN keeps it
    if rng.random() < 0.4:
        tissue[distance < 0.4] = NECROSIS
    return tissue


def render(rng: np.random.Generator, tissue: np.ndarray, modality: str, air_noise: bool = False) -> np.ndarray:
    """One modality's image from the tissue map: contrast, texture, partial volume, bias field, Rician noise (in the
    tissue only, as skull-stripping leaves it, or with ``air_noise`` in the air too, as a scanner records it)."""
    shape = tissue.shape
    contrast = np.asarray(CONTRAST[modality], dtype=np.float32).astype(np.float64)
    # jitter of the seven original tissues only, so that a BraTS 2021 case draws the same random numbers as ever
    contrast[: ENHANCING + 1] *= rng.uniform(0.95, 1.05, ENHANCING + 1)
    image = contrast[tissue] * (1 + 0.04 * smooth_noise(rng, shape, 20))
    image = ndimage.gaussian_filter(image, sigma=0.6)
    image *= np.exp(0.12 * smooth_noise(rng, shape, 2))
    sigma = 0.025
    noisy = np.sqrt((image + sigma * rng.standard_normal(shape)) ** 2 + (sigma * rng.standard_normal(shape)) ** 2)
    image = (noisy if air_noise else np.where(tissue > BACKGROUND, noisy, 0.0)) * rng.uniform(400, 1200)
    return image.astype(np.float32)


def brats_affine(shape: Sequence[int]) -> np.ndarray:
    """1 mm voxels with BraTS's axis directions (i: right to left, j: front to back, k: bottom to top)."""
    return np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, shape[1] - 1], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def synthesize_case(
    seed: int, index: int, shape: Sequence[int], task: str = "brats2021"
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Returns ({modality: float32 image}, uint8 labels in the task's stored values) of case ``index``; for
    ``brats2021`` the BraTS 2021 labels {0, 1, 2, 4}, byte for byte as before tasks existed."""
    from custom_nets.data.tasks import load_task

    definition = load_task(task)
    if definition.name not in SCHEMES:
        raise ValueError(f"no synthetic scheme for the task {definition.name!r}; there are {sorted(SCHEMES)}.")
    rng = np.random.default_rng([seed, index])
    if not definition.skull_stripped:
        return _unstripped_case(rng, shape, definition)
    tissue = brain_tissue(rng, shape)
    if definition.name == "mets":
        tissue = add_metastases(rng, tissue)
        if rng.random() < 0.3:
            tissue = add_cavity(rng, tissue)
    elif definition.name in ("men", "goat"):
        tissue = add_meningioma(rng, tissue)
    else:
        tissue = add_tumour(rng, tissue, enhancing=rng.random() > 0.25)
        if definition.name == "gli" and rng.random() < 0.5:
            tissue = add_cavity(rng, tissue)
        elif definition.name == "ped" and rng.random() < 0.7:
            tissue = add_cyst(rng, tissue)
    images = {m: render(rng, tissue, m) for m in MODALITIES}
    labels = np.zeros(shape, dtype=np.uint8)
    values = dict(zip(definition.class_names, definition.label_values, strict=True))
    for tissue_class, class_name in SCHEMES[definition.name].items():
        labels[tissue == tissue_class] = values[class_name]
    return images, labels


def _unstripped_case(rng: np.random.Generator, shape: Sequence[int], task) -> tuple[dict, np.ndarray]:
    """A head (``synthetic_head``) with a dural-based target in 88 % of the cases, rendered in the task's sequences."""

    def noise(size, cells):
        return smooth_noise(rng, size, cells)

    brain = brain_tissue(rng, [max(16, round(s * BRAIN_FRACTION)) for s in shape])
    tissue = embed_brain(brain, shape)
    inside = tissue > BACKGROUND
    tissue, defaced = add_head(rng, tissue, CSF, SKULL, SCALP, noise)
    if rng.random() < 0.88:
        add_dural_target(rng, tissue, inside, ENHANCING, CAVITY, noise)
    images = {}
    for sequence in task.sequences:
        image = render(rng, tissue, RENDERED.get(sequence, sequence), air_noise=True)
        image[defaced] = 0.0
        images[sequence] = image
    labels = np.zeros(tissue.shape, dtype=np.uint8)
    values = dict(zip(task.class_names, task.label_values, strict=True))
    for tissue_class, class_name in SCHEMES[task.name].items():
        labels[tissue == tissue_class] = values[class_name]
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
    prefix: str | None = None,
    progress: bool = True,
    task: str = "brats2021",
) -> list[str]:
    """Writes ``num_cases`` synthetic cases of ``task`` under ``output_dir`` and returns their folders.

    Args:
        output_dir: dataset folder; one sub-folder per case.
        num_cases: number of cases.
        seed: the same seed gives the same bytes.
        shape: the field of view in mm (voxels of 1 mm); each axis at least 32. A task whose inputs keep the head
            (``men-rt``) writes its cases on native grids over this field (``synthetic_head.NATIVE_SPACINGS``).
        prefix: case name prefix; by default ``BraTS2021`` (cases ``BraTS2021_00000``) for ``brats2021`` and the
            task's first case prefix otherwise (cases ``BraTS-GLI-00000-000``).
        progress: show a progress bar.
        task: ``brats2021`` (BraTS 2021 layout), or ``gli``, ``mets``, ``ped``, ``men``, ``goat`` (BraTS 2023+
            layout), or ``men-rt`` (BraTS-MEN-RT's ``_t1c`` and ``_gtv``): see the module's docstring.
    """
    from custom_nets.data.tasks import load_task

    definition = load_task(task)
    if definition.name not in SCHEMES or definition.name == "msd":
        raise ValueError(
            f"no synthetic scheme for the task {definition.name!r}; there are {sorted(set(SCHEMES) - {'msd'})}."
        )
    new_style = definition.name != "brats2021"
    layout = definition.layouts[0]
    suffixes = dict(zip(definition.sequences, layout.sequence_suffixes, strict=True))
    prefix = prefix or (definition.case_prefixes[0].rstrip("-_") if new_style else "BraTS2021")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 32:
        raise ValueError(f"shape must be three sizes of at least 32 voxels, got {shape}.")
    if num_cases < 1:
        raise ValueError(f"num_cases must be at least 1, got {num_cases}.")
    affine = brats_affine(shape)
    folders = []
    for index in tqdm(range(num_cases), desc="synthesize", disable=not progress):
        case = f"{prefix}-{index:05d}-000" if new_style else f"{prefix}_{index:05d}"
        folder = os.path.join(output_dir, case)
        os.makedirs(folder, exist_ok=True)
        images, labels = synthesize_case(seed, index, shape, definition.name)
        grid = affine
        if not definition.skull_stripped:
            spacing = NATIVE_SPACINGS[index % len(NATIVE_SPACINGS)]
            images = {name: acquire(image, spacing) for name, image in images.items()}
            labels, grid = acquire(labels, spacing, labels=True), native_affine(affine, spacing)
        for sequence, suffix in suffixes.items():
            _save(images[sequence], grid, os.path.join(folder, f"{case}{suffix}.nii.gz"))
        _save(labels, grid, os.path.join(folder, f"{case}{layout.label_suffix}.nii.gz"))
        folders.append(folder)
    grids = (
        ""
        if definition.skull_stripped
        else ", native grids " + ", ".join("x".join(map(str, s)) + " mm" for s in NATIVE_SPACINGS)
    )
    print(
        f"{output_dir}: {num_cases} synthetic cases of {shape[0]}x{shape[1]}x{shape[2]} mm (seed {seed}, task "
        f"{definition.name}{grids})"
    )
    return folders
