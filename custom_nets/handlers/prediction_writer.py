"""Writes each case's label map as NIfTI with its input's header, and a picture of it over FLAIR."""

from __future__ import annotations

import logging
import os

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events

from custom_nets.data.conventions import labels_to_classes, to_canonical
from custom_nets.handlers.regions import case_name, decollated_items
from custom_nets.utils import is_main_process
from custom_nets.visualize import orthogonal_overlay


def spatial_array(volume, dtype=np.float32) -> np.ndarray:
    """A one-channel (1, D, H, W) or (D, H, W) tensor or array as a (D, H, W) numpy array of ``dtype``."""
    array = np.asarray(torch.as_tensor(volume).detach().cpu()).astype(dtype)
    return array[0] if array.ndim == 4 else array


def check_on_grid(volume: np.ndarray, reference: nib.Nifti1Image, case: str) -> None:
    """An output must lie on its input's grid before it can take the input's header."""
    if volume.shape != tuple(reference.shape[:3]):
        raise RuntimeError(
            f"{case}: output of shape {volume.shape} is not on the input grid {tuple(reference.shape[:3])}; "
            f"the postprocessing must invert the preprocessing."
        )


def save_like(volume: np.ndarray, reference: nib.Nifti1Image, path: str) -> nib.Nifti1Image:
    """Saves ``volume`` (on ``reference``'s grid) with ``reference``'s affine and header (qform/sform, orientation,
    units), in ``volume``'s dtype and without intensity scaling; returns the image written."""
    header = reference.header.copy()
    header.set_data_dtype(volume.dtype)
    header.set_slope_inter(1.0, 0.0)
    image = nib.Nifti1Image(volume, reference.affine, header)
    nib.save(image, path)
    return image


class PredictionWriter:
    """Attach to an evaluator whose postprocessing leaves in ``pred_key`` the label map already inverted to the
    input's grid (``Invertd``) and mapped to the input's label convention. For each case it writes
    ``<output_dir>/<case>.nii.gz`` with the header (shape, affine, qform/sform, orientation) of the input file in
    ``reference_key``, and ``<output_dir>/<case>.png``: axial, coronal and sagittal slices through the tumour's centre
    with the labels over FLAIR. Rank 0 only.

    Args:
        output_dir: where to write.
        label_convention: the convention of the labels in ``pred_key`` (to colour them by class in the PNG).
        pred_key, reference_key, case_key: batch keys of the label map, the reference image path and the case name.
        png: also write the PNG.
    """

    def __init__(
        self,
        output_dir: str,
        label_convention: str,
        pred_key: str = "pred",
        reference_key: str = "reference",
        case_key: str = "case",
        png: bool = True,
    ) -> None:
        self.output_dir = output_dir
        to_canonical(label_convention)  # an unknown convention fails here, not after the first case
        self.label_convention = label_convention
        self.pred_key = pred_key
        self.reference_key = reference_key
        self.case_key = case_key
        self.png = png
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        items = decollated_items(engine)
        os.makedirs(self.output_dir, exist_ok=True)
        for item in items:
            case = case_name(item, self.case_key)
            reference = nib.load(item[self.reference_key])
            labels = spatial_array(item[self.pred_key], np.uint8)
            check_on_grid(labels, reference, case)
            path = os.path.join(self.output_dir, f"{case}.nii.gz")
            output = save_like(labels, reference, path)
            if self.png:
                self._picture(case, reference, output)
            self.logger.info(f"[{engine.state.iteration}/{engine.state.epoch_length}] {case}: {path}")

    def _picture(self, case: str, reference: nib.Nifti1Image, labels: nib.Nifti1Image) -> None:
        flair = np.asanyarray(nib.as_closest_canonical(reference).dataobj)
        if flair.ndim == 4:  # Decathlon: one 4D image, FLAIR first
            flair = flair[..., 0]
        classes = labels_to_classes(np.asanyarray(nib.as_closest_canonical(labels).dataobj), self.label_convention)
        orthogonal_overlay(flair, {"prediction": classes}, os.path.join(self.output_dir, f"{case}.png"), title=case)
