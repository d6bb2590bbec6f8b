"""One training iteration, ours against a reference-style loop: seconds per iteration and its split (data wait,
generator forward, discriminator forward, backward passes and the rest, optimizer steps), peak memory, FLOPs counted
with ``torch.utils.flop_counter`` and the achieved FLOP/s as a share of this machine's matmul rate.

"Ours" is the bundle's ConditionalGanTrainer as every entry point runs it (``import custom_nets`` keeps freed memory
in-process on glibc) and with that switched off; "reference" is a pix2pix loop written the way the public Vox2Vox
code writes it (generator forward twice, real and fake in separate discriminator passes, for-loop Adam) on the same
networks, run as the public code runs (without the in-process allocator setting). Each runs in its own process on
the same in-memory batches."""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from common import amp_dtype, memory_format, peak_memory_gib, run_child, sync
from figures import markdown_table, print_table

from custom_nets.allocator import ENV_SWITCH

LOOPS = {"ours": "ours", "ours_allocator_off": "ours, no mallopt", "reference": "reference"}
SPLIT = ("data wait", "generator forward", "discriminator forward", "backward and the rest", "optimizer steps")


class Timer:
    """Accumulates wall time of module forwards and optimizer steps through hooks."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = defaultdict(float)
        self._starts: dict[str, float] = {}

    def _begin(self, key: str) -> None:
        sync(self.device)
        self._starts[key] = time.perf_counter()

    def _end(self, key: str) -> None:
        sync(self.device)
        self.totals[key] += time.perf_counter() - self._starts.pop(key)

    @classmethod
    def attached(cls, device, gen, disc, g_opt, d_opt) -> Timer:
        timer = cls(device)
        timer.forwards(gen, "generator forward")
        timer.forwards(disc, "discriminator forward")
        timer.steps(g_opt, "optimizer steps")
        timer.steps(d_opt, "optimizer steps")
        return timer

    def forwards(self, module: torch.nn.Module, key: str) -> None:
        module.register_forward_pre_hook(lambda *_: self._begin(key))
        module.register_forward_hook(lambda *_: self._end(key))

    def steps(self, optimizer: torch.optim.Optimizer, key: str) -> None:
        optimizer.register_step_pre_hook(lambda *_: self._begin(key))
        optimizer.register_step_post_hook(lambda *_: self._end(key))


def build(args, device):
    from monai.losses import PatchAdversarialLoss

    from custom_nets import Vox2VoxDiscriminator, Vox2VoxGenerator
    from custom_nets.losses import FixedWeightGeneralizedDiceLoss

    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    gen = Vox2VoxGenerator(4, 4, channels=args.channels, variant=args.variant, use_checkpoint=args.checkpointing)
    disc = Vox2VoxDiscriminator(4, 4, channels=args.channels, variant=args.variant, use_checkpoint=args.d_checkpointing)
    gen, disc = gen.to(device, memory_format=memory_format(args)), disc.to(device, memory_format=memory_format(args))
    if args.compile:
        gen, disc = torch.compile(gen), torch.compile(disc)
    return (
        gen,
        disc,
        FixedWeightGeneralizedDiceLoss([0.0022, 1.0, 0.33, 1.0]),
        PatchAdversarialLoss(criterion="least_squares", no_activation_leastsq=True),
    )


def batches(args, device, n):
    """``n`` times the same batch (nothing writes to it), so that the data adds one batch to the peak, not ``n``."""
    x = torch.randn(args.batch, 4, args.crop, args.crop, args.crop)
    labels = torch.randint(0, 4, (args.batch, 1, args.crop, args.crop, args.crop))
    y = torch.zeros(args.batch, 4, args.crop, args.crop, args.crop).scatter_(1, labels, 1.0)
    x, y = x.contiguous(memory_format=memory_format(args)), y.contiguous(memory_format=memory_format(args))
    return [{"image": x, "label": y}] * n


def train_ours(args, queue):
    """The bundle's ConditionalGanTrainer: one generator forward, real and fake scored in one discriminator pass,
    fused Adam, zero_grad(set_to_none=True)."""
    from ignite.engine import Events
    from torch.utils.flop_counter import FlopCounterMode

    from custom_nets.engines import ConditionalGanTrainer

    device = torch.device(args.device)
    gen, disc, voxel, adversarial = build(args, device)
    fused = {"fused": True} if args.fused else {}
    g_opt = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999), **fused)
    d_opt = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999), **fused)
    trainer = ConditionalGanTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches(args, device, args.warmup + args.iterations),
        network=gen,
        optimizer=g_opt,
        loss_function=voxel,
        discriminator=disc,
        d_optimizer=d_opt,
        adversarial_loss=adversarial,
        d_threshold=args.d_threshold,
        amp=args.amp,
        amp_dtype=amp_dtype(args),
        decollate=False,
    )
    timer = Timer.attached(device, gen, disc, g_opt, d_opt)
    state = {"data": 0.0}
    iteration_times = []

    @trainer.on(Events.GET_BATCH_STARTED)
    def _data_start(_):
        state["t_data"] = time.perf_counter()

    @trainer.on(Events.GET_BATCH_COMPLETED)
    def _data_end(_):
        state["data"] += time.perf_counter() - state["t_data"]

    @trainer.on(Events.ITERATION_STARTED)
    def _start(engine):
        if engine.state.iteration == args.warmup + 1:
            timer.totals.clear()
            state["data"] = 0.0
        sync(device)
        state["t0"] = time.perf_counter()

    @trainer.on(Events.ITERATION_COMPLETED)
    def _end(engine):
        sync(device)
        if engine.state.iteration > args.warmup:
            iteration_times.append(time.perf_counter() - state["t0"])

    updated = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: updated.append(e.state.output["d_updated"]))
    trainer.run()
    seconds = sum(iteration_times) / len(iteration_times)
    split = split_times(timer, seconds, state["data"], args.iterations)
    peak_memory = peak_memory_gib(device)  # of training: counting FLOPs below holds more than an iteration does
    with FlopCounterMode(display=False) as counter:
        trainer._iteration(trainer, trainer.data_loader[0])
    queue.put(
        {
            "seconds_per_iteration": seconds,
            "split": split,
            "flops": counter.get_total_flops(),
            "peak_memory_gib": peak_memory,
            "d_update_fraction": sum(updated[args.warmup :]) / args.iterations,
        }
    )


def split_times(timer, seconds_per_iteration, data, n):
    """Per-iteration split; what the hooks do not see (backward passes, losses, small ops) is the remainder."""
    g_fwd, d_fwd, steps = (timer.totals[k] / n for k in (SPLIT[1], SPLIT[2], SPLIT[4]))
    data /= n
    rest = seconds_per_iteration - data - g_fwd - d_fwd - steps
    return dict(zip(SPLIT, (data, g_fwd, d_fwd, rest, steps), strict=True))


def train_reference(args, queue):
    """A pix2pix loop written the way the public reference writes it: the generator runs forward twice (once for
    D, once for G), real and fake pairs in separate discriminator passes, for-loop Adam."""
    from torch.utils.flop_counter import FlopCounterMode

    device = torch.device(args.device)
    gen, disc, voxel, adversarial = build(args, device)
    g_opt = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999), foreach=False)
    d_opt = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999), foreach=False)
    timer = Timer.attached(device, gen, disc, g_opt, d_opt)
    updated = []

    def iteration(batch):
        x, y = batch["image"].to(device), batch["label"].to(device)
        fake = gen(x)  # for the discriminator
        pred_real, pred_fake = disc(target=y, condition=x), disc(target=fake.detach(), condition=x)
        accuracy = torch.cat([(pred_real >= 0.5).float().flatten(), (pred_fake <= 0.5).float().flatten()]).mean()
        d_loss = 0.5 * (adversarial(pred_real, True, True) + adversarial(pred_fake, False, True))
        updated.append(float(accuracy.item() <= args.d_threshold))
        if updated[-1]:
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
        g_opt.zero_grad()
        fake = gen(x)  # again, for the generator
        g_loss = adversarial(disc(target=fake, condition=x), True, False) + 5.0 * voxel(fake, y)
        g_loss.backward()
        g_opt.step()

    data = batches(args, device, args.warmup + args.iterations)
    for batch in data[: args.warmup]:
        iteration(batch)
    timer.totals.clear()
    start = time.perf_counter()
    for batch in data[args.warmup :]:
        iteration(batch)
    sync(device)
    elapsed = (time.perf_counter() - start) / args.iterations
    split = split_times(timer, elapsed, 0.0, args.iterations)
    peak_memory = peak_memory_gib(device)
    with FlopCounterMode(display=False) as counter:
        iteration(data[0])
    queue.put(
        {
            "seconds_per_iteration": elapsed,
            "split": split,
            "flops": counter.get_total_flops(),
            "peak_memory_gib": peak_memory,
            "d_update_fraction": sum(updated[args.warmup : args.warmup + args.iterations]) / args.iterations,
        }
    )


def measure(args, matmul: float, reference: bool = True) -> dict:
    """``{loop: figures}`` for ours, ours without the in-process allocator setting and (``reference``) the reference
    loop. ``GLIBC_TUNABLES``, when set, applies to all three (and the in-process setting then stands aside)."""
    results = {
        "ours": run_child(train_ours, args),
        "ours_allocator_off": run_child(train_ours, args, env={ENV_SWITCH: "0"}),
    }
    if reference:
        results["reference"] = run_child(train_reference, args, env={ENV_SWITCH: "0"})
    for figures in results.values():
        figures["gflops_per_s"] = figures["flops"] / figures["seconds_per_iteration"] / 1e9
        figures["share_of_matmul"] = figures["gflops_per_s"] / matmul
    return results


def rows(results: dict) -> tuple[list[str], list[list[str]]]:
    loops = [name for name in LOOPS if name in results]
    header = ["training", *(LOOPS[name] for name in loops)]
    table = [
        ["seconds / iteration", *(f"{results[n]['seconds_per_iteration']:.3f}" for n in loops)],
        ["discriminator update fraction", *(f"{results[n]['d_update_fraction']:.2f}" for n in loops)],
        ["peak memory (GiB)", *(f"{results[n]['peak_memory_gib']:.2f}" for n in loops)],
        *([f"  {part} (s)", *(f"{results[n]['split'][part]:.3f}" for n in loops)] for part in SPLIT),
        ["TFLOP / iteration", *(f"{results[n]['flops'] / 1e12:.3f}" for n in loops)],
        [
            "achieved GFLOP/s (share of matmul)",
            *(f"{results[n]['gflops_per_s']:.0f} ({results[n]['share_of_matmul']:.0%})" for n in loops),
        ],
    ]
    return header, table


def ratios(results: dict) -> list[str]:
    seconds = {n: figures["seconds_per_iteration"] for n, figures in results.items()}
    kept = seconds["ours_allocator_off"] / seconds["ours"]
    lines = [f"allocator kept in-process: {kept:.2f}x faster than without it"]
    if "reference" in seconds:
        lines.append(f"ours / reference time per iteration: {seconds['ours'] / seconds['reference']:.2f}")
    return lines


def report(results: dict) -> str:
    """Prints the table; returns it in Markdown with the ratios below it."""
    header, table = rows(results)
    print_table(header, table, first=40)
    for line in ratios(results):
        print(line)
    return markdown_table(header, table) + "\n" + "; ".join(ratios(results)) + ".\n"
