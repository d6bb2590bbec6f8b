"""Volumes of classes and regions in mL: on a hand-made class map with known sizes, and through inference, where
``volumes.csv`` and the run record must equal a count of the written label map's voxels times its header's voxel
size."""

import csv
import json
import os

import nibabel as nib
import numpy as np
import torch

from custom_nets import Vox2VoxGenerator
from custom_nets.data.tasks import load_task
from custom_nets.volumes import label_volumes, merge_volumes_csv, title_volumes, voxel_ml
from tests.bundle_helpers import TINY, make_synthetic_dataset, run_bundle, write_overrides


def test_volumes_lesions_and_largest_on_a_hand_made_map():
    classes = np.zeros((12, 12, 12), np.uint8)
    classes[0:2, 0:2, 0:2] = 1  # NCR/NET: 8 voxels
    classes[2:5, 0:3, 0:3] = 2  # edema: 27 voxels, touching the core: one whole tumour of 35
    classes[8, 8, 8] = 3  # enhancing: a lone voxel ...
    classes[10:12, 10:12, 10] = 3  # ... and a 2x2x1 patch apart from it (not 26-connected)
    ml = voxel_ml((0.5, 1.0, 2.0))  # 1 mm^3 = 0.001 mL
    volumes = label_volumes(classes, ml, "brats2021")
    assert volumes == {
        "NCR/NET_ml": 0.008,
        "edema_ml": 0.027,
        "enhancing_ml": 0.005,
        "WT_ml": 0.04,
        "WT_lesions": 3,
        "WT_largest_ml": 0.035,
        "TC_ml": 0.013,
        "TC_lesions": 3,
        "TC_largest_ml": 0.008,
        "ET_ml": 0.005,
        "ET_lesions": 2,
        "ET_largest_ml": 0.004,
    }
    assert title_volumes(volumes, "brats2021") == "WT 0.0 mL, TC 0.0 mL, ET 0.0 mL"
    empty = label_volumes(np.zeros((4, 4, 4), np.uint8), 1.0, "gli")
    assert empty["rc_ml"] == 0 and empty["rc_lesions"] == 0 and empty["rc_largest_ml"] == 0


def test_merge_keeps_the_rows_of_cases_an_earlier_run_wrote(tmp_path):
    merge_volumes_csv(str(tmp_path), {"b": {"WT_ml": 2.0}, "a": {"WT_ml": 1.0}})
    merge_volumes_csv(str(tmp_path), {"b": {"WT_ml": 3.0}})
    rows = list(csv.DictReader(open(tmp_path / "volumes.csv")))
    assert rows == [{"case": "a", "WT_ml": "1.0"}, {"case": "b", "WT_ml": "3.0"}]
    assert merge_volumes_csv(str(tmp_path / "none"), {}) is None


def test_inference_writes_the_volumes_of_the_written_label_maps(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", num_cases=2, seed=8, num_folds=2)
    case = "BraTS2021_00001"
    for path in (tmp_path / "data" / case).glob("*.nii.gz"):  # an anisotropic grid: 0.9 x 1.1 x 2.5 mm
        image = nib.load(path)
        nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine @ np.diag([0.9, 1.1, 2.5, 1.0])), path)
    torch.manual_seed(1)
    network = Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"])
    with torch.no_grad():
        network.final[0].bias.copy_(torch.tensor([0.0, 0.3, 0.3, 0.3]))
    torch.save(network.state_dict(), tmp_path / "model.pt")
    overrides = write_overrides(tmp_path / "tiny.json")
    out = tmp_path / "out"

    def infer():
        run_bundle(
            None,
            ["configs/inference.json", overrides],
            dataset_dir=data,
            output_dir=out,
            model_files=f"['{tmp_path / 'model.pt'}']",
        )

    infer()
    task = load_task("brats2021")
    record = json.load(open(out / "inference_summary.json"))
    rows = {row["case"]: row for row in csv.DictReader(open(out / "volumes.csv"))}
    assert sorted(rows) == ["BraTS2021_00000", case]
    for name, row in rows.items():
        written = nib.load(out / f"{name}.nii.gz")
        labels = np.asanyarray(written.dataobj)
        ml = np.prod(written.header.get_zooms()[:3]) / 1000.0
        by_hand = {
            "NCR/NET_ml": (labels == 1).sum() * ml,
            "edema_ml": (labels == 2).sum() * ml,
            "enhancing_ml": (labels == 4).sum() * ml,
            "WT_ml": np.isin(labels, (1, 2, 4)).sum() * ml,
            "TC_ml": np.isin(labels, (1, 4)).sum() * ml,
            "ET_ml": (labels == 4).sum() * ml,
        }
        assert all(by_hand[k] > 0 for k in by_hand)
        for key, value in by_hand.items():
            assert abs(float(row[key]) - value) < 1e-4, (name, key)
            assert abs(record["cases"][name]["volumes"][key] - value) < 1e-4
        assert int(row["ET_lesions"]) >= 1 and float(row["ET_largest_ml"]) <= float(row["ET_ml"])
    assert np.isclose(np.prod(nib.load(out / f"{case}.nii.gz").header.get_zooms()), 0.9 * 1.1 * 2.5)
    assert list(rows[case])[1:] == list(label_volumes(np.zeros((2, 2, 2), np.uint8), 1.0, task))
    # a rerun redoes only the case whose label map is gone; the other's row stays as the first run wrote it
    os.remove(out / f"{case}.nii.gz")
    infer()
    again = {row["case"]: row for row in csv.DictReader(open(out / "volumes.csv"))}
    assert again == rows
    assert json.load(open(out / "inference_summary.json"))["cases"]["BraTS2021_00000"]["status"] == "left as it was"
