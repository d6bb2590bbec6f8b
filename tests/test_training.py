import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.losses import PatchAdversarialLoss
from monai.utils import set_determinism
from torch.utils.data import DataLoader

from custom_nets import Vox2VoxDiscriminator, Vox2VoxGenerator
from custom_nets.engines import ConditionalGanTrainer, latest_checkpoint, resumable_state
from custom_nets.handlers import AtomicCheckpointSaver
from custom_nets.losses import FixedWeightGeneralizedDiceLoss
from tests.bundle_helpers import BUNDLE, ROOT, bundle_command, make_synthetic_dataset, run_bundle, write_overrides

TINY = (4, 8, 16, 32)


def make_trainer(
    d_threshold=0.8, epochs=1, n=4, criterion="least_squares", amp=False, lambda_voxel=5.0, size=32, **kwargs
):
    set_determinism(0)
    x = torch.randn(n, 4, size, size, size)
    labels = torch.randint(0, 4, (n, 1, size, size, size))
    y = torch.zeros(n, 4, size, size, size).scatter_(1, labels, 1.0)
    loader = DataLoader([{"image": x[i], "label": y[i]} for i in range(n)], batch_size=1)
    gen, disc = Vox2VoxGenerator(4, 4, channels=TINY), Vox2VoxDiscriminator(4, 4, channels=TINY)
    return ConditionalGanTrainer(
        device="cpu",
        max_epochs=epochs,
        train_data_loader=loader,
        network=gen,
        optimizer=torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999)),
        loss_function=FixedWeightGeneralizedDiceLoss([0.05, 1.0, 1.0, 1.0]),
        discriminator=disc,
        d_optimizer=torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999)),
        adversarial_loss=PatchAdversarialLoss(criterion=criterion, no_activation_leastsq=True),
        d_threshold=d_threshold,
        amp=amp,
        lambda_voxel=lambda_voxel,
        decollate=False,
        **kwargs,
    )


def record_iterations(trainer):
    rows = []

    def snapshot(engine):
        weights = torch.cat([p.detach().flatten() for p in engine.discriminator.parameters()]).clone()
        grads = [p.grad for p in engine.discriminator.parameters()]
        rows.append(
            {**{k: float(engine.state.output[k]) for k in ("d_accuracy", "d_updated")}, "w": weights, "grads": grads}
        )

    trainer.add_event_handler(Events.ITERATION_COMPLETED, snapshot)
    before = torch.cat([p.detach().flatten() for p in trainer.discriminator.parameters()]).clone()
    trainer.run()
    return before, rows


@pytest.mark.parametrize("threshold, expected", [(1.0, 1.0), (-1.0, 0.0)])
def test_gate_always_or_never(threshold, expected):
    before, rows = record_iterations(make_trainer(d_threshold=threshold))
    assert [r["d_updated"] for r in rows] == [expected] * 4
    for row in rows:
        changed = not torch.equal(row["w"], before)
        assert changed == bool(expected)
        if not expected:  # gate closed: no discriminator backward ran, so no gradient exists
            assert all(g is None for g in row["grads"])
        before = row["w"]


def test_gate_steps_exactly_when_accuracy_at_most_threshold():
    trainer = make_trainer(d_threshold=0.5, n=10)
    trainer.d_optimizer = torch.optim.Adam(trainer.discriminator.parameters(), 1e-2)  # moves the accuracy quickly
    before, rows = record_iterations(trainer)
    for row in rows:
        assert row["d_updated"] == float(row["d_accuracy"] <= 0.5)
        assert (not torch.equal(row["w"], before)) == bool(row["d_updated"])
        before = row["w"]
    assert {r["d_updated"] for r in rows} == {0.0, 1.0}, "threshold 0.5 should both open and close on this data"


def test_generator_runs_forward_once_per_iteration():
    trainer = make_trainer(epochs=2, n=3)
    calls = []
    trainer.network.register_forward_hook(lambda *_: calls.append(1))
    trainer.run()
    assert len(calls) == trainer.state.iteration == 6


def test_generator_gradients_are_freed_before_the_discriminator_step():
    """The last iteration's generator gradients are not held through the discriminator's update (the peak)."""
    trainer = make_trainer(d_threshold=1.0, n=3)
    held = []

    def discriminator_starts(*_):
        if trainer.discriminator.training and torch.is_grad_enabled() and trainer.state.iteration > 1:
            held.append(any(p.grad is not None for p in trainer.network.parameters()))

    trainer.discriminator.register_forward_pre_hook(discriminator_starts)
    trainer.run()
    assert held and not any(held)
    assert all(p.grad is not None for p in trainer.network.parameters())  # the last step's gradients stay


