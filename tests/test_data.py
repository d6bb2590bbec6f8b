import gzip
import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import MapLabelValued

from custom_nets.data import CHANNELS, DataError, from_canonical, make_datalist, to_canonical, write_datalist
from custom_nets.data.synthetic import (
    BRATS_LABEL,
    CSF,
    EDEMA,
    ENHANCING,
    WHITE,
    add_tumour,
    brain_tissue,
    brats_affine,
    render,
    synthesize,
    synthesize_case,
)
from tests.conftest import SMALL, save, write_brats2021


def read(path):
    image = nib.load(path)
    return np.asanyarray(image.dataobj), image


def test_synthesize_is_deterministic_and_brats_like(tmp_path):
    a = synthesize(str(tmp_path / "a"), num_cases=2, seed=5, shape=(48, 40, 32), progress=False)
    b = synthesize(str(tmp_path / "b"), num_cases=2, seed=5, shape=(48, 40, 32), progress=False)
    c = synthesize(str(tmp_path / "c"), num_cases=1, seed=6, shape=(48, 40, 32), progress=False)
    assert sorted(os.listdir(a[0])) == [f"BraTS2021_00000_{m}.nii.gz" for m in ("flair", "seg", "t1", "t1ce", "t2")]
    for name in os.listdir(a[1]):
        with open(os.path.join(a[1], name), "rb") as fa, open(os.path.join(b[1], name), "rb") as fb:
            assert fa.read() == fb.read(), name
    t1_a, image = read(os.path.join(a[0], "BraTS2021_00000_t1.nii.gz"))
    t1_c, _ = read(os.path.join(c[0], "BraTS2021_00000_t1.nii.gz"))
    assert not np.array_equal(t1_a, t1_c)
    assert t1_a.dtype == np.float32 and image.shape == (48, 40, 32)
    assert image.header.get_zooms() == (1.0, 1.0, 1.0)
    seg, seg_image = read(os.path.join(a[0], "BraTS2021_00000_seg.nii.gz"))
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 1, 2, 4} and np.any(seg > 0)
    assert np.allclose(seg_image.affine, image.affine)
    assert np.all(t1_a[seg > 0] > 0) and np.all(t1_a[:2, :2, :2] == 0)  # skull-stripped: zero outside the brain


def test_tissue_contrasts_follow_mri_physics():
    rng = np.random.default_rng(0)
    tissue = add_tumour(rng, brain_tissue(rng, (64, 64, 48)), enhancing=True)
    assert {CSF, WHITE, EDEMA, ENHANCING} <= set(np.unique(tissue))
    images = {m: render(rng, tissue, m) for m in CHANNELS}
    mean = {m: {t: images[m][tissue == t].mean() for t in (CSF, WHITE, EDEMA, ENHANCING)} for m in CHANNELS}
    assert mean["t1"][CSF] < mean["t1"][WHITE] and mean["flair"][CSF] < mean["flair"][WHITE]  # CSF dark
    assert mean["t2"][CSF] > mean["t2"][WHITE]  # CSF bright on T2
    assert mean["t2"][EDEMA] > mean["t2"][WHITE] and mean["flair"][EDEMA] > mean["flair"][WHITE]
    # enhancement only on T1ce: relative to white matter, enhancing tumour is bright on T1ce and not on T1
    assert mean["t1ce"][ENHANCING] / mean["t1ce"][WHITE] > 1.3 > mean["t1"][ENHANCING] / mean["t1"][WHITE]


def test_some_cases_have_no_enhancing_tumour():
    has_et = [np.any(synthesize_case(0, i, SMALL)[1] == BRATS_LABEL[ENHANCING]) for i in range(12)]
    assert any(has_et) and not all(has_et)


