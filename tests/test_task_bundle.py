"""A task other than BraTS 2021 through the real bundle: post-treatment glioma (``gli``, a resection cavity) and the
paediatric scheme (``ped``), synthesized, listed, trained, evaluated and segmented with ``python -m monai.bundle``."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch

from custom_nets.data import write_datalist
from custom_nets.data.synthetic import synthesize
from tests.bundle_helpers import run_bundle, train_tiny, write_overrides


@pytest.fixture(scope="module", params=["gli", "ped"])
def task_run(request, tmp_path_factory):
    task = request.param
    root = tmp_path_factory.mktemp(f"task_{task}")
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
    return task, root


def test_training_follows_the_task(task_run):
    task, root = task_run
    state = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    last = [k for k in state if k.endswith("weight")][-1]
    assert 5 in state[last].shape[:2]  # five classes: background and four tumour classes
    config = json.load(open(root / "train" / "config.json"))  # the run record
    recorded = json.dumps(config)
    assert f'"name": "{task}"' in recorded
    regions = {"gli": ["netc", "snfh", "et", "rc", "tc", "wt"], "ped": ["et", "netc", "cc", "ed", "tc", "wt"]}[task]
    assert all(f'"{r}"' in recorded for r in regions)


def test_evaluation_and_inference_follow_the_task(task_run):
    task, root = task_run
    with open(root / "eval" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    regions = {"gli": ["netc", "snfh", "et", "rc", "tc", "wt"], "ped": ["et", "netc", "cc", "ed", "tc", "wt"]}[task]
    for region in regions:
        for metric in ("dice", "hd95", "lesion_dice", "lesion_hd95", "lesion_tp", "sensitivity"):
            assert f"{metric}_{region}" in columns
    assert len(rows) == 2  # the held-out fold
    summary = json.load(open(root / "eval" / "summary.json"))
    assert summary["config"]["task"]["name"] == task and f"task {task}" in summary["conventions"]
    # predictions and inference outputs are in the task's stored values, on each case's grid
    for folder in (root / "eval" / "predictions", root / "infer"):
        written = sorted(folder.glob("*.nii.gz"))
        assert written, folder
        for path in written:
            values = set(np.unique(np.asanyarray(nib.load(path).dataobj)).tolist())
            assert values <= {0, 1, 2, 3, 4}
    record = json.load(open(root / "infer" / "inference_summary.json"))
    assert all(case["status"] == "written" for case in record["cases"].values())
