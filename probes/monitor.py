"""Monitor: probes + run directory for any GAN training loop, stabgan's own trainer included.

    monitor = Monitor(run_dir, generator=G, critic=D, probes=build_probes("default"),
                      objective=Objective("ns", "r1"))
    for step in range(1, steps + 1):
        ...  # your critic and generator updates
        monitor.step(step, real=x, fake=fake, d_real=d_real, d_fake=d_fake,
                     loss_critic=adversarial + gamma / 2 * r1,
                     loss_critic_adversarial=adversarial, loss_generator=loss_g,
                     penalty_points={"r1": x},
                     penalty_grads={"r1": grad}, penalties={"r1": r1})
    monitor.close()

The objective (probes.objectives: the loss and the penalty the loop trains with) says what the
readings mean: at every `log_every`-th step the monitor writes the core readings (the losses,
the objective's score gap — `wgan/distance` under the Wasserstein loss — each penalty term's
value and mean norm, step time) and every due probe's readings to metrics.jsonl and
TensorBoard. Tensors are pulled off the device only on those steps. A probe's tensor readings
(1-d or more) become TensorBoard histograms. When the monitor opens, config.json (written here
for a loop of your own: the objective and `hparams`) and the panels of the core readings and of
its probes (probes.readings) go into the run directory (panels.json, for the report) and into
TensorBoard's custom-scalars tab. A directory that already holds a run is continued only when
asked (`resume_from`), never mixed with a new one. When it closes, summary.json says how the
run ended and an hparams entry (config, verdict, best FID) goes to TensorBoard.
"""
from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from probes.base import Probe, StepState, check_probes, wants_prepare
from probes.objectives import WGAN_GP, Objective, objective_of
from probes.readings import (CORE_PANELS, LOSS_CRITIC, LOSS_CRITIC_ADVERSARIAL, LOSS_GENERATOR,
                             TIME_STEP_S, Panel, merge_panels, panels_json, tensorboard_layout)
from probes.rundir.files import CONFIG, METRICS, PANELS, SUMMARY, read_json, write_json
from probes.rundir.reader import BestFid, RunDir
from probes.rundir.writer import RunWriter

STATE_FIELDS = tuple(f.name for f in dataclasses.fields(StepState))
# what an earlier Monitor took for the gradient penalty, and what it is now
RENAMED_FIELDS = {"x_hat": "penalty_points={'gp': x_hat}",
                  "grad_x_hat": "penalty_grads={'gp': grad}",
                  "gp_penalty": "penalties={'gp': gp}"}


def core_readings(state: StepState, objective: Objective = WGAN_GP) -> dict[str, float]:
    """The loop's own scalars, from what it computed (absent inputs are skipped): the losses,
    the objective's score gap, and each penalty term's value and mean norm."""
    readings: dict[str, torch.Tensor] = {}
    if state.loss_critic is not None:
        readings[LOSS_CRITIC] = state.loss_critic
    if state.loss_critic_adversarial is not None:
        readings[LOSS_CRITIC_ADVERSARIAL] = state.loss_critic_adversarial
    if state.loss_generator is not None:
        readings[LOSS_GENERATOR] = state.loss_generator
    if state.d_real is not None and state.d_fake is not None:
        readings[objective.gap_tag] = state.d_real.mean() - state.d_fake.mean()
    for term in objective.terms:
        if state.penalties and term.name in state.penalties:
            readings[term.tag("penalty")] = state.penalties[term.name]
        if term.name in state.grad_norms:
            readings[term.tag("norm_mean")] = state.grad_norms[term.name].mean()
    return {tag: float(value) for tag, value in readings.items()}