def test_output_keys_and_generator_learns():
    trainer = make_trainer(epochs=1, n=2)
    trainer.run()
    out = trainer.state.output
    assert {
        "image",
        "label",
        "pred",
        "loss",
        "g_loss",
        "d_loss",
        "adv_loss",
        "voxel_loss",
        "d_accuracy",
        "d_updated",
    } <= set(out)
    torch.testing.assert_close(out["g_loss"], out["adv_loss"] + 5.0 * out["voxel_loss"])


@pytest.mark.parametrize("criterion", ["bce", "least_squares"])
def test_amp_and_criteria_at_tiny_size(criterion):
    # 48^3, not 32^3: an instance norm over the 2^3 voxels of the smallest maps gave a bf16 NaN once in five runs
    trainer = make_trainer(n=1, criterion=criterion, amp=True, d_threshold=1.0, size=48)
    assert not trainer.scaler.is_enabled()  # CPU: bf16 autocast needs no scaler
    trainer.run()
    assert np.isfinite(float(trainer.state.output["g_loss"])) and trainer.state.output["d_updated"] == 1.0


def test_adversarial_weight_zero_trains_generator_alone():
    trainer = make_trainer(n=1, adversarial_weight=0.0)
    trainer.run()
    assert float(trainer.state.output["adv_loss"]) == 0.0


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    trainer = make_trainer(n=2)
    saver = AtomicCheckpointSaver(str(tmp_path), resumable_state(trainer), file_prefix="", save_interval=1, n_saved=1)
    saver.attach(trainer)
    trainer.run()
    path = latest_checkpoint(str(tmp_path))
    saved = open(path, "rb").read()
    trainer.lambda_voxel = float("nan")
    trainer.state.max_epochs = 2
    with pytest.raises(FloatingPointError, match=r"non-finite g_loss \(nan\) at epoch 2, iteration 3"):
        trainer.run()
    assert latest_checkpoint(str(tmp_path)) == path and open(path, "rb").read() == saved
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"


def test_latest_checkpoint_errors_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no resumable checkpoint"):
        latest_checkpoint(str(tmp_path))
    for epoch in (2, 10, 9):
        torch.save({"epoch": epoch}, tmp_path / f"checkpoint_epoch={epoch}.pt")
    assert latest_checkpoint(str(tmp_path)).endswith("checkpoint_epoch=10.pt")


# ---- the bundle, run as a user runs it -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("tiny_brats"), num_cases=5, seed=11)


def test_property_check_reports_nothing_missing(tiny_dataset, tmp_path):
    workflow = ConfigWorkflow(
        config_file=[str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "quick.json")],
        workflow_type="train",
        dataset_dir=tiny_dataset,
        ckpt_dir=str(tmp_path / "models"),
    )
    workflow.initialize()  # takes the folder's training lock, as a run would
    assert not workflow.check_properties()
    assert (tmp_path / "models" / "training.lock").is_file()


def test_bundle_training_writes_model_events_and_record(tiny_dataset, tmp_path):
    overrides = write_overrides(tmp_path / "tiny.json", epochs=2)
    out, ckpt = tmp_path / "out", tmp_path / "models"
    # roi 48 on 48x48x40 volumes: the crop pads the short axis instead of failing
    run_bundle(
        "training",
        ["configs/train.json", "configs/quick.json", overrides],
        dataset_dir=tiny_dataset,
        output_dir=out,
        ckpt_dir=ckpt,
        roi_size="[48,48,48]",
    )
    state = torch.load(ckpt / "model.pt", weights_only=True)
    assert next(iter(state)) == "down1.model.0.weight" and "final.0.bias" in state  # flat generator state dict
    Vox2VoxGenerator(4, 4, channels=TINY).load_state_dict(state)
    # the lock of one training per folder stays, emptied, when its run ends (see custom_nets/engines/lock.py)
    assert sorted(os.listdir(ckpt)) == ["checkpoint_epoch=2.pt", "model.pt", "training.lock"]
    assert (ckpt / "training.lock").read_text() == ""
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(out / "tensorboard"))
    assert sorted(os.listdir(out / "validation")) == ["epoch_0001.png", "epoch_0002.png"]
    record = json.load(open(out / "config.json"))
    assert record["resolved"]["roi_size"] == [48, 48, 48] and record["resolved"]["num_train_cases"] == 4
    assert record["config"]["roi_size"] == [48, 48, 48] and record["overrides"]["dataset_dir"] == tiny_dataset
    assert json.load(open(out / "versions.json"))["monai"]


