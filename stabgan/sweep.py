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
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.util
import io
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

from stabgan.config import (CHOICES, FIELD_NAMES, PRESETS, RESUMABLE_FIELDS, ConfigError,
                            RunConfig, resolve_config)
from stabgan.runlog import (CHECKPOINTS, CONFIG, DIAGNOSIS, ERROR_LOG, LAST_CHECKPOINT, SUMMARY,
                            error_line, is_run_dir, read_json, unwritable_reason, write_json)

EXECUTORS = ("local", "ray")
DEFAULT_OUT = Path("runs/sweep")
# The sweep's own files sit in a hidden folder, so DIR holds run directories only (reports skip
# hidden folders): DIR/.sweep/logs/NAME.log (each run's output), DIR/.sweep/sweep.json (what the
# last sweep into DIR asked for), DIR/.sweep/lock (one sweep at a time per DIR).
SWEEP_DIR = ".sweep"
LOGS = f"{SWEEP_DIR}/logs"
SWEEP_RECORD = f"{SWEEP_DIR}/sweep.json"
LOCK = f"{SWEEP_DIR}/lock"
FINISHED = ("completed", "stopped_on_collapse")
FILE_KEYS = ("grid", "points", "base", "preset", "out", "workers", "executor", "ray_address",
             "shared_storage", "retry_failed", "report")
# Fields with a fixed set of values, so a typo in the grid is caught as a bad value.
_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
# The sweep sets each run's CPU share itself (see parallelism); a grid over it makes no sense.
_NOT_GRID_KEYS = ("threads",)
_POLL_S = 0.2
RAY_JOIN_TIMEOUT_S = 30  # ray.init(address=...) waits for minutes, or for ever, on a non-Ray port


class SweepError(ValueError):
    """A sweep cannot start as asked; `param` names the option to blame (for the CLI)."""

    def __init__(self, message: str, param: str = "--grid"):
        super().__init__(message)
        self.param = param


# ---------------------------------------------------------------------------------------------
# grid syntax

def _accepted_keys() -> str:
    return ", ".join(k for k in FIELD_NAMES if k not in _NOT_GRID_KEYS)


def parse_value(key: str, text: str, token: str | None = None):
    """One grid value, typed as RunConfig's field `key`; SweepError naming the token if it can't be."""
    where = f"grid token {token!r}: " if token else ""
    kind = _TYPES[key]
    text = str(text).strip()
    try:
        if kind == "bool":
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        kinds = {"bool": "true/false", "int": "integers", "float": "finite numbers"}
        raise SweepError(f"{where}{key} takes {kinds[kind]}, not {text!r}") from None
    if key in CHOICES and text not in CHOICES[key]:
        raise SweepError(f"{where}{key}={text!r} is not one of {', '.join(CHOICES[key])}")
    return text


def _grid_key(raw: str, token: str) -> str:
    key = raw.strip().replace("-", "_")
    if key not in FIELD_NAMES or key in _NOT_GRID_KEYS:
        hint = " (the sweep sets it per run; pass --threads T as a run flag)" \
            if key in _NOT_GRID_KEYS else ""
        raise SweepError(f"grid token {token!r}: unknown key {raw.strip()!r}{hint}; accepted "
                         f"keys: {_accepted_keys()}")
    return key


