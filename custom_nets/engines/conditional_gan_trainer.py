"""The pix2pix / Vox2Vox conditional GAN iteration as a MONAI trainer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents, default_metric_cmp_fn, default_prepare_batch
from monai.engines.workflow import Workflow
from monai.inferers import Inferer
from monai.transforms import Transform
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer

from custom_nets.utils import unwrap_ddp

__all__ = ["ConditionalGanTrainer"]


class ConditionalGanTrainer(SupervisedTrainer):
    """MONAI trainer for conditional GANs (pix2pix, Vox2Vox): the generator translates the batch's image into its
    label; a PatchGAN discriminator judges (condition, target) pairs. Everything but the iteration is MONAI's
    ``SupervisedTrainer`` (handlers, metrics, events, ``state.output``), with the generator as ``network``, its
    optimizer as ``optimizer`` and the voxel loss as ``loss_function``.

    One iteration (``optimize_parameters`` of pix2pix, the generator run forward once):

    0. both optimizers' gradients are cleared (``optim_set_to_none``): freed at the start, the last iteration's
       are not held through the discriminator's update, where the iteration's memory peaks;
    1. ``fake = generator(x)``, or ``output_activation(generator(x))`` when the generator ends in logits (the
       discriminator and metrics see the activation, the voxel loss the logits, for a cross-entropy that stays
       stable where a class's probability underflows);
    2. ``backward_D``: the discriminator scores ``(x, y)`` and ``(x, fake.detach())`` in one batch. Its accuracy
       (real patches scored >= 0.5, fake patches < 0.5; scores are the raw outputs for least squares and their
       sigmoid for BCE) gates the update: the discriminator's backward and step run only when the accuracy is
       ``<= d_threshold`` (1.0: always; negative: never), as in the public Vox2Vox code;
    3. ``backward_G``: ``g_loss = adversarial_weight * adv(D(x, fake), real) + lambda_voxel * voxel(out, y)``,
       with the discriminator's parameters frozen; ``out`` is the generator's own output (logits when
       ``output_activation`` is set).

    ``state.output`` holds ``image``, ``label``, ``pred`` and the losses ``g_loss``, ``d_loss``, ``adv_loss``,
    ``voxel_loss``, ``d_accuracy``, ``d_updated`` and ``loss`` (= ``g_loss``). It fires MONAI's
    ``IterationEvents`` (FORWARD, LOSS, BACKWARD, MODEL_COMPLETED), so postprocessing and train metrics run.

    AMP (``amp=True``): fp16 autocast with a ``GradScaler`` on CUDA, bf16 autocast on CPU; losses are computed in
    fp32. A non-finite loss raises ``FloatingPointError`` naming the epoch and iteration before any step.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, prepare_batch, iteration_update,
        postprocessing, key_train_metric, additional_metrics, metric_cmp_fn, train_handlers, event_names,
        event_to_attr, decollate, to_kwargs: as ``monai.engines.SupervisedTrainer``.
        network: the generator.
        optimizer: the generator's optimizer.
        loss_function: the voxel loss ``(pred, target)``, e.g. ``monai.losses.GeneralizedDiceLoss`` or L1.
        discriminator: conditional discriminator called as ``discriminator(target=..., condition=...)``.
        d_optimizer: the discriminator's optimizer.
        adversarial_loss: ``monai.losses.PatchAdversarialLoss``-like ``(logits, target_is_real, for_discriminator)``.
        lambda_voxel: weight of the voxel loss. Defaults to 5 (the Vox2Vox paper).
        adversarial_weight: weight of the generator's adversarial term; 0 trains the generator alone. Defaults to 1.
        d_threshold: the discriminator steps only when its batch accuracy is ``<= d_threshold``. Defaults to 0.8.
        inferer: how the generator is run on the batch. Defaults to ``SimpleInferer``.
        output_activation: applied to the generator's output to make what the discriminator judges (e.g.
            ``torch.nn.Softmax(dim=1)`` for a generator that ends in logits); None when the generator's output is
            already that.
        amp: mixed precision as above.
        amp_dtype: autocast dtype; defaults to float16 on CUDA and bfloat16 elsewhere.
        optim_set_to_none: ``zero_grad(set_to_none=...)``. Defaults to True.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable,
        discriminator: torch.nn.Module,
        d_optimizer: Optimizer,
        adversarial_loss: Callable,
        lambda_voxel: float = 5.0,
        adversarial_weight: float = 1.0,
        d_threshold: float = 0.8,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        prepare_batch: Callable = default_prepare_batch,
        iteration_update: Callable | None = None,
        inferer: Inferer | None = None,
        postprocessing: Transform | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable = default_metric_cmp_fn,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        amp_dtype: torch.dtype | None = None,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        decollate: bool = True,
        optim_set_to_none: bool = True,
        to_kwargs: dict | None = None,
        output_activation: Callable | None = None,
    ) -> None:
        device = torch.device(device)
        amp_dtype = amp_dtype or (torch.float16 if device.type == "cuda" else torch.bfloat16)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            prepare_batch=prepare_batch,
            iteration_update=iteration_update,
            inferer=inferer,
            postprocessing=postprocessing,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            metric_cmp_fn=metric_cmp_fn,
            train_handlers=train_handlers,
            amp=amp,
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=decollate,
            optim_set_to_none=optim_set_to_none,
            to_kwargs=to_kwargs,
            amp_kwargs={"dtype": amp_dtype},
        )
        self.discriminator = discriminator
        self.d_optimizer = d_optimizer
        self.adversarial_loss = adversarial_loss
        self.lambda_voxel = float(lambda_voxel)
        self.adversarial_weight = float(adversarial_weight)
        self.d_threshold = float(d_threshold)
        self.amp_dtype = amp_dtype
        self.output_activation = output_activation
        # created here rather than in run() so that its state can be checkpointed and resumed
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp and amp_dtype == torch.float16)

    def run(self) -> None:
        Workflow.run(self)  # not Trainer.run, which would replace the scaler made in __init__

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.state.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def _scores(self, logits: torch.Tensor) -> torch.Tensor:
        if getattr(self.adversarial_loss, "criterion", "least_squares") == "bce":
            return torch.sigmoid(logits)
        return logits

    def _check_finite(self, **losses: torch.Tensor) -> None:
        for name, value in losses.items():
            if not torch.isfinite(value):
                raise FloatingPointError(
                    f"non-finite {name} ({value.item()}) at epoch {self.state.epoch}, iteration "
                    f"{self.state.iteration}; no optimizer stepped, earlier checkpoints are intact. Lower the "
                    f"learning rate, check the data for extreme values, or disable amp."
                )

    def _step(self, loss: torch.Tensor, optimizer: Optimizer, fire: bool = False) -> None:
        self.scaler.scale(loss).backward()
        if fire:
            self.fire_event(IterationEvents.BACKWARD_COMPLETED)
        self.scaler.step(optimizer)

    @property
    def _core_discriminator(self) -> torch.nn.Module:
        return unwrap_ddp(self.discriminator)

    @staticmethod
    def _pairs(inputs: torch.Tensor, targets: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        # built where it is used and not kept: the discriminator holds its own concatenation of them, and keeping
        # these two copies alive through its backward would cost as much again (0.5 GB at 128^3, batch 4)
        return {"target": torch.cat([targets, fake.detach()]), "condition": torch.cat([inputs, inputs])}

    def backward_d(self, inputs: torch.Tensor, targets: torch.Tensor, fake: torch.Tensor) -> dict[str, Any]:
        """Scores real and fake pairs, measures the discriminator's accuracy and steps it if the gate is open.

        Under ``DistributedDataParallel`` the accuracy is averaged over the ranks so that all of them take the same
        decision, and the scoring pass runs without gradients; only an open gate runs the discriminator through DDP
        again, with gradients, so that its backward is synchronised (a DDP forward without backward would hang)."""
        batch = inputs.shape[0]
        distributed = self.discriminator is not self._core_discriminator
        self.discriminator.requires_grad_(True)
        with torch.set_grad_enabled(not distributed), self._autocast():
            logits = self._core_discriminator(**self._pairs(inputs, targets, fake)).float()
        with torch.no_grad():
            real_scores, fake_scores = self._scores(logits[:batch]), self._scores(logits[batch:])
            correct = (real_scores >= 0.5).sum() + (fake_scores < 0.5).sum()
            accuracy = correct.float() / logits.numel()
            if distributed:
                torch.distributed.all_reduce(accuracy)
                accuracy /= torch.distributed.get_world_size()
        self._check_finite(discriminator_output=logits.detach().sum())
        update = bool(accuracy.item() <= self.d_threshold)
        if update and distributed:
            with self._autocast():
                logits = self.discriminator(**self._pairs(inputs, targets, fake)).float()
        d_loss = 0.5 * (
            self.adversarial_loss(logits[:batch], target_is_real=True, for_discriminator=True)
            + self.adversarial_loss(logits[batch:], target_is_real=False, for_discriminator=True)
        )
        self._check_finite(d_loss=d_loss)
        if update:
            self._step(d_loss, self.d_optimizer)
        return {"d_loss": d_loss.detach(), "d_accuracy": accuracy.item(), "d_updated": float(update)}

    def backward_g(
        self, inputs: torch.Tensor, targets: torch.Tensor, fake: torch.Tensor, raw: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Adversarial plus weighted voxel loss for the generator, with the discriminator frozen; the voxel loss sees
        ``raw`` (the generator's output before ``output_activation``) when it is given."""
        self.discriminator.requires_grad_(False)
        if self.adversarial_weight != 0:
            with self._autocast():  # the frozen discriminator needs no DDP synchronisation
                logits = self._core_discriminator(target=fake, condition=inputs).float()
            adv_loss = self.adversarial_loss(logits, target_is_real=True, for_discriminator=False)
        else:
            adv_loss = torch.zeros((), device=fake.device)
        voxel_loss = self.loss_function((fake if raw is None else raw).float(), targets.float()).mean()
        g_loss = self.adversarial_weight * adv_loss + self.lambda_voxel * voxel_loss
        losses = {Keys.LOSS: g_loss, "g_loss": g_loss, "adv_loss": adv_loss, "voxel_loss": voxel_loss}
        self.state.output.update(losses)
        self.fire_event(IterationEvents.LOSS_COMPLETED)
        self._check_finite(g_loss=g_loss)
        self._step(g_loss, self.optimizer, fire=True)
        self.discriminator.requires_grad_(True)
        return {k: v.detach() for k, v in losses.items()}

    def _iteration(self, engine: ConditionalGanTrainer, batchdata: dict[str, torch.Tensor]) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        engine.network.train()
        engine.discriminator.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        engine.d_optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        with engine._autocast():
            raw = engine.inferer(inputs, engine.network)
            fake = raw if engine.output_activation is None else engine.output_activation(raw)
        if fake.shape[1] != targets.shape[1]:
            raise ValueError(
                f"the generator outputs {fake.shape[1]} channels but the data's target has {targets.shape[1]} "
                f"(network_def out_channels vs the label's classes or target modalities)."
            )
        engine.state.output[Keys.PRED] = fake
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        d_stats = engine.backward_d(inputs, targets, fake)
        g_stats = engine.backward_g(inputs, targets, fake, None if engine.output_activation is None else raw)
        engine.scaler.update()
        engine.state.output.update({**g_stats, **d_stats, Keys.PRED: fake.detach()})
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
