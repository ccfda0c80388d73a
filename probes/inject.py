"""Fault injection for validating the collapse detectors on real runs (not a measuring probe)."""
from __future__ import annotations

import torch

from probes.base import Probe


class InjectNaN(Probe):
    """Writes NaN into the generator's first weight at step `at` (a forced `nan` collapse)."""

    name = "inject_nan"

    def __init__(self, at: int):
        super().__init__(every=1)
        self.at = at

    def on_step(self, state):
        if state.step == self.at:
            with torch.no_grad():
                next(state.generator.parameters()).mul_(float("nan"))
        return {}