def test_brats2021_datalist_folds_and_loading(synthetic_dataset, tmp_path):
    out = write_datalist(synthetic_dataset, output_file=str(tmp_path / "lists" / "dl.json"), num_folds=3, seed=1)
    datalist = json.load(open(out))
    assert datalist["layout"] == "brats2021" and datalist["task"] == "brats2021"
    assert datalist["channels"] == ["flair", "t1", "t1ce", "t2"]
    assert len(datalist["training"]) == 6 and datalist["testing"] == []
    assert sorted(e["fold"] for e in datalist["training"]) == [0, 0, 1, 1, 2, 2]
    first = datalist["training"][0]
    assert [os.path.basename(p) for p in first["image"]] == [f"BraTS2021_00000_{m}.nii.gz" for m in CHANNELS]
    assert not os.path.isabs(first["label"])
    loaded = load_decathlon_datalist(out, data_list_key="training")
    assert all(os.path.isfile(p) for p in loaded[0]["image"]) and os.path.isfile(loaded[0]["label"])
    again = make_datalist(synthetic_dataset, num_folds=3, seed=1, verify=False)
    assert [e["fold"] for e in again["training"]] == [e["fold"] for e in datalist["training"]]
    other = make_datalist(synthetic_dataset, num_folds=3, seed=2, verify=False)
    assert [e["fold"] for e in other["training"]] != [e["fold"] for e in datalist["training"]]


def test_case_without_segmentation_is_a_test_case(tmp_path, small_cases):
    write_brats2021(tmp_path, small_cases[:2])
    write_brats2021(tmp_path / "extra", small_cases[2:])  # nested elsewhere: not scanned
    os.remove(tmp_path / "BraTS2021_00001" / "BraTS2021_00001_seg.nii.gz")
    datalist = make_datalist(str(tmp_path), num_folds=1)
    assert [e["case"] for e in datalist["training"]] == ["BraTS2021_00000"]
    assert [e["case"] for e in datalist["testing"]] == ["BraTS2021_00001"]


def test_brats2023_layout(tmp_path, small_cases):
    names = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
    for i, (images, labels) in enumerate(small_cases):
        case = f"BraTS-GLI-{i:05d}-000"
        for modality, image in images.items():
            save(image, str(tmp_path / case / f"{case}-{names[modality]}.nii.gz"))
        save(np.where(labels == 4, 3, labels).astype(np.uint8), str(tmp_path / case / f"{case}-seg.nii.gz"))
    datalist = make_datalist(str(tmp_path), num_folds=3)
    assert datalist["layout"] == "brats2023" and datalist["task"] == "gli"  # the BraTS-GLI- ids
    assert [os.path.basename(p).split("-")[-1] for p in datalist["training"][0]["image"]] == [
        "t2f.nii.gz",
        "t1n.nii.gz",
        "t1c.nii.gz",
        "t2w.nii.gz",
    ]


def test_decathlon_layout(tmp_path, small_cases):
    to_decathlon = {0: 0, 1: 2, 2: 1, 4: 3}
    training = []
    for i, (images, labels) in enumerate(small_cases):
        stacked = np.stack([images[m] for m in CHANNELS], axis=-1)
        save(stacked, str(tmp_path / "imagesTr" / f"BRATS_{i:03d}.nii.gz"))
        save(
            np.vectorize(to_decathlon.get)(labels).astype(np.uint8),
            str(tmp_path / "labelsTr" / f"BRATS_{i:03d}.nii.gz"),
        )
        training.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
    save(stacked, str(tmp_path / "imagesTs" / "BRATS_900.nii.gz"))
    json.dump({"training": training, "test": ["./imagesTs/BRATS_900.nii.gz"]}, open(tmp_path / "dataset.json", "w"))
    datalist = make_datalist(str(tmp_path), num_folds=3)
    assert datalist["layout"] == "decathlon" and datalist["task"] == "msd"
    assert [e["case"] for e in datalist["training"]] == ["BRATS_000", "BRATS_001", "BRATS_002"]
    assert datalist["testing"][0]["case"] == "BRATS_900" and isinstance(datalist["testing"][0]["image"], str)


@pytest.mark.parametrize(
    "convention, stored, canonical",
    [
        ("brats2021", [0, 1, 2, 4], [0, 1, 2, 3]),
        ("brats2023", [0, 1, 2, 3], [0, 1, 2, 3]),
        ("decathlon", [0, 1, 2, 3], [0, 2, 1, 3]),  # decathlon 1 = edema, 2 = non-enhancing tumour
    ],
)
def test_label_conversions_both_ways(convention, stored, canonical):
    labels = np.array(stored * 3).reshape(1, 3, 4)
    orig, target = to_canonical(convention)
    converted = MapLabelValued("label", orig, target)({"label": labels})["label"]
    assert converted.reshape(-1)[:4].tolist() == canonical
    orig, target = from_canonical(convention)
    back = MapLabelValued("label", orig, target)({"label": converted})["label"]
    np.testing.assert_array_equal(back, labels)


