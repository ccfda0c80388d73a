"""One point as a process: its `stabgan run` command line, the process (own session, one
thread count, output appended to DIR/.sweep/logs/NAME.log), the folder made ready before a
restart, and the one-line outcome printed when it ends.

A run starts as a fresh interpreter (`start_run`), or, in a sweep that asks for it (the zoos'
runs of seconds), is forked from a warm one (`start_warm_run`): importing torch and building
the first Adam (which imports torch._dynamo) cost about 4 s of CPU a process, a fifth of a toy
run.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping

from probes.rundir.files import ERROR_LOG
from probes.rundir.reader import RunDir
from stabgan.sweep.plan import Job
from stabgan.sweep.spec import LOGS


def log_path(out: Path, name: str) -> Path:
    """Where run NAME's output goes: DIR/.sweep/logs/NAME.log."""
    return Path(out) / LOGS / f"{name}.log"


def runs_import_from(root: Path) -> None:
    """Make the runs this process starts (`python -m stabgan.cli`) import the stabgan found in
    `root`, a checkout, ahead of any installed copy: a study script runs the code beside it."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root)] + paths)


def run_command(out: Path, name: str, settings: Mapping, preset: str | None, resume: bool) -> list[str]:
    """The `stabgan run` command line for one point (this interpreter, so the same install)."""
    command = [sys.executable, "-m", "stabgan.cli", "run", "--out", str(out), "--name", name]
    if preset:
        command += ["--preset", preset]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):  # --no-...: a False must undo a preset's True
            command.append(flag if value else "--no-" + flag[2:])
        else:
            command += [flag, str(value)]
    return command + (["--resume"] if resume else [])


def _child_setup():
    """What the child does before exec: unblock signals (a Ray worker blocks SIGINT, and a
    blocked mask survives exec, so Ctrl-C would never reach the run) and, on Linux, ask for
    SIGTERM when its parent dies, so no run is left orphaned. Resolved here, in the parent:
    nothing may be imported between fork and exec."""
    prctl = None
    if sys.platform == "linux":
        try:
            import ctypes
            prctl = ctypes.CDLL(None).prctl
        except (OSError, AttributeError):
            pass

    def setup():
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if prctl is not None:
            prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return setup


def start_run(command: list[str], log_file: Path, threads: int) -> subprocess.Popen:
    """Start one run in its own session: a terminal's Ctrl-C reaches only the sweep process,
    which forwards exactly one signal per Ctrl-C (two would skip the final checkpoint)."""
    _log_command(command, log_file)
    with open(log_file, "ab") as log:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=_run_env(threads),
                                start_new_session=True, preexec_fn=_child_setup())


def _log_command(command: list[str], log_file: Path) -> None:
    """Append the run's command line to its log (made if missing)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n$ {shlex.join(command)}\n".encode())


def _run_env(threads: int) -> dict:
    """This process's environment, with the run's thread count and unbuffered output."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1"}


# What the warm interpreter imports before it forks any run: its own process group first, then
# stabgan (it sets OpenMP's wait policy before torch loads), then what a run needs; nothing
# runs a torch op, so the forked runs start OpenMP's threads themselves. The last five a run
# imports only once it writes (TensorBoard, sample grids and plots, the closing quality): 0.9 s
# of a toy run's 10-50 on an idle machine.
WARM_MODULES = ["stabgan.sweep.forkserver_group", "stabgan", "torch", "torch._dynamo",
                "stabgan.cli", "stabgan.train", "stabgan.run_probes", "torch.utils.tensorboard",
                "torchvision.utils", "matplotlib.figure", "matplotlib.backends.backend_agg",
                "stabgan.fid"]


class WarmRun:
    """A run forked from the warm interpreter, handled like a Popen (poll, returncode,
    send_signal)."""

    def __init__(self, process: multiprocessing.process.BaseProcess):
        self.process = process

    def poll(self) -> int | None:
        return self.process.exitcode

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)


def start_warm_run(command: list[str], log_file: Path, threads: int) -> WarmRun:
    """`start_run`, forked from a forkserver that has imported `WARM_MODULES` (started once a
    sweep process). The run gets this process's environment as it is now, and the thread
    count as torch's setting (the forkserver's OpenMP read its variables when it started)."""
    _log_command(command, log_file)
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WARM_MODULES)
    process = context.Process(target=_warm_main, name=log_file.stem,
                              args=(command, str(log_file), threads, _run_env(threads)))
    process.start()
    return WarmRun(process)


def _warm_main(command: list[str], log_file: str, threads: int, env: dict) -> None:
    """In the forked run: what `start_run`'s subprocess gets (own session, no blocked signal,
    SIGTERM when its parent dies, output to the log, the environment), then the CLI."""
    os.setsid()
    _child_setup()()
    os.environ.clear()
    os.environ.update(env)
    output = os.open(log_file, os.O_WRONLY | os.O_APPEND)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    # new streams on the log, line by line (the forkserver's may be anything, even None)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    import torch

    from stabgan import cli

    torch.set_num_threads(threads)
    sys.argv = [cli.__file__, *command[3:]]  # what `python -m stabgan.cli ...` would have
    cli.cli.main(args=command[3:], prog_name="stabgan")


def prepare_dir(run_dir: Path, job: Job) -> None:
    """Before a job starts: note summary.json as the attempt finds it
    (`Job.left_summary_unchanged`); for a restart, drop the old directory (it has no
    checkpoint), keeping its error and traceback in the log."""
    run = RunDir(run_dir)
    summary = job.summary_before = run.summary
    if job.action != "restart" or not run_dir.exists():
        return
    log = log_path(run_dir.parent, job.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n# starting over; the previous attempt ended {summary.get('status', 'without a summary')}"
                f"{': ' + summary['error'] if summary.get('error') else ''}\n")
        with contextlib.suppress(OSError):
            traceback = run.traceback()
            if traceback is not None:
                f.write(f"# its {ERROR_LOG}:\n{traceback}")
    shutil.rmtree(run_dir)
    job.summary_before = {}


def run_outcome(run_dir: Path, job: Job) -> str:
    """The line printed when a run ends: its status and step, or its exit code and the last
    line of its log when it ended without writing a summary."""
    summary = RunDir(run_dir).summary
    if summary.get("status") and not job.left_summary_unchanged(summary):
        text = f"{summary['status']} at step {summary.get('steps')}"
        return text + (f" ({summary['error']})" if summary.get("error") else "")
    log = log_path(run_dir.parent, job.name)
    return f"exit {job.returncode} before training ({log}: {_last_line(log)})"


def _last_line(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").replace("\r", "\n")
        lines = [line for line in text.splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""

