"""Bytes per cached case on a BraTS-sized case, and what the default training configs project for BraTS 2021.

    python benchmarks/cache_plan.py [--figures docs/figures/cache_plan]     (or python benchmarks/bench.py --cache_plan)

One synthetic case of 240x240x155 (a head drawn in a 172x190x155 box centred in the BraTS grid, whose brain spans
about 140x172x125 voxels, as BraTS brains do) and its labels are written as NIfTI files and run through
``bundle/configs/train.json``'s own deterministic training transforms and validation preprocessing; the bytes of
their output are what one cached case holds. The projections are for BraTS 2021's 1,251 cases with fold 0 of 5
held out (1,000 training, 251 validation: the cases are dealt round-robin into 5 folds), for one process and for
each rank of 8 (``multi_gpu_train.json`` partitions both lists before caching).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BRATS_CASES, FOLDS, RANKS = 1251, 5, 8


def brats_sized_case(folder: str, shape=(240, 240, 155), head=(172, 190, 155)) -> dict:
    import nibabel as nib
    import numpy as np

    from custom_nets.data.conventions import CHANNELS
    from custom_nets.data.synthetic import BRATS_LABEL, add_tumour, brain_tissue, brats_affine, render

    rng = np.random.default_rng(0)
    tissue = add_tumour(rng, brain_tissue(rng, head), enhancing=True)
    start = [(s - h) // 2 for s, h in zip(shape, head, strict=True)]
    box = tuple(slice(a, a + h) for a, h in zip(start, head, strict=True))
    entry = {"image": [], "label": os.path.join(folder, "seg.nii.gz")}
    for modality in CHANNELS:
        volume = np.zeros(shape, np.float32)
        volume[box] = render(rng, tissue, modality)
        entry["image"].append(os.path.join(folder, f"{modality}.nii.gz"))
        nib.save(nib.Nifti1Image(volume, brats_affine(shape)), entry["image"][-1])
    labels = np.zeros(shape, np.uint8)
    for tissue_class, label in BRATS_LABEL.items():
        labels[box][tissue == tissue_class] = label
    nib.save(nib.Nifti1Image(labels, brats_affine(shape)), entry["label"])
    return entry


def measure() -> dict:
    from monai.bundle import ConfigParser
    from monai.transforms import Compose

    from custom_nets.data.cache import GIB, bytes_per_case

    parser = ConfigParser()
    parser.read_config(os.path.join(ROOT, "bundle", "configs", "train.json"))
    parser.update({"labels_to_classes": [[0, 1, 2, 4], [0, 1, 2, 3]]})
    with tempfile.TemporaryDirectory() as folder:
        entry = brats_sized_case(folder)
        training = bytes_per_case([entry], Compose(parser.get_parsed_content("train#deterministic_transforms")))
        validation = bytes_per_case([entry], parser.get_parsed_content("validate#preprocessing"))
    validation_cases = math.ceil(BRATS_CASES / FOLDS)
    training_cases = BRATS_CASES - validation_cases
    per_process = (training_cases * training + validation_cases * validation) / GIB
    per_rank = (math.ceil(training_cases / RANKS) * training + math.ceil(validation_cases / RANKS) * validation) / GIB
    cache = parser["cache"]
    return {
        "cache": cache,
        "training_case_mb": training / 1024**2,
        "validation_case_mb": validation / 1024**2,
        "training_cases": training_cases,
        "validation_cases": validation_cases,
        "cache_gib_one_process": per_process,
        "cache_gib_per_rank": per_rank,
        "host_gib_one_process": per_process if cache == "memory" else 0.0,
        "host_gib_per_rank": per_rank if cache == "memory" else 0.0,
    }


def report(plan: dict) -> None:
    where = "on disk" if plan["cache"] == "disk" else "in memory"
    print(
        f"cache plan, default configs (cache '{plan['cache']}'), a BraTS-sized case (240x240x155, brain box about "
        f"140x172x125): {plan['training_case_mb']:.1f} MB per cached training case, "
        f"{plan['validation_case_mb']:.1f} MB per cached validation case"
    )
    print(
        f"BraTS 2021, {BRATS_CASES} cases ({plan['training_cases']} training, {plan['validation_cases']} validation): "
        f"cache {where} {plan['cache_gib_one_process']:.1f} GiB in one process, {plan['cache_gib_per_rank']:.1f} GiB "
        f"per rank of {RANKS}; the same cache in memory (cache 'memory') would need that much RAM"
    )
    print(f"one process: projected host memory for the data cache {plan['host_gib_one_process']:.1f} GiB")
    print(f"per rank of {RANKS}: projected host memory for the data cache {plan['host_gib_per_rank']:.1f} GiB")


def table(plan: dict) -> str:
    from figures import markdown_table

    header = [
        f"BraTS 2021, {BRATS_CASES} cases, fold 0 of {FOLDS} held out "
        f"({plan['training_cases']} training, {plan['validation_cases']} validation)",
        "per cached case",
        "one process",
        f"per rank of {RANKS}",
    ]
    rows = [
        [
            "training case (brain box, labels, tumour/brain sample indices)",
            f"{plan['training_case_mb']:.1f} MB",
            f"{plan['training_cases']} cases",
            f"{math.ceil(plan['training_cases'] / RANKS)} cases",
        ],
        [
            "validation case (the whole normalised volume)",
            f"{plan['validation_case_mb']:.1f} MB",
            f"{plan['validation_cases']} cases",
            f"{math.ceil(plan['validation_cases'] / RANKS)} cases",
        ],
        [
            f'default (`cache "{plan["cache"]}"`): host memory for the cache / the cache\'s size',
            "",
            f"{plan['host_gib_one_process']:.1f} GiB / {plan['cache_gib_one_process']:.1f} GiB",
            f"{plan['host_gib_per_rank']:.1f} GiB / {plan['cache_gib_per_rank']:.1f} GiB",
        ],
    ]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args(argv)
    plan = measure()
    report(plan)
    if args.figures:
        from figures import write_figures

        write_figures(args.figures, plan, table(plan))


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
