"""The torch device a run asks for (auto | cpu | cuda).

Torch is imported inside the functions, and `check_device` imports it only for cuda, so a sweep
checks its points' devices while planning without loading torch for auto or cpu.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from stabgan.config import ConfigError

if TYPE_CHECKING:
    import torch


def check_device(name: str) -> None:
    """ConfigError when the device is not on this machine: cuda without a GPU (auto and cpu
    always are)."""
    if name == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("device", "device='cuda' but torch sees no CUDA GPU (use auto or cpu)")


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an error."""
    import torch
    check_device(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
