"""Sweeps: many `stabgan run`s over a grid of settings, on this machine or on a Ray cluster.

A sweep is planned completely before anything runs: the grid is parsed, every point resolved
and validated, and every existing run directory checked against it, so a bad grid fails in a
second instead of at 3 am. Each point then runs as a normal `stabgan run --out DIR --name NAME`
in its own process, so DIR/NAME is an ordinary run directory and everything downstream
(diagnose, report, TensorBoard) works unchanged.

Re-running a sweep is safe: completed and stopped_on_collapse runs are skipped, interrupted ones
resume from their checkpoint, failed ones run again only with `retry_failed`.

    from stabgan.sweep import SweepSpec, parse_grid, run_sweep
    result = run_sweep(SweepSpec(grid=parse_grid("norm=none,batch seed=0,1"),
                                 base={"steps": 200}, out=Path("runs/norms")))

run_sweep (here) goes through the package's modules in order: spec (grid syntax, sweep files,
point names, DIR's layout), plan (one Job per point, checks, parallelism), executors (the
scheduling loop and the local process pool; ray_executor the Ray tasks), process (one run's
command and subprocess) and results (rows, the table, the report).
"""
from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import sys
import time
from typing import Callable

from probes.rundir.files import write_json
from stabgan.config import RAY_JOIN_TIMEOUT_S
from stabgan.signals import StopSignals
from stabgan.sweep.executors import LocalExecutor, execute
from stabgan.sweep.plan import Job, cpu_count, parallelism, plan_sweep
from stabgan.sweep.ray_executor import RayExecutor, ray_session
from stabgan.sweep.results import (FINISHED, SweepResult, format_table, run_ended, run_row,
                                   write_sweep_report)
from stabgan.sweep.spec import (LOCK, LOGS, SWEEP_DIR, SWEEP_RECORD, SweepError, SweepSpec, expand,
                                parse_grid, point_name, read_sweep_file, sweep_spec)

__all__ = ["FINISHED", "LOGS", "RAY_JOIN_TIMEOUT_S", "SWEEP_RECORD", "Job", "SweepError",
           "SweepResult", "SweepSpec", "expand", "format_table", "parallelism", "parse_grid",
           "plan_sweep", "point_name", "read_sweep_file", "run_ended", "run_row", "run_sweep", "sweep_spec",
           "write_sweep_report"]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_sweep(spec: SweepSpec, echo: Callable[[str], None] = _stderr) -> SweepResult:
    """Plan the sweep (raises SweepError before anything runs), run what is left to run, and
    return the table rows; writes DIR/sweep.json and, unless stopped, DIR/report.html."""
    if spec.executor == "ray" and importlib.util.find_spec("ray") is None:
        raise SweepError("the ray executor needs Ray: pip install 'stabgan[ray]'", "--executor")
    jobs = plan_sweep(spec)
    todo = [j for j in jobs if j.action != "skip"]
    workers, threads = parallelism(len(todo), cpu_count(), spec.workers, spec.base.get("threads"),
                                   spec.executor)
    for job in jobs:
        job.settings = {**spec.base, **job.values, "threads": threads}
    session = (ray_session(spec.ray_address, spec.ray_timeout) if spec.executor == "ray" and todo
               else contextlib.nullcontext())
    with session:  # Ray is joined before anything is written: a wrong address writes nothing
        signum = _run_jobs(spec, jobs, todo, workers, threads, echo)
    result = SweepResult(spec.out, jobs, [run_row(spec.out / j.name, j) for j in jobs], signum)
    if spec.report and not result.signum:
        try:
            result.report = write_sweep_report(spec.out)
        except Exception as error:  # the table still stands; say clearly what is missing
            result.report_error = f"{type(error).__name__}: {error}"
    return result


def _run_jobs(spec: SweepSpec, jobs: list[Job], todo: list[Job], workers: int, threads: int,
              echo: Callable[[str], None]) -> int | None:
    """Record the sweep in DIR/.sweep, run `todo` under DIR's lock; the signal that stopped it."""
    (spec.out / SWEEP_DIR).mkdir(parents=True, exist_ok=True)
    with open(spec.out / LOCK, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another sweep is running into {str(spec.out)!r}", "--out") from None
        write_json(spec.out / SWEEP_RECORD, {
            "grid": {k: list(v) for k, v in spec.grid.items()}, "points": list(spec.points),
            "base": spec.base, "preset": spec.preset, "executor": spec.executor,
            "workers": workers, "threads": threads, "runs": [j.name for j in jobs],
            "command": sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        skipped = [j for j in jobs if j.action == "skip"]
        counts = {a: sum(j.action == a for j in jobs) for a in ("run", "resume", "restart", "skip")}
        echo(f"sweep into {spec.out}: {len(jobs)} points; " +
             ", ".join(f"{n} to {a}" if a != "skip" else f"{n} skipped" for a, n in counts.items() if n) +
             (f"; {spec.executor}: {workers} at a time x {threads} thread(s)" if todo else ""))
        if spec.executor == "local" and workers * threads > cpu_count():
            echo(f"warning: {workers} workers x {threads} threads exceeds the {cpu_count()} CPUs")
        for job in skipped:
            echo(f"skipped  {job.name}: {job.reason}")
        with StopSignals() as stop:  # entered after ray.init, which sets handlers of its own
            if todo:
                executor = (RayExecutor if spec.executor == "ray" else LocalExecutor)(spec, threads)
                execute(executor, todo, spec.out, workers, stop, echo)
    return stop.signum
