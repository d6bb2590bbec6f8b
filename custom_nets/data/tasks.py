"""Task definitions: what one dataset's sequences, files, labels and evaluation regions are.

A task is one JSON file, in the spirit of nnU-Net's ``dataset.json``; the code reads it and knows no dataset by name::

    {"name": "gli", "description": "...",
     "sequences": ["flair", "t1", "t1ce", "t2"],               # the network's input channels, in this order
     "layouts": {"brats2023": {"sequences": ["-t2f", "-t1n", "-t1c", "-t2w"], "label": "-seg"}},
     "case_prefixes": ["BraTS-GLI-", "BraTS-SSA-"],            # case ids that choose this task
     "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3, "RC": 4},   # class -> value stored on disk
     "regions": {"netc": [1], "et": [3], "tc": [1, 3], "wt": [1, 2, 3]},    # evaluated regions: stored values
     "class_weights": [0.0022, 1.0, 0.33, 1.0, 1.0],           # generalized Dice weights, per class
     "class_descriptions": {"NETC": "non-enhancing tumour core"},   # DICOM SEG segment labels (optional)
     "codes": {"NETC": ["SCT", "6574001", "Necrosis"]},        # DICOM SEG segment types (optional)
     "categories": {"NETC": ["SCT", "49755003", "..."]},       # their categories (optional; default: abnormal)
     "colours": {"NETC": [0.9, 0.1, 0.1]},                     # picture colours (optional)
     "skull_stripped": true,                                   # false: the inputs keep the head (optional)
     "spacing": [1.0, 1.0, 1.0],                               # the networks' voxel size in mm (optional)
     "crop_tumour_ratio": 1}                                   # tumour-centred : other training crops (optional)

The networks work on class indices: class ``i`` is the ``i``-th entry of ``labels`` (0 the background), stored on
disk as its value. A region of one value is a single label, a region of several their union, exactly as the
organisers' panoptica configs group them (``LabelGroup`` / ``LabelMergeGroup``). ``layouts`` is optional: a task
without it reads the BraTS 2021 and BraTS 2023 file names (other sequences: ``<case>_<sequence>.nii.gz`` and
``<case>_seg.nii.gz``). Shipped tasks live in ``task_definitions/``; the config id
``task`` is a shipped name or the path of a user's JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

DEFINITIONS = os.path.join(os.path.dirname(__file__), "task_definitions")
DEFAULT_LAYOUTS = {
    "brats2021": {"sequences": ["_flair", "_t1", "_t1ce", "_t2"], "label": "_seg"},
    "brats2023": {"sequences": ["-t2f", "-t1n", "-t1c", "-t2w"], "label": "-seg"},
}
DEFAULT_SEQUENCES = ("flair", "t1", "t1ce", "t2")


def plain_layout(sequences) -> dict:
    """``<case>_<sequence>.nii.gz`` and ``<case>_seg.nii.gz``: the layout of a task with other sequences."""
    return {"plain": {"sequences": [f"_{s}" for s in sequences], "label": "_seg"}}


# the label conventions of earlier datalists, now tasks
ALIASES = {"brats2023": "gli", "decathlon": "msd"}
DEFAULT_COLOURS = ([0.9, 0.1, 0.1], [0.1, 0.85, 0.2], [1.0, 0.9, 0.0], [0.2, 0.5, 1.0], [0.7, 0.3, 0.9])


class TaskError(ValueError):
    """A task definition that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Layout:
    """How one dataset family names its files in a case folder: one suffix per sequence (in the task's order) and
    the label's suffix. The Decathlon layout has no suffixes (``dataset.json`` lists one 4D image per case)."""

    name: str
    sequence_suffixes: tuple[str, ...]
    label_suffix: str


