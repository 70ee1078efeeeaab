"""Image encoder: a MONAI SegResNet split into its encoder (image tokens) and decoder (voxel features)."""

from __future__ import annotations

import torch
from monai.networks.nets import SegResNet
from torch import nn


class ImageEncoder(nn.Module):
    """3D encoder-decoder giving a coarse grid of image tokens and full-resolution voxel features.

    The bottleneck of a SegResNet is the image embedding the fusion transformer attends to: one token
    per coarse cell, projected to the fusion width. The decoder's last feature map is what the [SEG]
    and [LMK] queries are dotted with (SAT / LISA style), so masks come out at the input resolution.

    Args:
        init_filters: channels at full resolution (doubled per level).
        blocks_down: residual blocks per encoder level; ``len(blocks_down) - 1`` halvings.
        feature_channels: channels of the per-voxel decoder features.
        width: token width of the fusion transformer.

    Examples::

        >>> enc = ImageEncoder(init_filters=8, blocks_down=(1, 1, 1), feature_channels=8, width=32)
        >>> tokens, features = enc(torch.zeros(2, 1, 32, 32, 32))
        >>> tuple(tokens.shape), tuple(features.shape)
        ((2, 512, 32), (2, 8, 32, 32, 32))
    """

    def __init__(self, *, init_filters: int, blocks_down: tuple[int, ...], feature_channels: int, width: int):
        super().__init__()
        levels = len(blocks_down)
        self.net = SegResNet(spatial_dims=3, init_filters=init_filters, in_channels=1,
                             out_channels=feature_channels, blocks_down=tuple(blocks_down),
                             blocks_up=(1,) * (levels - 1))
        bottleneck_channels = init_filters * 2 ** (levels - 1)
        self.to_tokens = nn.Linear(bottleneck_channels, width)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, I, J, K) windowed image -> tokens (B, N, width), features (B, C, I, J, K).

        N = I*J*K / 8**(levels-1), tokens in row-major order of the coarse grid.
        """
        bottleneck, skips = self.net.encode(image)
        skips.reverse()
        features = self.net.decode(bottleneck, skips)
        tokens = self.to_tokens(bottleneck.flatten(2).transpose(1, 2))
        return tokens, features
