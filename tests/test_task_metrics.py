"""The official metrics of each of the organisers' six region configs (gli, mets, ped, MenPre, GoAT, MenRT) on hand-made
label maps whose values are worked out by hand below, and the axis order the organisers read the files in.

Geometry used throughout (1 mm voxels): a 4^3 cube has 64 voxels, of which the 2^3 inside are not on its surface
(56 surface voxels); a 2^3 cube is all surface. The cube C shifted by one voxel along x overlaps C by 48 voxels
(Dice 2 * 48 / 128 = 0.75); of each one's 56 surface voxels, 20 (the face the other lacks, 16, and the 4 surface
voxels of its inner face x) are 1 mm from the other's surface, 36 are on it: pooled, 40 ones among 112 distances,
and the 95th percentile (rank 0.95 * 111 = 105.45) is 1 mm.
"""

import json
import math

import nibabel as nib
import numpy as np
import pytest

from custom_nets.data.tasks import load_task
from custom_nets.handlers.brats_metrics import MISS_HD95, BratsMetricsWriter, official_metrics

SHAPE = (24, 24, 24)
SPACING = (1.0, 1.0, 1.0)


def block(volume, x, y, z, value, size=4):
    volume[x : x + size, y : y + size, z : z + size] = value
    return volume


def empty():
    return np.zeros(SHAPE, np.uint8)


def assert_region(row, region, dice, hd95, lesion_dice, lesion_hd95, tp, fp, fn):
    assert row[f"dice_{region}"] == pytest.approx(dice), region
    assert row[f"hd95_{region}"] == pytest.approx(hd95), region
    for name, expected in (("lesion_dice", lesion_dice), ("lesion_hd95", lesion_hd95)):
        if expected is None:  # no lesion on either side: NaN, as the organisers report it
            assert math.isnan(row[f"{name}_{region}"]), (name, region)
        else:
            assert row[f"{name}_{region}"] == pytest.approx(expected), (name, region)
    assert (row[f"lesion_tp_{region}"], row[f"lesion_fp_{region}"], row[f"lesion_fn_{region}"]) == (tp, fp, fn), region


def test_gli_post_treatment_case_with_a_resection_cavity_missed():
    # reference: ET block, SNFH block, and a resection cavity; NETC absent on both sides
    truth = block(block(block(empty(), 2, 2, 2, 3), 10, 2, 2, 2), 2, 12, 2, 4)
    # prediction: ET exact, SNFH shifted by one voxel along x, the cavity missed
    pred = block(block(empty(), 2, 2, 2, 3), 11, 2, 2, 2)
    row = official_metrics(pred, truth, SPACING, "gli")
    assert_region(row, "et", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)
    assert_region(row, "snfh", 0.75, 1.0, 0.75, 1.0, 1, 0, 0)
    assert_region(row, "rc", 0.0, MISS_HD95, 0.0, MISS_HD95, 0, 0, 1)
    assert_region(row, "netc", 1.0, 0.0, None, None, 0, 0, 0)
    assert_region(row, "tc", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)  # tc = {1, 3}: the ET block alone
    # wt = {1, 2, 3}: two lesions (ET exact, SNFH shifted); global Dice 2 * (64 + 48) / 256; pooled surface
    # distances: 224, of which 40 are 1 mm, so the 95th percentile (rank 211.85) is 1 mm; lesion-wise (1 + 0.75) / 2
    # and (0 + 1) / 2
    assert_region(row, "wt", 0.875, 1.0, 0.875, 0.5, 2, 0, 0)
    assert set(load_task("gli").region_names) == {"netc", "snfh", "et", "rc", "tc", "wt"}


def test_ped_case_with_a_cyst_labelled_as_non_enhancing_core():
    # reference: a cyst (CC 3) beside the enhancing tumour (ET 1), one core lesion; edema (ED 4) apart
    truth = block(block(block(empty(), 2, 2, 2, 3), 6, 2, 2, 1), 14, 2, 2, 4)
    pred = block(block(block(empty(), 2, 2, 2, 2), 6, 2, 2, 1), 14, 2, 2, 4)  # the cyst predicted as NETC (2)
    row = official_metrics(pred, truth, SPACING, "ped")
    assert_region(row, "et", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)
    assert_region(row, "cc", 0.0, MISS_HD95, 0.0, MISS_HD95, 0, 0, 1)  # absent from the prediction
    assert_region(row, "netc", 0.0, MISS_HD95, 0.0, MISS_HD95, 0, 1, 0)  # absent from the reference
    assert_region(row, "ed", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)
    assert_region(row, "tc", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)  # tc = {1, 2, 3}: the same 8x4x4 block on both sides
    assert_region(row, "wt", 1.0, 0.0, 1.0, 0.0, 2, 0, 0)  # wt adds the edema block: two lesions, both exact


