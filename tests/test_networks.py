import pytest
import torch

from custom_nets import Vox2VoxDiscriminator, Vox2VoxGenerator
from tests.reference_vox2vox import Discriminator, GeneratorUNet

TINY = (4, 8, 16, 32)


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "in_c, out_c, shape, kwargs",
    [
        (4, 4, (32, 32, 32), {}),
        (4, 4, (64, 96, 48), {}),
        (3, 1, (32, 48, 64), {"out_activation": "tanh"}),
        (1, 2, (16, 16, 32), {"channels": (4, 8, 16), "num_bottleneck": 3, "out_activation": None}),
        (2, 3, (32, 32, 32), {"num_bottleneck": 1, "bottleneck_kernel_size": 3, "out_activation": "sigmoid"}),
    ],
)
def test_generator_output_shape(in_c, out_c, shape, kwargs):
    kwargs.setdefault("channels", TINY)
    net = Vox2VoxGenerator(in_c, out_c, **kwargs).eval()
    with torch.no_grad():
        y = net(torch.randn(2, in_c, *shape))
    assert y.shape == (2, out_c, *shape)
    if kwargs.get("out_activation", "softmax") == "softmax":
        torch.testing.assert_close(y.sum(1), torch.ones(2, *shape))


def test_generator_default_widths_take_anisotropic_size():
    net = Vox2VoxGenerator(4, 4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 4, 64, 96, 48)).shape == (1, 4, 64, 96, 48)


@pytest.mark.parametrize("shape", [(100, 100, 100), (32, 32, 40), (16, 32, 32), (32, 32, 8)])
def test_generator_rejects_bad_sizes_before_convolving(shape):
    net = Vox2VoxGenerator(4, 4, channels=TINY)
    with pytest.raises(ValueError, match=r"multiple of 16 and at least 32") as err:
        net(torch.randn(1, 4, *shape))
    assert str(list(shape)) in str(err.value)


def test_generator_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expects input \(batch, 4, D, H, W\), got \[1, 3, 32, 32, 32\]"):
        Vox2VoxGenerator(4, 4, channels=TINY)(torch.randn(1, 3, 32, 32, 32))


def test_discriminator_shapes_and_errors():
    disc = Vox2VoxDiscriminator(condition_channels=4, target_channels=1, channels=TINY)
    out = disc(target=torch.randn(2, 1, 32, 48, 64), condition=torch.randn(2, 4, 32, 48, 64))
    assert out.shape == (2, 1, 2, 3, 4)
    with pytest.raises(ValueError, match="target with 1 and condition with 4 channels, got 4 and 4"):
        disc(target=torch.randn(1, 4, 32, 32, 32), condition=torch.randn(1, 4, 32, 32, 32))
    with pytest.raises(ValueError, match="multiple of 16"):
        disc(target=torch.randn(1, 1, 24, 32, 32), condition=torch.randn(1, 4, 24, 32, 32))


@pytest.mark.parametrize("variant", ["vox2vox", "paper", "reference"])
def test_gradient_reaches_every_parameter(variant):
    gen = Vox2VoxGenerator(2, 3, channels=TINY, variant=variant, use_checkpoint=True)
    disc = Vox2VoxDiscriminator(2, 3, channels=TINY, variant=variant)
    x = torch.randn(1, 2, 48, 48, 48)
    disc(target=gen(x), condition=x).mean().backward()
    for name, module in (("generator", gen), ("discriminator", disc)):
        for pname, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"


@pytest.mark.parametrize("variant", ["vox2vox", "paper", "reference"])
@pytest.mark.parametrize("mode", [True, "network", "levels"])
def test_checkpointing_gives_the_same_outputs_and_gradients_and_scripts(mode, variant):
    torch.manual_seed(0)
    plain = Vox2VoxGenerator(2, 2, channels=TINY, variant=variant)  # dropout 0.2: recomputation must replay it
    ckpt = Vox2VoxGenerator(2, 2, channels=TINY, variant=variant, use_checkpoint=mode)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 2, 48, 48, 48)
    outputs = []
    for net in (plain, ckpt):
        torch.manual_seed(1)
        outputs.append(net(x))
        (outputs[-1] * torch.arange(2.0).view(1, 2, 1, 1, 1)).sum().backward()
    torch.testing.assert_close(outputs[0], outputs[1])
    assert outputs[1].grad_fn is not None
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    torch.testing.assert_close(torch.jit.script(ckpt.eval())(x), plain.eval()(x))


def test_checkpointing_rejects_unknown_mode():
    with pytest.raises(ValueError, match=r"use_checkpoint must be a bool or one of \('none', 'network', 'levels'\)"):
        Vox2VoxGenerator(4, 4, channels=TINY, use_checkpoint="blocks")


