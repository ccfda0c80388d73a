"""Gradient-penalty probe: the distribution of ‖∇D(x̂)‖ over the interpolates of one batch.

WGAN-GP keeps the critic near 1-Lipschitz by pulling ‖∇D(x̂)‖ towards 1 on interpolates
between real and fake samples. The mean alone (a core reading, `gp/norm_mean`) hides a split
population: a healthy critic keeps the whole band near 1, while a critic that is escaping its
constraint shows a widening band (p05 falling towards 0, p95 growing) and a rising fraction
of samples far from 1 before the mean moves much; a collapsing one sees the band go to 0 or
blow up. Reads the per-sample norms the trainer's ∇D(x̂) already gives (computed once per
step, shared with the core reading); cost: one sort of B numbers and a B-value histogram.
"""
from __future__ import annotations

import torch

from probes.base import Probe, StepState
from probes.readings import (GP_FRAC_OFF, GP_NORM, GP_NORM_P05, GP_NORM_P50, GP_NORM_P95,
                             GP_NORM_STD, GP_PANELS)

OFF_BAND = 0.5  # a sample is "off" when |‖∇D(x̂)‖ − 1| exceeds this


class GradientPenaltyProbe(Probe):
    """gp/norm_std, gp/norm_p05, gp/norm_p50, gp/norm_p95, gp/frac_off and histogram gp/norm."""

    name = "gp"
    panels = GP_PANELS

    @classmethod
    def from_config(cls, config) -> "GradientPenaltyProbe":
        return cls(every=config.probe_every or config.log_every)

    def on_step(self, state: StepState) -> dict[str, float | torch.Tensor]:
        norms = state.grad_norms
        if norms is None or norms.numel() == 0:
            return {}
        norms = norms.float()
        p05, p50, p95 = torch.quantile(norms, norms.new_tensor([0.05, 0.5, 0.95])).tolist()
        return {
            GP_NORM_STD: norms.std().item() if norms.numel() > 1 else 0.0,
            GP_NORM_P05: p05, GP_NORM_P50: p50, GP_NORM_P95: p95,
            GP_FRAC_OFF: ((norms - 1).abs() > OFF_BAND).float().mean().item(),
            GP_NORM: norms,
        }
