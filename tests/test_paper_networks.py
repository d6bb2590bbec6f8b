"""``variant="paper"``: the authors' TensorFlow networks, layer for layer."""

import pytest
import torch
import torch.nn.functional as F

from custom_nets import Vox2VoxDiscriminator, Vox2VoxGenerator
from custom_nets.networks.paper_blocks import Conv3dSame, PaperBottleneckBlock, tf_same_padding
from tests.bundle_helpers import make_synthetic_dataset, run_bundle, train_tiny, write_overrides
from tests.paper_vox2vox import KerasDiscriminator, KerasGenerator, copy_layer_by_layer

TINY = (4, 8, 16, 32)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_are_the_authors():
    assert n_params(Vox2VoxGenerator(4, 4, variant="paper")) == 150_530_052
    assert n_params(Vox2VoxDiscriminator(4, 4, variant="paper")) == 11_078_337


def test_a_model_written_from_the_layer_list_takes_the_weights_layer_by_layer():
    torch.manual_seed(0)
    gen = Vox2VoxGenerator(4, 4, channels=TINY, variant="paper").eval()
    disc = Vox2VoxDiscriminator(4, 4, channels=TINY, variant="paper").eval()
    keras_gen, keras_disc = KerasGenerator(nf=TINY[0]).eval(), KerasDiscriminator(nf=TINY[0]).eval()
    assert copy_layer_by_layer(gen, keras_gen) == 2 + 2 * 4 + 4 + 4 * 4 + 3 * 4 + 2  # weights and biases
    copy_layer_by_layer(disc, keras_disc)
    x, y = torch.randn(2, 4, 32, 48, 32), torch.rand(2, 4, 32, 48, 32)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), keras_gen(x))
        torch.testing.assert_close(disc(target=y, condition=x), keras_disc(y, x))
    assert disc(target=y, condition=x).shape == (2, 1, 2, 4, 2)  # D/8 - 2 per axis


def test_bottleneck_block_passes_its_raw_convolution_on_unchanged():
    """By hand: the block's output is concat(LeakyReLU_0.3(IN_eps1e-3(y)), y) with y the block's convolution."""
    torch.manual_seed(0)
    block = PaperBottleneckBlock(6, 5)
    torch.nn.init.normal_(block.norm_act[0].weight, 1.0, 0.5)
    torch.nn.init.normal_(block.norm_act[0].bias, 0.0, 0.5)
    x = torch.randn(1, 6, 4, 5, 6)
    out = block(x)
    y = F.conv3d(F.pad(x, [1, 2, 1, 2, 1, 2]), block.conv.weight, block.conv.bias)
    assert out.shape == (1, 10, 4, 5, 6)
    assert torch.equal(out[:, 5:], y)
    mean, var = y.mean(dim=(2, 3, 4), keepdim=True), y.var(dim=(2, 3, 4), unbiased=False, keepdim=True)
    normed = (y - mean) / torch.sqrt(var + 1e-3) * block.norm_act[0].weight.view(1, -1, 1, 1, 1)
    normed = normed + block.norm_act[0].bias.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(out[:, :5], torch.where(normed > 0, normed, 0.3 * normed))


def test_bottleneck_widths_follow_the_concatenations():
    net = Vox2VoxGenerator(4, 4, channels=TINY, variant="paper", num_bottleneck=3)
    assert [b.conv.in_channels for b in net.bottleneck] == [32, 64, 64]
    assert net.decoder[0].model[0].in_channels == 64
    assert net.encoder[-1].model[0].stride == (2, 2, 2) and not any(
        isinstance(m, torch.nn.Dropout) for m in net.encoder[-1].modules()
    )  # the bottleneck's entry: stride 2, norm, act, no dropout


@pytest.mark.parametrize(
    "size, stride, expected",
    [(6, 2, (1, 1)), (7, 2, (1, 2)), (5, 2, (1, 2)), (5, 1, (1, 2)), (1, 1, (1, 2)), (8, 4, (0, 0))],
)
def test_tf_same_padding_table(size, stride, expected):
    assert tf_same_padding(size, 4, stride) == expected


def test_same_padding_on_odd_sizes_puts_the_odd_voxel_after():
    """A kernel that reads only its first tap returns the padded input at the window's start: with one voxel of
    padding before, output i holds input ``stride * i - 1``; the extra voxel after shows in the output size."""
    conv = Conv3dSame(1, 1, 4, stride=2, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0, 0] = 1.0
    x = torch.arange(7 * 6 * 5, dtype=torch.float32).view(1, 1, 7, 6, 5) + 1
    out = conv(x)
    assert out.shape == (1, 1, 4, 3, 3)  # ceil(size / 2), as TensorFlow
    assert out[0, 0, 0, 0, 0] == 0  # the padding before
    assert out[0, 0, 1, 1, 1] == x[0, 0, 1, 1, 1]
    assert out[0, 0, 3, 2, 2] == x[0, 0, 5, 3, 3]
    torch.testing.assert_close(out, F.conv3d(F.pad(x, [1, 2, 1, 1, 1, 2]), conv.weight, stride=2))
    stride_one = Conv3dSame(1, 1, 4, bias=False)
    stride_one.weight.data.copy_(conv.weight.data)
    out = stride_one(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out[..., 1:, 1:, 1:], x[..., :-1, :-1, :-1])  # one before: shifted by one voxel


def test_paper_networks_script_and_match_eager():
    gen = Vox2VoxGenerator(4, 4, channels=TINY, variant="paper").eval()
    disc = Vox2VoxDiscriminator(4, 4, channels=TINY, variant="paper").eval()
    x, y = torch.randn(1, 4, 32, 64, 48), torch.rand(1, 4, 32, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(gen)(x), gen(x), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(torch.jit.script(disc)(y, x), disc(y, x), atol=1e-6, rtol=1e-5)


def test_paper_weights_are_keras_he_normal_and_norms_start_at_identity():
    torch.manual_seed(0)
    net = Vox2VoxGenerator(4, 4, channels=(16, 32, 64, 128), variant="paper")
    w = net.bottleneck[1].conv.weight  # fan-in 256 * 64
    assert abs(w.std().item() - (2 / (256 * 64)) ** 0.5) < 2e-4
    assert w.abs().max() <= 2 * (2 / (256 * 64)) ** 0.5 / 0.8796 + 1e-6  # truncated at two deviations
    assert torch.all(net.bottleneck[1].norm_act[0].weight == 1) and torch.all(net.bottleneck[1].conv.bias == 0)


def test_paper_discriminator_rejects_a_patch_map_it_cannot_make():
    disc = Vox2VoxDiscriminator(4, 4, channels=TINY, variant="paper")
    with pytest.raises(ValueError, match=r"multiple of 8 and at least 24"):
        disc(target=torch.rand(1, 4, 16, 32, 32), condition=torch.randn(1, 4, 16, 32, 32))


def test_network_variant_paper_trains_and_infers_through_the_bundle(tmp_path):
    data = make_synthetic_dataset(tmp_path / "data", num_cases=4, seed=9, num_folds=2)
    tiny = write_overrides(tmp_path / "tiny.json", epochs=1, network_variant="paper")
    train_tiny(tmp_path, data, tiny)
    state = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert "mid1.conv.weight" in state and state["mid1.norm_act.0.weight"].shape == (32,)  # the paper's layout
    run_bundle(
        None,
        ["configs/inference.json", tiny],
        dataset_dir=data,
        ckpt_dir=tmp_path / "models",
        output_dir=tmp_path / "inference",
        save_png="false",
    )
    assert len(list((tmp_path / "inference").glob("*.nii.gz"))) == 4
