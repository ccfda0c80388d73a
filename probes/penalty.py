"""Penalty probe: the distribution of ‖∇D‖ at each penalty term's points, in one batch.

A gradient penalty holds the critic's slope where it is taken: WGAN-GP pulls ‖∇D(x̂)‖ towards 1
on interpolates between real and fake samples, R1 and R2 pull ‖∇D‖ towards 0 on real data and on
generated samples. The mean alone (a core reading, `<term>/norm_mean`) hides a split population:
a healthy critic keeps the whole band where the penalty holds it, while a critic escaping its
constraint shows a widening band (p05 falling, p95 growing) and, for a penalty with a target, a
rising fraction of points far from it before the mean moves much. Reads the per-sample norms of
the ∇D the step already computed (shared with the core reading); cost: one sort of B numbers
and a B-value histogram per term.
"""
from __future__ import annotations

import torch

from probes.base import Probe, StepState
from probes.objectives import WGAN_GP, Objective
from probes.readings import FRAC_OFF

OFF_BAND = 0.5  # a point is "off" when its norm is more than this from the term's target


class PenaltyProbe(Probe):
    """Per penalty term: <term>/norm_std, norm_p05, norm_p50, norm_p95, histogram <term>/norm,
    and <term>/frac_off for a term with a target (the gradient penalty's 1)."""

    name = "penalty"

    def __init__(self, every: int = 10):
        super().__init__(every)
        self.set_objective(WGAN_GP)

    def set_objective(self, objective: Objective) -> None:
        self.terms = {term.name: term for term in objective.terms}
        self.panels = objective.penalty_panels()

    @classmethod
    def from_config(cls, config) -> "PenaltyProbe":
        return cls(every=config.probe_every or config.log_every)

    def on_step(self, state: StepState) -> dict[str, float | torch.Tensor]:
        readings: dict[str, float | torch.Tensor] = {}
        for name, norms in state.grad_norms.items():
            term = self.terms.get(name)
            if term is None or norms.numel() == 0:
                continue
            norms = norms.float()
            p05, p50, p95 = torch.quantile(norms, norms.new_tensor([0.05, 0.5, 0.95])).tolist()
            readings.update({
                term.tag("norm_std"): norms.std().item() if norms.numel() > 1 else 0.0,
                term.tag("norm_p05"): p05, term.tag("norm_p50"): p50, term.tag("norm_p95"): p95,
            })
            if term.target is not None:
                off = ((norms - term.target).abs() > OFF_BAND).float().mean().item()
                readings[term.tag(FRAC_OFF)] = off
            readings[term.tag("norm")] = norms
        return readings
