"""Building blocks of the Vox2Vox generator: one small class per block.

Every block keeps its layers in ``self.model`` (an ``nn.Sequential`` whose index 0 is the convolution), which is the
parameter layout of the public PyTorch reference (``down1.model.0.weight`` ...), so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer, get_norm_layer


def norm_act_layers(out_channels: int, norm: str | tuple | None, act: str | tuple, dropout: float = 0.0) -> list:
    """What follows every convolution of these networks: [norm] -> act -> [dropout]."""
    layers = [] if norm is None else [get_norm_layer(name=norm, spatial_dims=3, channels=out_channels)]
    layers.append(get_act_layer(act))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def _layers(conv: nn.Module, out_channels: int, norm: str | tuple | None, act: str | tuple, dropout: float) -> list:
    return [conv, *norm_act_layers(out_channels, norm, act, dropout)]


class DownBlock(nn.Module):
    """Encoder step: Conv3d(k4, s2, p1, no bias) -> [norm] -> act -> [dropout]; halves every spatial axis.

    A k4 s2 p1 convolution centres output voxel i on input position 2i + 0.5, so it introduces no spatial shift.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = ("instance", {"affine": False}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2, "inplace": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        conv = nn.Conv3d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.model = nn.Sequential(*_layers(conv, out_channels, norm, act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UpBlock(nn.Module):
    """Decoder step: ConvTranspose3d(k4, s2, p1, no bias) -> norm -> act -> [dropout], then concatenates the skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = ("instance", {"affine": False}),
        act: str | tuple = ("relu", {"inplace": True}),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        conv = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False)
        self.model = nn.Sequential(*_layers(conv, out_channels, norm, act, dropout))

    def merge(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, skip], dim=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.merge(self.model(x), skip)


class BottleneckBlock(nn.Module):
    """Vox2Vox bottleneck convolution: size-preserving Conv3d(k, s1) -> norm -> act -> dropout.

    The input is zero-padded before the convolution. For an even kernel (the default 4) 'same' padding cannot be
    symmetric, so ``shift_first`` chooses where the extra plane goes: (k/2, k/2 - 1) or (k/2 - 1, k/2) per axis.
    The generator alternates the two so consecutive half-voxel shifts cancel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 4,
        norm: str | tuple | None = ("instance", {"affine": False}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2, "inplace": True}),
        dropout: float = 0.2,
        shift_first: bool = False,
    ) -> None:
        super().__init__()
        low, high = (kernel_size - 1) // 2, kernel_size // 2
        if shift_first:
            low, high = high, low
        self.pad = [low, high] * 3
        conv = nn.Conv3d(in_channels, out_channels, kernel_size=kernel_size, stride=1, padding=0, bias=False)
        self.model = nn.Sequential(*_layers(conv, out_channels, norm, act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.pad(x, self.pad))


class ReferenceBottleneckBlock(nn.Module):
    """The public reference's ``UNetMid`` as it is called there: ``mid(x, x)``.

    It concatenates its input with itself, applies Conv3d(k4, s1, p1) -> norm -> act -> dropout (one plane smaller)
    and zero-pads one plane at the front of each axis, which shifts the features by half a voxel per block.
    Kept only so that reference checkpoints load and reproduce their outputs.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        norm: str | tuple | None = ("instance", {"affine": False}),
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2, "inplace": True}),
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        conv = nn.Conv3d(2 * in_channels, out_channels, kernel_size=4, stride=1, padding=1, bias=False)
        self.model = nn.Sequential(*_layers(conv, out_channels, norm, act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(self.model(torch.cat([x, x], dim=1)), [1, 0, 1, 0, 1, 0])


class OutputBlock(nn.Sequential):
    """Head: ConvTranspose3d(k4, s2, p1, with bias) back to the input resolution, then the output activation."""

    def __init__(self, in_channels: int, out_channels: int, activation: str | None = "softmax") -> None:
        activations = {"softmax": nn.Softmax(dim=1), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh()}
        if activation is not None and activation not in activations:
            raise ValueError(f"out_activation must be one of {sorted(activations)} or None, got {activation!r}.")
        layers: list[nn.Module] = [nn.ConvTranspose3d(in_channels, out_channels, kernel_size=4, stride=2, padding=1)]
        if activation is not None:
            layers.append(activations[activation])
        super().__init__(*layers)
