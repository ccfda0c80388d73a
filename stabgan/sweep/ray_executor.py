"""The Ray executor: each job a Ray task (`ray_run`) with num_cpus = threads. Without shared
storage a run directory travels as a tar (to the node when resuming, back when done); a Ctrl-C
on the driver reaches the tasks through a small actor. Ray is imported only when used.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from probes.rundir.files import error_line
from stabgan.sweep.executors import POLL_S
from stabgan.sweep.plan import Job
from stabgan.sweep.process import log_path, run_command, run_outcome, start_run
from stabgan.sweep.spec import SweepError, SweepSpec, displaced_dir


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buffer.getvalue()


def _unpack(data: bytes, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python without extraction filters: the archive is one we wrote
            tar.extractall(dest)


def ray_run(name: str, settings: dict, preset: str | None, resume: bool, threads: int,
            shared_out: str | None, bundle: bytes | None, stopper) -> dict:
    """A Ray task: one `stabgan run` on a worker node.

    shared_out: the sweep folder, at the same path on every node; the run writes there. None:
    the run writes to a temporary folder on the node (seeded from `bundle`, the existing run
    directory, when resuming) and the folder comes back to the driver as a tar. Polls `stopper`
    (an actor) so a Ctrl-C on the driver ends the run as `interrupted`, with its files; a task
    that Ray starts after the Ctrl-C (it was queued for a CPU) starts no run: returncode None.
    """
    if _stop_state(stopper)[0]:
        return {"returncode": None, "log": None, "files": None}
    workdir = None if shared_out else Path(tempfile.mkdtemp(prefix="stabgan-sweep-"))
    try:
        out = Path(shared_out) if shared_out else workdir
        if bundle:
            _unpack(bundle, out / name)
        log = log_path(out, name) if shared_out else workdir / f"{name}.log"
        process = start_run(run_command(out, name, settings, preset, resume), log, threads)
        sent = 0
        while process.poll() is None:
            count, signum = _stop_state(stopper)
            while sent < count:
                sent += 1
                process.send_signal(signum)
            time.sleep(1.0)
        result = {"returncode": process.returncode, "log": None, "files": None}
        if workdir:
            result["log"] = log.read_bytes()
            if (out / name).is_dir():
                result["files"] = _pack(out / name)
        return result
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def _stop_state(stopper) -> tuple[int, int | None]:
    """The stopper's (signals received, first signal), waited for through a future: a task
    blocked in ray.get (or ray.wait) lends its CPUs to the next queued task, which would start a
    run beside this one."""
    return stopper.get.remote().future().result()


def _receive(out: Path, name: str, result: dict) -> None:
    """Copy mode: put a run folder that came back from a node into DIR, replacing the old one."""
    if result.get("log"):
        log_path(out, name).parent.mkdir(parents=True, exist_ok=True)
        with open(log_path(out, name), "ab") as f:
            f.write(result["log"])
    if result.get("files") is None:
        return
    incoming = out / f".{name}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    _unpack(result["files"], incoming)
    old = displaced_dir(out, name)
    shutil.rmtree(old, ignore_errors=True)  # left by a sweep killed after the second rename
    if (out / name).exists():
        os.replace(out / name, old)
    os.replace(incoming, out / name)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def ray_session(address: str | None, timeout: float):
    """Ray for a sweep: one already initialised (from Python) as it is; else the cluster at
    address, joined within `timeout` seconds (`_join_ray`), or without one a local instance;
    one started here is shut down at the end."""
    import ray

    if ray.is_initialized():
        yield
        return
    if address:
        _join_ray(ray, address, timeout)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _join_ray(ray, address: str, timeout: float) -> None:
    """ray.init(address=address), or a SweepError naming the address when Ray refuses or gives
    no answer within `timeout` seconds. ray.init has no timeout of its own, so it runs in a
    daemon thread that is abandoned when it hangs (the sweep then stops)."""
    outcome: list[BaseException | None] = []

    def join():
        try:
            ray.init(address=address, log_to_driver=False)
            outcome.append(None)
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=join, name="ray-join", daemon=True)
    thread.start()
    thread.join(timeout)
    if outcome == [None]:
        return
    reason = error_line(outcome[0]) if outcome else f"no answer within {timeout:g} s"
    raise SweepError(f"cannot join a Ray cluster at {address!r} ({reason}); give the head's "
                     f"HOST:PORT (the port of `ray start --head`, 6379 by default), or `auto` "
                     f"for the cluster started on this node", "--ray-address")


class _Stopper:
    """A Ray actor holding (signals received, first signal) for the tasks to poll."""

    def __init__(self):
        self.state = (0, None)

    def set(self, count, signum):
        self.state = (count, signum)

    def get(self):
        return self.state


class RayExecutor:
    """Each job a Ray task with num_cpus = threads, in the Ray of `ray_session`."""
    verb = "submitted"

    def __init__(self, spec: SweepSpec, threads: int):
        import ray

        self.ray, self.out, self.preset, self.threads = ray, spec.out, spec.preset, threads
        self.shared_out = str(spec.out.resolve()) if spec.shared_storage else None
        self.stopper = ray.remote(num_cpus=0)(_Stopper).remote()
        self.task = ray.remote(ray_run).options(num_cpus=threads, max_retries=0)
        self.in_flight: dict = {}  # ObjectRef -> Job
        self.signals = 0

    def submit(self, job: Job) -> None:
        resume = job.action == "resume"
        bundle = _pack(self.out / job.name) if resume and not self.shared_out else None
        ref = self.task.remote(job.name, job.settings, self.preset, resume, self.threads,
                               self.shared_out, bundle, self.stopper)
        self.in_flight[ref] = job

    def signal(self, signum: int) -> None:
        self.signals += 1
        self.stopper.set.remote(self.signals, signum)

    def poll(self) -> list[tuple[Job, str]]:
        ready, _ = self.ray.wait(list(self.in_flight), num_returns=1, timeout=POLL_S * 5)
        ended = []
        for ref in ready:
            job = self.in_flight.pop(ref)
            try:
                result = self.ray.get(ref)
            except Exception as error:  # the task itself died (node lost, worker crash)
                job.returncode = -1
                ended.append((job, f"Ray task failed: {error_line(error)}"))
                continue
            job.returncode = result["returncode"]
            if job.returncode is None:
                ended.append((job, "not started (the sweep was stopped)"))
                continue
            if not self.shared_out:
                _receive(self.out, job.name, result)
            ended.append((job, run_outcome(self.out / job.name, job)))
        return ended
