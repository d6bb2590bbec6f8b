"""The figures of a finished ``make demo``: its evaluation of the held-out fold, and the same evaluation after the
smallest-lesion sizes are chosen on that fold (``run evaluating --select_postprocessing true``, then the plain
evaluation reading the chosen sizes; both write under the demo folder, never under ``bundle/models``).

    make demo && python benchmarks/demo_results.py demo [--figures docs/figures/demo]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle_runs import bundle  # noqa: E402
from figures import markdown_table, write_figures  # noqa: E402

REGIONS = ("WT", "TC", "ET")
EVALUATE = ["configs/train.json", "configs/evaluate.json", "configs/quick.json"]


def means(summary_file: str) -> dict[str, float]:
    with open(summary_file) as f:
        summary = json.load(f)
    return {key: stats["mean"] for key, stats in summary["metrics"].items()} | {"cases": summary["num_cases"]}


def rows(plain: dict, chosen: dict, sizes: dict) -> list[list[str]]:
    def cells(figures: dict, *formats: tuple[str, str]) -> list[str]:
        return [" / ".join(f"{figures[f'{key}_{r}']:{spec}}" for key, spec in formats) for r in REGIONS]

    return [
        ["mean Dice / HD95 (mm)", *cells(plain, ("dice", ".3f"), ("hd95", ".1f"))],
        ["lesion-wise Dice / HD95 (mm)", *cells(plain, ("lesion_dice", ".3f"), ("lesion_hd95", ".1f"))],
        [
            "lesions matched / false / missed, per case",
            *cells(plain, *((k, ".2f") for k in ("lesion_tp", "lesion_fp", "lesion_fn"))),
        ],
        ["smallest lesion kept, chosen on the same fold (voxels)", *(str(sizes.get(r, 0)) for r in REGIONS)],
        ["with it: mean Dice / HD95 (mm)", *cells(chosen, ("dice", ".3f"), ("hd95", ".1f"))],
        ["with it: lesion-wise Dice / HD95 (mm)", *cells(chosen, ("lesion_dice", ".3f"), ("lesion_hd95", ".1f"))],
        ["with it: false lesions per case", *cells(chosen, ("lesion_fp", ".2f"))],
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_dir", help="the folder `make demo` wrote (DEMO_DIR, default demo)")
    parser.add_argument("--figures", help="write the figures to <FIGURES>.json and <FIGURES>.md (docs/figures/...)")
    args = parser.parse_args(argv)
    demo = os.path.abspath(args.demo_dir)
    summary_file = os.path.join(demo, "evaluate", "summary.json")
    if not os.path.isfile(summary_file):
        parser.error(f"{summary_file} does not exist: run `make demo` first")
    postprocessing_file = os.path.join(demo, "postprocessing.json")
    common = {"dataset_dir": os.path.join(demo, "data"), "postprocessing_file": postprocessing_file}
    bundle("evaluating", EVALUATE, output_dir=os.path.join(demo, "select"), select_postprocessing="true", **common)
    bundle("evaluating", EVALUATE, output_dir=os.path.join(demo, "evaluate_postprocessed"), **common)
    with open(postprocessing_file) as f:
        sizes = json.load(f)["min_lesion_voxels"]
    plain = means(summary_file)
    chosen = means(os.path.join(demo, "evaluate_postprocessed", "summary.json"))
    caption = (
        f"`make demo`: 20 synthetic cases, quick widths, the held-out fold's {plain['cases']} cases, official metrics; "
        "the post-processed rows are optimistic (chosen on the cases they score)"
    )
    table = markdown_table(["held-out fold", *REGIONS], rows(plain, chosen, sizes))
    print(caption)
    print(table)
    if args.figures:
        write_figures(
            args.figures,
            {"evaluation": plain, "min_lesion_voxels": sizes, "post_processed": chosen},
            f"{caption}.\n\n{table}",
        )


if __name__ == "__main__":
    main()
