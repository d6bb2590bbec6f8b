"""Batch runs where one bad case never spoils the others and no output is ever torn: inference, synthesis inference
and evaluation through ``monai.bundle`` on real files broken in every way a user's data breaks, and a SIGKILL
while an inference process writes."""

import csv
import gzip
import json
import os
import signal
import subprocess
import time

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from custom_nets import Vox2VoxGenerator
from custom_nets.cases import CaseRecord
from custom_nets.data import write_datalist
from custom_nets.data.synthetic import brats_affine, synthesize_case
from custom_nets.handlers.prediction_writer import OffGridError, check_on_grid
from custom_nets.utils import PARTIAL_PREFIX, atomic_path, sha256
from tests.bundle_helpers import BUNDLE, ROOT, TINY, bundle_command, run_bundle, write_overrides
from tests.test_input_checks import misaligned, with_shell

SHAPE = (40, 48, 32)
MODALITIES = ("flair", "t1", "t1ce", "t2")


def write_case(root, case, images, affine, labels=None):
    os.makedirs(os.path.join(root, case), exist_ok=True)
    for modality, image in images.items():
        nib.save(nib.Nifti1Image(image, affine), os.path.join(root, case, f"{case}_{modality}.nii.gz"))
    if labels is not None:
        nib.save(nib.Nifti1Image(labels, affine), os.path.join(root, case, f"{case}_seg.nii.gz"))


def truncate(path):
    """Keeps the first half of a gzip stream: the header still reads, the voxels end early."""
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


BOMB_SHAPE = (1024, 1024, 768)


def write_bomb(path, affine):
    """A NIfTI header claiming BOMB_SHAPE float32 voxels (3 GB) in front of 1 MB of zeros: decoding it would fail
    only after asking for the 3 GB; its header alone must refuse it."""
    header = nib.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape(BOMB_SHAPE)
    header.set_sform(affine, code=1)
    header["vox_offset"] = 352
    with gzip.open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + bytes(1 << 20))


def faulty_cases(root):
    """One healthy case and one case per fault; returns {case: (file named in the reason, words of the reason)}."""
    images, labels = synthesize_case(11, 0, SHAPE)
    affine = brats_affine(SHAPE)
    expected = {}
    write_case(root, "BraTS2021_healthy", images, affine, labels)

    case = "BraTS2021_truncated"
    write_case(root, case, images, affine, labels)
    truncate(os.path.join(root, case, f"{case}_flair.nii.gz"))
    expected[case] = (f"{case}_flair.nii.gz", "cannot read")

    case = "BraTS2021_nan"
    t1 = images["t1"].copy()
    t1[20, 24, 16] = np.nan
    write_case(root, case, {**images, "t1": t1}, affine, labels)
    expected[case] = (f"{case}_t1.nii.gz", "1 NaN or infinite voxels")

    case = "BraTS2021_badheader"
    write_case(root, case, images, affine, labels)
    open(os.path.join(root, case, f"{case}_t2.nii.gz"), "wb").write(b"this is no NIfTI file" * 40)
    expected[case] = (f"{case}_t2.nii.gz", "cannot read")

    case = "BraTS2021_affines"
    write_case(root, case, images, affine, labels)
    shifted = affine.copy()
    shifted[:3, 3] += 5.0
    nib.save(nib.Nifti1Image(images["t1ce"], shifted), os.path.join(root, case, f"{case}_t1ce.nii.gz"))
    expected[case] = (f"{case}_t1ce.nii.gz", "co-registered")

    case = "BraTS2021_4d"
    write_case(root, case, images, affine, labels)
    nib.save(nib.Nifti1Image(np.stack([images["t2"]] * 2, -1), affine), os.path.join(root, case, f"{case}_t2.nii.gz"))
    expected[case] = (f"{case}_t2.nii.gz", "expected a 3D volume")

    case = "BraTS2021_empty"
    write_case(root, case, {m: np.zeros(SHAPE, np.float32) for m in MODALITIES}, affine, labels)
    expected[case] = (f"{case}_flair.nii.gz", "all zero (an empty brain)")

    case = "BraTS2021_bomb"
    write_case(root, case, images, affine, labels)
    for modality in MODALITIES:
        write_bomb(os.path.join(root, case, f"{case}_{modality}.nii.gz"), affine)
    expected[case] = (
        f"{case}_flair.nii.gz",
        "holds 1024x1024x768 = 805,306,368 voxels, more than max_voxels_per_image 536,870,912; it was not decoded",
    )

    stacked = np.stack([images[m] for m in MODALITIES])
    shelled = with_shell(np.pad(stacked, [(0, 0)] + [(8, 8)] * 3))  # room around the shell for the rim check
    case = "BraTS2021_shell"  # a bright shell around the brain: skull and scalp left on
    write_case(root, case, dict(zip(MODALITIES, shelled, strict=True)), brats_affine(shelled.shape[1:]))
    expected[case] = (f"{case}_flair.nii.gz", "input check 'skull-stripped' failed: the outer 3 voxels")

    case = "BraTS2021_misaligned"  # T2 moved 5 mm and turned 6 degrees, FLAIR turned 3 degrees
    write_case(root, case, dict(zip(MODALITIES, misaligned(stacked), strict=True)), affine, labels)
    expected[case] = (f"{case}_t2.nii.gz", "input check 'co-registered' failed: the outline of t2's non-zero voxels")
    return expected


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    expected = faulty_cases(root / "data")
    torch.manual_seed(0)
    os.makedirs(root / "models")
    model = root / "models" / "model.pt"
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), model)
    return {"root": root, "data": root / "data", "expected": expected, "model": model}


