"""The Vox2Vox discriminator: a conditional 3D PatchGAN."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from torch.utils.checkpoint import checkpoint

from custom_nets.networks.init import init_pix2pix_weights
from custom_nets.networks.paper_blocks import Conv3dSame, init_he_normal
from custom_nets.networks.variants import DEFAULT, check_variant, variant_spec

__all__ = ["Vox2VoxDiscriminator"]


class Vox2VoxDiscriminator(nn.Module):
    """Conditional 3D PatchGAN discriminator of pix2pix (Isola et al., CVPR 2017) as used by Vox2Vox
    (Cirillo et al., 2020, https://arxiv.org/abs/2003.13653).

    It judges (condition, target) pairs: ``discriminator(target=y, condition=x)`` concatenates ``target`` then
    ``condition`` along channels (``"paper"``: ``condition`` then ``target``) and returns one logit per patch (no
    sigmoid)::

        cat(target, condition)  (B, target_channels + condition_channels, D, H, W)
        model   n x [Conv3d k4 s2 p1 (bias) -> norm (not on the first) -> act]   (B, channels[-1], D/2^n, ...)
        final   see ``variant``                                                  (B, 1, D/2^n, H/2^n, W/2^n)

    ``variant="vox2vox"`` (default, this bundle's) ends with a shift-free Conv3d(k3, p1, bias); norms without affine
    parameters, LeakyReLU(0.2), pix2pix N(0, 0.02) init.

    ``variant="reference"`` reproduces github.com/chinokenochkan/vox2vox's ``Discriminator(in_channels)``: zero pad
    one plane at the front of each axis, then Conv3d(k4, p1, no bias). Same parameter names (``model.0.weight``,
    ``final.weight``); 11,051,968 parameters at 1 + 1 channels.

    ``variant="paper"`` is the authors' TensorFlow code (github.com/mdciri/Vox2Vox, ``models.py``) layer for layer:
    it concatenates ``condition`` then ``target``; ``channels[:-1]`` are Conv3D k4 s2 'same' (bias) -> norm (from the
    second) -> LeakyReLU(0.3) -> dropout; then zero pad 1 -> Conv3D k4 valid to ``channels[-1]`` (bias) -> norm ->
    LeakyReLU(0.3); then zero pad 1 -> Conv3D k4 valid to 1 (``final``). Instance norms with affine parameters and
    epsilon 1e-3, Keras' ``he_normal`` weights; 11,078,337 parameters at 4 + 4 channels, as the authors' model. The
    patch map is ``D/2^(n-1) - 2`` voxels per axis (``n = len(channels)``; 14 for 128^3).

    Args:
        condition_channels: channels of the condition (e.g. 4 MRI modalities).
        target_channels: channels of the real or generated target (e.g. 4 classes, 1 synthesized volume).
        channels: widths of the strided convolutions. Defaults to ``(64, 128, 256, 512)``.
        norm: MONAI norm spec of every block but the first; ``"default"``: the variant's,
            ``("instance", {"affine": False})``, or for ``"paper"`` ``("instance", {"affine": True, "eps": 1e-3})``.
        act: MONAI activation spec; ``"default"``: LeakyReLU(0.2), or 0.3 for ``"paper"``, in place (the
            convolutions before it keep what their backward needs, so this saves one activation per layer).
        variant: ``"vox2vox"``, ``"paper"`` or ``"reference"``.
        dropout: dropout after each strided block (``variant="paper"`` only). Defaults to 0.2.
        use_checkpoint: in training, keep only the input of each strided block (conv, norm, act) and recompute the
            block in the backward pass (``torch.utils.checkpoint``), one block at a time: less memory for one more
            forward.

    Spatial sizes must be multiples of ``2**len(channels)`` (``2**(len(channels) - 1)`` and at least 3 times that
    for ``"paper"``).
    """

    __jit_ignored_attributes__ = ["block_starts"]  # read only by the checkpointed path, which TorchScript skips

    def __init__(
        self,
        condition_channels: int = 4,
        target_channels: int = 4,
        channels: Sequence[int] = (64, 128, 256, 512),
        norm: str | tuple | None = DEFAULT,
        act: str | tuple = DEFAULT,
        variant: str = "vox2vox",
        use_checkpoint: bool = False,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.use_checkpoint = use_checkpoint
        paper = check_variant(variant) == "paper"
        norm = variant_spec(variant, "norm", norm)
        act = variant_spec(variant, "act", act)
        self.condition_channels = condition_channels
        self.target_channels = target_channels
        self.size_divisor = 2 ** (len(channels) - 1 if paper else len(channels))
        self.min_size = 3 * self.size_divisor if paper else self.size_divisor
        self.reference = variant == "reference"
        self.paper = paper
        layers: list[nn.Module] = []
        self.block_starts = []
        previous = condition_channels + target_channels
        for i, c in enumerate(channels):
            self.block_starts.append(len(layers))
            if not paper:
                layers.append(nn.Conv3d(previous, c, kernel_size=4, stride=2, padding=1))
            elif i < len(channels) - 1:
                layers.append(Conv3dSame(previous, c, 4, stride=2))
            else:
                layers += [nn.ZeroPad3d(1), nn.Conv3d(previous, c, kernel_size=4)]
            if i > 0 and norm is not None:
                layers.append(get_norm_layer(name=norm, spatial_dims=3, channels=c))
            layers.append(get_act_layer(act))
            if paper and i < len(channels) - 1 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = c
        self.model = nn.Sequential(*layers)
        if self.reference:
            self.final = nn.Conv3d(previous, 1, kernel_size=4, padding=1, bias=False)
        elif paper:
            self.final = nn.Conv3d(previous, 1, kernel_size=4)  # after a zero pad of 1, in forward
        else:
            self.final = nn.Conv3d(previous, 1, kernel_size=3, padding=1)
        if paper:
            init_he_normal(self)
        else:
            init_pix2pix_weights(self)

    def forward(self, target: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        if target.shape[1] != self.target_channels or condition.shape[1] != self.condition_channels:
            raise ValueError(
                f"Vox2VoxDiscriminator expects target with {self.target_channels} and condition with "
                f"{self.condition_channels} channels, got {target.shape[1]} and {condition.shape[1]}."
            )
        if target.shape[2:] != condition.shape[2:]:
            raise ValueError(
                f"target and condition must share spatial size, got {list(target.shape[2:])} "
                f"and {list(condition.shape[2:])}."
            )
        for size in target.shape[2:]:
            if size % self.size_divisor != 0 or size < self.min_size:
                raise ValueError(
                    f"Vox2VoxDiscriminator cannot take spatial size {list(target.shape[2:])}: every axis must be "
                    f"a multiple of {self.size_divisor} and at least {self.min_size}."
                )
        h = torch.cat([condition, target] if self.paper else [target, condition], dim=1)
        if self.use_checkpoint and self.training and not torch.jit.is_scripting():
            h = self._checkpointed(h)
        else:
            h = self.model(h)
        if self.reference:
            h = F.pad(h, [1, 0, 1, 0, 1, 0])
        elif self.paper:
            h = F.pad(h, [1, 1, 1, 1, 1, 1])
        return self.final(h)

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        ends = self.block_starts[1:] + [len(self.model)]
        for start, end in zip(self.block_starts, ends, strict=True):
            x = checkpoint(self.model[start:end], x, use_reentrant=False)
        return x