def parse_grid(text: str) -> dict[str, tuple]:
    """`"inv_layers=1,2 norm=none,batch seed=0,1"` -> {field: values}, in the order written.

    Tokens are separated by whitespace (shell quoting works for values with spaces); each is
    KEY=V1,V2,... over RunConfig fields (dashes or underscores). Raises SweepError naming the
    bad token and the accepted keys.
    """
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise SweepError(f"grid {text!r} cannot be split into tokens: {error}") from None
    if not tokens:
        raise SweepError(f"grid is empty; write KEY=V1,V2 ... with keys from: {_accepted_keys()}")
    grid: dict[str, tuple] = {}
    for token in tokens:
        raw_key, eq, raw_values = token.partition("=")
        if not eq or not raw_key.strip():
            raise SweepError(f"grid token {token!r} is not KEY=V1,V2,...; accepted keys: "
                             f"{_accepted_keys()}")
        key = _grid_key(raw_key, token)
        if key in grid:
            raise SweepError(f"grid token {token!r}: key {key!r} appears twice")
        parts = raw_values.split(",")
        if any(not p.strip() for p in parts):
            raise SweepError(f"grid token {token!r}: empty value (write {key}=V1,V2,...)")
        grid[key] = _unique(key, [parse_value(key, p, token) for p in parts], token)
    return grid


def _unique(key: str, values: list, token: str) -> tuple:
    if len(set(values)) != len(values):
        raise SweepError(f"grid token {token!r}: a value of {key!r} is repeated")
    return tuple(values)


def _typed_mapping(raw: Mapping, what: str, param: str) -> dict:
    """Settings from a sweep file ({field: value}) typed like grid values."""
    if not isinstance(raw, Mapping):
        raise SweepError(f"{what} must be a table of settings, not {raw!r}", param)
    out = {}
    for raw_key, value in raw.items():
        token = f"{raw_key}={value}"
        key = str(raw_key).replace("-", "_")
        if what == "points":
            key = _grid_key(str(raw_key), token)
        elif key not in FIELD_NAMES:
            raise SweepError(f"{what}: unknown setting {raw_key!r}; accepted: {', '.join(FIELD_NAMES)}",
                             param)
        out[key] = parse_value(key, value, token)
    return out


def grid_from_mapping(raw: Mapping) -> dict[str, tuple]:
    """A grid written as a table {field: [values]} (sweep files); a scalar is one value."""
    grid = {}
    for raw_key, values in raw.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        token = f"{raw_key}={','.join(map(str, values))}"
        key = _grid_key(str(raw_key), token)
        if not values:
            raise SweepError(f"grid token {token!r}: empty value (write {key}=V1,V2,...)")
        grid[key] = _unique(key, [parse_value(key, v, token) for v in values], token)
    return grid


# ---------------------------------------------------------------------------------------------
# the spec: what a sweep asks for, from options and/or a sweep file

@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs. `points` (explicit settings) are each crossed with `grid`."""
    grid: dict = field(default_factory=dict)      # field -> tuple of values (cross product)
    points: tuple = ()                            # explicit points: ({field: value}, ...)
    base: dict = field(default_factory=dict)      # run settings shared by every point
    preset: str | None = None
    out: Path = DEFAULT_OUT
    workers: int | None = None                    # None: see parallelism()
    executor: str = "local"
    ray_address: str | None = None                # None: start a local Ray instance
    shared_storage: bool = False                  # Ray: DIR is at the same path on every node
    retry_failed: bool = False
    report: bool = True                           # write DIR/report.html at the end


def read_sweep_file(path: Path) -> dict:
    """A sweep file (.toml, .json, or .yaml/.yml when PyYAML is installed) as a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"cannot read sweep file {str(path)!r}: {error.strerror}", "--config") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise SweepError("reading .toml needs Python 3.11+ (tomllib); use a .json sweep "
                                 "file", "--config") from None
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SweepError("reading YAML needs PyYAML, which stabgan does not depend on "
                                 "(pip install pyyaml), or write the sweep as .toml or .json",
                                 "--config") from None
            data = yaml.safe_load(text)
        else:
            raise SweepError(f"sweep file {str(path)!r} must end in .toml, .json, .yaml or .yml",
                             "--config")
    except SweepError:
        raise
    except Exception as error:  # each parser has its own error type
        message = " ".join(str(error).split())
        raise SweepError(f"sweep file {str(path)!r}: {message}", "--config") from None
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {str(path)!r} must hold a table of settings", "--config")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise SweepError(f"sweep file {str(path)!r}: unknown key {unknown[0]!r}; accepted: "
                         f"{', '.join(FILE_KEYS)}", "--config")
    return data


