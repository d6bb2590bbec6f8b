"""A task other than BraTS 2021 through the real bundle: post-treatment glioma (``gli``, a resection cavity: the
runnable block of docs/tasks.md, as a user runs it) and meningioma radiotherapy targets (``men-rt``: one T1c of an
unstripped head on native anisotropic grids), synthesized, listed, trained, evaluated and segmented with
``python -m monai.bundle``."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from custom_nets.data import write_datalist
from custom_nets.data.synthetic import synthesize
from tests.bundle_helpers import ROOT, run_bundle, train_tiny, write_overrides
from tests.docs_helpers import run_runnable_blocks

EXPECTED = {  # classes, input channels, regions, stored values
    "gli": (5, 4, ["netc", "snfh", "et", "rc", "tc", "wt"], {0, 1, 2, 3, 4}),
    "men-rt": (2, 1, ["gtv"], {0, 1}),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def task_run(request, tmp_path_factory):
    """The run's folders: ``data``, ``models``, ``train``, ``eval`` (with predictions) and ``infer``."""
    task = request.param
    root = tmp_path_factory.mktemp(f"task_{task}")
    if task == "gli":  # docs/tasks.md's first run, exactly as written
        run_runnable_blocks(ROOT / "docs" / "tasks.md", root)
        runs = root / "bundle" / "runs"
        return task, {
            "data": root / "demo" / "gli",
            "models": root / "bundle" / "models",
            "train": runs / "train",
            "eval": runs / "evaluate",
            "infer": runs / "inference",
        }
    data = root / "data"
    synthesize(str(data), num_cases=4, seed=3, shape=(48, 48, 40), task=task, progress=False)
    write_datalist(str(data), num_folds=2, seed=0)  # the task comes from the case ids
    overrides = write_overrides(root / "tiny.json", epochs=1)
    train_tiny(root, data, overrides)
    run_bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", overrides],
        dataset_dir=data,
        ckpt_dir=root / "models",
        output_dir=root / "eval",
        save_predictions="true",
    )
    run_bundle(
        None,
        ["configs/inference.json", overrides],
        dataset_dir=data,
        ckpt_dir=root / "models",
        output_dir=root / "infer",
        task=task,
    )
    return task, {name: root / name for name in ("data", "models", "train", "eval", "infer")}


def test_training_follows_the_task(task_run):
    task, paths = task_run
    classes, channels, regions, _ = EXPECTED[task]
    state = torch.load(paths["models"] / "model.pt", map_location="cpu", weights_only=True)
    weights = [k for k in state if k.endswith("weight") and state[k].ndim == 5]
    assert state[weights[0]].shape[1] == channels  # the first convolution reads the task's sequences
    assert classes in state[weights[-1]].shape[:2]  # background and the task's classes
    config = json.load(open(paths["train"] / "config.json"))  # the run record
    recorded = json.dumps(config)
    assert f'"name": "{task}"' in recorded
    assert all(f'"{r}"' in recorded for r in regions)


def test_evaluation_and_inference_follow_the_task(task_run):
    task, paths = task_run
    with open(paths["eval"] / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    _, _, regions, stored = EXPECTED[task]
    for region in regions:
        for metric in ("dice", "hd95", "lesion_dice", "lesion_hd95", "lesion_tp", "sensitivity"):
            assert f"{metric}_{region}" in columns
    assert len(rows) == 2  # the held-out fold
    summary = json.load(open(paths["eval"] / "summary.json"))
    assert summary["config"]["task"]["name"] == task and f"task {task}" in summary["conventions"]
    # predictions and inference outputs are in the task's stored values, on each case's own grid and header
    for folder in (paths["eval"] / "predictions", paths["infer"]):
        written = sorted(p for p in folder.glob("*.nii.gz") if "_uncertainty" not in p.name)
        assert written, folder
        for path in written:
            output = nib.load(path)
            case = path.name[: -len(".nii.gz")]
            source = nib.load(next((paths["data"] / case).glob("*.nii.gz")))
            assert output.shape == source.shape and np.allclose(output.affine, source.affine), path
            assert set(np.unique(np.asanyarray(output.dataobj)).tolist()) <= stored
    record = json.load(open(paths["infer"] / "inference_summary.json"))
    assert all(case["status"] == "written" for case in record["cases"].values())


@pytest.mark.parametrize("task_run", ["men-rt"], indirect=True)
def test_men_rt_runs_on_native_anisotropic_grids(task_run):
    _, paths = task_run
    spacings = {tuple(np.round(nib.load(p).header.get_zooms(), 2)) for p in paths["data"].glob("*/*_t1c.nii.gz")}
    assert len(spacings) >= 2 and any(s[2] >= 3.0 for s in spacings)  # anisotropic native grids, written back
    with open(paths["eval"] / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["hd95_gtv"]) >= 0 and 0 <= float(row["dice_gtv"]) <= 1
    with open(paths["infer"] / "volumes.csv") as f:
        assert "GTV_ml" in next(csv.reader(f))
    assert sorted(p.name for p in paths["infer"].glob("*.png"))  # one picture per case
