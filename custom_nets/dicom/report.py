"""The volumes of a DICOM case as a DICOM measurement report (TID 1500, a Comprehensive 3D SR written with
highdicom's ``sr`` module) beside its Segmentation, which PACS and viewers read volumes from.

One measurement group per class (TID 1411, volumetric ROI) references its segment of the SEG and holds its volume;
one group per region of the task (TID 1501: a region is a union of classes, i.e. of several segments, and TID 1411
references one) holds the region's volume. Lesion counts stay in ``volumes.csv``: DICOM has no standard code for
them."""

from __future__ import annotations

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from custom_nets.dicom.outputs import MANUFACTURER, new_instance, read_series, segments, software_version
from custom_nets.utils import atomic_path

MILLILITER = hd.sr.CodedConcept(value="mL", scheme_designator="UCUM", meaning="milliliter")


def _volume(value: float) -> hd.sr.Measurement:
    return hd.sr.Measurement(name=codes.SCT.Volume, value=float(value), unit=MILLILITER)


def measurement_report(volumes: dict, segmentation: pydicom.Dataset, series_dir: str, task) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of ``volumes`` (``custom_nets.volumes.label_volumes`` of the label map the SEG
    ``segmentation`` holds, for ``task``), with the reference series in ``series_dir`` and the SEG as evidence."""
    from custom_nets.data.tasks import load_task

    task = load_task(task)
    algorithm = hd.sr.AlgorithmIdentification(name="Vox2Vox", version=software_version())
    groups = []
    for number, (label, _, concept) in segments(task).items():
        name = task.class_names[number]
        groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"class {name}: {label}"),
                referenced_segment=hd.sr.ReferencedSegment.from_segmentation(segmentation, number),
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                finding_type=concept,
                algorithm_id=algorithm,
                measurements=[_volume(volumes[f"{name}_ml"])],
            )
        )
    for region, classes in zip(task.regions, task.region_classes(), strict=True):
        identifier = f"region {region.name}: " + " + ".join(task.class_names[c] for c in classes)
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=identifier),
                finding_category=codes.SCT.MorphologicallyAbnormalStructure,
                finding_type=codes.SCT.Neoplasm,
                algorithm_id=algorithm,
                measurements=[_volume(volumes[f"{region.name}_ml"])],
            )
        )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="Vox2Vox", manufacturer_name=MANUFACTURER, model_name="Vox2Vox"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    source = read_series(series_dir)
    return hd.sr.Comprehensive3DSR(
        evidence=[*source, segmentation],
        content=report,
        **new_instance(source[0], 9100),
        is_complete=True,
    )


def write_measurement_report(volumes: dict, segmentation_file: str, series_dir: str, path: str, task) -> str:
    """``measurement_report`` of the SEG in ``segmentation_file``, written atomically to ``path``."""
    report = measurement_report(volumes, pydicom.dcmread(segmentation_file), series_dir, task)
    with atomic_path(path) as temporary:
        report.save_as(temporary)
    return path
