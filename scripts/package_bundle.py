"""Writes the self-contained Model Zoo bundle ``dist/brats_mri_vox2vox`` (and ``.zip``): configs, docs, LICENSE,
``large_files.yml``, the weights if given, and a vendored copy of ``custom_nets`` at the bundle root, so the configs
run from a copy of the folder with only MONAI and its dependencies installed.

With ``--weights``, the packed ``configs/inference.json`` builds the network those weights need, read from their
shapes (widths, bottleneck, variant: a model trained with ``configs/quick.json`` needs nothing else), for ``--task``
(its sequences and classes; ``configs/metadata.json`` is generated from it), and weights that do not load strictly
into it are refused. A ``postprocessing.json`` beside the weights (chosen by ``run evaluating
--select_postprocessing true``) is packed with them, so every consumer post-processes as the batch run does.

With ``--release_url`` (where the release's assets will be uploaded; ``file://`` works for a local release),
``large_files.yml`` lists the weights at ``<release_url>/model.pt`` with their sha256, and ``<output_dir>/release/``
holds the assets to upload: ``model.pt`` and the bundle's zip without it, which ``python -m monai.bundle download
--url <release_url>/brats_mri_vox2vox.zip`` fetches and ``download_large_files`` completes.

    python scripts/package_bundle.py [--output_dir dist] [--weights bundle/models/model.pt] [--task brats2021]
        [--release_url https://github.com/<you>/<repo>/releases/download/<tag>]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from custom_nets.data.tasks import TaskError, load_task
from custom_nets.metadata import write_task_metadata
from custom_nets.networks.from_weights import generator_settings
from custom_nets.utils import refuse, sha256, write_json

ROOT = Path(__file__).resolve().parents[1]
NAME = "brats_mri_vox2vox"
BUNDLE_FILES = ("configs", "docs", "LICENSE", "large_files.yml")


def package(
    output_dir: str = "dist", weights: str | None = None, task: str = "brats2021", release_url: str | None = None
) -> Path:
    """Writes the bundle (see the module); refuses (exit 2, one line) weights that cannot be read or do not fit."""
    if release_url and not weights:
        refuse("--release_url publishes weights: give them with --weights.")
    try:
        load_task(task)
    except (TaskError, ValueError, FileNotFoundError) as error:
        refuse(f"--task {task}: {' '.join(str(error).split())}")
    settings = weights_settings(weights, task) if weights else None
    target = Path(output_dir).resolve() / NAME
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in BUNDLE_FILES:
        source = ROOT / "bundle" / name
        if source.is_dir():
            shutil.copytree(source, target / name)
        else:
            shutil.copy2(source, target / name)
    shutil.copytree(ROOT / "custom_nets", target / "custom_nets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (target / "models").mkdir()
    if weights:
        weights_path = Path(weights)
        shutil.copy2(weights_path, target / "models" / "model.pt")
        if (weights_path.parent / "postprocessing.json").is_file():
            shutil.copy2(weights_path.parent / "postprocessing.json", target / "models" / "postprocessing.json")
        configure_inference(target, settings, task)
    archive = shutil.make_archive(str(target), "zip", root_dir=target.parent, base_dir=NAME)
    print(f"{target}\n{archive}")
    if release_url:
        release(target, release_url.rstrip("/"))
    return target


def release(target: Path, url: str) -> Path:
    """``<output_dir>/release/``: the weights and the bundle's zip without them, whose ``large_files.yml`` lists them
    at ``<url>/model.pt`` with their sha256 (the packed folder keeps its weights)."""
    folder = target.parent / "release"
    shutil.rmtree(folder, ignore_errors=True)
    staging = folder / "staging" / NAME
    shutil.copytree(target, staging, ignore=shutil.ignore_patterns("model.pt"))
    weights = target / "models" / "model.pt"
    (staging / "large_files.yml").write_text(
        "# the weights of this release, fetched by `python -m monai.bundle download_large_files`\n"
        "large_files:\n"
        '  - path: "models/model.pt"\n'
        f'    url: "{url}/model.pt"\n'
        f'    hash_val: "{sha256(str(weights))}"\n'
        '    hash_type: "sha256"\n'
    )
    shutil.copy2(weights, folder / "model.pt")
    shutil.make_archive(str(folder / NAME), "zip", root_dir=staging.parent, base_dir=NAME)
    shutil.rmtree(folder / "staging")
    print(f"release assets to upload to {url}: {folder / 'model.pt'}, {folder / (NAME + '.zip')}")
    return folder


def weights_settings(weights: str, task: str) -> dict:
    """The generator settings of the state dict in ``weights``, checked against ``task``'s sequences and classes."""
    if not os.path.isfile(weights):
        refuse(f"--weights {weights} does not exist; train first or leave it out.")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        settings = generator_settings(state)
        definition = load_task(task)
    except (TaskError, ValueError) as error:
        refuse(f"--weights {weights}: {str(error).splitlines()[0]}")
    except Exception as error:  # torch's loader raises many types for a damaged file
        reason = " ".join(str(error).split())
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        refuse(f"--weights {weights} cannot be read as a state dict ({type(error).__name__}: {reason})")
    expected = (len(definition.sequences), definition.num_classes)
    if (settings["in_channels"], settings["out_channels"]) != expected:
        refuse(
            f"--weights {weights} take {settings['in_channels']} sequences to {settings['out_channels']} classes, "
            f"but task {definition.name} has {expected[0]} sequences and {expected[1]} classes; give its --task."
        )
    return settings


def configure_inference(target: Path, settings: dict, task: str) -> None:
    """The packed ``configs/inference.json`` and ``metadata.json`` set for the weights and ``task``; the network that
    ``inference.json`` alone builds must load ``models/model.pt`` strictly."""
    definition = load_task(task)
    task_id = definition.name
    if not definition.shipped:  # a user's task file travels with the bundle
        shutil.copy2(definition.source, target / "configs" / "task.json")
        task_id = "$@bundle_root + '/configs/task.json'"
    config_file = target / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    config.update(
        task=task_id,
        generator_channels=settings["channels"],
        num_bottleneck=settings["num_bottleneck"],
        network_variant=settings["variant"],
    )
    write_json(str(config_file), config)
    write_task_metadata(str(target / "configs" / "metadata.json"), definition)
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser["bundle_root"] = str(target)
    network = parser.get_parsed_content("network_def")
    try:
        network.load_state_dict(torch.load(target / "models" / "model.pt", weights_only=True), strict=True)
    except RuntimeError as error:
        refuse(f"{config_file} builds a network that does not load the weights: {str(error).splitlines()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "dist"))
    parser.add_argument("--weights", default=None, help="a generator state dict to ship as models/model.pt")
    parser.add_argument("--task", default="brats2021", help="the task the weights were trained for (or a JSON file)")
    parser.add_argument("--release_url", default=None, help="where the release assets will be uploaded (see above)")
    args = parser.parse_args()
    package(args.output_dir, args.weights, args.task, args.release_url)


if __name__ == "__main__":
    main()
