"""Reading an engine's per-case outputs, and the validation metrics of a task's regions."""

from __future__ import annotations

import os

from custom_nets.data.tasks import Task, load_task


def region_dice_metrics(task: str | Task, prefix: str = "val_dice_") -> dict:
    """One ``IgniteMetricHandler`` (MONAI's ``DiceMetric``, both empty = 1 as BraTS counts it) per region of the task,
    named ``<prefix><region>``, reading ``pred_<region>`` and ``label_<region>`` (``SplitDimd`` of ``RegionMasksd``)."""
    from monai.handlers import IgniteMetricHandler, from_engine
    from monai.metrics import DiceMetric

    return {
        f"{prefix}{name.lower()}": IgniteMetricHandler(
            metric_fn=DiceMetric(include_background=True, ignore_empty=False),
            output_transform=from_engine([f"pred_{name}", f"label_{name}"]),
        )
        for name in load_task(task).region_names
    }


def decollated_items(engine) -> list[dict]:
    """Per-case dicts of an engine's last iteration: the batch's keys (e.g. ``case``) merged with the output's."""
    outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
    batches = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch] * len(outputs)
    return [{**(b if isinstance(b, dict) else {}), **o} for b, o in zip(batches, outputs, strict=False)]


def case_name(item: dict, key: str = "case") -> str:
    """The case name of a decollated item. ``load_decathlon_datalist`` turns any value that names an existing path
    into a path, and a BraTS case name is also its folder's name, so only the last component is kept."""
    if item.get(key):
        return os.path.basename(os.path.normpath(str(item[key])))
    image = item.get("image")
    meta = getattr(image, "meta", {}) or {}
    return os.path.basename(str(meta.get("filename_or_obj", "case"))).split(".nii")[0]
