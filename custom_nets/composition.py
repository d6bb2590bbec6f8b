"""Which lists of bundle configs make a task, checked before a run does any work.

MONAI merges ``--config_file`` lists left to right, so a config listed in the wrong place silently changes the task
(``evaluate.json`` then ``synthesis.json`` runs the training's validator, checkpoint saver included). The ``initialize``
step of every config that a run can end with calls ``check_command_line()``: the bundle configs on the command line
(files of other names, such as a user's overrides, are not judged) must be one of ``RECIPES`` in that order, with
``quick.json`` (and for training ``multi_gpu_train.json``) anywhere after the first, and the run id must be one of the
task's; otherwise the run stops with exit code 2 and a message naming what is missing or out of order and the list to
use.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from custom_nets.utils import refuse

# task -> (run ids, accepted orders of the bundle configs, optional configs)
RECIPES: dict[str, tuple[tuple[str, ...], tuple[tuple[str, ...], ...], tuple[str, ...]]] = {
    "training": (("training", "run"), (("train", "synthesis"), ("train",)), ("quick", "multi_gpu_train")),
    "evaluation": (
        ("evaluating", "run"),
        (("train", "synthesis", "evaluate", "synthesis_evaluate"), ("train", "evaluate")),
        ("quick",),
    ),
    "inference": (
        ("run",),
        (("inference", "synthesis_inference"), ("inference", "missing_modality_inference"), ("inference",)),
        ("quick",),
    ),
    "ensembler training": (("training", "run"), (("train", "train_ensembler"),), ("quick",)),
}
BUNDLE_CONFIGS = (
    "train",
    "synthesis",
    "evaluate",
    "synthesis_evaluate",
    "inference",
    "synthesis_inference",
    "missing_modality_inference",
    "train_ensembler",
)
OPTIONAL_CONFIGS = ("quick", "multi_gpu_train")


class CompositionError(ValueError):
    """A list of configs that does not make the task it asks for."""


def parse_command_line(argv: Sequence[str] | None = None) -> tuple[str | None, dict] | None:
    """``(run_id, {key: raw value})`` of a ``python -m monai.bundle run [RUN_ID] --key value ...`` command line
    (``run_id`` None when it is not given), or None when ``argv`` is no such command."""
    argv = list(sys.argv if argv is None else argv)
    if "run" not in argv:
        return None
    tokens = argv[argv.index("run") + 1 :]
    run_id = tokens.pop(0) if tokens and not tokens[0].startswith("--") else None
    options, i = {}, 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--"):
            key, has_value, value = token[2:].partition("=")
            if not has_value and i + 1 < len(tokens):
                value, i = tokens[i + 1], i + 1
            options[key] = value
        i += 1
    return options.pop("run_id", run_id), options


def config_files(value) -> list[str]:
    """The ``--config_file`` value as a list of paths (one path, or a Python/JSON list of paths)."""
    from fire.parser import DefaultParseValue

    parsed = DefaultParseValue(value) if isinstance(value, str) else value
    return [str(f) for f in parsed] if isinstance(parsed, (list, tuple)) else [str(parsed)]


def _name(path: str) -> str | None:
    stem = os.path.basename(path)
    stem = stem[: -len(".json")] if stem.endswith(".json") else stem
    return stem if stem in BUNDLE_CONFIGS + OPTIONAL_CONFIGS else None


def _listing(names: Sequence[str]) -> str:
    return "[" + ",".join(f"'configs/{n}.json'" for n in names) + "]"


def _task_of(names: Sequence[str]) -> str:
    if "train_ensembler" in names:
        return "ensembler training"
    if {"inference", "synthesis_inference", "missing_modality_inference"} & set(names):
        return "inference"
    if {"evaluate", "synthesis_evaluate"} & set(names):
        return "evaluation"
    return "training"


def check_composition(run_id: str | None, files: Sequence[str]) -> str:
    """Returns the task that ``files`` (in order) make for ``run_id``; raises ``CompositionError`` naming the config
    that is missing, foreign to the task or out of order, and the list to use."""
    run_id = run_id or "run"
    names = [n for n in (_name(f) for f in files) if n is not None]
    task = _task_of(names)
    run_ids, orders, optional = RECIPES[task]
    core = [n for n in names if n not in OPTIONAL_CONFIGS]
    containing = [o for o in orders if set(core) <= set(o)]
    closest = max(orders, key=lambda o: (len(set(o) & set(core)), -len(o)))
    target = min(containing, key=len) if containing else closest
    synthesis = " of a synthesis model" if any("synthesis" in n for n in target) else ""
    use = f"for {task}{synthesis} list {_listing(target)}"
    foreign = [n for n in names if n not in target and n not in optional]
    foreign += [n for n in names if n in OPTIONAL_CONFIGS and n not in optional]
    if foreign:
        raise CompositionError(f"configs/{foreign[0]}.json does not belong to {task}; {use}.")
    missing = [n for n in target if n not in core]
    if missing:
        raise CompositionError(f"configs/{missing[0]}.json is missing; {use}.")
    if tuple(core) != target:
        first_wrong = next(i for i, (a, b) in enumerate(zip(core, target, strict=True)) if a != b)
        raise CompositionError(
            f"configs/{core[first_wrong]}.json is out of order (configs merge left to right, later ones override "
            f"earlier ones); {use}."
        )
    if names[0] in optional:
        raise CompositionError(f"configs/{names[0]}.json cannot come first; {use}, then configs/{names[0]}.json.")
    if run_id not in run_ids:
        raise CompositionError(
            f"run id '{run_id}' does not run {task}; use {' or '.join(repr(r) for r in run_ids if r != 'run')} "
            f"(or none) with {_listing(target)}."
            if task != "inference"
            else f"run id '{run_id}' does not run inference; give no run id with {_listing(target)}."
        )
    return task


def check_command_line(argv: Sequence[str] | None = None) -> str | None:
    """``check_composition`` of this process's ``monai.bundle run`` command line; on a bad composition prints the
    reason and exits with code 2 before any work. Returns the task (None when the process was not started by such a
    command line, e.g. a bundle run from Python, which is not checked)."""
    parsed = parse_command_line(argv)
    if parsed is None or "config_file" not in parsed[1]:
        return None
    run_id, options = parsed
    try:
        return check_composition(run_id, config_files(options["config_file"]))
    except CompositionError as error:
        refuse(str(error))


def refuse_checkpoint_savers(handlers: Sequence) -> Sequence:
    """An evaluation must not write under the checkpoint folder: exits with code 2 if ``handlers`` holds a checkpoint
    saver (a validator's handlers merged into an evaluation); returns ``handlers``."""
    from monai.handlers import CheckpointSaver

    savers = [type(h).__name__ for h in handlers or () if isinstance(h, CheckpointSaver)]
    if savers:
        refuse(
            f"the evaluation's handlers hold {savers[0]}, which would rewrite the model it evaluates; the configs are "
            f"merged in the wrong order (see docs/configs.md, the table of --config_file lists)."
        )
    return handlers
