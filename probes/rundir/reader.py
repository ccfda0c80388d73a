"""`RunDir(path)`: the one reader of a run directory (trainer, Monitor, reports, studies).

    run = RunDir("runs/quick-igan")
    run.config, run.summary, run.diagnosis      # the JSON files ({} when missing or unreadable)
    run.series(["wgan/distance", "fid/"])       # {tag: (steps, values)} as numpy columns
    run.best_fid()                              # BestFid(value, step, features) or None
    run.checkpoint("last")                      # checkpoints/last.pt, loaded without running code

It tolerates runs still being written: a missing or garbled JSON file reads as {} (`read` says
None), a truncated or garbled metrics.jsonl line is skipped and counted. Nothing is cached:
every access reads the file again. The file names and formats are `probes.rundir.files`'s, the
writer `probes.rundir.writer.RunWriter`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Iterable, NamedTuple

from probes.objectives import Objective, objective_of
from probes.rundir.files import (BEST_CHECKPOINT, CHECKPOINTS, CONFIG, DIAGNOSIS, ERROR_LOG,
                                 LAST_CHECKPOINT, METRICS, PRE_COLLAPSE_CHECKPOINT, SUMMARY, CheckpointError,
                                 is_metrics_record, read_json, safe_load, to_float)

CHECKPOINT_NAMES = {"last": LAST_CHECKPOINT, "pre_collapse": PRE_COLLAPSE_CHECKPOINT,
                    "best": BEST_CHECKPOINT}

# numpy is imported inside the functions that read metrics: the sweep and the CLI start without it
Series = dict  # tag -> (steps: int64 numpy array, values: float64 numpy array)


@dataclass
class Metrics:
    """metrics.jsonl read into columns, and what reading it skipped."""
    series: Series
    records: int = 0      # readable records
    bad_lines: int = 0    # lines that were not a JSON object with an integer "step"
    last_step: int | None = None


class BestFid(NamedTuple):
    """The lowest finite FID of a run: its value, step and features (`fid/<features>`)."""
    value: float
    step: int | None
    features: str | None

    def summary_fields(self) -> dict:
        """As summary.json names them: fid_min, fid_min_step, fid_features."""
        return {"fid_min": self.value, "fid_min_step": self.step, "fid_features": self.features}


def verdict_and_onset(summary: dict, diagnosis: dict) -> tuple[str | None, int | None]:
    """A run's verdict and onset step from its summary.json and diagnosis.json, already read:
    summary.json's, else diagnosis.json's (a run without a summary yet)."""
    onset = summary["onset_step"] if "onset_step" in summary else diagnosis.get("onset_step")
    return summary.get("verdict") or diagnosis.get("verdict"), onset


class RunDir:
    """One run directory, read (see the module docstring)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # ------------------------------------------------------------------ JSON files

    def read(self, name: str) -> dict | None:
        """The JSON object in the run's file `name`; None when it is missing, unreadable or
        not an object."""
        return read_json(self.path / name)

    @property
    def config_file(self) -> dict:
        """The whole config.json: {"config", "versions", "command"}."""
        return self.read(CONFIG) or {}

    @property
    def config(self) -> dict:
        """config.json's RunConfig fields."""
        config = self.config_file.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def objective(self) -> Objective:
        """The loss and penalty the run trained with (WGAN-GP for a run from before they were
        recorded)."""
        return objective_of(self.config)

    @property
    def summary(self) -> dict:
        return self.read(SUMMARY) or {}

    @property
    def diagnosis(self) -> dict:
        return self.read(DIAGNOSIS) or {}

    @property
    def verdict(self) -> str | None:
        """summary.json's verdict, else diagnosis.json's (a run without a summary yet)."""
        return verdict_and_onset(self.summary, self.diagnosis)[0]

    @property
    def onset_step(self) -> int | None:
        """summary.json's onset step when it has one, else diagnosis.json's."""
        return verdict_and_onset(self.summary, self.diagnosis)[1]

    @property
    def error_log(self) -> Path | None:
        """The failed run's error.log (its traceback), when summary.json names it."""
        return self.path / ERROR_LOG if self.summary.get("error_log") else None

    def traceback(self) -> str | None:
        """The text of error.log when summary.json names it, else None; OSError when it is
        named but cannot be read."""
        path = self.error_log
        return None if path is None else path.read_text(errors="replace")

    # ------------------------------------------------------------------ metrics

    def metrics(self, tags: Iterable[str] | None = None) -> Metrics:
        """metrics.jsonl as numpy columns, in step order, with counts of what was skipped.

        tags: the tags to keep (a name ending in "/" keeps its whole group), or None for all.
        One json.loads over the whole file when it is clean (fast), line by line if not.
        """
        try:
            text = (self.path / METRICS).read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return Metrics({})
        try:  # a blank or truncated line makes this fail, and the slow path below skips it
            parsed = json.loads("[" + text.replace("\n", ",") + "]")
        except ValueError:
            parsed = []
            for line in text.splitlines():
                if line.strip():
                    try:
                        parsed.append(json.loads(line))
                    except ValueError:
                        parsed.append(None)
        records = [r for r in parsed if is_metrics_record(r)]
        bad = len(parsed) - len(records)
        if any(records[i]["step"] > records[i + 1]["step"] for i in range(len(records) - 1)):
            records.sort(key=lambda r: r["step"])
        return Metrics(_columns(records, _tag_filter(tags)), len(records), bad,
                       records[-1]["step"] if records else None)

    def series(self, tags: Iterable[str] | None = None) -> Series:
        """{tag: (steps, values)} of metrics.jsonl (`metrics(tags).series`)."""
        return self.metrics(tags).series

    def best_fid(self, features: str | None = None) -> BestFid | None:
        """The run's lowest finite FID (see `best_fid`)."""
        fid_tags = [f"fid/{features}" if features else "fid/"]
        return best_fid(self.series(fid_tags), self.summary, features)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint_path(self, which: str = "last") -> Path:
        """checkpoints/last.pt, pre_collapse.pt or best.pt (`which`: last | pre_collapse |
        best), else the path `which` itself."""
        if which in CHECKPOINT_NAMES:
            return self.path / CHECKPOINTS / CHECKPOINT_NAMES[which]
        return Path(which)

    def checkpoint(self, which: str = "last") -> dict:
        """The checkpoint `which` (see checkpoint_path), loaded by `load_checkpoint`."""
        return load_checkpoint(self.checkpoint_path(which))


