"""Generators and critics for dcgan | sagan | igan (images) and mlp (2-D points), built from a
RunConfig (`build_models`).

Layout for image size S (32 or 64): the generator maps z to 4x4 and doubles the size with
transposed convs, the channel count halving each time down to `width` at S/2, then to the image.
The critic mirrors it: a strided conv to S/2 with `width` channels, then halving the size and
doubling the channels down to 4x4, then a linear score.

Involution blocks (igan) and self-attention (sagan) go where `inv_stack` says:
  successive  `inv_layers` blocks back to back at S/2 (where the channel count is `width`);
  stages      one block after each of the last `inv_layers` stages: S/2, then S/4, ... in the
              generator (where SAGAN puts attention), the mirrored S/2, S/4, ... in the critic.
`inv_where` puts involution in the generator, the critic or both; SAGAN has attention in both.
`spectral_norm` puts spectral norm on the backbone convs of G (projection and transposed convs
but the last), of D (every conv but the score), or both, as the SAGAN codebase does.

For 2-D point data (arch mlp) both networks are MLPs of MLP_LAYERS hidden layers of 4·width
units (ReLU in the generator, LeakyReLU in the critic, no normalization), the classic setup of
the unrolled-GAN, VEEGAN and PacGAN mixture benchmarks; `spectral_norm` puts spectral norm on
their hidden layers.

Layers are named as the probes, metrics, TensorBoard and `stabgan inspect` name them
(`probes.layers`): `g.<module path>`, with the i-th involution layer of a network `g.inv<i>`.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from probes.layers import involution_layers, layer_parameters, named_modules
from stabgan.config import POINT_ARCH, stage_widths
from stabgan.nn.involution import Involution2d
from stabgan.nn.layers import (CRITIC_SLOPE, SelfAttention2d, down_block, involution_block,
                               maybe_spectral, up_block)


def _blocks(config, generator: bool, channels: int, count: int) -> list[nn.Module]:
    """`count` involution or attention blocks for one position of this network, per the config."""
    if config.arch == "sagan":
        return [SelfAttention2d(channels) for _ in range(count)]
    side = "g" if generator else "d"
    if config.arch == "igan" and config.inv_where in (side, "both"):
        return [involution_block(channels, config.kernel_size, config.groups, config.reduction,
                                 config.norm, generator, config.inv_block) for _ in range(count)]
    return []


def _per_stage(config, n_stages: int) -> list[int]:
    """Blocks after each stage, the stage nearest S/2 first."""
    layers = config.inv_layers if config.arch in ("igan", "sagan") else 0
    if config.inv_stack == "successive":
        return [layers] + [0] * (n_stages - 1)
    return [1 if i < layers else 0 for i in range(n_stages)]


class Generator(nn.Module):
    """z (B, z_dim) -> image (B, C, S, S) in [-1, 1]."""

    def __init__(self, config, image_channels: int):
        super().__init__()
        widths = stage_widths(config.width, config.image_size)
        spectral = config.spectral_norm in ("g", "both")
        self.z_dim = config.z_dim
        self.project = nn.Sequential(
            maybe_spectral(nn.Linear(config.z_dim, widths[0] * 16, bias=False), spectral),
            nn.Unflatten(1, (widths[0], 4, 4)), nn.BatchNorm2d(widths[0]), nn.ReLU())
        counts = _per_stage(config, len(widths))[::-1]  # stage 4x4 first
        body = _blocks(config, True, widths[0], counts[0])
        for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1):
            body += [up_block(a, b, spectral), *_blocks(config, True, b, counts[i])]
        self.body = nn.Sequential(*body)
        self.to_image = nn.Sequential(nn.ConvTranspose2d(widths[-1], image_channels, 4, 2, 1),
                                      nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_image(self.body(self.project(z)))


class Critic(nn.Module):
    """image (B, C, S, S) -> score (B,); no batch norm in the backbone (the gradient penalty
    is per sample)."""

    def __init__(self, config, image_channels: int):
        super().__init__()
        widths = stage_widths(config.width, config.image_size)[::-1]
        spectral = config.spectral_norm in ("d", "both")
        self.from_image = nn.Sequential(
            maybe_spectral(nn.Conv2d(image_channels, widths[0], 4, 2, 1), spectral),
            nn.LeakyReLU(CRITIC_SLOPE))
        counts = _per_stage(config, len(widths))  # stage S/2 first
        body = _blocks(config, False, widths[0], counts[0])
        for i, (a, b) in enumerate(zip(widths, widths[1:]), start=1):
            body += [down_block(a, b, spectral), *_blocks(config, False, b, counts[i])]
        self.body = nn.Sequential(*body)
        self.score = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(self.from_image(x))).squeeze(1)


MLP_LAYERS = 3  # hidden layers of the point-data MLPs


def _mlp(inputs: int, units: int, activation, spectral: bool) -> nn.Sequential:
    """MLP_LAYERS hidden layers of `units`, each Linear then `activation()`."""
    layers = []
    for i in range(MLP_LAYERS):
        layers += [maybe_spectral(nn.Linear(inputs if i == 0 else units, units), spectral),
                   activation()]
    return nn.Sequential(*layers)


class MlpGenerator(nn.Module):
    """z (B, z_dim) -> point (B, dim), unbounded (the mixtures reach beyond [-1, 1])."""

    def __init__(self, config, dim: int):
        super().__init__()
        self.z_dim = config.z_dim
        self.body = _mlp(config.z_dim, 4 * config.width, nn.ReLU,
                         config.spectral_norm in ("g", "both"))
        self.to_point = nn.Linear(4 * config.width, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.to_point(self.body(z))


class MlpCritic(nn.Module):
    """point (B, dim) -> score (B,)."""

    def __init__(self, config, dim: int):
        super().__init__()
        self.body = _mlp(dim, 4 * config.width, lambda: nn.LeakyReLU(CRITIC_SLOPE),
                         config.spectral_norm in ("d", "both"))
        self.score = nn.Linear(4 * config.width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(x)).squeeze(1)


def build_models(config, channels: int) -> tuple[nn.Module, nn.Module]:
    """(generator, critic) of config.arch: MLPs for 2-D points (channels: their 2 coordinates),
    else the conv nets for images of `channels` channels."""
    if config.arch == POINT_ARCH:
        return MlpGenerator(config, channels), MlpCritic(config, channels)
    return Generator(config, channels), Critic(config, channels)


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def layer_table(config, image_channels: int) -> str:
    """Text table of both networks: layer, type, output shape, parameters (what `inspect`
    prints), with the layer names of metrics and TensorBoard (g.inv0, d.body.1.0, ...)."""
    lines = []
    generator, critic = build_models(config, image_channels)
    data_shape = ((image_channels,) if config.arch == POINT_ARCH
                  else (image_channels, config.image_size, config.image_size))
    for title, prefix, net, example in (
            ("generator", "g", generator, torch.zeros(2, config.z_dim)),
            ("critic", "d", critic, torch.zeros(2, *data_shape))):
        rows = [(name, m) for path, name, m in named_modules(net, prefix) if path and (
                isinstance(m, Involution2d) or not list(m.children())
                or list(m.parameters(recurse=False)) or parametrize.is_parametrized(m))]
        rows = [(name, m) for name, m in rows  # an involution layer's parts are in its row
                if not any(name.startswith(inv + ".") for inv, _ in involution_layers(net, prefix))]
        shapes: dict[str, tuple] = {}
        handles = [m.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
            for name, m in rows]
        net.eval()
        with torch.no_grad():
            net(example)
        for handle in handles:
            handle.remove()
        lines.append(f"{title}: {count_parameters(net):,} parameters")
        lines.append(f"  {'layer':<28}{'type':<24}{'output':<18}{'params':>10}")
        for name, module in rows:
            kind = type(module).__name__.removeprefix("Parametrized") + (
                "+SN" if parametrize.is_parametrized(module) else "")
            params = (count_parameters(module) if isinstance(module, Involution2d)
                      else sum(p.numel() for p in layer_parameters(module)))
            lines.append(f"  {name:<28}{kind:<24}{str(shapes.get(name, '')):<18}{params:>10,}")
        lines.append("")
    return "\n".join(lines)
