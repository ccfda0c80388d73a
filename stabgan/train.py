"""The training loop (the seed's WGAN-GP by default: eq. 4, TTUR, Adam(0, 0.9), step decay; any
loss and penalty of stabgan.losses), top to bottom.

`prepare_run` does everything that can fail on bad input before anything is written (data,
models, checkpoint, run directory checks); `train` runs the loop in phases (setup, resume,
open, loop, close). Probes are passed in as a list; this module never imports a concrete
probe. The collapse policy (detector, pre_collapse.pt, when to stop) is `probes.guard`'s.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

import stabgan
from probes.base import check_probes
from probes.collapse import NONFINITE_WEIGHTS, Thresholds, sign_text
from probes.guard import CollapseGuard
from probes.monitor import Monitor
from probes.objectives import Objective
from probes.readings import COVERAGE_MODES, FID_PANELS
from probes.rundir import reader
from probes.rundir.files import (BEST_CHECKPOINT, CONFIG, ERROR_LOG, SUMMARY, CheckpointError,
                                 atomic_write_bytes, error_line, unwritable_reason, write_json)
from stabgan.config import (PRESET_VALUES, RESUMABLE_FIELDS, ConfigError, RunConfig,
                            config_objective, dataset_info, resolve_config, upgrade_saved,
                            validate)
from stabgan.data import (BatchStream, HeldOut, load_dataset, reference_images,
                          split_dataset)
from stabgan.losses import LOSSES, Penalty, PenaltyTerms
from stabgan.device import check_device, resolve_device
from stabgan.models import build_models
from stabgan.signals import StopSignals
from stabgan.toy import COVERAGE_HIGH_QUALITY, SCATTER_POINTS, mixture_means, scatter_image

SAMPLE_COUNT = 64  # fixed-noise samples per grid


class RunError(ValueError):
    """A run cannot start as asked (existing run, corrupt or refused checkpoint, changed config)."""


def versions() -> dict[str, str]:
    """Versions recorded with every run."""
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "stabgan": stabgan.__version__}


def resume_config(saved: dict, overrides: dict) -> RunConfig:
    """The saved run's config with the given overrides; refuse any that changes model/data/optimiser."""
    values = {k: v for k, v in upgrade_saved(saved).items()
              if k in {f.name for f in dataclasses.fields(RunConfig)}}
    for field, value in overrides.items():
        if value is None or values.get(field) == value:
            continue
        if field not in RESUMABLE_FIELDS:
            raise ConfigError(field, f"--{field.replace('_', '-')}={value!r} differs from the saved "
                                     f"run's {values.get(field)!r}; a resumed run keeps its model, "
                                     f"data and optimiser (only {', '.join(sorted(RESUMABLE_FIELDS))} "
                                     f"may change)")
        values[field] = value
    config = RunConfig(**values)
    validate(config)
    return config


def load_checkpoint(path: Path) -> dict:
    """A checkpoint dict, loaded without running code (`reader.load_checkpoint`); RunError naming
    the file when it is missing, unreadable, refused by the safe loader or not a stabgan one."""
    try:
        return reader.load_checkpoint(path)
    except CheckpointError as error:
        raise RunError(str(error)) from None


@dataclass
class Run:
    """Everything a run needs, built and checked before the run directory is touched."""
    config: RunConfig
    run_dir: Path
    dataset: torch.utils.data.Dataset
    image_channels: int
    checkpoint: dict | None
    command: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)  # shown to the user at start
    held_out: HeldOut | None = None  # --holdout's images, for the overfit probe
    # real images for the diversity probe's coverage, when --diversity-samples exceeds a batch
    reference: torch.Tensor | None = None


