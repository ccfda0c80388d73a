"""Running the planned jobs: one scheduling loop (`execute`) over an Executor, which starts a
job, forwards a signal and reports the jobs that ended. LocalExecutor runs processes on this
machine (fresh, or forked from a warm interpreter); RayExecutor (ray_executor.py) runs Ray tasks.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

from stabgan.signals import StopSignals
from stabgan.sweep.plan import Job
from stabgan.sweep.process import (log_path, prepare_dir, run_command, run_outcome, start_run,
                                   start_warm_run)
from stabgan.sweep.spec import SweepSpec

POLL_S = 0.2


class Executor(Protocol):
    """Where jobs run; `verb` (started, submitted) is what the sweep prints for a submitted job."""
    verb: str

    def submit(self, job: Job) -> None:
        """Start `job`; its run directory is ready."""

    def signal(self, signum: int) -> None:
        """Forward one signal to every job in flight."""

    def poll(self) -> list[tuple[Job, str]]:
        """Wait a moment; the jobs that ended since the last call (returncode set), each with
        its outcome line."""


def execute(executor: Executor, jobs: Sequence[Job], out: Path, workers: int, stop: StopSignals,
            echo: Callable[[str], None]) -> None:
    """Run `jobs` in order, at most `workers` in flight. Once `stop` has a signal, start nothing
    new, forward each signal received to the jobs in flight, and wait for them."""
    pending, in_flight = list(jobs), 0
    total, done, forwarded = len(jobs), 0, 0
    while in_flight or (pending and not stop.count):  # stopped: wait for the running ones only
        while pending and in_flight < workers and not stop.count:
            job = pending.pop(0)
            prepare_dir(out / job.name, job)
            executor.submit(job)
            in_flight += 1
            echo(f"{executor.verb:<8} {job.name} "
                 f"({job.action}{': ' + job.reason if job.reason else ''})")
        while forwarded < stop.count:  # one forwarded signal per signal received
            forwarded += 1
            executor.signal(stop.signum)
        for job, outcome in executor.poll():
            in_flight -= 1
            done += 1
            echo(f"finished {job.name}: {outcome} [{done}/{total}]")
    if pending:
        echo(f"not started: {len(pending)} run(s) (the sweep was stopped)")


class LocalExecutor:
    """Each job a `stabgan run` process on this machine."""
    verb = "started"

    def __init__(self, spec: SweepSpec, threads: int):
        self.out, self.preset, self.threads = spec.out, spec.preset, threads
        self.start = start_warm_run if spec.warm else start_run
        self.running: dict = {}  # a Popen or a WarmRun -> its job

    def submit(self, job: Job) -> None:
        command = run_command(self.out, job.name, job.settings, self.preset, job.action == "resume")
        self.running[self.start(command, log_path(self.out, job.name), self.threads)] = job

    def signal(self, signum: int) -> None:
        for process in self.running:
            try:
                process.send_signal(signum)
            except ProcessLookupError:
                pass

    def poll(self) -> list[tuple[Job, str]]:
        time.sleep(POLL_S)
        ended = []
        for process in [p for p in self.running if p.poll() is not None]:
            job = self.running.pop(process)
            job.returncode = process.returncode
            ended.append((job, run_outcome(self.out / job.name, job)))
        return ended
