"""Speed and memory of Vox2Vox training and full-volume inference, ours against a reference-style loop.

    python benchmarks/bench.py                       # 64^3 crops, full widths, 3 timed iterations after 1 warm-up
    python benchmarks/bench.py --crop 128 --iterations 2 --skip_inference
    python benchmarks/bench.py --channels 16,32,64,128 --amp --checkpointing levels
    python benchmarks/bench.py --crop 128 --batch 4 --checkpointing --live_memory --skip_reference --skip_inference
    python benchmarks/bench.py --cache_plan          # bytes per cached BraTS-sized case, projected for BraTS 2021
    python benchmarks/bench.py --variant paper --skip_reference --skip_data --skip_inference   # the authors' networks

Each measurement runs in a fresh process so that its peak memory is its own: peak resident memory (CPU) or peak
allocated memory (CUDA). With ``--live_memory`` the CPU figure counts live tensors, as the CUDA one does: the fast
allocator setting of the Makefile keeps freed memory resident, which inflates peak resident memory. Training
figures: seconds per iteration and its split (data wait, generator forward/backward, discriminator forward/backward,
optimizer steps), FLOPs of one iteration counted with ``torch.utils.flop_counter`` and the achieved FLOP/s as a
share of this machine's measured matmul throughput.
Inference: one 240x240x155 4-channel case (a brain wider than one 128^3 window along every axis) through the bundle's
configured inferer and MONAI's plain ``SlidingWindowInferer`` over the whole grid with the configured window's
settings (roi 128^3, overlap, blending and ``sw_batch_size`` from ``inference.json``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import time
from collections import defaultdict

import torch

from custom_nets.allocator import ENV_SWITCH, keep_freed_memory
from custom_nets.networks.generator import CHECKPOINTING
from custom_nets.networks.variants import VARIANTS
from custom_nets.utils import write_json

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bundle")


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


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


def memory_format(args) -> torch.memory_format:
    return torch.channels_last_3d if args.channels_last else torch.contiguous_format


def amp_dtype(args) -> torch.dtype | None:
    """``--amp_dtype`` as a torch dtype; None leaves the device's default (float16 on CUDA, bfloat16 elsewhere)."""
    return getattr(torch, args.amp_dtype) if args.amp_dtype else None


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
    from torch.utils.flop_counter import FlopCounterMode

    from custom_nets.engines import ConditionalGanTrainer

    device = torch.device(args.device)
    gen, disc, voxel, adversarial = build(args, device)
    fused = {"fused": True} if args.fused else {}
    g_opt = torch.optim.Adam(gen.parameters(), 2e-4, betas=(0.5, 0.999), **fused)
    d_opt = torch.optim.Adam(disc.parameters(), 2e-4, betas=(0.5, 0.999), **fused)
    total = args.warmup + args.iterations
    trainer = ConditionalGanTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=batches(args, device, total),
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

    from ignite.engine import Events

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
    keys = ("generator forward", "discriminator forward", "optimizer steps")
    g_fwd, d_fwd, steps = (timer.totals[k] / n for k in keys)
    data /= n
    return {
        "data wait": data,
        "generator forward": g_fwd,
        "discriminator forward": d_fwd,
        "backward and the rest": seconds_per_iteration - data - g_fwd - d_fwd - steps,
        "optimizer steps": steps,
    }


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


