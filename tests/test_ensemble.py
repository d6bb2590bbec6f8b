"""The paper's learned ensemble: the ensembler network, its config-driven training on the fold models' outputs, and
inference that applies it."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from custom_nets import Vox2VoxGenerator
from custom_nets.ensemble import ensemble_choice, load_ensembler
from custom_nets.networks import LearnedEnsembler, StackedEnsemble
from tests.bundle_helpers import TINY, make_synthetic_dataset, run_bundle, write_overrides


def test_ensembler_is_one_centred_convolution_then_softmax():
    torch.manual_seed(0)
    ensembler = LearnedEnsembler(num_members=3, num_classes=4)
    probabilities = torch.rand(2, 12, 5, 6, 7)
    expected = torch.softmax(F.conv3d(probabilities - 0.5, ensembler.conv.weight, ensembler.conv.bias, padding=1), 1)
    torch.testing.assert_close(ensembler(probabilities), expected)
    assert sum(p.numel() for p in LearnedEnsembler(10, 4).parameters()) == 40 * 4 * 27 + 4  # the paper's 40 -> 4
    with pytest.raises(ValueError, match=r"3 members x 4 classes = 12 channels, got 8"):
        ensembler(torch.rand(1, 8, 4, 4, 4))


def test_stacked_ensemble_trains_only_the_ensembler_and_keeps_members_in_eval():
    torch.manual_seed(0)
    members = [Vox2VoxGenerator(2, 3, channels=(4, 8), out_activation=None, dropout=0.5) for _ in range(2)]
    stacked = StackedEnsemble(members, LearnedEnsembler(2, 3, out_activation=None), torch.nn.Softmax(dim=1))
    stacked.train()
    assert stacked.ensembler.training and not any(m.training for m in stacked.members)
    x = torch.randn(1, 2, 16, 16, 16)
    torch.testing.assert_close(stacked(x), stacked(x))  # members' dropout is off
    stacked(x).square().mean().backward()
    assert all(p.grad is None for p in stacked.members.parameters())
    assert stacked.ensembler.conv.weight.grad.abs().sum() > 0


def test_ensemble_choice_and_ensembler_file_errors_name_the_problem(tmp_path):
    assert ensemble_choice(" Learned", ["a", "b"]) == "learned"
    with pytest.raises(ValueError, match=r"ensemble must be one of \['mean', 'learned'\], got 'median'"):
        ensemble_choice("median", ["a", "b"])
    with pytest.raises(ValueError, match="model_files lists 1"):
        ensemble_choice("learned", ["a"])
    path = tmp_path / "ensembler.pt"
    with pytest.raises(FileNotFoundError, match=str(path)):
        load_ensembler(str(path), 2, 4)
    torch.save(LearnedEnsembler(2, 4).state_dict(), path)
    with pytest.raises(ValueError, match=rf"{path} combines 8 channels into 4 classes, but model_files lists 3"):
        load_ensembler(str(path), 3, 4)


@pytest.fixture(scope="module")
def folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    data = make_synthetic_dataset(root / "data", num_cases=6, seed=5, num_folds=3)
    members = []
    for k in range(3):
        torch.manual_seed(10 + k)
        os.makedirs(root / "models" / f"fold{k}")
        members.append(root / "models" / f"fold{k}" / "model.pt")
        torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), members[-1])
    return {"root": root, "data": data, "members": members, "tiny": write_overrides(root / "tiny.json", epochs=1)}


def test_ensembler_trains_through_the_bundle_on_the_members_validation_cases(folds):
    root = folds["root"]
    before = [m.read_bytes() for m in folds["members"]]
    run_bundle(
        "training",
        ["configs/train.json", "configs/train_ensembler.json", folds["tiny"]],
        dataset_dir=folds["data"],
        ckpt_dir=root / "models",
        output_dir=root / "train_ensembler",
        ensemble_folds="[1,2]",
        ensembler_epochs=2,
    )
    ensembler = load_ensembler(str(root / "models" / "ensembler.pt"), num_members=2, num_classes=4)
    assert ensembler.conv.weight.shape == (4, 8, 3, 3, 3)
    record = json.loads((root / "train_ensembler" / "config.json").read_text())["resolved"]
    datalist = json.loads((root / "data" / "datalist.json").read_text())["training"]
    assert record["num_train_cases"] == sum(d["fold"] in (1, 2) for d in datalist)
    assert [os.path.basename(os.path.dirname(f)) for f in record["ensemble_model_files"]] == ["fold1", "fold2"]
    assert [m.read_bytes() for m in folds["members"]] == before  # the fold models are read, never written


def test_learned_inference_applies_the_ensembler(folds):
    """An ensembler that passes member 0's probabilities through (a large gain on its own class channel, nothing
    else) must give member 0's labels, which the mean of two different members does not."""
    root = folds["root"]
    ensembler = LearnedEnsembler(2, 4)
    with torch.no_grad():
        ensembler.conv.weight.zero_()
        ensembler.conv.bias.zero_()
        for c in range(4):
            ensembler.conv.weight[c, c, 1, 1, 1] = 50.0
    torch.save(ensembler.state_dict(), root / "copy_member0.pt")
    pair = "[" + ",".join(f"'{m}'" for m in folds["members"][:2]) + "]"
    runs = {
        "learned": {"model_files": pair, "ensemble": "learned", "ensembler_file": root / "copy_member0.pt"},
        "mean": {"model_files": pair},
        "member0": {"model_files": f"['{folds['members'][0]}']"},
    }
    for name, overrides in runs.items():
        configs = ["configs/inference.json", folds["tiny"]]
        run_bundle(None, configs, dataset_dir=folds["data"], output_dir=root / name, save_png="false", **overrides)
    case = "BraTS2021_00000.nii.gz"
    labels = {name: np.asarray(nib.load(root / name / case).dataobj) for name in runs}
    assert np.array_equal(labels["learned"], labels["member0"])
    assert not np.array_equal(labels["mean"], labels["member0"])
    recorded = json.loads((root / "learned" / "inference_summary.json").read_text())["models"]
    assert list(recorded) == [*map(str, folds["members"][:2]), str(root / "copy_member0.pt")]  # the run says what ran
