"""Data tools: the synthetic BraTS-like dataset, datalists of real BraTS layouts, and label conventions."""

from custom_nets.data import cache
from custom_nets.data.conventions import CHANNELS, CLASSES, REGIONS, from_canonical, to_canonical
from custom_nets.data.datalist import DataError, make_datalist, read_datalist_field, scan_dataset, write_datalist

__all__ = [
    "CHANNELS",
    "cache",
    "CLASSES",
    "REGIONS",
    "DataError",
    "from_canonical",
    "make_datalist",
    "read_datalist_field",
    "scan_dataset",
    "to_canonical",
    "write_datalist",
]
