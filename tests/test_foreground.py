"""The head mask of an unstripped scan (``custom_nets.foreground``) on hand-made heads: what it keeps, what it drops,
and that the steps after it (z-scoring, the crop box) then work on the head."""

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import CropForeground, NormalizeIntensity
from scipy import ndimage

from custom_nets.foreground import HeadMaskd, head_mask

SHAPE = (64, 64, 48)


def hand_made_head(seed: int = 0, brain: float = 18, scalp: float = 21) -> tuple[np.ndarray, np.ndarray]:
    """A head (outer radius 24 voxels): a bright scalp from radius ``scalp``, a dark gap (CSF and skull) from
    ``brain``, a brain with a dark ventricle, in Rician-like noisy air; returns the image and the head's true extent
    (the outer sphere)."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in SHAPE], indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    image = np.where(radius < 24, 100.0, 0.0)  # scalp
    image[(radius >= brain) & (radius < scalp)] = 8.0  # skull: dark, close to the air's noise
    image[radius < brain] = 70.0  # brain
    image[np.sqrt(((grid - np.array([4, 0, 0])[:, None, None, None]) ** 2).sum(0)) < 5] = 10.0  # a dark ventricle
    image = np.abs(image + rng.normal(0, 4, SHAPE))  # noise everywhere, the air too (no voxel is exactly 0)
    return image.astype(np.float32), radius < 24


def test_the_mask_is_the_head_with_its_dark_skull_and_ventricle_and_no_air():
    image, head = hand_made_head()
    assert (image > 0).mean() > 0.99  # "non-zero" would be the whole field of view
    mask = head_mask(image[None])
    assert mask[head].mean() > 0.99  # the skull shell and the ventricle are inside
    beyond = ndimage.distance_transform_edt(~head)
    assert beyond[mask].max() <= 3.5  # no air beyond 3 voxels of the head's surface (the smoothing's edge)
    assert abs(int(mask.sum()) - int(head.sum())) / head.sum() < 0.1  # within one voxel of its surface


def test_a_thin_scalp_beyond_a_wide_dark_gap_and_a_mass_in_the_gap_are_head():
    # the brain outweighs the 2-voxel scalp, 6 voxels of dark CSF and bone apart: both, and the gap, are the head
    image, head = hand_made_head(3, brain=16, scalp=22)
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in SHAPE], indexing="ij"))
    mass = np.sqrt(((grid - np.array([0, 0, 18])[:, None, None, None]) ** 2).sum(0)) < 3.5
    image[mass & head] = 160.0  # a dural-based mass in the gap, enhancing
    mask = head_mask(image[None])
    assert mask[head].mean() > 0.99 and mask[mass & head].all()


def test_a_defaced_face_opening_the_skull_to_the_air_leaves_the_brain_whole():
    image, head = hand_made_head(1)
    image[:, :12, :16] = 0.0  # defacing: the face in front of and below the brain set to 0, the skull opened
    mask = head_mask(image[None])
    grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in SHAPE], indexing="ij"))
    brain = np.sqrt((grid**2).sum(0)) < 17
    assert mask[brain].all()  # the dark skull's gap is open to the air in 3D, filled slice by slice
    scalp = head & (image > 50) & ~brain
    assert mask[scalp].mean() > 0.97
    assert not mask[:, :10, :14].any()  # the removed face is not head


def test_the_transform_zeroes_the_air_then_z_scoring_and_the_crop_box_are_the_heads():
    image, head = hand_made_head(2)
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    data = {"image": MetaTensor(torch.from_numpy(image)[None], affine=torch.from_numpy(affine))}
    masked = HeadMaskd("image")(data)["image"]
    assert isinstance(masked, MetaTensor) and np.allclose(masked.affine, affine)
    inside = masked[0].numpy() != 0
    assert inside[head].mean() > 0.99 and ndimage.distance_transform_edt(~head)[inside].max() <= 3.5
    normalized = NormalizeIntensity(nonzero=True)(masked)[0].numpy()
    assert normalized[inside].mean() == pytest.approx(0.0, abs=1e-4)  # z-scored over the head, not the air
    assert normalized[inside].std() == pytest.approx(1.0, abs=1e-3)
    box = CropForeground()(masked).shape[1:]
    assert all(b <= 2 * 24 + 6 for b in box)  # the head's box, not the 64x64x48 field
    unchanged = HeadMaskd("image", enabled=False)(data)["image"]
    assert unchanged is data["image"]
