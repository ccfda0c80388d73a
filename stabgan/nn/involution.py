"""Involution (Li et al., CVPR 2021): a spatial-specific, channel-agnostic kernel per pixel.

`involution(x, kernel, stride)` applies already-generated kernels; `Involution2d` generates them
from the input (reduce -> norm -> ReLU -> span) and applies them. `involution_reference` is the
unfold formulation of the official code, kept for tests and benchmarks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("none", "batch", "spectral", "softmax")


def _check(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> tuple[int, int, int]:
    """Validate shapes; return (groups, kernel_size, padding)."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if kernel.dim() != 6:
        raise ValueError(f"kernel must be (B, G, K, K, H_out, W_out), got shape {tuple(kernel.shape)}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    b, c, h, w = x.shape
    groups, k = kernel.shape[1], kernel.shape[2]
    if k % 2 == 0 or k < 1 or kernel.shape[3] != k:
        raise ValueError(f"kernel size must be odd and square, got {tuple(kernel.shape[2:4])}")
    if c % groups:
        raise ValueError(f"groups={groups} must divide channels={c}")
    h_out, w_out = -(-h // stride), -(-w // stride)
    if kernel.shape[0] != b or kernel.shape[4:] != (h_out, w_out):
        raise ValueError(
            f"kernel shape {tuple(kernel.shape)} does not match x shape {tuple(x.shape)} "
            f"with stride {stride}: expected ({b}, G, K, K, {h_out}, {w_out})")
    return groups, k, (k - 1) // 2


def involution_reference(x: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Involution by unfolding x into a K*K-times larger tensor (the official formulation)."""
    groups, k, pad = _check(x, kernel, stride)
    b, c, h, w = x.shape
    h_out, w_out = kernel.shape[4:]
    # Pad the far edge so that ceil(H / stride) windows fit for odd sizes with stride > 1.
    extra_h = (h_out - 1) * stride + 1 - h
    extra_w = (w_out - 1) * stride + 1 - w
    xp = F.pad(x, (pad, pad + max(extra_w, 0), pad, pad + max(extra_h, 0)))
    cols = F.unfold(xp, k, stride=stride)[..., : h_out * w_out]
    cols = cols.view(b, groups, c // groups, k * k, h_out, w_out)
    out = (kernel.reshape(b, groups, 1, k * k, h_out, w_out) * cols).sum(dim=3)
    return out.reshape(b, c, h_out, w_out)


def involution(x: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Y[b,c,i,j] = sum_{u,v} kernel[b, g(c), u, v, i, j] * X[b, c, i*s+u-p, j*s+v-p]."""
    return involution_reference(x, kernel, stride)


class Involution2d(nn.Module):
    """Involution layer: kernels generated per pixel from the input, shared within channel groups.

    `norm` acts on kernel generation: none (ReLU only), batch (BatchNorm after reduce),
    spectral (spectral norm on reduce and span), softmax (softmax of each kernel over its taps).
    The last generated kernel is kept, detached, in `last_kernel` for probes.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 4,
                 reduction: int = 2, norm: str = "none"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not one of {', '.join(NORMS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd and >= 1")
        if groups < 1 or channels % groups:
            raise ValueError(f"groups={groups} must divide channels={channels}")
        if reduction < 1 or channels // reduction < 1:
            raise ValueError(f"reduction={reduction} must be between 1 and channels={channels}")
        self.channels, self.kernel_size, self.stride = channels, kernel_size, stride
        self.groups, self.reduction, self.norm = groups, reduction, norm
        hidden = channels // reduction
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.span = nn.Conv2d(hidden, kernel_size * kernel_size * groups, 1)
        if norm == "spectral":
            self.reduce = nn.utils.parametrizations.spectral_norm(self.reduce)
            self.span = nn.utils.parametrizations.spectral_norm(self.span)
        self.bn = nn.BatchNorm2d(hidden) if norm == "batch" else nn.Identity()
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity()
        self.last_kernel: torch.Tensor | None = None

    def generate_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """Kernels (B, G, K, K, H_out, W_out) generated from x (or its stride x stride average)."""
        h = self.span(torch.relu(self.bn(self.reduce(self.pool(x)))))
        b, _, h_out, w_out = h.shape
        k = self.kernel_size
        h = h.view(b, self.groups, k * k, h_out, w_out)
        if self.norm == "softmax":
            h = h.softmax(dim=2)
        return h.view(b, self.groups, k, k, h_out, w_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.generate_kernel(x)
        self.last_kernel = kernel.detach()
        return involution(x, kernel, self.stride)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, reduction={self.reduction}, norm={self.norm!r}")
