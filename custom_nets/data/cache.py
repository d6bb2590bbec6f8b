"""Where the training and validation data are cached, and whether that fits, decided before training starts.

A cached BraTS case holds its deterministic transforms' output: for training the brain box of four float32
sequences with its label and tumour/brain sample indices (about 60 MB), for validation the whole normalised
240x240x155 volume (about 150 MB). 1,251 cases do not fit an ordinary machine's memory, so the default is MONAI's
``PersistentDataset`` (the deterministic transforms' output on disk, read back each epoch); ``"memory"``
(``CacheDataset``) is for data that fits, and is refused before training when it would not.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.data.utils import json_hashing

from custom_nets.utils import refuse

CACHE_KINDS = ("disk", "memory", "none")
GIB = 1024**3
logger = logging.getLogger(__name__)


def cached_dataset(
    data: Sequence[dict],
    transform: Callable,
    cache: str = "disk",
    cache_dir: str = "cache",
    cache_rate: float = 1.0,
    num_workers: int | None = 1,
) -> Dataset:
    """``PersistentDataset`` in ``cache_dir`` (``cache`` "disk"; an unreadable entry is rebuilt), ``CacheDataset``
    (``cache`` "memory", a ``cache_rate`` share of ``data``) or a plain ``Dataset`` ("none"). The disk cache's file
    names hash each case's entry and the transforms, so a changed pipeline never reads a stale cache."""
    kind = check_kind(cache)
    if kind == "disk":
        return RepairingPersistentDataset(data, transform, cache_dir=cache_dir, hash_transform=json_hashing)
    if kind == "memory":
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers)
    return Dataset(data, transform)


class RepairingPersistentDataset(PersistentDataset):
    """``PersistentDataset`` whose cache entry that cannot be read is logged with its case, removed and rebuilt from
    the case's source files. Subclassed because MONAI 1.6 rebuilds only an entry that fails to unpickle and lets a
    truncated entry (torch's zip format: ``PytorchStreamReader failed reading zip archive``) end the run."""

    def _cachecheck(self, item_transformed):
        if self.cache_dir is not None:
            name = self.hash_func(item_transformed).decode("utf-8") + self.transform_hash
            entry = self.cache_dir / f"{name}.pt"
            if entry.is_file():
                try:
                    return torch.load(entry, weights_only=self.weights_only)
                except PermissionError:
                    raise
                except Exception as error:  # a torn or damaged file: torch, zipfile and pickle raise many types
                    case = item_transformed.get("case", "?") if isinstance(item_transformed, Mapping) else "?"
                    logger.warning(
                        f"case {case}: the cache entry {entry} cannot be read ({type(error).__name__}: {error}); "
                        f"removed and rebuilt from the case's files"
                    )
                    entry.unlink(missing_ok=True)
        return super()._cachecheck(item_transformed)


def check_kind(cache: str) -> str:
    kind = str(cache).strip().lower()
    if kind not in CACHE_KINDS:
        raise ValueError(f"cache must be one of {list(CACHE_KINDS)}, got {cache!r}.")
    return kind


def nbytes(item) -> int:
    """Bytes of the arrays and tensors in a transformed item (dicts, lists and tuples are walked)."""
    if isinstance(item, torch.Tensor):
        return item.element_size() * item.nelement()
    if isinstance(item, np.ndarray):
        return int(item.nbytes)
    if isinstance(item, Mapping):
        return sum(nbytes(v) for v in item.values())
    if isinstance(item, (list, tuple)):
        return sum(nbytes(v) for v in item)
    return 0


def bytes_per_case(data: Sequence[dict], transform: Callable) -> int:
    """Bytes of the first case of ``data`` after ``transform`` (what one cached case holds); 0 without data."""
    return nbytes(transform(dict(data[0]))) if len(data) else 0


def bytes_under(folder: str) -> int:
    """Bytes of every file below ``folder``, its sub-folders included (the caches sit in ``train/``, ``validate/``)."""
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def data_plan(
    parts: Mapping[str, tuple[Sequence[dict], Callable]],
    cache: str,
    cache_dir: str,
    cache_rate: float,
    cache_memory_gib: float,
    ranks: int = 1,
) -> dict:
    """Measures one cached case of each part (e.g. ``{"training": (datalist, deterministic transforms),
    "validation": (...)}``; each datalist is this process's share), logs the plan in one line and returns it.
    Exits with code 2, naming the config ids to change, when the in-memory cache would exceed ``cache_memory_gib``
    per process or the disk cache would not fit the free space of ``cache_dir``'s disk."""
    kind = check_kind(cache)
    rows, memory, disk = [], 0.0, 0.0
    for name, (data, transform) in parts.items():
        size = bytes_per_case(data, transform) if kind != "none" else 0
        cached = len(data) * (cache_rate if kind == "memory" else 1.0)
        total = cached * size / GIB
        memory += total if kind == "memory" else 0.0
        disk += total if kind == "disk" else 0.0
        rows.append(f"{len(data)} {name} cases x {size / 1024**2:.1f} MB")
    where = {"disk": f"on disk in {cache_dir}", "memory": "in memory", "none": "not cached (read every epoch)"}[kind]
    share = f" per rank of {ranks}" if ranks > 1 else ""
    plan = {"cache": kind, "cache_dir": cache_dir, "memory_gib": memory, "disk_gib": disk, "ranks": ranks}
    logger.info(
        f"data plan{share}: {', '.join(rows)}, cached {where}; projected {memory:.1f} GiB of host memory "
        f"and {disk:.1f} GiB of disk for the cache"
    )
    if kind == "memory" and memory > float(cache_memory_gib):
        refuse(
            f"the in-memory cache would hold {memory:.1f} GiB{share} ({', '.join(rows)}, cache_rate {cache_rate}), "
            f"more than cache_memory_gib {cache_memory_gib}: set cache to 'disk' (a PersistentDataset in "
            f"cache_dir), lower cache_rate, or raise cache_memory_gib."
        )
    if kind == "disk":
        os.makedirs(cache_dir, exist_ok=True)
        free = shutil.disk_usage(cache_dir).free / GIB
        present = bytes_under(cache_dir) / GIB
        if disk - present > free:
            refuse(
                f"the disk cache needs {disk:.1f} GiB{share} in {cache_dir} ({present:.1f} GiB already there) but "
                f"its disk has {free:.1f} GiB free: set cache_dir to a larger disk, or cache to 'none'."
            )
    return plan
