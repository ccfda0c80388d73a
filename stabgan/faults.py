"""Fault injection for validating the collapse detectors on real runs (not measuring probes).

Each fault acts at the end of step `at`, after that step's update, so the first step it changes
is `at + 1` and its ground-truth onset is `at`. Faults are probes, so they work in any loop the
Monitor watches; `stabgan run --fault NAME@STEP[:VALUE]` (stabgan.config.parse_fault) adds one
to the run's probes. What a fault changes lives in the weights, the optimizers or the probe's
own state or the data stream's, so a resumed run goes on as an uninterrupted one would.
"""
from __future__ import annotations

import abc

import torch
from torch import nn

from probes.base import Probe, StepState
from probes.layers import involution_layers
from stabgan.config import parse_fault


class Fault(Probe, abc.ABC):
    """A probe that changes training once, at the end of step `at` (every step is watched)."""

    name = "fault"

    def __init__(self, at: int):
        super().__init__(every=1)
        if not isinstance(at, int) or at < 1:
            raise ValueError(f"{type(self).__name__}: at={at!r} must be an integer >= 1")
        self.at = at

    def on_step(self, state: StepState) -> dict:
        if state.step == self.at:
            self.inject(state)
        return {}

    @abc.abstractmethod
    def inject(self, state: StepState) -> None:
        """Break something, once."""


class InjectNaN(Fault):
    """Writes NaN into the generator's first weight (a forced `nan` collapse)."""

    name = "inject_nan"

    def inject(self, state):
        with torch.no_grad():
            next(state.generator.parameters()).mul_(float("nan"))


class RaiseLearningRates(Fault):
    """Multiplies both optimizers' learning rates by `factor`: a schedule bug part-way through
    (the optimizers the loop passes in StepState.optimizers)."""

    name = "raise_lr"

    def __init__(self, at: int, factor: float):
        super().__init__(at)
        self.factor = factor

    def inject(self, state):
        if not state.optimizers:
            raise ValueError("RaiseLearningRates needs the loop's optimizers in "
                             "Monitor.step(..., optimizers={'generator': opt_g, 'critic': opt_d})")
        for optimizer in state.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] *= self.factor


class SaturateKernels(Fault):
    """Multiplies the span conv (weight and bias) of every involution layer of G by `factor`,
    so the kernel logits grow by it: with softmax kernels the taps saturate towards one-hot."""

    name = "saturate_kernels"

    def __init__(self, at: int, factor: float):
        super().__init__(at)
        self.factor = factor
        self.layers: list[nn.Module] = []

    def attach(self, generator, critic):
        self.layers = [layer for _, layer in involution_layers(generator, "g")]
        if not self.layers:
            raise ValueError("SaturateKernels: the generator has no involution layer")

    def inject(self, state):
        with torch.no_grad():
            for layer in self.layers:
                for param in layer.span.parameters():  # a spectral-norm layer: its original
                    param.mul_(self.factor)

    def detach(self):
        self.layers = []


class CollapseToCodes(Fault):
    """From step at + 1 the generator maps every z to the nearest (largest dot product) of
    `codes` fixed latent vectors, so it has exactly `codes` outputs: a mode collapse forced
    through a forward pre-hook. Every caller of the generator (training, samples, probes)
    sees the collapsed generator."""

    name = "collapse_to_codes"

    def __init__(self, at: int, codes: int, seed: int = 0xC0DE):
        super().__init__(at)
        if codes < 1:
            raise ValueError(f"CollapseToCodes: codes={codes!r} must be >= 1")
        self.codes, self.seed = int(codes), seed
        self.active = False
        self._table: torch.Tensor | None = None
        self._handle = None

    def attach(self, generator, critic):
        z_dim = getattr(generator, "z_dim", None)
        if not z_dim:
            raise ValueError("CollapseToCodes: the generator has no z_dim attribute")
        private = torch.Generator().manual_seed(self.seed)  # the global RNG is not touched
        self._table = torch.randn(self.codes, z_dim, generator=private)
        self._handle = generator.register_forward_pre_hook(self._collapse)

    def _collapse(self, module, args):
        if not self.active:
            return None
        z, *rest = args
        table = self._table.to(z)
        return (table[(z @ table.T).argmax(dim=1)], *rest)

    def inject(self, state):
        self.active = True

    def detach(self):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def state_dict(self) -> dict:
        return {"active": self.active}

    def load_state_dict(self, state: dict) -> None:
        self.active = bool(state.get("active", False))


class CorruptData(Fault):
    """From step at + 1 the real images are rescaled to [0, 1]: the loop's batch source
    (StepState.stream, a stabgan.data.BatchStream) gets the transform "unit_range", whose name
    its state (and so a checkpoint) keeps."""

    name = "corrupt_data"

    def inject(self, state):
        if state.stream is None:
            raise ValueError("CorruptData needs the loop's batch source in "
                             "Monitor.step(..., stream=...)")
        state.stream.transform = "unit_range"


def build_fault(spec: str) -> Fault | None:
    """The fault of a `--fault` spec (stabgan.config.parse_fault), or None for ""."""
    fault = parse_fault(spec)
    if fault is None:
        return None
    if fault.name == "nan":
        return InjectNaN(fault.step)
    if fault.name == "lr":
        return RaiseLearningRates(fault.step, fault.value)
    if fault.name == "data":
        return CorruptData(fault.step)
    if fault.name == "saturate":
        return SaturateKernels(fault.step, fault.value)
    return CollapseToCodes(fault.step, int(fault.value))
