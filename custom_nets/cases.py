"""Each case stands alone in a batch run (inference, synthesis inference, evaluation).

- ``GuardedDataset``: a case that cannot be loaded or checked comes back as a failure record naming the case, the
  file and the reason, instead of raising inside the data loader and ending the run.
- ``CaseLoader``: passes only the loaded cases on to the engine and reports the failures to a ``CaseRecord``.
- ``CaseRecord``: what happened to each case (written, skipped with its reason, left as it was), with seconds and the
  model files' sha256, written atomically as JSON in the output folder; ``finish()`` prints the count and exits
  non-zero when a case was skipped.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence

from monai.data import DataLoader, Dataset

from custom_nets.data.errors import DataError
from custom_nets.data.images import MAX_VOXELS_PER_IMAGE, check_case_grid, check_image_files
from custom_nets.uncertainty import review_order
from custom_nets.utils import is_main_process, remove_partials, sha256, write_json

FAILURE_KEY = "failure"
DICOM_KEY = "dicom"
PREPROCESS_KEY = "preprocess"
RECORD_KEY = "preprocessing"  # what the preprocessing did, as JSON text (it travels through the collation)
logger = logging.getLogger(__name__)


def _case_of(entry: dict) -> str:
    return os.path.basename(os.path.normpath(str(entry.get("case", "case"))))


def failure_reason(entry: dict, error: Exception) -> str:
    """The reason a case failed to load, naming its file: a pipeline error that does not name one (``EOFError``
    from a truncated gzip stream, a NaN found after the modalities were stacked) is traced to the first of the case's
    files that cannot be read, is not finite or is all zero."""
    try:
        check_image_files(entry)
    except DataError as diagnosed:
        return str(diagnosed)
    cause = error  # MONAI's Compose wraps a transform's error in a RuntimeError
    while cause is not None and not isinstance(cause, DataError):
        cause = cause.__cause__
    if cause is not None:  # a check of the pipeline's own (custom_nets.input_checks), naming the inputs concerned
        files = entry.get("image")
        files = files if isinstance(files, list) else [files]
        named = [str(files[c]) for c in getattr(cause, "channels", ()) if c < len(files)]
        return f"case {_case_of(entry)}: {cause}" + (f" (files: {', '.join(named)})" if named else "")
    return f"case {_case_of(entry)}: {type(error).__name__}: {error}"


class GuardedDataset(Dataset):
    """``monai.data.Dataset`` whose items never raise: a DICOM case is converted first (``prepare_dicom``), each
    entry's headers are checked (3D volumes, or one 4D image, on one grid, none over ``max_voxels``;
    ``check_case_grid``), then ``transform`` runs, and any error becomes ``{"case": ..., "failure": reason}``.
    Subclassed because MONAI's Dataset lets one bad case end the loader."""

    def __init__(self, data, transform=None, max_voxels: int = MAX_VOXELS_PER_IMAGE) -> None:
        super().__init__(data, transform)
        self.max_voxels = int(max_voxels)

    def _transform(self, index: int):
        entry = self.data[index]
        try:
            if PREPROCESS_KEY in entry:
                entry = prepare_scans(entry, self.max_voxels)
            elif DICOM_KEY in entry:
                entry = prepare_dicom(entry, self.max_voxels)
            check_case_grid(entry, self.max_voxels)
        except DataError as error:
            return {"case": _case_of(entry), FAILURE_KEY: str(error)}
        except Exception as error:  # ITK or GDCM failing on a series, a registration
            step = "preprocessing" if PREPROCESS_KEY in entry else "DICOM conversion"
            return {"case": _case_of(entry), FAILURE_KEY: f"case {_case_of(entry)}: {step}: {error!r}"}
        try:
            return self.transform(entry)  # as Dataset._transform, on the prepared entry
        except Exception as error:  # one bad case must not stop the others
            return {"case": _case_of(entry), FAILURE_KEY: failure_reason(entry, error)}