def prepare_run(run_dir: Path, overrides: dict, preset: str | None = None, resume: bool = False,
                command: Sequence[str] = ()) -> Run:
    """Resolve the config and check everything that can fail on bad input; write nothing.

    A fresh run takes the preset (default quick) plus overrides. A resumed run takes the saved
    config plus the overrides (and the preset's values, when one is named); one that would change
    the model, data or optimiser is refused. Raises ConfigError, RunError or DatasetError.
    """
    run_dir = Path(run_dir)
    checkpoint = None
    if resume:
        path = reader.RunDir(run_dir).checkpoint_path("last")
        checkpoint = load_checkpoint(path)
        missing = [key for key in (*Gan.STATE_KEYS, "elapsed") if key not in checkpoint]
        if missing:
            raise RunError(f"cannot resume: checkpoint {str(path)!r} has no {', '.join(missing)} "
                           f"(written by an earlier stabgan); start a new run, or measure this "
                           f"one with `stabgan fid`")
        explicit = dict(PRESET_VALUES[preset]) if preset else {}
        explicit.update({k: v for k, v in overrides.items() if v is not None})
        config = resume_config(checkpoint.get("config", {}), explicit)
        if checkpoint["step"] > config.steps:
            raise ConfigError("steps", f"--steps {config.steps} is below the checkpoint's step "
                                       f"{checkpoint['step']}; raise --steps to extend the run")
    else:
        config = resolve_config(preset or "quick", **overrides)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise RunError(f"run directory {str(run_dir)!r} already exists; pass --resume to "
                           f"continue it or choose another --name")
    unwritable = unwritable_reason(run_dir)
    if unwritable:
        raise RunError(unwritable)
    check_device(config.device)
    info = dataset_info(config.dataset)
    dataset = load_dataset(config.dataset, config.image_size)
    warning = dataset.check_readable() if hasattr(dataset, "check_readable") else None
    dataset, held_out = split_dataset(dataset, config.holdout, config.subset, config.batch_size)
    reference = (reference_images(dataset, config.diversity_samples)
                 if config.diversity_samples > config.batch_size else None)
    return Run(config, run_dir, dataset, info.channels, checkpoint,
               list(command), [warning] if warning else [], held_out, reference)


