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


def test_cross_entropy_from_logits_keeps_its_gradient_where_the_true_class_has_probability_1e_9():
    target = torch.zeros(1, 2, 2, 2, 2)
    target[:, 1] = 1
    logits = torch.zeros(1, 2, 2, 2, 2)
    logits[:, 0] = 9 * torch.log(torch.tensor(10.0))  # p(true class) = 1 / (1 + 1e9) ~ 1e-9
    assert torch.softmax(logits, 1)[0, 1, 0, 0, 0].item() == pytest.approx(1e-9, rel=1e-3)
    x = logits.clone().requires_grad_(True)
    FixedWeightGeneralizedDiceLoss([1.0, 1.0], ce_weight=1.0, softmax=True)(x, target).backward()
    # d CE / d logit of the true class = (p - 1) / voxels: -1/8 per voxel, plus the Dice term's (tiny) share
    assert x.grad[0, 1].max().item() == pytest.approx(-1 / 8, rel=1e-3)
    # on clamped probabilities the same voxels get no cross-entropy gradient at all
    y = logits.clone().requires_grad_(True)
    FixedWeightGeneralizedDiceLoss([1.0, 1.0], ce_weight=1.0)(torch.softmax(y, 1), target).backward()
    assert abs(y.grad[0, 1].max().item()) < 1e-6


def test_logits_and_probabilities_give_the_same_loss_where_both_are_exact():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 4, 4, 4)
    target = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 4, 4, 4)), 4).permute(0, 4, 1, 2, 3).float()
    weights = [0.1, 1.0, 0.3, 1.0]
    on_logits = FixedWeightGeneralizedDiceLoss(weights, ce_weight=1.0, softmax=True)(logits, target)
    on_probabilities = FixedWeightGeneralizedDiceLoss(weights, ce_weight=1.0)(torch.softmax(logits, 1), target)
    torch.testing.assert_close(on_logits, on_probabilities)
