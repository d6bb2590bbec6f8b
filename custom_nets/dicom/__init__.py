"""DICOM cases for inference (imported by module, so that ITK and highdicom load only when a case is DICOM):

- ``series``: the series of a case folder and which one is which MRI sequence;
- ``convert``: the chosen series read with MONAI's ITKReader onto the reference series' grid, as NIfTI files;
- ``outputs``: a DICOM Segmentation (highdicom) and a derived MR series on the reference series' grid;
- ``report``: the volumes as a TID 1500 measurement report (Comprehensive 3D SR) referencing the Segmentation.
"""
