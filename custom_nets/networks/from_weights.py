"""The generator a state dict was saved from, read from its tensors' shapes: a bundle packed with a model trained at
other widths (``configs/quick.json``) must build that network from ``inference.json`` alone."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from custom_nets.networks.generator import Vox2VoxGenerator
from custom_nets.networks.variants import VARIANTS


def generator_settings(state: Mapping[str, torch.Tensor]) -> dict:
    """``in_channels``, ``out_channels``, ``channels``, ``num_bottleneck`` and ``variant`` of the ``Vox2VoxGenerator``
    whose ``state_dict()`` is ``state``: the widths from the encoder's weights, the variant the one whose network
    loads ``state`` strictly. Raises ``ValueError`` naming what does not fit."""
    downs = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"down(\d+)\.model\.0\.weight", k)))
    mids = {int(m.group(1)) for k in state if (m := re.fullmatch(r"mid(\d+)\..*weight", k))}
    if not downs or "final.0.bias" not in state or not mids:
        raise ValueError(
            "not a Vox2VoxGenerator state dict (expected down<k>.model.0.weight, mid<k>.*, final.0.bias; "
            f"found {list(state)[:4]} ...)"
        )
    settings = {
        "in_channels": int(state["down1.model.0.weight"].shape[1]),
        "out_channels": int(state["final.0.bias"].shape[0]),
        "channels": [int(state[f"down{k}.model.0.weight"].shape[0]) for k in downs],
        "num_bottleneck": len(mids),
    }
    tried = []
    for variant in VARIANTS:
        try:
            network = Vox2VoxGenerator(**settings, variant=variant)
            network.load_state_dict(state, strict=True)
        except (RuntimeError, ValueError) as error:
            tried.append(f"{variant}: {str(error).splitlines()[0][:160]}")
            continue
        return {**settings, "variant": variant}
    raise ValueError(f"no generator variant loads these weights strictly with {settings} ({'; '.join(tried)})")
