"""Scanning BraTS-style datasets into MONAI datalists with deterministic folds.

Recognised layouts: those of the task definitions (``custom_nets.data.tasks``): the BraTS 2020/2021 and BraTS 2023+
file names (one folder per case), and the Medical Segmentation Decathlon's Task01_BrainTumour (``dataset.json``, one
4D image per case). Every datalist names its task (given, or chosen from the case ids and the layout, see
``choose_task``), and its label values are checked against that task. The datalist JSON::

    {"layout": "brats2021", "task": "brats2021", "channels": ["flair", "t1", "t1ce", "t2"],
     "num_folds": 5, "seed": 0,
     "training": [{"case": "BraTS2021_00000", "image": [flair, t1, t1ce, t2], "label": seg, "fold": 3}, ...],
     "testing": [{"case": ..., "image": [...]}, ...]}

Paths are relative to the datalist file, as ``monai.data.load_decathlon_datalist`` expects. Decathlon entries hold
one 4D image path instead of a list (its channels are already in the canonical order).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from tqdm import tqdm

from custom_nets.data.conventions import CHANNELS, DECATHLON, DICOM_ONLY, NIFTI_EXTENSIONS, Layout
from custom_nets.data.errors import DataError
from custom_nets.data.images import MAX_VOXELS_PER_IMAGE, check_case_grid, check_image_files, read_voxels
from custom_nets.data.tasks import Task, TaskError, load_task, shipped_tasks, task_of_cases, tasks_fitting
from custom_nets.utils import write_json

__all__ = ["DataError", "choose_task", "make_datalist", "read_datalist_task", "scan_dataset", "write_datalist"]
# without a task: a folder layout's own scheme (BraTS 2023+ ids name their challenge and come first)
LAYOUT_TASKS = {"brats2021": "brats2021", "brats2023": "gli", "decathlon": "msd"}


def folder_layouts(task: Task | None = None) -> list[Layout]:
    """The case-folder layouts to look for: the task's, then, for a task of the four BraTS sequences, those of every
    shipped task (a dataset in another task's layout is then named, not left unrecognised)."""
    shipped = [load_task(name) for name in shipped_tasks()]
    tasks = [task] if task is not None else shipped
    if task is not None and task.sequences == CHANNELS:
        tasks += shipped
    layouts: dict[str, Layout] = {}
    for t in tasks:
        for layout in t.layouts:
            if any(layout.sequence_suffixes):
                layouts.setdefault(layout.name, layout)
    return list(layouts.values())


def _is_nifti(name: str) -> bool:
    return not name.startswith(".") and name.endswith(NIFTI_EXTENSIONS)


def _find(folder: str, names: list[str], suffix: str) -> list[str]:
    return [os.path.join(folder, n) for n in names if any(n.endswith(suffix + ext) for ext in NIFTI_EXTENSIONS)]


def _detect_folder_layout(data_dir: str, folders: dict[str, list[str]], layouts: list[Layout]) -> Layout:
    votes = {layout.name: 0 for layout in layouts}
    for folder, names in folders.items():
        for layout in layouts:
            votes[layout.name] += sum(bool(_find(folder, names, s)) for s in layout.sequence_suffixes)
    best = max(layouts, key=lambda layout: votes[layout.name]) if layouts else None
    if best is None or votes[best.name] == 0:
        expected = "; ".join(
            f"{layout.name}: <case>{'/'.join(layout.sequence_suffixes)}[{layout.label_suffix}].nii.gz"
            for layout in layouts
        )
        raise DataError(
            f"{data_dir}: unrecognised dataset. Expected case folders holding {expected}, or a Decathlon Task01 "
            f"folder with dataset.json."
        )
    return best


def _scan_folders(
    data_dir: str,
    problems: list | None,
    required: Sequence[str] | None,
    dicom: Callable[[str], bool] | None,
    task: Task | None,
) -> tuple[Layout, list[dict[str, Any]]]:
    folders, dicom_cases = {}, []
    for name in sorted(os.listdir(data_dir)):
        path = os.path.join(data_dir, name)
        if os.path.isdir(path) and not name.startswith("."):
            names = sorted(n for n in os.listdir(path) if _is_nifti(n))
            if names:
                folders[path] = names
            elif dicom is not None and dicom(path):
                dicom_cases.append({"case": name, "dicom": path})
    if not folders and not dicom_cases:
        raise DataError(
            f"{data_dir}: no case folders with {'NIfTI or DICOM' if dicom else 'NIfTI'} files found (an empty or "
            f"unrecognised folder). Expected one folder per case in the BraTS 2020/2021 or 2023 layout"
            f"{', a folder of DICOM series per case' if dicom else ''}, or a Decathlon Task01 folder with dataset.json."
        )
    layout = _detect_folder_layout(data_dir, folders, folder_layouts(task)) if folders else DICOM_ONLY
    if task is None and folders and len(layout.sequence_suffixes) != len(CHANNELS):
        task = load_task(_task_reading(layout.name))  # a layout of other sequences (MEN-RT's one T1c)
    sequences = task.sequences if task is not None else CHANNELS
    cases = []
    for folder, names in folders.items():
        try:
            cases.append(_folder_case(folder, names, layout, sequences if required is None else required, sequences))
        except DataError as e:
            if problems is None:
                raise
            problems.append((os.path.basename(folder), str(e)))
    return layout, sorted(cases + dicom_cases, key=lambda entry: entry["case"])


def _folder_case(
    folder: str, names: list[str], layout: Layout, required: Sequence[str], sequences: Sequence[str]
) -> dict[str, Any]:
    case = os.path.basename(folder)
    images = []
    for channel, suffix in zip(sequences, layout.sequence_suffixes, strict=True):
        found = _find(folder, names, suffix)
        if not found and channel not in required:
            images.append(None)
        elif len(found) != 1:
            problem = "missing modality" if not found else f"{len(found)} files for modality"
            raise DataError(
                f"case {case}: {problem} '{channel}' (expected one file ending in '{suffix}.nii.gz' in {folder}"
                f"{'' if not found else ', found ' + ', '.join(map(os.path.basename, found))})."
            )
        else:
            images.append(found[0])
    entry: dict[str, Any] = {"case": case, "image": images}
    labels = _find(folder, names, layout.label_suffix)
    if len(labels) > 1:
        raise DataError(f"case {case}: {len(labels)} segmentation files in {folder}, expected at most one.")
    if labels:
        entry["label"] = labels[0]
    return entry


def _scan_decathlon(data_dir: str, problems: list | None) -> tuple[Layout, list[dict[str, Any]]]:
    index = os.path.join(data_dir, "dataset.json")
    try:
        with open(index) as f:
            meta = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{index}: cannot read the Decathlon index ({e}).") from e
    if not isinstance(meta.get("training"), list):
        raise DataError(f"{index}: expected a 'training' list of {{'image', 'label'}} entries.")

    def resolve(path: str, role: str, case: str) -> str:
        full = os.path.normpath(os.path.join(data_dir, path))
        if not os.path.isfile(full):
            raise DataError(f"case {case}: {role} file {full} listed in {index} does not exist.")
        return full

    def case_name(path: str) -> str:
        name = os.path.basename(path)
        return name[: -len(next(e for e in NIFTI_EXTENSIONS if name.endswith(e)))] if _is_nifti(name) else name

    cases = []
    listed = [(item["image"], item["label"]) for item in meta["training"]]
    listed += [(item["image"] if isinstance(item, dict) else item, None) for item in meta.get("test", [])]
    for image, label in listed:
        case = case_name(image)
        try:
            entry = {"case": case, "image": resolve(image, "image", case)}
            if label is not None:
                entry["label"] = resolve(label, "label", case)
            cases.append(entry)
        except DataError as e:
            if problems is None:
                raise
            problems.append((case, str(e)))
    if not cases:
        raise DataError(f"{index}: lists no cases.")
    return DECATHLON, cases


def scan_dataset(
    data_dir: str,
    problems: list | None = None,
    required: Sequence[str] | None = None,
    dicom: Callable[[str], bool] | None = None,
    task: str | Task | None = None,
) -> tuple[Layout, list[dict[str, Any]]]:
    """Finds every case of ``data_dir`` (absolute paths); cases without a segmentation have no ``label`` key.

    A case with missing files raises ``DataError``, unless ``problems`` is a list: then ``(case, message)`` is
    appended to it and the case left out (inference goes on with the other cases). Modalities outside ``required``
    may be missing (synthesis): their place in ``image`` holds None; by default all the task's sequences are
    required. With ``task`` only its layouts are looked for (else every shipped task's). With ``dicom`` (a test of a
    folder, e.g. ``custom_nets.dicom.series.is_dicom_case``), a case folder without NIfTI files that passes it is a
    DICOM case ``{"case", "dicom": folder}``."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: dataset folder does not exist.")
    task = load_task(task) if task is not None else None
    if os.path.isfile(os.path.join(data_dir, "dataset.json")):
        return _scan_decathlon(data_dir, problems)
    return _scan_folders(data_dir, problems, required, dicom, task)


def _task_reading(layout: str) -> str:
    """The first shipped task that reads the layout ``layout`` (a layout of one task, e.g. MEN-RT's ``_t1c``)."""
    return next((name for name in shipped_tasks() if layout in [lay.name for lay in load_task(name).layouts]), "gli")


def choose_task(data_dir: str, layout: Layout, cases: Sequence[str], requested: str | Task | None = None) -> Task:
    """The task of a scanned dataset: ``requested`` when given, else the one the BraTS 2023+ case ids name
    (``BraTS-GLI-``, ``BraTS-PED-``, ...), else the layout's (BraTS 2021 files: ``brats2021``; BraTS 2023 files:
    ``gli``; Decathlon: ``msd``). A shipped task that the case ids or the file layout contradict is refused with
    ``DataError``."""
    try:
        from_ids = task_of_cases(cases)
    except TaskError as e:
        raise DataError(f"{data_dir}: {e}") from e
    if requested is None:
        return load_task(from_ids or LAYOUT_TASKS.get(layout.name) or _task_reading(layout.name))
    task = load_task(requested)
    if task.shipped and from_ids and from_ids != task.name:
        example = next(c for c in cases if task_of_cases([c]) == from_ids)
        raise DataError(
            f"{data_dir}: the case ids are those of the task {from_ids} (e.g. {example}), not {task.name}; "
            f"use --task {from_ids}, or a task JSON of your own."
        )
    names = [lay.name for lay in task.layouts]
    if layout.name not in ("dicom", *names):
        raise DataError(
            f"{data_dir}: the files are in the {layout.name} layout, which the task {task.name} does not read "
            f"(it reads {names}); choose the task of this dataset or add the layout to the task's JSON."
        )
    return task


def verify_case(
    entry: dict[str, Any], task: str | Task, layout: str | None = None, max_voxels: int = MAX_VOXELS_PER_IMAGE
) -> None:
    """Reads every file of one case and raises ``DataError`` on a file whose header claims more than ``max_voxels``
    voxels (before decoding it), unreadable files, mismatched shapes or affines, non-finite voxels, an empty image, a
    wrong channel count or label values outside ``task`` (naming the shipped tasks of ``layout`` that would fit)."""
    task = load_task(task)
    case = entry["case"]
    grid_entry = {**entry, "sequences": task.sequences}
    reference_path, reference_shape, reference_affine = check_case_grid(grid_entry, max_voxels)
    check_image_files({k: v for k, v in entry.items() if k != "label"}, max_voxels)
    if "label" in entry:
        path = entry["label"]
        data, affine, shape = read_voxels(path, case, max_voxels)
        if shape[:3] != reference_shape or len(shape) != 3:
            raise DataError(f"case {case}: label {path} has shape {shape}, expected {reference_shape}.")
        if not np.allclose(affine, reference_affine, atol=1e-3):
            raise DataError(f"case {case}: the affine of label {path} differs from that of {reference_path}.")
        allowed = task.label_values
        values = np.unique(data)
        unexpected = [v.item() for v in values if not np.isfinite(v) or v not in allowed]
        if unexpected:
            present = [int(v) for v in values if np.isfinite(v) and float(v).is_integer()]
            fitting = [t for t in tasks_fitting(present, layout) if t.name != task.name]
            hint = (
                "; tasks that fit: "
                + "; ".join(f"{t.name} ({t.description})" for t in fitting[:3])
                + f": use --task {fitting[0].name}"
                if fitting and len(present) == len(values)
                else "; give a task JSON of your own (see docs/tasks.md, 'Bring your own labels')"
            )
            raise DataError(
                f"case {case}: label {path} holds values {unexpected[:10]} outside the task {task.summary()}{hint}."
            )


def assign_folds(cases: list[str], num_folds: int, seed: int) -> dict[str, int]:
    """Deterministic, balanced folds: the sorted case names are shuffled by ``seed`` and dealt round-robin."""
    if num_folds < 1:
        raise ValueError(f"num_folds must be at least 1, got {num_folds}.")
    if num_folds > len(cases):
        raise DataError(f"cannot split {len(cases)} labelled cases into {num_folds} folds.")
    names = sorted(cases)
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[j]: rank % num_folds for rank, j in enumerate(order)}


def make_datalist(
    data_dir: str,
    num_folds: int = 5,
    seed: int = 0,
    verify: bool = True,
    base_dir: str | None = None,
    task: str | Task | None = None,
    max_voxels_per_image: int = MAX_VOXELS_PER_IMAGE,
) -> dict[str, Any]:
    """Builds the datalist dictionary; paths are made relative to ``base_dir`` when it is given."""
    layout, cases = scan_dataset(data_dir, task=task)
    task = choose_task(data_dir, layout, [c["case"] for c in cases], task)
    if verify:
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            jobs = [pool.submit(verify_case, entry, task, layout.name, max_voxels_per_image) for entry in cases]
            for job in tqdm(jobs, desc="verify", unit="case", disable=len(jobs) < 10):
                job.result()
    labelled = [c["case"] for c in cases if "label" in c]
    folds = assign_folds(labelled, num_folds, seed) if labelled else {}

    def rel(path: str) -> str:
        return os.path.relpath(path, base_dir) if base_dir else path

    training, testing = [], []
    for entry in cases:
        image = [rel(p) for p in entry["image"]] if isinstance(entry["image"], list) else rel(entry["image"])
        item = {"case": entry["case"], "image": image}
        if "label" in entry:
            training.append({**item, "label": rel(entry["label"]), "fold": folds[entry["case"]]})
        else:
            testing.append(item)
    return {
        "description": f"Datalist of {os.path.abspath(data_dir)} made by custom_nets.data",
        "layout": layout.name,
        "task": task.name if task.shipped else task.source,
        "labels": dict(zip(task.class_names, task.label_values, strict=True)),
        "regions": {r.name: list(r.labels) for r in task.regions},
        "channels": list(task.sequences),
        "num_folds": num_folds,
        "seed": seed,
        "training": training,
        "testing": testing,
    }


def write_datalist(
    data_dir: str,
    output_file: str | None = None,
    num_folds: int = 5,
    seed: int = 0,
    verify: bool = True,
    task: str | None = None,
    max_voxels_per_image: int = MAX_VOXELS_PER_IMAGE,
) -> str:
    """Scans (and by default fully reads and checks) ``data_dir`` and writes a MONAI datalist JSON.

    Args:
        data_dir: a dataset folder: case folders in a task's layout (BraTS 2020/2021 or 2023+ file names), or a
            Decathlon Task01 folder.
        output_file: where to write; defaults to ``<data_dir>/datalist.json``. Nothing is written on any error.
        num_folds: number of cross-validation folds of the labelled cases.
        seed: fold shuffling seed; the same seed and cases give the same folds.
        verify: read every file to check readability, shapes, affines, finiteness and label values.
        task: a shipped task (``python -c "import custom_nets.data.tasks as t; print(t.shipped_tasks())"``) or a
            task JSON file; by default chosen from the case ids (BraTS 2023+) or the layout.
        max_voxels_per_image: a file whose header claims more voxels is refused before its data is decoded.
    """
    output_file = os.path.abspath(output_file or os.path.join(data_dir, "datalist.json"))
    datalist = make_datalist(
        data_dir, num_folds, seed, verify, os.path.dirname(output_file), task, int(max_voxels_per_image)
    )
    write_json(output_file, datalist)
    print(
        f"{output_file}: {len(datalist['training'])} labelled and {len(datalist['testing'])} unlabelled cases "
        f"({datalist['layout']}, task {datalist['task']}, {num_folds} folds)"
    )
    return output_file


def read_datalist_task(datalist_file: str, default: str = "brats2021") -> str:
    """The task a datalist was made for; a datalist of an earlier version names its label convention instead
    (``brats2021``, ``brats2023`` = ``gli``, ``decathlon`` = ``msd``). Without a datalist file, ``default`` (a config
    that only builds the networks needs no data; training stops at the missing datalist itself)."""
    if not os.path.isfile(datalist_file):
        return default
    try:
        return read_datalist_field(datalist_file, "task")
    except DataError:
        return read_datalist_field(datalist_file, "label_convention")


def read_datalist_field(datalist_file: str, field: str) -> Any:
    """One top-level field of a datalist (e.g. ``task``), with an error naming the file if absent."""
    try:
        with open(datalist_file) as f:
            datalist = json.load(f)
    except OSError as e:
        raise DataError(
            f"{datalist_file}: cannot read the datalist ({e}). Make one with "
            f"`python -m custom_nets.data datalist DATA_DIR`."
        ) from e
    if field not in datalist:
        raise DataError(f"{datalist_file}: no '{field}' field; remake it with `python -m custom_nets.data datalist`.")
    return datalist[field]
