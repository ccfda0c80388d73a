"""Generators and critics for dcgan | sagan | igan, built from a RunConfig.

Layout for image size S (32 or 64): the generator maps z to 4x4 and doubles the size with
transposed convs, channel count halving each time down to `width` at S/2, then to the image.
The critic mirrors it. Involution blocks (igan) and self-attention (sagan) sit at S/2, where the
channel count is `width` (64 in the seed's Table 2 with `--width 64`).
"""
from __future__ import annotations

import torch
from torch import nn

from stabgan.nn.layers import SelfAttention2d, down_block, involution_block, up_block


def involution_channels(width: int) -> int:
    """Channel count at the involution / attention position."""
    return width


def _widths(width: int, image_size: int) -> list[int]:
    """Channel counts from 4x4 up to S/2, e.g. [4w, 2w, w] for S=32."""
    doublings = (image_size // 4).bit_length() - 1
    return [width * 2 ** (doublings - 1 - i) for i in range(doublings)]


def _middle_blocks(config, generator: bool) -> list[nn.Module]:
    """Involution or attention blocks placed at S/2 for this network, per the config."""
    channels = involution_channels(config.width)
    if config.arch == "sagan":
        return [SelfAttention2d(channels)]
    side = "g" if generator else "d"
    if config.arch == "igan" and config.inv_where in (side, "both"):
        return [involution_block(channels, config.kernel_size, config.groups, config.reduction,
                                 config.norm, generator) for _ in range(config.inv_layers)]
    return []


class Generator(nn.Module):
    """z (B, z_dim) -> image (B, C, S, S) in [-1, 1]."""

    def __init__(self, config, image_channels: int):
        super().__init__()
        widths = _widths(config.width, config.image_size)
        self.z_dim = config.z_dim
        self.project = nn.Sequential(nn.Linear(config.z_dim, widths[0] * 16, bias=False),
                                     nn.Unflatten(1, (widths[0], 4, 4)),
                                     nn.BatchNorm2d(widths[0]), nn.ReLU())
        self.body = nn.Sequential(*[up_block(a, b) for a, b in zip(widths, widths[1:])],
                                  *_middle_blocks(config, generator=True))
        self.to_image = nn.Sequential(nn.ConvTranspose2d(widths[-1], image_channels, 4, 2, 1),
                                      nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.body(self.project(z)))


class Critic(nn.Module):
    """image (B, C, S, S) -> score (B,); no batch norm (the gradient penalty is per sample)."""

    def __init__(self, config, image_channels: int):
        super().__init__()
        widths = _widths(config.width, config.image_size)[::-1]
        self.from_image = nn.Sequential(nn.Conv2d(image_channels, widths[0], 4, 2, 1),
                                        nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*_middle_blocks(config, generator=False),
                                  *[down_block(a, b) for a, b in zip(widths, widths[1:])])
        self.score = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(self.from_image(x))).squeeze(1)


def build_generator(config, image_channels: int) -> Generator:
    """The generator for config.arch."""
    return Generator(config, image_channels)


def build_critic(config, image_channels: int) -> Critic:
    """The critic for config.arch."""
    return Critic(config, image_channels)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def layer_table(config, image_channels: int) -> str:
    """Text table of both networks: layer, type, output shape, parameters (what `inspect` prints)."""
    from stabgan.nn.involution import Involution2d
    lines = []
    for title, net, example in (
            ("generator", build_generator(config, image_channels), torch.zeros(2, config.z_dim)),
            ("critic", build_critic(config, image_channels),
             torch.zeros(2, image_channels, config.image_size, config.image_size))):
        shapes: dict[str, tuple] = {}
        leaves = [(name, m) for name, m in net.named_modules()
                  if name and (not list(m.children()) or isinstance(m, Involution2d))]
        handles = [m.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
            for name, m in leaves]
        net.eval()
        with torch.no_grad():
            net(example)
        for handle in handles:
            handle.remove()
        lines.append(f"{title}: {count_parameters(net):,} parameters")
        lines.append(f"  {'layer':<28}{'type':<20}{'output':<18}{'params':>10}")
        for name, module in leaves:
            if any(name.startswith(inv + ".") for inv, m in leaves if isinstance(m, Involution2d)):
                continue  # counted in its involution layer's row
            lines.append(f"  {name:<28}{type(module).__name__:<20}{str(shapes.get(name, '')):<18}"
                         f"{count_parameters(module):>10,}")
        lines.append("")
    return "\n".join(lines)