def inference_case(shape=(240, 240, 155), head=(172, 190, 172)):
    """A 4-channel synthetic BraTS-like case, z-scored over the brain as the bundle feeds it: a synthetic head drawn in
    a ``head`` box centred in the BraTS grid (cut to the grid where it is taller), whose brain then spans 140x172x138
    voxels (BraTS brains span about 140x170x130-145 of the 240x240x155 grid; the Vox2Vox paper code crops BraTS to
    160x192x128): more than one 128^3 window along every axis."""
    import numpy as np
    from monai.transforms import NormalizeIntensity

    from custom_nets.data.conventions import CHANNELS
    from custom_nets.data.synthetic import add_tumour, brain_tissue, render

    rng = np.random.default_rng(0)
    tissue = add_tumour(rng, brain_tissue(rng, head), enhancing=True)
    volumes = torch.from_numpy(np.stack([render(rng, tissue, m) for m in CHANNELS]))
    image = torch.zeros(1, 4, *shape)
    inside = [min(s, h) for s, h in zip(shape, head, strict=True)]
    source = tuple(slice((h - n) // 2, (h - n) // 2 + n) for h, n in zip(head, inside, strict=True))
    target = tuple(slice((s - n) // 2, (s - n) // 2 + n) for s, n in zip(shape, inside, strict=True))
    image[(0, slice(None), *target)] = volumes[(slice(None), *source)]
    return NormalizeIntensity(nonzero=True, channel_wise=True)(image[0]).as_tensor()[None]


def configured_inferer(device: str, roi_size=None):
    """The inferer of ``bundle/configs/inference.json`` (foreground crop around a Gaussian sliding window)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(os.path.join(BUNDLE, "configs/inference.json"))
    parser["device"] = f"$torch.device('{device}')"
    if roi_size is not None:
        parser["roi_size"] = [roi_size] * 3
    return parser.get_parsed_content("inferer")


def plain_inferer(roi_size: int = 128):
    """MONAI's ``SlidingWindowInferer`` over the whole grid with the configured window's blending, overlap and
    ``sw_batch_size`` (``inference.json``): it differs from the configured inferer only by the brain-box crop."""
    from monai.bundle import ConfigParser
    from monai.inferers import SlidingWindowInferer

    parser = ConfigParser()
    parser.read_config(os.path.join(BUNDLE, "configs/inference.json"))
    window = parser["sliding_window"]
    return SlidingWindowInferer(
        roi_size=roi_size,
        overlap=parser["overlap"],
        mode=window["mode"],
        sw_batch_size=parser["sw_batch_size"],
    )


def infer(args, queue, plain: bool):
    from custom_nets import Vox2VoxGenerator

    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    net = Vox2VoxGenerator(4, 4, channels=args.channels).to(device, memory_format=memory_format(args)).eval()
    inferer = plain_inferer() if plain else configured_inferer(args.device)
    image = inference_case()
    sync(device)
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast(device.type, dtype=amp_dtype(args), enabled=args.amp):
        output = inferer(image, net)
    sync(device)
    queue.put(
        {
            "seconds": time.perf_counter() - start,
            "peak_memory_gib": peak_memory_gib(device),
            "classes": torch.bincount(output.argmax(1).flatten(), minlength=4).tolist(),
        }
    )


def validation_dice(args, queue, plain: bool):
    """A trained model (``--dice_model``, quick widths) on the held-out fold of ``--dice_data``, each case padded with
    air into the 240x240x155 BraTS grid: mean Dice (BraTS conventions) and seconds per case, for the configured
    inferer or the plain sliding window, both with the quick roi."""
    import tempfile

    with tempfile.TemporaryDirectory() as output_dir:
        queue.put(_validation_dice(args, plain, output_dir))


def _validation_dice(args, plain: bool, output_dir: str) -> dict:
    from monai.bundle import ConfigParser

    dataset_dir, model_file = os.path.abspath(args.dice_data), os.path.abspath(args.dice_model)
    os.chdir(BUNDLE)  # evaluate.json takes inference.json's ids by a path relative to the bundle (this child only)
    parser = ConfigParser()
    parser.read_config(["configs/train.json", "configs/evaluate.json", "configs/quick.json"])
    roi = parser["roi_size"][0]
    parser.update(
        {
            "bundle_root": BUNDLE,
            "dataset_dir": dataset_dir,
            "model_file": model_file,
            "output_dir": output_dir,
            "device": f"$torch.device('{args.device}')",
            "validate#handlers": [
                {"_target_": "custom_nets.handlers.BratsMetricsWriter", "output_dir": output_dir},
            ],
        }
    )
    parser["validate#preprocessing#transforms"] = (
        "$@train#load_transforms + [monai.transforms.SpatialPadd(['image', 'label'], [240, 240, 155]), "
        "@train#normalize]"
    )
    evaluator = parser.get_parsed_content("validate#evaluator")
    evaluator.inferer = plain_inferer(roi) if plain else configured_inferer(args.device, roi)
    start = time.perf_counter()
    evaluator.run()
    seconds = (time.perf_counter() - start) / evaluator.state.iteration
    with open(f"{output_dir}/summary.json") as f:
        metrics = json.load(f)["metrics"]
    return {"seconds_per_case": seconds, **{f"dice_{r}": metrics[f"dice_{r}"]["mean"] for r in ("WT", "TC", "ET")}}


def data_pipeline(args, queue):
    """The bundle's own training pipeline at the quick config (CacheDataset of the deterministic transforms, random
    crops and augmentation per iteration, the DataLoader with ``num_workers``) driving the real trainer on a synthetic
    dataset: how much of each iteration is spent waiting for data. The first epoch is a warm-up."""
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        queue.put(_data_pipeline(args, scratch))


def _data_pipeline(args, scratch: str) -> dict:
    from ignite.engine import Events
    from monai.bundle import ConfigParser

    from custom_nets.data import write_datalist
    from custom_nets.data.synthetic import synthesize

    data_dir = args.data_dir
    if data_dir is None:
        data_dir = os.path.join(scratch, "data")
        synthesize(data_dir, num_cases=10, seed=0, progress=False)
        write_datalist(data_dir, num_folds=5, seed=0, verify=False)
    parser = ConfigParser()
    parser.read_config([os.path.join(BUNDLE, "configs/train.json"), os.path.join(BUNDLE, "configs/quick.json")])
    parser.update(
        {
            "bundle_root": BUNDLE,
            "dataset_dir": data_dir,
            "output_dir": scratch,
            "ckpt_dir": scratch,
            "epochs": 3,
            "train#handlers": [],
            "device": f"$torch.device('{args.device}')",
        }
    )
    if args.num_workers is not None:
        parser["num_workers"] = args.num_workers
    trainer = parser.get_parsed_content("train#trainer")
    totals = {"data": 0.0, "iteration": 0.0, "count": 0}
    marks = {}

    @trainer.on(Events.GET_BATCH_STARTED)
    def _batch_start(_):
        marks["data"] = time.perf_counter()

    @trainer.on(Events.GET_BATCH_COMPLETED)
    def _batch_end(engine):
        if engine.state.epoch > 1:
            totals["data"] += time.perf_counter() - marks["data"]

    @trainer.on(Events.ITERATION_COMPLETED)
    def _end(engine):
        if engine.state.epoch > 1:  # from the request for the batch to the end of the iteration
            totals["iteration"] += time.perf_counter() - marks["data"]
            totals["count"] += 1

    trainer.run()
    n = totals["count"]
    return {
        "iterations": n,
        "num_workers": parser["num_workers"],
        "data_wait_ms": totals["data"] / n * 1000,
        "iteration_ms": totals["iteration"] / n * 1000,
    }


def run_child(target, args, *extra, env: dict | None = None):
    """``target(args, queue, *extra)`` in a fresh (spawned) process, with ``env`` added to its environment."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=target, args=(args, queue, *extra))
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    try:
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value
    while True:
        try:
            result = queue.get(timeout=5)
            break
        except Exception:  # queue.Empty: keep waiting while the child lives
            if not process.is_alive():
                raise RuntimeError(f"{target.__name__} failed (exit code {process.exitcode}); see above") from None
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=lambda s: tuple(int(c) for c in s.split(",")), default=(64, 128, 256, 512))
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="vox2vox",
        help="networks of every training loop (ours and the reference-style one)",
    )
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--amp_dtype", choices=("float16", "bfloat16"), help="default: float16 on CUDA, else bfloat16")
    parser.add_argument("--cudnn_benchmark", action="store_true", help="torch.backends.cudnn.benchmark (CUDA)")
    parser.add_argument("--channels_last", action="store_true", help="networks and batches in channels_last_3d")
    parser.add_argument("--compile", action="store_true", help="torch.compile both networks (training)")
    parser.add_argument(
        "--checkpointing",
        nargs="?",
        const="network",
        default="none",
        choices=CHECKPOINTING,
        help="activation checkpointing in the generator (no value: network)",
    )
    parser.add_argument("--d_checkpointing", action="store_true", help="activation checkpointing in the discriminator")
    parser.add_argument("--no_fused", dest="fused", action="store_false")
    parser.add_argument("--d_threshold", type=float, default=0.8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip_training", action="store_true")
    parser.add_argument("--skip_reference", action="store_true")
    parser.add_argument("--skip_inference", action="store_true")
    parser.add_argument("--skip_data", action="store_true", help="skip the data-pipeline measurement")
    parser.add_argument("--data_dir", help="dataset (with datalist.json) for the data-pipeline measurement")
    parser.add_argument("--num_workers", type=int, help="loader workers for the data-pipeline measurement")
    parser.add_argument("--dice_model", help="a quick-config model: compare the inferers' Dice on its held-out fold")
    parser.add_argument("--dice_data", default="demo/data", help="the dataset that model was trained on")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument(
        "--cache_plan",
        action="store_true",
        help="only measure bytes per cached BraTS-sized case and project the default configs' cache for BraTS 2021",
    )
    parser.add_argument(
        "--live_memory",
        action="store_true",
        help="CPU: peak memory of live tensors (as CUDA's max_memory_allocated) rather than of the fast allocator; "
        "slower iterations",
    )
    args = parser.parse_args()
    if args.cache_plan:
        import cache_plan

        plan = cache_plan.measure()
        cache_plan.report(plan)
        if args.json:
            write_json(args.json, {"cache_plan": plan})
        return
    if args.live_memory:
        # every allocation of 64 KiB or more gets its own mapping, returned to the system when freed, so resident
        # memory follows what is allocated; the children read this at their start
        os.environ["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=65536"

    device = torch.device(args.device)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or 'CPU'}, {torch.get_num_threads()} threads"
    )
    peak = matmul_gflops(device)
    print(f"machine: {machine}; torch {torch.__version__}; fp32 matmul {peak:.0f} GFLOP/s")
    print(
        f"config: crop {args.crop}^3, batch {args.batch}, widths {args.channels}, variant {args.variant}, "
        f"amp {args.amp} "
        f"({args.amp_dtype or 'default dtype'}), checkpointing G {args.checkpointing} D {args.d_checkpointing}, "
        f"fused Adam {args.fused}, cudnn.benchmark {args.cudnn_benchmark}, channels_last {args.channels_last}, "
        f"compile {args.compile}"
    )
    if device.type == "cpu":
        allocator = os.environ.get("GLIBC_TUNABLES", "glibc defaults")
        meaning = "live tensors" if args.live_memory else "peak resident memory"
        print(f"memory: {meaning} (GLIBC_TUNABLES={allocator})")
        kept = keep_freed_memory()
        how = "freed memory kept in-process" if kept["applied"] else "as the environment sets it"
        print(f"allocator: {how} ({kept['reason']})")
    results = {"machine": machine, "matmul_gflops": peak, "config": vars(args)}
    if not args.skip_training:
        report_training(args, results, peak)
    if not args.skip_data:
        data = results["data_pipeline"] = run_child(data_pipeline, args)
        print(
            f"\ndata pipeline at the quick config ({data['num_workers']} workers, {data['iterations']} iterations): "
            f"data wait {data['data_wait_ms']:.1f} ms of {data['iteration_ms']:.1f} ms per iteration "
            f"({data['data_wait_ms'] / data['iteration_ms']:.1%})"
        )
    if not args.skip_inference:
        results["inference"] = run_child(infer, args, False)
        results["inference_plain"] = run_child(infer, args, True)
        print(f"\n{'inference, 240x240x155x4':<34}{'configured':>14}{'plain SW':>14}")
        for label, key in (("seconds", "seconds"), ("peak memory (GiB)", "peak_memory_gib")):
            print(f"{label:<34}{results['inference'][key]:>14.2f}{results['inference_plain'][key]:>14.2f}")
        print(f"configured / plain time: {results['inference']['seconds'] / results['inference_plain']['seconds']:.2f}")
    if args.dice_model:
        results["dice"] = run_child(validation_dice, args, False)
        results["dice_plain"] = run_child(validation_dice, args, True)
        print(f"\n{'held-out cases in the BraTS grid':<34}{'configured':>14}{'plain SW':>14}")
        for key in ("seconds_per_case", "dice_WT", "dice_TC", "dice_ET"):
            print(f"{key:<34}{results['dice'][key]:>14.3f}{results['dice_plain'][key]:>14.3f}")
    if args.json:
        write_json(args.json, results)


def report_training(args, results, peak):
    """Ours as every entry point runs it (``import custom_nets`` keeps freed memory on glibc) and with that switched
    off; the reference loop as the public code runs, without it (``CUSTOM_NETS_MALLOPT=0``). ``GLIBC_TUNABLES``, when
    set, applies to all three (and the in-process setting then stands aside)."""
    results["ours"] = run_child(train_ours, args)
    results["ours_allocator_off"] = run_child(train_ours, args, env={ENV_SWITCH: "0"})
    if not args.skip_reference:
        results["reference"] = run_child(train_reference, args, env={ENV_SWITCH: "0"})
    rows = [("training", k) for k in ("ours", "ours_allocator_off", "reference") if k in results]
    labels = {"ours": "ours", "ours_allocator_off": "ours, no mallopt", "reference": "reference"}
    print(f"\n{'training':<34}" + "".join(f"{labels[name]:>18}" for _, name in rows))
    for label, key in (
        ("seconds / iteration", "seconds_per_iteration"),
        ("discriminator update fraction", "d_update_fraction"),
        ("peak memory (GiB)", "peak_memory_gib"),
    ):
        print(f"{label:<34}" + "".join(f"{results[n][key]:>18.3f}" for _, n in rows))
    for part in results["ours"]["split"]:
        print(f"  {part:<32}" + "".join(f"{results[n]['split'][part]:>18.3f}" for _, n in rows))
    print(f"{'TFLOP / iteration':<34}" + "".join(f"{results[n]['flops'] / 1e12:>18.3f}" for _, n in rows))
    for _, n in rows:
        results[n]["gflops_per_s"] = results[n]["flops"] / results[n]["seconds_per_iteration"] / 1e9
    print(f"{'achieved GFLOP/s':<34}" + "".join(f"{results[n]['gflops_per_s']:>18.1f}" for _, n in rows))
    print(f"{'share of matmul peak':<34}" + "".join(f"{results[n]['gflops_per_s'] / peak:>18.1%}" for _, n in rows))
    seconds = {n: results[n]["seconds_per_iteration"] for _, n in rows}
    print(f"allocator kept in-process: {seconds['ours_allocator_off'] / seconds['ours']:.2f}x faster than without it")
    if "reference" in results:
        print(f"ours / reference time per iteration: {seconds['ours'] / seconds['reference']:.2f}")
        speedup = seconds["reference"] / seconds["ours"]
        print(f"throughput, ours / the reference loop in its plain environment: {speedup:.2f}x")


if __name__ == "__main__":
    main()
