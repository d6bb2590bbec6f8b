import csv
import hashlib
import json
import os

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from custom_nets import Vox2VoxGenerator
from custom_nets.handlers.brats_metrics import METRICS, MISS_HD95, region_metrics
from custom_nets.inference import load_generator
from custom_nets.transforms import RelabelSmallEnhancingd
from tests.bundle_helpers import ROOT, TINY, make_synthetic_dataset, run_bundle, train_tiny, write_overrides


def cube(shape, start, size):
    mask = torch.zeros(shape)
    mask[tuple(slice(s, s + size) for s in start)] = 1
    return mask


def test_dice_hd95_sensitivity_specificity_known_answers():
    shape = (40, 40, 40)
    truth = cube(shape, (10, 10, 10), 10)
    pred = cube(shape, (13, 10, 10), 10)  # shifted 3 voxels along the first axis
    m = region_metrics(pred, truth, (1.0, 1.0, 1.0))
    assert m["dice"] == pytest.approx(0.7)  # overlap 7/10
    assert m["sensitivity"] == pytest.approx(0.7)
    assert m["specificity"] == pytest.approx(1 - 300 / (40**3 - 1000))
    monai_dice = DiceMetric(include_background=True)(pred[None, None], truth[None, None]).item()
    monai_hd = HausdorffDistanceMetric(include_background=True, percentile=95)(pred[None, None], truth[None, None])
    assert m["dice"] == pytest.approx(monai_dice) and m["hd95_max_directed"] == pytest.approx(monai_hd.item())
    assert m["hd95_max_directed"] == pytest.approx(3.0)
    # HD95 is in mm: 2 mm voxels along the shifted axis double it
    assert region_metrics(pred, truth, (2.0, 1.0, 1.0))["hd95_max_directed"] == pytest.approx(6.0)


def test_brats_conventions_for_empty_regions():
    empty, truth = torch.zeros(240, 240, 155), cube((240, 240, 155), (100, 100, 70), 8)
    both_empty = region_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert both_empty == {"dice": 1.0, "hd95_max_directed": 0.0, "sensitivity": 1.0, "specificity": 1.0}
    missed = region_metrics(empty, truth, (1.0, 1.0, 1.0))
    assert missed["dice"] == 0.0 and missed["hd95_max_directed"] == MISS_HD95 == 373.0 and missed["sensitivity"] == 0
    false_alarm = region_metrics(truth, empty, (1.0, 1.0, 1.0))
    assert false_alarm["dice"] == 0.0 and false_alarm["hd95_max_directed"] == MISS_HD95
    assert false_alarm["sensitivity"] == 1.0 and false_alarm["specificity"] < 1.0


def test_region_masks_follow_the_task():
    from custom_nets.data.tasks import load_task
    from custom_nets.transforms import RegionMasksd

    classes = torch.zeros(1, 6, 6, 6, dtype=torch.long)
    classes[0, 0], classes[0, 1], classes[0, 2], classes[0, 3] = 1, 2, 3, 4  # one slab per class
    gli = load_task("gli")  # netc {1}, snfh {2}, et {3}, rc {4}, tc {1, 3}, wt {1, 2, 3}
    masks = RegionMasksd("pred", gli.region_classes())({"pred": classes})["pred"]
    assert masks.shape == (6, 6, 6, 6)
    slabs = {name: [int(masks[r, s].all()) for s in range(4)] for r, name in enumerate(gli.region_names)}
    assert slabs == {
        "netc": [1, 0, 0, 0],
        "snfh": [0, 1, 0, 0],
        "et": [0, 0, 1, 0],
        "rc": [0, 0, 0, 1],
        "tc": [1, 0, 1, 0],
        "wt": [1, 1, 1, 0],
    }
    assert int(masks[:, 4:].sum()) == 0  # background in no region
    brats = load_task("brats2021")  # classes 1 NCR/NET, 2 edema, 3 enhancing; regions WT, TC, ET
    masks = RegionMasksd("pred", brats.region_classes())({"pred": classes.clamp(max=3)})["pred"]
    assert [int(masks[r, 2].all()) for r in range(3)] == [1, 1, 1] and int(masks[1, 1].any()) == 0