def sweep_spec(grid: str | None = None, config_file: Path | None = None,
               base: Mapping | None = None, **options) -> SweepSpec:
    """Merge a sweep file with command-line values; the command line wins, key by key.

    `grid` is the --grid text, `base` the run flags (None values are unset), `options` the
    other SweepSpec fields (None values are unset).
    """
    data = read_sweep_file(config_file) if config_file else {}
    merged_grid: dict = {}
    if "grid" in data:
        raw = data["grid"]
        merged_grid = parse_grid(raw) if isinstance(raw, str) else grid_from_mapping(raw)
    if grid is not None:
        merged_grid.update(parse_grid(grid))
    raw_points = data.get("points", ())
    if not isinstance(raw_points, (list, tuple)):
        raise SweepError("points must be a list of tables of settings", "--config")
    points = tuple(_typed_mapping(p, "points", "--config") for p in raw_points)
    if not merged_grid and not points:
        raise SweepError("a sweep needs --grid \"KEY=V1,V2 ...\" or --config FILE with a grid "
                         f"or points; accepted keys: {_accepted_keys()}")
    merged_base = _typed_mapping(data.get("base", {}), "base", "--config")
    merged_base.update({k: v for k, v in (base or {}).items() if v is not None})
    merged_base = {k: v for k, v in merged_base.items() if v is not None}
    values = {k: data[k] for k in FILE_KEYS if k in data and k not in ("grid", "points", "base")}
    values.update({k: v for k, v in options.items() if v is not None})
    if "out" in values:
        values["out"] = Path(values["out"])
    elif config_file:
        values["out"] = DEFAULT_OUT.parent / Path(config_file).stem
    workers = values.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepError(f"workers={workers!r} must be an integer >= 1", "--workers")
    if values.get("executor", "local") not in EXECUTORS:
        raise SweepError(f"executor {values['executor']!r} is not one of {', '.join(EXECUTORS)}",
                         "--executor")
    if values.get("preset") not in (None, *PRESETS):
        raise SweepError(f"preset {values['preset']!r} is not one of {', '.join(PRESETS)}",
                         "--preset")
    return SweepSpec(grid=merged_grid, points=points, base=merged_base, **values)


# ---------------------------------------------------------------------------------------------
# points and names

def expand(grid: Mapping[str, Iterable], points: Iterable[Mapping] = ()) -> list[dict]:
    """Every explicit point (or one empty point) crossed with the grid's cross product."""
    points = list(points) or [{}]
    keys = list(grid)
    expanded = []
    for point in points:
        overlap = sorted(set(point) & set(keys))
        if overlap:
            raise SweepError(f"{overlap[0]!r} is both in the grid and in an explicit point")
        for combo in itertools.product(*(grid[k] for k in keys)):
            expanded.append({**point, **dict(zip(keys, combo))})
    return expanded


def _name_value(value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+]+", "-", text).strip("-.") or "x"


def point_name(values: Mapping) -> str:
    """A filesystem-safe directory name from a point's values, keys in RunConfig order:
    {"inv_layers": 2, "norm": "batch", "seed": 1} -> "inv_layers-2_norm-batch_seed-1"."""
    keys = [k for k in FIELD_NAMES if k in values]
    return "_".join(f"{k}-{_name_value(values[k])}" for k in keys) or "run"


# ---------------------------------------------------------------------------------------------
# the plan: one action per point, decided before anything runs

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


