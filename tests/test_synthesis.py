"""Volume-to-volume synthesis (T1, T1ce, T2 -> FLAIR): its transforms, masked image metrics, and the bundle's
synthesis configs run end to end on tiny synthetic data."""

import csv
import json
import math
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import PSNRMetric, SSIMMetric
from monai.transforms import Orientation

from custom_nets import Vox2VoxGenerator
from custom_nets.data.datalist import DataError
from custom_nets.inference import CaseSelection, ForegroundCropInferer
from custom_nets.metrics import masked_image_metrics
from custom_nets.transforms import ScaleBrainIntensityd, SplitModalitiesd, brain_percentile, from_brain_scale
from tests.bundle_helpers import TINY, make_synthetic_dataset, run_bundle, train_tiny, write_overrides

SYNTHESIS_TRAIN = ["configs/train.json", "configs/synthesis.json"]
SYNTHESIS_EVALUATE = [*SYNTHESIS_TRAIN, "configs/evaluate.json", "configs/synthesis_evaluate.json"]
SYNTHESIS_INFERENCE = ["configs/inference.json", "configs/synthesis_inference.json"]


def four_modalities():
    torch.manual_seed(0)
    image = torch.zeros(4, 16, 16, 16)
    image[:, 2:14, 3:13, 4:12] = torch.rand(4, 12, 10, 8) * 100 + 1
    image[1, 2, 3, 4] = 0  # one channel has a zero inside the brain: the mask is the union
    return image


def test_split_modalities_orders_conditions_and_takes_target_and_mask():
    image = four_modalities()
    out = SplitModalitiesd("image", condition=("t2", "T1"), target="flair")({"image": image})
    assert torch.equal(out["image"], image[[3, 1]]) and torch.equal(out["label"], image[[0]])
    assert out["mask"].shape == (1, 16, 16, 16) and int(out["mask"].sum()) == 12 * 10 * 8
    only_conditions = SplitModalitiesd("image", condition=("t1", "t1ce", "t2"), target=None)({"image": image})
    assert "label" not in only_conditions and only_conditions["image"].shape[0] == 3
    with pytest.raises(ValueError, match="expected names among"):
        SplitModalitiesd("image", condition=("t1", "dwi"), target="flair")
    with pytest.raises(ValueError, match="also a condition"):
        SplitModalitiesd("image", condition=("t1", "flair"), target="flair")
    with pytest.raises(ValueError, match="'image' has 3 channels, expected 4"):
        SplitModalitiesd("image", condition=("t1",), target="flair")({"image": image[:3]})


def test_brain_scaling_maps_air_to_minus_one_and_inverts():
    image = four_modalities()
    out = ScaleBrainIntensityd(["image"], upper=99.0)({"image": image})
    scaled, scales = out["image"], out["image_scale"]
    assert scales.shape == (4,) and scales[0] == pytest.approx(brain_percentile(image[0], 99.0))
    assert torch.all(scaled[:, 0, 0, 0] == -1) and scaled.max() == 1 and scaled.min() == -1
    below = image[0] <= scales[0]  # unclipped voxels come back exactly
    restored = from_brain_scale(scaled[0], float(scales[0]))
    assert torch.allclose(restored[below], image[0][below], rtol=1e-5, atol=1e-3)
    # the scale depends on the brain alone, not on how much air surrounds it
    padded = torch.nn.functional.pad(image, (20, 20, 20, 20, 20, 20))
    assert ScaleBrainIntensityd("image")({"image": padded})["image_scale"][2] == pytest.approx(
        ScaleBrainIntensityd("image")({"image": image})["image_scale"][2]
    )


def test_masked_metrics_agree_with_monai_and_ignore_outside_the_mask():
    torch.manual_seed(1)
    target = torch.rand(1, 24, 24, 24) * 2 - 1
    pred = (target + 0.1 * torch.randn_like(target)).clamp(-1, 1)
    full = masked_image_metrics(pred, target, torch.ones(1, 24, 24, 24), data_range=2.0)
    assert full["ssim"] == pytest.approx(SSIMMetric(3, data_range=2.0)(pred[None], target[None]).item(), abs=1e-5)
    assert full["psnr"] == pytest.approx(PSNRMetric(2.0)(pred[None], target[None]).item(), abs=1e-4)
    assert full["mae"] == pytest.approx((pred - target).abs().mean().item(), abs=1e-6)
    mask = torch.zeros(1, 24, 24, 24)
    mask[:, 6:18, 6:18, 6:18] = 1
    damaged = pred.clone()
    damaged[mask == 0] = -damaged[mask == 0]  # errors outside the brain only
    inside, damaged_inside = masked_image_metrics(pred, target, mask), masked_image_metrics(damaged, target, mask)
    assert inside["mae"] == damaged_inside["mae"] and inside["psnr"] == damaged_inside["psnr"]
    perfect = masked_image_metrics(target, target, mask)
    assert perfect["mae"] == 0 and math.isinf(perfect["psnr"]) and perfect["ssim"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="mask is empty"):
        masked_image_metrics(pred, target, torch.zeros(1, 24, 24, 24))


