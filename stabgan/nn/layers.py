"""Shared layers: SAGAN self-attention, the involution block, and up/down conv blocks."""
from __future__ import annotations

import torch
from torch import nn

from stabgan.nn.involution import Involution2d


class SelfAttention2d(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019); gamma starts at 0 so the block starts as identity."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(channels // 8, 1)
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)          # (B, HW, c')
        k = self.key(x).flatten(2)                            # (B, c', HW)
        attention = torch.softmax(q @ k, dim=-1)              # (B, HW, HW)
        v = self.value(x).flatten(2)                          # (B, C, HW)
        out = (v @ attention.transpose(1, 2)).view(b, c, h, w)
        return x + self.gamma * out


def involution_block(channels: int, kernel_size: int, groups: int, reduction: int, norm: str,
                     generator: bool) -> nn.Sequential:
    """Involution then the activation of its network (BN+ReLU in G, LeakyReLU in the critic)."""
    layers: list[nn.Module] = [Involution2d(channels, kernel_size, 1, groups, reduction, norm)]
    if generator:
        layers += [nn.BatchNorm2d(channels), nn.ReLU()]
    else:
        layers.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*layers)


def up_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Transposed conv doubling the size, batch norm, ReLU (DCGAN generator)."""
    return nn.Sequential(nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


def down_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Strided conv halving the size, LeakyReLU; no batch norm, which breaks the per-sample GP."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 4, 2, 1), nn.LeakyReLU(0.2))