class Gan:
    """Models, optimisers, schedulers, data stream and noise RNG of one run, its objective
    (stabgan.losses: the loss and the penalty of config.loss and config.penalty) and its step.

    `step()` is one generator update after `n_critic` critic updates and returns what it
    computed, named as the Monitor's StepState fields. The trainer, the benchmarks and
    notebook users all train through this one step.
    """

    def __init__(self, config: RunConfig, dataset, image_channels: int):
        self.config = config
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.rng = torch.Generator(device=self.device).manual_seed(config.seed)  # noise, interpolation
        self.stream = BatchStream(dataset, config.batch_size, config.seed,
                                  workers=0 if isinstance(dataset, torch.utils.data.TensorDataset) else 2)
        self.generator, self.critic = (net.to(self.device)
                                       for net in build_models(config, image_channels))
        self.loss = LOSSES[config.loss]()
        self.penalty = Penalty(config.penalty, config.penalty_weight, config.penalty_every)
        self.last_penalty: PenaltyTerms | None = None  # a lazy penalty's latest, for the readings
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=config.lr_d, betas=betas)
        self.sched_g = torch.optim.lr_scheduler.StepLR(self.opt_g, config.lr_decay_every, config.lr_decay)
        self.sched_d = torch.optim.lr_scheduler.StepLR(self.opt_d, config.lr_decay_every, config.lr_decay)

    def noise(self) -> torch.Tensor:
        return torch.randn(self.config.batch_size, self.config.z_dim, generator=self.rng,
                           device=self.device)

    def step(self) -> dict[str, torch.Tensor | dict]:
        """One training step; returns real, fake, scores, the penalty's points, ∇D there and
        values, the losses, labels, optimizers and the data stream.

        Real and fake are scored in one critic call, each penalty term in another. With
        penalty_update joint a critic update is one Adam step on loss + penalty; separate makes
        two, as the SAGAN codebase does: on the loss, then on the penalty alone (its points
        scored by the updated critic); a zero weight leaves nothing for the second. A lazy
        penalty (penalty_every k) is taken on every k-th critic update, scaled by k.
        """
        config, generator, critic, penalty = self.config, self.generator, self.critic, self.penalty
        critic.requires_grad_(True)
        # critic updates so far: the scheduler steps once a step, and is part of every checkpoint
        updates = self.sched_d.last_epoch * config.n_critic
        for i in range(config.n_critic):
            real, labels = self.stream.next()
            real = real.to(self.device, non_blocking=True)
            with torch.no_grad():
                fake = generator(self.noise())
            d_real, d_fake = critic(torch.cat([real, fake])).chunk(2)
            due = penalty.due(updates + i)
            if config.penalty_update == "joint":
                terms = penalty.compute(critic, real, fake, self.rng) if due else None
                adversarial = self.loss.critic(d_real, d_fake)
                self._critic_update(adversarial + penalty.loss(terms.values) if terms else
                                    adversarial)
            else:
                adversarial = self.loss.critic(d_real, d_fake)
                self._critic_update(adversarial)
                terms = penalty.compute(critic, real, fake, self.rng) if due else None
                if terms and penalty.weight > 0:
                    self._critic_update(penalty.loss(terms.values))
            if terms:  # kept without their graphs: a lazy penalty's readings until the next
                self.last_penalty = PenaltyTerms(*({k: v.detach() for k, v in part.items()}
                                                   for part in (terms.points, terms.grads,
                                                                terms.values)))
        last = self.last_penalty
        loss_critic = adversarial.detach() + (penalty.loss(last.values, lazy=False)
                                              if last else 0.0)

        # generator step (critic frozen so its gradients stay those of its own step)
        critic.requires_grad_(False)
        d_fake_g = critic(generator(self.noise()))
        d_real_g = critic(real) if self.loss.needs_real else None
        loss_g = self.loss.generator(d_fake_g, d_real_g)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        self.sched_g.step()
        self.sched_d.step()
        return {"real": real, "fake": fake, "d_real": d_real, "d_fake": d_fake,
                "penalty_points": last.points if last else None,
                "penalty_grads": last.grads if last else None,
                "penalties": last.values if last else None,
                "loss_critic": loss_critic, "loss_generator": loss_g, "labels": labels,
                # with a penalty, the critic's loss without it too (it is the same without one)
                "loss_critic_adversarial": adversarial.detach() if penalty.terms else None,
                "optimizers": {"generator": self.opt_g, "critic": self.opt_d},
                "stream": self.stream}

    def _critic_update(self, loss: torch.Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()

    _PARTS = ("generator", "critic", "opt_g", "opt_d", "sched_g", "sched_d", "stream")
    STATE_KEYS = (*_PARTS, "rng", "torch_rng")  # what state_dict returns

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimisers, schedulers, data, RNGs."""
        state = {part: getattr(self, part).state_dict() for part in self._PARTS}
        return {**state, "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        for part in self._PARTS:
            getattr(self, part).load_state_dict(state[part])
        self.rng.set_state(state["rng"].to(self.rng.get_state().device))
        torch.set_rng_state(state["torch_rng"])


def train(run: Run, probes: Sequence = ()) -> dict:
    """Train per run.config into run.run_dir; returns the summary (also written to summary.json).

    The phases, top to bottom: setup (models, optimisers, data), resume (their state from
    run.checkpoint), open (config.json, the Monitor and its CollapseGuard), the loop, and close
    (summary.json, written however the loop ended); see `_Training`.
    """
    training = _Training(run, probes)
    training.resume()
    status, error, error_log = "completed", None, None
    try:  # from open() on, the run directory exists: a failure leaves its traceback there
        training.open()
        status = training.loop()
        if status == "completed" and run.config.fid_final:
            training.measure_quality()
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as exc:
        status, error = "failed", error_line(exc)
        error_log = _write_error_log(run.run_dir / ERROR_LOG)
        raise
    finally:
        summary = training.close(status, error, error_log)
    return summary


class _Training:
    """One train() call: its phases as methods, and what they share."""

    def __init__(self, run: Run, probes: Sequence):
        """Setup: the probes checked (the Monitor would refuse them only once the run directory
        is written), threads, models, optimisers, schedulers, data stream, fixed sample noise."""
        check_probes(probes)
        self.run, self.config, self.probes = run, run.config, probes
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.gan = Gan(self.config, run.dataset, run.image_channels)
        # point data: a scatter over the data's modes, with samples enough to show each mode
        self.modes = mixture_means(self.config.dataset)
        samples = SAMPLE_COUNT if self.modes is None else SCATTER_POINTS
        self.fixed_z = torch.randn(samples, self.config.z_dim, generator=torch.Generator(
        ).manual_seed(self.config.seed + 1)).to(self.gan.device)
        self.step, self.elapsed = 0, 0.0  # the last step done; wall time of earlier segments
        self.step_times: list[float] = []
        self.stop = StopSignals(second_raises=True)
        self.bar = self.monitor = self.guard = None  # open() makes them
        self.quality: dict | None = None  # measure_quality's, for summary.json
        self.best: dict | None = None  # the best quality reading so far: checkpoints/best.pt
        self.started, self.started_at = time.perf_counter(), _utc_now()

    def resume(self) -> None:
        """Resume: weights, optimisers, schedulers, RNG and data position from run.checkpoint."""
        checkpoint = self.run.checkpoint
        if checkpoint is not None:
            self.gan.load_state_dict(checkpoint)
            self.step, self.elapsed = checkpoint["step"], checkpoint["elapsed"]
            self.best = checkpoint.get("best")

    def open(self) -> None:
        """Open the run directory: config.json, the Monitor (probes, logs) and the CollapseGuard
        it feeds, both resumed too; the untrained generator's samples; the progress bar."""
        run, config, checkpoint = self.run, self.config, self.run.checkpoint
        run.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run.run_dir / CONFIG, {"config": config.to_dict(), "versions": versions(),
                                          "command": run.command})
        resumed = self.step if checkpoint is not None else None
        self.guard = CollapseGuard(run.run_dir, stop_on_collapse=config.stop_on_collapse,
                                   thresholds=Thresholds().for_run(config.steps, config.log_every))
        self.monitor = Monitor(run.run_dir, self.gan.generator, self.gan.critic, self.probes,
                               log_every=config.log_every, resume_from=resumed,
                               time_offset=self.elapsed, guard=self.guard,
                               objective=config_objective(config),
                               panels=FID_PANELS if config.fid_final else ())
        if checkpoint is not None:
            if "monitor" in checkpoint:
                self.monitor.load_state_dict(checkpoint["monitor"])
            # a checkpoint of an earlier stabgan has no guard state: nothing kept or set aside
            self.guard.load_state_dict(checkpoint.get(CollapseGuard.STATE_KEY, {}), self.step)
        self.started = time.perf_counter()
        if self.step == 0:
            self.save_samples(0)  # the untrained generator: the user sees at once that it started
        self.bar = tqdm(total=config.steps, initial=self.step, desc=run.run_dir.name,
                        unit="step", mininterval=1.0, file=sys.stderr, dynamic_ncols=True)

    def loop(self) -> str:
        """The loop: step, log, stop when the guard says so, samples, checkpoint; a signal stops
        it after the current step (with a checkpoint of it). Returns the status."""
        config, guard = self.config, self.guard
        with self.stop:
            for step in range(self.step + 1, config.steps + 1):
                self.step = step
                t0 = time.perf_counter()
                self.log_step(step, self.gan.step())
                self.keep_best(step)
                self.step_times.append(time.perf_counter() - t0)
                self.bar.update(1)
                if step % config.log_every == 0 or guard.should_stop:
                    self.bar.set_postfix(_postfix(self.monitor.latest, guard.detector,
                                                  self.monitor.objective), refresh=False)
                if guard.should_stop:  # before any checkpoint of a non-finite model
                    return "stopped_on_collapse"
                if step % config.sample_every == 0 or step == config.steps:
                    self.save_samples(step)
                if step % config.ckpt_every == 0 or step == config.steps:
                    self.save_checkpoint(step)
                if self.stop.signum is not None and step < config.steps:
                    break  # a signal in the last step cuts nothing short: the run completes
            else:
                return "completed"
        if self.step % config.ckpt_every:
            self.save_checkpoint(self.step)
        return "interrupted"

    def measure_quality(self) -> None:
        """The final generator's FID and classes covered beside the real data's own FID
        (`stabgan.fid.final_quality`), logged at the last step unless the FID probe logged
        there already, and kept for summary.json."""
        from stabgan.fid import final_quality

        self.bar.close()  # the classifier's training, on first use, shows its own bar
        quality = final_quality(self.gan.generator, self.config, self.gan.device)
        if quality is None:
            return
        readings = quality.pop("readings")
        if not set(readings) & set(self.monitor.logged_at(self.step)):
            self.monitor.record(self.step, readings)
        self.quality = quality

    def log_step(self, step: int, tensors: dict) -> None:
        """The Monitor's probes and logs for this step, forced when a loss is non-finite; then
        the weights check (an update or a probe may have written NaN/Inf weights), logged when
        it finds any. The guard sees both."""
        finite = bool(torch.isfinite(tensors["loss_critic"])
                      & torch.isfinite(tensors["loss_generator"]))
        self.monitor.step(step, force=not finite, **tensors)
        if finite:
            bad_weights = _nonfinite_weights(self.gan.generator, self.gan.critic)
            if bad_weights:
                self.monitor.record(step, {NONFINITE_WEIGHTS: float(bad_weights)})

    def save_samples(self, step: int) -> None:
        generator = self.gan.generator
        generator.eval()
        with torch.no_grad():
            samples = generator(self.fixed_z)
        if self.modes is None:
            self.monitor.writer.save_samples(step, samples)
        else:  # 2-D points: a scatter plot over the data's modes
            self.monitor.writer.save_picture(step, scatter_image(samples, self.modes))
        generator.train()

    def checkpoint_state(self, step: int) -> dict:
        """Everything a resume needs: weights, optimisers, RNG, data position, probes, best."""
        return {"step": step, "config": self.config.to_dict(), "versions": versions(),
                **self.gan.state_dict(), "monitor": self.monitor.state_dict(),
                "elapsed": self.elapsed + time.perf_counter() - self.started, "best": self.best}

    def save_checkpoint(self, step: int) -> None:
        self.guard.save_checkpoint(self.monitor.writer, step, self.checkpoint_state(step))

    def keep_best(self, step: int) -> None:
        """checkpoints/best.pt when this step's quality reading is the run's best so far (as
        StudioGAN keeps its best-FID checkpoint): a late blow-up then costs nothing."""
        score = quality_score({tag: self.monitor.latest[tag]
                               for tag in self.monitor.logged_at(step)})
        if score is None or (self.best is not None and tuple(self.best["rank"]) >= score[2]):
            return
        tag, value, rank = score
        self.best = {"step": step, "tag": tag, "value": value, "rank": list(rank)}
        self.monitor.writer.save_checkpoint(self.checkpoint_state(step), BEST_CHECKPOINT)

    def close(self, status: str, error: str | None, error_log: str | None) -> dict:
        """Close: the progress bar, the Monitor (and the guard: the final diagnosis.json), then
        summary.json over the previous segments'; returns this segment's summary."""
        if self.bar is not None:
            self.bar.close()
        summary = {
            "status": status, "steps": self.step, "target_steps": self.config.steps,
            "wall_s": round(self.elapsed + time.perf_counter() - self.started, 3),
            "step_s_median": statistics.median(self.step_times) if self.step_times else None,
            "exit_signal": self.stop.signum if status == "interrupted" else None,
            "error": error, "error_log": error_log,  # None unless this attempt failed
            # clock times, for a study's wall span: file times do not survive a git clone
            "started_at": self.started_at, "ended_at": _utc_now(),
        }
        run = reader.RunDir(self.run.run_dir)
        if not run.path.is_dir():  # open() failed before making it: nothing to write into
            return summary
        if self.monitor is not None:
            diagnosis = self.monitor.close(status)
            summary.update(verdict=diagnosis["verdict"], onset_step=diagnosis["onset_step"],
                           pre_collapse_step=self.guard.pre_collapse_step)
            best = self.monitor.best_fid
        else:  # open() failed before the Monitor: the earlier segments' best
            best = run.best_fid()
        summary.update(best.summary_fields() if best else {})
        summary["quality"] = self.quality
        summary["best_checkpoint"] = ({key: self.best[key] for key in ("step", "tag", "value")}
                                      if self.best else None)
        previous = run.summary  # the earlier segments', as the guard's close just left it
        summary["started_at"] = previous.get("started_at", self.started_at)  # the first segment's
        write_json(run.path / SUMMARY, {**previous, **summary})
        return summary