def _decide(job: Job, run_dir: Path, retry_failed: bool) -> tuple[str, str]:
    """The action for one point whose directory may already exist."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "run", ""
    summary = read_json(run_dir / SUMMARY)
    checkpoint = (run_dir / CHECKPOINTS / LAST_CHECKPOINT).is_file()
    status = (summary or {}).get("status")
    done = (summary or {}).get("steps") or 0
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
    from stabgan.config import parse_spec
    from stabgan.train import resolve_device

    for dataset in dict.fromkeys(j.config.dataset for j in jobs):
        _, path = parse_spec(dataset)
        if path and executor == "local" and not Path(path).expanduser().is_dir():
            raise SweepError(f"dataset={dataset!r}: {str(Path(path).expanduser())!r} is not a folder",
                             "--dataset")
    if executor == "local":
        for device in dict.fromkeys(j.config.device for j in jobs):
            try:
                resolve_device(device)
            except ConfigError as error:
                raise SweepError(str(error), "--device") from None


def plan_sweep(spec: SweepSpec) -> list[Job]:
    """Resolve and validate every point and check every existing run directory; write nothing.

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
        if run_dir.exists() and any(run_dir.iterdir()):
            if not is_run_dir(run_dir):
                problems.append(f"{run_dir} exists and is not a run directory")
                continue
            saved = (read_json(run_dir / CONFIG) or {}).get("config") or {}
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


# ---------------------------------------------------------------------------------------------
# running one point

def log_path(out: Path, name: str) -> Path:
    """Where run NAME's output goes: DIR/.sweep/logs/NAME.log."""
    return Path(out) / LOGS / f"{name}.log"


def run_command(out: Path, name: str, settings: Mapping, preset: str | None, resume: bool) -> list[str]:
    """The `stabgan run` command line for one point (this interpreter, so the same install)."""
    command = [sys.executable, "-m", "stabgan.cli", "run", "--out", str(out), "--name", name]
    if preset:
        command += ["--preset", preset]
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            command += [flag] if value else []
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
    log_file.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    with open(log_file, "ab") as log:
        log.write(f"\n$ {shlex.join(command)}\n".encode())
        log.flush()
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=_child_setup())


def _prepare_dir(run_dir: Path, job: Job) -> None:
    """Before a restart: drop the old directory (it has no checkpoint), keeping its error and
    traceback in the log."""
    if job.action != "restart" or not run_dir.exists():
        return
    summary = read_json(run_dir / SUMMARY) or {}
    log = log_path(run_dir.parent, job.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n# starting over; the previous attempt ended {summary.get('status', 'without a summary')}"
                f"{': ' + summary['error'] if summary.get('error') else ''}\n")
        if summary.get("error_log"):
            with contextlib.suppress(OSError):
                f.write(f"# its {ERROR_LOG}:\n{(run_dir / ERROR_LOG).read_text(errors='replace')}")
    shutil.rmtree(run_dir)


class _Signals:
    """Counts SIGINT/SIGTERM while a sweep runs; the executor forwards each one to every run."""

    def __init__(self):
        self.count, self.signum, self._previous = 0, None, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which sets its own
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.count += 1
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _execute_local(jobs: list[Job], spec: SweepSpec, workers: int, threads: int,
                   stop: _Signals, echo: Callable[[str], None]) -> None:
    """A pool of `workers` run subprocesses; on a signal, start nothing new and forward it."""
    pending, running = list(jobs), {}  # Popen -> [job, signals sent]
    total, done = len(jobs), 0
    while running or (pending and not stop.count):  # stopped: wait for the running ones only
        while pending and len(running) < workers and not stop.count:
            job = pending.pop(0)
            run_dir = spec.out / job.name
            _prepare_dir(run_dir, job)
            command = run_command(spec.out, job.name, job.settings, spec.preset,
                                  job.action == "resume")
            running[start_run(command, log_path(spec.out, job.name), threads)] = [job, 0]
            echo(f"started  {job.name} ({job.action}{': ' + job.reason if job.reason else ''})")
        for process, entry in running.items():
            while entry[1] < stop.count:  # one forwarded signal per signal received
                entry[1] += 1
                try:
                    process.send_signal(stop.signum)
                except ProcessLookupError:
                    pass
        time.sleep(_POLL_S)
        for process in [p for p in running if p.poll() is not None]:
            job = running.pop(process)[0]
            job.returncode = process.returncode
            done += 1
            echo(f"finished {job.name}: {_outcome(spec.out / job.name, job)} [{done}/{total}]")
    if pending:
        echo(f"not started: {len(pending)} run(s) (the sweep was stopped)")


