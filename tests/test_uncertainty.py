"""Where the ensemble is unsure: the per-voxel map and per-case scores on hand-built members, flip test-time
augmentation as members, the run record's review order, and the bundle's inference with two members that disagree
on a known region."""

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from custom_nets import Vox2VoxGenerator
from custom_nets.ensemble import LearnedEnsemble
from custom_nets.networks import LearnedEnsembler
from custom_nets.uncertainty import FlippedNetwork, member_uncertainty, rank_correlation, review_order, tta_members
from tests.bundle_helpers import TINY, make_synthetic_dataset, run_bundle, write_overrides


def one_hot(labels: torch.Tensor, classes: int = 4) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, classes).movedim(-1, 0).float()


def test_members_that_disagree_on_one_box_hand_computed():
    a = torch.zeros(6, 6, 6, dtype=torch.long)
    a[1:3, 1:3, 1:3] = 2  # both members: 8 voxels of edema
    b = a.clone()
    b[3:5, 3:5, 3:5] = 1  # member b alone: 8 voxels of necrosis
    uncertainty, scores = member_uncertainty([one_hot(a), one_hot(b)])
    disagreement, entropy = uncertainty[1], uncertainty[0]
    box = torch.zeros(6, 6, 6, dtype=torch.bool)
    box[3:5, 3:5, 3:5] = True
    assert torch.all(disagreement[~box] == 0) and torch.all(disagreement[box] == 0.5)
    assert torch.all(entropy[~box] == 0)
    torch.testing.assert_close(entropy[box], torch.full((8,), math.log(2) / math.log(4)))  # mean (1/2, 1/2)
    # tumour of either member: 16 voxels, 8 of them at entropy 1/2; Dice of the tumour masks 2 * 8 / (8 + 16)
    assert scores == {"uncertainty": 0.25, "member_dice": round(16 / 24, 6)}
    _, agreeing = member_uncertainty([one_hot(a), one_hot(a)])
    assert agreeing == {"uncertainty": 0.0, "member_dice": 1.0}
    _, empty = member_uncertainty([one_hot(torch.zeros_like(a)), one_hot(torch.zeros_like(a))])
    assert empty == {"uncertainty": 0.0, "member_dice": 1.0}


def test_flip_members_and_the_learned_ensemble_per_model():
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 2, 3, padding=1)
    x = torch.randn(1, 1, 6, 7, 8)
    members = tta_members([net], flips=[(0,), (1, 2)])
    assert len(members) == 3 and members[0] is net
    with torch.no_grad():
        torch.testing.assert_close(members[2](x), torch.flip(net(torch.flip(x, [3, 4])), [3, 4]))
        torch.testing.assert_close(FlippedNetwork(net, (0,))(x), torch.flip(net(torch.flip(x, [2])), [2]))
    assert tta_members([net, net], enabled=False) == [net, net]
    ensembler = LearnedEnsembler(2, 3).eval()
    outputs = [torch.rand(3, 4, 4, 4) for _ in range(4)]  # two models, two members each
    with torch.no_grad():
        expected = ensembler(torch.cat([(outputs[0] + outputs[1]) / 2, (outputs[2] + outputs[3]) / 2])[None])[0]
        torch.testing.assert_close(LearnedEnsemble(ensembler, per_model=2)(outputs), expected)


def test_review_order_and_rank_correlation():
    assert review_order({"a": 0.1, "b": 0.7, "c": 0.7, "d": 0.3}) == ["b", "c", "d", "a"]
    rows = [{"uncertainty": u, "dice": 1 - u, "flat": 1.0} for u in (0.1, 0.5, 0.2, 0.9)]
    assert rank_correlation(rows, "uncertainty", ["dice", "flat"]) == {"dice": -1.0, "flat": None}
    assert rank_correlation(rows[:2], "uncertainty", ["dice"]) == {"dice": None}  # two cases rank nothing


def background_member(path):
    """A generator that calls every voxel background (all weights 0, the last layer's bias favouring class 0)."""
    net = Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"])
    state = {k: torch.zeros_like(v) for k, v in net.state_dict().items()}
    state["final.0.bias"] = torch.tensor([20.0, 0.0, 0.0, 0.0])
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("uncertainty")
    data = make_synthetic_dataset(root / "data", num_cases=3, seed=8, num_folds=3, shape=(40, 40, 32))
    torch.manual_seed(0)
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), root / "random.pt")
    files = {"random": str(root / "random.pt"), "background": background_member(root / "background.pt")}
    tiny = write_overrides(root / "tiny.json")
    runs = {"random": [files["random"]], "pair": [files["random"], files["background"]]}
    results = {}
    for name, models in runs.items():
        model_files = "[" + ",".join(f"'{m}'" for m in models) + "]"
        results[name] = run_bundle(
            None, ["configs/inference.json", tiny], dataset_dir=data, output_dir=root / name, model_files=model_files
        )
    return {"root": root, "data": Path(data), "results": results}


def test_two_members_disagree_exactly_where_one_sees_tumour(members):
    root = members["root"]
    record = json.loads((root / "pair" / "inference_summary.json").read_text())
    cases = sorted(record["cases"])
    assert len(cases) == 3
    for case in cases:
        alone = np.asanyarray(nib.load(root / "random" / f"{case}.nii.gz").dataobj)
        image = nib.load(root / "pair" / f"{case}_uncertainty.nii.gz")
        source = nib.load(members["data"] / case / f"{case}_flair.nii.gz")
        assert image.shape == (*source.shape, 2) and np.allclose(image.affine, source.affine)
        entropy, disagreement = np.moveaxis(np.asarray(image.dataobj), -1, 0)
        assert (alone > 0).any()
        # the background member agrees wherever the random one says background, and nowhere else
        np.testing.assert_array_equal(disagreement > 0, alone > 0)
        assert set(np.unique(disagreement)) == {0.0, 0.5}
        assert entropy[alone > 0].mean() > entropy[alone == 0].mean()
        entry = record["cases"][case]
        assert 0 < entry["uncertainty"] <= 1 and entry["member_dice"] == 0.0  # one member has no tumour at all
    scores = {case: record["cases"][case]["uncertainty"] for case in cases}
    assert record["review_first"] == sorted(cases, key=lambda c: -scores[c]) and len(set(scores.values())) == 3
    first = record["review_first"][0]
    assert f"review first (the ensemble's members disagree most): {first} ({scores[first]:.3f})" in (
        members["results"]["pair"].stdout
    )
    single = json.loads((root / "random" / "inference_summary.json").read_text())
    assert "review_first" not in single and not list((root / "random").glob("*_uncertainty.nii.gz"))
