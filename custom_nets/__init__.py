"""Vox2Vox for MONAI: networks, the conditional GAN engine, its handlers and data tools."""

from custom_nets.networks import Vox2VoxDiscriminator, Vox2VoxGenerator

__version__ = "0.1.0"
__all__ = ["Vox2VoxDiscriminator", "Vox2VoxGenerator", "__version__"]
