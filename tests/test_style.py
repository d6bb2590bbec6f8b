"""The Model Zoo checks code formatting (line length 120) and 4-space indented JSON; so do we."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for p in ("custom_nets", "tests", "benchmarks", "scripts") if (ROOT / p).is_dir()]


def test_ruff_lint_and_format():
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run(ruff + ["check", *CODE], cwd=ROOT, check=True)
    subprocess.run(ruff + ["format", "--check", *CODE], cwd=ROOT, check=True)


def test_bundle_json_is_four_space_indented():
    for path in sorted((ROOT / "bundle" / "configs").rglob("*.json")):
        text = path.read_text()
        assert text == json.dumps(json.loads(text), indent=4) + "\n", f"{os.path.relpath(path, ROOT)} is not formatted"
