"""Which DICOM series of a case is which MRI sequence.

A DICOM case is a folder (its series in sub-folders, or all files mixed) whose image files are grouped by
SeriesInstanceUID. Each needed modality is found by the case's mapping file when it has one (``modalities.json``:
``{"flair": "<SeriesInstanceUID, SeriesNumber or SeriesDescription>", ...}``), otherwise by ``rules``: one regular
expression per modality searched (case-insensitive) in the SeriesDescription, a series going to the first modality
whose rule matches (FLAIR before T2, since a "T2 FLAIR" is FLAIR; T1 post-contrast before T1).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.misc import is_dicom

from custom_nets.data.errors import DataError

DEFAULT_RULES = {
    "flair": r"flair",
    "t1ce": r"t1 ?c(e|\+)?\b|t1.*(post|gd|gad|contrast|\+ ?c\b|\bc\+|[^a-z]ce\b)|(post|gd|gad|contrast).*t1",
    "t1": r"t1",
    "t2": r"t2",
}
# the BraTS 2023+ names of the sequences that DEFAULT_RULES finds under their BraTS 2021 names
SEQUENCE_ALIASES = {"t1c": "t1ce", "t1n": "t1", "t2w": "t2", "t2f": "flair"}
MAPPING_FILE = "modalities.json"
_HEADER_TAGS = [
    "SeriesInstanceUID",
    "SeriesDescription",
    "SeriesNumber",
    "FrameOfReferenceUID",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "Rows",
    "Columns",
    "NumberOfFrames",
]


@dataclass
class Series:
    """One series of a case: its UID, description, number, frame of reference and files."""

    uid: str
    description: str
    number: str
    frame_of_reference: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    columns: int = 0
    frames: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        """Columns x rows x frames (all files' frames), from the headers: what reading the series would decode."""
        return (self.columns, self.rows, self.frames)

    def __str__(self) -> str:
        return f"'{self.description}' (series {self.number}, {self.uid})"


def dicom_files(folder: str) -> list[str]:
    """Every DICOM file under ``folder`` (recursively, hidden names skipped), sorted."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
    return [path for path in found if is_dicom(path)]


def is_dicom_case(folder: str) -> bool:
    """A folder holding at least one DICOM file (looked for until the first one is found)."""
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(is_dicom(os.path.join(root, n)) for n in names if not n.startswith(".")):
            return True
    return False


def find_series(case: str, folder: str) -> list[Series]:
    """The image series of a case folder (files without an image position, such as a SEG, are not images)."""
    series: dict[str, Series] = {}
    for path in dicom_files(folder):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except Exception as error:
            raise DataError(
                f"case {case}: cannot read the DICOM file {path} ({type(error).__name__}: {error})."
            ) from error
        if "ImagePositionPatient" not in header or "SeriesInstanceUID" not in header:
            continue
        uid = str(header.SeriesInstanceUID)
        if uid not in series:
            series[uid] = Series(
                uid,
                str(header.get("SeriesDescription", "")),
                str(header.get("SeriesNumber", "")),
                str(header.get("FrameOfReferenceUID", "")),
            )
        found = series[uid]
        found.files.append(path)
        found.rows = max(found.rows, int(header.get("Rows", 0) or 0))
        found.columns = max(found.columns, int(header.get("Columns", 0) or 0))
        found.frames += int(header.get("NumberOfFrames", 1) or 1)
    if not series:
        raise DataError(f"case {case}: no DICOM image series found in {folder}.")
    return sorted(series.values(), key=lambda s: (s.number, s.description, s.uid))


def _listing(series: Sequence[Series]) -> str:
    return ", ".join(map(str, series))


def assign_modalities(
    case: str,
    folder: str,
    series: Sequence[Series],
    needed: Sequence[str],
    rules: Mapping[str, str] | None = None,
    mapping_file: str = MAPPING_FILE,
) -> dict[str, Series]:
    """``{modality: series}`` for each of ``needed``; raises ``DataError`` naming the series found when one is
    missing or matched by several series."""
    mapping_path = os.path.join(folder, mapping_file)
    if os.path.isfile(mapping_path):
        with open(mapping_path) as f:
            mapping = {str(k).lower(): str(v) for k, v in json.load(f).items()}
        chosen = {}
        for modality in needed:
            if modality not in mapping:
                raise DataError(f"case {case}: {mapping_path} names no series for '{modality}'.")
            key = mapping[modality]
            matches = [s for s in series if key in (s.uid, s.number, s.description)]
            if len(matches) != 1:
                found = "no series" if not matches else f"{len(matches)} series"
                raise DataError(
                    f"case {case}: {mapping_path} gives '{key}' for '{modality}', which matches {found} among: "
                    f"{_listing(series)}."
                )
            chosen[modality] = matches[0]
        return chosen
    rules = dict(rules or DEFAULT_RULES)
    groups: dict[str, list[Series]] = {m: [] for m in rules}
    for s in series:
        for modality, pattern in rules.items():
            if re.search(pattern, s.description, flags=re.IGNORECASE):
                groups[modality].append(s)
                break
    chosen = {}
    for modality in needed:
        matches = groups.get(modality) or groups.get(SEQUENCE_ALIASES.get(modality, ""), [])
        if not matches:
            raise DataError(
                f"case {case}: no series for '{modality}' among: {_listing(series)}; name it in "
                f"{mapping_path} or change dicom_series_rules."
            )
        if len(matches) > 1:
            raise DataError(
                f"case {case}: {len(matches)} series match '{modality}': {_listing(matches)}; name one in "
                f"{mapping_path} or narrow dicom_series_rules."
            )
        chosen[modality] = matches[0]
    return chosen


def slice_order(datasets: Sequence[pydicom.Dataset]) -> list[int]:
    """Indices of a series' single-frame datasets sorted by position along the slice normal (ascending), the order
    in which ITK/GDCM stacks them."""
    orientation = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = [float(np.dot(normal, np.asarray(d.ImagePositionPatient, dtype=float))) for d in datasets]
    return sorted(range(len(datasets)), key=positions.__getitem__)
