"""DICOM cases through the bundle's inference: series written with ITK from synthetic cases (oblique, one on a
coarser grid, mixed in one folder or in sub-folders), read with MONAI's ITKReader onto the FLAIR series' grid, and
written back as NIfTI and as a DICOM Segmentation (highdicom) whose frames match the NIfTI voxel for voxel."""

import glob
import json
import os
import shutil

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.sr.codedict import codes

from custom_nets import Vox2VoxGenerator
from custom_nets.data.conventions import labels_to_classes
from custom_nets.dicom.outputs import read_series
from custom_nets.dicom.series import Series, assign_modalities
from tests.bundle_helpers import TINY, make_synthetic_dataset, run_bundle, write_overrides
from tests.dicom_helpers import dciodvfy_errors, dicom_case, rotation

STANDARD = {"flair": "AX T2 FLAIR", "t1": "AX T1 MPRAGE", "t1ce": "AX T1 POST GD", "t2": "AX T2 FSE"}
OBLIQUE = rotation(15, 10)


def series_of(folder, description):
    """The datasets, in ITK's slice order, of the series of ``folder`` with this description."""
    files = [f for f in glob.glob(os.path.join(folder, "**", "*.dcm"), recursive=True)]
    chosen = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription == description]
    linked = os.path.join(os.path.dirname(folder), "chosen", os.path.basename(folder), description.replace(" ", "_"))
    os.makedirs(linked, exist_ok=True)
    for f in chosen:
        shutil.copy(f, linked)
    return read_series(linked)


@pytest.fixture(scope="module")
def dicom_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicom")
    source = make_synthetic_dataset(root / "nifti", num_cases=2, seed=17, num_folds=2)
    case0 = os.path.join(source, "BraTS2021_00000")
    data = root / "data"
    dicom_case(case0, str(data / "oblique"), STANDARD, OBLIQUE)  # T2 on a grid twice as coarse
    mixed = {"flair": "seq A", "t1": "seq B", "t1ce": "seq C", "t2": "seq D"}
    dicom_case(case0, str(data / "mixed"), mixed, rotation(-20, 0), mixed=True, coarse=())
    (data / "mixed" / "modalities.json").write_text(
        json.dumps({"flair": "seq A", "t1": "2", "t1ce": "seq C", "t2": "4"})
    )
    dicom_case(case0, str(data / "no_t1ce"), {"flair": "FLAIR", "t1": "T1", "t2": "T2", "t2#dwi": "DWI b1000"}, OBLIQUE)
    dicom_case(case0, str(data / "two_t1"), {**STANDARD, "t1#sag": "SAG T1"}, OBLIQUE)
    dicom_case(case0, str(data / "other_frame"), STANDARD, OBLIQUE, frames={"t2": "1.2.826.0.1.3680043.8.498.99"})
    shutil.copytree(os.path.join(source, "BraTS2021_00001"), data / "BraTS2021_00001")  # NIfTI beside DICOM
    torch.manual_seed(0)
    models = root / "models"
    (models / "synthesis" / "flair").mkdir(parents=True)
    torch.save(Vox2VoxGenerator(4, 4, channels=TINY["generator_channels"]).state_dict(), models / "model.pt")
    synthesis = Vox2VoxGenerator(3, 1, channels=TINY["generator_channels"], out_activation="tanh")
    torch.save(synthesis.state_dict(), models / "synthesis" / "flair" / "model.pt")
    tiny = write_overrides(root / "tiny.json")
    out = root / "out"
    result = run_bundle(
        None, ["configs/inference.json", tiny], check=False, dataset_dir=data, ckpt_dir=models, output_dir=out
    )
    return {"root": root, "source": source, "data": data, "models": models, "tiny": tiny, "out": out, "result": result}


def test_dicom_and_nifti_cases_side_by_side_and_bad_series_named(dicom_run):
    out, result = dicom_run["out"], dicom_run["result"]
    assert result.returncode == 1, result.stderr[-3000:]
    written = ["BraTS2021_00001", "mixed", "oblique"]
    expected = [f"{c}{e}" for c in written for e in (".nii.gz", ".png")]
    expected += [f"{c}_{kind}.dcm" for c in ("mixed", "oblique") for kind in ("seg", "sr")]
    assert sorted(os.listdir(out)) == sorted([*expected, "dicom_inputs", "inference_summary.json", "volumes.csv"])
    stderr = result.stderr
    assert "skipped no_t1ce: case no_t1ce: no series for 't1ce' among: 'FLAIR' (series 1," in stderr
    assert "'DWI b1000' (series 4," in stderr and "no_t1ce/modalities.json or change dicom_series_rules" in stderr
    assert "skipped two_t1: case two_t1: 2 series match 't1': 'AX T1 MPRAGE' (series 2," in stderr
    assert "'SAG T1' (series 5," in stderr
    assert "skipped other_frame: case other_frame: the t2 series 'AX T2 FSE'" in stderr
    assert "1.2.826.0.1.3680043.8.498.99" in stderr and "they need registration" in stderr


