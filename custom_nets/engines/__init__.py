from custom_nets.engines.checkpoints import latest_checkpoint, resumable_state
from custom_nets.engines.conditional_gan_trainer import ConditionalGanTrainer

__all__ = ["ConditionalGanTrainer", "latest_checkpoint", "resumable_state"]
