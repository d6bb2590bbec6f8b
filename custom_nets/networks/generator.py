"""The Vox2Vox generator: a 3D U-Net with a skip-connected bottleneck."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from custom_nets.networks.blocks import BottleneckBlock, DownBlock, OutputBlock, ReferenceBottleneckBlock, UpBlock
from custom_nets.networks.init import init_pix2pix_weights
from custom_nets.networks.naming import register_reference_names
from custom_nets.networks.paper_blocks import PaperBottleneckBlock, PaperDownBlock, PaperUpBlock, init_he_normal
from custom_nets.networks.variants import DEFAULT, check_variant, variant_spec

__all__ = ["Vox2VoxGenerator"]

CHECKPOINTING = ("none", "network", "levels")


class Vox2VoxGenerator(nn.Module):
    """Vox2Vox generator, the 3D pix2pix U-Net of

        Cirillo, Abramian, Eklund. "Vox2Vox: 3D-GAN for Brain Tumour Segmentation", BrainLes 2020, LNCS 12658,
        https://arxiv.org/abs/2003.13653

    built on Isola et al. "Image-to-Image Translation with Conditional Adversarial Networks" (pix2pix), CVPR 2017.

    Layout (``n = len(channels)``, ``C = channels[-1]``)::

        input (B, in_channels, D, H, W)
        down1 .. downN   Conv3d k4 s2 p1 -> norm (not on down1) -> act          (B, channels[i], D/2^(i+1), ...)
        mid1 .. midK     bottleneck at D/2^n, see ``variant``
        up1 .. up(N-1)   ConvTranspose3d k4 s2 p1 -> norm -> up_act, concat skip (B, 2*channels[-i-1], ...)
        final            ConvTranspose3d k4 s2 p1 (bias) -> out_activation      (B, out_channels, D, H, W)

    ``variant="vox2vox"`` (default) is this bundle's design: every bottleneck block concatenates its input features
    with its convolution's output (a real skip connection), so blocks 2..K see ``2*C`` channels and the decoder
    receives ``2*C``. No layer shifts the features: the k4 s2 p1 down- and up-sampling are centred, and the stride-1
    bottleneck convolutions default to an odd kernel (3) with symmetric 'same' padding, since a stride-1 even kernel
    cannot be centred. ``bottleneck_kernel_size=4`` gives a literal k4 (150,519,812 parameters at 4 -> 4 channels,
    against 83 M with 3); its padding alternates (1, 2) and (2, 1) per block so the half-voxel shifts of the main
    path cancel pairwise, but each concatenation then joins features half a voxel apart. Convolutions without bias
    (a norm follows), norm without affine parameters, LeakyReLU(0.2) down, ReLU up, pix2pix N(0, 0.02) init, dropout
    in the bottleneck blocks.

    ``variant="paper"`` is the authors' TensorFlow code (github.com/mdciri/Vox2Vox, ``models.py``) layer for layer,
    with the Keras defaults that decide equality (``custom_nets.networks.paper_blocks``): the last encoder width is
    the bottleneck's stride-2 convolution (down``N``, with norm and act, no dropout); down1..down(N-1) are Conv3D k4
    s2 'same' (bias) -> norm (not on down1) -> LeakyReLU(0.3) -> dropout; each bottleneck block computes
    ``y = Conv3D k4 s1 'same'(x)`` and passes ``concat(act(norm(y)), y)`` on (TensorFlow's 'same' pads one voxel
    before and two after); up steps are Conv3DTranspose k4 s2 (bias) -> norm -> LeakyReLU(0.3) -> concat skip ->
    dropout; norms are instance norms with affine parameters and epsilon 1e-3, the weights Keras' ``he_normal``.
    150,530,052 parameters at 4 -> 4 channels, as the authors' Keras model. The layers are registered in forward
    order (down1..downN, mid1..midK, up1..up(N-1), final), so a model written from that list can take these weights
    layer by layer.

    ``variant="reference"`` reproduces github.com/chinokenochkan/vox2vox exactly, including its bottleneck, which
    concatenates each block's input with itself and pads one plane at the front of each axis after a k4 p1
    convolution. Its state dict has the reference's names and shapes (``down1.model.0.weight`` ...), so a
    ``GeneratorUNet(in_channels, out_channels)`` checkpoint loads with ``strict=True``; pass
    ``out_activation="tanh"`` to get the reference's outputs. At 1 -> 1 channels it has 137,900,033 parameters.

    Whatever the variant, the state dict uses the reference's names (``downI``, ``midI``, ``upI``, ``final``).

    Args:
        in_channels: number of input channels (e.g. 4 MRI modalities).
        out_channels: number of output channels (e.g. 4 classes, or 1 synthesized volume).
        channels: encoder widths, one per downsampling. Defaults to ``(64, 128, 256, 512)``.
        num_bottleneck: number of bottleneck blocks at the lowest resolution. Defaults to 4.
        dropout: dropout probability (active in training only) in the bottleneck blocks (``"vox2vox"``,
            ``"reference"``) or after each encoder step but the last and each decoder concatenation (``"paper"``).
            Defaults to 0.2.
        out_activation: ``"softmax"`` (segmentation), ``"sigmoid"``, ``"tanh"`` or ``None`` (raw output).
        variant: ``"vox2vox"`` (this bundle's), ``"paper"`` (the authors' TensorFlow code) or ``"reference"``
            (the public PyTorch code, checkpoint-compatible).
        norm: MONAI norm spec of every block but the first; ``"default"``: the variant's,
            ``("instance", {"affine": False})``, or for ``"paper"`` ``("instance", {"affine": True, "eps": 1e-3})``.
        act: MONAI activation spec of the encoder and bottleneck; ``"default"``: LeakyReLU(0.2), or 0.3 for
            ``"paper"``, in place.
        up_act: MONAI activation spec of the decoder; ``"default"``: ReLU, or LeakyReLU(0.3) for ``"paper"``, in
            place (no layer's backward needs what an activation overwrites: one activation less kept per block).
        bottleneck_kernel_size: kernel of the bottleneck convolutions (``variant="vox2vox"`` only; ``"paper"``
            and ``"reference"`` use 4). Defaults to 3.
        use_checkpoint: activation checkpointing (training only; same outputs and gradients, dropout included):
            ``False``/``"none"``; ``True``/``"network"``: keep only the input and recompute the whole forward when
            the backward pass reaches the generator, so none of its activations are held while the discriminator
            runs (one more forward); ``"levels"``: as ``"network"``, and that recomputation keeps only what enters
            each resolution level, recomputing one level at a time (least memory, two more forwards). Norms with
            running statistics (batch norm) would update them again on each recomputation.

    Spatial sizes must be multiples of ``2**n`` with at least 2 voxels per axis at the bottleneck, i.e. at least
    ``2**(n+1)`` (32 for the default widths); 64x96x48 is valid, 100x100x100 is not. Other sizes raise
    ``ValueError`` before any convolution runs. ``variant="reference"`` needs 3 voxels per axis at the bottleneck
    (48 for the default widths), since its k4 p1 bottleneck convolution drops a plane before the norm.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 4,
        channels: Sequence[int] = (64, 128, 256, 512),
        num_bottleneck: int = 4,
        dropout: float = 0.2,
        out_activation: str | None = "softmax",
        variant: str = "vox2vox",
        norm: str | tuple | None = DEFAULT,
        act: str | tuple = DEFAULT,
        up_act: str | tuple = DEFAULT,
        bottleneck_kernel_size: int = 3,
        use_checkpoint: bool | str = False,
    ) -> None:
        super().__init__()
        check_variant(variant)
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two encoder widths, got {channels}.")
        if num_bottleneck < 1:
            raise ValueError(f"num_bottleneck must be >= 1, got {num_bottleneck}.")
        checkpointing = use_checkpoint
        if isinstance(use_checkpoint, bool):
            checkpointing = "network" if use_checkpoint else "none"
        if checkpointing not in CHECKPOINTING:
            raise ValueError(f"use_checkpoint must be a bool or one of {CHECKPOINTING}, got {use_checkpoint!r}.")
        self.checkpointing: str = checkpointing
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dense_bottleneck = variant == "vox2vox"
        self.size_divisor = 2 ** len(channels)
        # the reference bottleneck loses a plane before its norm: it needs 3 voxels per axis there, not 2
        self.min_size = (3 if variant == "reference" else 2) * self.size_divisor
        width = channels[-1]

        paper = variant == "paper"
        norm = variant_spec(variant, "norm", norm)
        act = variant_spec(variant, "act", act)
        up_act = variant_spec(variant, "up_act", up_act)

        self.encoder = nn.ModuleList()
        previous = in_channels
        for i, c in enumerate(channels):
            block_norm = None if i == 0 else norm
            if paper:
                block_dropout = dropout if i < len(channels) - 1 else 0.0  # the last is the bottleneck's entry
                self.encoder.append(PaperDownBlock(previous, c, block_norm, act, block_dropout))
            else:
                self.encoder.append(DownBlock(previous, c, block_norm, act))
            previous = c

        self.bottleneck = nn.ModuleList()
        for i in range(num_bottleneck):
            if variant == "reference":
                out_c = channels[-2] if i == num_bottleneck - 1 else width
                self.bottleneck.append(ReferenceBottleneckBlock(width, out_c, norm, act, dropout))
            elif paper:
                self.bottleneck.append(PaperBottleneckBlock(width if i == 0 else 2 * width, width, norm, act))
            else:
                in_c = width if i == 0 else 2 * width
                self.bottleneck.append(
                    BottleneckBlock(in_c, width, bottleneck_kernel_size, norm, act, dropout, shift_first=i % 2 == 1)
                )

        self.decoder = nn.ModuleList()
        previous = channels[-2] if variant == "reference" else 2 * width
        for c in reversed(channels[:-1]):
            if paper:
                self.decoder.append(PaperUpBlock(previous, c, norm, up_act, dropout))
            else:
                self.decoder.append(UpBlock(previous, c, norm, up_act))
            previous = 2 * c
        self.final = OutputBlock(previous, out_channels, out_activation)

        if paper:
            init_he_normal(self)
        else:
            init_pix2pix_weights(self)
        register_reference_names(self, {"encoder": "down", "bottleneck": "mid", "decoder": "up"})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Vox2VoxGenerator expects input (batch, {self.in_channels}, D, H, W), got {list(x.shape)}."
            )
        for size in x.shape[2:]:
            if size % self.size_divisor != 0 or size < self.min_size:
                raise ValueError(
                    f"Vox2VoxGenerator cannot take spatial size {list(x.shape[2:])}: every axis must be a multiple "
                    f"of {self.size_divisor} and at least {self.min_size} "
                    f"({self.min_size // self.size_divisor} voxels at the bottleneck)."
                )
        if self.checkpointing != "none" and self.training and not torch.jit.is_scripting():
            return self._checkpointed(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        skips: list[torch.Tensor] = []
        h = x
        for down in self.encoder:
            h = down(h)
            skips.append(h)
        h = self._bottleneck(h)
        for i, up in enumerate(self.decoder):
            h = up(h, skips[len(skips) - 2 - i])
        return self.final(h)

    def _bottleneck(self, h: torch.Tensor) -> torch.Tensor:
        features = h
        for mid in self.bottleneck:
            if self.dense_bottleneck:
                out = mid(h)
                h = torch.cat([features, out], dim=1)
                features = out
            else:
                h = mid(h)
        return h

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        forward = self._forward if self.checkpointing == "network" else self._forward_by_level
        return checkpoint(forward, x, use_reentrant=False)

    @torch.jit.unused
    def _forward_by_level(self, x: torch.Tensor) -> torch.Tensor:
        """``_forward`` with each level checkpointed. A decoder level's segment starts with the concatenation of the
        previous level's output and its skip (``merge``), so what is kept between segments is those two tensors,
        never their concatenated copy."""
        skips: list[torch.Tensor] = []
        h = x
        for down in self.encoder:
            h = checkpoint(down, h, use_reentrant=False)
            skips.append(h)
        h = checkpoint(self._bottleneck, h, use_reentrant=False)
        h = checkpoint(self.decoder[0].model, h, use_reentrant=False)
        heads = [up.model for up in self.decoder[1:]] + [self.final]
        for i, head in enumerate(heads):
            merge = self.decoder[i].merge  # the concatenation (and the paper's dropout) of the level above
            h = checkpoint(_merge_then, merge, head, h, skips[len(skips) - 2 - i], use_reentrant=False)
        return h


def _merge_then(merge, module: nn.Module, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    return module(merge(h, skip))