def assert_skipped_and_named(result, record_file, expected, written):
    assert result.returncode == 1, result.stderr[-3000:]
    record = json.load(open(record_file))
    assert record["summary"] == {"written": len(written), "skipped": len(expected), "left": 0}
    for case, (file_name, words) in expected.items():
        entry = record["cases"][case]
        assert entry["status"] == "skipped" and file_name in entry["reason"] and words in entry["reason"], entry
        assert f"skipped {case}: case {case}:" in result.stderr and entry["seconds"] >= 0
    for case in written:
        assert record["cases"][case]["status"] == "written" and record["cases"][case]["seconds"] > 0
    assert f"{len(written)} case(s) written" in result.stdout and f"{len(expected)} skipped" in result.stdout
    return record


def test_inference_skips_each_bad_case_with_its_reason_and_writes_the_rest(faults):
    out = faults["root"] / "inference"
    result = run_bundle(
        None,
        ["configs/inference.json", write_overrides(faults["root"] / "tiny.json")],
        check=False,
        dataset_dir=faults["data"],
        output_dir=out,
        model_files=f"['{faults['model']}']",
    )
    record = assert_skipped_and_named(result, out / "inference_summary.json", faults["expected"], ["BraTS2021_healthy"])
    assert record["models"] == {str(faults["model"]): sha256(str(faults["model"]))}
    # NaN never becomes background: nothing is written for a skipped case
    assert sorted(os.listdir(out)) == [
        "BraTS2021_healthy.nii.gz",
        "BraTS2021_healthy.png",
        "inference_summary.json",
        "volumes.csv",
    ]


def test_evaluation_skips_bad_cases_and_scores_the_rest(faults, tmp_path):
    data = tmp_path / "data"
    healthy = faults["data"] / "BraTS2021_healthy"
    for name in ("BraTS2021_00000", "BraTS2021_00001"):
        os.makedirs(data / name)
        for f in os.listdir(healthy):
            os.symlink(healthy / f, data / name / f.replace("BraTS2021_healthy", name))
    write_datalist(str(data), num_folds=2)
    # broken after its datalist was made: the evaluation reads it as it is now
    target = data / "BraTS2021_00001" / "BraTS2021_00001_t2.nii.gz"
    os.remove(target)
    os.symlink(faults["data"] / "BraTS2021_nan" / "BraTS2021_nan_t1.nii.gz", target)
    out = tmp_path / "evaluation"
    result = run_bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", write_overrides(tmp_path / "tiny.json")],
        check=False,
        dataset_dir=data,
        ckpt_dir=faults["model"].parent,
        output_dir=out,
        eval_datalist="$@datalist",
        save_predictions="true",
    )
    expected = {"BraTS2021_00001": ("BraTS2021_00001_t2.nii.gz", "NaN or infinite voxels")}
    assert_skipped_and_named(result, out / "evaluation_record.json", expected, ["BraTS2021_00000"])
    rows = open(out / "metrics.csv").read().splitlines()
    assert len(rows) == 2 and rows[1].startswith("BraTS2021_00000,")
    assert sorted(os.listdir(out / "predictions")) == ["BraTS2021_00000.nii.gz", "BraTS2021_00000.png", "volumes.csv"]