def test_relabel_small_enhancing():
    classes = torch.zeros(1, 10, 10, 10, dtype=torch.long)
    classes[0, :2, :2, :2] = 3  # 8 ET voxels
    out = RelabelSmallEnhancingd("pred", min_voxels=10)({"pred": classes})["pred"]
    assert int((out == 3).sum()) == 0 and int((out == 1).sum()) == 8
    kept = RelabelSmallEnhancingd("pred", min_voxels=5)({"pred": classes})["pred"]
    assert torch.equal(kept, classes)


def test_mismatched_checkpoint_names_the_mismatch(tmp_path):
    path = tmp_path / "model.pt"
    torch.save(Vox2VoxGenerator(4, 4, channels=(4, 8, 16, 32)).state_dict(), path)
    with pytest.raises(ValueError) as err:
        load_generator(Vox2VoxGenerator(4, 4, channels=(8, 16, 32, 64)), str(path))
    message = str(err.value)
    assert "differ in shape, first down1.model.0.weight: checkpoint (4, 4, 4, 4, 4), network (8, 4, 4, 4, 4)" in message
    assert len(message.splitlines()) <= 5


# ---- the bundle's evaluate and inference configs ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for one epoch on a 5-case synthetic dataset, and that dataset."""
    root = tmp_path_factory.mktemp("evaluation")
    data = make_synthetic_dataset(root / "data", num_cases=5, seed=21)
    overrides = write_overrides(root / "tiny.json", epochs=1)
    train_tiny(root, data, overrides)
    return {"root": root, "data": str(data), "overrides": overrides, "model": root / "models" / "model.pt"}


def evaluate_every_case(trained, out, **options):
    """``run evaluating`` of the trained model on every labelled case, predictions saved."""
    return run_bundle(
        "evaluating",
        ["configs/train.json", "configs/evaluate.json", trained["overrides"]],
        dataset_dir=trained["data"],
        ckpt_dir=trained["model"].parent,
        output_dir=out,
        eval_datalist="$@datalist",
        save_predictions="true",
        **options,
    )


def test_evaluating_writes_metrics_summary_and_predictions(trained):
    out = trained["root"] / "eval"
    evaluate_every_case(trained, out)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["case"] for r in rows] == [f"BraTS2021_{i:05d}" for i in range(5)]
    assert set(rows[0]) == {"case"} | {f"{m}_{r}" for m in METRICS for r in ("WT", "TC", "ET")}
    assert {"lesion_dice_ET", "lesion_hd95_ET", "lesion_fp_ET", "nsd_WT", "hd95_max_directed_TC"} <= set(rows[0])
    summary = json.load(open(out / "summary.json"))
    dice_wt = [float(r["dice_WT"]) for r in rows]
    assert summary["num_cases"] == 5 and summary["metrics"]["dice_WT"]["mean"] == pytest.approx(np.mean(dice_wt))
    assert summary["metrics"]["hd95_ET"].keys() == {"mean", "std", "median", "p25", "p75"}
    sha = hashlib.sha256(trained["model"].read_bytes()).hexdigest()
    assert summary["models"] == {str(trained["model"]): sha}
    pred = nib.load(out / "predictions" / "BraTS2021_00003.nii.gz")
    flair = nib.load(os.path.join(trained["data"], "BraTS2021_00003", "BraTS2021_00003_flair.nii.gz"))
    assert pred.shape == flair.shape and np.allclose(pred.affine, flair.affine)
    assert set(np.unique(np.asanyarray(pred.dataobj))) <= {0, 1, 2, 4}  # written back in the BraTS 2021 labels