def test_foreground_crop_for_scaled_images_fills_air_with_minimum():
    image = torch.full((1, 3, 40, 40, 40), -1.0)
    image[:, :, 10:20, 12:30, 5:25] = 0.5
    seen = []

    def inner(x, net):
        seen.append(x.shape[2:])
        return net(x)

    out = ForegroundCropInferer(inner, margin=0, background_channel=None, input_background=-1, fill_value=-1)(
        image, lambda x: x[:, :1] * 2
    )
    assert seen == [(10, 18, 20)] and out.shape == (1, 1, 40, 40, 40)
    assert torch.all(out[:, :, 10:20, 12:30, 5:25] == 1.0) and int((out == -1).sum()) == 40**3 - 10 * 18 * 20
    # a MetaTensor input (what the bundle feeds) gives a MetaTensor output with its transform record, which Invertd
    # needs to undo the preprocessing; a plain tensor would be skipped by Invertd with only a warning
    oriented = Orientation("RAS")(MetaTensor(image[0], affine=torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0]))))
    out = ForegroundCropInferer(inner, background_channel=None, input_background=-1, fill_value=-1)(
        oriented[None], lambda x: x[:, :1] * 2
    )
    assert isinstance(out, MetaTensor) and out.applied_operations == oriented.applied_operations


# ---- the bundle's synthesis configs, run as a user runs them --------------------------------------------------


@pytest.fixture(scope="module")
def synthesis_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthesis")
    data = make_synthetic_dataset(root / "data", num_cases=5, seed=31)
    overrides = write_overrides(root / "tiny.json", epochs=2)
    result = train_tiny(root, data, overrides, configs=SYNTHESIS_TRAIN)
    return {
        "root": root,
        "data": str(data),
        "overrides": overrides,
        "model": root / "models" / "model.pt",
        "log": result,
    }


def test_synthesis_training_builds_three_to_one_networks_and_validates_with_ssim(synthesis_run):
    state = torch.load(synthesis_run["model"], weights_only=True)
    assert state["down1.model.0.weight"].shape[1] == 3 and state["final.0.bias"].shape == (1,)
    Vox2VoxGenerator(3, 1, channels=TINY["generator_channels"], out_activation="tanh").load_state_dict(state)
    log = synthesis_run["log"].stdout + synthesis_run["log"].stderr
    assert "val_ssim" in log and "val_psnr" in log and "val_mae" in log and "Key metric: val_ssim" in log
    record = json.load(open(synthesis_run["root"] / "train" / "config.json"))
    assert record["resolved"]["lambda_voxel"] == 100.0
    assert sorted(os.listdir(synthesis_run["root"] / "train" / "validation")) == ["epoch_0001.png", "epoch_0002.png"]


def test_adversarial_weight_zero_trains_synthesis_without_the_gan_term(synthesis_run, tmp_path):
    result = run_bundle(
        "training",
        [*SYNTHESIS_TRAIN, synthesis_run["overrides"]],
        dataset_dir=synthesis_run["data"],
        output_dir=tmp_path / "train",
        ckpt_dir=tmp_path / "models",
        epochs=1,
        adversarial_weight=0,
    )
    losses = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "adv_loss:" in line]
    assert losses and all("adv_loss: 0.0000" in line for line in losses)
    assert (tmp_path / "models" / "model.pt").is_file()


def evaluate(synthesis_run, data, out):
    """Every labelled case of ``data`` through the synthesis evaluation, predictions saved in ``out``."""
    run_bundle(
        "evaluating",
        [*SYNTHESIS_EVALUATE, synthesis_run["overrides"]],
        dataset_dir=data,
        ckpt_dir=synthesis_run["model"].parent,
        output_dir=out,
        eval_datalist="$@datalist",
        save_predictions="true",
    )


