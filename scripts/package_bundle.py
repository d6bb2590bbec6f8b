"""Writes the self-contained Model Zoo bundle ``dist/brats_mri_vox2vox`` (and ``.zip``): configs, docs, LICENSE,
``large_files.yml``, the weights if given, and a vendored copy of ``custom_nets`` at the bundle root, so the configs
run from a copy of the folder with only MONAI and its dependencies installed.

    python scripts/package_bundle.py [--output_dir dist] [--weights bundle/models/model.pt]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from custom_nets.utils import sha256

ROOT = Path(__file__).resolve().parents[1]
NAME = "brats_mri_vox2vox"
BUNDLE_FILES = ("configs", "docs", "LICENSE", "large_files.yml")


def package(output_dir: str = "dist", weights: str | None = None) -> Path:
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
        if not weights_path.is_file():
            raise FileNotFoundError(f"--weights {weights} does not exist; train first or leave it out.")
        shutil.copy2(weights_path, target / "models" / "model.pt")
        large_files = (target / "large_files.yml").read_text()
        large_files = re.sub(r'hash_val: ".*"', f'hash_val: "{sha256(str(weights_path))}"', large_files)
        (target / "large_files.yml").write_text(large_files)
    archive = shutil.make_archive(str(target), "zip", root_dir=target.parent, base_dir=NAME)
    print(f"{target}\n{archive}")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=os.path.join(ROOT, "dist"))
    parser.add_argument("--weights", default=None, help="a generator state dict to ship as models/model.pt")
    args = parser.parse_args()
    package(args.output_dir, args.weights)


if __name__ == "__main__":
    main()
