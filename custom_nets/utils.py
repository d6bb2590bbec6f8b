"""Small helpers the bundle configs call, and the atomic file writes every writer uses."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator

# temporary files are hidden (dataset scans skip dot files) and keep the final name's extension (nibabel and
# matplotlib choose the format by it)
PARTIAL_PREFIX = ".partial-"

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


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in ``path``'s folder to write to; when the block ends it is renamed to ``path``
    (``os.replace``, atomic on one file system), or removed if the block raised. A process killed at any instant
    leaves the previous ``path`` or the whole new one, and at most a ``.partial-*`` file (see ``remove_partials``)."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f"{PARTIAL_PREFIX}{os.getpid()}-{name}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def write_json(path: str, value, **kwargs) -> str:
    """``json.dump`` (4-space indent) to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temporary, open(temporary, "w") as f:
        json.dump(value, f, indent=4, default=str, **kwargs)
    return path


def write_text(path, text: str) -> str:
    """``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(str(path)) as temporary, open(temporary, "w") as f:
        f.write(text)
    return str(path)


def remove_partials(folder: str) -> list[str]:
    """Removes what a killed writer left of its temporary files in ``folder``; returns their names."""
    if not os.path.isdir(folder):
        return []
    left = [n for n in os.listdir(folder) if n.startswith(PARTIAL_PREFIX)]
    for name in left:
        path = os.path.join(folder, name)
        if os.path.isdir(path):  # a series folder written under a temporary name
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(path)
    return left


def save_nifti(image, path: str) -> str:
    """``nibabel.save`` of ``image`` to ``path`` atomically; returns ``path``."""
    import nibabel as nib

    with atomic_path(path) as temporary:
        nib.save(image, temporary)
    return path


def refusing(function):
    """A command-line entry point whose refusals (``ValueError``, which ``DataError`` and ``TaskError`` are, and a
    missing file) are one line on stderr with exit code 2, never a traceback; its return value is not printed (fire
    would print it)."""
    import functools

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            function(*args, **kwargs)
        except (ValueError, FileNotFoundError) as error:
            refuse(str(error).replace("\n", " "))

    return run


def refuse(message: str) -> None:
    """Stops a run before any work: ``refused: <message>`` on stderr and exit code 2."""
    import sys

    print(f"refused: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