def test_synthesis_inference_skips_a_truncated_condition(faults, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for case in ("BraTS2021_healthy", "BraTS2021_truncated"):
        os.symlink(faults["data"] / case, data / case)
    model = tmp_path / "synthesis.pt"
    torch.manual_seed(0)
    generator = Vox2VoxGenerator(3, 1, channels=TINY["generator_channels"], out_activation="tanh")
    torch.save(generator.state_dict(), model)
    out = tmp_path / "synthesized"
    result = run_bundle(
        None,
        ["configs/inference.json", "configs/synthesis_inference.json", write_overrides(tmp_path / "tiny.json")],
        check=False,
        dataset_dir=data,
        output_dir=out,
        model_files=f"['{model}']",
        condition_modalities="['flair','t1','t2']",
        target_modality="t1ce",
    )
    expected = {"BraTS2021_truncated": ("BraTS2021_truncated_flair.nii.gz", "cannot read")}
    assert_skipped_and_named(result, out / "inference_summary.json", expected, ["BraTS2021_healthy"])
    assert nib.load(out / "BraTS2021_healthy.nii.gz").shape == SHAPE


def test_write_back_guard_compares_affines_not_only_shapes(tmp_path):
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    reference = nib.Nifti1Image(np.ones(SHAPE, np.float32), lps)
    check_on_grid(MetaTensor(torch.zeros(1, *SHAPE), affine=torch.as_tensor(lps)), reference, "lps")
    # the same shape left in RAS would be written flipped under the input's header
    with pytest.raises(OffGridError, match="case lps: the output's affine differs from the input's"):
        check_on_grid(MetaTensor(torch.zeros(1, *SHAPE), affine=torch.eye(4, dtype=torch.float64)), reference, "lps")
    with pytest.raises(OffGridError, match=r"output of shape \(40, 48, 31\) is not on the input grid"):
        check_on_grid(MetaTensor(torch.zeros(1, 40, 48, 31), affine=torch.as_tensor(lps)), reference, "lps")
    with pytest.raises(OffGridError, match="carries no affine"):
        check_on_grid(torch.zeros(1, *SHAPE), reference, "lps")


def test_atomic_path_leaves_the_old_file_or_the_new_one(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(str(path)) as temporary:
        open(temporary, "w").write("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]
    with atomic_path(str(path)) as temporary:
        assert os.path.basename(temporary).startswith(PARTIAL_PREFIX) and temporary.endswith("summary.json")
        open(temporary, "w").write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["summary.json"]


def test_a_case_recorded_as_skipped_stays_skipped(tmp_path):
    record = CaseRecord(str(tmp_path), file_name="record.json")
    record.skipped("a", "case a: off grid")
    record.written("a")
    record.written("b")
    assert record.cases["a"]["status"] == "skipped" and record.count("written") == 1
    record.restart_clock()
    time.sleep(0.05)
    record.written("c")  # metrics written...
    record.written("c")  # ...then predictions, a moment later: the case took the time of both
    assert record.cases["c"]["seconds"] >= 0.05


# ---- SIGKILL while writing ------------------------------------------------------------------------------------


def reads_completely(path):
    name = os.path.basename(path)
    if name.endswith(".nii.gz"):
        np.asanyarray(nib.load(path).dataobj).sum()
    elif name.endswith(".png"):
        plt.imread(path)
    elif name.endswith(".json"):
        json.load(open(path))
    elif name.endswith(".csv"):  # every row has every column: not cut short
        rows = list(csv.reader(open(path)))
        assert rows and all(len(row) == len(rows[0]) for row in rows), path
    else:
        raise AssertionError(f"unexpected file {path}")


def test_sigkill_while_writing_leaves_only_whole_files_and_a_rerun_finishes(tmp_path):
    data = tmp_path / "data"
    for i in range(6):
        images, _ = synthesize_case(13, i, (96, 96, 80))
        write_case(str(data), f"BraTS2021_{i:05d}", images, brats_affine((96, 96, 80)))
    model = tmp_path / "model.pt"
    torch.manual_seed(0)
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), model)
    overrides = write_overrides(tmp_path / "tiny.json")
    out = tmp_path / "out"
    command = bundle_command(
        None, ["configs/inference.json", overrides], dataset_dir=data, output_dir=out, model_files=f"['{model}']"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # killed while a file is being written (a temporary file exists), once a first case is complete
    process = subprocess.Popen(command, cwd=BUNDLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, caught_mid_write = time.monotonic() + 300, False
    while process.poll() is None and time.monotonic() < deadline and not caught_mid_write:
        names = os.listdir(out) if out.exists() else []
        complete = [n for n in names if n.endswith(".nii.gz") and not n.startswith(PARTIAL_PREFIX)]
        if complete and any(n.startswith(PARTIAL_PREFIX) for n in names):
            process.send_signal(signal.SIGKILL)
            caught_mid_write = True
    process.wait()
    assert caught_mid_write and process.returncode == -signal.SIGKILL
    partial = [n for n in os.listdir(out) if n.startswith(PARTIAL_PREFIX)]
    for name in os.listdir(out):  # every file under its final name reads completely
        if name not in partial:
            reads_completely(out / name)
    result = subprocess.run(command, cwd=BUNDLE, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    cases = [f"BraTS2021_{i:05d}" for i in range(6)]
    assert sorted(os.listdir(out)) == sorted([f"{c}.{e}" for c in cases for e in ("nii.gz", "png")]) + [
        "inference_summary.json",
        "volumes.csv",
    ]
    # the cases the killed runs finished are measured from their label maps
    assert sorted(r["case"] for r in csv.DictReader(open(out / "volumes.csv"))) == cases
    for name in os.listdir(out):
        reads_completely(out / name)
    record = json.load(open(out / "inference_summary.json"))
    assert record["summary"]["written"] + record["summary"]["left"] == 6 and record["summary"]["skipped"] == 0
    assert record["summary"]["left"] >= 1  # what the killed runs finished is not redone
