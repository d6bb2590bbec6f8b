"""An independent transcription of the public PyTorch Vox2Vox reference (github.com/chinokenochkan/vox2vox), written
from ../shared/REFERENCE.md section 1, used only as a test oracle for ``variant="reference"``."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class UNetDown(nn.Module):
    def __init__(self, in_size, out_size, normalize=True):
        super().__init__()
        layers = [nn.Conv3d(in_size, out_size, 4, 2, 1, bias=False)]
        if normalize:
            layers.append(nn.InstanceNorm3d(out_size))
        layers.append(nn.LeakyReLU(0.2))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class UNetMid(nn.Module):
    def __init__(self, in_size, out_size, dropout=0.2):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv3d(in_size, out_size, 4, 1, 1, bias=False),
            nn.InstanceNorm3d(out_size),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
        )

    def forward(self, x, skip_input):
        x = self.model(torch.cat((x, skip_input), 1))
        return F.pad(x, (1, 0, 1, 0, 1, 0))


class UNetUp(nn.Module):
    def __init__(self, in_size, out_size):
        super().__init__()
        self.model = nn.Sequential(
            nn.ConvTranspose3d(in_size, out_size, 4, 2, 1, bias=False),
            nn.InstanceNorm3d(out_size),
            nn.ReLU(inplace=True),
        )

    def forward(self, x, skip_input):
        return torch.cat((self.model(x), skip_input), 1)


class GeneratorUNet(nn.Module):
    def __init__(self, in_channels=1, out_channels=1):
        super().__init__()
        self.down1 = UNetDown(in_channels, 64, normalize=False)
        self.down2 = UNetDown(64, 128)
        self.down3 = UNetDown(128, 256)
        self.down4 = UNetDown(256, 512)
        self.mid1 = UNetMid(1024, 512)
        self.mid2 = UNetMid(1024, 512)
        self.mid3 = UNetMid(1024, 512)
        self.mid4 = UNetMid(1024, 256)
        self.up1 = UNetUp(256, 256)
        self.up2 = UNetUp(512, 128)
        self.up3 = UNetUp(256, 64)
        self.final = nn.Sequential(nn.ConvTranspose3d(128, out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        d4 = self.down4(d3)
        m1 = self.mid1(d4, d4)
        m2 = self.mid2(m1, m1)
        m3 = self.mid3(m2, m2)
        m4 = self.mid4(m3, m3)
        u1 = self.up1(m4, d3)
        u2 = self.up2(u1, d2)
        u3 = self.up3(u2, d1)
        return self.final(u3)


class Discriminator(nn.Module):
    def __init__(self, in_channels=1):
        super().__init__()

        def block(in_filters, out_filters, normalization=True):
            layers = [nn.Conv3d(in_filters, out_filters, 4, stride=2, padding=1)]
            if normalization:
                layers.append(nn.InstanceNorm3d(out_filters))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(
            *block(in_channels * 2, 64, normalization=False), *block(64, 128), *block(128, 256), *block(256, 512)
        )
        self.final = nn.Conv3d(512, 1, 4, padding=1, bias=False)

    def forward(self, img_a, img_b):
        return self.final(F.pad(self.model(torch.cat((img_a, img_b), 1)), pad=(1, 0, 1, 0, 1, 0)))
