"""Scans made BraTS-like (``custom_nets.preprocess``): known rigid misalignments applied with ITK are recovered by the
registration, deepbet's installed weights strip a synthetic head, the guard refuses the raw case and passes the
prepared one, and a DICOM series in another frame of reference is registered and segmented through the bundle."""

import glob
import json
import os
import subprocess
import sys

import itk
import nibabel as nib
import numpy as np
import pytest

from custom_nets.data.synthetic import synthesize
from custom_nets.foreground import head_mask
from custom_nets.input_checks import input_problem
from custom_nets.preprocess import preprocess
from custom_nets.preprocess.registration import Rigid, resample_onto

SHAPE = (64, 64, 48)
AXIS = [0.3, 0.2, 1.0]


def rigid(image, degrees: float, shift_mm: float):
    """A rotation about the image's centre by ``degrees`` around ``AXIS``, then ``shift_mm`` along x."""
    transform = Rigid.New()
    size = np.asarray(image.GetLargestPossibleRegion().GetSize(), dtype=float)
    centre = np.asarray(image.GetOrigin()) + itk.array_from_matrix(image.GetDirection()) @ (
        (size - 1) / 2 * np.asarray(image.GetSpacing())
    )
    transform.SetCenter([float(c) for c in centre])
    transform.SetRotation(itk.Vector[itk.D, 3](AXIS), float(np.deg2rad(degrees)))
    transform.SetTranslation(itk.Vector[itk.D, 3]([float(shift_mm), 0.0, 0.0]))
    return transform


def move_in_file(path: str, degrees: float, shift_mm: float):
    """Rewrites the file with its content moved by ``rigid`` (the header unchanged: the scan is misaligned)."""
    image = itk.imread(path, itk.F)
    applied = rigid(image, degrees, shift_mm)
    itk.imwrite(resample_onto(image, image, applied), path, compression=True)
    return applied


def stacked(folder, case, suffixes):
    return np.stack([np.asanyarray(nib.load(os.path.join(folder, f"{case}{s}.nii.gz")).dataobj) for s in suffixes])


def composite_error(applied, found, points) -> tuple[float, float]:
    """The largest distance (mm) by which ``applied`` after ``found`` misses the identity on ``points``, and the
    angle (degrees) of the composite's rotation."""
    moved = np.array([applied.TransformPoint(found.TransformPoint([float(c) for c in p])) for p in points])
    matrix = itk.array_from_matrix(applied.GetMatrix()) @ itk.array_from_matrix(found.GetMatrix())
    angle = np.degrees(np.arccos(np.clip((np.trace(matrix) - 1) / 2, -1, 1)))
    return float(np.linalg.norm(moved - points, axis=1).max()), float(angle)


