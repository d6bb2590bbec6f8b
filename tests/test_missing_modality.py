"""Missing-modality inference (BraSyn): a case without one sequence is synthesized from the other three by that
target's model and segmented; cases missing two sequences, without a model or with a corrupt file are skipped and
named; and the BraSyn evaluation of the result."""

import csv
import json
import os
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

from custom_nets import Vox2VoxGenerator
from custom_nets.brasyn import image_metrics, percentile_scaled
from tests.bundle_helpers import ROOT, TINY, make_synthetic_dataset, run_bundle, write_overrides

MISSING = ["configs/inference.json", "configs/missing_modality_inference.json"]
DROPPED = {0: [], 1: ["flair"], 2: ["t1ce"], 3: ["t1", "t2"], 4: ["t2"], 5: ["flair"]}


def case_name(i):
    return f"BraTS2021_{i:05d}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Six cases: complete, without FLAIR, without T1ce, without T1 and T2, without T2 (no T2 model), and without
    FLAIR with a truncated T1. Untrained tiny models: the segmentation and the FLAIR, T1 and T1ce synthesis."""
    root = tmp_path_factory.mktemp("missing_modality")
    source = make_synthetic_dataset(root / "complete", num_cases=6, seed=5)
    torch.manual_seed(0)
    models = root / "models"
    models.mkdir()
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), models / "model.pt")
    for target in ("flair", "t1", "t1ce"):
        (models / "synthesis" / target).mkdir(parents=True)
        generator = Vox2VoxGenerator(3, 1, channels=TINY["generator_channels"], out_activation="tanh")
        torch.save(generator.state_dict(), models / "synthesis" / target / "model.pt")
    data = root / "data"
    for i, dropped in DROPPED.items():
        shutil.copytree(os.path.join(source, case_name(i)), data / case_name(i))
        for modality in dropped:
            os.remove(data / case_name(i) / f"{case_name(i)}_{modality}.nii.gz")
    truncated = data / case_name(5) / f"{case_name(5)}_t1.nii.gz"
    truncated.write_bytes(truncated.read_bytes()[:2000])
    tiny = write_overrides(root / "tiny.json")
    out = root / "out"
    result = run_bundle(None, [*MISSING, tiny], check=False, dataset_dir=data, ckpt_dir=models, output_dir=out)
    return {"root": root, "source": source, "data": data, "models": models, "tiny": tiny, "out": out, "result": result}


def test_one_missing_sequence_is_synthesized_then_segmented_and_the_others_are_skipped_by_name(run):
    out, result = run["out"], run["result"]
    assert result.returncode == 1, result.stderr[-3000:]  # three cases skipped, each named
    assert f"skipped {case_name(3)}: case {case_name(3)}: 2 sequences missing (t1, t2)" in result.stderr
    assert f"skipped {case_name(4)}: case {case_name(4)}: 't2' is missing and there is no synthesis model" in (
        result.stderr
    )
    assert "--target_modality t2" in result.stderr
    truncated = run["data"] / case_name(5) / f"{case_name(5)}_t1.nii.gz"
    assert f"skipped {case_name(5)}: case {case_name(5)}: cannot read {truncated}" in result.stderr
    written = {
        case_name(0): None,
        case_name(1): "flair",
        case_name(2): "t1ce",
    }
    expected = [f"{c}{e}" for c in written for e in (".nii.gz", ".png")]
    expected += [f"{c}_{t}_synthesized{e}" for c, t in written.items() if t for e in (".nii.gz", ".png")]
    assert sorted(os.listdir(out)) == sorted([*expected, "inference_summary.json", "volumes.csv"])
    record = json.loads((out / "inference_summary.json").read_text())
    assert record["summary"] == {"written": 3, "skipped": 3, "left": 0}
    assert {c: record["cases"][c]["synthesized"] for c in written} == written
    assert "synthesized" not in record["cases"][case_name(5)]  # its synthesis failed on the T1 and said so
    models = run["models"]
    assert list(record["models"]) == [
        str(models / p) for p in ("model.pt", "synthesis/flair/model.pt", "synthesis/t1ce/model.pt")
    ]


def test_the_synthesized_sequence_lies_on_the_input_grid_with_its_header(run):
    case = case_name(1)  # no FLAIR: the three inputs are T1, T1ce, T2 and the header is T1's
    t1 = nib.load(run["data"] / case / f"{case}_t1.nii.gz")
    synthesized = nib.load(run["out"] / f"{case}_flair_synthesized.nii.gz")
    assert synthesized.shape == t1.shape and synthesized.get_data_dtype() == np.float32
    assert np.array_equal(synthesized.affine, t1.affine)
    for field in ("qform_code", "sform_code", "pixdim", "xyzt_units", "dim_info"):
        assert np.array_equal(synthesized.header[field], t1.header[field]), field
    values, brain = synthesized.get_fdata(), t1.get_fdata() != 0
    assert np.all(values[~brain] == 0) and np.all(np.isfinite(values)) and values[brain].max() > 0


def test_the_segmentation_reads_the_synthesized_sequence_in_the_missing_place(run, tmp_path):
    """The same case with the synthesized FLAIR given as its FLAIR file, through plain inference, gives the same
    labels voxel for voxel."""
    case = case_name(1)
    folder = tmp_path / "data" / case
    shutil.copytree(run["data"] / case, folder)
    shutil.copy(run["out"] / f"{case}_flair_synthesized.nii.gz", folder / f"{case}_flair.nii.gz")
    run_bundle(
        None,
        ["configs/inference.json", run["tiny"]],
        dataset_dir=tmp_path / "data",
        model_files=f"['{run['models'] / 'model.pt'}']",
        output_dir=tmp_path / "out",
        save_png="false",
    )
    plain = np.asanyarray(nib.load(tmp_path / "out" / f"{case}.nii.gz").dataobj)
    assert np.array_equal(np.asanyarray(nib.load(run["out"] / f"{case}.nii.gz").dataobj), plain)


def test_brasyn_scaling_and_scores_on_hand_made_volumes():
    volume = np.arange(1000, dtype=float).reshape(10, 10, 10)
    low, high = 0.005 * 999, 0.995 * 999  # numpy's linear percentiles of 0..999
    scaled = percentile_scaled(volume)
    assert scaled.min() == 0 and scaled.max() == 1
    assert scaled[5, 0, 0] == pytest.approx((500 - low) / (high - low))
    assert percentile_scaled(volume - 100)[0, 0, 0] == 0  # a negative lower percentile is taken as 0
    rng = np.random.default_rng(0)
    real = np.zeros((32, 32, 32))
    real[4:28, 4:28, 4:28] = rng.gamma(4.0, 50.0, (24, 24, 24))
    tumour = np.zeros(real.shape, bool)
    tumour[10:18, 10:18, 10:18] = True
    same = image_metrics(real, real, tumour)
    assert same["ssim_tumour"] == pytest.approx(1) and same["ssim_non_tumour"] == pytest.approx(1)
    assert same["mse"] == 0 and same["psnr"] == np.inf
    # the brain outside the tumour shuffled: the same values (so the same percentiles), the tumour untouched
    shuffled = real.copy()
    outside = (real > 0) & ~tumour
    shuffled[outside] = rng.permutation(real[outside])
    scores = image_metrics(real, shuffled, tumour)
    assert scores["ssim_tumour"] == pytest.approx(1) and scores["ssim_non_tumour"] < 0.9
    expected_mse = np.mean((percentile_scaled(shuffled) - percentile_scaled(real)) ** 2)
    assert scores["mse"] == pytest.approx(expected_mse, rel=1e-5)
    assert scores["psnr"] == pytest.approx(10 * np.log10(1 / expected_mse), rel=1e-5)
    with pytest.raises(ValueError, match="share one grid"):
        image_metrics(real, real[:-1], tumour)


def test_brasyn_evaluation_command_scores_each_synthesized_case_against_the_real_one(run, tmp_path):
    real_run = tmp_path / "real"
    run_bundle(
        None,
        ["configs/inference.json", run["tiny"]],
        dataset_dir=run["source"],
        model_files=f"['{run['models'] / 'model.pt'}']",
        output_dir=real_run,
        save_png="false",
    )
    evaluation = tmp_path / "brasyn"
    command = [sys.executable, "-m", "custom_nets.brasyn", "--run_dir", str(run["out"]), "--dataset_dir"]
    command += [str(run["source"]), "--real_run_dir", str(real_run), "--output_dir", str(evaluation)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(open(evaluation / "metrics.csv")))
    assert [(r["case"], r["synthesized"]) for r in rows] == [(case_name(1), "flair"), (case_name(2), "t1ce")]
    for row in rows:
        assert 0 <= float(row["ssim_tumour"]) <= 1 and 0 <= float(row["ssim_non_tumour"]) <= 1
        for region in ("WT", "TC", "ET"):
            for source in ("synthesized", "real"):
                assert 0 <= float(row[f"dice_{region}_{source}"]) <= 1
    summary = json.loads((evaluation / "summary.json").read_text())
    assert summary["num_cases"] == 2 and summary["by_synthesized"]["flair"]["num_cases"] == 1
    assert summary["by_synthesized"]["t1ce"]["metrics"]["mse"]["mean"] == pytest.approx(float(rows[1]["mse"]))
    assert "flair" in result.stdout and "SSIM tum" in result.stdout
    assert (evaluation / f"{case_name(1)}.png").stat().st_size > 10_000
