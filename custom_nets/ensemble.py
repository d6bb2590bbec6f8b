"""The paper's learned ensemble at inference: MONAI's ``Ensemble``/``Ensembled`` pair with a trained
``LearnedEnsembler`` in place of the mean (``inference.json``: ``"ensemble": "learned"``)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import Ensembled
from monai.transforms.post.array import Ensemble
from monai.transforms.transform import Transform
from monai.utils import ensure_tuple

from custom_nets.networks.ensembler import LearnedEnsembler

ENSEMBLES = ("mean", "learned")


def ensemble_choice(value: str, model_files: Sequence[str]) -> str:
    """The ``ensemble`` config value, checked: one of ``ENSEMBLES``."""
    choice = str(value).strip().lower()
    if choice not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {list(ENSEMBLES)}, got {value!r}.")
    if choice == "learned" and len(model_files) < 2:
        raise ValueError(f"ensemble 'learned' combines several models, but model_files lists {len(model_files)}.")
    return choice


def load_ensembler(model_file: str, num_members: int, num_classes: int, device="cpu") -> LearnedEnsembler:
    """A trained ``LearnedEnsembler`` from ``model_file`` (flat state dict, as ``train_ensembler.json`` saves it),
    with an error naming the file when it was trained for another number of members or classes."""
    if not os.path.isfile(model_file):
        raise FileNotFoundError(
            f"ensembler file {model_file} does not exist; train it with configs/train_ensembler.json or set "
            f"ensembler_file."
        )
    state = torch.load(model_file, map_location="cpu", weights_only=True)
    weight = state.get("conv.weight") if isinstance(state, dict) else None
    if weight is None:
        raise ValueError(f"{model_file} is not a LearnedEnsembler state dict (no conv.weight).")
    expected = num_members * num_classes
    if tuple(weight.shape[:2]) != (num_classes, expected):
        raise ValueError(
            f"{model_file} combines {weight.shape[1]} channels into {weight.shape[0]} classes, but model_files lists "
            f"{num_members} members of {num_classes} classes ({expected} channels); train an ensembler for these "
            f"models."
        )
    ensembler = LearnedEnsembler(num_members, num_classes, kernel_size=int(weight.shape[-1]))
    ensembler.load_state_dict(state)
    return ensembler.to(device).eval()


class LearnedEnsemble(Ensemble, Transform):
    """Like MONAI's ``MeanEnsemble``: takes the members' probabilities (a list of channel-first tensors, or one
    tensor stacked on a leading member axis) and returns ``ensembler``'s class probabilities, computed on the
    ensembler's device, with the first member's type and metadata. With flip test-time augmentation each model
    is ``per_model`` consecutive members, averaged before the ensembler (which was trained on one output per model)."""

    def __init__(self, ensembler: torch.nn.Module, per_model: int = 1) -> None:
        self.ensembler = ensembler
        self.per_model = int(per_model)

    def __call__(self, img):
        stacked = self.get_stacked_torch(img)  # (members, classes, *spatial)
        stacked = stacked.reshape(-1, self.per_model, *stacked.shape[1:]).mean(1)
        device = next(self.ensembler.parameters()).device
        with torch.no_grad():
            joined = stacked.reshape(1, -1, *stacked.shape[2:]).to(device, torch.float32)
            out = self.ensembler(joined)[0].to(stacked.device)
        return self.post_convert(out, img)


class LearnedEnsembled(Ensembled):
    """Dictionary version of ``LearnedEnsemble``, loading the ensembler from ``model_file`` (see
    ``load_ensembler``); ``keys`` are the members' prediction keys in ``model_files`` order, ``per_model`` of them
    per model (see ``custom_nets.uncertainty.tta_members``)."""

    def __init__(
        self,
        keys: KeysCollection,
        model_file: str,
        num_classes: int = 4,
        device="cpu",
        output_key: str | None = None,
        allow_missing_keys: bool = False,
        per_model: int = 1,
    ) -> None:
        models, rest = divmod(len(ensure_tuple(keys)), int(per_model))
        if rest:
            raise ValueError(f"{len(ensure_tuple(keys))} member keys are not {per_model} per model.")
        ensembler = load_ensembler(model_file, models, num_classes, device)
        super().__init__(keys, LearnedEnsemble(ensembler, per_model), output_key, allow_missing_keys)
