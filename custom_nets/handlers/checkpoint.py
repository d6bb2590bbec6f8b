"""MONAI's CheckpointSaver, writing every file atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver


class _AtomicDiskSaver(DiskSaver):
    """Writes to a temporary file in the target folder and renames it, so a killed run never leaves a torn file."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        filename = self.filename or filename
        super().__call__(checkpoint=checkpoint, filename=filename, metadata=metadata)
        os.chmod(os.path.join(self.dirname, filename), 0o644)  # atomic saves are created 0600

    def remove(self, filename: str) -> None:
        super().remove(filename=self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` (same arguments) whose files are written atomically, and whose key-metric
    record (the best score and its file) is part of a resumable checkpoint: ``state_dict()`` here, MONAI's
    ``load_state_dict()`` on resume. MONAI's saver keeps that record in memory only, so the first validation after a
    resume would replace the best model whatever its score."""

    def __init__(self, save_dir: str, save_dict: dict, *args, **kwargs) -> None:
        super().__init__(save_dir, save_dict, *args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, fixed_name)

    def state_dict(self) -> dict:
        if self._key_metric_checkpoint is None:
            return {}
        return self._key_metric_checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            super().load_state_dict(state_dict)
