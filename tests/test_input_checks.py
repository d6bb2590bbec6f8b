"""The guard against silent nonsense: inputs that are not skull-stripped or not co-registered are refused, by name,
before the network runs; every case the project synthesizes passes. (The guard in a batch run: test_batch_faults.)"""

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from custom_nets.data.synthetic import synthesize_case
from custom_nets.input_checks import CheckInputsd, InputCheckError, input_problem

SEQUENCES = ["flair", "t1", "t1ce", "t2"]


def stacked(seed=0, index=1, shape=(64, 64, 48)):
    images, _ = synthesize_case(seed, index, shape)
    return np.stack([images[s] for s in SEQUENCES])


def with_shell(image, thickness=5):
    """A bright shell around the brain in every sequence: a stand-in for skull and scalp."""
    brain = (image != 0).any(0)
    shell = ndimage.binary_dilation(brain, iterations=thickness) & ~brain
    shelled = image.copy()
    for channel in shelled:
        channel[shell] = 1.2 * np.percentile(channel[brain], 99)
    return shelled


def misaligned(image):
    """T2 moved 5 voxels (mm) and turned 6 degrees; FLAIR turned 3 degrees."""
    moved = image.copy()
    moved[3] = ndimage.rotate(ndimage.shift(image[3], (5, 0, 0), order=1), 6, axes=(0, 1), reshape=False, order=1)
    moved[0] = ndimage.rotate(image[0], 3, axes=(0, 1), reshape=False, order=1)
    return moved


@pytest.mark.parametrize("shape", [(64, 64, 48), (40, 48, 32)])
def test_every_synthetic_case_passes(shape):
    for index in range(4):
        assert input_problem(stacked(3, index, shape), SEQUENCES) is None


def test_unstripped_and_misaligned_inputs_are_named():
    image = stacked()
    padded = np.pad(image, [(0, 0)] + [(8, 8)] * 3)  # room around the shell: the rim check, not the border's
    problem, channels = input_problem(with_shell(padded), SEQUENCES)
    assert "input check 'skull-stripped' failed: the outer 3 voxels" in problem and channels == [0, 1, 2, 3]
    head = np.where(image == 0, 5.0, image)  # air and scalp non-zero up to the grid's border
    problem, _ = input_problem(head, SEQUENCES)
    assert "input check 'skull-stripped' failed: 100.0% of the grid's border voxels are non-zero" in problem
    problem, channels = input_problem(misaligned(image), SEQUENCES)
    assert "input check 'co-registered' failed: the outline of t2's non-zero voxels lies 4.5 mm from flair's" in problem
    assert channels == [0, 3]
    with pytest.raises(InputCheckError, match="skull-strip and co-register the sequences first: set preprocess true"):
        CheckInputsd("image", task="brats2021")({"image": torch.from_numpy(with_shell(image))})
    assert CheckInputsd("image", task="brats2021", enabled=False)({"image": with_shell(image)})


def test_a_task_of_unstripped_heads_is_not_refused_for_it(tmp_path):
    task = tmp_path / "heads.json"
    task.write_text(
        json.dumps(
            {
                "name": "heads",
                "sequences": ["t1c"],
                "labels": {"background": 0, "gtv": 1},
                "regions": {"gtv": [1]},
                "skull_stripped": False,
            }
        )
    )
    head = np.where(stacked()[2:3] == 0, 5.0, stacked()[2:3])
    assert CheckInputsd("image", task=str(task))({"image": head})["image"] is head
    with pytest.raises(InputCheckError):
        CheckInputsd("image", sequences=["t1c"])({"image": head})  # a skull-stripped task refuses it


def test_men_rt_heads_pass_the_guard_that_refuses_them_as_brains():
    for index in range(3):
        images, _ = synthesize_case(5, index, (48, 48, 40), "men-rt")
        head = images["t1c"][None]
        assert CheckInputsd("image", task="men-rt")({"image": head})["image"] is head
        with pytest.raises(InputCheckError, match="skull-stripped"):
            CheckInputsd("image", sequences=["t1c"])({"image": head})
