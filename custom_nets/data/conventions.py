"""File-name facts shared by every task, and label conversions by task.

The label schemes (which classes a dataset has, which values it stores them as, which regions are evaluated) are
task definitions (``custom_nets.data.tasks``); the functions here take a task name (or an earlier datalist's label
convention: ``brats2023`` is the task ``gli``, ``decathlon`` the task ``msd``) or a ``Task``.

``CHANNELS`` is the sequence order of every shipped task (the order of MONAI's Decathlon Task01 and of the Model
Zoo's ``brats_mri_segmentation``): 0 FLAIR, 1 T1, 2 T1ce (T1 with gadolinium), 3 T2.
"""

from __future__ import annotations

import numpy as np

from custom_nets.data.tasks import Layout, Task, load_task

CHANNELS = ("flair", "t1", "t1ce", "t2")
NIFTI_EXTENSIONS = (".nii.gz", ".nii")
DECATHLON = Layout("decathlon", ("", "", "", ""), "")
DICOM_ONLY = Layout("dicom", ("", "", "", ""), "")  # a folder of DICOM cases: the task names the labels

__all__ = ["CHANNELS", "DECATHLON", "DICOM_ONLY", "NIFTI_EXTENSIONS", "Layout", "from_canonical", "labels_to_classes"]


def labels_to_classes(labels: np.ndarray, task: str | Task) -> np.ndarray:
    """A stored label map as the task's class indices (uint8); values outside the task become background."""
    return load_task(task).labels_to_classes(labels)


def to_canonical(task: str | Task) -> tuple[list[int], list[int]]:
    """``(orig_labels, target_labels)`` for ``monai.transforms.MapLabelValued``: stored labels -> class indices."""
    return load_task(task).to_classes()


def from_canonical(task: str | Task) -> tuple[list[int], list[int]]:
    """``(orig_labels, target_labels)`` for ``MapLabelValued``: class indices -> stored labels."""
    return load_task(task).from_classes()
