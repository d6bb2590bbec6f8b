"""Writes each case's label map as NIfTI with its input's header, a picture of it over FLAIR, and the volumes of its
classes and regions (run record, ``volumes.csv``)."""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events

from custom_nets.data.errors import DataError
from custom_nets.data.tasks import Task, load_task
from custom_nets.handlers.regions import case_name, decollated_items
from custom_nets.uncertainty import SCORE_KEYS
from custom_nets.utils import is_main_process, remove_partials, save_nifti
from custom_nets.visualize import orthogonal_overlay
from custom_nets.volumes import label_volumes, merge_volumes_csv, read_volumes_csv, title_volumes, voxel_ml


def spatial_array(volume, dtype=np.float32) -> np.ndarray:
    """A one-channel (1, D, H, W) or (D, H, W) tensor or array as a (D, H, W) numpy array of ``dtype``."""
    array = np.asarray(torch.as_tensor(volume).detach().cpu()).astype(dtype)
    return array[0] if array.ndim == 4 else array


class OffGridError(DataError):
    """An output that does not lie on its input's grid: it must not take the input's header."""


def check_on_grid(output, reference: nib.Nifti1Image, case: str, atol: float = 1e-3) -> None:
    """An output (a MetaTensor after ``Invertd``) lies on its input's grid: same shape and, voxel to world, the same
    affine (a prediction left in RAS for an LPS input has the input's shape but a flipped affine). Raises
    ``OffGridError`` naming the case and both values."""
    shape, expected = spatial_array(output).shape, tuple(reference.shape[:3])
    hint = "the postprocessing must invert the preprocessing (Invertd) before a file is written"
    if shape != expected:
        raise OffGridError(f"case {case}: output of shape {shape} is not on the input grid {expected}; {hint}.")
    affine = getattr(output, "affine", None)
    if affine is None:
        raise OffGridError(f"case {case}: the output carries no affine to check against the input's; {hint}.")
    affine = np.asarray(torch.as_tensor(affine).detach().cpu(), dtype=float)
    if not np.allclose(affine, reference.affine, atol=atol, rtol=0):
        raise OffGridError(
            f"case {case}: the output's affine differs from the input's, so it would be written flipped or shifted "
            f"({hint}):\n{np.round(affine, 4)}\nvs the input's\n{np.round(reference.affine, 4)}"
        )


def like(volume: np.ndarray, reference: nib.Nifti1Image) -> nib.Nifti1Image:
    """``volume`` (on ``reference``'s grid) with ``reference``'s affine and header (qform/sform, orientation,
    units), in ``volume``'s dtype and without intensity scaling."""
    header = reference.header.copy()
    header.set_data_dtype(volume.dtype)
    header.set_slope_inter(1.0, 0.0)
    return nib.Nifti1Image(volume, reference.affine, header)


def save_like(volume: np.ndarray, reference: nib.Nifti1Image, path: str) -> nib.Nifti1Image:
    """Saves ``like(volume, reference)`` to ``path`` atomically; returns the image written."""
    image = like(volume, reference)
    save_nifti(image, path)
    return image


class CaseWriter:
    """Base of the writers of one output per case: attach to an evaluator; for each case of an iteration it calls
    ``write(item, case)``. With a ``record`` (``custom_nets.cases.CaseRecord``) a case whose output cannot be written
    (off its input's grid, a write error) is recorded as skipped with the reason and the others go on; without one the
    error propagates. Rank 0 only; leftover ``.partial-*`` files of a killed run are removed when the run starts."""

    def __init__(self, output_dir: str, case_key: str = "case", record=None) -> None:
        self.output_dir = output_dir
        self.case_key = case_key
        self.record = record
        self.logger = logging.getLogger(type(self).__module__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: is_main_process() and remove_partials(self.output_dir))
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def write(self, item: dict, case: str) -> str:
        raise NotImplementedError

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        for item in decollated_items(engine):
            case = case_name(item, self.case_key)
            try:
                path = self.write(item, case)
            except Exception as error:
                if self.record is None:
                    raise
                self.record.skipped(case, str(error) if isinstance(error, DataError) else f"case {case}: {error!r}")
                continue
            if self.record is not None:
                self.record.written(case)
            total = f"/{engine.state.epoch_length}" if engine.state.epoch_length else ""  # unknown until the end
            self.logger.info(f"[{engine.state.iteration}{total}] {case}: {path}")