def prepare_dicom(entry: dict, max_voxels: int = MAX_VOXELS_PER_IMAGE) -> dict:
    """A DICOM case's entry made readable: its series converted to the NIfTI files its ``image`` names (see
    ``custom_nets.dicom.convert_case``; a series over ``max_voxels`` is refused from its headers); ``dicom_series``
    holds the reference series' folder for the DICOM outputs."""
    from custom_nets.dicom.convert import convert_case

    plan = entry[DICOM_KEY]
    _, series_dir = convert_case(
        entry["case"],
        plan["folder"],
        plan["modalities"],
        plan["reference"],
        plan["work_dir"],
        plan["rules"],
        plan["mapping_file"],
        max_voxels,
    )
    return {**{k: v for k, v in entry.items() if k != DICOM_KEY}, "dicom_series": series_dir}


def prepare_scans(entry: dict, max_voxels: int = MAX_VOXELS_PER_IMAGE) -> dict:
    """A case's scans made BraTS-like as it loads (``custom_nets.preprocess.case.prepare_case``: registered to the
    reference sequence, on its grid, skull-stripped for a skull-stripped task) into the files its ``image`` names;
    a DICOM case's series are read in whatever frames of reference they lie. The record of what was done travels as
    ``RECORD_KEY``."""
    import json

    from custom_nets.preprocess.case import prepare_case, read_scans

    plan = entry[PREPROCESS_KEY]
    case = entry["case"]
    rest = {k: v for k, v in entry.items() if k not in (PREPROCESS_KEY, DICOM_KEY)}
    images, series_dir = read_scans(
        case, plan["sequences"], plan["reference"], plan["sources"], entry.get(DICOM_KEY), max_voxels
    )
    if series_dir is not None:
        rest["dicom_series"] = series_dir
    paths, record = prepare_case(
        case, images, plan["reference"], plan["work_dir"], plan["skull_strip"], plan["brain_ml_range"]
    )
    rest["reference"] = paths[plan["reference"]]  # the grid the outputs are written on
    return {**rest, RECORD_KEY: json.dumps(record)}