def load_checkpoint(path: Path) -> dict:
    """A stabgan checkpoint, loaded without running code (`files.safe_load`); CheckpointError
    naming the file when it is missing, unreadable, refused or not a stabgan checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    state = safe_load(path, path)
    if not isinstance(state, dict) or "step" not in state or "generator" not in state:
        raise CheckpointError(f"{str(path)!r} is not a stabgan checkpoint")
    return state


def best_fid(series: dict, summary: dict | None = None,
             features: str | None = None) -> BestFid | None:
    """The lowest finite reading of the fid/<features> tags in series (any features when None;
    ties: the earliest step), else summary.json's fid_min (of those features), else None."""
    import numpy as np

    best = None
    for tag, (steps, values) in series.items():
        if not tag.startswith("fid/") or (features is not None and tag != f"fid/{features}"):
            continue
        values = np.asarray(values, dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(values))
        if len(finite):
            i = int(finite[np.argmin(values[finite])])
            found = BestFid(float(values[i]), int(steps[i]), tag[4:])
            best = found if best is None or found < best else best
    if best is None and summary:
        value = summary.get("fid_min")
        named = summary.get("fid_features")
        step = summary.get("fid_min_step")
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value) and features in (None, named):
            best = BestFid(float(value), step if type(step) is int else None,
                           named if isinstance(named, str) else None)
    return best


def as_lists(series: dict) -> dict[str, tuple[list[int], list[float]]]:
    """series with Python lists (ints, floats) for columns: for code that keeps the numbers."""
    import numpy as np

    return {tag: (np.asarray(steps).tolist(), np.asarray(values).tolist())
            for tag, (steps, values) in series.items()}


def _tag_filter(tags: Iterable[str] | None):
    """tag -> whether `metrics(tags)` keeps it."""
    if tags is None:
        return lambda tag: True
    names = set(tags)
    groups = tuple(name for name in names if name.endswith("/"))
    return lambda tag: tag in names or tag.startswith(groups)


def _columns(records: list[dict], keep) -> Series:
    """tag -> (steps, values) in record order. Records are grouped by their key set (a run logs
    a few cadences), and each group becomes one 2-D array at once: that is the fast part."""
    import numpy as np

    groups: dict[tuple, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(tuple(record), []).append(i)
    pieces: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for keys, index in groups.items():
        kept_tags = [(j, tag) for j, tag in enumerate(keys)
                     if tag not in ("step", "time") and keep(tag)]
        if not kept_tags:
            continue
        rows = [records[i] for i in index]
        steps = np.array([r["step"] for r in rows], dtype=np.int64)
        try:
            table = np.fromiter(chain.from_iterable(r.values() for r in rows), np.float64,
                                len(rows) * len(keys)).reshape(len(rows), len(keys))
        except (TypeError, ValueError, OverflowError):  # a list, text or a huge integer
            table = None
        for j, tag in kept_tags:
            kept = np.ones(len(rows), dtype=bool)
            if table is not None:
                values = table[:, j]
            else:  # null is NaN here too, as numpy makes it above
                converted = [math.nan if r[tag] is None else to_float(r[tag]) for r in rows]
                kept = np.array([v is not None for v in converted])
                values = np.array([v for v in converted if v is not None], dtype=np.float64)
            pieces.setdefault(tag, []).append((np.asarray(index)[kept], steps[kept], values))
    series = {}
    for tag, parts in pieces.items():
        index, steps, values = (np.concatenate(column) for column in zip(*parts))
        if len(parts) > 1:
            order = np.argsort(index, kind="stable")
            steps, values = steps[order], values[order]
        if len(steps):
            series[tag] = (steps, values)
    return series
