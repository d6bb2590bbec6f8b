"""pix2pix's habit: save the resolved options and the software versions with each run."""

from __future__ import annotations

import logging
import os
import platform
import sys
from importlib import metadata

import torch
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser

from custom_nets.composition import parse_command_line
from custom_nets.utils import is_main_process, write_json

PACKAGES = ("custom_nets", "monai", "torch", "pytorch-ignite", "numpy", "nibabel", "itk", "tensorboard", "fire")


def package_versions() -> dict:
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    versions["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return versions


def command_line_config(argv: list[str] | None = None) -> dict | None:
    """The config a ``python -m monai.bundle run`` command line resolves to: its config files merged left to right
    with its ``--key value`` overrides applied, as MONAI does. ``None`` when ``argv`` is no such command."""
    from fire.parser import DefaultParseValue

    argv = sys.argv if argv is None else argv
    parsed = parse_command_line(argv)
    if parsed is None or "config_file" not in parsed[1]:
        return None
    overrides = {key: DefaultParseValue(value) for key, value in parsed[1].items()}
    config_file = overrides.pop("config_file")
    parser = ConfigParser()
    parser.read_config(config_file)
    for key in ("meta_file", "logging_file", "tracking", "args_file"):
        overrides.pop(key, None)
    parser.update(overrides)
    return {"argv": list(argv), "cwd": os.getcwd(), "overrides": overrides, "config": parser.get()}


class RunRecord:
    """Writes ``config.json`` (the merged config with the command line's overrides, and the command itself) and
    ``versions.json`` into ``output_dir`` when the engine starts; on rank 0 only."""

    def __init__(self, output_dir: str, values: dict | None = None) -> None:
        self.output_dir = output_dir
        self.values = values or {}
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        record = command_line_config() or {"argv": list(sys.argv), "cwd": os.getcwd()}
        record["resolved"] = self.values
        write_json(os.path.join(self.output_dir, "config.json"), record)
        write_json(os.path.join(self.output_dir, "versions.json"), package_versions())
        self.logger.info(f"run record written to {self.output_dir}/config.json and versions.json")