class CaseRecord:
    """The run record of a batch run, written to ``<output_dir>/<file_name>`` by ``finish()``::

        {"summary": {"written": 2, "skipped": 1, "left": 0}, "models": {path: sha256},
         "cases": {"BraTS2021_00000": {"status": "written", "seconds": 1.9}, "BraTS2021_00001": {"status":
         "skipped", "reason": "case BraTS2021_00001: cannot read .../BraTS2021_00001_flair.nii.gz (EOFError: ...)",
         "seconds": 0.1}}}

    The seconds of a case are the wall time since the previous case was settled (or the run started): loading,
    inference, post-processing and writing; a case reported by several writers (metrics, then predictions) adds up
    their times. A case recorded as skipped stays skipped. ``note(case, **fields)`` adds fields to a case's entry
    (e.g. which sequence was synthesized for it). When cases carry an ensemble's ``uncertainty`` score
    (``custom_nets.uncertainty``), ``review_first`` lists the written ones highest first, and the closing lines
    name the first five.

    Args:
        output_dir: where the record goes (and whose leftover ``.partial-*`` files of a killed run are removed).
        model_files: checkpoint path(s) to fingerprint.
        file_name: the record's file name.
        task: the word the closing line starts with.
        settings: what the run was configured with (the task, the post-processing), recorded as is.
    """

    def __init__(
        self,
        output_dir: str,
        model_files: str | Sequence[str] = (),
        file_name: str = "inference_summary.json",
        task: str = "inference",
        settings: dict | None = None,
    ) -> None:
        self.output_dir = output_dir
        self.settings = dict(settings or {})
        self.model_files = [model_files] if isinstance(model_files, str) else list(model_files)
        self.path = os.path.join(output_dir, file_name)
        self.task = task
        self.cases: dict[str, dict] = {}
        self.notes: dict[str, dict] = {}
        self._mark = time.perf_counter()
        removed = remove_partials(output_dir) if is_main_process() else []
        if removed:
            logger.warning(f"removed {len(removed)} partial file(s) a killed run left in {output_dir}")

    def restart_clock(self) -> None:
        self._mark = time.perf_counter()

    def _seconds(self) -> float:
        now = time.perf_counter()
        seconds, self._mark = now - self._mark, now
        return round(seconds, 3)

    def written(self, case: str) -> None:
        entry = self.cases.get(case, {})
        if entry.get("status") != "skipped":
            seconds = entry.get("seconds", 0.0) if entry.get("status") == "written" else 0.0
            self.cases[case] = {"status": "written", "seconds": round(seconds + self._seconds(), 3)}

    def skipped(self, case: str, reason: str) -> None:
        self.cases[case] = {"status": "skipped", "reason": reason, "seconds": self._seconds()}
        logger.error(f"skipping {case}: {reason}")

    def note(self, case: str, **fields) -> None:
        self.notes.setdefault(case, {}).update(fields)

    def is_skipped(self, case: str) -> bool:
        return self.cases.get(case, {}).get("status") == "skipped"

    def left(self, case: str) -> None:
        self.cases[case] = {"status": "left as it was", "reason": "its output exists (overwrite is false)"}

    def count(self, status: str) -> int:
        return sum(entry["status"] == status for entry in self.cases.values())

    def finish(self) -> None:
        """Writes the record, prints one line of counts (and each skipped case on stderr); exits with 1 if a case
        was skipped."""
        if not is_main_process():
            return
        written, skipped, left = self.count("written"), self.count("skipped"), self.count("left as it was")
        scores = {
            case: self.notes[case]["uncertainty"]
            for case, entry in self.cases.items()
            if entry["status"] == "written" and "uncertainty" in self.notes.get(case, {})
        }
        review = review_order(scores)
        write_json(
            self.path,
            {
                "summary": {"written": written, "skipped": skipped, "left": left},
                "models": {path: sha256(path) for path in self.model_files},
                **({"settings": self.settings} if self.settings else {}),
                **({"review_first": review} if review else {}),
                "cases": {case: {**entry, **self.notes.get(case, {})} for case, entry in self.cases.items()},
            },
        )
        print(
            f"{self.task}: {written} case(s) written to {self.output_dir}, {left} left as they were, "
            f"{skipped} skipped (run record: {self.path})"
        )
        if review:
            shown = ", ".join(f"{case} ({scores[case]:.3f})" for case in review[:5])
            print(f"  review first (the ensemble's members disagree most): {shown}{' ...' if len(review) > 5 else ''}")
        for case, entry in self.cases.items():
            if entry["status"] == "skipped":
                print(f"  skipped {case}: {entry['reason']}", file=sys.stderr)
        if skipped:
            sys.exit(1)


class CaseLoader(DataLoader):
    """``monai.data.DataLoader`` (batch size 1) over a ``GuardedDataset`` that yields only the cases that loaded and
    records the others in ``record``. Subclassed because a DataLoader yields every item; it has no length, so Ignite
    counts the epoch's iterations as they come (a fixed length would make it restart the data for the missing ones).
    """

    def __init__(self, dataset: Dataset, record: CaseRecord, **kwargs) -> None:
        if kwargs.get("batch_size", 1) != 1:
            raise ValueError(f"CaseLoader reads one case at a time; got batch_size {kwargs['batch_size']}.")
        super().__init__(dataset, batch_size=1, **{k: v for k, v in kwargs.items() if k != "batch_size"})
        self.record = record

    def __len__(self) -> int:
        raise TypeError("a CaseLoader's length is known only once its cases are read")

    def __iter__(self) -> Iterator[dict]:
        self.record.restart_clock()
        for batch in super().__iter__():
            if FAILURE_KEY in batch:
                self.record.skipped(str(batch["case"][0]), str(batch[FAILURE_KEY][0]))
                continue
            if RECORD_KEY in batch:
                import json

                self.record.note(str(batch["case"][0]), preprocessing=json.loads(batch.pop(RECORD_KEY)[0]))
            yield batch
