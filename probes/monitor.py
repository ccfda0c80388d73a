"""Monitor: probes + run directory for any WGAN-GP loop, stabgan's own trainer included.

    monitor = Monitor(run_dir, generator=G, critic=D, probes=build_probes("default"))
    for step in range(1, steps + 1):
        ...  # your critic and generator updates
        monitor.step(step, real=x, fake=fake, d_real=d_real, d_fake=d_fake, x_hat=x_hat,
                     grad_x_hat=grad, loss_critic=loss_d, loss_generator=loss_g, gp_penalty=gp)
    monitor.close()

At every `log_every`-th step the monitor writes the core readings (losses, Wasserstein
distance, gradient-penalty norm mean, step time) and every due probe's readings to
metrics.jsonl and TensorBoard. Tensors are pulled off the device only on those steps.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from probes.base import Probe, StepState
from stabgan.runlog import RunWriter


def core_readings(state: StepState) -> dict[str, float]:
    """The trainer's own scalars, from what the loop computed (absent inputs are skipped)."""
    readings: dict[str, torch.Tensor] = {}
    if state.loss_critic is not None:
        readings["loss/critic"] = state.loss_critic
    if state.loss_generator is not None:
        readings["loss/generator"] = state.loss_generator
    if state.d_real is not None and state.d_fake is not None:
        readings["wgan/distance"] = state.d_real.mean() - state.d_fake.mean()
    if state.gp_penalty is not None:
        readings["gp/penalty"] = state.gp_penalty
    if state.grad_x_hat is not None:
        readings["gp/norm_mean"] = state.grad_x_hat.flatten(1).norm(dim=1).mean()
    return {tag: float(value) for tag, value in readings.items()}


class Monitor:
    """Runs probes on their cadence and logs readings into a run directory."""

    def __init__(self, run_dir: Path | str | RunWriter, generator: nn.Module, critic: nn.Module,
                 probes: Sequence[Probe] = (), log_every: int = 10,
                 purge_after_step: int | None = None, start_step: int = 0,
                 time_offset: float = 0.0):
        if log_every < 1:
            raise ValueError(f"log_every={log_every!r} must be >= 1")
        self.writer = run_dir if isinstance(run_dir, RunWriter) else RunWriter(
            Path(run_dir), purge_after_step=purge_after_step)
        self.generator, self.critic = generator, critic
        self.probes = list(probes)
        self.log_every = log_every
        self.latest: dict[str, float] = {}
        self._start = time.perf_counter() - time_offset  # wall time of earlier segments (resume)
        self._last_log = (start_step, time.perf_counter())  # (step, time) of the previous log
        for probe in self.probes:
            probe.attach(generator, critic)

    def due(self, step: int) -> bool:
        """Whether step() at this step will log anything (a loop may skip building state)."""
        return step % self.log_every == 0 or any(step % p.every == 0 for p in self.probes)

    def step(self, step: int, force: bool = False, **tensors) -> dict[str, float]:
        """Record this step; keyword arguments are StepState fields. Returns the logged scalars.

        force logs the core readings off-cadence (the trainer forces the step a loss goes NaN).
        """
        if not (force or self.due(step)):
            return {}
        state = StepState(step=step, generator=self.generator, critic=self.critic,
                          **{k: v.detach() if isinstance(v, torch.Tensor) else v
                             for k, v in tensors.items()})
        scalars: dict[str, float] = {}
        if force or step % self.log_every == 0:
            scalars.update(core_readings(state))
            now = time.perf_counter()
            last_step, last_time = self._last_log
            if step > last_step:
                scalars["time/step_s"] = (now - last_time) / (step - last_step)
            self._last_log = (step, now)
        for probe in self.probes:
            if step % probe.every:
                continue
            for tag, value in probe.on_step(state).items():
                if isinstance(value, torch.Tensor) and value.numel() > 1:
                    self.writer.log_histogram(tag, value, step)
                else:
                    scalars[tag] = float(value)
        if scalars:
            self.writer.log_scalars(step, time.perf_counter() - self._start, scalars)
            self.latest.update(scalars)
        return scalars

    def state_dict(self) -> dict:
        return {p.name: p.state_dict() for p in self.probes}

    def load_state_dict(self, state: dict) -> None:
        for probe in self.probes:
            if probe.name in state:
                probe.load_state_dict(state[probe.name])

    def close(self) -> None:
        """Remove probe hooks and close the run directory's files."""
        for probe in self.probes:
            probe.detach()
        self.writer.close()