def test_evaluation_predictions_are_the_files_inference_writes(trained):
    """One definition of the inferer and the label post-processing (inference.json's) serves both runs."""
    evaluation, inference = trained["root"] / "eval_vs_inference", trained["root"] / "inference_vs_eval"
    options = dict(flip_tta="true", et_min_voxels=5, largest_component="true")  # every shared step switched on
    evaluate_every_case(trained, evaluation, **options)
    run_bundle(
        None,
        ["configs/inference.json", trained["overrides"]],
        dataset_dir=trained["data"],
        output_dir=inference,
        model_files=f"['{trained['model']}']",
        **options,
    )
    cases = [f"BraTS2021_{i:05d}" for i in range(5)]
    for case in cases:
        evaluated = nib.load(evaluation / "predictions" / f"{case}.nii.gz")
        inferred = nib.load(inference / f"{case}.nii.gz")
        assert np.array_equal(np.asanyarray(evaluated.dataobj), np.asanyarray(inferred.dataobj)), case
        assert np.allclose(evaluated.affine, inferred.affine)
        # flip TTA runs 4 members: both runs write the same uncertainty map on the input's grid
        maps = [nib.load(d / f"{case}_uncertainty.nii.gz") for d in (evaluation / "predictions", inference)]
        assert maps[0].shape == (*evaluated.shape, 2)
        np.testing.assert_allclose(np.asarray(maps[0].dataobj), np.asarray(maps[1].dataobj), atol=1e-5)
    summary = json.load(open(evaluation / "summary.json"))
    assert summary["config"]["flip_tta"] == "true" and summary["config"]["et_min_voxels"] == 5
    # the uncertainty score beside the metrics, and its rank correlation with Dice (Pearson's on the ranks)
    from scipy.stats import rankdata

    rows = list(csv.DictReader(open(evaluation / "metrics.csv")))
    correlation = json.load(open(evaluation / "uncertainty_correlation.json"))
    uncertainty = np.array([float(r["uncertainty"]) for r in rows])
    assert correlation["num_cases"] == 5 and "uncertainty" in summary["metrics"]
    for column in ("dice_WT", "dice_TC"):
        dice = np.array([float(r[column]) for r in rows])
        expected = np.corrcoef(rankdata(uncertainty), rankdata(dice))[0, 1]
        assert correlation["spearman_uncertainty_vs"][column] == pytest.approx(expected, abs=1e-4)
    assert correlation["review_first"] == [rows[i]["case"] for i in np.argsort(-uncertainty, kind="stable")]
    record = json.load(open(inference / "inference_summary.json"))
    assert record["review_first"] == correlation["review_first"]
    assert [record["cases"][c]["uncertainty"] for c in cases] == pytest.approx(list(uncertainty), abs=1e-6)


def _write_case(root, case, images, affine, skip=()):
    for modality, image in images.items():
        if modality not in skip:
            nib.save(nib.Nifti1Image(image, affine), os.path.join(root, case, f"{case}_{modality}.nii.gz"))


@pytest.fixture(scope="module")
def inference_inputs(tmp_path_factory):
    """Cases with RAS, LPS and oblique affines (same voxels), a case missing T2 and one with a mismatched shape, and
    a freshly initialised tiny model."""
    from custom_nets.data.synthetic import synthesize_case

    root = tmp_path_factory.mktemp("inference")
    data = root / "data"
    images, _ = synthesize_case(5, 0, (40, 48, 32))
    angle = np.deg2rad(20)
    oblique = np.array(
        [[np.cos(angle), -np.sin(angle), 0, 10], [np.sin(angle), np.cos(angle), 0, -5], [0, 0, 1.0, 3], [0, 0, 0, 1]]
    )
    affines = {
        "BraTS2021_ras": np.diag([1.0, 1, 1, 1]),
        "BraTS2021_lps": np.diag([-1.0, -1, 1, 1]),
        "BraTS2021_oblique": oblique,
    }
    for case, affine in affines.items():
        os.makedirs(data / case)
        _write_case(str(data), case, images, affine)
    os.makedirs(data / "BraTS2021_missing")
    _write_case(str(data), "BraTS2021_missing", images, np.eye(4), skip=("t2",))
    os.makedirs(data / "BraTS2021_mismatch")
    _write_case(str(data), "BraTS2021_mismatch", {**images, "t1ce": images["t1ce"][:, :, :30]}, np.eye(4))
    torch.manual_seed(0)
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), root / "model.pt")
    return {"root": root, "data": str(data), "affines": affines, "model": str(root / "model.pt")}


