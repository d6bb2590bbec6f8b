"""pix2pix weight initialisation."""

from __future__ import annotations

import torch.nn as nn

_NORMS = (nn.BatchNorm3d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


def init_pix2pix_weights(module: nn.Module, gain: float = 0.02) -> None:
    """Convolution weights ~ N(0, gain), biases 0; affine norm weights ~ N(1, gain), biases 0 (pix2pix 'normal')."""
    for m in module.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORMS) and getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