class PredictionWriter(CaseWriter):
    """Attach to an evaluator whose postprocessing leaves in ``pred_key`` the label map already inverted to the
    input's grid (``Invertd``), in class indices (what ``inference.json``'s ``postprocessing`` returns to every
    consumer, named by metadata's ``channel_def``), written here as the task's stored label values; or, with
    ``classes=False``, already in stored values. For each case it writes
    ``<output_dir>/<case>.png`` (axial, coronal and sagittal slices through the tumour's centre with the labels over
    FLAIR), then ``<output_dir>/<case>.nii.gz`` with the header (shape, affine, qform/sform, orientation) of the input
    file in ``reference_key``, each atomically; the NIfTI comes last, so a case whose NIfTI exists is complete. A label
    map whose shape or affine differs from the input's is refused (``check_on_grid``). A DICOM case (its reference
    series' folder in ``dicom_key``) also gets ``<output_dir>/<case>_seg.dcm``, a DICOM Segmentation referencing that
    series (``custom_nets.dicom.write_segmentation``), and ``<output_dir>/<case>_sr.dcm``, a TID 1500 measurement
    report of its volumes referencing the SEG's segments (``custom_nets.dicom.report``), before the NIfTI. Each
    written case's volumes (``custom_nets.volumes.label_volumes``: mL per class and region on the written grid,
    lesions per region, the largest lesion) go into the run record (``volumes``), the picture's title, and, when the
    run completes, ``<output_dir>/volumes.csv`` (one row per case, merged with an earlier run's). An ensemble's
    per-voxel uncertainty in ``uncertainty_key`` (``custom_nets.uncertainty``, on the input's grid) is written before
    the label map as ``<case>_uncertainty.nii.gz`` (4D: entropy, disagreement) and drawn in the picture; its scores
    go into the run record. Rank 0 only.

    Args:
        output_dir: where to write.
        task: the task of the label map (its stored values, classes, colours, DICOM segments).
        pred_key, reference_key, case_key: batch keys of the label map, the reference image path and the case name.
        png: also write the PNG.
        classes: ``pred_key`` holds class indices (True) or the task's stored values (False).
        uncertainty_key: batch key of the uncertainty map (absent without an ensemble).
        record: a ``custom_nets.cases.CaseRecord`` to report each case to (see ``CaseWriter``).
    """

    def __init__(
        self,
        output_dir: str,
        task: str | Task = "brats2021",
        pred_key: str = "pred",
        reference_key: str = "reference",
        case_key: str = "case",
        png: bool = True,
        record=None,
        dicom_key: str = "dicom_series",
        classes: bool = True,
        uncertainty_key: str = "uncertainty_map",
    ) -> None:
        super().__init__(output_dir, case_key, record)
        self.uncertainty_key = uncertainty_key
        self.classes = classes
        self.volumes: dict[str, dict] = {}  # case -> label_volumes of the cases this run wrote
        self.dicom_key = dicom_key
        self.task = load_task(task)  # an unknown task fails here, not after the first case
        self.pred_key = pred_key
        self.reference_key = reference_key
        self.png = png

    def write(self, item: dict, case: str) -> str:
        reference = nib.load(item[self.reference_key])
        check_on_grid(item[self.pred_key], reference, case)
        labels = spatial_array(item[self.pred_key], np.uint8)
        if self.classes:
            classes, labels = labels, np.asarray(self.task.label_values, np.uint8)[labels]
        else:
            classes = self.task.labels_to_classes(labels)
        output = like(labels, reference)
        volumes = label_volumes(classes, voxel_ml(reference.header.get_zooms()), self.task)
        uncertainty, scores = None, {k: float(item[k]) for k in SCORE_KEYS if k in item}
        if item.get(self.uncertainty_key) is not None:
            check_on_grid(item[self.uncertainty_key], reference, case)
            uncertainty = np.moveaxis(np.asarray(torch.as_tensor(item[self.uncertainty_key]).cpu(), np.float32), 0, -1)
            save_like(uncertainty, reference, os.path.join(self.output_dir, f"{case}_uncertainty.nii.gz"))
        if self.png:
            title = f"{case}: {title_volumes(volumes, self.task)}"
            if scores:
                title += ", " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
            self._picture(case, reference, classes, title, None if uncertainty is None else uncertainty[..., 0])
        if item.get(self.dicom_key):
            from custom_nets.dicom.outputs import write_segmentation  # highdicom only when a case is DICOM
            from custom_nets.dicom.report import write_measurement_report

            series = str(item[self.dicom_key])
            segmentation = os.path.join(self.output_dir, f"{case}_seg.dcm")
            write_segmentation(classes, reference, series, segmentation, case, self.task)
            report = os.path.join(self.output_dir, f"{case}_sr.dcm")
            write_measurement_report(volumes, segmentation, series, report, self.task)
        path = save_nifti(output, os.path.join(self.output_dir, f"{case}.nii.gz"))
        self.volumes[case] = volumes
        if self.record is not None:
            self.record.note(case, volumes=volumes, **scores)
        return path

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self.write_volumes)

    def write_volumes(self, _engine: Engine | None = None) -> str | None:
        """``volumes.csv`` beside the label maps, this run's cases merged into the file an earlier run wrote. A case
        left as it was whose row is missing (its run was killed before it ended) is measured from its label map."""
        if not is_main_process():
            return None
        left = [c for c, e in (self.record.cases if self.record else {}).items() if e["status"] == "left as it was"]
        listed = read_volumes_csv(self.output_dir)
        for case in left:
            path = os.path.join(self.output_dir, f"{case}.nii.gz")
            if case not in listed and case not in self.volumes and os.path.isfile(path):
                written = nib.load(path)
                classes = self.task.labels_to_classes(np.asanyarray(written.dataobj))
                self.volumes[case] = label_volumes(classes, voxel_ml(written.header.get_zooms()), self.task)
        return merge_volumes_csv(self.output_dir, self.volumes)

    def _picture(self, case: str, reference, classes: np.ndarray, title: str, entropy: np.ndarray | None) -> None:
        canonical_reference = nib.as_closest_canonical(reference)
        flair = np.asanyarray(canonical_reference.dataobj)
        if flair.ndim == 4:  # Decathlon: one 4D image, FLAIR first
            flair = flair[..., 0]
        canonical = lambda volume: np.asanyarray(nib.as_closest_canonical(like(volume, reference)).dataobj)  # noqa: E731
        classes = canonical(classes)
        heat = None if entropy is None else {"uncertainty (entropy)": canonical(entropy)}
        picture = os.path.join(self.output_dir, f"{case}.png")
        spacing = canonical_reference.header.get_zooms()[:3]
        orthogonal_overlay(
            flair, {"prediction": classes}, picture, title=title, task=self.task, heat=heat, spacing=spacing
        )
