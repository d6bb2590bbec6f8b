"""Rigid registration of one sequence onto another with ITK's own framework: a versor rigid transform (3 rotations, 3
translations) that maximises Mattes mutual information (sequences of different contrast), three resolution levels,
started from the two images' centres of mass, so that series of one study in different frames of reference (a
session apart, a re-positioned head) are found as well as small motion between sequences."""

from __future__ import annotations

import math
from dataclasses import dataclass

import itk
import numpy as np

FloatImage = itk.Image[itk.F, 3]
Rigid = itk.VersorRigid3DTransform[itk.D]


@dataclass
class Registration:
    """The transform (maps points of the fixed image's space to the moving image's, as ITK's resampling takes it)
    and what the optimiser reports."""

    transform: itk.Transform
    metric: float  # Mattes mutual information, negated: lower is better
    initial_metric: float
    iterations: int
    stop: str

    @property
    def rotation_degrees(self) -> float:
        """The rotation's angle, degrees."""
        versor = np.asarray(self.transform.GetVersor().GetRight(), dtype=float)
        return math.degrees(2 * math.asin(min(1.0, float(np.linalg.norm(versor)))))

    @property
    def translation_mm(self) -> list[float]:
        return [float(t) for t in self.transform.GetTranslation()]

    @property
    def converged(self) -> bool:
        """The optimiser stopped on its own tolerance, not on the iteration limit, and the match improved."""
        return "Maximum number of iterations" not in self.stop and self.metric <= self.initial_metric

    def record(self) -> dict:
        return {
            "rotation_degrees": round(self.rotation_degrees, 3),
            "translation_mm": [round(t, 3) for t in self.translation_mm],
            "mutual_information": round(-self.metric, 5),
            "initial_mutual_information": round(-self.initial_metric, 5),
            "iterations": self.iterations,
            "stop": self.stop,
            "converged": self.converged,
        }


def as_float(image: itk.Image) -> itk.Image:
    return image if isinstance(image, FloatImage) else itk.cast_image_filter(image, ttype=(type(image), FloatImage))


def _metric():
    metric = itk.MattesMutualInformationImageToImageMetricv4[FloatImage, FloatImage].New()
    metric.SetNumberOfHistogramBins(32)
    return metric


def rigid_register(
    fixed: itk.Image,
    moving: itk.Image,
    iterations: int = 200,
    samples: int = 50_000,
    seed: int = 0,
) -> Registration:
    """The rigid transform that puts ``moving`` on ``fixed`` (both any ITK 3D images; physical space).

    Args:
        fixed: the reference sequence.
        moving: the sequence to align.
        iterations: the optimiser's limit per resolution level.
        samples: about how many of the fixed image's voxels the metric samples at each level (random, ``seed``: the
            same inputs give the same transform); all of a level's voxels when it has fewer. A rigid transform has 6
            parameters: 50,000 samples fit it as well as 9 million, in a fraction of the time.
        seed: the sampling's seed.
    """
    fixed, moving = as_float(fixed), as_float(moving)
    initial = Rigid.New()
    initializer = itk.CenteredTransformInitializer[Rigid, FloatImage, FloatImage].New(
        Transform=initial, FixedImage=fixed, MovingImage=moving
    )
    initializer.MomentsOn()
    initializer.InitializeTransform()
    voxels = float(np.prod(fixed.GetLargestPossibleRegion().GetSize()))
    shrink = [4, 2, 1]
    sampling = [min(1.0, samples * f**3 / voxels) for f in shrink]
    metric = _metric()
    optimizer = itk.RegularStepGradientDescentOptimizerv4[itk.D].New(
        LearningRate=2.0,
        MinimumStepLength=1e-3,
        RelaxationFactor=0.5,
        NumberOfIterations=int(iterations),
        GradientMagnitudeTolerance=1e-6,
    )
    scales = itk.RegistrationParameterScalesFromPhysicalShift[type(metric)].New(Metric=metric)
    optimizer.SetScalesEstimator(scales)
    registration = itk.ImageRegistrationMethodv4[FloatImage, FloatImage].New(
        FixedImage=fixed, MovingImage=moving, Metric=metric, Optimizer=optimizer, InitialTransform=initial
    )
    registration.SetNumberOfLevels(3)
    registration.SetShrinkFactorsPerLevel(shrink)
    registration.SetSmoothingSigmasPerLevel([2.0, 1.0, 0.0])
    registration.SetMetricSamplingStrategy(itk.ImageRegistrationMethodv4Enums.MetricSamplingStrategy_RANDOM)
    registration.SetMetricSamplingPercentagePerLevel(sampling)
    registration.MetricSamplingReinitializeSeed(int(seed))
    registration.InPlaceOn()
    start = _value(fixed, moving, initial)
    registration.Update()
    found = registration.GetModifiableTransform()
    rigid = Rigid.New()
    rigid.SetFixedParameters(found.GetFixedParameters())
    rigid.SetParameters(found.GetParameters())
    return Registration(
        transform=rigid,
        metric=_value(fixed, moving, rigid),
        initial_metric=start,
        iterations=int(optimizer.GetCurrentIteration()),
        stop=str(optimizer.GetStopConditionDescription()),
    )


def _value(fixed: itk.Image, moving: itk.Image, transform) -> float:
    """The metric of ``moving`` through ``transform`` on all of ``fixed`` (the same measure before and after)."""
    metric = _metric()
    metric.SetFixedImage(fixed)
    metric.SetMovingImage(moving)
    metric.SetMovingTransform(transform)
    metric.Initialize()
    return float(metric.GetValue())


def resample_onto(moving: itk.Image, fixed: itk.Image, transform=None) -> itk.Image:
    """``moving`` on ``fixed``'s grid through ``transform`` (identity when None): linear interpolation, 0 outside."""
    moving = as_float(moving)
    interpolator = itk.LinearInterpolateImageFunction[FloatImage, itk.D].New()
    kwargs = {} if transform is None else {"transform": transform}
    return itk.resample_image_filter(
        moving,
        reference_image=fixed,
        use_reference_image=True,
        interpolator=interpolator,
        default_pixel_value=0,
        **kwargs,
    )
