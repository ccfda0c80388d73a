"""What a study's runs left: one record per run directory, grouped into grid points over seeds."""
from __future__ import annotations

import contextlib
import datetime
import math
import statistics
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from probes.collapse import VERDICTS
from probes.readings import COVERAGE_MODES, GP_NORM_P95
from probes.rundir.files import CONFIG, METRICS, find_runs
from probes.rundir.reader import RunDir, as_lists, best_fid, verdict_and_onset
from stabgan.config import resolve_config
from stabgan.study.sweeps import SWEEP_KEYS, StudyOptions, reproduction_sweeps
from stabgan.sweep import FINISHED, expand, point_name

FID_TAGS = ("fid/domain", "fid/inception")  # the first one a run has is used
BAD_VERDICTS = tuple(v for v in VERDICTS if v != "healthy")  # unstable, collapsed


@dataclass
class RunRecord:
    name: str
    config: dict
    status: str | None
    verdict: str | None
    onset: int | None
    kinds: list[str]
    fid_min: float | None
    fid_tag: str | None
    coverage_last: float | None
    coverage_best: float | None
    ms_per_step: float | None
    steps: int | None
    wall_s: float | None
    started: float | None  # epoch s: summary.json's started_at, else config.json's mtime
    ended: float | None    # summary.json's ended_at, else metrics.jsonl's last write (file
                           # times do not survive a git clone; summary.json's own moves
                           # whenever `stabgan diagnose` updates its verdict)
    path: Path | None = None
    events: list = field(default_factory=list)  # diagnosis.json's events
    closest: dict = field(default_factory=dict)  # closest_readings of its metrics

    @property
    def finished(self) -> bool:
        """Completed or stopped on collapse: the runs the doc counts."""
        return self.status in FINISHED

    @property
    def event(self) -> dict:
        """The event behind the verdict: the first collapse, else the first warning ({} if none)."""
        collapses = [e for e in self.events if e.get("severity") == "collapse"]
        return (collapses or self.events or [{}])[0]

    @property
    def went_bad(self) -> int | None:
        """The step the run went bad: its collapse onset, else its first warning's step."""
        return self.onset if self.onset is not None else self.event.get("step")


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _clock(summary: dict, key: str, fallback: Path) -> float | None:
    """summary.json's ISO time `key` as epoch seconds, else the file's mtime (older runs)."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return datetime.datetime.fromisoformat(summary[key]).timestamp()
    try:
        return fallback.stat().st_mtime
    except OSError:
        return None


def read_run(run_dir: Path) -> RunRecord:
    """One run's record, reading each of its files once."""
    run = RunDir(run_dir)
    summary, diagnosis = run.summary, run.diagnosis
    verdict, onset = verdict_and_onset(summary, diagnosis)
    series = as_lists(run.series())
    tag = next((t for t in FID_TAGS if t in series), None)
    fid = best_fid(series, features=tag.split("/", 1)[1]) if tag else None
    coverage = _finite(series.get(COVERAGE_MODES, ((), ()))[1])
    events = diagnosis.get("events") or []
    kinds = list(dict.fromkeys(e.get("kind") for e in events
                               if e.get("severity") == "collapse" and e.get("kind")))
    step_s = summary.get("step_s_median")
    return RunRecord(
        name=run_dir.name, config=run.config, status=summary.get("status"),
        verdict=verdict, onset=onset, kinds=kinds,
        fid_min=fid.value if fid else None, fid_tag=tag if fid else None,
        coverage_last=coverage[-1] if coverage else None,
        coverage_best=max(coverage) if coverage else None,
        ms_per_step=step_s * 1000 if isinstance(step_s, (int, float)) else None,
        steps=summary.get("steps"), wall_s=summary.get("wall_s"),
        closest=closest_readings(series), started=_clock(summary, "started_at", run_dir / CONFIG),
        ended=_clock(summary, "ended_at", run_dir / METRICS) if summary else None, path=run_dir,
        events=events)


@dataclass
class Point:
    """The runs of one grid point over seeds."""
    key: tuple
    runs: list[RunRecord] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        return _finite(getattr(r, attr) for r in self.runs)

    def mean(self, attr: str) -> float | None:
        values = self.values(attr)
        return statistics.fmean(values) if values else None

    def spread(self, attr: str) -> float | None:
        """Max - min over seeds: the seed-to-seed noise this study can see."""
        values = self.values(attr)
        return max(values) - min(values) if len(values) > 1 else None

    @property
    def bad(self) -> int:
        """Runs whose verdict is not healthy (unstable or collapsed)."""
        return sum(r.verdict in BAD_VERDICTS for r in self.runs)

    @property
    def judged(self) -> int:
        return sum(r.verdict is not None for r in self.runs)


