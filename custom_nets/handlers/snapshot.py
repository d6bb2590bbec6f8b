"""A picture of one validation case per validation: FLAIR with the ground truth and the prediction overlaid."""

from __future__ import annotations

import logging
import os

import matplotlib.pyplot as plt
import numpy as np
from ignite.engine import Engine, Events

from custom_nets.data.tasks import Task, load_task
from custom_nets.handlers.regions import case_name, decollated_items
from custom_nets.utils import is_main_process
from custom_nets.visualize import orthogonal_overlay


class ValidationSnapshot:
    """Attach to the validation evaluator. After its first iteration of each run it writes
    ``<output_dir>/epoch_<NNNN>.png`` (axial, coronal, sagittal slices through the tumour; rows: ground truth and
    prediction) and adds the same picture to TensorBoard when ``log_dir`` is given. Rank 0 only.

    Args:
        output_dir: folder of the PNG files.
        log_dir: TensorBoard log folder, or None.
        image_channel: channel of the image drawn underneath (0 = FLAIR in the canonical order).
        tag: TensorBoard tag.
        task: the task whose classes are drawn (names and colours).
        pred_key, label_key: the class maps (class indices) of the prediction and the ground truth.
    """

    def __init__(
        self,
        output_dir: str,
        log_dir: str | None = None,
        image_channel: int = 0,
        tag: str = "validation",
        task: str | Task = "brats2021",
        pred_key: str = "pred_classes",
        label_key: str = "label_classes",
    ):
        self.task = load_task(task)
        self.pred_key, self.label_key = pred_key, label_key
        self.output_dir = output_dir
        self.log_dir = log_dir
        self.image_channel = image_channel
        self.tag = tag
        self._writer = None
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        # every evaluation run restarts the evaluator's iteration count, so this fires once per validation
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=1), self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        item = decollated_items(engine)[0]
        os.makedirs(self.output_dir, exist_ok=True)
        path = os.path.join(self.output_dir, f"epoch_{engine.state.epoch:04d}.png")
        self.draw(item, path, title=f"epoch {engine.state.epoch} {case_name(item)}")
        if self.log_dir is not None:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(self.log_dir)
            picture = plt.imread(path)[..., :3]
            self._writer.add_image(self.tag, picture, engine.state.epoch, dataformats="HWC")
            self._writer.flush()
        self.logger.info(f"validation snapshot: {path}")

    def draw(self, item: dict, path: str, title: str) -> None:
        """The picture of one decollated validation item."""
        image = np.asarray(item["image"][self.image_channel].detach().cpu())
        truth = np.asarray(item[self.label_key].detach().cpu())[0].astype(np.uint8)
        pred = np.asarray(item[self.pred_key].detach().cpu())[0].astype(np.uint8)
        orthogonal_overlay(image, {"ground truth": truth, "prediction": pred}, path, title, truth, task=self.task)
