"""What a resumable checkpoint holds, and where the latest one is."""

from __future__ import annotations

import glob
import os
import re

from custom_nets.engines.conditional_gan_trainer import ConditionalGanTrainer
from custom_nets.utils import unwrap_ddp


def resumable_state(trainer: ConditionalGanTrainer) -> dict:
    """Objects saved each epoch and restored by ``resume``: both networks, both optimizers, the trainer's epoch and
    iteration, and the AMP gradient scaler when it is in use."""
    state = {
        "generator": unwrap_ddp(trainer.network),
        "discriminator": unwrap_ddp(trainer.discriminator),
        "g_optimizer": trainer.optimizer,
        "d_optimizer": trainer.d_optimizer,
        "trainer": trainer,
    }
    if trainer.scaler.is_enabled():
        state["scaler"] = trainer.scaler
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
