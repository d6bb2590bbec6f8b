"""Faults a hostile or unlucky user meets, on real files and real processes: an image whose header claims more voxels
than any scanner writes (NIfTI, DICOM, the data CLI), a torn newest checkpoint on resume, a torn disk-cache entry,
two trainings on one checkpoint folder (a live one refuses the second; a SIGKILLed one's lock is taken over), and a
case that runs out of memory in an inference process whose address space is limited (``RLIMIT_AS``)."""

import json
import os
import signal
import socket
import subprocess
import sys

import itk
import numpy as np
import pytest
import torch

from custom_nets import Vox2VoxGenerator
from custom_nets.data import DataError
from custom_nets.data.synthetic import brats_affine, synthesize_case
from custom_nets.dicom.convert import convert_case
from custom_nets.engines.checkpoints import unreadable
from tests.bundle_helpers import (
    BUNDLE,
    ROOT,
    TINY,
    bundle_command,
    make_synthetic_dataset,
    run_bundle,
    train_tiny,
    write_overrides,
)
from tests.dicom_helpers import itk_volume, write_series
from tests.test_batch_faults import SHAPE, write_bomb, write_case


def cut(path, keep=0.5):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("outside_faults"), num_cases=5, seed=11)


def test_the_data_cli_refuses_a_bomb_from_its_header_and_the_budget_is_an_option(tmp_path):
    images, labels = synthesize_case(3, 0, SHAPE)
    write_case(tmp_path, "BraTS2021_00000", images, brats_affine(SHAPE), labels)
    write_case(tmp_path, "BraTS2021_00001", images, brats_affine(SHAPE), labels)
    bomb = tmp_path / "BraTS2021_00001" / "BraTS2021_00001_t1.nii.gz"
    write_bomb(bomb, brats_affine(SHAPE))
    command = [sys.executable, "-m", "custom_nets.data", "datalist", str(tmp_path), "--num_folds", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"refused: case BraTS2021_00001: {bomb} holds 1024x1024x768 = 805,306,368 voxels")
    # a budget below a healthy case's 40x48x32 = 61,440 voxels refuses it by the same check
    os.remove(bomb)
    write_case(tmp_path, "BraTS2021_00001", {"t1": images["t1"]}, brats_affine(SHAPE))
    small = subprocess.run([*command, "--max_voxels_per_image", "60000"], capture_output=True, text=True, env=env)
    assert small.returncode == 2 and "40x48x32 = 61,440 voxels, more than max_voxels_per_image 60,000" in small.stderr
    assert subprocess.run(command, capture_output=True, text=True, env=env).returncode == 0


def test_a_dicom_series_over_the_budget_is_refused_before_its_pixels_are_read(tmp_path):
    voxels = np.random.default_rng(0).uniform(0, 500, (24, 20, 12))  # i, j, k
    image = itk_volume(voxels, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), np.eye(3))
    write_series(image, str(tmp_path / "case" / "flair"), "AX FLAIR", "1.2.826.0.1.3680043.8.498.77", 3)
    with pytest.raises(DataError) as refused:
        convert_case("case", str(tmp_path / "case"), ["flair"], "flair", str(tmp_path / "work"), max_voxels=5000)
    assert str(refused.value).startswith("case case: the flair series 'AX FLAIR' (series 3, ")
    assert "holds 24x20x12 = 5,760 voxels, more than max_voxels_per_image 5,000" in str(refused.value)
    assert not (tmp_path / "work").exists()  # nothing read, nothing written
    paths, _ = convert_case("case", str(tmp_path / "case"), ["flair"], "flair", str(tmp_path / "work"))
    assert tuple(itk.size(itk.imread(paths[0]))) == (24, 20, 12)