def _break(root, kind):
    case = root / "BraTS2021_00001"
    flair = case / "BraTS2021_00001_flair.nii.gz"
    if kind == "missing":
        os.remove(flair)
        return "missing modality 'flair'"
    t2 = case / "BraTS2021_00001_t2.nii.gz"
    if kind == "shape":
        save(np.zeros((32, 32, 30), np.float32), str(t2), brats_affine(SMALL))
        return r"BraTS2021_00001_t2.nii.gz has shape \(32, 32, 30\), but .*_flair.nii.gz has \(32, 32, 32\)"
    if kind == "affine":
        save(np.zeros(SMALL, np.float32), str(t2), np.diag([2.0, 1, 1, 1]))
        return "affine of .*BraTS2021_00001_t2.nii.gz differs"
    if kind == "truncated":
        data = open(flair, "rb").read()
        open(flair, "wb").write(data[: len(data) // 2])
        return "cannot read .*BraTS2021_00001_flair.nii.gz"
    if kind == "corrupt":
        with gzip.open(flair, "wb") as f:
            f.write(b"not a nifti file at all" * 20)
        return "cannot read .*BraTS2021_00001_flair.nii.gz"
    if kind == "labels":
        save(np.full(SMALL, 3, np.uint8), str(case / "BraTS2021_00001_seg.nii.gz"), brats_affine(SMALL))
        return r"label .*BraTS2021_00001_seg.nii.gz holds values \[3\] outside the task brats2021 \(1 NCR/NET"
    if kind == "nan":
        image = nib.load(flair)
        data = image.get_fdata().astype(np.float32)
        data[3, 3, 3] = np.nan
        data[4, 4, 4] = np.inf
        save(data, str(flair), image.affine)
        return "BraTS2021_00001_flair.nii.gz has 2 NaN or infinite voxels"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "shape", "affine", "truncated", "corrupt", "labels", "nan"])
def test_bad_input_names_case_and_file_and_writes_nothing(tmp_path, small_cases, kind):
    root = tmp_path / "data"
    write_brats2021(root, small_cases)
    expected = _break(root, kind)
    output = tmp_path / "datalist.json"
    with pytest.raises(DataError, match=f"case BraTS2021_00001: .*{expected}"):
        write_datalist(str(root), output_file=str(output), num_folds=2)
    assert not output.exists() and not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_empty_and_unrecognised_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no case folders with NIfTI files"):
        write_datalist(str(tmp_path / "empty"))
    save(np.zeros((4, 4, 4), np.float32), str(tmp_path / "odd" / "case1" / "scan.nii.gz"))
    with pytest.raises(DataError, match="odd: unrecognised dataset"):
        write_datalist(str(tmp_path / "odd"))
    with pytest.raises(DataError, match="does not exist"):
        write_datalist(str(tmp_path / "nowhere"))
    assert not (tmp_path / "odd" / "datalist.json").exists()


def test_cli_datalist_and_montage(synthetic_dataset, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    out = tmp_path / "dl.json"
    cmd = [sys.executable, "-m", "custom_nets.data", "datalist", synthetic_dataset, "--output_file", str(out)]
    subprocess.run(cmd + ["--num_folds", "2", "--seed", "0"], check=True, env=env)
    assert json.load(open(out))["num_folds"] == 2
    png = tmp_path / "montage.png"
    cmd = [sys.executable, "-m", "custom_nets.data", "montage", synthetic_dataset, "--case", "BraTS2021_00002"]
    subprocess.run(cmd + ["--output_file", str(png)], check=True, env=env)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_load_time_guard_names_the_file_with_non_finite_voxels(tmp_path):
    from monai.transforms import LoadImaged

    from custom_nets.transforms import CheckFinited

    data = np.ones((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    path = save(data, str(tmp_path / "case_flair.nii.gz"))
    loaded = LoadImaged("image", image_only=True)({"image": path})
    with pytest.raises(DataError, match=r"case_flair.nii.gz: 1 NaN or infinite voxels in 'image'"):
        CheckFinited("image")(loaded)
    assert CheckFinited("image")({"image": torch.ones(2, 2)})["image"].sum() == 4
