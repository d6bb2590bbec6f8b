"""The authors' Keras Vox2Vox (github.com/mdciri/Vox2Vox, ``models.py``) written out in plain PyTorch from its layer
list, one layer per Keras layer in the order Keras builds them, with TensorFlow's 'same' padding spelled out by hand
for the even sizes these networks see (k4 s2: one voxel each side; k4 s1: one before, two after). The tests copy the
bundle's ``variant="paper"`` weights into it layer by layer and compare outputs."""

import torch
import torch.nn as nn
import torch.nn.functional as F

SAME_S2 = [1, 1] * 3
SAME_S1 = [1, 2] * 3


def instance_norm(c):
    return nn.InstanceNorm3d(c, affine=True, eps=1e-3)


class KerasGenerator(nn.Module):
    def __init__(self, in_c=4, out_c=4, nf=64, depth=4):
        super().__init__()
        self.layers = nn.ModuleList()  # parameterised layers in Keras' build order
        widths = [nf * 2**d for d in range(depth)]
        previous = in_c
        for d in range(depth - 1):  # encoder_step
            self.layers.append(nn.Conv3d(previous, widths[d], 4, stride=2))
            if d > 0:
                self.layers.append(instance_norm(widths[d]))
            previous = widths[d]
        bottom = widths[-1]
        self.layers += [nn.Conv3d(previous, bottom, 4, stride=2), instance_norm(bottom)]  # bottlenek's entry
        for i in range(4):
            self.layers += [nn.Conv3d(bottom if i == 0 else 2 * bottom, bottom, 4), instance_norm(bottom)]
        previous = 2 * bottom
        for d in range(depth - 2, -1, -1):  # decoder_step
            self.layers += [nn.ConvTranspose3d(previous, widths[d], 4, stride=2, padding=1), instance_norm(widths[d])]
            previous = 2 * widths[d]
        self.layers.append(nn.ConvTranspose3d(previous, out_c, 4, stride=2, padding=1))
        self.depth = depth

    def forward(self, x):
        layers = iter(self.layers)
        act = nn.LeakyReLU(0.3)
        skips = []
        for d in range(self.depth - 1):
            x = next(layers)(F.pad(x, SAME_S2))
            if d > 0:
                x = next(layers)(x)
            x = F.dropout(act(x), 0.2, self.training)
            skips.append(x)
        x = next(layers)(F.pad(x, SAME_S2))
        x = act(next(layers)(x))
        for _ in range(4):
            y = next(layers)(F.pad(x, SAME_S1))
            x = torch.cat([act(next(layers)(y)), y], dim=1)
        for _ in range(self.depth - 1):
            x = next(layers)(x)
            x = act(next(layers)(x))
            x = F.dropout(torch.cat([x, skips.pop()], dim=1), 0.2, self.training)
        return torch.softmax(next(layers)(x), dim=1)


class KerasDiscriminator(nn.Module):
    def __init__(self, in_c=8, nf=64, depth=3):
        super().__init__()
        self.layers = nn.ModuleList()
        previous = in_c
        for d in range(depth):
            self.layers.append(nn.Conv3d(previous, nf * 2**d, 4, stride=2))
            if d > 0:
                self.layers.append(instance_norm(nf * 2**d))
            previous = nf * 2**d
        self.layers += [nn.Conv3d(previous, nf * 2**depth, 4), instance_norm(nf * 2**depth)]
        self.layers.append(nn.Conv3d(nf * 2**depth, 1, 4))
        self.depth = depth

    def forward(self, target, condition):
        layers = iter(self.layers)
        act = nn.LeakyReLU(0.3)
        x = torch.cat([condition, target], dim=1)  # Concatenate()([inputs, targets])
        for d in range(self.depth):
            x = next(layers)(F.pad(x, SAME_S2))
            if d > 0:
                x = next(layers)(x)
            x = F.dropout(act(x), 0.2, self.training)
        x = next(layers)(F.pad(x, [1] * 6))
        x = act(next(layers)(x))
        return next(layers)(F.pad(x, [1] * 6))


def copy_layer_by_layer(source: nn.Module, keras: nn.Module) -> int:
    """Copies ``source``'s parameters, in registration order, into ``keras``'s layers; returns how many tensors."""
    targets = [p for layer in keras.layers for p in layer.parameters()]
    sources = list(source.parameters())
    assert len(sources) == len(targets), (len(sources), len(targets))
    with torch.no_grad():
        for s, t in zip(sources, targets, strict=True):
            assert s.shape == t.shape, (s.shape, t.shape)
            t.copy_(s)
    return len(targets)
