"""The bundle's own commands as the benchmark scripts run them: ``python -m monai.bundle run`` from ``bundle/``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bundle(run_id: str | None, configs: list[str], log_file: str | None = None, **overrides) -> float:
    """Runs ``python -m monai.bundle run [run_id] --config_file [configs] --key value ...`` (echoed, its output
    discarded or written to ``log_file``, a failure raising); returns its wall time in seconds."""
    cmd = [sys.executable, "-m", "monai.bundle", "run", *([run_id] if run_id else [])]
    cmd += ["--config_file", "[" + ",".join(f"'{c}'" for c in configs) + "]"]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    print("$ " + " ".join(cmd[1:]), flush=True)
    start = time.perf_counter()
    with open(log_file or os.devnull, "w") as log:
        subprocess.run(cmd, cwd=os.path.join(ROOT, "bundle"), check=True, stdout=log, stderr=subprocess.STDOUT)
    return time.perf_counter() - start
