"""Regenerates the generated parts of ``docs/*.md``, ``README.md`` and the model card ``bundle/docs/README.md``: the
config-id tables (from the configs and the one-line descriptions in ``bundle/docs/config_ids.yaml``) and the measured
tables (from ``docs/figures/<name>.md``, which the benchmarks write). Everything else on a page is left as it is.

    python scripts/docs.py           # rewrite the pages whose generated parts changed
    python scripts/docs.py --check   # exit 1 naming the pages that are out of date (a test runs this)

A page asks for a part with a pair of comments; what lies between them is replaced:

    <!-- generated: config-ids data -->        the group `data` of config_ids.yaml
    <!-- /generated -->
    <!-- generated: figures training_step -->  docs/figures/training_step.md
    <!-- /generated -->
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

from custom_nets.utils import write_text

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "bundle" / "configs"
DESCRIPTIONS = ROOT / "bundle" / "docs" / "config_ids.yaml"
FIGURES = ROOT / "docs" / "figures"
PAGES = [ROOT / "README.md", ROOT / "bundle" / "docs" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# the order a user meets them; any other config follows
CONFIG_ORDER = (
    "train.json",
    "quick.json",
    "evaluate.json",
    "inference.json",
    "multi_gpu_train.json",
    "synthesis.json",
    "synthesis_evaluate.json",
    "synthesis_inference.json",
    "missing_modality_inference.json",
    "train_ensembler.json",
)
SECTIONS = ("train", "validate")
BLOCK = re.compile(r"(<!-- generated: (\S+) (\S+) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)
MAX_DEFAULT = 60


class DocsError(ValueError):
    """A generated part that cannot be made: names the page and what is missing."""


def config_files() -> list[Path]:
    found = {p.name: p for p in CONFIGS.glob("*.json") if p.name != "metadata.json"}
    return [found.pop(n) for n in CONFIG_ORDER if n in found] + sorted(found.values())


def config_ids() -> dict[str, list[tuple[str, object]]]:
    """Every id a config sets, with ``(config file, value)`` per config: top-level ids (a ``+`` merge key counts as its
    id) and the keys of the ``train`` and ``validate`` sections as ``train#key``."""
    ids: dict[str, list[tuple[str, object]]] = {}
    for path in config_files():
        for key, value in json.loads(path.read_text()).items():
            name = key.lstrip("+")
            ids.setdefault(name, []).append((path.name, value))
            if name in SECTIONS and isinstance(value, dict):
                for sub, sub_value in value.items():
                    ids.setdefault(f"{name}#{sub}", []).append((path.name, sub_value))
    return ids


def descriptions() -> dict[str, dict[str, str]]:
    """``{group: {id: description}}`` in the file's order; an id described twice is refused."""
    try:
        groups = yaml.safe_load(DESCRIPTIONS.read_text())
    except yaml.YAMLError as error:
        raise DocsError(f"{DESCRIPTIONS} is not valid YAML: {' '.join(str(error).split())}") from None
    seen: dict[str, str] = {}
    for group, entries in groups.items():
        for key in entries:
            if key in seen:
                raise DocsError(f"{DESCRIPTIONS}: `{key}` is described in both `{seen[key]}` and `{group}`")
            seen[key] = group
    return groups


def undocumented() -> tuple[list[str], list[str]]:
    """The ids no description names, and the described ids no config holds."""
    described = {key for entries in descriptions().values() for key in entries}
    held = set(config_ids())
    return sorted(held - described), sorted(described - held)


def show_default(value: object, key: str) -> str:
    """The value of config id ``key`` as a table cell: a component by its class, a long expression cut short, another
    config's id by name (``inference's`` where it is the same id)."""
    if isinstance(value, dict) and "_target_" in value:
        text = value["_target_"].rsplit(".", 1)[-1]
    elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
        text = f"[{len(value)} components]"
    elif isinstance(value, dict):
        text = "{" + ", ".join(value) + "}"
    elif isinstance(value, str) and value.startswith("%"):  # another config's id: `%configs/inference.json#overlap`
        config, referenced = value[1:].split("#", 1)
        source = Path(config).stem
        return f"{source}'s" if referenced == key else f"{source}'s `{referenced}`"
    else:
        text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > MAX_DEFAULT:
        text = text[: MAX_DEFAULT - 3] + "..."
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"


def id_table(group: str) -> str:
    groups = descriptions()
    if group not in groups:
        raise DocsError(f"no group `{group}` in {DESCRIPTIONS} (groups: {', '.join(groups)})")
    ids = config_ids()
    lines = ["| id | default (config) | meaning |", "| --- | --- | --- |"]
    for key, meaning in groups[group].items():
        cells: dict[str, list[str]] = {}
        for config, value in ids.get(key, []):
            cells.setdefault(show_default(value, key), []).append(Path(config).stem)
        defaults = "; ".join(f"{cell} ({', '.join(configs)})" for cell, configs in cells.items())
        lines.append(f"| `{key}` | {defaults} | {meaning} |")
    return "\n".join(lines) + "\n"


def figure_table(name: str) -> str:
    path = FIGURES / f"{name}.md"
    if not path.is_file():
        raise DocsError(f"{path} does not exist: run the benchmark that writes it (a figure-* target of the Makefile)")
    return path.read_text()


def render(text: str, page: Path) -> str:
    def part(match: re.Match) -> str:
        kind, name = match.group(2), match.group(3)
        if kind == "config-ids":
            body = id_table(name)
        elif kind == "figures":
            body = figure_table(name)
        else:
            raise DocsError(f"{page}: unknown generated part `{kind}` (config-ids or figures)")
        return match.group(1) + body + match.group(5)

    return BLOCK.sub(part, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say which pages are out of date (exit 1)")
    args = parser.parse_args(argv)
    try:
        missing, stale = undocumented()
        if missing or stale:
            raise DocsError(
                f"{DESCRIPTIONS}: "
                + "; ".join(
                    part
                    for part in (
                        missing and f"no description for {', '.join(missing)}",
                        stale and f"described but in no config: {', '.join(stale)}",
                    )
                    if part
                )
            )
        changed = []
        for page in PAGES:
            text = page.read_text()
            new = render(text, page)
            if new != text:
                changed.append(page)
                if not args.check:
                    write_text(page, new)
    except DocsError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 2
    for page in changed:
        print(f"{'out of date' if args.check else 'rewrote'}: {page.relative_to(ROOT)}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
