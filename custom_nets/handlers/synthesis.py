"""Handlers of the synthesis task: its per-case metrics, its validation picture and its NIfTI writer."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import torch

from custom_nets.handlers.case_metrics import CaseMetricsWriter
from custom_nets.handlers.prediction_writer import CaseWriter, check_on_grid, save_like, spatial_array
from custom_nets.handlers.snapshot import ValidationSnapshot
from custom_nets.metrics import SSIM_KERNEL, SSIM_SIGMA
from custom_nets.transforms import brain_percentile, from_brain_scale
from custom_nets.visualize import compare_volumes


class ImageMetricsWriter(CaseMetricsWriter):
    """Attach to a synthesis evaluator whose postprocessing (``custom_nets.transforms.ImageSimilarityd``) leaves
    ``mae``, ``psnr`` and ``ssim`` in each case's output; writes ``metrics.csv`` and ``summary.json``."""

    columns = ["mae", "psnr", "ssim"]
    conventions = (
        f"inside the brain mask (voxels non-zero in any input modality), on the scaled intensities (air -1, the "
        f"brain's upper percentile 1): MAE in those units, PSNR in dB with a data range of 2, SSIM 3D with a Gaussian "
        f"window of {SSIM_KERNEL} voxels (sigma {SSIM_SIGMA}) averaged over the mask"
    )

    def case_row(self, item: dict) -> dict:
        return {name: float(item[name]) for name in self.columns}

    def describe(self, row: dict) -> str:
        return f"MAE {row['mae']:.4f}, PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}"


class SynthesisSnapshot(ValidationSnapshot):
    """The synthesis counterpart of ``ValidationSnapshot``: real target, synthesized target and their difference
    (``label`` and ``pred`` of the first validation case) through the centre of the brain."""

    def draw(self, item: dict, path: str, title: str) -> None:
        real, synthesized = spatial_array(item["label"]), spatial_array(item["pred"])
        compare_volumes(("real", real), ("synthesized", synthesized), path, title)


class SynthesisWriter(CaseWriter):
    """Attach to a synthesis evaluator whose postprocessing leaves in ``pred_key`` the synthesized volume, scaled as
    the network saw it (``custom_nets.transforms.ScaleBrainIntensityd``) and already inverted to the input's grid
    (``Invertd``). For each case it writes ``<output_dir>/<name>.nii.gz``, float32, with the header of the file in
    ``reference_key`` and in the input's intensity scale, and ``<output_dir>/<name>.png``: real and synthesized slices
    side by side with their difference (or the reference modality and the synthesized one when the case has no real
    target); ``<name>`` is ``file_name`` formatted with the case and the target (``<case>`` by default). A DICOM case
    (its reference series' folder in the batch's ``dicom_series``) also gets ``<output_dir>/<name>_dicom/``, the
    synthesized volume as a derived MR series (``custom_nets.dicom.write_derived_series``). Rank 0 only.

    Undoing the normalisation: ``raw = (y - b_min) / (b_max - b_min) * scale`` where ``scale`` is the
    ``upper`` brain percentile of the real target when its file (``target_key``) exists, and otherwise the first
    value found under ``scale_keys`` (by default the target's own scale recorded at load time, then the first input
    modality's); voxels outside the brain (zero in the reference file) are written as 0.

    Args:
        output_dir: where to write.
        target_name: the synthesized modality, for titles and file names.
        target_name_key: a batch key naming each case's synthesized modality instead (cases of several targets).
        file_name: the outputs' name without extension, a format of ``case`` and ``target``.
        upper, b_min, b_max: the parameters of ``ScaleBrainIntensityd``.
        pred_key, reference_key, target_key, case_key: batch keys of the prediction, the reference file (header and
            brain mask), the real target's file ("" or absent when there is none) and the case name.
        scale_keys: keys of the recorded scales to fall back on.
        png: also write the PNG.
        record: a ``custom_nets.cases.CaseRecord`` to report each case to (see ``CaseWriter``).

    The PNG is written first and the NIfTI last, each atomically, so a case whose NIfTI exists is complete; a volume
    whose shape or affine differs from the reference file's is refused (``check_on_grid``).
    """

    def __init__(
        self,
        output_dir: str,
        target_name: str = "target",
        upper: float = 99.5,
        b_min: float = -1.0,
        b_max: float = 1.0,
        pred_key: str = "pred",
        reference_key: str = "reference",
        target_key: str = "target",
        case_key: str = "case",
        scale_keys: tuple[str, ...] = ("label_scale", "image_scale"),
        png: bool = True,
        record=None,
        target_name_key: str | None = None,
        file_name: str = "{case}",
    ) -> None:
        super().__init__(output_dir, case_key, record)
        self.target_name, self.target_name_key, self.file_name = target_name, target_name_key, file_name
        self.upper, self.b_min, self.b_max = float(upper), float(b_min), float(b_max)
        self.pred_key, self.reference_key, self.target_key = pred_key, reference_key, target_key
        self.scale_keys = tuple(scale_keys)
        self.png = png

    def _scale(self, item: dict, real: np.ndarray | None) -> float:
        if real is not None:
            return brain_percentile(real, self.upper)
        for key in self.scale_keys:
            if key in item:
                return float(torch.as_tensor(item[key]).flatten()[0])
        raise KeyError(f"none of the scale keys {self.scale_keys} is in the batch and the case has no real target.")

    def write(self, item: dict, case: str) -> str:
        target_name = str(item[self.target_name_key]) if self.target_name_key else self.target_name
        name = self.file_name.format(case=case, target=target_name)
        reference_file = str(item[self.reference_key])
        reference = nib.load(reference_file)
        check_on_grid(item[self.pred_key], reference, case)
        reference_data = np.asanyarray(reference.dataobj).astype(np.float32)
        brain = reference_data != 0
        brain = brain.any(axis=3) if brain.ndim == 4 else brain
        scaled = spatial_array(item[self.pred_key])
        target_file = str(item.get(self.target_key) or "")
        target, real = None, None  # the real target's image and voxels, each file read once
        if target_file == reference_file:
            target, real = reference, reference_data
        elif target_file:
            target = nib.load(target_file)
            real = np.asanyarray(target.dataobj).astype(np.float32)
        synthesized = from_brain_scale(scaled, self._scale(item, real), self.b_min, self.b_max).astype(np.float32)
        synthesized[~brain] = 0
        if self.png:
            self._picture(case, name, target_name, synthesized, reference, reference_data, target, real)
        if item.get("dicom_series"):
            from custom_nets.dicom.outputs import write_derived_series  # highdicom only when a case is DICOM

            description = f"{target_name} synthesized by Vox2Vox"
            series = os.path.join(self.output_dir, f"{name}_dicom")
            write_derived_series(synthesized, reference, str(item["dicom_series"]), series, description, case)
        path = os.path.join(self.output_dir, f"{name}.nii.gz")
        save_like(synthesized, reference, path)
        return path

    def _picture(self, case: str, name: str, target_name: str, synthesized, reference, reference_data, target, real):
        """The real target (or, without one, the reference input) beside the synthesized volume, in RAS, drawn from
        the voxels already in memory."""

        def canonical(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
            data = data[..., 0] if data.ndim == 4 else data
            return np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(data, affine)).dataobj)

        if target is not None:
            shown = (f"real {target_name}", canonical(real, target.affine))
        else:
            shown = ("input (first modality)", canonical(reference_data, reference.affine))
        compare_volumes(
            shown,
            (f"synthesized {target_name}", canonical(synthesized, reference.affine)),
            os.path.join(self.output_dir, f"{name}.png"),
            title=case,
            show_difference=target is not None,
        )
