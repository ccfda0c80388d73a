"""The run directory's files: their names and formats, and safe reads and writes of one file.

A run directory is the only thing trainer, probes, detectors and reports share (the contract:
docs/design.md). Here: the file names, the metrics.jsonl line and record rule
(`metrics_line`, `is_metrics_record`), atomic writes, JSON with NaN/Inf kept, the safe
checkpoint loader, and the record-level `read_metrics` the writer's purge on resume uses.
The writer is `probes.rundir.writer.RunWriter`, the reader `probes.rundir.reader.RunDir`;
both tolerate runs still being written and truncated lines. No torch at import.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METRICS = "metrics.jsonl"
DIAGNOSIS = "diagnosis.json"
SUMMARY = "summary.json"
SAMPLES = "samples"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.pt"
PRE_COLLAPSE_CHECKPOINT = "pre_collapse.pt"
BEST_CHECKPOINT = "best.pt"  # the step with the best quality reading (FID, or modes covered)
ERROR_LOG = "error.log"  # a failed run's full traceback; summary.json names it
PANELS = "panels.json"  # the plots of the run's readings (probes.readings.panels_json)
LOGGED_DIGITS = 9  # significant digits of a metrics.jsonl value: float32 round-trips


def _new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the umask (which can be read only by
    setting it, so it is read once, here)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


NEW_FILE_MODE = _new_file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write data to path through a temp file and a rename, so readers never see half a file.
    The file gets the mode a plain write would (mkstemp's own 0o600 would hide a run's files
    from the other users of a shared machine)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, NEW_FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class CheckpointError(ValueError):
    """A .pt file that cannot be loaded safely: unreadable, or holding what the safe loader refuses."""


def safe_load(source: Path | bytes, name: str | Path, what: str = "checkpoint") -> Any:
    """torch.load of a file (or its bytes) that runs no code: `weights_only=True` builds only
    tensors and plain containers (dict, list, str, int, float, bool, None), whoever wrote it.

    name and what say which file it is in the one-line CheckpointError raised for a file that
    is unreadable or that holds anything else (a malicious pickle's `os.system`, for one).
    """
    import io
    import torch
    from torch.torch_version import TorchVersion

    # The one global allowed beyond torch's own: stabgan before safe loading stored
    # torch.__version__, a TorchVersion (a str subclass with comparison methods; rebuilding
    # one runs str.__new__ only), in every checkpoint's "versions". Now it stores a str.
    try:
        with torch.serialization.safe_globals([TorchVersion]):
            return torch.load(io.BytesIO(source) if isinstance(source, bytes) else source,
                              map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        refused = re.search(r"\bGLOBAL (\S+) ", str(error))  # how torch names what it refused
        if refused:
            raise CheckpointError(f"refused: {what} {str(name)!r} contains {refused.group(1)}; "
                                  f"stabgan loads {what}s without running code") from None
        raise CheckpointError(f"{what} {str(name)!r} is unreadable "
                              f"({type(error).__name__})") from None


def unwritable_reason(folder: Path) -> str | None:
    """Why folder (existing or to be made) cannot be written, or None: its nearest existing
    ancestor is a file, or is not writable."""
    existing = Path(folder)
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"output path {str(existing)!r} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"output directory {str(existing)!r} is not writable"
    try:  # the permission bits can say yes where making a folder fails (/proc, read-only mounts)
        os.rmdir(tempfile.mkdtemp(prefix=".stabgan-probe-", dir=existing))
    except OSError as error:
        return f"output directory {str(existing)!r} is not writable ({error.strerror})"
    return None


def error_line(error: BaseException) -> str:
    """`Type: message` on one line; of a message of several lines (a DataLoader worker's holds
    the worker's traceback, whose last line is the worker's error) the first and the last."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " … ".join(dict.fromkeys(lines[:1] + lines[-1:]))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _json_value(value: Any) -> Any:
    """JSON has no NaN/Inf: keep them as strings so a reader can tell them from missing values."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def logged_value(value: float) -> float:
    """value to LOGGED_DIGITS significant digits: float32 readings round-trip exactly
    (TensorBoard keeps float32 too), and the file is shorter and faster to read than with
    float64's 17 digits."""
    return float(f"{float(value):.{LOGGED_DIGITS}g}")


def metrics_line(step: int, wall_time: float, values: dict[str, float]) -> str:
    """One metrics.jsonl line: step, wall time in seconds, then tag: value (NaN/Inf as text).
    values should already be logged_value()s."""
    record = {"step": step, "time": round(wall_time, 3)}
    record.update({tag: _json_value(v) for tag, v in values.items()})
    return json.dumps(record) + "\n"


def write_json(path: Path, obj: Any, changed_only: bool = False) -> None:
    """Atomically write obj as indented JSON (non-finite floats as "nan"/"inf"). changed_only:
    leave a file that already holds exactly this untouched (its time stamp keys caches)."""
    data = (json.dumps(_sanitize(obj), indent=2, default=str, ensure_ascii=False) + "\n").encode()
    if changed_only:
        try:
            if Path(path).read_bytes() == data:
                return
        except OSError:
            pass
    atomic_write_bytes(Path(path), data)


def _sanitize(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return _json_value(obj)


def read_json(path: Path) -> dict | None:
    """The JSON object at path, or None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def to_float(value: Any) -> float | None:
    """A logged scalar as a float ("nan"/"inf" strings included), or None when it is not one."""
    if isinstance(value, (int, float)):  # bool included: a flag logged as a scalar
        try:
            return float(value)
        except OverflowError:  # an integer beyond float64's range
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)  # "nan", "inf", "-inf"
        except ValueError:
            return None
    return None


def is_metrics_record(record: Any) -> bool:
    """Whether a parsed metrics.jsonl line is a record, for every reader: a JSON object whose
    "step" is an integer (not a bool) within int64."""
    return isinstance(record, dict) and type(record.get("step")) is int \
        and abs(record["step"]) < 2 ** 63


def read_metrics(run_dir: Path) -> list[dict]:
    """Every record of metrics.jsonl in file order; a truncated or garbled line is skipped."""
    path = Path(run_dir) / METRICS
    records = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if is_metrics_record(record):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


def is_run_dir(path: Path) -> bool:
    """A run directory holds at least a config.json or a metrics.jsonl."""
    return (path / CONFIG).is_file() or (path / METRICS).is_file()


def find_runs(root: Path) -> list[Path]:
    """Every run directory at or below root, sorted by path."""
    root = Path(root)
    return sorted({p.parent for name in (CONFIG, METRICS) for p in root.rglob(name)
                   if p.is_file() and CHECKPOINTS not in p.parts})


def fresh_run_dir(out: Path, base: str) -> Path:
    """OUT/BASE, with -1, -2 ... appended when that directory exists already."""
    candidate, n = Path(out) / base, 0
    while candidate.exists():
        n += 1
        candidate = Path(out) / f"{base}-{n}"
    return candidate
