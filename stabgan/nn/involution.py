"""Involution (Li et al., CVPR 2021): a spatial-specific, channel-agnostic kernel per pixel.

`involution(x, kernel, stride)` applies already-generated kernels; `Involution2d` generates them
from the input (reduce -> norm -> ReLU -> span) and applies them. `involution_reference` is the
unfold formulation of the official code, kept for tests and benchmarks.

The fast path never builds the K*K-times larger unfolded tensor. It is three bilinear primitives,
each a custom autograd.Function whose backward is written with the other two, so gradients of any
order exist (the WGAN-GP penalty differentiates through the critic's gradient):

    forward      y  = F(x, k):   y[b,c,i,j]  = sum_{u,v} k[b,g,u,v,i,j] * x[b,c,i*s+u-p, j*s+v-p]
    grad_input   gx = GI(gy, k): the adjoint of F in x
    grad_kernel  gk = GK(gy, x): the adjoint of F in k (sums gy * shifted x over a group's channels)

    dF = GI(gy, k), GK(gy, x);  dGI = F(ggx, k), GK(gy, ggx);  dGK = F(x, ggk), GI(gy, ggk)

Each primitive runs on one of two backends with the same results to rounding:
  cpp    CPU fp32/fp64: a small multithreaded C++ library (`_involution_cpu`), built on first
         use (~3 s of CPU time) and cached; register-tiled loops over zero-padded scratch rows.
  torch  everything else (CUDA, fp16/bf16, or no compiler): shift-and-accumulate over the K*K
         taps with in-place addcmul on channel-group views, accumulating in fp32 for half types.
STABGAN_INVOLUTION_BACKEND=torch forces the torch backend (auto is the default).
"""
from __future__ import annotations

import numbers
import os

import torch
import torch.nn.functional as F
from torch import nn

from stabgan.config import NORMS
from stabgan.nn import _involution_cpu



def _check(x: torch.Tensor, kernel: torch.Tensor, stride: int) -> tuple[int, int, int]:
    """Validate shapes; return (groups, kernel_size, padding)."""
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if kernel.dim() != 6:
        raise ValueError(f"kernel must be (B, G, K, K, H_out, W_out), got shape {tuple(kernel.shape)}")
    if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
        raise ValueError(f"stride must be an int >= 1, got {stride!r}")
    b, c, h, w = x.shape
    groups, k = kernel.shape[1], kernel.shape[2]
    if groups < 1:
        raise ValueError(f"kernel shape {tuple(kernel.shape)} has groups={groups}; need >= 1")
    if k % 2 == 0 or k < 1 or kernel.shape[3] != k:
        raise ValueError(f"kernel size must be odd and square, got {tuple(kernel.shape[2:4])}")
    if c % groups:
        raise ValueError(f"kernel shape {tuple(kernel.shape)} has groups={groups}, which does not "
                         f"divide channels={c} of x shape {tuple(x.shape)}")
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


BACKENDS = ("auto", "cpp", "torch")
_HALF_TYPES = (torch.float16, torch.bfloat16)


def _backend_for(x: torch.Tensor) -> str:
    choice = os.environ.get("STABGAN_INVOLUTION_BACKEND", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"STABGAN_INVOLUTION_BACKEND={choice!r} is not one of {', '.join(BACKENDS)}")
    native = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    if choice == "cpp" and not native:
        raise ValueError(f"the cpp involution backend runs on CPU fp32/fp64 only, got "
                         f"{x.dtype} on {x.device}")
    if choice != "torch" and native and _involution_cpu.load() is not None:
        return "cpp"
    if choice == "cpp":
        raise RuntimeError("STABGAN_INVOLUTION_BACKEND=cpp but the C++ kernel could not be built")
    return "torch"


def _geometry(x_shape, k_shape, stride: int) -> tuple[int, ...]:
    b, c, h, w = x_shape
    return b, c, h, w, k_shape[1], k_shape[2], stride, k_shape[4], k_shape[5]


# Multiply-adds per extra thread (~50 us of work): below this, starting a helper thread costs
# more than it saves.
_GRAIN = 2**18