@pytest.mark.parametrize("value, mode", [(False, "none"), ("true", "network"), ("levels", "levels")])
def test_activation_checkpointing_config_id(value, mode):
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    parser.update({"activation_checkpointing": value, "generator_channels": list(TINY)})
    assert parser.get_parsed_content("network_def").checkpointing == mode


def test_activation_checkpointing_config_id_rejects_unknown_value():
    parser = ConfigParser()
    parser.read_config(BUNDLE / "configs" / "train.json")
    parser.update({"activation_checkpointing": "sometimes", "generator_channels": list(TINY)})
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("network_def")
    assert "expected true, false or one of ['none', 'network', 'levels'], got 'sometimes'" in str(error.value.__cause__)


def test_wrong_channel_count_fails_at_start_naming_both(tiny_dataset, tmp_path):
    overrides = write_overrides(tmp_path / "tiny.json", epochs=1)
    result = run_bundle(
        "training",
        ["configs/train.json", overrides],
        check=False,
        dataset_dir=tiny_dataset,
        output_dir=tmp_path / "out",
        ckpt_dir=tmp_path / "m",
        **{"network_def#in_channels": 3},
    )
    assert result.returncode != 0
    assert "expects input (batch, 3, D, H, W), got [1, 4, 32, 32, 32]" in result.stderr


def test_killed_run_resumes_with_same_epoch_and_optimizer_state(tiny_dataset, tmp_path):
    overrides = write_overrides(tmp_path / "tiny.json", epochs=4, val_interval=10)
    ckpt = tmp_path / "models"
    args = dict(dataset_dir=tiny_dataset, output_dir=tmp_path / "out", ckpt_dir=ckpt)
    cmd = bundle_command(None, ["configs/train.json", overrides], **args)  # plain `run` also trains
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=BUNDLE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (ckpt / "checkpoint_epoch=2.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before its second checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = torch.load(ckpt / "checkpoint_epoch=2.pt", weights_only=True)
    assert killed["trainer"]["iteration"] == 8  # 4 training cases x 2 epochs
    result = run_bundle(None, ["configs/train.json", overrides], resume="true", **args)
    log = result.stdout + result.stderr
    assert "Epoch: 3/4, Iter: 1/4" in log and "Epoch: 1/4" not in log and "Epoch: 2/4" not in log
    final = torch.load(ckpt / "checkpoint_epoch=4.pt", weights_only=True)
    assert final["trainer"]["iteration"] == 16
    # Adam's step count continued from the killed run's instead of restarting
    step = next(iter(final["g_optimizer"]["state"].values()))["step"]
    assert int(step) == 16


def test_resume_keeps_the_best_model_when_the_resumed_epochs_only_get_worse(tiny_dataset, tmp_path):
    ckpt = tmp_path / "models"
    args = dict(dataset_dir=tiny_dataset, output_dir=tmp_path / "out", ckpt_dir=ckpt)
    run_bundle("training", ["configs/train.json", write_overrides(tmp_path / "two.json", epochs=2)], **args)
    best = (ckpt / "model.pt").read_bytes()
    state = torch.load(ckpt / "checkpoint_epoch=2.pt", weights_only=True)
    assert len(state["best_model"]["_saved"]) == 1  # the best score travels with the checkpoint
    # a negative voxel weight trains away from the labels: no resumed epoch can validate better
    worse = write_overrides(tmp_path / "worse.json", epochs=4, lambda_voxel=-50.0, adversarial_weight=0.0)
    result = run_bundle("training", ["configs/train.json", worse], resume="true", **args)
    assert "Epoch: 4/4" in result.stdout + result.stderr and (ckpt / "checkpoint_epoch=4.pt").exists()
    assert (ckpt / "model.pt").read_bytes() == best


def test_validation_key_metric_scores_false_enhancing_tumour_on_an_et_free_case_as_zero():
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    truth = torch.zeros(3, 8, 8, 8)
    truth[:2, 2:6, 2:6, 2:6] = 1  # TC and WT, no enhancing tumour
    false_et = truth.clone()
    false_et[2, 3, 3, 3] = 1  # one enhancing voxel predicted where there is none

    def validate(pred):
        """The configured metrics on one validation case, as the validator runs them."""
        engine = Engine(lambda _engine, batch: batch)
        parser.get_parsed_content("validate#key_metric#val_mean_dice", lazy=False).attach(engine, "val_mean_dice")
        regions = parser.get_parsed_content("validate#additional_metrics", lazy=False)  # one per region of the task
        regions["val_dice_et"].attach(engine, "val_dice_et")
        item = {"pred": pred, "label": truth, "pred_ET": pred[2:], "label_ET": truth[2:]}
        engine.run([[item]])
        return engine.state.metrics

    # ET empty in both: 1 (MONAI's default would leave the case out); one false ET voxel: 0
    assert validate(truth.clone()) == pytest.approx({"val_mean_dice": 1.0, "val_dice_et": 1.0})
    assert validate(false_et) == pytest.approx({"val_mean_dice": 2 / 3, "val_dice_et": 0.0})


def test_training_crop_and_background_samples_come_from_the_raw_brain(tmp_path):
    import nibabel as nib

    from custom_nets.data.synthetic import brats_affine

    shape = (40, 40, 40)
    case = tmp_path / "case"
    case.mkdir()
    brain = np.zeros(shape, np.float32)
    brain[5:35, 5:35, 5:35] = 10.0  # a dim half (below the brain's mean) ...
    brain[5:35, 5:35, 20:35] = 1000.0  # ... and a bright half
    labels = np.zeros(shape, np.uint8)
    labels[15:20, 15:20, 25:30] = 2
    paths = []
    for modality in ("flair", "t1", "t1ce", "t2"):
        paths.append(str(case / f"{modality}.nii.gz"))
        nib.save(nib.Nifti1Image(brain, brats_affine(shape)), paths[-1])
    nib.save(nib.Nifti1Image(labels, brats_affine(shape)), str(case / "seg.nii.gz"))
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / "configs" / "train.json"))
    parser.update({"labels_to_classes": [[0, 1, 2, 4], [0, 1, 2, 3]], "roi_size": [16, 16, 16]})
    out = monai_compose(parser.get_parsed_content("train#deterministic_transforms"))(
        {"image": paths, "label": str(case / "seg.nii.gz")}
    )
    assert tuple(out["image"].shape[1:]) == (30, 30, 30)  # the whole raw brain, not only its above-mean half
    background = np.asarray(out["label_bg_indices"])
    assert background.dtype == np.int32 and background.size == 30**3 - 5**3  # every brain voxel outside the tumour
    assert np.asarray(out["label_fg_indices"]).size == 5**3
    assert float(out["image"][0][0, 0, 0]) < 0  # the dim half is z-scored below zero, and kept