@pytest.mark.parametrize("case, description", [("oblique", "AX T2 FLAIR"), ("mixed", "seq A")])
def test_segmentation_object_matches_the_nifti_and_the_reference_series(dicom_run, case, description):
    out = dicom_run["out"]
    reference = series_of(str(dicom_run["data"] / case), description)
    labels = nib.load(out / f"{case}.nii.gz")
    # the NIfTI lies on the reference series' grid: its origin is the first slice, its axes the series' (LPS -> RAS)
    lps = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(lps @ labels.affine[:3, 3], reference[0].ImagePositionPatient, atol=1e-3)
    orientation = np.asarray(reference[0].ImageOrientationPatient, dtype=float)
    assert np.allclose(lps @ labels.affine[:3, 0], orientation[:3], atol=1e-5)
    assert np.allclose(lps @ labels.affine[:3, 1], orientation[3:], atol=1e-5)
    assert labels.shape == (reference[0].Columns, reference[0].Rows, len(reference))
    segmentation = hd.seg.segread(out / f"{case}_seg.dcm")
    assert segmentation.ReferencedSeriesSequence[0].SeriesInstanceUID == reference[0].SeriesInstanceUID
    assert segmentation.FrameOfReferenceUID == reference[0].FrameOfReferenceUID
    assert segmentation.StudyInstanceUID == reference[0].StudyInstanceUID
    frames = segmentation.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in reference], combine_segments=True
    )
    classes = labels_to_classes(np.asanyarray(labels.dataobj), "brats2021")  # the dataset's convention
    assert len(np.unique(classes)) > 1
    assert np.array_equal(frames, np.transpose(classes, (2, 1, 0)))  # voxel for voxel
    positions = {
        tuple(np.round(f.PlanePositionSequence[0].ImagePositionPatient, 3))
        for f in segmentation.PerFrameFunctionalGroupsSequence
    }
    assert positions == {tuple(np.round(d.ImagePositionPatient, 3)) for d in reference}
    shared = segmentation.SharedFunctionalGroupsSequence[0]
    assert np.allclose(shared.PlaneOrientationSequence[0].ImageOrientationPatient, orientation)
    assert np.allclose(shared.PixelMeasuresSequence[0].PixelSpacing, reference[0].PixelSpacing)
    segments = [
        (s.SegmentNumber, s.SegmentedPropertyTypeCodeSequence[0].CodeValue) for s in segmentation.SegmentSequence
    ]
    assert segments == [(1, "6574001"), (2, "79654002"), (3, "108369006")]  # SNOMED CT necrosis, edema, neoplasm


def test_measurement_report_holds_the_hand_counted_volumes_and_references_the_segments(dicom_run):
    out = dicom_run["out"]
    labels = nib.load(out / "oblique.nii.gz")
    classes = labels_to_classes(np.asanyarray(labels.dataobj), "brats2021")
    voxel_ml = float(np.prod(labels.header.get_zooms()[:3])) / 1000
    by_hand = {c: round(int((classes == c).sum()) * voxel_ml, 4) for c in (1, 2, 3)}
    regions = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}
    by_hand_regions = {r: round(int(np.isin(classes, cs).sum()) * voxel_ml, 4) for r, cs in regions.items()}
    assert min(by_hand.values()) > 0
    segmentation = pydicom.dcmread(out / "oblique_seg.dcm")
    report = hd.sr.srread(out / "oblique_sr.dcm")
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
    assert report.StudyInstanceUID == segmentation.StudyInstanceUID
    evidence = {i.ReferencedSOPInstanceUID for s in report.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}  # fmt: skip
    assert segmentation.SOPInstanceUID in evidence
    volumetric = report.content.get_volumetric_roi_measurement_groups()
    found = {}
    for group in volumetric:
        reference = group.referenced_segment
        assert reference.referenced_sop_instance_uid == segmentation.SOPInstanceUID
        (number,) = reference.referenced_segment_numbers
        (volume,) = group.get_measurements(name=codes.SCT.Volume)
        assert volume.unit.value == "mL"
        found[number] = volume.value
    assert found == pytest.approx(by_hand, abs=1e-9)
    region_groups = {str(g.tracking_identifier).split(":")[0]: g for g in report.content.get_image_measurement_groups()}
    assert {r: g.get_measurements(name=codes.SCT.Volume)[0].value for r, g in region_groups.items()} == pytest.approx(
        {f"region {r}": v for r, v in by_hand_regions.items()}, abs=1e-9
    )
    written = json.loads((out / "inference_summary.json").read_text())["cases"]["oblique"]["volumes"]
    assert written["WT_ml"] == by_hand_regions["WT"] and written["NCR/NET_ml"] == by_hand[1]


