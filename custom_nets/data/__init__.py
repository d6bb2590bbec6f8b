"""Data tools: task definitions (label schemes and regions), the synthetic datasets, and datalists of real layouts."""

from custom_nets.data import cache
from custom_nets.data.conventions import CHANNELS, from_canonical, labels_to_classes, to_canonical
from custom_nets.data.datalist import (
    choose_task,
    make_datalist,
    read_datalist_field,
    read_datalist_task,
    scan_dataset,
    write_datalist,
)
from custom_nets.data.errors import DataError
from custom_nets.data.tasks import Task, TaskError, load_task, shipped_tasks

__all__ = [
    "CHANNELS",
    "DataError",
    "Task",
    "TaskError",
    "cache",
    "choose_task",
    "from_canonical",
    "labels_to_classes",
    "load_task",
    "make_datalist",
    "read_datalist_field",
    "read_datalist_task",
    "scan_dataset",
    "shipped_tasks",
    "to_canonical",
    "write_datalist",
]
