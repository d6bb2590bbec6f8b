"""Small helpers the bundle configs call."""

from __future__ import annotations

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", "none", ""}


def flag(value) -> bool:
    """A config switch as a bool: ``--resume true`` arrives from the command line as the string ``"true"``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected a boolean switch (true/false), got {value!r}.")


def flag_or_choice(value, choices: tuple[str, ...]) -> bool | str:
    """A config value that is a switch (see ``flag``) or one of ``choices``, e.g. ``activation_checkpointing``."""
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    try:
        return flag(value)
    except ValueError:
        raise ValueError(f"expected true, false or one of {list(choices)}, got {value!r}.") from None


def unwrap_ddp(module):
    """The module inside ``DistributedDataParallel``, or the module itself."""
    import torch

    return module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module


def sha256(path: str) -> str | None:
    """Hex digest of a file, or None when it does not exist."""
    import hashlib
    import os

    if not path or not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_main_process() -> bool:
    """True outside ``torch.distributed`` and on rank 0: handlers that write files run there only."""
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0
