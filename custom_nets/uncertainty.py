"""Where the model is unsure: the members of an ensemble (several checkpoints, and with flip test-time augmentation
each checkpoint on the input flipped along each axis) are run as separate members, and where they disagree is kept
instead of being averaged away.

Per voxel (``member_uncertainty``): the predictive entropy of the members' mean class probabilities, divided by
log(number of classes) so that it lies in [0, 1], and the disagreement, the fraction of members whose label differs
from the ensemble's (0 where every member agrees). Per case: ``uncertainty``, the mean entropy over the voxels any
member calls tumour (0 when none does), and ``member_dice``, the mean Dice between two members' tumour masks (1 when
both are empty). Cases are reviewed highest ``uncertainty`` first.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

SCORE_KEYS = ("uncertainty", "member_dice")  # the per-case scores, as keys of a case's data and of its record
MAP_CHANNELS = ("entropy", "disagreement")  # the channels of the per-voxel map


class FlippedNetwork(torch.nn.Module):
    """``network`` on its input flipped along the spatial ``axes`` (0-based), its output flipped back: one member of
    flip test-time augmentation."""

    def __init__(self, network: torch.nn.Module, axes: Sequence[int]) -> None:
        super().__init__()
        self.network = network
        self.dims = [int(a) + 2 for a in axes]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(self.network(torch.flip(x, self.dims)), self.dims)


def tta_members(
    networks: Sequence[torch.nn.Module], flips: Sequence[Sequence[int]] = ((0,), (1,), (2,)), enabled: bool = True
) -> list[torch.nn.Module]:
    """The members of the ensemble: each network, followed (``enabled``) by itself on the input flipped along each
    of ``flips``; ``len(flips) + 1`` consecutive members per network."""
    if not enabled:
        return list(networks)
    return [m for net in networks for m in (net, *(FlippedNetwork(net, axes) for axes in flips))]


def member_uncertainty(probabilities: Sequence[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """The per-voxel map (2, *spatial): normalised entropy of the members' mean, and disagreement) and the case's
    scores (``SCORE_KEYS``) from the members' class probabilities, each (classes, *spatial). The members are read one
    at a time (no stacked copy: 20 members of a 240x240x155 case would add 2.8 GB)."""
    mean, labels = None, []
    for member in probabilities:
        member = torch.as_tensor(member).float()
        mean = member.clone() if mean is None else mean.add_(member)
        labels.append(member.argmax(0).to(torch.uint8))
    members, classes = len(labels), mean.shape[0]
    mean /= members
    entropy = -(mean * torch.log(mean.clamp_min(1e-12))).sum(0) / math.log(max(classes, 2))
    ensemble = mean.argmax(0).to(torch.uint8)
    disagreement = torch.zeros_like(entropy)
    for label in labels:
        disagreement += label != ensemble
    disagreement /= members
    tumour = [label > 0 for label in labels]
    anywhere = torch.zeros_like(tumour[0])
    for mask in tumour:
        anywhere |= mask
    score = float(entropy[anywhere].mean()) if anywhere.any() else 0.0
    dices = []
    for a, b in itertools.combinations(range(members), 2):
        total = int(tumour[a].sum() + tumour[b].sum())
        dices.append(1.0 if total == 0 else 2.0 * int((tumour[a] & tumour[b]).sum()) / total)
    scores = {"uncertainty": round(score, 6), "member_dice": round(float(np.mean(dices)) if dices else 1.0, 6)}
    return torch.stack([entropy.clamp(0, 1), disagreement]), scores


class Uncertaintyd(MapTransform):
    """``member_uncertainty`` of the members' probabilities in ``keys`` (at least two): the map in ``output_key``
    (with the first member's type and metadata, so that ``Invertd`` can take it to the input's grid) and each score
    under its ``SCORE_KEYS`` name."""

    def __init__(self, keys: KeysCollection, output_key: str = "uncertainty_map") -> None:
        super().__init__(keys)
        if len(self.keys) < 2:
            raise ValueError(f"uncertainty needs at least two members' predictions, got keys {list(self.keys)}.")
        self.output_key = output_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        members = [d[key] for key in self.keys]
        uncertainty, scores = member_uncertainty(members)
        d[self.output_key] = convert_to_dst_type(uncertainty, members[0])[0]
        d.update(scores)
        return d


def review_order(scores: Mapping[str, float]) -> list[str]:
    """Cases by ``uncertainty`` score, highest first (ties by name)."""
    return sorted(scores, key=lambda case: (-float(scores[case]), case))


def rank_correlation(rows: Sequence[Mapping], score: str, columns: Sequence[str]) -> dict[str, float | None]:
    """Spearman's rank correlation between ``score`` and each of ``columns`` over ``rows`` (cases whose values are
    finite); None where it is undefined (fewer than three cases, or a constant column)."""
    from scipy.stats import spearmanr

    found = {}
    for column in columns:
        pairs = np.array([(float(r[score]), float(r[column])) for r in rows], dtype=float).reshape(-1, 2)
        pairs = pairs[np.isfinite(pairs).all(1)]
        if len(pairs) < 3 or np.ptp(pairs[:, 0]) == 0 or np.ptp(pairs[:, 1]) == 0:
            found[column] = None
            continue
        found[column] = round(float(spearmanr(pairs[:, 0], pairs[:, 1]).statistic), 4)
    return found
