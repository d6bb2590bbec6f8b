"""Scans as they come from a scanner made BraTS-like before segmentation: rigid registration of every sequence to the
reference sequence (ITK, mutual information), resampling onto its grid, and brain extraction (deepbet) for
skull-stripped tasks. ``python -m custom_nets.preprocess DATASET_DIR OUT_DIR`` (see ``preprocess``), or the
inference config id ``preprocess``."""

from custom_nets.preprocess.dataset import preprocess

__all__ = ["preprocess"]
