"""Vox2Vox for MONAI: networks, the conditional GAN engine, its handlers and data tools.

``import custom_nets`` makes every submodule reachable, so a bundle config needs one ``$import custom_nets``, and keeps
freed memory in the process on glibc (``custom_nets.allocator``), the largest CPU speed lever, for every entry point.
"""

import logging
import warnings

from custom_nets.allocator import keep_freed_memory

keep_freed_memory()
# with pydicom installed (highdicom needs it) every MONAI LoadImage builds its optional GPU DICOM decoder and says,
# twice per run, that nvImageCodec is absent; the bundle's pipelines read NIfTI, DICOM is read by ITK
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register")
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)

from custom_nets import (  # noqa: E402
    allocator,
    cases,
    composition,
    data,
    engines,
    ensemble,
    handlers,
    inference,
    input_checks,
    losses,
    metrics,
    postprocessing,
    transforms,
    uncertainty,
    utils,
    visualize,
)
from custom_nets.networks import Vox2VoxDiscriminator, Vox2VoxGenerator  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Vox2VoxDiscriminator",
    "Vox2VoxGenerator",
    "__version__",
    "allocator",
    "cases",
    "composition",
    "data",
    "engines",
    "ensemble",
    "handlers",
    "inference",
    "input_checks",
    "losses",
    "metrics",
    "postprocessing",
    "transforms",
    "uncertainty",
    "utils",
    "visualize",
]