def _outcome(run_dir: Path, job: Job) -> str:
    summary = read_json(run_dir / SUMMARY) or {}
    if summary.get("status") and job.returncode in (0, 1, 130, 143):
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


# ---------------------------------------------------------------------------------------------
# Ray

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
    (an actor) so a Ctrl-C on the driver ends the run as `interrupted`, with its files.
    """
    import ray

    workdir = None if shared_out else Path(tempfile.mkdtemp(prefix="stabgan-sweep-"))
    try:
        out = Path(shared_out) if shared_out else workdir
        if bundle:
            _unpack(bundle, out / name)
        log = log_path(out, name) if shared_out else workdir / f"{name}.log"
        process = start_run(run_command(out, name, settings, preset, resume), log, threads)
        sent = 0
        while process.poll() is None:
            count, signum = ray.get(stopper.get.remote())
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
    old = out / f".{name}.old"
    if (out / name).exists():
        os.replace(out / name, old)
    os.replace(incoming, out / name)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def ray_session(address: str | None):
    """Ray for a sweep: one already initialised (from Python) as it is; else the cluster at
    address, joined within RAY_JOIN_TIMEOUT_S (`_join_ray`), or without one a local instance;
    one started here is shut down at the end."""
    import ray

    if ray.is_initialized():
        yield
        return
    if address:
        _join_ray(ray, address)
    else:
        ray.init(include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _join_ray(ray, address: str) -> None:
    """ray.init(address=address), or a SweepError naming the address when Ray refuses or gives
    no answer within RAY_JOIN_TIMEOUT_S. ray.init has no timeout of its own, so it runs in a
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
    thread.join(RAY_JOIN_TIMEOUT_S)
    if outcome == [None]:
        return
    reason = error_line(outcome[0]) if outcome else f"no answer within {RAY_JOIN_TIMEOUT_S} s"
    raise SweepError(f"cannot join a Ray cluster at {address!r} ({reason}); give the head's "
                     f"HOST:PORT (the port of `ray start --head`, 6379 by default), or `auto` "
                     f"for the cluster started on this node", "--ray-address")


def _execute_ray(jobs: list[Job], spec: SweepSpec, workers: int, threads: int,
                 stop: _Signals, echo: Callable[[str], None]) -> None:
    """Each run a Ray task with num_cpus = threads, in the Ray of `ray_session`."""
    import ray

    @ray.remote(num_cpus=0)
    class Stopper:
        def __init__(self):
            self.state = (0, None)

        def set(self, count, signum):
            self.state = (count, signum)

        def get(self):
            return self.state

    stopper = Stopper.remote()
    task = ray.remote(ray_run).options(num_cpus=threads, max_retries=0)
    shared_out = str(spec.out.resolve()) if spec.shared_storage else None
    pending, in_flight, sent = list(jobs), {}, 0
    total, done = len(jobs), 0
    while in_flight or (pending and not stop.count):
        while pending and len(in_flight) < workers and not stop.count:
            job = pending.pop(0)
            run_dir = spec.out / job.name
            _prepare_dir(run_dir, job)
            bundle = _pack(run_dir) if job.action == "resume" and not shared_out else None
            ref = task.remote(job.name, job.settings, spec.preset, job.action == "resume",
                              threads, shared_out, bundle, stopper)
            in_flight[ref] = job
            echo(f"submitted {job.name} ({job.action}{': ' + job.reason if job.reason else ''})")
        if stop.count > sent:
            sent = stop.count
            stopper.set.remote(stop.count, stop.signum)
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=_POLL_S * 5)
        for ref in ready:
            job = in_flight.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as error:  # the task itself died (node lost, worker crash)
                job.returncode = -1
                echo(f"finished {job.name}: Ray task failed: {error_line(error)}")
                continue
            job.returncode = result["returncode"]
            if not shared_out:
                _receive(spec.out, job.name, result)
            done += 1
            echo(f"finished {job.name}: {_outcome(spec.out / job.name, job)} [{done}/{total}]")
    if pending:
        echo(f"not started: {len(pending)} run(s) (the sweep was stopped)")


