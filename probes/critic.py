"""Critic probe: what the critic's scores and loss are doing, beyond the distance itself.

`wgan/distance` (E[D(real)] − E[D(fake)], a core reading) estimates the Wasserstein distance
only while the critic stays Lipschitz. The two score populations say more: when both means
drift together to large magnitudes the critic has lost its anchor (WGAN scores are only
defined up to a constant, so a drift without a growing gap means the penalty no longer holds
the scale), and a collapse of the score spread (std → 0) means the critic no longer tells
samples apart. The critic loss is summarised by an exponential moving average and by a drift
z-score, (loss − mean of the previous readings) / their std, which flags a loss leaving its
own recent band (divergence) without a fixed threshold. How well D tells real from fake is
`critic/accuracy`, by the objective's decision (D(x) > 0 for a loss with a fixed boundary, or
D(real) > D(fake) over all pairs of the batch for a loss of score differences); a loss with a
fixed boundary also gives ADA's overfitting heuristic r_t = E[sign D(real)] (`critic/r_t`).
Cost: a few means of B scores and B² comparisons.
"""
from __future__ import annotations

import math
from collections import deque

from probes.base import Probe, StepState
from probes.objectives import WGAN_GP, Objective
from probes.readings import (CRITIC_ACCURACY, CRITIC_D_FAKE_MEAN, CRITIC_D_FAKE_STD,
                             CRITIC_D_REAL_MEAN, CRITIC_D_REAL_STD, CRITIC_LOSS_DRIFT_Z,
                             CRITIC_LOSS_EMA, CRITIC_R_T)

WINDOW = 20      # previous readings the drift z-score compares against
MIN_WINDOW = 5   # no z-score until this many readings exist
EMA_DECAY = 0.9  # per reading


class CriticProbe(Probe):
    """critic/d_real_mean, _std, critic/d_fake_mean, _std, critic/loss_ema, critic/loss_drift_z,
    critic/accuracy and (a loss with a fixed decision boundary) critic/r_t."""

    name = "critic"

    def __init__(self, every: int = 10, window: int = WINDOW, ema_decay: float = EMA_DECAY):
        super().__init__(every)
        self.set_objective(WGAN_GP)
        if window < MIN_WINDOW:
            raise ValueError(f"CriticProbe: window={window!r} must be >= {MIN_WINDOW}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"CriticProbe: ema_decay={ema_decay!r} must be in [0, 1)")
        self.ema_decay = ema_decay
        self.ema: float | None = None
        self.window: deque[float] = deque(maxlen=window)

    def set_objective(self, objective: Objective) -> None:
        self.by_sign = objective.readings.decision == "sign"
        self.panels = objective.critic_panels()

    @classmethod
    def from_config(cls, config) -> "CriticProbe":
        return cls(every=config.probe_every or config.log_every)

    def on_step(self, state: StepState) -> dict[str, float]:
        readings: dict[str, float] = {}
        for scores, mean_tag, std_tag in (
                (state.d_real, CRITIC_D_REAL_MEAN, CRITIC_D_REAL_STD),
                (state.d_fake, CRITIC_D_FAKE_MEAN, CRITIC_D_FAKE_STD)):
            if scores is not None and scores.numel():
                scores = scores.float().flatten()
                readings[mean_tag] = scores.mean().item()
                readings[std_tag] = scores.std().item() if scores.numel() > 1 else 0.0
        if state.d_real is not None and state.d_fake is not None and state.d_real.numel() \
                and state.d_fake.numel():
            readings.update(self._decision_readings(state.d_real.float(), state.d_fake.float()))
        if state.loss_critic is not None:
            readings.update(self._loss_readings(float(state.loss_critic)))
        return readings

    def _decision_readings(self, d_real, d_fake) -> dict[str, float]:
        if self.by_sign:
            accuracy = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
            return {CRITIC_ACCURACY: accuracy.item(), CRITIC_R_T: d_real.sign().mean().item()}
        return {CRITIC_ACCURACY: (d_real[:, None] > d_fake[None, :]).float().mean().item()}

    def _loss_readings(self, loss: float) -> dict[str, float]:
        if not math.isfinite(loss):  # keep the statistics usable after a single bad reading
            return {CRITIC_LOSS_EMA: self.ema if self.ema is not None else loss,
                    CRITIC_LOSS_DRIFT_Z: math.nan}
        readings = {}
        if len(self.window) >= MIN_WINDOW:
            mean = sum(self.window) / len(self.window)
            var = sum((x - mean) ** 2 for x in self.window) / (len(self.window) - 1)
            # floor the spread at 1e-3 of the loss scale so a flat window does not give z = inf
            spread = max(math.sqrt(var), 1e-3 * max(abs(mean), 1e-3))
            readings[CRITIC_LOSS_DRIFT_Z] = (loss - mean) / spread
        self.window.append(loss)
        decay = self.ema_decay
        self.ema = loss if self.ema is None else decay * self.ema + (1 - decay) * loss
        readings[CRITIC_LOSS_EMA] = self.ema
        return readings

    def state_dict(self) -> dict:
        return {"ema": self.ema, "window": list(self.window)}

    def load_state_dict(self, state: dict) -> None:
        self.ema = state.get("ema")
        self.window.clear()
        self.window.extend(state.get("window", []))
