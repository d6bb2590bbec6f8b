import hashlib
import json
import os
import subprocess
import sys
import sysconfig

import numpy as np
import pytest
import torch

from custom_nets import Vox2VoxGenerator
from tests.bundle_helpers import BUNDLE, ROOT, TINY, config_list, make_synthetic_dataset, monai_bundle, write_overrides

TINY_CHANNELS = tuple(TINY["generator_channels"])


def test_metadata_holds_the_task_and_a_broken_one_fails(tmp_path):
    """(The Zoo's verify_metadata and verify_net_in_out of the shipped configs: docs/export.md's runnable block, run by
    tests/test_docs.py.)"""
    meta = json.load(open(BUNDLE / "configs" / "metadata.json"))
    assert meta["version"] in meta["changelog"]
    assert meta["network_data_format"]["inputs"]["image"]["channel_def"] == {
        "0": "FLAIR",
        "1": "T1",
        "2": "T1ce",
        "3": "T2",
    }
    broken = dict(meta)
    del broken["task"]
    broken["network_data_format"]["inputs"]["image"]["num_channels"] = "four"
    (tmp_path / "metadata.json").write_text(json.dumps(broken))
    result = monai_bundle(
        "verify_metadata",
        "--meta_file",
        tmp_path / "metadata.json",
        "--filepath",
        BUNDLE / "docs" / "meta_schema.json",
        check=False,
    )
    assert result.returncode != 0 and "'task' is a required property" in result.stdout + result.stderr


def test_torchscript_export_of_the_default_network_matches_eager(tmp_path):
    torch.manual_seed(0)
    net = Vox2VoxGenerator(4, 4).eval()  # the default widths, as configs/inference.json builds it
    torch.save(net.state_dict(), tmp_path / "model.pt")
    monai_bundle(
        "ckpt_export",
        "network_def",
        "--filepath",
        tmp_path / "model.ts",
        "--ckpt_file",
        tmp_path / "model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        "configs/inference.json",
    )
    scripted = torch.jit.load(tmp_path / "model.ts")
    x = torch.randn(1, 4, 32, 48, 32)
    with torch.no_grad():
        assert (scripted(x) - net(x)).abs().max().item() < 1e-5


