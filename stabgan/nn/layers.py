"""Shared layers: SAGAN self-attention, the involution block, and up/down conv blocks."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from stabgan.config import INV_BLOCKS
from stabgan.nn.involution import Involution2d

CRITIC_SLOPE = 0.2  # the critic's LeakyReLU slope (DCGAN's; the seed's SAGAN codebase uses 0.1)

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


class Residual(nn.Module):
    """x + γ·f(x) with a learned scalar γ starting at 0: the block starts as the identity
    (the form SAGAN gives its attention layers)."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.inner(x)


def involution_block(channels: int, kernel_size: int, groups: int, reduction: int, norm: str,
                     generator: bool, block: str = "bn") -> nn.Module:
    """One involution layer in the form `block` names.

    bn: followed by the activation of its network (BatchNorm+ReLU in G, LeakyReLU in the
    critic); plain: the layer alone, so successive layers feed each other directly;
    residual: x + γ·involution(x), γ initialised to 0.
    """
    if block not in INV_BLOCKS:
        raise ValueError(f"block={block!r} is not one of {', '.join(INV_BLOCKS)}")
    layer = Involution2d(channels, kernel_size, 1, groups, reduction, norm)
    if block == "plain":
        return layer
    if block == "residual":
        return Residual(layer)
    after = [nn.BatchNorm2d(channels), nn.ReLU()] if generator else [nn.LeakyReLU(CRITIC_SLOPE)]
    return nn.Sequential(layer, *after)


def maybe_spectral(module: nn.Module, enabled: bool) -> nn.Module:
    """The module with spectral norm on its weight when enabled (one power iteration per
    forward pass in train mode, as torch's parametrization does)."""
    return spectral_norm(module) if enabled else module


def up_block(in_channels: int, out_channels: int, spectral: bool = False) -> nn.Sequential:
    """Transposed conv doubling the size, batch norm, ReLU (DCGAN generator)."""
    conv = nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False)
    return nn.Sequential(maybe_spectral(conv, spectral), nn.BatchNorm2d(out_channels), nn.ReLU())


def down_block(in_channels: int, out_channels: int, spectral: bool = False) -> nn.Sequential:
    """Strided conv halving the size, LeakyReLU; no batch norm, which breaks the per-sample GP."""
    conv = nn.Conv2d(in_channels, out_channels, 4, 2, 1)
    return nn.Sequential(maybe_spectral(conv, spectral), nn.LeakyReLU(CRITIC_SLOPE))
