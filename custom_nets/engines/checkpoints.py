"""What a resumable checkpoint holds, and where the latest one is."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import zipfile

import torch

from custom_nets.engines.conditional_gan_trainer import ConditionalGanTrainer
from custom_nets.utils import refuse, unwrap_ddp

logger = logging.getLogger(__name__)


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


def unreadable(path: str) -> str | None:
    """Why a checkpoint cannot be loaded, or None: torch's zip format is opened and every member's CRC checked
    (a file cut short or with flipped bytes fails), without unpickling; another format is loaded on the CPU."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return f"member {bad} fails its CRC check" if bad else None
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zipfile, pickle and torch raise many types for damaged files
        return f"{type(error).__name__}: {error}"
    return None


def latest_checkpoint(ckpt_dir: str, prefix: str = "checkpoint") -> str:
    """The readable resumable checkpoint ``<prefix>_epoch=N.pt`` with the largest N in ``ckpt_dir``. A newer one that
    cannot be read (a copy cut short, a disk error) is named in a warning and moved aside to ``<name>.corrupt``; with
    none readable the run is refused in one line naming them."""
    pattern = re.compile(re.escape(prefix) + r"_epoch=(\d+)\.pt$")
    found = sorted(
        (
            (int(m.group(1)), p)
            for p in glob.glob(os.path.join(ckpt_dir, f"{prefix}_epoch=*.pt"))
            if (m := pattern.search(os.path.basename(p)))
        ),
        reverse=True,
    )
    if not found:
        raise FileNotFoundError(
            f"resume is set but {ckpt_dir} holds no resumable checkpoint ({prefix}_epoch=N.pt); "
            f"run without --resume to start a new training."
        )
    moved = []
    for _, path in found:
        problem = unreadable(path)
        if problem is None:
            if moved:
                logger.warning(f"resuming from {path}, the newest checkpoint that can be read")
            return path
        with contextlib.suppress(FileNotFoundError):  # another rank of the same run moved it first
            os.replace(path, path + ".corrupt")
        moved.append(path)
        logger.warning(f"checkpoint {path} cannot be read ({problem}); moved aside to {path}.corrupt")
    refuse(
        f"resume is set but no checkpoint in {ckpt_dir} can be read ({', '.join(map(os.path.basename, moved))}, "
        f"now *.corrupt); run with --resume false to start a new training."
    )