def test_onnx_export_matches_eager(tmp_path):
    import onnxruntime

    torch.manual_seed(0)
    net = Vox2VoxGenerator(4, 4, channels=TINY_CHANNELS).eval()
    torch.save(net.state_dict(), tmp_path / "model.pt")
    overrides = write_overrides(tmp_path / "tiny.json")
    monai_bundle(
        "onnx_export",
        "network_def",
        "--filepath",
        tmp_path / "model.onnx",
        "--ckpt_file",
        tmp_path / "model.pt",
        "--meta_file",
        "configs/metadata.json",
        "--config_file",
        config_list("configs/inference.json", overrides),
        "--input_shape",
        "[1, 4, 64, 64, 64]",
    )
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    x = torch.randn(1, 4, 64, 64, 64)
    (output,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.abs(output - net(x).numpy()).max() < 1e-4


def isolated_python(tmp_path):
    """A Python whose site-packages sees MONAI and its dependencies but not this package: a venv whose only entry is
    the project venv's site-packages directory, added without running its .pth files (the editable install)."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", env_dir], check=True)
    site = subprocess.run(
        [env_dir / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(os.path.join(site, "project_deps.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    return env_dir / "bin" / "python"


def test_self_contained_bundle_runs_from_a_fresh_directory(tmp_path):
    """The package script's release (a ``file://`` URL), fetched by ``monai.bundle download`` and
    ``download_large_files`` in an environment without the package, trains, evaluates and infers."""
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY_CHANNELS).state_dict(), tmp_path / "weights.pt")
    release_url = f"file://{tmp_path / 'dist' / 'release'}"
    packed = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "package_bundle.py"), "--output_dir", tmp_path / "dist"]
        + ["--weights", tmp_path / "weights.pt", "--release_url", release_url],
        check=True,
        capture_output=True,
        text=True,
    )
    assert f"release assets to upload to {release_url}" in packed.stdout
    assert (tmp_path / "dist" / "brats_mri_vox2vox.zip").is_file()
    assert "large_files: []" in (BUNDLE / "large_files.yml").read_text()  # the repository promises no download
    assert json.loads((BUNDLE / "configs" / "metadata.json").read_text())["eval_metrics"] == {}
    python = isolated_python(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    elsewhere = tmp_path / "elsewhere"
    for command in (
        ["download", "--name", "brats_mri_vox2vox", "--url", f"{release_url}/brats_mri_vox2vox.zip"]
        + ["--bundle_dir", elsewhere],
        ["download_large_files", "--bundle_path", elsewhere / "brats_mri_vox2vox"],
    ):
        fetched = subprocess.run([python, "-m", "monai.bundle", *map(str, command)], env=env, capture_output=True)
        assert fetched.returncode == 0, fetched.stderr[-3000:]
    fresh = elsewhere / "brats_mri_vox2vox"
    weights_sha = hashlib.sha256((tmp_path / "weights.pt").read_bytes()).hexdigest()
    assert hashlib.sha256((fresh / "models" / "model.pt").read_bytes()).hexdigest() == weights_sha
    for name in (
        "configs/train.json",
        "configs/inference.json",
        "LICENSE",
        "large_files.yml",
        "docs/README.md",
        "docs/data_license.txt",
        "models/model.pt",
        "custom_nets/__init__.py",
    ):
        assert (fresh / name).exists(), name
    data = make_synthetic_dataset(tmp_path / "data", num_cases=5, seed=2)
    outside = subprocess.run([python, "-c", "import custom_nets"], cwd=tmp_path, env=env, capture_output=True)
    assert outside.returncode != 0, "custom_nets must not be installed in the isolated environment"
    inside = subprocess.run(
        [python, "-c", "import custom_nets; print(custom_nets.__file__)"],
        cwd=fresh,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert inside.stdout.strip().startswith(str(fresh))
    overrides = write_overrides(tmp_path / "tiny.json", epochs=1)

    def run(*args):
        result = subprocess.run(
            [python, "-m", "monai.bundle", "run", *map(str, args)],
            cwd=fresh,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-5000:]

    run("training", "--config_file", config_list("configs/train.json", overrides), "--dataset_dir", data)
    run(
        "evaluating",
        "--config_file",
        config_list("configs/train.json", "configs/evaluate.json", overrides),
        "--dataset_dir",
        data,
    )
    run(
        "--config_file",
        config_list("configs/inference.json", overrides),
        "--dataset_dir",
        data,
        "--output_dir",
        tmp_path / "predictions",
    )
    assert (fresh / "runs" / "evaluate" / "metrics.csv").is_file()
    assert len(list((tmp_path / "predictions").glob("*.nii.gz"))) == 5


@pytest.mark.parametrize(
    "task, configs, logged_once, in_channels, checkpointing",
    [
        ("segmentation", ["configs/train.json"], "Epoch[2] Metrics -- val_dice_et", 4, "false"),
        ("synthesis", ["configs/train.json", "configs/synthesis.json"], "Epoch[2] Metrics -- val_mae", 3, "network"),
    ],
)
def test_two_process_training_with_torchrun(tmp_path, task, configs, logged_once, in_channels, checkpointing):
    data = make_synthetic_dataset(tmp_path / "data", num_cases=6, seed=4, num_folds=3)  # 2 validation cases: 1 per rank
    overrides = write_overrides(tmp_path / "tiny.json", epochs=2, d_threshold=0.5)
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [
        torchrun,
        "--standalone",  # a free port of its own: tests may run side by side
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--config_file",
        config_list(*configs, "configs/multi_gpu_train.json", overrides),
        "--dataset_dir",
        data,
        "--ckpt_dir",
        tmp_path / "models",
        "--output_dir",
        tmp_path / "out",
        "--activation_checkpointing",  # the generator's recomputation under DistributedDataParallel
        checkpointing,
    ]
    result = subprocess.run(
        list(map(str, cmd)),
        cwd=BUNDLE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert log.count(logged_once) == 1  # validation metrics logged once, by rank 0
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert next(iter(state)) == "down1.model.0.weight"  # the generator itself, not the DDP wrapper
    assert state["down1.model.0.weight"].shape[1] == in_channels
    checkpoint = torch.load(tmp_path / "models" / "checkpoint_epoch=2.pt", weights_only=True)
    assert checkpoint["trainer"]["iteration"] == 4  # 4 training cases split over 2 ranks, 2 epochs
