"""Where a benchmark's figures go: ``<stem>.json`` (the figures and how they were made) and ``<stem>.md`` (a Markdown
table under one line naming the machine, torch and MONAI versions, commit and date), which ``python scripts/docs.py``
copies into the pages that ask for it (``<!-- generated: figures <name> -->``). ``make docs-figures`` runs every
benchmark with ``--figures docs/figures/<name>`` and then that script."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from custom_nets.utils import write_json, write_text  # noqa: E402


def machine() -> str:
    """The CPU (model name and the threads torch uses) or the GPU figures are measured on."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"


def commit() -> str:
    """The checkout's commit, ``+`` when files other than the docs differ from it (the figures land in docs/)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = ["git", "status", "--porcelain", "-uno", "--", ".", ":!docs", ":!README.md"]
        dirty = subprocess.run(changed, cwd=ROOT, capture_output=True, text=True)
        return head + ("+" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(command: list[str] | None = None) -> dict:
    import monai
    import torch

    if command is None:  # this script's command line, its path relative to the checkout
        script = os.path.abspath(sys.argv[0])
        command = [os.path.relpath(script, ROOT) if script.startswith(ROOT + os.sep) else sys.argv[0], *sys.argv[1:]]

    return {
        "machine": machine(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python", *command]),
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    """``rows`` under ``header``; floats as they are formatted by the caller, everything else with ``str``."""
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def print_table(header: list[str], rows: list[list], first: int = 44, other: int = 18) -> None:
    """``rows`` under ``header`` on the console: the first column left-aligned in ``first`` characters, the others
    right-aligned in ``other``."""
    print()
    for row in [header, *rows]:
        print(f"{row[0]:<{first}}" + "".join(f"{str(cell):>{other}}" for cell in row[1:]))


def write_figures(stem: str, figures: dict, table: str, command: list[str] | None = None) -> None:
    """``<stem>.json`` holds ``figures`` with the provenance; ``<stem>.md`` the provenance line, the command and
    ``table``."""
    made = provenance(command)
    write_json(f"{stem}.json", {"provenance": made, "figures": figures})
    line = f"*{made['machine']}; torch {made['torch']}, MONAI {made['monai']}; commit {made['commit']}, {made['date']}*"
    write_text(f"{stem}.md", f"{line}: `{made['command']}`\n\n{table}")
    print(f"figures: {stem}.json, {stem}.md")
