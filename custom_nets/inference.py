"""What inference needs beyond MONAI's pieces: choosing the cases to run, loading one or several generators with
clear errors, and the run's closing report (flip test-time augmentation: ``custom_nets.uncertainty``)."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Mapping, Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from custom_nets.cases import DICOM_KEY, PREPROCESS_KEY, CaseRecord
from custom_nets.data.datalist import DataError, scan_dataset
from custom_nets.data.tasks import Task, load_task

logger = logging.getLogger(__name__)


class CaseSelection:
    """The cases of ``dataset_dir`` to run inference on.

    Cases with missing modalities are reported by name and left out; cases whose output ``<output_dir>/<case>.nii.gz``
    exists are left out unless ``overwrite`` (the NIfTI is written last and atomically, so it exists only when the
    case is complete). Everything else about a case is checked as it loads (``custom_nets.cases.GuardedDataset``).
    ``record`` (a ``CaseRecord``) collects what happens to each case; ``finish()`` (run after the evaluator) writes
    it as ``<output_dir>/<record_file>``, prints the counts and exits non-zero when a case was skipped.

    For synthesis, ``modalities`` names the input modalities in the network's channel order (the only ones that must
    exist) and ``target`` the synthesized one, whose file, when a case has it, is recorded for the real-vs-synthesized
    picture and its intensity scale.

    A case folder of DICOM files (series in sub-folders or mixed) is a DICOM case: its series are named by modality
    (``dicom_mapping_file`` in the case folder, else ``dicom_rules`` on SeriesDescription; see
    ``custom_nets.dicom.series``) and converted as the case loads onto the grid of the ``dicom_reference`` modality's
    series (default: the first input modality) into ``<output_dir>/dicom_inputs/<case>/``.

    ``task`` names the sequences (the files of each case, in the network's channel order); the predictions are
    written in its stored label values. ``settings`` (the task, the post-processing) go into the run record.

    Attributes:
        entries: datalist entries (``case``, ``image``, ``reference`` = the file whose header outputs copy, and for
            synthesis ``target``: the real target's file or "").
        task: the ``Task``.
        record: the run's ``CaseRecord``, holding the cases skipped when the folder was scanned and those left as
            they were.
    """

    def __init__(
        self,
        dataset_dir: str,
        output_dir: str,
        overwrite: bool = False,
        modalities: Sequence[str] | None = None,
        target: str | None = None,
        model_files: str | Sequence[str] = (),
        record_file: str = "inference_summary.json",
        dicom_rules: Mapping[str, str] | None = None,
        dicom_reference: str | None = None,
        dicom_mapping_file: str = "modalities.json",
        task: str | Task = "brats2021",
        settings: dict | None = None,
        preprocess: bool = False,
        brain_ml_range: Sequence[float] = (400.0, 2500.0),
    ) -> None:
        self.output_dir = output_dir
        self.task = load_task(task)
        sequences = self.task.sequences
        self.record = CaseRecord(output_dir, model_files, record_file, task="inference", settings=settings)
        problems: list[tuple[str, str]] = []
        modalities = [str(m).lower() for m in modalities] if modalities else None
        named = (modalities or []) + [str(m).lower() for m in (target, dicom_reference) if m]
        from custom_nets.dicom.series import SEQUENCE_ALIASES

        # rules may also sort out the series of sequences the task does not read (a T1 is not the T1c)
        known_rules = {*sequences, *SEQUENCE_ALIASES, *SEQUENCE_ALIASES.values()}
        unknown = [m for m in named if m not in sequences]
        unknown += [str(m).lower() for m in dicom_rules or {} if str(m).lower() not in known_rules]
        if unknown:
            raise ValueError(f"unknown modalities {unknown}; the task {self.task.name} has {list(sequences)}.")
        if preprocess and modalities:
            raise ValueError(
                "preprocess prepares every sequence of the task for segmentation; synthesis and missing-"
                "sequence runs read prepared cases (run python -m custom_nets.preprocess first)."
            )
        layout, cases = scan_dataset(
            dataset_dir, problems=problems, required=modalities or sequences, dicom=is_dicom_case, task=self.task
        )
        if modalities and layout.name == "decathlon":
            raise DataError(
                f"{dataset_dir}: synthesis inference reads one file per modality, but the Decathlon layout holds one "
                f"4D image per case (all four sequences present); evaluate with synthesis_evaluate.json instead."
            )
        self.entries, existing = [], []
        for entry in cases:
            if not overwrite and os.path.exists(os.path.join(output_dir, f"{entry['case']}.nii.gz")):
                existing.append(entry["case"])
                self.record.left(entry["case"])
                continue
            if DICOM_KEY in entry:
                plan = {
                    "folder": entry[DICOM_KEY],
                    "modalities": list(modalities or sequences),
                    "reference": str(dicom_reference or (modalities or sequences)[0]).lower(),
                    "work_dir": os.path.join(output_dir, "dicom_inputs", entry["case"]),
                    "rules": dict(dicom_rules) if dicom_rules else None,
                    "mapping_file": dicom_mapping_file,
                }
                files = [os.path.join(plan["work_dir"], f"{entry['case']}_{m}.nii.gz") for m in plan["modalities"]]
                entry = {"case": entry["case"], "image": files, DICOM_KEY: plan, **({"target": ""} if target else {})}
            elif modalities:
                all_files = entry["image"]
                entry = {**entry, "image": [all_files[sequences.index(m)] for m in modalities]}
                if target:
                    entry["target"] = all_files[sequences.index(str(target).lower())] or ""
            if preprocess:
                entry = self._preprocessing_plan(entry, output_dir, dicom_reference, brain_ml_range)
            image = entry["image"]
            reference = image[0] if isinstance(image, list) else image
            selected = {"case": entry["case"], "image": image, "reference": reference}
            for key in ("target", DICOM_KEY, PREPROCESS_KEY):
                if key in entry:
                    selected[key] = entry[key]
            self.entries.append(selected)
        for case, message in problems:
            self.record.skipped(case, message)
        if existing:
            logger.warning(
                f"{len(existing)} case(s) already have outputs in {output_dir} and are left as they are "
                f"(set overwrite to true to redo them): {', '.join(existing[:5])}{' ...' if len(existing) > 5 else ''}"
            )
        logger.info(f"inference on {len(self.entries)} case(s) of {dataset_dir} (task {self.task.summary()})")

    def finish(self) -> None:
        self.record.finish()

    def _preprocessing_plan(self, entry: dict, output_dir: str, reference: str | None, brain_ml_range) -> dict:
        """The entry with a plan to register (and, for a skull-stripped task, skull-strip) its sequences as it loads
        (``custom_nets.cases.prepare_scans``), into ``<output_dir>/preprocessed/<case>/``; ``image`` names the
        prepared files (in the task's sequence order, all on the reference sequence's grid)."""
        if not isinstance(entry["image"], list):
            return entry  # a Decathlon 4D image: one grid, co-registered by construction
        sequences = list(self.task.sequences)
        reference = str(reference or sequences[0]).lower()
        work_dir = os.path.join(output_dir, "preprocessed", entry["case"])
        plan = {
            "work_dir": work_dir,
            "reference": reference,
            "sequences": sequences,
            "sources": None if DICOM_KEY in entry else list(entry["image"]),
            "skull_strip": bool(self.task.skull_stripped),
            "brain_ml_range": [float(v) for v in brain_ml_range],
        }
        files = [os.path.join(work_dir, f"{entry['case']}_{s}.nii.gz") for s in sequences]
        return {**entry, "image": files, PREPROCESS_KEY: plan}


def is_dicom_case(folder: str) -> bool:
    """A case folder of DICOM files (pydicom loads only when a folder holds no NIfTI)."""
    from custom_nets.dicom.series import is_dicom_case as check

    return check(folder)


def load_generator(
    network: torch.nn.Module,
    model_file: str,
    device: str | torch.device = "cpu",
    activation: torch.nn.Module | None = None,
) -> torch.nn.Module:
    """Loads a flat generator state dict (``weights_only=True``) into ``network``; a checkpoint that does not fit
    raises ``ValueError`` with a short account of the mismatch instead of a wall of keys. With ``activation`` (e.g. the
    softmax a training network leaves to its trainer) the result is ``Sequential(network, activation)``, so that the
    outputs are what inference's network gives."""
    if not os.path.isfile(model_file):
        raise FileNotFoundError(f"model file {model_file} does not exist; train first or set model_files.")
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "generator" in state and isinstance(state["generator"], dict):
        state = state["generator"]  # a resumable training checkpoint
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        lines = [f"{model_file} does not fit the configured network_def:"]
        if mismatched:
            k, got, want = mismatched[0]
            lines.append(f"  {len(mismatched)} tensor(s) differ in shape, first {k}: checkpoint {got}, network {want}")
        if missing:
            lines.append(f"  {len(missing)} tensor(s) missing from the checkpoint, first {missing[0]}")
        if unexpected:
            lines.append(f"  {len(unexpected)} unexpected tensor(s) in the checkpoint, first {unexpected[0]}")
        lines.append(
            "  check task (its sequences and classes set in_channels and num_classes), generator_channels and "
            "num_bottleneck against the training run."
        )
        raise ValueError("\n".join(lines))
    network.load_state_dict(state)
    if activation is not None:
        network = torch.nn.Sequential(network, activation)
    return network.to(device).eval()


def load_networks(
    network: torch.nn.Module,
    model_files: str | Sequence[str],
    device: str | torch.device = "cpu",
    activation: torch.nn.Module | None = None,
):
    """One copy of ``network`` per checkpoint (an ensemble, e.g. the K fold models); ``activation`` as
    ``load_generator``'s."""
    files = [model_files] if isinstance(model_files, str) else list(model_files)
    if not files:
        raise ValueError("model_files is empty: give at least one checkpoint.")
    return [load_generator(copy.deepcopy(network), f, device, activation) for f in files]


def with_settings(inferer: Inferer, **settings) -> Inferer:
    """A shallow copy of ``inferer`` with some attributes changed, so that a config can reuse one inferer's
    definition where a single value differs (synthesis pads its windows with the scaled air, -1, not 0)."""
    copied = copy.copy(inferer)
    for name, value in settings.items():
        if not hasattr(copied, name):
            raise AttributeError(f"{type(inferer).__name__} has no setting '{name}'.")
        setattr(copied, name, value)
    return copied


class ForegroundCropInferer(Inferer):
    """Spends the windows on the brain, not on air: runs ``inferer`` on the bounding box of the non-zero input voxels
    (skull-stripped MRI is exactly 0 outside the brain; ``input_background`` when the input was scaled, e.g. -1),
    enlarged by ``margin`` voxels (0 by default: outside the box the input is air, which is also what the sliding
    window pads with), and pastes the result into a full-size output whose voxels outside the box are
    background: channel ``background_channel`` = 1 and the others 0 for class probabilities, or, with
    ``background_channel=None``, every channel ``fill_value`` (for images, e.g. -1 for a synthesized volume).

    BraTS volumes are 240x240x155 while the brain spans roughly 140x170x130: with 128^3 windows at overlap 0.5 this is
    4-8 windows instead of 18.
    """

    def __init__(
        self,
        inferer: Inferer,
        margin: int = 0,
        background_channel: int | None = 0,
        input_background: float = 0.0,
        fill_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.inferer = inferer
        self.margin = int(margin)
        self.background_channel = background_channel
        self.input_background = float(input_background)
        self.fill_value = float(fill_value)

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs) -> torch.Tensor:
        foreground = (inputs != self.input_background).any(dim=0).any(dim=0)
        if not foreground.any():
            return self.inferer(inputs, network, *args, **kwargs)
        box = []
        for axis in range(3):
            present = foreground.any(dim=tuple(a for a in range(3) if a != axis)).nonzero()
            low = max(int(present.min()) - self.margin, 0)
            high = min(int(present.max()) + 1 + self.margin, foreground.shape[axis])
            box.append(slice(low, high))
        cropped = self.inferer(inputs[(slice(None), slice(None), *box)], network, *args, **kwargs)
        shape = (*cropped.shape[:2], *inputs.shape[2:])
        fill = self.fill_value if self.background_channel is None else 0.0
        output = torch.full(shape, fill, dtype=cropped.dtype, device=cropped.device)
        if self.background_channel is not None:
            output[:, self.background_channel] = 1
        output[(slice(None), slice(None), *box)] = cropped
        # like MONAI's sliding window: the output carries the input's metadata, so that Invertd can undo the
        # preprocessing (a plain tensor would be skipped by Invertd with only a warning)
        if isinstance(inputs, MetaTensor):
            output = convert_to_dst_type(output, inputs, device=output.device)[0]
        return output