def test_segmentation_and_report_pass_the_dicom_validator(dicom_run):
    for name in ("oblique_seg.dcm", "oblique_sr.dcm", "mixed_sr.dcm"):
        assert dciodvfy_errors(dicom_run["out"] / name) == [], name


def test_series_are_read_onto_the_reference_grid(dicom_run):
    inputs = dicom_run["out"] / "dicom_inputs" / "oblique"
    flair = nib.load(inputs / "oblique_flair.nii.gz")
    original = np.asanyarray(
        nib.load(os.path.join(dicom_run["source"], "BraTS2021_00000", "BraTS2021_00000_flair.nii.gz")).dataobj
    )
    assert np.array_equal(np.asanyarray(flair.dataobj), np.rint(original))  # read back as written
    t2 = nib.load(inputs / "oblique_t2.nii.gz")  # written on 20 slices of 2 mm, resampled onto the 40 of FLAIR
    assert t2.shape == flair.shape and np.allclose(t2.affine, flair.affine)
    real_t2 = np.asanyarray(
        nib.load(os.path.join(dicom_run["source"], "BraTS2021_00000", "BraTS2021_00000_t2.nii.gz")).dataobj
    )
    assert np.corrcoef(np.asanyarray(t2.dataobj)[..., :38].ravel(), real_t2[..., :38].ravel())[0, 1] > 0.9


def test_synthesis_writes_a_derived_mr_series_on_the_first_input_grid(dicom_run, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dicom_run["data"] / "oblique", data / "oblique")
    for path in (data / "oblique" / "series_1").iterdir():  # no FLAIR: the case to synthesize it for
        path.unlink()
    out = tmp_path / "out"
    run_bundle(
        None,
        ["configs/inference.json", "configs/synthesis_inference.json", dicom_run["tiny"]],
        dataset_dir=data,
        ckpt_dir=dicom_run["models"],
        output_dir=out,
        save_png="false",
    )
    t1 = series_of(str(data / "oblique"), "AX T1 MPRAGE")
    derived = read_series(str(out / "oblique_dicom"))
    assert len(derived) == len(t1) and derived[0].ImageType == ["DERIVED", "SECONDARY", "OTHER"]
    assert derived[0].SeriesInstanceUID != t1[0].SeriesInstanceUID and "synthesized" in derived[0].SeriesDescription
    assert derived[0].StudyInstanceUID == t1[0].StudyInstanceUID
    assert derived[0].FrameOfReferenceUID == t1[0].FrameOfReferenceUID
    assert [d.ImagePositionPatient for d in derived] == [d.ImagePositionPatient for d in t1]
    synthesized = np.asanyarray(nib.load(out / "oblique.nii.gz").dataobj)
    frames = np.stack([d.pixel_array for d in derived])
    assert np.array_equal(frames, np.rint(np.transpose(synthesized, (2, 1, 0))).astype(np.int16))
    assert dciodvfy_errors(sorted((out / "oblique_dicom").iterdir())[0]) == []


@pytest.mark.parametrize(
    "description, modality",
    [
        ("AX T2 FLAIR", "flair"),
        ("t2_tirm_tra_dark-fluid FLAIR", "flair"),
        ("AX T1 POST GD", "t1ce"),
        ("T1+C", "t1ce"),
        ("sag T1 C+", "t1ce"),
        ("T1W_CE", "t1ce"),
        ("T1ce", "t1ce"),
        ("AX T1 MPRAGE", "t1"),
        ("t1_se_tra pre", "t1"),
        ("AX T2 FSE", "t2"),
    ],
)
def test_default_rules_name_common_series_descriptions(description, modality, tmp_path):
    series = [Series(f"1.{i}", d, str(i), "f") for i, d in enumerate([description, "DWI b1000", "localizer"])]
    assert assign_modalities("c", str(tmp_path), series, [modality])[modality].description == description


