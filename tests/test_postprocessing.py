"""Post-processing per region of the task, and its choice on the validation fold (values worked out by hand)."""

import json
import shutil

import pytest
import torch

from custom_nets.data.tasks import load_task
from custom_nets.postprocessing import PostprocessingSelection, RemoveSmallLesionsd, read_settings
from custom_nets.transforms import RegionMasksd
from tests.bundle_helpers import make_synthetic_dataset, run_bundle, train_tiny, write_overrides

GLI = load_task("gli")  # classes 1 NETC, 2 SNFH, 3 ET, 4 RC; regions netc, snfh, et, rc, tc, wt


def classes(*blocks, shape=(20, 20, 20)):
    """A class map (1, ...) with cubes ``(class, corner, size)``."""
    volume = torch.zeros(1, *shape, dtype=torch.long)
    for value, (x, y, z), size in blocks:
        volume[0, x : x + size, y : y + size, z : z + size] = value
    return volume


def test_small_lesions_are_removed_per_region():
    pred = classes((3, (1, 1, 1), 2), (3, (10, 10, 10), 4), (2, (1, 12, 1), 2), (2, (12, 1, 1), 3))
    out = RemoveSmallLesionsd("pred", GLI, {"et": 10, "snfh": 10})({"pred": pred})["pred"]
    # the 8-voxel ET lesion becomes NETC (the core), the 64-voxel one stays; SNFH lesions of 8 and 27 voxels:
    # the smaller goes to background
    assert int((out == 3).sum()) == 64 and int((out == 1).sum()) == 8
    assert int((out == 2).sum()) == 27 and int((out == 0).sum()) == int((pred == 0).sum()) + 8
    largest = RemoveSmallLesionsd("pred", GLI, {"snfh": "largest"})({"pred": pred})["pred"]
    assert int((largest == 2).sum()) == 27 and int((largest == 3).sum()) == 72
    assert torch.equal(RemoveSmallLesionsd("pred", GLI, {})({"pred": pred})["pred"], pred)
    with pytest.raises(ValueError, match="names \\['WT'\\]; the task gli has"):
        RemoveSmallLesionsd("pred", GLI, {"WT": 10})
    with pytest.raises(ValueError, match="region 'et': expected voxels"):
        RemoveSmallLesionsd("pred", GLI, {"et": -1})


def test_the_choice_keeps_a_setting_only_where_it_raises_the_mean_dice(tmp_path):
    regions = RegionMasksd(["pred", "label"], GLI.region_classes())
    # case 1: no ET in the reference, 8 false ET voxels predicted (ET Dice 0 until the minimum exceeds 8, then 1);
    # case 2: a 64-voxel ET lesion predicted exactly (Dice 1 up to a minimum of 64, then 0). SNFH exact in both.
    cases = [
        ({"pred": classes((3, (1, 1, 1), 2), (2, (10, 1, 1), 4)), "label": classes((2, (10, 1, 1), 4))}),
        (
            {
                "pred": classes((3, (5, 5, 5), 4), (2, (12, 12, 12), 4)),
                "label": classes((3, (5, 5, 5), 4), (2, (12, 12, 12), 4)),
            }
        ),
    ]
    selection = PostprocessingSelection(str(tmp_path / "postprocessing.json"), GLI, grid=[0, 10, 100, "largest"])
    for case in cases:
        masks = regions(case)
        for region, by_setting in selection.case_dice(masks["pred"], masks["label"]).items():
            for setting, value in by_setting.items():
                selection.dice.setdefault(region, {}).setdefault(setting, []).append(value)
    chosen, means = selection.choose()
    # ET: mean 0.5 with nothing removed, 1.0 at 10 voxels, 0.5 at 100 and keeping the largest (case 1's false lesion)
    assert means["et"] == {"0": 0.5, "10": 1.0, "100": 0.5, "largest": 0.5}
    # the false ET voxels are in tc and wt too (wt of case 1: 2 * 64 / (72 + 64) with them); snfh is exact and netc,
    # rc are empty on both sides: nothing beats no post-processing there
    assert chosen == {"et": 10, "tc": 10, "wt": 10}
    assert means["wt"]["0"] == pytest.approx((128 / 136 + 1) / 2) and means["wt"]["largest"] < 1.0
    assert means["snfh"]["0"] == 1.0 and means["rc"]["0"] == 1.0
    selection._write(None)
    written = json.load(open(tmp_path / "postprocessing.json"))
    assert written["min_lesion_voxels"] == {"et": 10, "tc": 10, "wt": 10} and written["chosen_on"]["num_cases"] == 2
    assert read_settings(str(tmp_path / "postprocessing.json"))["task"] == "gli"
    assert read_settings(str(tmp_path / "none.json")) == {}
    with pytest.raises(ValueError, match="chosen for task gli, this run's task is brats2021"):
        read_settings(str(tmp_path / "postprocessing.json"), "brats2021")
    (tmp_path / "torn.json").write_text('{"min_lesion_voxels": {"et"')
    with pytest.raises(ValueError, match="torn.json: expected the JSON that evaluation writes"):
        read_settings(str(tmp_path / "torn.json"), "gli")


def test_evaluating_chooses_and_inference_reads_the_choice(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", num_cases=4, seed=21, num_folds=2)
    overrides = write_overrides(tmp_path / "tiny.json", epochs=1)
    models = tmp_path / "models"
    train_tiny(tmp_path, data, overrides)
    run_bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", overrides],
        dataset_dir=data,
        ckpt_dir=models,
        output_dir=tmp_path / "eval",
        select_postprocessing="true",
    )
    chosen = json.load(open(models / "postprocessing.json"))
    assert chosen["task"] == "brats2021" and set(chosen["mean_dice"]) == {"WT", "TC", "ET"}
    assert chosen["chosen_on"]["num_cases"] == 2 and str(models / "model.pt") in chosen["models"]
    # inference reads it by default and records what it applied; a hand-set choice shows in the record
    shutil.copy(models / "postprocessing.json", tmp_path / "chosen.json")
    (models / "postprocessing.json").write_text(json.dumps({"min_lesion_voxels": {"ET": 50}}))
    run_bundle(
        None, ["configs/inference.json", overrides], dataset_dir=data, ckpt_dir=models, output_dir=tmp_path / "infer"
    )
    record = json.load(open(tmp_path / "infer" / "inference_summary.json"))
    assert record["settings"]["min_lesion_voxels"] == {"ET": 50}
    assert record["settings"]["postprocessing_file"] == str(models / "postprocessing.json")
    assert record["settings"]["task"]["name"] == "brats2021"