def quality_score(readings: dict[str, float]) -> tuple[str, float, tuple] | None:
    """(tag, value, rank: higher is better) of a step's quality reading: its FID (lower is
    better), or on 2-D points the modes covered, then the share of high-quality samples; None
    when the step has none (or a non-finite one)."""
    fid = sorted(tag for tag in readings if tag.startswith("fid/"))
    if fid:
        value = readings[fid[0]]
        return (fid[0], value, (-value,)) if math.isfinite(value) else None
    if COVERAGE_MODES in readings:
        modes = readings[COVERAGE_MODES]
        return COVERAGE_MODES, modes, (modes, readings.get(COVERAGE_HIGH_QUALITY, 0.0))
    return None


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_error_log(path: Path) -> str | None:
    """The traceback being handled into path; its name, or None when even that cannot be
    written (a full disk): the summary then keeps the one-line message alone."""
    try:
        atomic_write_bytes(path, traceback.format_exc().encode())
    except OSError:
        return None
    return path.name


def _nonfinite_weights(*modules: torch.nn.Module) -> int:
    """Non-finite parameter elements; one cheap reduction per step, a full count only when bad."""
    params = [p.detach() for module in modules for p in module.parameters()]
    if not params or bool(torch.isfinite(torch.stack([p.sum() for p in params]).sum())):
        return 0
    return sum(int((~torch.isfinite(p)).sum()) for p in params)  # 0 if the sum merely overflowed


def _postfix(latest: dict[str, float], detector, objective: Objective) -> dict[str, str]:
    """The progress bar's readings: the objective's score gap and first penalty norm, the
    verdict (`too early` until the detector has the points for a band), and what to look at:
    after an event its first sign (`sign=kernel/g.inv1/max_abs ×12 @1,520`: out of its band since
    that step), before any a tag some rule judges that is out of its band now
    (`watch=gp/norm_p95 ×2.1 since 1,200`), else nothing."""
    shown = {"D": objective.gap_tag, **{term.name: term.tag("norm_mean")
                                         for term in objective.terms[:1]}}
    postfix = {k: f"{latest[tag]:.3g}" for k, tag in shown.items()
               if tag in latest and math.isfinite(latest[tag])}
    state = detector.state
    postfix["verdict"] = detector.verdict if state.judged or state.events else (
        f"too early ({state.points}/{state.points_needed} logs)")
    sign, watched = detector.first_sign(), detector.watching()
    if sign is not None:
        postfix["sign"] = f"{sign_text(sign)} @{sign['step']:,}"
    elif watched is not None:
        postfix["watch"] = f"{sign_text(watched)} since {watched['step']:,}"
    return postfix
