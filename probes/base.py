"""Probe: a training hook that reads the step state and returns readings.

A probe overrides only what it needs. `every` (its cadence, in steps) is fixed where it is
registered. `on_step` returns a flat dict of tag -> float or 0-d tensor (scalars) or tag ->
tensor of 1 or more dimensions (histograms); tags follow docs/design.md (`group/name`).

Probes read the `StepState` the loop filled with what it already computed and never recompute
it; they hold no autograd graph (the Monitor detaches every tensor) and no global RNG draw.
Module hooks, when a probe needs them, are registered in `attach` and removed in `detach`.
The helpers below give every probe the same layer names and the same safe weight access.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from probes.readings import Panel


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
    loss_critic: torch.Tensor | None = None   # the critic's loss, penalty included
    loss_critic_adversarial: torch.Tensor | None = None  # ... and without it (the detector's
    #                                    oscillation rule compares it with the loss's chance level)
    loss_generator: torch.Tensor | None = None
    # per penalty term of the objective (probes.objectives: "gp", "r1", "r2"), from the step
    # that last computed it (every step, or every k-th under a lazy penalty):
    penalty_points: Mapping[str, torch.Tensor] | None = None  # where ∇D was taken (x̂, real, fake)
    penalty_grads: Mapping[str, torch.Tensor] | None = None   # ∇D there, same shape
    penalties: Mapping[str, torch.Tensor] | None = None       # weight-free value: gp
    #                                    E[(‖∇D(x̂)‖ − 1)²], r1/r2 E[‖∇D(x)‖²]
    labels: torch.Tensor | None = None        # labels of the real batch, when the data has them
    optimizers: dict[str, Any] | None = None  # {"generator": opt, "critic": opt}
    stream: Any = None                        # the real-batch source (stabgan.data.BatchStream)

    @cached_property
    def grad_norms(self) -> dict[str, torch.Tensor]:
        """Per-sample ‖∇D‖₂ at each penalty term's points, term -> (B,): computed once per step
        for all readers (core, penalty probe)."""
        return {term: grad.flatten(1).norm(dim=1)
                for term, grad in (self.penalty_grads or {}).items()}


class Probe:
    """Base class: every hook is a no-op; subclasses override what they need.

    `panels` declares the plots of the probe's readings (probes.readings.Panel): the Monitor
    writes them into the run directory for the report and derives TensorBoard's
    custom-scalars charts from them.
    """

    name = "probe"
    panels: tuple[Panel, ...] = ()

    def __init__(self, every: int = 10):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"{type(self).__name__}: every={every!r} must be an integer >= 1")
        self.every = every

    @classmethod
    def from_config(cls, config) -> "Probe":
        """The probe as `build_probes` builds it from settings, a RunConfig or
        probes.registry.ProbeSettings (subclasses read their cadence)."""
        return cls()

    @classmethod
    def enabled(cls, config) -> bool:
        """Whether `default`/`all` include the probe under this config (False: switched off)."""
        return True

    def set_objective(self, objective) -> None:
        """Called by the Monitor before `attach` with the objective the loop trains with
        (probes.objectives.Objective), for a probe whose readings depend on it."""

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        """Called once before training; register module hooks here."""

    def prepare(self, state: StepState) -> None:
        """Called the step before each reading (step % every == every - 1), after that step's
        updates; only probes that override it cost anything there (e.g. copying weights)."""

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


def check_probes(probes) -> None:
    """ValueError for a probe the Monitor cannot run: one declaring its plots in `layout`, an
    earlier stabgan's attribute that is no longer read (refused rather than silently dropped)."""
    for probe in probes:
        if getattr(probe, "layout", None):
            raise ValueError(f"{type(probe).__name__}.layout is no longer read: declare its "
                             f"plots as {type(probe).__name__}.panels (probes.Panel)")


def wants_prepare(probe: Probe) -> bool:
    """Whether the probe overrides `prepare` (the Monitor then also wakes the step before)."""
    return type(probe).prepare is not Probe.prepare


@contextmanager
def sampling(generator: nn.Module):
    """Run the generator (or the critic) for a probe: eval mode and no_grad inside (so the
    kernel probe, which keeps grad-enabled passes only, never sees it; nor do batch statistics
    or spectral norm's power iteration move); afterwards every module's train/eval mode is as
    before. Uses no random numbers itself."""
    modules = list(generator.modules())
    modes = [m.training for m in modules]
    generator.eval()
    try:
        with torch.no_grad():
            yield generator
    finally:
        for module, mode in zip(modules, modes):
            module.training = mode


def fixed_noise(probe: Probe, generator: nn.Module, count: int, seed: int,
                z_dim: int | None = None) -> torch.Tensor:
    """A probe's fixed noise: `count` vectors of z_dim (else the generator's `z_dim` attribute)
    drawn once from a private generator seeded with `seed`, so the global RNG is never touched;
    on the generator's device. ValueError naming the probe when neither gives the size."""
    z_dim = z_dim or getattr(generator, "z_dim", None)
    if not z_dim:
        name = type(probe).__name__
        raise ValueError(f"{name}: the generator has no z_dim attribute; pass {name}(z_dim=...) "
                         f"for a generator taking (N, z_dim) noise")
    device = next(generator.parameters()).device
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed)).to(device)


SAMPLE_READINGS = 10  # a run of known length reads its samples at least this many times


def sample_cadence(settings) -> int:
    """Steps between the sample readings (diversity, overfit) when left at 0: 10 × log_every,
    or in a run of known `steps` too short for SAMPLE_READINGS of them, the multiple of
    log_every that gives them. The detector's first band takes four of a tag's points before
    its rules judge any: the default 500-step run, read every 100 steps, left one, and a
    generator stuck from its start could never be told."""
    log_every = settings.log_every
    every = 10 * log_every
    steps = getattr(settings, "steps", None)
    if steps:
        every = min(every, max(log_every, steps // SAMPLE_READINGS // log_every * log_every))
    return every


def weight_of(module: nn.Module) -> torch.Tensor:
    """A layer's stored weight: for a parametrized weight (spectral norm) the *original*, never
    the effective one, because reading that runs the power iteration in train mode and so
    would change training."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight
