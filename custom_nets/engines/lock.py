"""One training per checkpoint folder: ``<ckpt_dir>/training.lock``, held with ``flock`` for the life of the process.

The kernel drops an ``flock`` when its process ends, however it ends (a SIGKILL, an out-of-memory kill), so a lock
file a dead run left behind is taken over, not obeyed (and named in a warning); the file names the holder (host,
pid, start, command) for the message a second run prints, and is emptied when its run exits normally. ``flock`` also
works across the clients of an NFSv4 share. Evaluation and inference only read the folder and never take the lock.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import socket
import sys
import time

from custom_nets.utils import refuse

LOCK_NAME = "training.lock"
logger = logging.getLogger(__name__)
_held: dict[str, int] = {}  # lock path -> open descriptor: the lock lasts as long as the descriptor


def _holder(path: str) -> str:
    try:
        with open(path) as f:
            held = json.load(f)
        return f"pid {held['pid']} on {held['host']}, started {held['started']} ({held['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "a run whose lock file cannot be read"


def hold_training_lock(ckpt_dir: str) -> str | None:
    """Takes ``<ckpt_dir>/training.lock`` for this process (rank 0 of a distributed run; the others return None), or
    refuses the run in one line naming the live training that holds it. Returns the lock file's path."""
    if int(os.environ.get("RANK", "0")) != 0:
        return None
    os.makedirs(ckpt_dir, exist_ok=True)
    path = os.path.abspath(os.path.join(ckpt_dir, LOCK_NAME))
    if path in _held:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        refuse(
            f"{ckpt_dir} is in use by another training: {_holder(path)}; wait for it to end, give this run another "
            f"--ckpt_dir, or stop that one (its lock ends with its process)."
        )
    if os.fstat(fd).st_size:
        logger.warning(f"{path}: taking over the lock of a training that is no longer running ({_holder(path)})")
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[path] = fd
    atexit.register(_release, path)
    return path


def _release(path: str) -> None:
    """At a normal exit: the lock file emptied (so the next run has no holder to report) and unlocked."""
    fd = _held.pop(path, None)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.close(fd)