def test_misaligned_sequences_are_registered_and_the_guard_then_passes(tmp_path):
    raw = tmp_path / "raw"
    synthesize(str(raw), num_cases=1, seed=3, shape=SHAPE, progress=False)
    case = "BraTS2021_00000"
    folder = raw / case
    applied = {
        "t2": move_in_file(str(folder / f"{case}_t2.nii.gz"), 6.0, 5.0),  # the issue's: 6 degrees and 5 mm on T2
        "flair": move_in_file(str(folder / f"{case}_flair.nii.gz"), 3.0, 0.0),  # 3 degrees on FLAIR
    }
    suffixes = ["_flair", "_t1", "_t1ce", "_t2"]
    problem = input_problem(stacked(folder, case, suffixes), ["flair", "t1", "t1ce", "t2"])
    assert problem and "co-registered" in problem[0]  # the guard refuses the raw case
    out = tmp_path / "prepared"
    # in-process (the command line's refusals are tested below); a synthetic brain of 64x64x48 mm holds about 50 mL
    preprocess(str(raw), str(out), reference="t1", brain_ml_range=[20, 2500])
    prepared = out / case
    reference = itk.imread(str(prepared / f"{case}_t1.nii.gz"), itk.F)
    t1 = nib.load(raw / case / f"{case}_t1.nii.gz")
    brain = np.argwhere(np.asanyarray(t1.dataobj) > 0)[::200]
    points = np.array([reference.TransformIndexToPhysicalPoint([int(i) for i in p]) for p in brain], dtype=float)
    for sequence, transform in applied.items():
        found = itk.transformread(str(prepared / f"{case}_{sequence}.tfm"))[0]
        error_mm, angle = composite_error(transform, found, points)
        assert error_mm < 1.0 and angle < 1.0, (sequence, error_mm, angle)  # recovered within 1 mm and 1 degree
    record = json.loads((out / "preprocess_record.json").read_text())["cases"][case]
    assert record["status"] == "written" and record["reference"] == "t1" and record["skull_stripped_on"] == "t1"
    assert all(record["registration"][s]["converged"] for s in ("flair", "t1ce", "t2"))
    assert abs(record["registration"]["t2"]["rotation_degrees"] - 6.0) < 1.0
    assert 20 < record["brain_ml"] < 120 and set(record["seconds"]) >= {"register t2", "skull strip"}
    images = stacked(prepared, case, suffixes)
    mask = np.asanyarray(nib.load(prepared / f"{case}_brain_mask.nii.gz").dataobj) > 0
    assert not images[:, ~mask].any()  # one mask on every sequence
    assert input_problem(images, ["flair", "t1", "t1ce", "t2"]) is None  # and the guard passes it
    assert (prepared / f"{case}_seg.nii.gz").exists()  # the label lies on the reference's grid: copied


def test_deepbet_strips_a_synthetic_head_and_an_implausible_brain_is_refused(tmp_path):
    raw = tmp_path / "heads"
    synthesize(str(raw), num_cases=1, seed=4, shape=(112, 112, 88), task="men-rt", progress=False)
    case = "BraTS-MEN-RT-00000-000"
    preprocess(str(raw / case), str(tmp_path / "out"), skull_strip=True, brain_ml_range=[100, 2500])
    head = nib.load(raw / case / f"{case}_t1c.nii.gz")
    inside_head = head_mask(np.asanyarray(head.dataobj)[None], head.header.get_zooms())
    mask = np.asanyarray(nib.load(tmp_path / "out" / case / f"{case}_brain_mask.nii.gz").dataobj) > 0
    assert mask.shape == head.shape  # on the scan's own 0.5x0.5x1 mm grid
    assert mask[inside_head].sum() / mask.sum() > 0.95  # the brain mask lies inside the head
    assert 0.2 < mask.sum() / inside_head.sum() < 0.8  # and is not the whole head
    stripped = np.asanyarray(nib.load(tmp_path / "out" / case / f"{case}_t1c.nii.gz").dataobj)
    assert not stripped[~mask].any() and stripped[mask].any()
    with pytest.raises(SystemExit) as exit_code:  # a range no synthetic brain meets: the case is skipped, named
        preprocess(str(raw), str(tmp_path / "refused"), skull_strip=True, brain_ml_range=[1200, 2500])
    assert exit_code.value.code == 1
    skipped = json.loads((tmp_path / "refused" / "preprocess_record.json").read_text())["cases"][case]
    assert skipped["status"] == "skipped" and "mL, outside a brain's 1200-2500 mL" in skipped["reason"]
    assert not glob.glob(str(tmp_path / "refused" / case / "*_t1c.nii.gz"))


@pytest.mark.parametrize(
    "module, args, message",
    [
        (
            "custom_nets.preprocess",
            ["/nonexistent/scans", "/tmp/out"],
            "/nonexistent/scans: dataset folder does not exist",
        ),
        (
            "custom_nets.brasyn",
            ["--run_dir", "/nonexistent/run", "--dataset_dir", "/nonexistent/data"],
            "does not exist",
        ),
    ],
)
def test_command_line_refusals_are_one_line(module, args, message):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    refused = [line for line in done.stderr.splitlines() if line.startswith("refused:")]
    assert len(refused) == 1 and message in refused[0]
