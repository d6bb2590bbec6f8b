"""The official BraTS 2023+ metrics (panoptica, the organisers' GoAT/MenPre groups: et {3}, tc {1, 3}, wt {1, 2, 3})
on hand-made volumes whose values are worked out by hand below, next to MONAI's directed HD95."""

import math

import numpy as np
import pytest
import torch

from custom_nets.handlers.brats_metrics import MISS_HD95, case_metrics, official_metrics, region_metrics

SHAPE = (60, 60, 30)
SPACING = (1.0, 1.0, 1.0)
TASK = "goat"  # labels 1 NETC, 2 SNFH, 3 ET


def cube(volume, start, label=3, size=6):
    volume[tuple(slice(s, s + size) for s in start)] = label
    return volume


def empty():
    return np.zeros(SHAPE, np.uint8)


def test_two_reference_lesions_of_which_one_is_found_and_one_false_positive():
    truth = cube(cube(empty(), (10, 10, 10)), (40, 10, 10))  # lesions A and B
    pred = cube(cube(empty(), (10, 10, 10)), (10, 40, 10))  # A exactly, and a false lesion C
    row = official_metrics(pred, truth, SPACING, TASK)
    for region in ("et", "tc", "wt"):  # label 3 belongs to all three regions
        assert (row[f"lesion_tp_{region}"], row[f"lesion_fp_{region}"], row[f"lesion_fn_{region}"]) == (1, 1, 1)
        # the lesion-wise means run over the matched lesions: A, exact
        assert row[f"lesion_dice_{region}"] == 1.0 and row[f"lesion_hd95_{region}"] == 0.0
        # global Dice: A's 216 voxels shared of 432 + 432
        assert row[f"dice_{region}"] == pytest.approx(2 * 216 / (432 + 432))
        # surfaces: 152 voxels per 6^3 cube (216 minus the 4^3 inside). A's surface is at 0 mm from itself in both
        # directions (304 distances); C's (to A's face y=15) and B's (to A's face x=15) are 25 mm (a 36-voxel face),
        # 26..29 mm (rings of 20) and 30 mm (36): pooled, 608 distances, the 95th percentile (rank 576.65) is 30 mm
        assert row[f"hd95_{region}"] == pytest.approx(30.0)
        # NSD at 1 mm: half of each surface lies within 1 mm of the other
        assert row[f"nsd_{region}"] == pytest.approx(0.5)


def test_pooled_and_directed_hd95_differ_for_a_small_far_blob():
    truth = cube(empty(), (10, 10, 10))
    pred = truth.copy()
    pred[25:28, 10:13, 10] = 3  # a 3x3x1 blob 10-12 mm beyond the cube's face x=15: 9 surface voxels
    # pooled: 152 + 152 zero distances and the blob's 9 (10, 11, 12 mm): rank 0.95 * 312 = 296.4 falls on a zero
    assert official_metrics(pred, truth, SPACING, TASK)["hd95_et"] == 0.0
    # MONAI's directed prediction -> reference: 152 zeros and 9 blob distances, rank 0.95 * 160 = 152: the nearest
    # blob voxel, 10 mm; the larger of the two directions is 10 mm
    monai = region_metrics(torch.as_tensor(pred == 3), torch.as_tensor(truth == 3), SPACING)
    assert monai["hd95_max_directed"] == pytest.approx(10.0)
    row = official_metrics(pred, truth, SPACING, TASK)
    assert (row["lesion_tp_et"], row["lesion_fp_et"], row["lesion_fn_et"]) == (1, 1, 0)


def test_exact_match_and_the_empty_conventions():
    truth = cube(cube(cube(empty(), (10, 10, 10), label=2, size=12), (13, 13, 13), label=1), (14, 14, 14), size=3)
    exact = official_metrics(truth.copy(), truth, SPACING, TASK)
    for region in ("et", "tc", "wt"):
        assert exact[f"dice_{region}"] == 1.0 and exact[f"hd95_{region}"] == 0.0 and exact[f"nsd_{region}"] == 1.0
        assert exact[f"lesion_dice_{region}"] == 1.0 and exact[f"lesion_hd95_{region}"] == 0.0
        assert (exact[f"lesion_tp_{region}"], exact[f"lesion_fp_{region}"], exact[f"lesion_fn_{region}"]) == (1, 0, 0)
    no_et = truth.copy()
    no_et[no_et == 3] = 1
    both_empty = official_metrics(no_et.copy(), no_et, SPACING, TASK)  # no enhancing tumour on either side
    assert (both_empty["dice_et"], both_empty["hd95_et"], both_empty["nsd_et"]) == (1.0, 0.0, 1.0)
    assert math.isnan(both_empty["lesion_dice_et"]) and math.isnan(both_empty["lesion_hd95_et"])
    false_et = official_metrics(truth, no_et, SPACING, TASK)  # enhancing voxels predicted on an ET-free case
    assert (false_et["dice_et"], false_et["hd95_et"]) == (0.0, MISS_HD95)
    assert (false_et["lesion_dice_et"], false_et["lesion_hd95_et"], false_et["lesion_fp_et"]) == (0.0, MISS_HD95, 1)


@pytest.mark.parametrize("task, values", [("brats2021", (1, 2, 4)), ("msd", (2, 1, 3)), ("goat", (1, 2, 3))])
def test_every_label_scheme_of_the_same_regions_gives_the_same_metrics(task, values):
    # NCR/NET, edema, enhancing stored as each task stores them; WT/TC/ET are the same voxels in all three
    def stored(core, edema, enhancing):
        volume = cube(cube(empty(), (10, 10, 10), label=edema, size=12), (13, 13, 13), label=core)
        return cube(volume, (14, 14, 14), label=enhancing, size=3)

    truth = stored(*values)
    pred = np.roll(truth, 2, axis=0)
    row = official_metrics(pred, truth, SPACING, task)
    reference = official_metrics(np.roll(stored(1, 2, 3), 2, axis=0), stored(1, 2, 3), SPACING, "goat")
    for metric in ("dice", "hd95", "lesion_dice", "lesion_hd95", "lesion_tp"):
        for region in ("wt", "tc", "et"):
            name = region.upper() if task == "brats2021" else region
            assert row[f"{metric}_{name}"] == reference[f"{metric}_{region}"], (metric, region)


def test_case_metrics_has_every_column_for_every_region():
    truth = cube(empty(), (10, 10, 10))  # ET, in every region
    row = case_metrics(truth, truth.copy(), SPACING, TASK)
    assert len(row) == 11 * 3 and row["dice_wt"] == 1.0 and row["hd95_max_directed_et"] == 0.0
