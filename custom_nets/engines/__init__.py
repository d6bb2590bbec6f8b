from custom_nets.engines.case_evaluators import CaseEnsembleEvaluator, CaseEvaluator
from custom_nets.engines.checkpoints import latest_checkpoint, resumable_state
from custom_nets.engines.conditional_gan_trainer import ConditionalGanTrainer
from custom_nets.engines.lock import hold_training_lock

__all__ = [
    "CaseEnsembleEvaluator",
    "CaseEvaluator",
    "ConditionalGanTrainer",
    "hold_training_lock",
    "latest_checkpoint",
    "resumable_state",
]
