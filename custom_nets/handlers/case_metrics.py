"""Per-case metrics of an evaluation run, written to ``metrics.csv`` and summarised in ``summary.json``."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence

import numpy as np
from ignite.engine import Engine, Events

from custom_nets.handlers.regions import case_name, decollated_items
from custom_nets.uncertainty import SCORE_KEYS, rank_correlation, review_order
from custom_nets.utils import atomic_path, is_main_process, sha256, write_json


def summarise(rows: list[dict], columns: Sequence[str]) -> dict:
    """Mean, std, median, 25th and 75th percentile of every column over the cases (non-finite values, such as the
    PSNR of a perfect prediction, are left out of the statistics and counted)."""
    summary = {}
    for key in columns:
        values = np.array([row[key] for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        stats = {"mean": np.nan, "std": np.nan, "median": np.nan, "p25": np.nan, "p75": np.nan}
        if finite.size:
            stats = {
                "mean": float(np.mean(finite)),
                "std": float(np.std(finite)),
                "median": float(np.median(finite)),
                "p25": float(np.percentile(finite, 25)),
                "p75": float(np.percentile(finite, 75)),
            }
        if finite.size < values.size:
            stats["non_finite"] = int(values.size - finite.size)
        summary[key] = stats
    return summary


class CaseMetricsWriter:
    """Base of the evaluation writers: attach to an evaluator; each case's ``case_row(item)`` becomes a row of
    ``<output_dir>/metrics.csv``, and ``summary.json`` holds the statistics of every column, the model files' sha256,
    the ``conventions`` of the metrics and the config. Rank 0 writes.

    Args:
        output_dir: where to write.
        model_files: checkpoint path(s) to fingerprint in the summary.
        config: anything JSON-serialisable to record (e.g. resolved config values).
        case_key: batch key holding the case name.
        record: a ``custom_nets.cases.CaseRecord``: each case is reported to it, and a case whose metrics cannot be
            computed is recorded as skipped instead of ending the run.
    """

    columns: Sequence[str] = ()
    conventions: str = ""

    def __init__(
        self,
        output_dir: str,
        model_files: str | Sequence[str] = (),
        config: dict | None = None,
        case_key: str = "case",
        record=None,
    ) -> None:
        self.output_dir = output_dir
        self.model_files = [model_files] if isinstance(model_files, str) else list(model_files)
        self.config = config or {}
        self.case_key = case_key
        self.record = record
        self.rows: list[dict] = []
        self.logger = logging.getLogger(type(self).__module__)

    def case_row(self, item: dict) -> dict:
        raise NotImplementedError

    def describe(self, row_or_means: dict) -> str:
        """One log line of a case's row or of the means."""
        return ", ".join(f"{k} {row_or_means[k]:.4f}" for k in self.columns)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _collect(self, engine: Engine) -> None:
        for item in decollated_items(engine):
            case = case_name(item, self.case_key)
            try:
                row = {"case": case, **self.case_row(item), **{k: float(item[k]) for k in SCORE_KEYS if k in item}}
            except Exception as error:
                if self.record is None:
                    raise
                self.record.skipped(case, f"case {case}: metrics failed ({error!r})")
                continue
            if self.record is not None:
                self.record.written(case)
            self.rows.append(row)
            self.logger.info(f"{case}: {self.describe(row)}")

    def _write_correlation(self) -> None:
        """``uncertainty_correlation.json``: Spearman's rank correlation between the ensemble's per-case uncertainty
        and each Dice column (and their mean per case) over this run's cases; a useful score correlates negatively
        (the most uncertain cases are the worst)."""
        dice = [c for c in self.columns if c.startswith(("dice_", "lesion_dice_"))]
        global_dice = [c for c in dice if c.startswith("dice_")]
        rows = [{**row, "mean_dice": float(np.mean([row[c] for c in global_dice]))} for row in self.rows]
        correlation = rank_correlation(rows, "uncertainty", ["mean_dice", *dice])
        path = os.path.join(self.output_dir, "uncertainty_correlation.json")
        write_json(
            path,
            {
                "num_cases": len(rows),
                "spearman_uncertainty_vs": correlation,
                "review_first": review_order({row["case"]: row["uncertainty"] for row in rows}),
                "meaning": "Spearman's rank correlation over the cases between the per-case uncertainty score (mean "
                "normalised entropy of the members' mean over the voxels any member calls tumour) and each Dice; "
                "negative: the cases reviewed first are the worst ones. null: fewer than 3 cases or a constant column",
            },
        )
        spearman = correlation["mean_dice"]
        self.logger.info(f"uncertainty vs mean Dice over {len(rows)} cases: Spearman {spearman}; {path}")

    def _write(self, engine: Engine) -> None:
        if not is_main_process():
            return
        os.makedirs(self.output_dir, exist_ok=True)
        metrics_file = os.path.join(self.output_dir, "metrics.csv")
        scores = [k for k in SCORE_KEYS if self.rows and all(k in row for row in self.rows)]
        with atomic_path(metrics_file) as temporary, open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["case", *self.columns, *scores], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        statistics = summarise(self.rows, [*self.columns, *scores]) if self.rows else {}
        if scores:
            self._write_correlation()
        summary = {
            "num_cases": len(self.rows),
            "metrics": statistics,
            "models": {path: sha256(path) for path in self.model_files},
            "conventions": self.conventions,
            "config": self.config,
        }
        write_json(os.path.join(self.output_dir, "summary.json"), summary)
        if statistics:
            means = {k: v["mean"] for k, v in statistics.items()}
            self.logger.info(
                f"{len(self.rows)} cases; mean {self.describe(means)}; written to {self.output_dir}/metrics.csv and "
                f"summary.json"
            )
