"""Config lists either make the task the README documents or are refused before any work (exit code 2, the config
named); evaluation and inference never rewrite a model file, whatever order the configs come in."""

import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from custom_nets import Vox2VoxGenerator
from custom_nets.composition import CompositionError, check_composition, parse_command_line
from tests.bundle_helpers import BUNDLE, TINY, make_synthetic_dataset, run_bundle, write_overrides

SEGMENTATION_EVALUATE = ("configs/train.json", "configs/evaluate.json")
SYNTHESIS_EVALUATE = (
    "configs/train.json",
    "configs/synthesis.json",
    "configs/evaluate.json",
    "configs/synthesis_evaluate.json",
)


@pytest.mark.parametrize(
    "run_id, files, message",
    [
        ("evaluating", SEGMENTATION_EVALUATE, None),
        ("evaluating", SYNTHESIS_EVALUATE, None),
        (None, ("configs/inference.json", "configs/quick.json", "my_overrides.json"), None),
        ("training", ("configs/train.json", "configs/synthesis.json", "configs/multi_gpu_train.json"), None),
        # the trap: evaluate, then synthesis
        ("evaluating", ("configs/train.json", "configs/evaluate.json", "configs/synthesis.json"), "synthesis_evaluate"),
        ("evaluating", (*SYNTHESIS_EVALUATE[:2], *SYNTHESIS_EVALUATE[3:1:-1]), "synthesis_evaluate.json is out of"),
        ("training", ("configs/synthesis.json", "configs/train.json"), "synthesis.json is out of order"),
        ("training", SEGMENTATION_EVALUATE, "run id 'training' does not run evaluation; use 'evaluating'"),
        ("evaluating", ("configs/quick.json", *SEGMENTATION_EVALUATE), "quick.json cannot come first"),
        ("evaluating", (*SEGMENTATION_EVALUATE, "configs/multi_gpu_train.json"), "multi_gpu_train.json does not"),
        (None, ("configs/inference.json", "configs/train.json"), "train.json does not belong to inference"),
        ("evaluating", ("configs/evaluate.json",), "train.json is missing"),
        ("training", ("configs/train.json", "configs/train_ensembler.json", "configs/quick.json"), None),
        ("training", ("configs/train_ensembler.json", "configs/train.json"), "train_ensembler.json is out of order"),
        (None, ("configs/inference.json", "configs/train_ensembler.json"), "inference.json does not belong to ensem"),
    ],
)
def test_check_composition_accepts_the_documented_lists_and_names_what_is_wrong(run_id, files, message):
    if message is None:
        assert check_composition(run_id, files) in {"training", "evaluation", "inference", "ensembler training"}
    else:
        with pytest.raises(CompositionError, match=message):
            check_composition(run_id, files)


def test_parse_command_line_reads_run_id_and_options():
    argv = ["x/__main__.py", "run", "evaluating", "--config_file", "['a.json','b.json']", "--fold=2"]
    assert parse_command_line(argv) == ("evaluating", {"config_file": "['a.json','b.json']", "fold": "2"})
    assert parse_command_line(["x", "run", "--config_file", "c.json"]) == (None, {"config_file": "c.json"})
    assert parse_command_line(["pytest"]) is None


# ---- every order of every documented command ---------------------------------------------------------------------

# (run id, configs in their documented order, the model folder it reads, the output that proves it did its work)
DOCUMENTED = [
    ("evaluating", SEGMENTATION_EVALUATE, "seg", "metrics.csv"),
    ("evaluating", SYNTHESIS_EVALUATE, "syn", "metrics.csv"),
    (None, ("configs/inference.json",), "seg", "BraTS2021_00000.nii.gz"),
    (None, ("configs/inference.json", "configs/synthesis_inference.json"), "syn", "BraTS2021_00000.nii.gz"),
    (None, ("configs/inference.json", "configs/missing_modality_inference.json"), "seg", "BraTS2021_00000.nii.gz"),
    ("training", ("configs/train.json", "configs/synthesis.json"), None, None),
    ("training", ("configs/train.json", "configs/train_ensembler.json"), None, None),  # run in test_ensemble
]


