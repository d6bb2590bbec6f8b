"""Task definitions: the shipped schemes, datalists that know their task, the data CLI's refusals, a user's own task,
and the synthetic data of each task."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from custom_nets.data import DataError, make_datalist
from custom_nets.data.synthetic import CAVITY, CYST, synthesize, synthesize_case
from custom_nets.data.synthetic_head import NATIVE_SPACINGS
from custom_nets.data.tasks import TaskError, load_task, parse_task, shipped_tasks, task_of_cases

SMALL = (48, 48, 40)


def test_shipped_tasks_and_the_official_groups():
    assert shipped_tasks() == ["brats2021", "gli", "goat", "men", "men-rt", "mets", "msd", "ped"]
    regions = {name: {r.name: r.labels for r in load_task(name).regions} for name in shipped_tasks()}
    assert regions["gli"] == {"netc": (1,), "snfh": (2,), "et": (3,), "rc": (4,), "tc": (1, 3), "wt": (1, 2, 3)}
    assert regions["mets"] == {"et": (3,), "rc": (4,), "tc": (1, 3), "wt": (1, 2, 3)}
    assert regions["ped"] == {"et": (1,), "netc": (2,), "cc": (3,), "ed": (4,), "tc": (1, 2, 3), "wt": (1, 2, 3, 4)}
    assert regions["men"] == regions["goat"] == {"et": (3,), "tc": (1, 3), "wt": (1, 2, 3)}
    assert regions["brats2021"] == {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
    assert regions["men-rt"] == {"gtv": (1,)}  # MenRT
    men_rt = load_task("men-rt")
    assert men_rt.sequences == ("t1c",) and men_rt.num_classes == 2 and not men_rt.skull_stripped
    # earlier datalists' label conventions are tasks
    assert load_task("brats2023") is load_task("gli") and load_task("decathlon") is load_task("msd")
    assert load_task("msd").to_classes() == ([0, 2, 1, 3], [0, 1, 2, 3])  # the order the networks always had
    gli = load_task("gli")
    assert gli.num_classes == 5 and gli.region_classes()[-1] == [1, 2, 3] and gli.class_weights[4] == 1.0


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"sequences": ["t1"], "labels": {"a": 1, "b": 2}, "regions": {"x": [1]}}, "start with the background"),
        ({"sequences": ["t1"], "labels": {"bg": 0, "a": 1}, "regions": {"x": [2]}}, "region 'x' holds \\[2\\]"),
        ({"sequences": [], "labels": {"bg": 0, "a": 1}, "regions": {"x": [1]}}, "'sequences' must name"),
        ({"sequences": ["t1"], "labels": {"bg": 0, "a": 1}, "regions": {}}, "'regions' is empty"),
    ],
)
def test_a_bad_task_definition_names_the_file_and_the_field(spec, message):
    with pytest.raises(TaskError, match=f"my.json: .*{message}"):
        parse_task(spec, "my.json")
    with pytest.raises(TaskError, match="unknown task 'brats2099'"):
        load_task("brats2099")


def write_case(root, case, suffixes, labels, label_suffix="-seg"):
    folder = root / case
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    brain = np.zeros(labels.shape, np.float32)
    brain[4:-4, 4:-4, 4:-4] = 100.0
    for suffix in suffixes:
        nib.save(
            nib.Nifti1Image(brain + np.random.default_rng(0).random(labels.shape, np.float32), affine),
            folder / f"{case}{suffix}.nii.gz",
        )
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), affine), folder / f"{case}{label_suffix}.nii.gz")


SUFFIXES_2023 = ["-t2f", "-t1n", "-t1c", "-t2w"]


def labels_with(*values):
    labels = np.zeros((16, 16, 16), np.uint8)
    for i, v in enumerate(values):
        labels[4 + i, 4:8, 4:8] = v
    return labels


def test_datalist_chooses_the_task_from_the_case_ids(tmp_path):
    # a post-treatment glioma (2023 file names, label 4 = resection cavity): refused before tasks existed
    write_case(tmp_path / "gli", "BraTS-GLI-00000-100", SUFFIXES_2023, labels_with(1, 2, 3, 4))
    write_case(tmp_path / "gli", "BraTS-GLI-00001-000", SUFFIXES_2023, labels_with(1, 2, 3))  # pre-treatment: no RC
    datalist = make_datalist(str(tmp_path / "gli"), num_folds=2)
    assert datalist["task"] == "gli" and datalist["regions"]["rc"] == [4] and datalist["labels"]["RC"] == 4
    # paediatric labels 1-4 (ET 1, NETC 2, CC 3, ED 4)
    write_case(tmp_path / "ped", "BraTS-PED-00000-000", SUFFIXES_2023, labels_with(1, 2, 3, 4))
    assert make_datalist(str(tmp_path / "ped"), num_folds=1)["task"] == "ped"
    # ids that disagree with --task are refused
    with pytest.raises(DataError, match="case ids are those of the task gli .*BraTS-GLI-00000-100.*not men"):
        make_datalist(str(tmp_path / "gli"), num_folds=1, task="men")
    # mixed challenges are refused
    write_case(tmp_path / "gli", "BraTS-MET-00000-000", SUFFIXES_2023, labels_with(3))
    with pytest.raises(DataError, match="belong to different tasks"):
        make_datalist(str(tmp_path / "gli"), num_folds=1)


def test_label_values_outside_the_task_name_the_task_that_fits(tmp_path):
    write_case(tmp_path, "case01", SUFFIXES_2023, labels_with(1, 2, 3, 4))  # ids without a challenge prefix
    with pytest.raises(DataError) as refused:
        make_datalist(str(tmp_path), num_folds=1, task="men")
    message = str(refused.value)
    assert "case case01: label" in message and "case01-seg.nii.gz holds values [4] outside the task men" in message
    assert "tasks that fit: gli (adult glioma, pre- and post-treatment" in message and "use --task gli" in message
    assert make_datalist(str(tmp_path), num_folds=1, task="gli")["task"] == "gli"
    # BraTS 2023 file names without a challenge id: the 2023 glioma scheme (1, 2, 3 and the cavity 4)
    assert make_datalist(str(tmp_path), num_folds=1)["task"] == "gli"


def test_the_data_cli_refuses_in_one_line(tmp_path):
    write_case(tmp_path, "BraTS-GLI-00000-100", SUFFIXES_2023, labels_with(1, 2, 3, 4))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "custom_nets.data", "datalist", str(tmp_path)]
    refused = subprocess.run(cmd + ["--task", "brats2021"], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    lines = [line for line in refused.stderr.splitlines() if line.startswith("refused:")]
    assert len(lines) == 1 and "the task gli" in lines[0]
    assert not (tmp_path / "datalist.json").exists()
    done = subprocess.run(cmd + ["--num_folds", "1"], env=env, capture_output=True, text=True, check=True)
    assert "task gli" in done.stdout and json.load(open(tmp_path / "datalist.json"))["task"] == "gli"
    unknown = subprocess.run(cmd + ["--task", "nope"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown task 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr


def test_a_task_of_ones_own_needs_no_code(tmp_path):
    spec = {
        "name": "lesions",
        "sequences": ["t1", "flair"],
        "labels": {"background": 0, "lesion": 7},
        "regions": {"lesion": [7]},
    }
    (tmp_path / "lesions.json").write_text(json.dumps(spec))
    data = tmp_path / "data"
    write_case(data, "sub01", ["_t1", "_flair"], labels_with(7, 7), label_suffix="_seg")
    datalist = make_datalist(str(data), num_folds=1, task=str(tmp_path / "lesions.json"))
    assert datalist["task"] == str(tmp_path / "lesions.json") and datalist["channels"] == ["t1", "flair"]
    assert datalist["layout"] == "plain" and len(datalist["training"][0]["image"]) == 2
    task = load_task(datalist["task"])
    assert task.to_classes() == ([0, 7], [0, 1]) and task.region_names == ("lesion",)


def components(mask):
    return ndimage.label(mask)[1]


def test_synthetic_data_of_each_task(tmp_path):
    seen = {"rc": 0, "cc": 0, "mets": 0, "men_at_surface": 0}
    for index in range(10):
        images, labels = synthesize_case(1, index, SMALL, "gli")
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 4}
        if np.any(labels == 4):
            seen["rc"] += 1
            cavity, healthy = labels == 4, labels == 0
            # a cavity is dark on T1, T1ce and FLAIR and bright on T2, relative to the tissue around it
            brain = (images["t1"] > 0) & healthy
            for sequence, darker in (("t1", True), ("t1ce", True), ("flair", True), ("t2", False)):
                inside, outside = images[sequence][cavity].mean(), images[sequence][brain].mean()
                assert (inside < outside) == darker, sequence
        _, labels = synthesize_case(1, index, SMALL, "ped")
        seen["cc"] += int(np.any(labels == 3))
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 4}
        _, labels = synthesize_case(1, index, SMALL, "mets")
        seen["mets"] += int(components(labels == 3) >= 2)
        images, labels = synthesize_case(1, index, SMALL, "men")
        brain = images["t1"] > 0
        mass = labels == 3
        seen["men_at_surface"] += int(np.any(mass & ~ndimage.binary_erosion(brain)))
    assert seen["rc"] >= 3 and seen["cc"] >= 3 and seen["mets"] >= 7 and seen["men_at_surface"] >= 7, seen
    assert CAVITY != CYST
    folders = synthesize(str(tmp_path), num_cases=1, shape=SMALL, task="gli", progress=False)
    names = sorted(os.listdir(folders[0]))
    assert names == [f"BraTS-GLI-00000-000-{s}.nii.gz" for s in ("seg", "t1c", "t1n", "t2f", "t2w")]
    assert make_datalist(str(tmp_path), num_folds=1)["task"] == "gli"


def test_men_rt_ids_and_files_choose_their_task(tmp_path):
    # BraTS-MEN-RT- ids carry BraTS-MEN-'s prefix too: the longest prefix decides
    assert task_of_cases(["BraTS-MEN-RT-0000-1", "BraTS-MEN-RT-0001-1"]) == "men-rt"
    assert task_of_cases(["BraTS-MEN-00000-000"]) == "men"
    write_case(tmp_path / "rt", "BraTS-MEN-RT-0000-1", ["_t1c"], labels_with(1), label_suffix="_gtv")
    datalist = make_datalist(str(tmp_path / "rt"), num_folds=1)
    assert (datalist["task"], datalist["layout"], datalist["channels"]) == ("men-rt", "brats-men-rt", ["t1c"])
    # ids of one's own: the one-sequence layout names the task
    write_case(tmp_path / "own", "patient7", ["_t1c"], labels_with(1), label_suffix="_gtv")
    assert make_datalist(str(tmp_path / "own"), num_folds=1)["task"] == "men-rt"


def test_synthetic_men_rt_heads_on_native_grids(tmp_path):
    folders = synthesize(str(tmp_path), num_cases=3, shape=SMALL, task="men-rt", progress=False)
    assert sorted(os.listdir(folders[0])) == ["BraTS-MEN-RT-00000-000_gtv.nii.gz", "BraTS-MEN-RT-00000-000_t1c.nii.gz"]
    for folder, spacing in zip(folders, NATIVE_SPACINGS, strict=True):
        case = os.path.basename(folder)
        image, label = (nib.load(os.path.join(folder, f"{case}_{s}.nii.gz")) for s in ("t1c", "gtv"))
        assert np.allclose(image.header.get_zooms(), spacing) and np.allclose(image.affine, label.affine)
        assert image.shape == tuple(int(f // s) for f, s in zip(SMALL, spacing, strict=True))
        voxels = np.asanyarray(image.dataobj)
        assert np.mean(voxels != 0) > 0.7  # noisy air: "non-zero" is not the brain
        assert set(np.unique(np.asanyarray(label.dataobj))) <= {0, 1}
    seen = {"target": 0, "bright": 0, "cavity": 0}
    for index in range(8):
        images, labels = synthesize_case(2, index, SMALL, "men-rt")
        target = labels == 1
        if target.any():
            seen["target"] += 1
            head = images["t1c"] > np.percentile(images["t1c"], 60)
            seen["bright"] += int(np.median(images["t1c"][target]) > np.median(images["t1c"][head & ~target]))
            seen["cavity"] += int(np.mean(images["t1c"][target] < np.median(images["t1c"][head])) > 0.2)
    assert seen["target"] >= 5 and seen["bright"] >= 3 and seen["cavity"] >= 1, seen
