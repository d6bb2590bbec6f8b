"""Segmentation of cases with one sequence missing, as the BraSyn challenge poses it: synthesize the missing one of
FLAIR, T1, T1ce and T2 from the other three with that target's synthesis model, then segment with all four
(``configs/missing_modality_inference.json``).

- ``MissingModalityCases``: which cases need which sequence synthesized, which are segmented as they are, and which
  are skipped (two or more sequences missing, no model for the missing one), with the reason named.
- ``SynthesisModelSwitch``: loads each case's target model into the one synthesis network before the case runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

from ignite.engine import Engine, Events

from custom_nets.cases import CaseRecord
from custom_nets.data.datalist import scan_dataset
from custom_nets.data.tasks import Task, load_task
from custom_nets.inference import load_generator

logger = logging.getLogger(__name__)
SYNTHESIZED_NAME = "{case}_{target}_synthesized"


class MissingModalityCases:
    """The cases of ``dataset_dir`` for missing-modality inference, read as ``custom_nets.inference.CaseSelection``
    reads them except that a case may lack one sequence.

    A case with all four sequences is segmented as it is. A case without one sequence ``t`` is synthesized first by
    ``synthesis_model_files[t]`` from the other three (in the task's sequence order, as ``configs/synthesis.json``
    trains them), written as ``<output_dir>/<case>_<t>_synthesized.nii.gz`` on the grid and with the header of the
    case's first present sequence, and segmented with that file in ``t``'s place. A case missing two or more
    sequences, or whose missing sequence has no model file, is skipped with the reason. Cases whose segmentation
    ``<output_dir>/<case>.nii.gz`` exists are left as they are unless ``overwrite``.

    Attributes:
        synthesis_entries: ``{case, image (three files), reference, target: "", target_name}`` sorted by target, so
            that each target's model is loaded once.
        entries: the segmentation's entries (``case``, ``image``, ``reference``), without the cases that the record
            holds as skipped when it is read (read it after the synthesis has run).
        targets: the targets whose models the run needs.
        task, record: as ``CaseSelection``'s; the record notes per case which sequence was synthesized
            (``"synthesized": "flair"``, or ``null``) and lists the synthesis models used with the segmentation's.
    """

    def __init__(
        self,
        dataset_dir: str,
        output_dir: str,
        synthesis_model_files: Mapping[str, str],
        overwrite: bool = False,
        model_files: str | Sequence[str] = (),
        record_file: str = "inference_summary.json",
        task: str | Task = "brats2021",
    ) -> None:
        self.output_dir = output_dir
        self.task = load_task(task)
        sequences = self.task.sequences
        models = {str(m).lower(): str(f) for m, f in dict(synthesis_model_files).items()}
        unknown = sorted(set(models) - set(sequences))
        if unknown:
            raise ValueError(f"synthesis_model_files names unknown modalities {unknown}; expected {list(sequences)}.")
        problems: list[tuple[str, str]] = []
        layout, cases = scan_dataset(dataset_dir, problems=problems, required=(), task=self.task)
        self.synthesis_entries: list[dict] = []
        self._entries: list[dict] = []
        synthesized: dict[str, str | None] = {}
        left = []
        for entry in cases:
            case, image = entry["case"], entry["image"]
            if not overwrite and os.path.exists(os.path.join(output_dir, f"{case}.nii.gz")):
                left.append(case)
                continue
            if not isinstance(image, list):  # Decathlon: one 4D image holding all four
                self._entries.append({"case": case, "image": image, "reference": image})
                synthesized[case] = None
                continue
            missing = [m for m, path in zip(sequences, image, strict=True) if not path]
            present = [path for path in image if path]
            if len(missing) > 1:
                problems.append(
                    (
                        case,
                        f"case {case}: {len(missing)} sequences missing ({', '.join(missing)}); missing-modality "
                        f"inference synthesizes one sequence from the other three",
                    )
                )
                continue
            if missing:
                target = missing[0]
                model = models.get(target)
                if not model or not os.path.isfile(model):
                    problems.append(
                        (
                            case,
                            f"case {case}: '{target}' is missing and there is no synthesis model for it "
                            f"({model or 'none configured'}); train one with --target_modality {target}",
                        )
                    )
                    continue
                path = os.path.join(output_dir, SYNTHESIZED_NAME.format(case=case, target=target) + ".nii.gz")
                self.synthesis_entries.append(
                    {"case": case, "image": present, "reference": present[0], "target": "", "target_name": target}
                )
                image = [path if not p else p for p in image]
            self._entries.append({"case": case, "image": image, "reference": present[0]})
            synthesized[case] = missing[0] if missing else None
        self.synthesis_entries.sort(key=lambda e: (e["target_name"], e["case"]))
        self.targets = sorted({e["target_name"] for e in self.synthesis_entries})
        self.model_files = {t: models[t] for t in self.targets}
        seg_files = [model_files] if isinstance(model_files, str) else list(model_files)
        self.record = CaseRecord(output_dir, [*seg_files, *self.model_files.values()], record_file, task="inference")
        for case in left:
            self.record.left(case)
        for case, message in problems:
            self.record.skipped(case, message)
        for case, target in synthesized.items():
            self.record.note(case, synthesized=target)
        logger.info(
            f"missing-modality inference on {len(self._entries)} case(s) of {dataset_dir}, "
            f"{len(self.synthesis_entries)} to synthesize first ({', '.join(self.targets) or 'none'})"
        )

    @property
    def entries(self) -> list[dict]:
        return [e for e in self._entries if not self.record.is_skipped(e["case"])]

    def finish(self) -> None:
        for case in [c for c in self.record.notes if self.record.is_skipped(c)]:
            del self.record.notes[case]  # the reason says what went wrong; nothing was synthesized
        self.record.finish()


class SynthesisModelSwitch:
    """Attach to the synthesis evaluator of missing-modality inference: before each case it loads the generator of
    the case's target (batch key ``target_key``) from ``model_files[target]`` into the evaluator's network, unless it
    holds it already (cases come sorted by target, so each model is read once per run). When the run starts every
    model of ``targets`` is loaded once, so a file that does not fit the network stops the run there, named, instead
    of after the first cases."""

    def __init__(self, model_files: Mapping[str, str], targets: Sequence[str] = (), target_key: str = "target_name"):
        self.model_files = dict(model_files)
        self.targets = list(targets)
        self.target_key = target_key
        self.current: str | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.check)
        engine.add_event_handler(Events.ITERATION_STARTED, self)

    def _load(self, engine: Engine, target: str) -> None:
        device = next(engine.network.parameters()).device
        load_generator(engine.network, self.model_files[target], device)
        self.current = target

    def check(self, engine: Engine) -> None:
        for target in reversed(self.targets):  # the first cases' model last: it stays loaded
            self._load(engine, target)
        logger.info(f"synthesis models: {', '.join(f'{t} {self.model_files[t]}' for t in self.targets)}")

    def __call__(self, engine: Engine) -> None:
        target = str(engine.state.batch[self.target_key][0])
        if target != self.current:
            self._load(engine, target)
        logger.info(f"synthesizing {target} for {engine.state.batch.get('case', ['?'])[0]}")
