"""Full-volume inference: one 240x240x155 4-channel case (a brain wider than one 128^3 window along every axis)
through the bundle's configured inferer (``inference.json``: a Gaussian sliding window on the brain's bounding box)
and through MONAI's plain ``SlidingWindowInferer`` over the whole grid with the same window settings (roi, overlap,
blending, ``sw_batch_size``); and, given a trained quick-config model, the Dice each inferer reaches on its held-out
fold with every case padded with air into the BraTS grid."""

from __future__ import annotations

import json
import os
import time

import torch
from common import BUNDLE, amp_dtype, memory_format, peak_memory_gib, run_child, sync
from figures import markdown_table, print_table

DICE_KEYS = ("seconds_per_case", "dice_WT", "dice_TC", "dice_ET")


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
    return SlidingWindowInferer(
        roi_size=roi_size,
        overlap=parser["overlap"],
        mode=parser["sliding_window"]["mode"],
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


def measure(args) -> dict:
    return {"configured": run_child(infer, args, False), "plain": run_child(infer, args, True)}


def report(results: dict) -> str:
    configured, plain = results["configured"], results["plain"]
    header = ["inference, one 240x240x155 4-channel case", "configured (`inference.json`)", "plain sliding window"]
    table = [
        ["seconds", f"{configured['seconds']:.2f}", f"{plain['seconds']:.2f}"],
        ["peak memory (GiB)", f"{configured['peak_memory_gib']:.2f}", f"{plain['peak_memory_gib']:.2f}"],
    ]
    ratio = f"configured / plain time: {configured['seconds'] / plain['seconds']:.2f}"
    print_table(header, table, other=32)
    print(ratio)
    return markdown_table(header, table) + "\n" + ratio + ".\n"


def measure_dice(args) -> dict:
    return {"configured": run_child(validation_dice, args, False), "plain": run_child(validation_dice, args, True)}


def report_dice(results: dict) -> str:
    header = ["held-out cases padded into the BraTS grid", "configured", "plain sliding window"]
    table = [[key, f"{results['configured'][key]:.3f}", f"{results['plain'][key]:.3f}"] for key in DICE_KEYS]
    print_table(header, table, other=22)
    return markdown_table(header, table)