def group(records: list[RunRecord], key_fields: tuple[str, ...]) -> dict[tuple, Point]:
    """Runs by the values of key_fields in their config."""
    points: dict[tuple, Point] = {}
    for record in records:
        key = tuple(record.config.get(f) for f in key_fields)
        points.setdefault(key, Point(key)).runs.append(record)
    return points


@dataclass
class Sweep:
    """One sweep of the study as found on disk: its runs, and the runs it plans (name: config)."""
    name: str
    out: Path
    planned: dict[str, dict]
    records: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.records if r.finished]

    @property
    def unfinished(self) -> list[RunRecord]:
        return [r for r in self.records if not r.finished]

    @property
    def not_started(self) -> list[str]:
        found = {r.name for r in self.records}
        return [name for name in self.planned if name not in found]

    @cached_property
    def points(self) -> dict[tuple, Point]:
        """The finished runs by grid point."""
        return group(self.finished, SWEEP_KEYS[self.name])

    def planned_by(self, key_fields: tuple[str, ...]) -> dict[tuple, list[str]]:
        """The planned runs' names by the values of key_fields in their config."""
        found: dict[tuple, list[str]] = {}
        for name, config in self.planned.items():
            found.setdefault(tuple(config.get(f) for f in key_fields), []).append(name)
        return found


def load_sweeps(args: StudyOptions) -> dict[str, Sweep]:
    """Every sweep of the study, with whatever runs its folder holds (none if not started)."""
    return {name: Sweep(name, spec.out,
                        {point_name(v): resolve_config(spec.preset or "quick", **spec.base,
                                                       **v).to_dict()
                         for v in expand(spec.grid, spec.points)},
                        [read_run(d) for d in find_runs(spec.out)])
            for name, spec in reproduction_sweeps(args).items()}


def config_values(records: list[RunRecord], key: str) -> list:
    """The distinct values of a config field over records, sorted."""
    return sorted({r.config[key] for r in records if r.config.get(key) is not None}, key=str)



def closest_readings(series: dict) -> dict[str, float]:
    """How near a run came to instability, from its metrics: the largest gradient norm at x̂
    (p95), the largest |distance| after the first tenth of the run, and the largest growth of an
    involution kernel's max |h| and of a layer's σ0 over their first logged values."""
    out: dict[str, float] = {}
    p95 = _finite(series.get(GP_NORM_P95, ((), ()))[1])
    if p95:
        out["gp_p95_max"] = max(p95)
    steps, values = series.get("wgan/distance", ((), ()))
    late = _finite(v for st, v in zip(steps, values) if steps and st > steps[-1] / 10)
    if late:
        out["distance_late_max"] = max(abs(v) for v in late)

    def growth(suffix: str) -> float | None:
        ratios = []
        for tag, (_, vals) in series.items():
            vals = _finite(vals)
            if tag.endswith(suffix) and len(vals) > 3 and statistics.median(vals[:3]) > 0:
                ratios.append(max(vals) / statistics.median(vals[:3]))
        return max(ratios) if ratios else None

    for key, suffix in (("kernel_growth", "/max_abs"), ("sigma0_growth", "/sigma0")):
        value = growth(suffix)
        if value is not None:
            out[key] = value
    return out



@dataclass
class Timing:
    """How long a set of runs took on this machine, from their files."""
    runs: int
    span_s: float | None   # last summary.json written - first config.json written
    compute_s: float | None  # sum of the runs' own wall times
    ms_per_step: float | None
    peak: int              # most runs alive at once


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time (an interval ending as another starts does not count)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    alive = peak = 0
    for _, change in events:
        alive += change
        peak = max(peak, alive)
    return peak


def timing(records: list[RunRecord]) -> Timing:
    starts = [r.started for r in records if r.started is not None]
    ends = [r.ended for r in records if r.ended is not None]
    ms = [r.ms_per_step for r in records if r.ms_per_step is not None]
    return Timing(
        runs=len(records), span_s=max(ends) - min(starts) if starts and ends else None,
        compute_s=sum(walls) if (walls := _finite(r.wall_s for r in records)) else None,
        ms_per_step=statistics.median(ms) if ms else None,
        peak=peak_overlap([(r.started, r.ended) for r in records
                           if r.started is not None and r.ended is not None]))


