"""Seconds per case of the preprocessing steps at BraTS size (240x240x155, 1 mm), on this machine's CPU threads:
the rigid registration of each of three sequences to the reference (ITK, Mattes mutual information, three levels)
and deepbet's brain extraction, each timed alone after one warm-up (ITK loads its registration modules lazily, once
per process: printed in the header). The moving sequences are misaligned as the tests do (T2 6 degrees and
5 mm, FLAIR 3 degrees, T1ce as is); the recovered angle is printed beside each time.

    python benchmarks/preprocess_speed.py --shape 240 240 155 --picture bundle/docs/images/preprocess_head.png
    python benchmarks/preprocess_speed.py --figures docs/figures/preprocess   # also writes its .json and .md

``--picture`` also draws a synthetic head (the ``men-rt`` synthesizer's T1c, 1 mm) before and after deepbet.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from figures import markdown_table, write_figures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[240, 240, 155])
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--picture", default=None)
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args()
    import itk
    import torch

    from custom_nets.data.synthetic import synthesize_case
    from custom_nets.preprocess.registration import Rigid, resample_onto, rigid_register
    from custom_nets.preprocess.skull_strip import brain_mask

    images, _ = synthesize_case(args.seed, 1, args.shape)

    def volume(sequence: str):
        image = itk.image_from_array(np.ascontiguousarray(np.transpose(images[sequence], (2, 1, 0))))
        return image

    def moved(sequence: str, degrees: float, shift: float):
        image = volume(sequence)
        transform = Rigid.New()
        transform.SetCenter([(s - 1) / 2 for s in args.shape])
        transform.SetRotation(itk.Vector[itk.D, 3]([0.3, 0.2, 1.0]), float(np.deg2rad(degrees)))
        transform.SetTranslation(itk.Vector[itk.D, 3]([shift, 0.0, 0.0]))
        return resample_onto(image, image, transform)

    reference = volume("t1")
    start = time.perf_counter()
    rigid_register(reference, volume("t1ce"), iterations=5)
    first = time.perf_counter() - start
    rows = []
    for sequence, degrees, shift in (("t2", 6.0, 5.0), ("flair", 3.0, 0.0), ("t1ce", 0.0, 0.0)):
        image = moved(sequence, degrees, shift)
        start = time.perf_counter()
        found = rigid_register(reference, image)
        rows.append(
            (f"register {sequence}", time.perf_counter() - start, f"{found.rotation_degrees:.2f} deg of {degrees}")
        )
    brain_mask(reference)  # warm-up: loads the two models
    start = time.perf_counter()
    _, ml = brain_mask(reference)
    rows.append(("skull strip (deepbet)", time.perf_counter() - start, f"{ml:.0f} mL"))
    caption = (
        f"ITK {itk.Version.GetITKVersion()}, {torch.get_num_threads()} torch threads; one synthetic case of "
        f"{'x'.join(map(str, args.shape))} voxels; the process's first registration call (ITK's module loading and 5 "
        f"iterations per level) {first:.1f} s"
    )
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {caption}")
    if args.picture:
        draw_head(args.picture)
    table = markdown_table(["step", "seconds", "result"], [[n, f"{t:.1f}", r] for n, t, r in rows])
    print(table)
    if args.figures:
        figures = {"first_call_seconds": first, "steps": [{"step": n, "seconds": t, "result": r} for n, t, r in rows]}
        write_figures(args.figures, figures, f"{caption}.\n\n{table}")


def draw_head(path: str) -> None:
    """Before and after brain extraction, one synthetic head of 1 mm voxels (the third native grid)."""
    import itk

    from custom_nets.data.synthetic import synthesize_case
    from custom_nets.preprocess.skull_strip import brain_mask
    from custom_nets.visualize import compare_volumes

    images, _ = synthesize_case(4, 2, (160, 176, 136), "men-rt")
    head = images["t1c"]
    mask, ml = brain_mask(itk.image_from_array(np.ascontiguousarray(np.transpose(head, (2, 1, 0)))))
    stripped = head * np.transpose(mask, (2, 1, 0))
    title = f"deepbet on a synthetic T1c head: {ml:.0f} mL kept"
    compare_volumes(("before", head), ("after", stripped), path, title=title, show_difference=False)
    print(path)


if __name__ == "__main__":
    main()