def test_resume_moves_a_torn_newest_checkpoint_aside_and_continues_from_the_one_before(data, tmp_path):
    ckpt = tmp_path / "models"
    train_tiny(tmp_path, data, write_overrides(tmp_path / "one.json", epochs=1))
    best = (ckpt / "model.pt").read_bytes()
    torn = ckpt / "checkpoint_epoch=2.pt"
    torn.write_bytes((ckpt / "checkpoint_epoch=1.pt").read_bytes())
    cut(torn)  # the newest, as a copy interrupted halfway leaves it
    assert unreadable(str(torn)) and unreadable(str(ckpt / "checkpoint_epoch=1.pt")) is None
    # no validation in the resumed epoch, so model.pt is left as it is
    two = write_overrides(tmp_path / "two.json", epochs=2, val_interval=10)
    result = train_tiny(tmp_path, data, two, resume="true")
    log = result.stdout + result.stderr
    assert f"checkpoint {torn} cannot be read (" in log and f"moved aside to {torn}.corrupt" in log
    assert f"resuming from {ckpt / 'checkpoint_epoch=1.pt'}, the newest checkpoint that can be read" in log
    assert "Epoch: 2/2, Iter: 1/4" in log and "Epoch: 1/2" not in log
    assert torch.load(torn, weights_only=True)["trainer"]["iteration"] == 8  # 4 training cases x 2 epochs
    assert (ckpt / "checkpoint_epoch=2.pt.corrupt").exists() and (ckpt / "model.pt").read_bytes() == best
    # none readable: one line naming them, and how to start afresh
    names = sorted((p.name for p in ckpt.glob("checkpoint_epoch=*.pt")), reverse=True)
    for name in names:
        cut(ckpt / name)
    refused = train_tiny(tmp_path, data, two, resume="true", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == (
        f"refused: resume is set but no checkpoint in {ckpt} can be read ({', '.join(names)}, now *.corrupt); "
        f"run with --resume false to start a new training."
    )


def test_a_torn_disk_cache_entry_is_rebuilt_and_the_training_finishes(data, tmp_path):
    overrides = write_overrides(tmp_path / "one.json", epochs=1)
    train_tiny(tmp_path, data, overrides)
    entries = sorted((tmp_path / "train" / "cache" / "train").glob("*.pt"))
    assert len(entries) == 4  # MONAI's PersistentDataset: one file per training case
    whole = entries[1].stat().st_size
    cut(entries[1], keep=1 / 3)
    result = train_tiny(tmp_path, data, overrides, ckpt_dir=tmp_path / "again")
    log = result.stdout + result.stderr
    assert (
        f"the cache entry {entries[1]} cannot be read (" in log and "removed and rebuilt from the case's files" in log
    )
    assert entries[1].stat().st_size == whole and torch.load(entries[1], weights_only=False)["image"].ndim == 4
    assert (tmp_path / "again" / "checkpoint_epoch=1.pt").exists()


def hold_lock(ckpt, then: str) -> subprocess.Popen:
    """A process that takes ``ckpt``'s training lock, says "held", then runs ``then``."""
    code = (
        f"from custom_nets.engines import hold_training_lock; hold_training_lock({str(ckpt)!r}); "
        f"print('held', flush=True); {then}"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_one_training_per_checkpoint_folder_and_a_killed_ones_lock_is_taken_over(data, tmp_path):
    ckpt = tmp_path / "models"
    overrides = write_overrides(tmp_path / "one.json", epochs=1)
    ended = hold_lock(ckpt, "pass")
    assert ended.wait(timeout=120) == 0 and (ckpt / "training.lock").read_text() == ""  # emptied at a normal exit
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), ckpt / "model.pt")
    holder = hold_lock(ckpt, "import time; time.sleep(600)")
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = train_tiny(tmp_path, data, overrides, check=False)
        assert refused.returncode == 2 and "Epoch" not in refused.stdout + refused.stderr
        line = refused.stderr.strip().splitlines()[-1]
        assert line.startswith(f"refused: {ckpt} is in use by another training: pid {holder.pid} on ")
        assert socket.gethostname() in line and "give this run another --ckpt_dir" in line
        assert not (ckpt / "checkpoint_epoch=1.pt").exists()
        # evaluation reads the folder while the lock is held
        run_bundle(
            "evaluating",
            ["configs/train.json", "configs/evaluate.json", overrides],
            dataset_dir=data,
            ckpt_dir=ckpt,
            output_dir=tmp_path / "eval",
        )
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    taker = hold_lock(ckpt, "pass")
    assert taker.wait(timeout=120) == 0 and taker.stdout.read().strip() == "held"
    warning = f"taking over the lock of a training that is no longer running (pid {holder.pid} on "
    assert warning in taker.stderr.read()