def test_synthesis_evaluation_writes_image_metrics_and_predictions_in_input_scale(synthesis_run):
    out = synthesis_run["root"] / "eval"
    evaluate(synthesis_run, synthesis_run["data"], out)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["case"] for r in rows] == [f"BraTS2021_{i:05d}" for i in range(5)]
    assert set(rows[0]) == {"case", "mae", "psnr", "ssim"}
    ssim = [float(r["ssim"]) for r in rows]
    assert all(-1 <= s <= 1 for s in ssim) and all(float(r["mae"]) > 0 for r in rows)
    summary = json.load(open(out / "summary.json"))
    assert summary["num_cases"] == 5 and summary["metrics"]["ssim"]["mean"] == pytest.approx(np.mean(ssim))
    assert summary["config"]["target_modality"] == "flair" and "brain mask" in summary["conventions"]
    case = "BraTS2021_00002"
    flair = nib.load(os.path.join(synthesis_run["data"], case, f"{case}_flair.nii.gz"))
    pred = nib.load(out / "predictions" / f"{case}.nii.gz")
    assert pred.shape == flair.shape and np.allclose(pred.affine, flair.affine) and pred.get_data_dtype() == np.float32
    real, synthesized = flair.get_fdata(), pred.get_fdata()
    assert np.all(synthesized[real == 0] == 0)  # air stays air
    # the input's intensity scale: the brain's 99.5th percentile maps to the real FLAIR's (tanh output <= 1)
    assert 0 < synthesized.max() <= brain_percentile(real, 99.5) * 1.0001
    assert (out / "predictions" / f"{case}.png").stat().st_size > 10_000


@pytest.fixture(scope="module")
def inference_data(synthesis_run):
    """Three cases: one complete, one without FLAIR (the use case) and one without T1 (a missing condition); and
    BraTS2021_ras, the first case's voxels stored in RAS order (the synthetic cases are stored LPS)."""
    data = synthesis_run["root"] / "inference_data"
    for i in range(3):
        shutil.copytree(os.path.join(synthesis_run["data"], f"BraTS2021_{i:05d}"), data / f"BraTS2021_{i:05d}")
    os.remove(data / "BraTS2021_00001" / "BraTS2021_00001_flair.nii.gz")
    os.remove(data / "BraTS2021_00002" / "BraTS2021_00002_t1.nii.gz")
    (data / "BraTS2021_ras").mkdir()
    for modality in ("flair", "t1", "t1ce", "t2"):
        image = nib.load(data / "BraTS2021_00000" / f"BraTS2021_00000_{modality}.nii.gz")
        assert nib.aff2axcodes(image.affine) != ("R", "A", "S")
        nib.save(nib.as_closest_canonical(image), data / "BraTS2021_ras" / f"BraTS2021_ras_{modality}.nii.gz")
    return data


def test_synthesis_inference_writes_missing_flair_with_input_header(synthesis_run, inference_data):
    out = synthesis_run["root"] / "synthesized"
    result = run_bundle(
        None,
        [*SYNTHESIS_INFERENCE, synthesis_run["overrides"]],
        check=False,
        dataset_dir=inference_data,
        output_dir=out,
        model_files=f"['{synthesis_run['model']}']",
    )
    assert result.returncode == 1, result.stderr[-3000:]  # the case without T1 is skipped and reported
    assert "skipped BraTS2021_00002: case BraTS2021_00002: missing modality 't1'" in result.stderr
    cases = ["BraTS2021_00000", "BraTS2021_00001", "BraTS2021_ras"]
    assert sorted(os.listdir(out)) == [f"{c}.{e}" for c in cases for e in ("nii.gz", "png")] + [
        "inference_summary.json"
    ]
    # the same voxels stored LPS and RAS give the same synthesized voxels: the output is in its input's orientation
    lps, ras = (nib.as_closest_canonical(nib.load(out / f"{c}.nii.gz")) for c in ("BraTS2021_00000", "BraTS2021_ras"))
    np.testing.assert_allclose(np.asanyarray(lps.dataobj), np.asanyarray(ras.dataobj), rtol=1e-5, atol=1e-3)
    assert np.allclose(lps.affine, ras.affine)
    case = "BraTS2021_00001"  # no FLAIR: the header and the intensity scale come from T1, the first input
    t1 = nib.load(inference_data / case / f"{case}_t1.nii.gz")
    synthesized = nib.load(out / f"{case}.nii.gz")
    assert synthesized.shape == t1.shape and np.allclose(synthesized.affine, t1.affine)
    assert synthesized.header.get_best_affine().tolist() == t1.header.get_best_affine().tolist()
    values = synthesized.get_fdata()
    assert np.all(values[t1.get_fdata() == 0] == 0) and 0 < values.max() <= brain_percentile(t1.get_fdata(), 99.5)


