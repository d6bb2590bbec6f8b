"""State-dict names of the public Vox2Vox reference for modules kept in ``nn.ModuleList`` containers.

A TorchScript-friendly network keeps its blocks in ``ModuleList`` s (``encoder.0``), while the reference names them
``down1``. The hooks below write the reference names into every state dict and accept both spellings on load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch.nn as nn


def _rename(state_dict: dict, prefix: str, pattern: re.Pattern, replace) -> None:
    items = list(state_dict.items())
    state_dict.clear()  # rebuilt in the original order
    for key, value in items:
        if key.startswith(prefix):
            key = prefix + pattern.sub(replace, key[len(prefix) :], count=1)
        state_dict[key] = value


def register_reference_names(module: nn.Module, containers: Mapping[str, str]) -> None:
    """Save ``<container>.<i>.`` as ``<name><i+1>.`` and load either form, e.g. ``{"encoder": "down"}``."""
    to_reference = re.compile(r"^(" + "|".join(map(re.escape, containers)) + r")\.(\d+)\.")
    to_internal = re.compile(r"^(" + "|".join(map(re.escape, containers.values())) + r")(\d+)\.")
    internal_of = {v: k for k, v in containers.items()}

    def save_hook(_module, state_dict, prefix, _local_metadata):
        _rename(state_dict, prefix, to_reference, lambda m: f"{containers[m.group(1)]}{int(m.group(2)) + 1}.")

    def load_hook(_module, state_dict, prefix, *_args):
        _rename(state_dict, prefix, to_internal, lambda m: f"{internal_of[m.group(1)]}.{int(m.group(2)) - 1}.")

    module.register_state_dict_post_hook(save_hook)
    module.register_load_state_dict_pre_hook(load_hook)