# runs `python -m monai.bundle ...` with its address space limited to what it has mapped after importing torch, MONAI
# and the package, plus LIMIT MiB: one intra-op thread and one malloc arena, so that the limit is the tensors' alone
MEMORY_LIMITED = """
import resource, runpy, sys
import torch, monai, custom_nets
torch.set_num_threads(1)
mapped = next(int(line.split()[1]) // 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
limit = (mapped + int(sys.argv[1])) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["monai.bundle", *sys.argv[2:]]
runpy.run_module("monai.bundle", run_name="__main__")
"""


def run_memory_limited(tmp_path, limit_mib, data, model, channels, sw_batch_size):
    script = tmp_path / "memory_limited.py"
    script.write_text(MEMORY_LIMITED)
    overrides = write_overrides(tmp_path / f"{limit_mib}.json", roi_size=[64, 64, 64], generator_channels=channels)
    command = bundle_command(
        None,
        ["configs/inference.json", overrides],
        dataset_dir=data,
        output_dir=tmp_path / f"out{limit_mib}",
        model_files=f"['{model}']",
        sw_batch_size=sw_batch_size,
        save_png="false",
    )
    # glibc's default allocator (the Makefile's GLIBC_TUNABLES and the package's mallopt keep freed blocks mapped,
    # which moves the address space a case needs away from what the limit assumes)
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env.update(PYTHONPATH=str(ROOT), CUSTOM_NETS_MALLOPT="0", MALLOC_ARENA_MAX="1")
    result = subprocess.run(
        [sys.executable, str(script), str(limit_mib), *command[3:]],
        cwd=BUNDLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    record = tmp_path / f"out{limit_mib}" / "inference_summary.json"
    return result, json.load(open(record)) if record.exists() else None


@pytest.fixture(scope="module")
def two_sizes(tmp_path_factory):
    """Two small cases (one 64^3 window) around a 128x128x96 one (27 windows), in that order."""
    root = tmp_path_factory.mktemp("memory")
    for case, shape in (("BraTS2021_00000", SHAPE), ("BraTS2021_00001", (128, 128, 96)), ("BraTS2021_00002", SHAPE)):
        images, _ = synthesize_case(5, 0, shape)
        write_case(root / "data", case, images, brats_affine(shape))
    return root / "data"


def test_a_case_out_of_memory_in_the_forward_is_run_again_one_window_at_a_time(two_sizes, tmp_path):
    channels = [16, 32, 64, 128]
    torch.manual_seed(0)
    torch.save(Vox2VoxGenerator(4, 4, channels=channels).state_dict(), tmp_path / "model.pt")
    # 16 windows of the large case at once need about 0.6 GiB; one at a time about 0.2 GiB
    result, record = run_memory_limited(tmp_path, 300, two_sizes, tmp_path / "model.pt", channels, 16)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "BraTS2021_00001: out of memory with sw_batch_size 16 (RuntimeError: " in result.stdout + result.stderr
    assert record["summary"] == {"written": 3, "skipped": 0, "left": 0}
    assert record["cases"]["BraTS2021_00001"]["retried"] == (
        "out of memory with sw_batch_size 16; ran one window at a time"
    )
    assert "retried" not in record["cases"]["BraTS2021_00000"]


def test_a_case_out_of_memory_twice_is_skipped_with_both_reasons_and_the_run_goes_on(two_sizes, tmp_path):
    channels = [32, 64, 128, 256]
    torch.manual_seed(0)
    torch.save(Vox2VoxGenerator(4, 4, channels=channels).state_dict(), tmp_path / "wide.pt")
    # the wide network's 80 MB of weights fit; one 64^3 window of its forward does not
    result, record = run_memory_limited(tmp_path, 260, two_sizes, tmp_path / "wide.pt", channels, 4)
    assert result.returncode == 1 and record is not None, result.stderr[-3000:]
    assert record["summary"] == {"written": 0, "skipped": 3, "left": 0}
    for case in ("BraTS2021_00000", "BraTS2021_00002"):  # before and after the large case
        reason = record["cases"][case]["reason"]
        assert reason.startswith(f"case {case}: out of memory in the network's forward with sw_batch_size 4 (")
        assert ") and again one window at a time stitched on the host (RuntimeError: " in reason
    assert "Traceback" not in result.stderr
