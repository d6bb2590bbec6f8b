"""``configs/metadata.json`` as the task definition says it: the input sequences and the output classes.

Consumers of a Model Zoo bundle read the labels from metadata alone: MONAI Label names each label value by the
output's ``channel_def`` (``{"1": "NCR/NET", ...}`` -> label 1 is "ncr/net"), MONAI Deploy names the classes of a
probability output by it. The inference config's ``postprocessing`` returns class indices, the same numbers, so the
labels are right by construction as long as ``channel_def`` is generated from the task the weights were trained for.
"""

from __future__ import annotations

import copy
import json

from custom_nets.data.tasks import Task, load_task
from custom_nets.utils import write_json

# how the sequences are written for a reader; any other sequence keeps its id
SEQUENCE_NAMES = {"flair": "FLAIR", "t1": "T1", "t1ce": "T1ce", "t2": "T2", "t1c": "T1c", "t1n": "T1n"}


def input_channels(task: Task) -> dict[str, str]:
    return {str(i): SEQUENCE_NAMES.get(s, s) for i, s in enumerate(task.sequences)}


def output_channels(task: Task) -> dict[str, str]:
    return {str(i): name for i, name in enumerate(task.class_names)}


def task_metadata(metadata: dict, task: str | Task) -> dict:
    """A copy of ``metadata`` whose channels, channel names and class descriptions are ``task``'s."""
    task = load_task(task)
    meta = copy.deepcopy(metadata)
    inputs = meta["network_data_format"]["inputs"]["image"]
    outputs = meta["network_data_format"]["outputs"]["pred"]
    inputs["num_channels"] = len(task.sequences)
    inputs["channel_def"] = input_channels(task)
    outputs["num_channels"] = task.num_classes
    outputs["channel_def"] = output_channels(task)
    sequences = ", ".join(f"{i} {name}" for i, name in input_channels(task).items())
    meta["image_classes"] = (
        f"{len(task.sequences)} channel MRI: {sequences}; 1 mm isotropic, skull-stripped, co-registered"
    )
    classes = ", ".join(f"{i} {task.descriptions.get(name, name)}" for i, name in enumerate(task.class_names) if i)
    stored = ", ".join(f"{v}" for v in task.label_values)
    meta["label_classes"] = (
        f"task {task.name}: classes 0 background, {classes}. configs/inference.json's postprocessing returns these "
        f"class indices (channel_def); its batch run writes the task's stored values {stored}"
    )
    meta["pred_classes"] = f"{task.num_classes} channels of class probabilities (softmax), classes as label_classes"
    return meta


def write_task_metadata(path: str, task: str | Task) -> str:
    """Rewrites the metadata file at ``path`` for ``task`` (atomically; 4-space JSON, as the Model Zoo checks)."""
    with open(path) as f:
        metadata = json.load(f)
    return write_json(path, task_metadata(metadata, task))


if __name__ == "__main__":  # python -m custom_nets.metadata bundle/configs/metadata.json brats2021
    import sys

    print(write_task_metadata(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "brats2021"))
