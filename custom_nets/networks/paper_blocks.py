"""The blocks of ``variant="paper"``: the authors' TensorFlow/Keras Vox2Vox (github.com/mdciri/Vox2Vox, ``models.py``)
in PyTorch, with the Keras defaults that decide equality: convolutions with bias, 'same' padding as TensorFlow
computes it, ``InstanceNormalization`` (tensorflow-addons: affine, epsilon 1e-3), ``LeakyReLU`` slope 0.3 and
``he_normal`` initialisation.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from custom_nets.networks.blocks import norm_act_layers
from custom_nets.networks.variants import PAPER_ACT, PAPER_NORM


def tf_same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: the output has ``ceil(size / stride)`` voxels and the padding that
    needs, ``max((out - 1) * stride + kernel_size - size, 0)``, is split with the odd voxel after (k4 s1: 1 before,
    2 after; k4 s2 on an even size: 1 and 1; k4 s2 on an odd size: 1 and 2)."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


class Conv3dSame(nn.Conv3d):
    """``nn.Conv3d`` with TensorFlow's 'same' padding, computed per axis from the input's size; torch's own
    ``padding="same"`` refuses strides above 1. Symmetric padding goes to the convolution, asymmetric through
    ``F.pad`` first."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)
        self.kernel = int(kernel_size)
        self.step = int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad: list[int] = []
        symmetric: list[int] = []
        same = True
        for axis in range(2, 5):
            before, after = tf_same_padding(int(x.shape[axis]), self.kernel, self.step)
            symmetric.append(before)
            same = same and before == after
            pad = [before, after] + pad  # F.pad lists the last axis first
        if same:
            return F.conv3d(x, self.weight, self.bias, self.stride, symmetric)
        return F.conv3d(F.pad(x, pad), self.weight, self.bias, self.stride)


class PaperDownBlock(nn.Module):
    """Encoder step ``encoder_step``: Conv3D(k4, s2, 'same', bias) -> [norm] -> act -> [dropout]; the bottleneck's
    first (stride-2) convolution is this block without dropout."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = PAPER_NORM,
        act: str | tuple = PAPER_ACT,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        conv = Conv3dSame(in_channels, out_channels, 4, stride=2)
        self.model = nn.Sequential(conv, *norm_act_layers(out_channels, norm, act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PaperBottleneckBlock(nn.Module):
    """One of the bottleneck's blocks: ``y = Conv3D(k4, s1, 'same', bias)(x)``, output
    ``concat(act(norm(y)), y)``: the skip joins the block's raw convolution output with its normalised activation
    (``2 * out_channels`` channels)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = PAPER_NORM,
        act: str | tuple = PAPER_ACT,
    ) -> None:
        super().__init__()
        self.conv = Conv3dSame(in_channels, out_channels, 4, stride=1)
        self.norm_act = nn.Sequential(*norm_act_layers(out_channels, norm, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.cat([self.norm_act(y), y], dim=1)


class PaperUpBlock(nn.Module):
    """Decoder step ``decoder_step``: Conv3DTranspose(k4, s2, 'same', bias) -> norm -> act, concatenated with the
    skip, then dropout on the concatenation. TensorFlow's 'same' transposed convolution is torch's with padding 1
    (it doubles every axis, aligned as the strided convolution it inverts)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = PAPER_NORM,
        act: str | tuple = PAPER_ACT,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        conv = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.model = nn.Sequential(conv, *norm_act_layers(out_channels, norm, act))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def merge(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.cat([h, skip], dim=1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(self.model(x), skip)


def init_he_normal(module: nn.Module) -> None:
    """Keras' ``he_normal`` for every convolution (normal truncated at two standard deviations, scaled so that the
    truncated distribution's deviation is ``sqrt(2 / fan_in)``; Keras and torch both count a transposed
    convolution's fan-in over its output channels), zero biases, norm scales 1 and shifts 0 (Keras' defaults)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            fan_in = nn.init._calculate_fan_in_and_fan_out(m.weight)[0]
            std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
            nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.InstanceNorm3d) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