@dataclass(frozen=True)
class Region:
    name: str
    labels: tuple[int, ...]  # stored label values

    @property
    def merge(self) -> bool:
        """Several labels evaluated as one (panoptica's ``LabelMergeGroup``), else one label (``LabelGroup``)."""
        return len(self.labels) > 1


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    sequences: tuple[str, ...]
    layouts: tuple[Layout, ...]
    class_names: tuple[str, ...]  # index = class, 0 background
    label_values: tuple[int, ...]  # stored value of each class
    regions: tuple[Region, ...]
    class_weights: tuple[float, ...]
    case_prefixes: tuple[str, ...] = ()
    codes: dict = field(default_factory=dict, hash=False, compare=False)
    descriptions: dict = field(default_factory=dict, hash=False, compare=False)
    colours: tuple[tuple[float, float, float], ...] = ()
    source: str = ""
    skull_stripped: bool = True  # the inputs are skull-stripped brains (custom_nets.input_checks)
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # the networks' voxel size, mm
    crop_tumour_ratio: float = 1.0  # tumour-centred : other training crops
    categories: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def shipped(self) -> bool:
        """One of the package's own definitions (not a user's file)."""
        return os.path.dirname(self.source) == DEFINITIONS

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    def to_classes(self) -> tuple[list[int], list[int]]:
        """``(orig_labels, target_labels)`` for ``MapLabelValued``: stored values -> class indices."""
        return list(self.label_values), list(range(self.num_classes))

    def from_classes(self) -> tuple[list[int], list[int]]:
        """``(orig_labels, target_labels)`` for ``MapLabelValued``: class indices -> stored values."""
        return list(range(self.num_classes)), list(self.label_values)

    def labels_to_classes(self, labels: np.ndarray) -> np.ndarray:
        """A stored label map as class indices (uint8); values outside the task become background."""
        classes = np.zeros(np.shape(labels), dtype=np.uint8)
        for index, value in enumerate(self.label_values):
            if index:
                classes[np.asarray(labels) == value] = index
        return classes

    def region_classes(self) -> list[list[int]]:
        """Each region as the class indices it holds, in the task's region order."""
        return [[self.label_values.index(v) for v in region.labels] for region in self.regions]

    def enhancing_relabel(self) -> tuple[int | None, int | None]:
        """``(et_class, core_class)`` for ``RelabelSmallEnhancingd``: the class of the single-label region ``et`` and
        the class a too-small enhancing tumour becomes (the region ``netc``'s, else the other class of ``tc``); None
        when the task has no such regions."""
        names = {r.name.lower(): classes for r, classes in zip(self.regions, self.region_classes(), strict=True)}
        et = names.get("et")
        if not et or len(et) != 1:
            return None, None
        core = names.get("netc") or [c for c in names.get("tc", []) if c != et[0]]
        return et[0], (core[0] if core else None)

    def layout(self, name: str) -> Layout:
        for layout in self.layouts:
            if layout.name == name:
                return layout
        raise TaskError(f"task {self.name}: no layout {name!r}; it reads {[lay.name for lay in self.layouts]}.")

    def summary(self) -> str:
        labels = ", ".join(f"{v} {n}" for n, v in zip(self.class_names[1:], self.label_values[1:], strict=True))
        return f"{self.name} ({labels})"

    def record(self) -> dict:
        """What a run record keeps of the task."""
        return {
            "name": self.name,
            "source": self.source,
            "sequences": list(self.sequences),
            "labels": dict(zip(self.class_names, self.label_values, strict=True)),
            "regions": {r.name: list(r.labels) for r in self.regions},
        }


def shipped_tasks() -> list[str]:
    """The names of the task definitions that ship with the package."""
    return sorted(n[: -len(".json")] for n in os.listdir(DEFINITIONS) if n.endswith(".json"))


def load_task(task: str | Task) -> Task:
    """A ``Task`` from a shipped name (or an earlier label convention's name), a JSON file's path, or a ``Task``."""
    if isinstance(task, Task):
        return task
    name = str(task)
    name = ALIASES.get(name, name)
    if os.sep in name or name.endswith(".json") or os.path.isfile(name):
        return _load(os.path.abspath(name))
    path = os.path.join(DEFINITIONS, f"{name}.json")
    if not os.path.isfile(path):
        raise TaskError(
            f"unknown task {name!r}: expected one of {shipped_tasks()} or the path of a task JSON file "
            f"(see custom_nets/data/task_definitions/ for the fields)."
        )
    return _load(path)


@lru_cache(maxsize=64)
def _load(path: str) -> Task:
    try:
        with open(path) as f:
            spec = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise TaskError(f"{path}: cannot read the task definition ({e}).") from e
    return parse_task(spec, path)


