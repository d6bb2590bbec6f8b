"""glibc's allocator, tuned in-process for every entry point (``python -m monai.bundle run``, ``torchrun``, Python).

A training iteration frees and reallocates gigabytes of activations. By default glibc hands large freed blocks back to
the kernel and faults them in again on the next iteration; keeping them halves a CPU training step (measured in
``../shared/REFERENCE.md`` section 4 and by ``benchmarks/bench.py``). ``import custom_nets`` calls
``keep_freed_memory()`` once, before any large allocation of the bundle: ``mallopt`` through ``ctypes`` sets the mmap
threshold and the top pad to 1 GiB and disables trimming (about 0.5 GiB more resident memory). It does nothing
outside glibc, when ``GLIBC_TUNABLES`` already sets a ``glibc.malloc`` parameter (the Makefile's setting, or
``bench.py --live_memory``), or when ``CUSTOM_NETS_MALLOPT`` is ``0``, ``off``, ``false`` or ``no``.
"""

from __future__ import annotations

import ctypes
import os
import platform

ENV_SWITCH = "CUSTOM_NETS_MALLOPT"
# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -2, -3, -4
GIB = 1 << 30

state: dict = {"applied": False, "reason": "not called"}


def keep_freed_memory() -> dict:
    """Applies the setting once per process; returns ``state``: ``applied`` and the ``reason`` or the calls' results."""
    if state["reason"] != "not called":
        return state
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
        state["reason"] = f"{ENV_SWITCH}={os.environ[ENV_SWITCH]}"
    elif "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        state["reason"] = "GLIBC_TUNABLES sets the allocator"
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        state["reason"] = "not glibc"
    else:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
        mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
        results = {
            "M_MMAP_THRESHOLD": mallopt(M_MMAP_THRESHOLD, GIB),
            "M_TRIM_THRESHOLD": mallopt(M_TRIM_THRESHOLD, 2**31 - 1),
            "M_TOP_PAD": mallopt(M_TOP_PAD, GIB),
        }
        if not results["M_MMAP_THRESHOLD"]:  # a glibc that caps the threshold: no mmap for allocations at all
            results["M_MMAP_MAX"] = mallopt(M_MMAP_MAX, 0)
        state.update(applied=all(results.values()) or bool(results.get("M_MMAP_MAX")), reason=results)
    return state
