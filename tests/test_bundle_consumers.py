"""The packed bundle called the way the tools that consume Zoo bundles call it, written from their source: MONAI
Label's ``BundleInferTask`` (monailabel/tasks/infer/bundle.py, basic_infer.py), MONAI Deploy's
``MonaiBundleInferenceOperator`` (monai/deploy/operators/monai_bundle_inference_operator.py), ``monai.bundle.load``
and ``ConfigWorkflow``. Each reads ``configs/inference.json`` alone, on one image, with the real parser, transforms
and network; each label map must equal what ``python -m monai.bundle run`` wrote for the same case."""

import json
import os
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.transforms import Compose, LoadImage, LoadImaged, SaveImaged

from custom_nets import Vox2VoxGenerator
from custom_nets.data.tasks import load_task
from tests.bundle_helpers import ROOT, TINY, make_synthetic_dataset, monai_bundle

NAME = "brats_mri_vox2vox"
CASE = "BraTS2021_00001"
BRATS = load_task("brats2021")


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """A quick-width generator packed with ``--weights`` alone, a case as a 4D study and as four files, and what
    ``run`` wrote for it."""
    root = tmp_path_factory.mktemp("consumers")
    data = make_synthetic_dataset(root / "data", num_cases=2, seed=5, num_folds=2)
    torch.manual_seed(3)
    network = Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"])
    with torch.no_grad():  # classes of similar weight, so that the label map holds all four
        network.final[0].bias.copy_(torch.tensor([0.0, 0.3, 0.3, 0.3]))
    torch.save(network.state_dict(), root / "weights.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    script = [sys.executable, str(ROOT / "scripts" / "package_bundle.py"), "--output_dir", str(root / "dist")]
    subprocess.run([*script, "--weights", str(root / "weights.pt")], check=True, capture_output=True, env=env)
    bundle = root / "dist" / NAME
    files = [os.path.join(data, CASE, f"{CASE}_{m}.nii.gz") for m in BRATS.sequences]
    first = nib.load(files[0])
    study = root / f"{CASE}_study.nii.gz"  # a study as a viewer sends it: one 4D image
    volumes = np.stack([np.asanyarray(nib.load(f).dataobj) for f in files], axis=-1)
    nib.save(nib.Nifti1Image(volumes.astype(np.float32), first.affine), study)
    run_args = ["--config_file", "configs/inference.json", "--dataset_dir", data, "--save_png", "false"]
    monai_bundle("run", *run_args, "--output_dir", root / "run", cwd=bundle)
    written = np.asanyarray(nib.load(root / "run" / f"{CASE}.nii.gz").dataobj)
    return {"root": root, "bundle": bundle, "data": data, "files": files, "study": str(study), "written": written}


def as_classes(labels) -> np.ndarray:
    return np.asarray(torch.as_tensor(labels).detach().cpu()).squeeze().astype(np.uint8)


def test_package_builds_the_network_of_the_weights_from_inference_json_alone(packed):
    config = json.loads((packed["bundle"] / "configs" / "inference.json").read_text())
    assert config["generator_channels"] == TINY["generator_channels"] and config["network_variant"] == "vox2vox"
    assert config["task"] == "brats2021" and config["num_bottleneck"] == 4
    metadata = json.loads((packed["bundle"] / "configs" / "metadata.json").read_text())
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "NCR/NET",
        "2": "edema",
        "3": "enhancing",
    }
    assert set(np.unique(packed["written"])) == {0, 1, 2, 4}  # the batch run writes the task's stored values