def test_discriminator_checkpointing_gives_the_same_gradients_and_scripts():
    torch.manual_seed(0)
    plain = Vox2VoxDiscriminator(4, 1, channels=TINY)
    ckpt = Vox2VoxDiscriminator(4, 1, channels=TINY, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    condition = torch.randn(2, 4, 32, 32, 32)
    fakes = [torch.randn(2, 1, 32, 32, 32, requires_grad=True) for _ in range(2)]
    fakes[1].data.copy_(fakes[0].data)
    for net, fake in zip((plain, ckpt), fakes, strict=True):
        net(target=fake, condition=condition).square().sum().backward()
    torch.testing.assert_close(fakes[0].grad, fakes[1].grad)  # what the generator receives
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    torch.jit.script(ckpt.eval())


@pytest.mark.parametrize("variant", ["vox2vox", "paper", "reference"])
def test_torchscript_matches_eager(variant):
    net = Vox2VoxGenerator(4, 4, channels=TINY, variant=variant).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 4, 48, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-6, rtol=1e-5)


def test_reference_parameter_counts():
    assert n_params(Vox2VoxGenerator(1, 1, variant="reference")) == 137_900_033
    assert n_params(Vox2VoxDiscriminator(1, 1, variant="reference")) == 11_051_968


def test_reference_checkpoints_load_strictly_and_match_outputs():
    torch.manual_seed(0)
    ref_g, ref_d = GeneratorUNet(1, 1).eval(), Discriminator(1).eval()
    gen = Vox2VoxGenerator(1, 1, variant="reference", out_activation="tanh").eval()
    disc = Vox2VoxDiscriminator(1, 1, variant="reference").eval()
    ref_state = ref_g.state_dict()
    assert list(gen.state_dict()) == list(ref_state)
    assert {k: v.shape for k, v in gen.state_dict().items()} == {k: v.shape for k, v in ref_state.items()}
    gen.load_state_dict(ref_state, strict=True)
    disc.load_state_dict(ref_d.state_dict(), strict=True)
    x = torch.randn(1, 1, 48, 48, 48)
    y = torch.rand(1, 1, 48, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(gen(x), ref_g(x))
        torch.testing.assert_close(disc(target=y, condition=x), ref_d(y, x))


def test_state_dict_round_trip_uses_reference_names():
    net = Vox2VoxGenerator(4, 4, channels=TINY)
    keys = list(net.state_dict())
    assert keys[0] == "down1.model.0.weight" and "mid4.model.0.weight" in keys and keys[-1] == "final.0.bias"
    other = Vox2VoxGenerator(4, 4, channels=TINY)
    other.load_state_dict(net.state_dict(), strict=True)
    for a, b in zip(net.parameters(), other.parameters(), strict=True):
        assert torch.equal(a, b)
    wrapped = torch.nn.Sequential(net)  # hooks honour a parent's prefix
    assert "0.down1.model.0.weight" in wrapped.state_dict()
    torch.nn.Sequential(other).load_state_dict(wrapped.state_dict(), strict=True)


def test_eval_mode_is_deterministic_and_train_mode_is_not():
    net = Vox2VoxGenerator(2, 2, channels=TINY, dropout=0.5)
    x = torch.randn(1, 2, 32, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
        net.train()
        assert not torch.equal(net(x), net(x))


def test_weights_follow_pix2pix_init():
    torch.manual_seed(0)
    net = Vox2VoxGenerator(4, 4)
    w = net.bottleneck[1].model[0].weight
    assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.02) < 1e-3
    assert torch.all(net.final[0].bias == 0)


def test_dense_bottleneck_concatenates_input_and_output():
    net = Vox2VoxGenerator(1, 1, channels=TINY, num_bottleneck=3)
    assert [b.model[0].in_channels for b in net.bottleneck] == [32, 64, 64]
    assert net.decoder[0].model[0].in_channels == 64


def test_vox2vox_bottleneck_is_shift_free():
    """A centred impulse stays centred in every feature of the bottleneck's output."""
    net = Vox2VoxGenerator(1, 1, channels=(2, 2), num_bottleneck=3, norm=None, act="relu", dropout=0.0)
    for block in net.bottleneck:
        torch.nn.init.uniform_(block.model[0].weight, 0.5, 1.0)
        w = block.model[0].weight.data
        block.model[0].weight.data = (w + w.flip(2, 3, 4)) / 2  # a symmetric kernel must not move the centre
    h = features = torch.zeros(1, 2, 9, 9, 9)
    h[0, :, 4, 4, 4] = 1.0
    for block in net.bottleneck:
        out = block(h)
        h, features = torch.cat([features, out], 1), out
    coords = torch.stack(torch.meshgrid(*[torch.arange(9.0)] * 3, indexing="ij")).flatten(1)
    for mass in h[0].flatten(1):
        torch.testing.assert_close((coords * mass).sum(1) / mass.sum(), torch.full((3,), 4.0))


def test_even_bottleneck_kernel_alternates_padding():
    net = Vox2VoxGenerator(1, 1, channels=TINY, bottleneck_kernel_size=4)
    assert [b.pad[:2] for b in net.bottleneck] == [[1, 2], [2, 1], [1, 2], [2, 1]]
    assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 1, 32, 32, 32)
    assert sum(p.numel() for p in Vox2VoxGenerator(4, 4, bottleneck_kernel_size=4).parameters()) == 150_519_812


@pytest.mark.parametrize("bad", [{"variant": "pix2pix"}, {"out_activation": "relu"}, {"channels": (8,)}])
def test_bad_constructor_args(bad):
    with pytest.raises(ValueError):
        Vox2VoxGenerator(1, 1, **bad)
