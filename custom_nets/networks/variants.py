"""The networks' three variants and the norm and activation specs each uses when a network is not given others."""

from __future__ import annotations

VARIANTS = ("vox2vox", "paper", "reference")
DEFAULT = "default"  # a norm, act or up_act argument meaning "the variant's own"

# Keras' defaults (tensorflow-addons InstanceNormalization, LeakyReLU): the authors' TensorFlow networks
PAPER_NORM = ("instance", {"affine": True, "eps": 1e-3})
PAPER_ACT = ("leakyrelu", {"negative_slope": 0.3, "inplace": True})

_SPECS = {
    "pix2pix": {
        "norm": ("instance", {"affine": False}),
        "act": ("leakyrelu", {"negative_slope": 0.2, "inplace": True}),
        "up_act": ("relu", {"inplace": True}),
    },
    "paper": {"norm": PAPER_NORM, "act": PAPER_ACT, "up_act": PAPER_ACT},
}


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    return variant


def variant_spec(variant: str, role: str, value):
    """``value`` unless it is ``DEFAULT``; then the ``role`` ("norm", "act", "up_act") spec of ``variant``:
    the paper's Keras defaults for ``"paper"``, pix2pix's for ``"vox2vox"`` and ``"reference"``."""
    if not isinstance(value, str) or value != DEFAULT:
        return value
    return _SPECS["paper" if variant == "paper" else "pix2pix"][role]
