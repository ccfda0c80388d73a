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
A probe's tensor readings (1-d or more) become TensorBoard histograms. When the monitor opens,
the panels of the core readings and of its probes (probes.readings) go into the run directory
(panels.json, for the report) and into TensorBoard's custom-scalars tab; an hparams entry
(config, verdict, best FID) is written when it closes.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from probes.base import Probe, StepState, check_probes, wants_prepare
from probes.readings import (CORE_PANELS, GP_NORM_MEAN, GP_PENALTY, LOSS_CRITIC, LOSS_GENERATOR,
                             TIME_STEP_S, WGAN_DISTANCE, merge_panels, panels_json,
                             tensorboard_layout)
from probes.rundir.files import PANELS, write_json
from probes.rundir.reader import BestFid, RunDir
from probes.rundir.writer import RunWriter

HPARAM_METRICS = (WGAN_DISTANCE, GP_NORM_MEAN)  # last values shown in the hparams table


def core_readings(state: StepState) -> dict[str, float]:
    """The trainer's own scalars, from what the loop computed (absent inputs are skipped)."""
    readings: dict[str, torch.Tensor] = {}
    if state.loss_critic is not None:
        readings[LOSS_CRITIC] = state.loss_critic
    if state.loss_generator is not None:
        readings[LOSS_GENERATOR] = state.loss_generator
    if state.d_real is not None and state.d_fake is not None:
        readings[WGAN_DISTANCE] = state.d_real.mean() - state.d_fake.mean()
    if state.gp_penalty is not None:
        readings[GP_PENALTY] = state.gp_penalty
    if state.grad_norms is not None:
        readings[GP_NORM_MEAN] = state.grad_norms.mean()
    return {tag: float(value) for tag, value in readings.items()}


class Monitor:
    """Runs probes on their cadence and logs readings into a run directory."""

    def __init__(self, run_dir: Path | str | RunWriter, generator: nn.Module, critic: nn.Module,
                 probes: Sequence[Probe] = (), log_every: int = 10,
                 purge_after_step: int | None = None, start_step: int = 0,
                 time_offset: float = 0.0, guard=None, hparams: dict | None = None):
        """guard: an optional `probes.guard.CollapseGuard` (or a bare
        `probes.collapse.OnlineDetector`) fed every logged step: online collapse detection,
        run_dir/diagnosis.json kept current; closed with the monitor.
        hparams: settings for TensorBoard's hparams table, added to config.json's when present."""
        if log_every < 1:
            raise ValueError(f"log_every={log_every!r} must be >= 1")
        check_probes(probes)
        self.writer = run_dir if isinstance(run_dir, RunWriter) else RunWriter(
            Path(run_dir), purge_after_step=purge_after_step)
        self.generator, self.critic = generator, critic
        self.probes = list(probes)
        self.log_every = log_every
        self.hparams = dict(hparams or {})
        self.latest: dict[str, float] = {}
        # collapse detection: events confirmed at the latest logged step
        self.guard = guard
        self.events: list[dict] = []
        self.best_fid: BestFid | None = None  # the run's best FID (any segment), read at close
        if guard is not None and guard.run_dir is None:
            guard.run_dir = self.writer.dir
        self._start = time.perf_counter() - time_offset  # wall time of earlier segments (resume)
        self._last_log = (start_step, time.perf_counter())  # (step, time) of the previous log
        self._preparing = [p for p in self.probes if wants_prepare(p)]
        for probe in self.probes:
            probe.attach(generator, critic)
        panels = merge_panels(CORE_PANELS, *(probe.panels for probe in self.probes))
        write_json(self.writer.dir / PANELS, panels_json(panels))
        self.writer.log_layout(tensorboard_layout(panels))

    def due(self, step: int) -> bool:
        """Whether step() at this step does anything (a loop may skip building state): a log,
        a probe reading, or a probe preparing for its reading at the next step."""
        return (step % self.log_every == 0 or any(step % p.every == 0 for p in self.probes)
                or any((step + 1) % p.every == 0 for p in self._preparing))

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
                scalars[TIME_STEP_S] = (now - last_time) / (step - last_step)
            self._last_log = (step, now)
        for probe in self.probes:
            if step % probe.every == 0:
                for tag, value in probe.on_step(state).items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0:
                        self.writer.log_histogram(tag, value, step)
                    else:
                        scalars[tag] = float(value)
            if (step + 1) % probe.every == 0 and probe in self._preparing:
                probe.prepare(state)
        self.record(step, scalars)
        return scalars

    def record(self, step: int, scalars: dict[str, float]) -> list[dict]:
        """Log extra scalars for a step and feed them to the guard; returns its new events."""
        self.events = []
        if scalars:
            # the guard gets the values as written, so `stabgan diagnose` agrees with it
            written = self.writer.log_scalars(step, time.perf_counter() - self._start, scalars)
            self.latest.update(written)
            if self.guard is not None:
                self.events = self.guard.update(step, written)
        return self.events

    def state_dict(self) -> dict:
        return {p.name: p.state_dict() for p in self.probes}

    def load_state_dict(self, state: dict) -> None:
        for probe in self.probes:
            if probe.name in state:
                probe.load_state_dict(state[probe.name])

    def close(self) -> dict | None:
        """Remove probe hooks, close the guard (the final diagnosis.json, and summary.json's
        verdict), read `best_fid`, write the hparams entry and close the run directory's files.
        Returns the guard's final diagnosis (None without a guard)."""
        for probe in self.probes:
            probe.detach()
        diagnosis = self.guard.close() if self.guard is not None else None
        run = RunDir(self.writer.dir)
        self.best_fid = run.best_fid()
        self._log_hparams(run, diagnosis)
        self.writer.close()
        return diagnosis

    def _log_hparams(self, run: RunDir, diagnosis: dict | None) -> None:
        """config.json's settings + the constructor's hparams + verdict; metrics: the last
        distance and GP norm, and the best FID when one was measured (any segment)."""
        hparams = {**run.config, **self.hparams}
        hparams["verdict"] = diagnosis["verdict"] if diagnosis else run.verdict or "unknown"
        metrics: dict[str, float | None] = {t: None for t in HPARAM_METRICS if t in self.latest}
        if self.best_fid is not None:
            metrics["hparams/fid_min"] = self.best_fid.value
        self.writer.log_hparams(hparams, metrics, self._last_log[0])