def test_the_shipped_metadata_is_the_one_generated_from_the_default_task():
    from custom_nets.metadata import task_metadata

    metadata = json.loads((ROOT / "bundle" / "configs" / "metadata.json").read_text())
    # after a task's definition changes: python -m custom_nets.metadata bundle/configs/metadata.json brats2021
    assert task_metadata(metadata, "brats2021") == metadata
    ped = task_metadata(metadata, "ped")["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert ped == {"0": "background", "1": "ET", "2": "NETC", "3": "CC", "4": "ED"}


def test_package_refuses_weights_that_do_not_fit_in_one_line(packed, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "package_bundle.py"), "--output_dir", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    torch.save(Vox2VoxGenerator(3, 4, channels=TINY["generator_channels"]).state_dict(), tmp_path / "three.pt")
    refused = subprocess.run(
        [*script, "--weights", str(tmp_path / "three.pt")], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr == (
        f"refused: --weights {tmp_path / 'three.pt'} take 3 sequences to 4 classes, but task brats2021 has 4 "
        "sequences and 4 classes; give its --task.\n"
    )
    (tmp_path / "torn.pt").write_bytes((packed["root"] / "weights.pt").read_bytes()[:5000])
    torn = subprocess.run([*script, "--weights", str(tmp_path / "torn.pt")], capture_output=True, text=True, env=env)
    assert torn.returncode == 2 and torn.stderr.startswith(f"refused: --weights {tmp_path / 'torn.pt'} cannot be read")
    assert torn.stderr.count("\n") == 1, torn.stderr
    unknown = subprocess.run([*script, "--task", "brats2019"], capture_output=True, text=True, env=env)
    assert unknown.returncode == 2 and unknown.stderr.startswith("refused: --task brats2019: unknown task 'brats2019'")
    assert unknown.stderr.count("\n") == 1, unknown.stderr
    assert not (tmp_path / NAME).exists()


def monai_label_infer(bundle, request: dict) -> dict:
    """``BundleInferTask`` + ``BasicInferTask.__call__`` as MONAI Label runs them: the config parsed alone with
    ``bundle_root`` set, the weights loaded into ``network_def``, the preprocessing's transforms with each
    ``LoadImaged`` kept (MONAI Label wraps it to accept tensors too), the inferer on the batched image,
    the postprocessing without ``SaveImaged``. (Its own ``Restored`` then resizes a label that is not on the input's
    shape: the test asserts that it has nothing to do.)"""
    sys.path.insert(0, str(bundle))
    try:
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser.config.update({"bundle_root": str(bundle)})
        network = parser.get_parsed_content("network_def", instantiate=True)
        checkpoint = torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True)
        network.load_state_dict(checkpoint.get("model", checkpoint), strict=True)
        network.eval()
        pre = list(parser.get_parsed_content("preprocessing", instantiate=True).transforms)
        assert any(isinstance(t, LoadImaged) for t in pre)
        data = dict(request)
        for transform in pre:
            data = transform(data)
        inferer = parser.get_parsed_content("inferer", instantiate=True)
        with torch.no_grad():
            data["pred"] = inferer(data["image"][None], network)[0]
        post = parser.get_parsed_content("postprocessing", instantiate=True).transforms
        for transform in [t for t in post if not isinstance(t, SaveImaged)]:
            data = transform(data)
        return data
    finally:
        sys.path.remove(str(bundle))


@pytest.mark.parametrize("image", ["study", "files"])
def test_monai_label_gets_the_run_labels_named_by_channel_def(packed, image):
    request = {
        "image": packed[image],
        "image_path": packed[image],  # a string beside the image: MONAI 1.6's Spacingd took it for a meta dict
        "device": "cpu",
        "result_extension": ".nii.gz",
        "client_id": "user-xyz",
    }
    data = monai_label_infer(packed["bundle"], request)
    classes = as_classes(data["pred"])
    assert classes.shape == packed["written"].shape  # Restored leaves it as it is
    assert set(np.unique(classes)) == {0, 1, 2, 3}  # the class indices channel_def names
    np.testing.assert_array_equal(classes, BRATS.labels_to_classes(packed["written"]))
    assert data["image_path"] == packed[image]


def test_monai_deploy_operator_on_the_torchscript_export(packed):
    bundle = packed["bundle"]
    monai_bundle(
        "ckpt_export",
        "network_def",
        *["--filepath", "models/model.ts", "--ckpt_file", "models/model.pt"],
        *["--meta_file", "configs/metadata.json", "--config_file", "configs/inference.json"],
        cwd=bundle,
    )
    # the operator's get_bundle_config: metadata and inference.json from the archive's extra/ folder, parsed alone
    with zipfile.ZipFile(bundle / "models" / "model.ts") as archive:
        metadata = json.loads(archive.read("model/extra/metadata.json"))
        config = json.loads(archive.read("model/extra/inference.json"))
    parser = ConfigParser()
    parser.read_meta(f=metadata)
    parser.read_config(f=config)
    parser["bundle_root"] = str(bundle)
    parser.parse()
    keep = lambda compose, banned: Compose([t for t in compose.transforms if not type(t).__name__.startswith(banned)])  # noqa: E731
    pre = keep(parser.get_parsed_content("preprocessing"), ("LoadImage", "SaveImage"))
    post = keep(parser.get_parsed_content("postprocessing"), ("SaveImage",))
    inferer = parser.get_parsed_content("inferer")
    model = torch.jit.load(str(bundle / "models" / "model.ts"), map_location="cpu").eval()
    with torch.no_grad():
        inputs = pre({"image": LoadImage(image_only=True)(packed["study"])})  # the app's loader, before the operator
        image = inputs["image"]
        outputs = inferer(inputs=inputs.pop("image")[None], network=model)
        inputs["image"] = image
        result = post({"pred": outputs[0], **inputs})
    assert metadata["network_data_format"]["outputs"]["pred"]["channel_def"]["3"] == "enhancing"
    np.testing.assert_array_equal(as_classes(result["pred"]), BRATS.labels_to_classes(packed["written"]))


def test_monai_bundle_load_and_config_workflow(packed, tmp_path):
    network = __import__("monai").bundle.load(
        name=NAME, bundle_dir=str(packed["bundle"].parent), workflow_type="inference", source="monaihosting"
    )
    reference = Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"])
    reference.load_state_dict(torch.load(packed["root"] / "weights.pt", weights_only=True))
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network.eval()(x), reference.eval()(x))
    sys.path.insert(0, str(packed["bundle"]))
    try:
        workflow = ConfigWorkflow(
            config_file=str(packed["bundle"] / "configs" / "inference.json"),
            workflow_type="infer",
            bundle_root=str(packed["bundle"]),
            dataset_dir=packed["data"],
            output_dir=str(tmp_path),
            save_png=False,
        )
        workflow.initialize()
        assert workflow.check_properties() in (None, [])
        workflow.run()
        workflow.finalize()
    finally:
        sys.path.remove(str(packed["bundle"]))
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / f"{CASE}.nii.gz").dataobj), packed["written"])
