import pytest
import torch

from custom_nets.losses import FixedWeightGeneralizedDiceLoss


def test_fixed_weight_generalized_dice_by_hand():
    target = torch.zeros(2, 3, 4, 4, 4)
    target[:, 0] = 1
    target[0, 0, :2], target[0, 1, :2] = 0, 1  # sample 0: half class 1
    pred = torch.full_like(target, 1 / 3)
    weights = [0.5, 1.0, 2.0]
    loss = FixedWeightGeneralizedDiceLoss(weights)(pred, target)
    inter = [(pred[:, c] * target[:, c]).sum() for c in range(3)]
    total = [(pred[:, c] + target[:, c]).sum() for c in range(3)]
    numerator = sum(w * i for w, i in zip(weights, inter, strict=True))
    expected = 1 - 2 * numerator / (sum(w * t for w, t in zip(weights, total, strict=True)) + 1e-5)
    torch.testing.assert_close(loss, expected)
    assert FixedWeightGeneralizedDiceLoss(weights)(target, target).item() == pytest.approx(0.0, abs=1e-6)


def test_absent_class_false_positives_cost_in_proportion():
    """A class absent from the target costs its false positives at its fixed weight, not the rarest class's."""
    target = torch.zeros(1, 2, 8, 8, 8)
    target[:, 0] = 1
    pred = target.clone()
    pred[0, :, 0, 0, 0] = torch.tensor([0.0, 1.0])  # one false positive voxel of the absent class
    loss = FixedWeightGeneralizedDiceLoss([1.0, 1.0])(pred, target).item()
    assert 0 < loss < 0.01


def test_shape_errors():
    loss = FixedWeightGeneralizedDiceLoss([1.0, 1.0])
    with pytest.raises(ValueError, match="must have one shape"):
        loss(torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 4, 4, 5))
    with pytest.raises(ValueError, match="2 class weights for 3 channels"):
        loss(torch.zeros(1, 3, 4, 4, 4), torch.zeros(1, 3, 4, 4, 4))


def test_cross_entropy_term_keeps_a_confidently_wrong_class_learnable():
    target = torch.zeros(1, 2, 4, 4, 4)
    target[:, 1] = 1
    logits = torch.zeros(1, 2, 4, 4, 4)
    logits[:, 0] = 8.0  # confidently wrong: p(class 1) ~ 3e-4
    grads = {}
    for ce in (0.0, 1.0):
        x = logits.clone().requires_grad_(True)
        FixedWeightGeneralizedDiceLoss([1.0, 1.0], ce_weight=ce)(torch.softmax(x, 1), target).backward()
        grads[ce] = x.grad[:, 1].abs().mean().item()
    assert grads[1.0] > 100 * grads[0.0]
