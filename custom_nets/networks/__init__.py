from custom_nets.networks.discriminator import Vox2VoxDiscriminator
from custom_nets.networks.ensembler import LearnedEnsembler, StackedEnsemble
from custom_nets.networks.generator import Vox2VoxGenerator

__all__ = ["LearnedEnsembler", "StackedEnsemble", "Vox2VoxDiscriminator", "Vox2VoxGenerator"]
