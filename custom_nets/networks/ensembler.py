"""The Vox2Vox paper's learned ensembler and the fold models it combines."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from custom_nets.networks.paper_blocks import init_he_normal

__all__ = ["LearnedEnsembler", "StackedEnsemble"]


class LearnedEnsembler(nn.Module):
    """The ensembler of Cirillo et al., "Vox2Vox: 3D-GAN for Brain Tumour Segmentation" (BrainLes 2020,
    https://arxiv.org/abs/2003.13653) as the authors' code builds it (github.com/mdciri/Vox2Vox, ``models.py``
    ``ensembler`` and ``train_ensembler.py``): the members' class probabilities, concatenated along channels
    (member 1's classes, then member 2's, ...) and centred by subtracting 0.5, go through one Conv3d(k3, 'same',
    bias) to ``num_classes`` channels, then softmax. ``he_normal`` initialisation, as Keras'.

    Args:
        num_members: ensemble members (the paper: 10 fold models).
        num_classes: classes per member, and of the output.
        kernel_size: odd convolution kernel. Defaults to 3.
        out_activation: ``"softmax"`` (inference) or ``None`` (logits, for a loss that applies softmax itself).
    """

    def __init__(
        self, num_members: int, num_classes: int = 4, kernel_size: int = 3, out_activation: str | None = "softmax"
    ) -> None:
        super().__init__()
        if num_members < 1 or kernel_size % 2 != 1:
            raise ValueError(f"need num_members >= 1 and an odd kernel_size, got {num_members} and {kernel_size}.")
        if out_activation not in ("softmax", None):
            raise ValueError(f"out_activation must be 'softmax' or None, got {out_activation!r}.")
        self.num_members = num_members
        self.num_classes = num_classes
        self.conv = nn.Conv3d(num_members * num_classes, num_classes, kernel_size, padding=kernel_size // 2)
        self.softmax = out_activation == "softmax"
        init_he_normal(self)

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        if probabilities.shape[1] != self.num_members * self.num_classes:
            raise ValueError(
                f"LearnedEnsembler expects {self.num_members} members x {self.num_classes} classes = "
                f"{self.num_members * self.num_classes} channels, got {probabilities.shape[1]}."
            )
        logits = self.conv(probabilities - 0.5)
        return torch.softmax(logits, dim=1) if self.softmax else logits


class StackedEnsemble(nn.Module):
    """Frozen ``members`` (the fold generators, their outputs turned into probabilities by ``member_activation``)
    feeding a trainable ``ensembler``: the network a MONAI ``SupervisedTrainer`` trains the ensembler with. The
    members stay in eval mode (no dropout) and outside autograd whatever mode the trainer sets; their parameters are
    not the optimizer's."""

    def __init__(
        self, members: Sequence[nn.Module], ensembler: nn.Module, member_activation: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.ensembler = ensembler
        self.member_activation = member_activation if member_activation is not None else nn.Identity()
        for parameter in self.members.parameters():
            parameter.requires_grad_(False)
        self.members.eval()

    def train(self, mode: bool = True) -> StackedEnsemble:
        super().train(mode)
        self.members.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            probabilities = torch.cat([self.member_activation(m(x)) for m in self.members], dim=1)
        return self.ensembler(probabilities)
