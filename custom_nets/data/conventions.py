"""Dataset layouts and label conventions.

Canonical order used everywhere in this package (the order of MONAI's Decathlon Task01 and of the Model Zoo's
``brats_mri_segmentation``):

- image channels: 0 FLAIR, 1 T1, 2 T1ce (T1 with gadolinium), 3 T2;
- classes: 0 background, 1 necrotic / non-enhancing tumour core (NCR/NET), 2 edema (ED), 3 enhancing tumour (ET);
- evaluated regions: WT (whole tumour) = classes 1, 2, 3; TC (tumour core) = 1, 3; ET = 3.

Each convention maps canonical class ``i`` to the label value ``CLASS_LABELS[convention][i]`` stored on disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHANNELS = ("flair", "t1", "t1ce", "t2")
CLASSES = ("background", "NCR/NET", "edema", "enhancing")
REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}

CLASS_LABELS = {
    "brats2021": (0, 1, 2, 4),  # BraTS 2020/2021: 1 NCR/NET, 2 ED, 4 ET
    "brats2023": (0, 1, 2, 3),  # BraTS 2023 glioma: 1 NCR, 2 ED, 3 ET
    "decathlon": (0, 2, 1, 3),  # MSD Task01: 1 edema, 2 non-enhancing tumour, 3 enhancing tumour
}


@dataclass(frozen=True)
class Layout:
    """How one dataset family names its files (per case folder) and which label convention it uses."""

    name: str
    modality_suffixes: tuple[str, str, str, str]  # in CHANNELS order
    label_suffix: str
    label_convention: str


BRATS2021 = Layout("brats2021", ("_flair", "_t1", "_t1ce", "_t2"), "_seg", "brats2021")
BRATS2023 = Layout("brats2023", ("-t2f", "-t1n", "-t1c", "-t2w"), "-seg", "brats2023")
FOLDER_LAYOUTS = (BRATS2021, BRATS2023)
DICOM_ONLY = Layout("dicom", ("", "", "", ""), "", "brats2023")  # a folder of DICOM cases: labels 1, 2, 3
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


def labels_to_classes(labels: np.ndarray, convention: str) -> np.ndarray:
    """A stored label map as canonical classes (uint8); values outside the convention become background."""
    classes = np.zeros(labels.shape, dtype=np.uint8)
    for canonical, value in enumerate(_labels(convention)):
        if canonical:
            classes[labels == value] = canonical
    return classes


def to_canonical(convention: str) -> tuple[list[int], list[int]]:
    """``(orig_labels, target_labels)`` for ``monai.transforms.MapLabelValued``: stored labels -> canonical classes."""
    return list(_labels(convention)), list(range(len(CLASSES)))


def from_canonical(convention: str) -> tuple[list[int], list[int]]:
    """``(orig_labels, target_labels)`` for ``MapLabelValued``: canonical classes -> stored labels."""
    return list(range(len(CLASSES))), list(_labels(convention))


def _labels(convention: str) -> tuple[int, ...]:
    if convention not in CLASS_LABELS:
        raise ValueError(f"unknown label convention {convention!r}; expected one of {sorted(CLASS_LABELS)}.")
    return CLASS_LABELS[convention]
