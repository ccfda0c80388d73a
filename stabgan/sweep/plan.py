"""The plan of a sweep: one Job per point, with what this invocation does with it (run,
resume, restart or skip), decided and checked before anything runs; and how many runs go at a
time with how many threads each (`parallelism`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from probes.rundir.files import is_run_dir, unwritable_reason
from probes.rundir.reader import RunDir
from stabgan.config import (FIELD_NAMES, RESUMABLE_FIELDS, ConfigError, RunConfig, parse_spec,
                            resolve_config)
from stabgan.device import check_device
from stabgan.sweep.spec import SweepError, SweepSpec, displaced_dir, expand, point_name


@dataclass
class Job:
    """One point of the sweep and what this invocation does with it."""
    name: str
    values: dict           # the grid values of this point
    config: RunConfig      # resolved: preset, then base, then the point
    action: str            # run | resume | restart | skip
    reason: str = ""
    returncode: int | None = None
    settings: dict = field(default_factory=dict)  # the run flags passed to `stabgan run`
    summary_before: dict = field(default_factory=dict)  # summary.json as this attempt found it

    def left_summary_unchanged(self, summary: dict) -> bool:
        """Whether this attempt exited non-zero without writing summary.json (it stopped before
        training, or its Ray task died): `summary`, when there is one, is an earlier attempt's."""
        return self.returncode not in (None, 0) and summary == self.summary_before


def _decide(job: Job, run_dir: Path, retry_failed: bool) -> tuple[str, str]:
    """The action for one point whose directory may already exist."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "run", ""
    run = RunDir(run_dir)
    summary = run.summary
    checkpoint = run.checkpoint_path().is_file()
    status = summary.get("status")
    done = summary.get("steps") or 0
    target = job.config.steps
    again = "resume" if checkpoint else "restart"
    if status == "stopped_on_collapse":
        return "skip", "stopped on collapse (finished)"
    if status == "completed":
        if done >= target:
            return "skip", "completed"
        return ("resume", f"completed {done} steps; extending to {target}") if checkpoint else \
            ("skip", f"completed {done} steps and has no checkpoint to extend from")
    if status == "failed" and not retry_failed:
        return "skip", "failed earlier (pass --retry-failed to run it again)"
    if checkpoint and status == "interrupted" and done > target:
        return "skip", f"interrupted at step {done}, beyond --steps {target}; raise --steps to continue"
    what = {"failed": "failed earlier", "interrupted": "interrupted"}.get(status, "ended without a summary")
    return again, what + ("" if checkpoint else "; no checkpoint, starting over")


def _mismatch(saved: Mapping, config: RunConfig) -> str | None:
    """The first model/data/optimiser setting where a saved run differs from the point's config."""
    for key in FIELD_NAMES:
        if key in RESUMABLE_FIELDS or key not in saved:
            continue
        if saved[key] != getattr(config, key):
            return f"{key}={saved[key]!r} (the sweep asks {getattr(config, key)!r})"
    return None


def _check_machine(jobs: list[Job], executor: str) -> None:
    """Dataset folders exist and (local runs) the device is there: cheap checks that would
    otherwise fail every run of the night one by one."""
    for dataset in dict.fromkeys(j.config.dataset for j in jobs):
        _, path = parse_spec(dataset)
        if path and executor == "local" and not Path(path).expanduser().is_dir():
            raise SweepError(f"dataset={dataset!r}: {str(Path(path).expanduser())!r} is not a folder",
                             "--dataset")
    if executor == "local":
        for device in dict.fromkeys(j.config.device for j in jobs):
            try:
                check_device(device)
            except ConfigError as error:
                raise SweepError(str(error), "--device") from None


def plan_sweep(spec: SweepSpec) -> list[Job]:
    """Resolve and validate every point and check every existing run directory; write nothing
    but a run directory put back where a killed copy-mode sweep left it (`displaced_dir`).

    An invalid point refuses the whole grid (naming the point), as does an existing run
    directory that holds a different experiment: a sweep runs the grid it was given or nothing.
    """
    values_list = expand(spec.grid, spec.points)
    both = sorted(set(spec.base) & ({k for v in values_list for k in v}))
    if both:
        raise SweepError(f"{both[0]!r} is both a grid key and a run flag "
                         f"(--{both[0].replace('_', '-')}); keep one")
    jobs, invalid, names = [], [], {}
    for values in values_list:
        name = point_name(values)
        if name in names:
            raise SweepError(f"grid points {names[name]} and {values} both map to run name {name!r}")
        names[name] = values
        try:
            config = resolve_config(spec.preset or "quick", **spec.base, **values)
        except ConfigError as error:
            invalid.append((name, str(error)))
            continue
        jobs.append(Job(name, dict(values), config, "run"))
    if invalid:
        first, message = invalid[0]
        more = f" (and {len(invalid) - 1} more invalid)" if len(invalid) > 1 else ""
        raise SweepError(f"{len(invalid)} of {len(values_list)} grid points are invalid, nothing "
                         f"was run: {first}: {message}{more}; fix the grid, or split it into "
                         f"sweeps that share --out")
    _check_machine(jobs, spec.executor)
    unwritable = unwritable_reason(spec.out)
    if unwritable:
        raise SweepError(unwritable, "--out")
    problems = []
    for job in jobs:
        run_dir = spec.out / job.name
        displaced = displaced_dir(spec.out, job.name)
        if displaced.is_dir() and not run_dir.exists():
            os.replace(displaced, run_dir)
        if run_dir.exists() and any(run_dir.iterdir()):
            if not is_run_dir(run_dir):
                problems.append(f"{run_dir} exists and is not a run directory")
                continue
            saved = RunDir(run_dir).config
            differs = _mismatch(saved, job.config)
            if differs:
                problems.append(f"{run_dir} holds a different run: {differs}")
                continue
        job.action, job.reason = _decide(job, run_dir, spec.retry_failed)
    if problems:
        raise SweepError(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1
                                             else "") + "; use another --out or remove it", "--out")
    return jobs


def cpu_count() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parallelism(n_runs: int, cores: int, workers: int | None = None, threads: int | None = None,
                executor: str = "local") -> tuple[int, int]:
    """(concurrent runs, torch threads per run), so that workers * threads <= cores.

    Local: with neither given, workers = min(runs, cores) and threads = cores // workers (one
    thread per run for a grid larger than the machine; all cores for a single run). With
    --threads T, workers = cores // T; with --workers N, threads = cores // N. Ray: one thread
    per run unless --threads is given; Ray's scheduler places tasks by num_cpus = threads, and
    --workers only caps how many are in flight.
    """
    n_runs = max(1, n_runs)
    if executor == "ray":
        return workers or n_runs, threads or 1
    if workers and threads:
        return workers, threads
    if threads:
        return max(1, min(n_runs, cores // threads)), threads
    workers = workers or max(1, min(n_runs, cores))
    return workers, max(1, cores // workers)

