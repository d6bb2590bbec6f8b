"""What a resumable checkpoint holds, and where the latest one is."""

from __future__ import annotations

import glob
import os
import re

from custom_nets.engines.conditional_gan_trainer import ConditionalGanTrainer
from custom_nets.utils import unwrap_ddp


def resumable_state(trainer: ConditionalGanTrainer, best_model_saver=None) -> dict:
    """Objects saved each epoch and restored by ``resume``: both networks, both optimizers, the trainer's epoch and
    iteration, the AMP gradient scaler when it is in use, and the best key metric that ``best_model_saver`` (the
    validator's ``AtomicCheckpointSaver`` of ``model.pt``) has seen, so that a resumed run replaces ``model.pt`` only
    with a better model."""
    state = {
        "generator": unwrap_ddp(trainer.network),
        "discriminator": unwrap_ddp(trainer.discriminator),
        "g_optimizer": trainer.optimizer,
        "d_optimizer": trainer.d_optimizer,
        "trainer": trainer,
    }
    if trainer.scaler.is_enabled():
        state["scaler"] = trainer.scaler
    if best_model_saver is not None:
        state["best_model"] = best_model_saver
    return state


def latest_checkpoint(ckpt_dir: str, prefix: str = "checkpoint") -> str:
    """The resumable checkpoint ``<prefix>_epoch=N.pt`` with the largest N in ``ckpt_dir``."""
    pattern = re.compile(re.escape(prefix) + r"_epoch=(\d+)\.pt$")
    found = [
        (int(m.group(1)), p)
        for p in glob.glob(os.path.join(ckpt_dir, f"{prefix}_epoch=*.pt"))
        if (m := pattern.search(os.path.basename(p)))
    ]
    if not found:
        raise FileNotFoundError(
            f"resume is set but {ckpt_dir} holds no resumable checkpoint ({prefix}_epoch=N.pt); "
            f"run without --resume to start a new training."
        )
    return max(found)[1]