def test_synthesis_inputs_are_checked_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown modalities"):
        CaseSelection(str(tmp_path), str(tmp_path / "out"), modalities=["t1", "pd"], target="flair")
    decathlon = tmp_path / "Task01"
    decathlon.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8, 4), np.float32), np.eye(4)), decathlon / "case.nii.gz")
    (decathlon / "dataset.json").write_text(json.dumps({"training": [], "test": ["case.nii.gz"]}))
    with pytest.raises(DataError, match="one 4D image per case"):
        CaseSelection(str(decathlon), str(tmp_path / "out"), modalities=["t1"], target="flair")


def test_synthesis_evaluation_on_the_decathlon_layout(synthesis_run, tmp_path):
    """One 4D image per case (channels FLAIR, T1, T1ce, T2): the target is split off by channel name."""
    from custom_nets.data import write_datalist
    from custom_nets.data.conventions import CHANNELS

    data = tmp_path / "Task01"
    training = []
    for i in range(5):
        case = f"BraTS2021_{i:05d}"
        files = {m: nib.load(os.path.join(synthesis_run["data"], case, f"{case}_{m}.nii.gz")) for m in CHANNELS}
        seg = nib.load(os.path.join(synthesis_run["data"], case, f"{case}_seg.nii.gz"))
        stacked = np.stack([np.asanyarray(files[m].dataobj) for m in CHANNELS], axis=-1)
        to_decathlon = np.array([0, 2, 1, 0, 3], dtype=np.uint8)  # BraTS 2021 labels 0/1/2/4 -> 0/2/1/3
        (data / "imagesTr").mkdir(parents=True, exist_ok=True)
        (data / "labelsTr").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(stacked, files["flair"].affine), data / "imagesTr" / f"BRATS_{i:03d}.nii.gz")
        labels = to_decathlon[np.asanyarray(seg.dataobj).astype(int)]
        nib.save(nib.Nifti1Image(labels, seg.affine), data / "labelsTr" / f"BRATS_{i:03d}.nii.gz")
        training.append({"image": f"./imagesTr/BRATS_{i:03d}.nii.gz", "label": f"./labelsTr/BRATS_{i:03d}.nii.gz"})
    (data / "dataset.json").write_text(json.dumps({"training": training}))
    write_datalist(str(data), num_folds=5, seed=0)
    out = tmp_path / "eval"
    evaluate(synthesis_run, data, out)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["case"] for r in rows] == [f"BRATS_{i:03d}" for i in range(5)]
    pred = nib.load(out / "predictions" / "BRATS_001.nii.gz")
    image = nib.load(data / "imagesTr" / "BRATS_001.nii.gz")
    assert pred.shape == image.shape[:3] and np.allclose(pred.affine, image.affine)
    flair = np.asanyarray(image.dataobj)[..., 0]
    assert 0 < pred.get_fdata().max() <= brain_percentile(flair, 99.5) * 1.0001  # the FLAIR channel's scale


def test_any_target_trains_from_the_other_three_into_its_own_folder(tmp_path):
    """``--target_modality t1ce``: FLAIR, T1 and T2 in, checkpoints in ``models/synthesis/t1ce/``, and inference with
    the same option reads that model and needs no T1ce file."""
    data = make_synthetic_dataset(tmp_path / "data", num_cases=4, seed=13, num_folds=2)
    tiny = write_overrides(tmp_path / "tiny.json", epochs=1)
    common = {"dataset_dir": data, "bundle_root": tmp_path, "target_modality": "t1ce"}
    run_bundle("training", [*SYNTHESIS_TRAIN, tiny], **common)
    model = tmp_path / "models" / "synthesis" / "t1ce" / "model.pt"
    assert torch.load(model, weights_only=True)["down1.model.0.weight"].shape[1] == 3
    assert (tmp_path / "runs" / "synthesis" / "t1ce" / "config.json").exists()
    case = "BraTS2021_00000"
    os.remove(os.path.join(data, case, f"{case}_t1ce.nii.gz"))  # the target need not exist for inference
    out = tmp_path / "synthesized_t1ce"
    run_bundle(None, [*SYNTHESIS_INFERENCE, tiny], output_dir=out, save_png="false", **common)
    assert (out / f"{case}.nii.gz").exists()
    assert list(json.loads((out / "inference_summary.json").read_text())["models"]) == [str(model)]