def infer(inputs, out, model_files=None, check=False, **overrides):
    files = model_files or [inputs["model"]]
    overrides_file = write_overrides(out.parent / f"{out.name}.json")
    return run_bundle(
        None,
        ["configs/inference.json", overrides_file],
        check=check,
        dataset_dir=inputs["data"],
        output_dir=out,
        model_files="[" + ",".join(f"'{f}'" for f in files) + "]",
        **overrides,
    )


def test_inference_headers_skips_and_overwrite(inference_inputs):
    out = inference_inputs["root"] / "out"
    result = infer(inference_inputs, out)
    assert result.returncode == 1, result.stderr[-3000:]
    assert "skipped BraTS2021_missing: case BraTS2021_missing: missing modality 't2'" in result.stderr
    assert "skipped BraTS2021_mismatch" in result.stderr and "has shape (40, 48, 30)" in result.stderr
    assert "3 case(s) written" in result.stdout and "2 skipped" in result.stdout
    for case, affine in inference_inputs["affines"].items():
        pred = nib.load(out / f"{case}.nii.gz")
        flair = nib.load(os.path.join(inference_inputs["data"], case, f"{case}_flair.nii.gz"))
        assert pred.shape == flair.shape == (40, 48, 32)
        np.testing.assert_allclose(pred.affine, affine, atol=1e-6)
        assert nib.aff2axcodes(pred.affine) == nib.aff2axcodes(flair.affine)
        assert pred.get_data_dtype() == np.uint8 and (out / f"{case}.png").stat().st_size > 5000
    # the oblique affine is closest to RAS: the network sees the same voxels, so the labels agree voxel for voxel
    ras = np.asanyarray(nib.load(out / "BraTS2021_ras.nii.gz").dataobj)
    assert np.array_equal(ras, np.asanyarray(nib.load(out / "BraTS2021_oblique.nii.gz").dataobj))
    outputs = [p for p in os.listdir(out) if p != "inference_summary.json"]
    before = {p: os.stat(out / p).st_mtime_ns for p in outputs}
    again = infer(inference_inputs, out)
    assert "0 case(s) written" in again.stdout and "3 left as they were" in again.stdout
    assert {p: os.stat(out / p).st_mtime_ns for p in outputs} == before and len(os.listdir(out)) == len(outputs) + 1
    record = json.load(open(out / "inference_summary.json"))
    assert record["summary"] == {"written": 0, "skipped": 2, "left": 3}
    assert record["cases"]["BraTS2021_ras"] == {
        "status": "left as it was",
        "reason": "its output exists (overwrite is false)",
    }
    infer(inference_inputs, out, overwrite="true")
    assert os.stat(out / "BraTS2021_ras.nii.gz").st_mtime_ns != before["BraTS2021_ras.nii.gz"]