def parse_task(spec: dict, source: str = "<dict>") -> Task:
    """Checks and reads one task definition (see the module's docstring)."""

    def need(key: str, kind: type):
        if not isinstance(spec.get(key), kind):
            raise TaskError(f"{source}: field '{key}' must be a {kind.__name__}, got {spec.get(key)!r}.")
        return spec[key]

    if not isinstance(spec, dict):
        raise TaskError(f"{source}: a task definition is a JSON object.")
    name = str(spec.get("name") or os.path.splitext(os.path.basename(source))[0])
    sequences = tuple(str(s).lower() for s in need("sequences", list))
    if not sequences or len(set(sequences)) != len(sequences):
        raise TaskError(f"{source}: 'sequences' must name each input sequence once, got {list(sequences)}.")
    labels = need("labels", dict)
    class_names, label_values = tuple(labels), tuple(labels.values())
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in label_values):
        raise TaskError(f"{source}: 'labels' values must be non-negative integers, got {labels}.")
    if len(set(label_values)) != len(label_values) or len(class_names) < 2 or label_values[0] != 0:
        raise TaskError(
            f"{source}: 'labels' must start with the background (value 0) and give each class its own value, "
            f"got {labels}."
        )
    regions = []
    for region, values in need("regions", dict).items():
        values = [values] if isinstance(values, int) else values
        unknown = [v for v in values if v not in label_values[1:]]
        if not values or unknown:
            raise TaskError(f"{source}: region '{region}' holds {values}; expected values among {label_values[1:]}.")
        regions.append(Region(str(region), tuple(int(v) for v in values)))
    if not regions:
        raise TaskError(f"{source}: 'regions' is empty; name at least one evaluated region.")
    weights = spec.get("class_weights", [1.0] * len(class_names))
    if not isinstance(weights, list) or len(weights) != len(class_names):
        raise TaskError(f"{source}: 'class_weights' needs one weight per class ({len(class_names)}), got {weights}.")
    layouts = []
    default = DEFAULT_LAYOUTS if sequences == DEFAULT_SEQUENCES else plain_layout(sequences)
    for layout_name, layout in (spec.get("layouts") or default).items():
        suffixes = tuple(layout.get("sequences", ()))
        if len(suffixes) != len(sequences):
            raise TaskError(
                f"{source}: layout '{layout_name}' names {len(suffixes)} file suffixes for {len(sequences)} sequences."
            )
        layouts.append(Layout(str(layout_name), suffixes, str(layout.get("label", ""))))
    spacing = spec.get("spacing", [1.0, 1.0, 1.0])
    if (
        not isinstance(spacing, list)
        or len(spacing) != 3
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in spacing)
    ):
        raise TaskError(f"{source}: 'spacing' must be three positive voxel sizes in mm, got {spacing!r}.")
    ratio = spec.get("crop_tumour_ratio", 1)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio < 0:
        raise TaskError(f"{source}: 'crop_tumour_ratio' must be a non-negative number, got {ratio!r}.")
    colour_spec = spec.get("colours", {})
    colours = tuple(
        tuple(colour_spec.get(n, DEFAULT_COLOURS[(i - 1) % len(DEFAULT_COLOURS)]))
        for i, n in enumerate(class_names)
        if i
    )
    return Task(
        name=name,
        description=str(spec.get("description", "")),
        sequences=sequences,
        layouts=tuple(layouts),
        class_names=class_names,
        label_values=label_values,
        regions=tuple(regions),
        class_weights=tuple(float(w) for w in weights),
        case_prefixes=tuple(spec.get("case_prefixes", ())),
        codes=dict(spec.get("codes", {})),
        descriptions=dict(spec.get("class_descriptions", {})),
        colours=colours,
        source=source,
        skull_stripped=bool(spec.get("skull_stripped", True)),
        spacing=tuple(float(v) for v in spacing),
        crop_tumour_ratio=float(ratio),
        categories=dict(spec.get("categories", {})),
    )


def task_of_cases(cases: Iterable[str]) -> str | None:
    """The shipped task whose ``case_prefixes`` the case ids carry (BraTS 2023+ ids name their challenge:
    ``BraTS-GLI-``, ``BraTS-PED-``, ...), or None when none does; the longest prefix decides (``BraTS-MEN-RT-`` is
    not ``BraTS-MEN-``). Ids of two tasks raise ``TaskError``."""
    found: dict[str, str] = {}
    prefixes = sorted(
        ((p, name) for name in shipped_tasks() for p in load_task(name).case_prefixes), key=lambda pair: -len(pair[0])
    )
    for case in cases:
        name = next((name for prefix, name in prefixes if str(case).startswith(prefix)), None)
        if name is not None:
            found.setdefault(name, str(case))
    if len(found) > 1:
        examples = ", ".join(f"{case} ({name})" for name, case in sorted(found.items()))
        raise TaskError(f"the case ids belong to different tasks: {examples}; split the dataset or give --task.")
    return next(iter(found), None)


def tasks_fitting(values: Sequence[int], layout: str | None = None) -> list[Task]:
    """The shipped tasks (reading ``layout``, when given) whose label values include ``values``."""
    fitting = []
    for name in shipped_tasks():
        task = load_task(name)
        if set(values) <= set(task.label_values) and (layout is None or layout in [lay.name for lay in task.layouts]):
            fitting.append(task)
    return fitting
