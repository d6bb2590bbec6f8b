from custom_nets.handlers.brats_metrics import BratsMetricsWriter
from custom_nets.handlers.case_metrics import CaseMetricsWriter
from custom_nets.handlers.checkpoint import AtomicCheckpointSaver
from custom_nets.handlers.prediction_writer import PredictionWriter
from custom_nets.handlers.regions import region_dice_metrics
from custom_nets.handlers.run_record import RunRecord, package_versions
from custom_nets.handlers.snapshot import ValidationSnapshot
from custom_nets.handlers.synthesis import ImageMetricsWriter, SynthesisSnapshot, SynthesisWriter

__all__ = [
    "AtomicCheckpointSaver",
    "BratsMetricsWriter",
    "CaseMetricsWriter",
    "ImageMetricsWriter",
    "PredictionWriter",
    "RunRecord",
    "SynthesisSnapshot",
    "SynthesisWriter",
    "ValidationSnapshot",
    "package_versions",
    "region_dice_metrics",
]