def test_ensemble_of_two_identical_models_equals_one(inference_inputs, tmp_path):
    data = tmp_path / "data"
    os.makedirs(data)
    os.symlink(os.path.join(inference_inputs["data"], "BraTS2021_lps"), data / "BraTS2021_lps")
    inputs = {**inference_inputs, "data": str(data)}
    copy = tmp_path / "copy.pt"
    copy.write_bytes(open(inference_inputs["model"], "rb").read())
    single = infer(inputs, tmp_path / "single", check=True)
    double = infer(inputs, tmp_path / "double", model_files=[inference_inputs["model"], str(copy)], check=True)
    assert single.returncode == double.returncode == 0
    a = np.asanyarray(nib.load(tmp_path / "single" / "BraTS2021_lps.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tmp_path / "double" / "BraTS2021_lps.nii.gz").dataobj)
    assert np.array_equal(a, b)


def test_foreground_crop_inferer_runs_windows_on_the_brain_only():
    from monai.inferers import SlidingWindowInferer

    from custom_nets.inference import ForegroundCropInferer

    image = torch.zeros(1, 4, 64, 64, 48)
    image[:, :, 10:40, 20:50, 5:30] = torch.randn(1, 4, 30, 30, 25)
    net = Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).eval()
    inner = SlidingWindowInferer(roi_size=32, overlap=0.5, mode="gaussian")
    calls = []
    net.register_forward_hook(lambda _m, inputs, _o: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        out = ForegroundCropInferer(inner, margin=2)(image, net)
        windows_cropped = len(calls)
        inside = inner(image[:, :, 8:42, 18:52, 3:32], net)
    assert out.shape == (1, 4, 64, 64, 48)
    torch.testing.assert_close(out[:, :, 8:42, 18:52, 3:32], inside)
    assert torch.all(out[:, 0, :8] == 1) and torch.all(out[:, 1:, :8] == 0)
    calls.clear()
    with torch.no_grad():
        inner(image, net)
    assert windows_cropped < len(calls)


def test_inference_post_processing_and_flip_tta(inference_inputs, tmp_path):
    from scipy import ndimage

    data = tmp_path / "data"
    os.makedirs(data)
    os.symlink(os.path.join(inference_inputs["data"], "BraTS2021_ras"), data / "BraTS2021_ras")
    inputs = {**inference_inputs, "data": str(data)}
    plain = infer(inputs, tmp_path / "plain", check=True)
    post = infer(inputs, tmp_path / "post", check=True, flip_tta="true", largest_component="true", et_min_voxels=10**6)
    assert plain.returncode == post.returncode == 0
    a = np.asanyarray(nib.load(tmp_path / "plain" / "BraTS2021_ras.nii.gz").dataobj)
    b = np.asanyarray(nib.load(tmp_path / "post" / "BraTS2021_ras.nii.gz").dataobj)
    assert not np.array_equal(a, b)
    assert 4 not in np.unique(b)  # every enhancing voxel relabelled as necrosis (fewer than 10^6)
    assert ndimage.label(b > 0, structure=np.ones((3, 3, 3)))[1] <= 1  # one tumour (26-connected)


def test_anisotropic_case_is_segmented_at_1mm_and_comes_back_on_its_own_grid(inference_inputs, tmp_path):
    from monai.bundle import ConfigParser

    from custom_nets.data.synthetic import synthesize_case

    images, _ = synthesize_case(9, 0, (48, 48, 12))
    affine = np.diag([-0.9, -0.9, 3.0, 1.0])
    affine[:3, 3] = [20.0, 30.0, -10.0]
    os.makedirs(tmp_path / "data" / "BraTS2021_thick")
    _write_case(str(tmp_path / "data"), "BraTS2021_thick", images, affine)
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundle" / "configs" / "inference.json"))
    case = [str(tmp_path / "data" / "BraTS2021_thick" / f"BraTS2021_thick_{m}.nii.gz") for m in images]
    seen = parser.get_parsed_content("preprocessing")({"image": case})["image"]
    np.testing.assert_allclose(seen.pixdim[:3], [1.0, 1.0, 1.0])  # the network sees the training spacing
    assert tuple(seen.shape[1:]) == (43, 43, 34)
    out = tmp_path / "out"
    infer({**inference_inputs, "data": str(tmp_path / "data")}, out, check=True)
    written, flair = nib.load(out / "BraTS2021_thick.nii.gz"), nib.load(case[0])
    assert written.shape == flair.shape == (48, 48, 12)
    np.testing.assert_allclose(written.affine, affine, atol=1e-6)
    assert written.header.get_zooms() == flair.header.get_zooms()