def test_every_order_of_every_documented_command_is_accepted_only_as_documented():
    for run_id, configs, _, _ in DOCUMENTED:
        for order in itertools.permutations(configs):
            files = [*order, "configs/quick.json", "my_overrides.json"]
            if order == configs:
                check_composition(run_id, files)
            else:
                with pytest.raises(CompositionError, match=r"configs/\w+\.json .*list \['configs/"):
                    check_composition(run_id, files)


def snapshot(paths):
    return {str(p): (p.read_bytes(), os.stat(p).st_mtime_ns) for p in paths}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("composition")
    data = make_synthetic_dataset(root / "data", num_cases=5, seed=41)
    torch.manual_seed(0)
    seg, syn = root / "models", root / "models" / "synthesis"
    os.makedirs(syn)
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), seg / "model.pt")
    generator = Vox2VoxGenerator(3, 1, channels=TINY["generator_channels"], out_activation="tanh")
    torch.save(generator.state_dict(), syn / "model.pt")
    return {"root": root, "data": data, "seg": seg, "syn": syn, "tiny": write_overrides(root / "tiny.json", epochs=1)}


def refused_orders():
    """Each documented config list in an order that is not documented."""
    return [
        (run_id, configs, order)
        for run_id, configs, _, _ in DOCUMENTED
        for order in itertools.permutations(configs)
        if order != configs
    ]


def test_every_wrong_order_ends_with_an_initialize_that_refuses_it():
    """MONAI merges a config list, a later file's ``initialize`` replacing an earlier one's: in every refused order
    the ``initialize`` that runs, the last one defined, calls the check (one such order runs through ``monai.bundle``
    below)."""
    for _, _, order in refused_orders():
        configs = [json.loads((BUNDLE / name).read_text()) for name in order]
        initialize = [c["initialize"] for c in configs if "initialize" in c][-1]
        assert "$custom_nets.composition.check_command_line()" in initialize, order


def commands(models):
    """(name, run id, config list, overrides, the output that proves the run did its work, documented) for each
    documented command in its order, and one refused order (every order is checked in-process above, and that
    every wrong order's ``initialize`` calls the check)."""
    root, tiny = models["root"], models["tiny"]
    chosen = [(run_id, configs, configs, ckpt, proof) for run_id, configs, ckpt, proof in DOCUMENTED]
    chosen = [c for c in chosen if "configs/train_ensembler.json" not in c[1]]
    run_id, configs, order = next(r for r in refused_orders() if r[2][-1] == "configs/evaluate.json")
    chosen.append((run_id, configs, order, "seg", "metrics.csv"))
    runs = []
    for run_id, configs, order, ckpt, proof in chosen:
        name = f"{run_id}-" + "-".join(os.path.basename(c)[:-5] for c in order)
        out = root / "runs" / name
        overrides = {"dataset_dir": models["data"], "output_dir": out}
        if run_id == "training":
            overrides["ckpt_dir"], proof_file = root / "trained" / name, root / "trained" / name / "model.pt"
        else:
            overrides["ckpt_dir"], proof_file = models[ckpt], out / proof
        if configs[0] == "configs/inference.json":
            overrides["model_files"] = f"['{models[ckpt] / 'model.pt'}']"
        runs.append((name, run_id, [*order, tiny], overrides, proof_file, order == configs))
    return runs  # (an ensemble's inference runs in test_uncertainty and test_ensemble)


def test_documented_commands_run_and_wrong_orders_are_refused_before_any_work(models):
    model_files = [models["seg"] / "model.pt", models["syn"] / "model.pt"]
    before = snapshot(model_files)
    runs = commands(models)
    assert sum(documented for *_, documented in runs) == 6 and len(runs) == 7

    def run(spec):
        name, run_id, configs, overrides, proof, documented = spec
        return spec, run_bundle(run_id, configs, check=False, **overrides)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(run, runs))
    for (name, _, _, _, proof, documented), result in results:
        if documented:
            assert result.returncode == 0, f"{name}:\n{result.stderr[-3000:]}"
            assert proof.exists(), name
        else:
            assert result.returncode == 2, f"{name} exited {result.returncode}:\n{result.stderr[-3000:]}"
            assert "refused: configs/" in result.stderr and "list ['configs/" in result.stderr, name
            assert not proof.exists(), name  # refused before any work
    assert snapshot(model_files) == before
