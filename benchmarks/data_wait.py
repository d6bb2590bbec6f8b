"""The bundle's own training data pipeline at the quick config (the cached deterministic transforms, random crops
and augmentation per iteration, the DataLoader with ``num_workers``) driving the real trainer on a synthetic
dataset (``--data_cases`` synthetic cases unless ``--data_dir`` is given): how much of each iteration is spent waiting
for data. The first epoch is a warm-up."""

from __future__ import annotations

import os
import time

from common import BUNDLE, run_child
from figures import markdown_table


def data_pipeline(args, queue):
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
        synthesize(data_dir, num_cases=args.data_cases, seed=0, progress=False)
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


def measure(args) -> dict:
    return run_child(data_pipeline, args)


def report(data: dict) -> str:
    share = data["data_wait_ms"] / data["iteration_ms"]
    print(
        f"\ndata pipeline at the quick config ({data['num_workers']} workers, {data['iterations']} iterations): "
        f"data wait {data['data_wait_ms']:.1f} ms of {data['iteration_ms']:.1f} ms per iteration ({share:.1%})"
    )
    header = ["quick config, synthetic cases", "loader workers", "timed iterations", "data wait (ms)", "iteration (ms)"]
    row = [
        "data wait per iteration",
        data["num_workers"],
        data["iterations"],
        f"{data['data_wait_ms']:.1f} ({share:.1%})",
        f"{data['iteration_ms']:.1f}",
    ]
    return markdown_table(header, [row])
