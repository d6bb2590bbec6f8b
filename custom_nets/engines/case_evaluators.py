"""MONAI's evaluators for batch runs in which running out of memory in one case is that case's problem alone.

A case whose forward (or post-processing) runs out of memory (CUDA's ``OutOfMemoryError``, the CPU allocator's
``RuntimeError``, ``MemoryError``) is run once more with its sliding windows one at a time and stitched on the host;
if that fails too, it is recorded as skipped with both errors and the run goes on with the next case.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator

import torch
from ignite.engine import Events
from monai.engines import EnsembleEvaluator, SupervisedEvaluator
from monai.inferers import SlidingWindowInferer

logger = logging.getLogger(__name__)
# the CPU allocator's, CUDA's and oneDNN's words (oneDNN reports a failed allocation as a primitive it cannot create)
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "not enough memory", "could not create a primitive")


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(words in str(error).lower() for words in OUT_OF_MEMORY)


def sliding_windows(inferer) -> Iterator[SlidingWindowInferer]:
    """The ``SlidingWindowInferer`` inside ``inferer`` and the wrappers around it (their ``inferer`` attribute)."""
    while inferer is not None:
        if isinstance(inferer, SlidingWindowInferer):
            yield inferer
        inferer = getattr(inferer, "inferer", None)


@contextlib.contextmanager
def windows_one_at_a_time(inferer) -> Iterator[int]:
    """For the block, every sliding window of ``inferer`` runs alone and its output is stitched on the host; yields
    the window batch size it had."""
    windows = list(sliding_windows(inferer))
    saved = [(w, w.sw_batch_size, w.device) for w in windows]
    for window in windows:
        window.sw_batch_size, window.device = 1, torch.device("cpu")
    try:
        yield saved[0][1] if saved else 1
    finally:
        for window, batch_size, device in saved:
            window.sw_batch_size, window.device = batch_size, device


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _brief(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"


class _SkipsCasesOutOfMemory:
    """Mixed into a MONAI evaluator whose data loader is a ``CaseLoader`` with ``record`` (a ``CaseRecord``)."""

    record = None

    def _iteration(self, engine, batchdata):
        engine.state.skip_iteration = False
        try:
            return super()._iteration(engine, batchdata)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            first = _brief(error)  # not the error: its traceback holds the frames, and their tensors, alive
        case = str(batchdata["case"][0]) if "case" in batchdata else f"iteration {engine.state.iteration}"
        _release_memory()
        engine.state.batch = batchdata
        with windows_one_at_a_time(engine.inferer) as batch_size:
            logger.warning(
                f"{case}: out of memory with sw_batch_size {batch_size} ({first}); running it again one "
                f"window at a time, stitched on the host"
            )
            second = None
            try:
                output = super()._iteration(engine, batchdata)
            except Exception as error:
                if not is_out_of_memory(error) or self.record is None:
                    raise
                second = _brief(error)
        if second is not None:
            _release_memory()
            engine.state.skip_iteration = True
            self.record.skipped(
                case,
                f"case {case}: out of memory in the network's forward with sw_batch_size {batch_size} ({first}) "
                f"and again one window at a time stitched on the host ({second})",
            )
            return {}
        if self.record is not None:
            self.record.note(case, retried=f"out of memory with sw_batch_size {batch_size}; ran one window at a time")
        return output

    def _fire_event(self, event_name, *event_args, **event_kwargs):
        # Ignite runs every ITERATION_COMPLETED handler (metrics, writers) after each iteration and has no way to
        # leave one case out: a skipped case's iteration ends here
        if event_name == Events.ITERATION_COMPLETED and getattr(self.state, "skip_iteration", False):
            return None
        return super()._fire_event(event_name, *event_args, **event_kwargs)


class CaseEvaluator(_SkipsCasesOutOfMemory, SupervisedEvaluator):
    """``SupervisedEvaluator`` (subclassed for the out-of-memory retry and skip, see the module) recording to
    ``record``; every other argument is ``SupervisedEvaluator``'s."""

    def __init__(self, *args, record=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.record = record


class CaseEnsembleEvaluator(_SkipsCasesOutOfMemory, EnsembleEvaluator):
    """``EnsembleEvaluator`` (subclassed for the out-of-memory retry and skip, see the module) recording to
    ``record``; every other argument is ``EnsembleEvaluator``'s."""

    def __init__(self, *args, record=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.record = record