def _cpp_call(name: str, a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, geom) -> torch.Tensor:
    if out.numel() == 0:
        return out
    lib = _involution_cpu.load()
    suffix = "f32" if out.dtype == torch.float32 else "f64"
    batch, channels, _, _, _, k, _, h_out, w_out = geom
    threads = max(1, min(torch.get_num_threads(), batch * channels * k * k * h_out * w_out // _GRAIN))
    getattr(lib, f"inv_{name}_{suffix}")(a.data_ptr(), b.data_ptr(), out.data_ptr(), *geom, threads)
    return out


def _tap_window(u: int, v: int, h_out: int, w_out: int, stride: int) -> tuple[slice, slice]:
    """Rows/columns of the input padded by p on each side that tap (u, v) reads."""
    return (slice(u, u + (h_out - 1) * stride + 1, stride),
            slice(v, v + (w_out - 1) * stride + 1, stride))


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _HALF_TYPES else dtype


def _prim_forward(x: torch.Tensor, k: torch.Tensor, stride: int) -> torch.Tensor:
    """F(x, k) -> y (B, C, H_out, W_out)."""
    b, c, h, w = x.shape
    g, ks, h_out, w_out = k.shape[1], k.shape[2], k.shape[4], k.shape[5]
    if _backend_for(x) == "cpp":
        x, k = x.contiguous(), k.contiguous()
        out = torch.empty(b, c, h_out, w_out, dtype=x.dtype, device=x.device)
        return _cpp_call("forward", x, k, out, _geometry(x.shape, k.shape, stride))
    acc, p = _acc_dtype(x.dtype), (ks - 1) // 2
    xp = F.pad(x.to(acc), (p, p, p, p)).view(b, g, c // g, h + 2 * p, w + 2 * p)
    kk = k.to(acc).unsqueeze(2)  # (B, G, 1, K, K, H_out, W_out): broadcast over a group's channels
    y = torch.zeros(b, g, c // g, h_out, w_out, dtype=acc, device=x.device)
    for u in range(ks):
        for v in range(ks):
            rows, cols = _tap_window(u, v, h_out, w_out, stride)
            y.addcmul_(xp[..., rows, cols], kk[:, :, :, u, v])
    return y.view(b, c, h_out, w_out).to(x.dtype)


def _prim_grad_input(gy: torch.Tensor, k: torch.Tensor, x_shape: torch.Size,
                     stride: int) -> torch.Tensor:
    """GI(gy, k) -> gx (B, C, H, W): the adjoint of F in x."""
    b, c, h, w = x_shape
    g, ks, h_out, w_out = k.shape[1], k.shape[2], k.shape[4], k.shape[5]
    if _backend_for(gy) == "cpp":
        gy, k = gy.contiguous(), k.contiguous()
        out = torch.empty(x_shape, dtype=gy.dtype, device=gy.device)
        return _cpp_call("grad_input", gy, k, out, _geometry(x_shape, k.shape, stride))
    acc, p = _acc_dtype(gy.dtype), (ks - 1) // 2
    gyv = gy.to(acc).reshape(b, g, c // g, h_out, w_out)
    kk = k.to(acc).unsqueeze(2)
    gxp = torch.zeros(b, g, c // g, h + 2 * p, w + 2 * p, dtype=acc, device=gy.device)
    for u in range(ks):
        for v in range(ks):
            rows, cols = _tap_window(u, v, h_out, w_out, stride)
            gxp[..., rows, cols].addcmul_(gyv, kk[:, :, :, u, v])
    return gxp[..., p:p + h, p:p + w].reshape(b, c, h, w).to(gy.dtype)


def _prim_grad_kernel(gy: torch.Tensor, x: torch.Tensor, k_shape: torch.Size,
                      stride: int) -> torch.Tensor:
    """GK(gy, x) -> gk (B, G, K, K, H_out, W_out): the adjoint of F in k."""
    b, c, h, w = x.shape
    g, ks, h_out, w_out = k_shape[1], k_shape[2], k_shape[4], k_shape[5]
    if _backend_for(x) == "cpp":
        gy, x = gy.contiguous(), x.contiguous()
        out = torch.empty(k_shape, dtype=x.dtype, device=x.device)
        return _cpp_call("grad_kernel", gy, x, out, _geometry(x.shape, k_shape, stride))
    acc, p = _acc_dtype(x.dtype), (ks - 1) // 2
    xp = F.pad(x.to(acc), (p, p, p, p)).view(b, g, c // g, h + 2 * p, w + 2 * p)
    gyv = gy.to(acc).reshape(b, g, c // g, h_out, w_out)
    gk = torch.empty(b, g, ks, ks, h_out, w_out, dtype=acc, device=x.device)
    for u in range(ks):
        for v in range(ks):
            rows, cols = _tap_window(u, v, h_out, w_out, stride)
            torch.sum(gyv * xp[..., rows, cols], dim=2, out=gk[:, :, u, v])
    return gk.to(x.dtype)


class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, stride):
        ctx.save_for_backward(x, k)
        ctx.stride = stride
        return _prim_forward(x, k, stride)

    @staticmethod
    def backward(ctx, gy):
        x, k = ctx.saved_tensors
        need_x, need_k = ctx.needs_input_grad[:2]
        gx = _GradInput.apply(gy, k, x.shape, ctx.stride) if need_x else None
        gk = _GradKernel.apply(gy, x, k.shape, ctx.stride) if need_k else None
        return gx, gk, None


class _GradInput(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, k, x_shape, stride):
        ctx.save_for_backward(gy, k)
        ctx.stride = stride
        return _prim_grad_input(gy, k, x_shape, stride)

    @staticmethod
    def backward(ctx, ggx):
        gy, k = ctx.saved_tensors
        need_gy, need_k = ctx.needs_input_grad[:2]
        g_gy = _Forward.apply(ggx, k, ctx.stride) if need_gy else None
        g_k = _GradKernel.apply(gy, ggx, k.shape, ctx.stride) if need_k else None
        return g_gy, g_k, None, None


class _GradKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, x, k_shape, stride):
        ctx.save_for_backward(gy, x)
        ctx.stride = stride
        return _prim_grad_kernel(gy, x, k_shape, stride)

    @staticmethod
    def backward(ctx, ggk):
        gy, x = ctx.saved_tensors
        need_gy, need_x = ctx.needs_input_grad[:2]
        g_gy = _Forward.apply(x, ggk, ctx.stride) if need_gy else None
        g_x = _GradInput.apply(gy, ggk, x.shape, ctx.stride) if need_x else None
        return g_gy, g_x, None, None


def involution(x: torch.Tensor, kernel: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Y[b,c,i,j] = sum_{u,v} kernel[b, g(c), u, v, i, j] * X[b, c, i*s+u-p, j*s+v-p].

    x (B, C, H, W), kernel (B, G, K, K, ceil(H/s), ceil(W/s)); zero padding p = (K-1)//2. Same
    values and gradients as `involution_reference` without its unfolded buffer; differentiable
    to any order. Mixed dtypes are promoted, as the reference's product would.
    """
    _check(x, kernel, stride)
    if x.device != kernel.device:
        raise ValueError(f"x is on {x.device} but kernel is on {kernel.device}")
    dtype = torch.promote_types(x.dtype, kernel.dtype)
    if not dtype.is_floating_point:
        raise TypeError(f"involution needs floating-point tensors, got {x.dtype} and {kernel.dtype}")
    return _Forward.apply(x.to(dtype), kernel.to(dtype), int(stride))


def eq5_parameter_estimate(channels: int, kernel_size: int, groups: int, reduction: int) -> float:
    """The seed's eq. 5 parameter estimate (C/G + K*K) * C/(R*G) * G of one involution layer.

    It equals C*C/(R*G) + K*K*C/R, not the exact count of `Involution2d` (see `table2_costs`).
    """
    for name, value in (("channels", channels), ("kernel_size", kernel_size), ("groups", groups),
                        ("reduction", reduction)):
        if value < 1:
            raise ValueError(f"{name}={value} must be >= 1")
    c, k, g, r = channels, kernel_size, groups, reduction
    return (c / g + k * k) * c / (r * g) * g


class Involution2d(nn.Module):
    """Involution layer: kernels generated per pixel from the input, shared within channel groups.

    `norm` acts on kernel generation: none (ReLU only), batch (BatchNorm after reduce),
    spectral (spectral norm on reduce and span), softmax (softmax of each kernel over its taps).
    The generated kernels pass through `kernel_tap`, an identity with no parameters, so that a
    forward hook on it sees them (the kernel probe's) without recomputing anything; the probes
    recognise an involution layer by it (probes.layers), without importing this class.
    """

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, groups: int = 4,
                 reduction: int = 2, norm: str = "none"):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm={norm!r} is not one of {', '.join(NORMS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} must be odd and >= 1")
        if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
            raise ValueError(f"stride={stride!r} must be an int >= 1")
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
        self.kernel_tap = nn.Identity()

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
        return involution(x, self.kernel_tap(self.generate_kernel(x)), self.stride)

    def extra_repr(self) -> str:
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"groups={self.groups}, reduction={self.reduction}, norm={self.norm!r}")