# ---------------------------------------------------------------------------------------------
# the sweep

@dataclass
class SweepResult:
    out: Path
    jobs: list[Job]
    rows: list[dict]
    signum: int | None = None
    report: Path | None = None
    report_error: str | None = None

    @property
    def failed(self) -> list[str]:
        """Runs that did not finish for a reason other than being stopped."""
        return [r["name"] for r in self.rows if r["status"] not in (*FINISHED, "interrupted")]

    @property
    def exit_code(self) -> int:
        """128 + signal when stopped; 1 when a run failed or the report could not be written."""
        if self.signum:
            return 128 + self.signum
        return 1 if self.failed or self.report_error else 0


def run_row(run_dir: Path) -> dict:
    """One table row from a run directory's summary.json and diagnosis.json."""
    summary = read_json(run_dir / SUMMARY) or {}
    diagnosis = read_json(run_dir / DIAGNOSIS) or {}
    status = summary.get("status") or ("not started" if not run_dir.exists() else "no summary")
    return {"name": run_dir.name, "status": status,
            "verdict": summary.get("verdict") or diagnosis.get("verdict"),
            "onset": summary.get("onset_step", diagnosis.get("onset_step")),
            "steps": summary.get("steps"), "target_steps": summary.get("target_steps"),
            "wall_s": summary.get("wall_s"), "error": summary.get("error"),
            "error_log": str(run_dir / ERROR_LOG) if summary.get("error_log") else None}


def format_table(rows: list[dict]) -> str:
    """The terminal table: name, status, verdict, onset, steps, wall s; then, for each run that
    failed, its one-line error and the file holding its traceback."""
    def cell(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    header = ("name", "status", "verdict", "onset", "steps", "wall s")
    body = [(r["name"], r["status"], cell(r["verdict"]), cell(r["onset"]),
             cell(r["steps"]) + (f"/{r['target_steps']}" if r.get("target_steps") and
                                 r["target_steps"] != r["steps"] else ""),
             cell(r["wall_s"], "{:.1f}")) for r in rows]
    widths = [max(len(str(line[i])) for line in (header, *body)) for i in range(len(header))]
    right = {3, 4, 5}
    lines = []
    for line in (header, *body):
        lines.append("  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(line, widths))).rstrip())
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['name']}: {r['error']}" +
                         (f" (traceback: {r['error_log']})" if r.get("error_log") else ""))
    return "\n".join(lines)


def write_sweep_report(out: Path) -> Path:
    """DIR/report.html over every run in DIR (the reports package, imported only here)."""
    from reports import write_report
    return write_report(out, out / "report.html")


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
    session = (ray_session(spec.ray_address) if spec.executor == "ray" and todo
               else contextlib.nullcontext())
    with session:  # Ray is joined before anything is written: a wrong address writes nothing
        signum = _run_jobs(spec, jobs, todo, workers, threads, echo)
    result = SweepResult(spec.out, jobs, [run_row(spec.out / j.name) for j in jobs], signum)
    for job in todo:  # a run that exited before writing a summary shows why in the table
        row = next(r for r in result.rows if r["name"] == job.name)
        if job.returncode not in (None, 0) and row["status"] in ("not started", "no summary"):
            row["status"] = f"error (exit {job.returncode})"
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
        with _Signals() as stop:
            if todo:
                execute = _execute_ray if spec.executor == "ray" else _execute_local
                execute(todo, spec, workers, threads, stop, echo)
    return stop.signum
