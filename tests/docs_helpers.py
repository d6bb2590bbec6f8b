"""The shell blocks of the docs marked runnable (``<!-- runnable -->`` on the line before a ```bash block), run as
written."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.bundle_helpers import BUNDLE, ROOT

RUNNABLE = "<!-- runnable -->"
PAGES = [ROOT / "README.md", BUNDLE / "docs" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(page: Path) -> list[str]:
    lines, blocks = page.read_text().splitlines(), []
    for i, line in enumerate(lines):
        if line.strip() == RUNNABLE:
            assert lines[i + 1].strip() == "```bash", f"{page}:{i + 2}: {RUNNABLE} must precede a ```bash block"
            end = lines.index("```", i + 2)
            blocks.append("\n".join(lines[i + 2 : end]))
    return blocks


def run_runnable_blocks(page: Path, root: Path) -> subprocess.CompletedProcess:
    """The page's runnable blocks, in order, in one shell started in ``root``, which gets a copy of the bundle (configs
    and docs, no models or runs), with this environment's python first on the PATH; fails with the script and the
    end of its output."""
    shutil.copytree(BUNDLE, root / "bundle", ignore=shutil.ignore_patterns("models", "runs", "*.pt"))
    script = "set -euo pipefail\n" + "\n".join(runnable_blocks(page)) + "\n"
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    result = subprocess.run(["bash", "-c", script], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{script}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result
