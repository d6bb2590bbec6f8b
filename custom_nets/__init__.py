"""Vox2Vox for MONAI: networks, the conditional GAN engine, its handlers and data tools.

``import custom_nets`` makes every submodule reachable, so a bundle config needs one ``$import custom_nets``.
"""

from custom_nets import (
    cases,
    composition,
    data,
    engines,
    handlers,
    inference,
    losses,
    metrics,
    transforms,
    utils,
    visualize,
)
from custom_nets.networks import Vox2VoxDiscriminator, Vox2VoxGenerator

__version__ = "0.1.0"
__all__ = [
    "Vox2VoxDiscriminator",
    "Vox2VoxGenerator",
    "__version__",
    "cases",
    "composition",
    "data",
    "engines",
    "handlers",
    "inference",
    "losses",
    "metrics",
    "transforms",
    "utils",
    "visualize",
]
