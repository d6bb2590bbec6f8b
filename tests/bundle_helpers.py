"""Running the real bundle: ``python -m monai.bundle run ...`` in a subprocess from ``bundle/``."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundle"

# narrow widths and small crops: a few seconds per epoch on 2 CPU cores
TINY = {
    "roi_size": [32, 32, 32],
    "generator_channels": [4, 8, 16, 32],
    "discriminator_channels": [4, 8, 16, 32],
    "num_workers": 0,
    "sw_batch_size": 4,
}


def make_synthetic_dataset(path, num_cases, seed, num_folds=5, shape=(48, 48, 40)):
    """A synthetic BraTS 2021 dataset made by the package's own synthesizer, with its datalist; returns its path."""
    from custom_nets.data import write_datalist
    from custom_nets.data.synthetic import synthesize

    synthesize(str(path), num_cases=num_cases, seed=seed, shape=shape, progress=False)
    write_datalist(str(path), num_folds=num_folds, seed=0)
    return str(path)


def write_overrides(path, **values):
    path = Path(path)
    path.write_text(json.dumps({**TINY, **values}, indent=4))
    return str(path)


def config_list(*names):
    return "[" + ",".join(f"'{n}'" for n in names) + "]"


def bundle_command(run_id, configs, **overrides):
    cmd = [sys.executable, "-m", "monai.bundle", "run"]
    if run_id:
        cmd.append(run_id)
    cmd += ["--config_file", config_list(*configs)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    return cmd


def run_bundle(run_id, configs, timeout=600, check=True, **overrides):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        bundle_command(run_id, configs, **overrides),
        cwd=BUNDLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"bundle run failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


def train_tiny(root, data, overrides, configs=("configs/train.json",), **extra):
    """``run training`` on ``data`` with the override file: log and run record in ``root/train``, checkpoints in
    ``root/models`` (``extra`` overrides either, and adds ids)."""
    root = Path(root)
    return run_bundle(
        "training",
        [*configs, overrides],
        **{"dataset_dir": data, "output_dir": root / "train", "ckpt_dir": root / "models", **extra},
    )


def monai_bundle(*args, cwd=BUNDLE, env=None, check=True):
    """``python -m monai.bundle <args>`` in ``cwd`` (the bundle by default); a failure raises unless not ``check``."""
    env = env or {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result
