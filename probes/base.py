"""Probe: a training hook that reads the step state and returns readings.

A probe overrides only what it needs. `every` (its cadence, in steps) is fixed where it is
registered. `on_step` returns a flat dict of tag -> float (scalars) or tag -> Tensor
(histograms); tags follow DESIGN.md (`group/name`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class StepState:
    """What the training loop already computed this step; probes read it and never recompute it.

    Tensors are detached. Fields a loop does not provide are None; a probe that needs one skips.
    """
    step: int
    generator: nn.Module
    critic: nn.Module
    real: torch.Tensor | None = None          # real batch the critic saw
    fake: torch.Tensor | None = None          # generated batch the critic saw
    d_real: torch.Tensor | None = None        # critic scores of real, (B,)
    d_fake: torch.Tensor | None = None        # critic scores of fake, (B,)
    x_hat: torch.Tensor | None = None         # gradient-penalty interpolates
    grad_x_hat: torch.Tensor | None = None    # ∇D(x̂), same shape as x_hat
    loss_critic: torch.Tensor | None = None
    loss_generator: torch.Tensor | None = None
    gp_penalty: torch.Tensor | None = None    # λ-free mean of (‖∇D(x̂)‖ − 1)²
    labels: torch.Tensor | None = None        # labels of the real batch, when the data has them
    optimizers: dict[str, Any] | None = None  # {"generator": opt, "critic": opt}


class Probe:
    """Base class: every hook is a no-op; subclasses override what they need."""

    name = "probe"

    def __init__(self, every: int = 10):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"{type(self).__name__}: every={every!r} must be an integer >= 1")
        self.every = every

    @classmethod
    def from_config(cls, config) -> "Probe":
        """The probe as `--probes` builds it from a RunConfig (subclasses read their cadence)."""
        return cls()

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        """Called once before training; register module hooks here."""

    def on_step(self, state: StepState) -> dict[str, float | torch.Tensor]:
        """Readings for this step (called when step % every == 0)."""
        return {}

    def detach(self) -> None:
        """Called once after training; remove module hooks here."""

    def state_dict(self) -> dict:
        """What the probe needs to resume exactly (e.g. a running average)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what state_dict returned."""
