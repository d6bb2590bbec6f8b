"""The documentation as a product: every config id has a description, the generated tables match the configs and
the figures files, regenerating the figures touches nothing else, and the blocks marked runnable run as written."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.bundle_helpers import BUNDLE, ROOT
from tests.docs_helpers import PAGES, run_runnable_blocks, runnable_blocks

# pages whose runnable blocks another test runs, asserting what they write
RUN_ELSEWHERE = {"tasks.md": "tests/test_task_bundle.py"}


def load_docs_script(root: Path = ROOT):
    spec = importlib.util.spec_from_file_location("docs_script", root / "scripts" / "docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docs_copy(tmp_path: Path) -> Path:
    """The files scripts/docs.py reads and writes, in a folder of their own."""
    root = tmp_path / "checkout"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy(ROOT / "README.md", root / "README.md")
    shutil.copytree(BUNDLE / "configs", root / "bundle" / "configs")
    shutil.copytree(BUNDLE / "docs", root / "bundle" / "docs")
    (root / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "docs.py", root / "scripts" / "docs.py")
    return root


def run_docs(root: Path, *args: str, capsys=None) -> tuple[int, str]:
    """``python scripts/docs.py ARGS`` of the checkout at ``root``, in this process; its exit code and stderr."""
    code = load_docs_script(root).main(list(args))
    return code, capsys.readouterr().err if capsys else ""


def outside_generated(text: str) -> str:
    """``text`` with the generated parts emptied (scripts/docs.py's own pattern)."""
    return load_docs_script().BLOCK.sub(r"\1\5", text)


def test_every_config_id_has_a_description_and_every_description_an_id():
    missing, stale = load_docs_script().undocumented()
    assert not missing, f"describe these ids in bundle/docs/config_ids.yaml: {missing}"
    assert not stale, f"these described ids are in no config: {stale}"


def test_generated_parts_of_the_docs_are_up_to_date(capsys):
    code = load_docs_script().main(["--check"])
    captured = capsys.readouterr()
    assert code == 0, f"run `python scripts/docs.py`: {captured.out}{captured.err}"


def test_an_id_without_a_description_is_refused_by_name(tmp_path, capsys):
    root = docs_copy(tmp_path)
    train = root / "bundle" / "configs" / "train.json"
    config = json.loads(train.read_text())
    config["warmup_epochs"] = 3
    train.write_text(json.dumps(config, indent=4))
    code, err = run_docs(root, "--check", capsys=capsys)
    assert code == 2
    assert err.splitlines() == [
        f"refused: {root / 'bundle' / 'docs' / 'config_ids.yaml'}: no description for warmup_epochs"
    ]


def test_a_changed_default_reaches_the_tables(tmp_path):
    root = docs_copy(tmp_path)
    quick = root / "bundle" / "configs" / "quick.json"
    config = json.loads(quick.read_text())
    config["epochs"] = 7
    quick.write_text(json.dumps(config, indent=4))
    assert run_docs(root, "--check")[0] == 1
    assert run_docs(root)[0] == 0
    assert "| `epochs` | `200` (train); `7` (quick) |" in (root / "docs" / "configs.md").read_text()


def test_regenerating_the_figures_changes_only_the_figures(tmp_path, capsys):
    root = docs_copy(tmp_path)
    names = {m.group(1) for page in PAGES for m in re.finditer(r"<!-- generated: figures (\S+) -->", page.read_text())}
    assert names, "no page includes a figures table"
    name = sorted(names)[0]
    pages = load_docs_script(root).PAGES
    before = {page: page.read_text() for page in pages}
    (root / "docs" / "figures" / f"{name}.md").write_text("*another machine*\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n")
    code, err = run_docs(root, capsys=capsys)
    assert code == 0, err
    changed = 0
    for page in pages:
        after = page.read_text()
        assert outside_generated(after) == outside_generated(before[page]), page
        if f"<!-- generated: figures {name} -->" in after:
            assert f"<!-- generated: figures {name} -->\n*another machine*\n" in after
            changed += 1
    assert changed


def test_a_missing_figures_file_is_refused_by_name(tmp_path, capsys):
    root = docs_copy(tmp_path)
    page = root / "docs" / "speed.md"
    page.write_text(page.read_text() + "\n<!-- generated: figures not_measured -->\n<!-- /generated -->\n")
    code, err = run_docs(root, capsys=capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"refused: {root / 'docs' / 'figures' / 'not_measured.md'} does not exist")


def test_every_runnable_block_is_run():
    pages = {p.name for p in PAGES if runnable_blocks(p)}
    assert pages, "no page marks a block runnable"
    assert set(RUN_ELSEWHERE) <= pages


@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable_blocks(p) and p.name not in RUN_ELSEWHERE], ids=lambda p: p.name
)
def test_runnable_blocks_run_as_written(page, tmp_path):
    run_runnable_blocks(page, tmp_path)