def test_mets_case_with_several_small_lesions():
    # three 2^3 metastases in the reference; the prediction finds two exactly, misses the third (z 14-15) and adds a
    # false one 4 voxels beyond it (z 18-19); no resection cavity on either side
    truth, pred = empty(), empty()
    for x, y, z in ((2, 2, 2), (14, 2, 2)):
        block(truth, x, y, z, 3, size=2)
        block(pred, x, y, z, 3, size=2)
    block(truth, 2, 14, 14, 3, size=2)
    block(pred, 2, 14, 18, 3, size=2)
    row = official_metrics(pred, truth, SPACING, "mets")
    # global Dice 2 * 16 / (24 + 24); pooled distances: 32 zeros, the missed and the false lesion's 8 voxels each at
    # 3 mm (the facing layers) and 4 mm (the far layers): the 95th percentile (rank 44.65 of 48) is 4 mm. The
    # lesion-wise means run over the matched lesions: both exact.
    for region in ("et", "tc", "wt"):
        assert_region(row, region, 2 / 3, 4.0, 1.0, 0.0, 2, 1, 1)
    assert_region(row, "rc", 1.0, 0.0, None, None, 0, 0, 0)


@pytest.mark.parametrize("task", ["men", "goat"])
def test_menpre_and_goat_case_where_enhancing_tumour_is_missed(task):
    truth = block(block(empty(), 2, 2, 2, 3), 6, 2, 2, 2)  # enhancing mass with edema beside it
    pred = block(block(empty(), 2, 2, 2, 1), 6, 2, 2, 2)  # the mass predicted as non-enhancing core
    row = official_metrics(pred, truth, SPACING, task)
    assert_region(row, "et", 0.0, MISS_HD95, 0.0, MISS_HD95, 0, 0, 1)
    assert_region(row, "tc", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)  # tc = {1, 3}: the same block
    assert_region(row, "wt", 1.0, 0.0, 1.0, 0.0, 1, 0, 0)
    assert load_task(task).region_names == ("et", "tc", "wt")


def test_menrt_as_a_task_of_ones_own(tmp_path):
    # MenRT's one group, gtv = {1}, written as a user's task JSON: no code
    spec = {"name": "menrt", "sequences": ["t1c"], "labels": {"background": 0, "GTV": 1}, "regions": {"gtv": [1]}}
    (tmp_path / "menrt.json").write_text(json.dumps(spec))
    task = load_task(str(tmp_path / "menrt.json"))
    truth = block(block(empty(), 2, 2, 2, 1, size=2), 10, 2, 2, 1, size=2)
    pred = block(empty(), 2, 2, 2, 1, size=2)  # the first target exactly, the second missed
    row = official_metrics(pred, truth, SPACING, task)
    # global Dice 2 * 8 / 24; pooled: 16 zeros, the missed cube's layers x=10 and x=11 at 7 and 8 mm from the found
    # one's x=3 (4 each): the 95th percentile (rank 21.85 of 24) is 8 mm
    assert_region(row, "gtv", 2 / 3, 8.0, 1.0, 0.0, 1, 0, 1)
    assert task.num_classes == 2 and task.sequences == ("t1c",)