class Monitor:
    """Runs probes on their cadence and logs readings into a run directory."""

    def __init__(self, run_dir: Path | str, generator: nn.Module, critic: nn.Module,
                 probes: Sequence[Probe] = (), log_every: int = 10,
                 resume_from: int | None = None, time_offset: float = 0.0, guard=None,
                 hparams: dict | None = None, objective: Objective = WGAN_GP,
                 panels: Sequence[Panel] = ()):
        """guard: an optional `probes.guard.CollapseGuard` (or a bare
        `probes.collapse.OnlineDetector`) fed every logged step: online collapse detection,
        run_dir/diagnosis.json kept current; closed with the monitor.
        resume_from: continue the run already in run_dir from this step (its later records are
        dropped); None starts a new run, and refuses a directory that already holds one.
        time_offset: wall seconds of the run's earlier segments (resume).
        hparams: settings for TensorBoard's hparams table, added to config.json's when present.
        objective: the loss and penalty the loop trains with (what its readings mean); a
        config.json already in run_dir (stabgan's trainer writes one) must name the same.
        panels: the plots of readings the loop records itself (`record`), beside the core's,
        the objective's and the probes'."""
        if log_every < 1:
            raise ValueError(f"log_every={log_every!r} must be >= 1")
        check_probes(probes)
        run_dir = Path(run_dir)
        _check_run_dir(run_dir, resume_from, objective)
        self.writer = RunWriter(run_dir, purge_after_step=resume_from)
        self.objective = objective
        if not (run_dir / CONFIG).is_file():  # a loop of its own: what the readers need
            write_json(run_dir / CONFIG, {"config": {**objective.to_dict(), **(hparams or {})},
                                          "versions": {"python": platform.python_version(),
                                                       "torch": str(torch.__version__)},
                                          "command": sys.argv})
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
        start_step = resume_from or 0
        self._last_log = (start_step, time.perf_counter())  # (step, time) of the previous log
        self.last_step = start_step  # the latest step recorded
        self._recorded: tuple[int | None, set[str]] = (None, set())  # its step and tags
        self._preparing = [p for p in self.probes if wants_prepare(p)]
        for probe in self.probes:
            probe.set_objective(objective)
            probe.attach(generator, critic)
        panels = merge_panels(CORE_PANELS, objective.panels(),
                              *(probe.panels for probe in self.probes), panels)
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
        self.last_step = max(self.last_step, step)
        if not (force or self.due(step)):
            return {}
        unknown = [k for k in tensors if k not in STATE_FIELDS]
        if unknown:
            hint = "; ".join(f"{k} is now {RENAMED_FIELDS[k]}" for k in unknown
                             if k in RENAMED_FIELDS)
            raise TypeError(f"Monitor.step: unknown field {unknown[0]!r}"
                            + (f" ({hint})" if hint else "")
                            + f"; accepted: {', '.join(STATE_FIELDS[3:])}")
        state = StepState(step=step, generator=self.generator, critic=self.critic,
                          **{k: _detached(v) for k, v in tensors.items()})
        scalars: dict[str, float] = {}
        if force or step % self.log_every == 0:
            scalars.update(core_readings(state, self.objective))
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
            if self._recorded[0] != step:
                self._recorded = (step, set())
            self._recorded[1].update(written)
            if self.guard is not None:
                self.events = self.guard.update(step, written)
        return self.events

    def logged_at(self, step: int) -> set[str]:
        """The tags recorded at `step`, when it is the latest step recorded (else none)."""
        return self._recorded[1] if self._recorded[0] == step else set()

    def state_dict(self) -> dict:
        return {p.name: p.state_dict() for p in self.probes}

    def load_state_dict(self, state: dict) -> None:
        for probe in self.probes:
            if probe.name in state:
                probe.load_state_dict(state[probe.name])

    def close(self, status: str = "completed") -> dict | None:
        """Remove probe hooks, close the guard (the final diagnosis.json), read `best_fid`,
        write summary.json (`status`: how the run ended, completed unless the loop says
        otherwise; the steps, verdict and best FID) and the hparams entry, and close the run
        directory's files. Returns the guard's final diagnosis (None without a guard)."""
        for probe in self.probes:
            probe.detach()
        diagnosis = self.guard.close() if self.guard is not None else None
        run = RunDir(self.writer.dir)
        self.best_fid = run.best_fid()
        summary = {**run.summary, "status": status, "steps": self.last_step,
                   "wall_s": round(time.perf_counter() - self._start, 3),
                   "ended_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds")}
        if diagnosis is not None:
            summary.update(verdict=diagnosis["verdict"], onset_step=diagnosis["onset_step"])
        summary.update(self.best_fid.summary_fields() if self.best_fid else {})
        write_json(run.path / SUMMARY, summary)
        self._log_hparams(run, diagnosis)
        self.writer.close()
        return diagnosis

    def _log_hparams(self, run: RunDir, diagnosis: dict | None) -> None:
        """config.json's settings + the constructor's hparams + verdict; metrics: the last
        score gap and penalty norms, and the best FID when one was measured (any segment)."""
        hparams = {**run.config, **self.hparams}
        hparams["verdict"] = diagnosis["verdict"] if diagnosis else run.verdict or "unknown"
        shown = (self.objective.gap_tag, *(t.tag("norm_mean") for t in self.objective.terms))
        metrics: dict[str, float | None] = {t: None for t in shown if t in self.latest}
        if self.best_fid is not None:
            metrics["hparams/fid_min"] = self.best_fid.value
        self.writer.log_hparams(hparams, metrics, self._last_log[0])


def _detached(value):
    """A tensor, or a dict of them (the penalty terms'), without its autograd graph."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, dict):
        return {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in value.items()}
    return value


def _check_run_dir(run_dir: Path, resume_from: int | None, objective: Objective) -> None:
    """ValueError when the Monitor would mix two runs in run_dir (a new one where metrics are
    already logged) or log readings under another objective than its config.json names."""
    if resume_from is None and (run_dir / METRICS).is_file() and (run_dir / METRICS).stat().st_size:
        raise ValueError(f"{str(run_dir)!r} already holds a run ({METRICS}); pass "
                         f"resume_from=STEP to continue it from STEP, or use a new directory")
    config = read_json(run_dir / CONFIG)
    if config is not None:
        saved = objective_of(config.get("config") or {})
        if saved != objective:
            raise ValueError(f"{str(run_dir)!r} holds a run trained with {saved}; the Monitor "
                             f"was given objective {objective}")
