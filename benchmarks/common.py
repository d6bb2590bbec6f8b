"""What every measurement shares: peak memory, device synchronisation, the machine's matmul rate, and running a
measurement in a fresh process so that its peak memory is its own."""

from __future__ import annotations

import multiprocessing as mp
import os
import resource
import time

import torch

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundle")
# every allocation of 64 KiB or more gets its own mapping, returned to the system when freed, so that peak resident
# memory follows what is allocated (CUDA's max_memory_allocated counts the same); children read it at their start
LIVE_MEMORY_TUNABLES = "glibc.malloc.mmap_threshold=65536"


def peak_memory_gib(device: torch.device) -> float:
    """Peak allocated memory (CUDA) or peak resident memory of this process (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def memory_format(args) -> torch.memory_format:
    return torch.channels_last_3d if args.channels_last else torch.contiguous_format


def amp_dtype(args) -> torch.dtype | None:
    """``--amp_dtype`` as a torch dtype; None leaves the device's default (float16 on CUDA, bfloat16 elsewhere)."""
    return getattr(torch, args.amp_dtype) if args.amp_dtype else None


def run_child(target, args, *extra, env: dict | None = None):
    """``target(args, queue, *extra)`` in a fresh (spawned) process, with ``env`` added to its environment."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(args, queue, *extra))
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:  # queue.Empty: keep waiting while the child lives
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__} failed (exit code {process.exitcode}); see above") from None
    process.join()
    return result
