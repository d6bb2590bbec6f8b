"""Image similarity inside a mask, for synthesis: MAE, PSNR and 3D SSIM.

SSIM is MONAI's (``compute_ssim_and_cs``: Gaussian window of 11 voxels, sigma 1.5, k1 0.01, k2 0.03), whose map is
computed over the whole volume (the window sees air too, as any SSIM does) and averaged over the mask's voxels that
the valid window centres reach. MAE and PSNR use the mask's voxels alone. ``data_range`` is the intensity range of
the scaled images (2 for ``[-1, 1]``); MAE is in those units.
"""

from __future__ import annotations

import math

import torch
from monai.metrics.regression import compute_ssim_and_cs

SSIM_KERNEL = 11
SSIM_SIGMA = 1.5


def masked_image_metrics(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float = 2.0
) -> dict[str, float]:
    """``{"mae", "psnr", "ssim"}`` of one case; tensors are (C, D, H, W) or (D, H, W) on one grid. PSNR of a
    perfect prediction is ``inf``."""
    pred, target = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    if pred.shape != target.shape:
        raise ValueError(f"prediction of shape {tuple(pred.shape)} and target {tuple(target.shape)} differ.")
    spatial = pred.shape[-3:]
    inside = torch.as_tensor(mask).reshape(-1, *spatial).bool().any(0).to(pred.device)
    if not inside.any():
        raise ValueError("the brain mask is empty: no voxel to compare.")
    pred, target = pred.reshape(-1, *spatial), target.reshape(-1, *spatial)
    error = (pred - target)[:, inside]
    mae = float(error.abs().mean())
    mse = float((error**2).mean())
    psnr = 10 * math.log10(data_range**2 / mse) if mse > 0 else math.inf
    if min(spatial) < SSIM_KERNEL:
        raise ValueError(f"SSIM needs at least {SSIM_KERNEL} voxels per axis, the volume is {tuple(spatial)}.")
    ssim_map, _ = compute_ssim_and_cs(
        pred[None],
        target[None],
        spatial_dims=3,
        kernel_size=[SSIM_KERNEL] * 3,
        kernel_sigma=[SSIM_SIGMA] * 3,
        data_range=data_range,
    )
    half = SSIM_KERNEL // 2
    centres = inside[half:-half, half:-half, half:-half]
    ssim = float(ssim_map[0].mean(0)[centres].mean()) if centres.any() else float(ssim_map.mean())
    return {"mae": mae, "psnr": psnr, "ssim": ssim}


def per_case(name: str):
    """An Ignite ``output_transform`` giving the value of ``name`` in a decollated evaluator output as a 0-d tensor
    (the mean over the batch's cases; validation batches hold one case), which ``ignite.metrics.Average`` averages
    over the iterations."""

    def value(output) -> torch.Tensor:
        items = output if isinstance(output, list) else [output]
        return torch.stack([torch.as_tensor(item[name], dtype=torch.float64).reshape(()) for item in items]).mean()

    return value
