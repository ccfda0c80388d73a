"""Gradient probe: per-layer gradient norm and relative update size for G and D.

Instability usually starts in a few layers: a gradient norm that grows by orders of magnitude
in one layer, or updates that are a large fraction of the weights themselves (‖ΔW‖/‖W‖ well
above ~1e-3..1e-2 with Adam means the layer is being rewritten each step rather than tuned),
precede NaNs and divergence; a ratio near 0 marks a dead layer. Gradients are the `.grad` the
loop's own backward passes left: for D those of its last critic update (the trainer freezes D
during the generator update), for G those of its update.

The update ratio needs the weights before this step's update. The probe copies the weights at
the step before each reading (its `prepare` hook, after that step's updates) and compares at
the reading: exact for any optimizer (Adam state would give the update only for vanilla Adam and
not at a learning-rate decay boundary, since the scheduler has already stepped), at the cost of
one copy of the parameters every `every` steps, held for one step.
"""
from __future__ import annotations

import torch
from torch import nn

from probes.base import Probe, StepState
from probes.layers import layer_parameters, named_layers
from probes.readings import GRADIENT_PANELS, grad_tag, update_tag


class GradientProbe(Probe):
    """grad/<net>.<layer> (‖∇W‖ over the layer's parameters) and update/<net>.<layer>
    (‖W_t − W_{t−1}‖ / ‖W_{t−1}‖) for every layer with parameters."""

    name = "gradients"
    panels = GRADIENT_PANELS

    def __init__(self, every: int = 10):
        super().__init__(every)
        self.layers: list[tuple[str, list[nn.Parameter]]] = []
        self._previous: tuple[int, list[list[torch.Tensor]]] | None = None  # (step, weights)

    @classmethod
    def from_config(cls, config) -> "GradientProbe":
        return cls(every=config.probe_every or config.log_every)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        self.layers = [(name, layer_parameters(module))
                       for net, prefix in ((generator, "g"), (critic, "d"))
                       for name, module in named_layers(net, prefix)]

    def prepare(self, state: StepState) -> None:
        with torch.no_grad():
            self._previous = (state.step, [[p.detach().clone() for p in params]
                                           for _, params in self.layers])

    def on_step(self, state: StepState) -> dict[str, float]:
        previous = None
        if self._previous is not None and self._previous[0] == state.step - 1:
            previous = self._previous[1]
        self._previous = None
        norms: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for i, (name, params) in enumerate(self.layers):
                grads = [p.grad for p in params if p.grad is not None]
                if grads:
                    norms[grad_tag(name)] = _norm(grads)
                if previous is not None:
                    delta = _norm([p - q for p, q in zip(params, previous[i])])
                    norms[update_tag(name)] = delta / _norm(previous[i]).clamp_min(1e-12)
        if not norms:
            return {}
        values = torch.stack(list(norms.values())).tolist()  # one device sync for all layers
        return dict(zip(norms, values))

    def detach(self) -> None:
        self.layers, self._previous = [], None


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """‖concatenation of tensors‖₂ as a float32 0-d tensor."""
    return torch.stack([t.detach().float().norm() for t in tensors]).norm()