def test_shipped_men_rt_on_a_native_anisotropic_grid_is_the_organisers_on_the_files(tmp_path):
    # 0.5 x 0.5 x 3 mm voxels (as BraTS-MEN-RT keeps each scan's own grid): a 4^3 target predicted one voxel off
    # along x, and a 2^3 target missed
    truth = block(block(empty(), 2, 2, 2, 1), 12, 2, 2, 1, size=2)
    pred = block(empty(), 3, 2, 2, 1)
    spacing = (0.5, 0.5, 3.0)
    row = official_metrics(pred, truth, spacing, "men-rt")
    # global Dice 2 * 48 / (72 + 64); the matched lesion's Dice 0.75 (its HD95 one voxel: 1 mm at unit spacing, but
    # the files' (x, y, z) spacing meets SimpleITK's (z, y, x) array, so x counts 3 mm, as the organisers' code has it)
    assert_region(row, "gtv", 2 * 48 / 136, row["hd95_gtv"], 0.75, 3.0, 1, 0, 1)
    pytest.importorskip("SimpleITK")
    from custom_nets.handlers.brats_metrics import official_evaluator

    affine = np.diag([-0.5, -0.5, 3.0, 1.0])
    for name, volume in (("pred", pred), ("truth", truth)):
        nib.save(nib.Nifti1Image(volume, affine), tmp_path / f"{name}.nii.gz")
    on_files = (
        official_evaluator("men-rt")
        .evaluate(str(tmp_path / "pred.nii.gz"), str(tmp_path / "truth.nii.gz"), verbose=False)["gtv"]
        .to_dict()
    )
    for ours, theirs in (("dice", "global_bin_dsc"), ("hd95", "global_bin_hd95"), ("lesion_dice", "sq_dsc")):
        assert row[f"{ours}_gtv"] == pytest.approx(on_files[theirs]), ours
    assert row["lesion_hd95_gtv"] == pytest.approx(on_files["sq_hd95"])
    assert (on_files["tp"], on_files["fp"], on_files["fn"]) == (1, 0, 1)


def pooled_hd95(surface_a: np.ndarray, surface_b: np.ndarray) -> float:
    """The 95th percentile of both directions' surface distances, from explicit voxel coordinates."""
    distances = np.linalg.norm(surface_a[:, None, :] - surface_b[None, :, :], axis=-1)
    return float(np.percentile(np.concatenate([distances.min(1), distances.min(0)]), 95))


def tie_case():
    """A 5^3 reference lesion and two one-voxel predicted lesions inside it, each overlapping it by one voxel (the
    same Dice, 2 / 126): the matching keeps one of them, and which one depends on the array's axis order. P comes
    first when x varies slowest (as nibabel reads the file), Q when z does (as SimpleITK reads it)."""
    truth, pred = empty(), empty()
    truth[3:8, 3:8, 3:8] = 4  # BraTS 2021 ET (4), in every region
    p, q = (3, 5, 7), (5, 5, 3)
    pred[p], pred[q] = 4, 4
    cube = np.argwhere(truth > 0)
    surface = cube[np.any((cube == 3) | (cube == 7), axis=1)]  # the 98 voxels on the cube's faces
    return pred, truth, pooled_hd95(surface, np.array([p])), pooled_hd95(surface, np.array([q]))


def test_lesion_hd95_is_the_organisers_when_predicted_lesions_tie(tmp_path):
    pred, truth, hd95_p, hd95_q = tie_case()
    assert abs(hd95_p - hd95_q) > 0.5  # the two candidates differ, so the choice shows
    row = official_metrics(pred, truth, SPACING, "brats2021")
    assert row["lesion_hd95_ET"] == pytest.approx(hd95_q)  # Q, as on the files; arrays as stored would give P
    assert (row["lesion_tp_ET"], row["lesion_fp_ET"]) == (1, 1)
    # the organisers' way: panoptica given the two file paths, reading them with SimpleITK (LPS files, as BraTS)
    pytest.importorskip("SimpleITK")
    from custom_nets.handlers.brats_metrics import official_evaluator

    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for name, volume in (("pred", pred), ("truth", truth)):
        nib.save(nib.Nifti1Image(volume, affine), tmp_path / f"{name}.nii.gz")
    on_files = official_evaluator("brats2021").evaluate(
        str(tmp_path / "pred.nii.gz"), str(tmp_path / "truth.nii.gz"), verbose=False
    )
    assert on_files["et"].to_dict()["sq_hd95"] == pytest.approx(row["lesion_hd95_ET"])


def test_the_evaluation_writer_reads_the_reference_from_its_file(tmp_path):
    pred, truth, _, hd95_q = tie_case()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    nib.save(nib.Nifti1Image(truth, affine), tmp_path / "case_seg.nii.gz")
    writer = BratsMetricsWriter(str(tmp_path / "out"), task="brats2021")
    row = writer.case_row({"pred_labels": pred[None], "truth_file": str(tmp_path / "case_seg.nii.gz")})
    assert row["lesion_hd95_ET"] == pytest.approx(hd95_q) and list(row) == writer.columns
    with pytest.raises(ValueError, match="case_seg.nii.gz"):
        writer.case_row({"pred_labels": pred[None, :10], "truth_file": str(tmp_path / "case_seg.nii.gz")})