def monai_compose(transforms):
    from monai.transforms import Compose

    return Compose(transforms)


def test_training_states_its_data_plan_and_refuses_one_that_cannot_fit(tiny_dataset, tmp_path):
    overrides = write_overrides(tmp_path / "tiny.json", epochs=1)
    out = tmp_path / "out"
    result = run_bundle(
        "training", ["configs/train.json", overrides], dataset_dir=tiny_dataset, output_dir=out, ckpt_dir=tmp_path / "m"
    )
    log = result.stdout + result.stderr
    assert "data plan: 4 training cases x " in log and ", 1 validation cases x " in log
    assert f"cached on disk in {out}/cache; projected 0.0 GiB of host memory and " in log
    assert os.listdir(out / "cache" / "train") and os.listdir(out / "cache" / "validate")  # MONAI's PersistentDataset
    refused = run_bundle(
        "training",
        ["configs/train.json", overrides],
        check=False,
        dataset_dir=tiny_dataset,
        output_dir=tmp_path / "out2",
        ckpt_dir=tmp_path / "m2",
        cache="memory",
        cache_memory_gib=0.001,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "refused: the in-memory cache would hold" in refused.stderr and "more than cache_memory_gib 0.001" in (
        refused.stderr
    )
    assert "set cache to 'disk'" in refused.stderr and not (tmp_path / "m2").exists()


def test_the_disk_plan_counts_the_cache_already_in_its_sub_folders(tmp_path):
    from custom_nets.data.cache import bytes_under

    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.pt").write_bytes(b"x" * 1000)
    (tmp_path / "validate").mkdir()
    (tmp_path / "validate" / "b.pt").write_bytes(b"x" * 24)
    assert bytes_under(str(tmp_path)) == 1024  # a resumed run's cache is what is already on the disk