def test_a_radiotherapy_target_is_one_coded_segment_of_a_t1c_series(tmp_path):
    import itk

    from custom_nets.dicom.outputs import write_segmentation
    from custom_nets.dicom.series import find_series
    from tests.dicom_helpers import itk_volume, write_series

    # one post-contrast T1 series of 0.9 x 0.9 x 3 mm voxels (MEN-RT's one sequence, found by the default rules)
    voxels = np.random.default_rng(0).random((20, 24, 8)).astype(np.float32) * 400
    image = itk_volume(voxels, (0.9, 0.9, 3.0), (-9.0, -11.0, -12.0), np.eye(3))
    write_series(image, str(tmp_path / "series"), "AX T1 POST GD 3D", "1.2.826.0.1.3680043.8.498.77", 5)
    chosen = assign_modalities("rt", str(tmp_path), find_series("rt", str(tmp_path)), ["t1c"])
    assert chosen["t1c"].description == "AX T1 POST GD 3D"
    itk.imwrite(image, str(tmp_path / "t1c.nii.gz"))
    reference = nib.load(tmp_path / "t1c.nii.gz")
    target = np.zeros(reference.shape, np.uint8)
    target[5:12, 6:14, 2:5] = 1
    path = write_segmentation(target, reference, str(tmp_path / "series"), str(tmp_path / "rt_seg.dcm"), "rt", "men-rt")
    seg = hd.seg.segread(path)
    assert seg.number_of_segments == 1
    segment = seg.SegmentSequence[0]
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "228791009"  # SCT: GTV (CID 9534)
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "309825002"  # spatial and relational
    assert int(np.asarray(seg.get_volume().array).sum()) == int(target.sum())
    assert dciodvfy_errors(path) == []


def test_a_series_moved_into_another_frame_of_reference_is_registered_and_segmented(dicom_run, tmp_path):
    from custom_nets.data.synthetic import synthesize
    from tests.dicom_helpers import itk_volume, write_series

    source = synthesize(str(tmp_path / "nifti"), num_cases=1, seed=17, shape=(64, 64, 48), progress=False)[0]
    folder = tmp_path / "data" / "moved"
    dicom_case(source, str(folder), {k: v for k, v in STANDARD.items() if k != "t2"}, OBLIQUE, coarse=())
    # T2 from another session: its own frame of reference, the head turned 6 degrees and 5 mm away
    t2 = np.asanyarray(nib.load(glob.glob(os.path.join(source, "*_t2.nii.gz"))[0]).dataobj)
    turned = itk_volume(t2, (1.0, 1.0, 1.0), (-25.0, -40.0, -20.0), rotation(21, 10))
    write_series(turned, str(folder / "series_4"), "AX T2 FSE", "1.2.826.0.1.3680043.8.498.4242", 4, "1.2.3.4242")
    out = tmp_path / "out"
    result = run_bundle(
        None,
        ["configs/inference.json", dicom_run["tiny"]],
        check=False,
        dataset_dir=tmp_path / "data",
        ckpt_dir=dicom_run["models"],
        output_dir=out,
        preprocess="true",
        brain_ml_range="[20,2500]",  # a synthetic brain of 64x64x48 mm
        save_png="false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "inference_summary.json").read_text())["cases"]["moved"]
    done = record["preprocessing"]
    assert done["reference"] == "flair" and done["registration"]["t2"]["converged"]
    assert abs(done["registration"]["t2"]["rotation_degrees"] - 6.0) < 1.0
    assert 20 < done["brain_ml"] < 120 and done["skull_stripped_on"] == "t1"
    flair = series_of(str(folder), "AX T2 FLAIR")
    seg = hd.seg.segread(out / "moved_seg.dcm")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == flair[0].SeriesInstanceUID
    labels = nib.load(out / "moved.nii.gz")
    assert labels.shape == (int(flair[0].Columns), int(flair[0].Rows), len(flair))  # on the reference series
    assert (out / "preprocessed" / "moved" / "moved_brain_mask.nii.gz").exists()
    assert (out / "preprocessed" / "moved" / "moved_t2.tfm").exists()
