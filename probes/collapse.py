"""Collapse detection: pure functions over metric series -> events; an online wrapper.

    events = detect(metric_series(read_metrics(run_dir)))      # offline, pure
    diagnosis = diagnose_run(run_dir)                          # same, and writes diagnosis.json
    detector = OnlineDetector(run_dir); detector.update(step, scalars)   # inside a training loop

An event is `{"kind", "step", "severity": "warning"|"collapse", "evidence", "message"}`; `step`
is the onset (the first logged step of the sustained excursion), `evidence["detected_step"]`
the step at which it was confirmed. Kinds (docs/design.md): nan, divergence, gp_blowup,
mode_collapse, kernel_collapse, spectral_explosion.

Every detector but `nan` judges a tag against the run's own early baseline: the median and MAD
of that tag's logged points `warmup_points … warmup_points + baseline_points` (of ln x for
positive quantities with multiplicative noise: gradient norms, σ0, kernel statistics). A point
is out of band only when it is beyond `robust_z` robust standard deviations (1.4826·MAD, floored
at `scale_floor`·|median|) of the baseline *and* beyond a size threshold that has a meaning of
its own (×10 the baseline level, a gradient norm 10× away from 1, 60% of the modes lost, ...); an
event needs `sustain_points` out-of-band points, interrupted by at most `sustain_gaps` in-band
ones. Metrics that improve as training goes (coverage, pairwise diversity) are judged against
their best running median (over `sustain_points`) so far instead. A tag read more sparsely than
the run logs (σ0, diversity) needs proportionally fewer points. A tag that was never logged is
never judged.

`detect` replays the series through the same incremental state machine `OnlineDetector` runs,
so online and offline diagnoses agree step for step; an update costs O(number of tags).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from stabgan.runlog import DIAGNOSIS, SUMMARY, metric_series, read_json, read_metrics, write_json

KINDS = ("nan", "divergence", "gp_blowup", "mode_collapse", "kernel_collapse",
         "spectral_explosion")
VERDICTS = ("healthy", "unstable", "collapsed")
WARNING, COLLAPSE = "warning", "collapse"
NONFINITE_WEIGHTS = "weights/nonfinite"  # count of non-finite weight elements (G and D), logged by the trainer

# Tags shown beside an event's own tag in its message, when they were logged at that step.
CONTEXT_TAGS = ("wgan/distance", "loss/critic", "gp/norm_p95", "gp/norm_mean")
# The one context tag a message names (the first one logged), per kind.
MESSAGE_CONTEXT = {"divergence": ("gp/norm_p95", "gp/norm_mean"),
                   "gp_blowup": ("wgan/distance",), "spectral_explosion": ("wgan/distance",)}


@dataclass(frozen=True)
class Thresholds:
    """Detector settings, written into diagnosis.json. Defaults were tuned on synthetic series
    and healthy quick runs (tests/test_collapse.py, docs/collapse.md); `*_warn` / `*_collapse`
    pairs grade the same excursion (a warning comes first)."""
    # baseline and persistence, in logged points of each tag
    warmup_points: int = 1        # skipped: the first reading is taken before training settles
    baseline_points: int = 10     # points whose median/MAD are the run's own baseline
    sustain_points: int = 5       # out-of-band points before an event ...
    sustain_gaps: int = 1         # ... among which this many in-band ones may fall (if >= 4)
    robust_z: float = 4.0         # minimum distance from the baseline, in robust std (1.4826·MAD)
    scale_floor: float = 0.05     # robust std floor, as a fraction of |baseline median|
    # nan: any non-finite value in these tag groups (plus weights/nonfinite > 0), at once
    nan_groups: tuple[str, ...] = ("loss", "wgan", "gp", "weights", "grad", "spectra")
    # divergence: |x − baseline| in multiples of |baseline| (two-sided)
    divergence_tags: tuple[str, ...] = ("wgan/distance", "loss/critic")
    divergence_warn: float = 3.0
    divergence_collapse: float = 10.0
    # gp_blowup: gradient norm at x̂ at least f× away from 1 (above f or below 1/f)
    gp_tags: tuple[str, ...] = ("gp/norm_mean", "gp/norm_p95", "gp/norm_p50")
    gp_warn: float = 3.0
    gp_collapse: float = 10.0
    # mode_collapse: coverage/modes or diversity/pairwise below a fraction of their best so far
    # (both rise as G learns); diversity/dup_rate and coverage/kl rising by an amount
    mode_drop_warn: float = 0.6     # fraction of the best coverage/modes or diversity/pairwise
    mode_drop_collapse: float = 0.4
    dup_rise_warn: float = 0.2      # fraction of near-duplicate pairs above baseline
    dup_rise_collapse: float = 0.5
    kl_rise_warn: float = 0.5       # nats above the best (lowest) coverage/kl so far
    kl_rise_collapse: float = 1.0
    # kernel_collapse: entropy or spatial variance falling to a fraction of baseline,
    # near-zero taps rising to a fraction, or max |kernel| growing by a factor (saturation)
    kernel_drop_warn: float = 0.1
    kernel_drop_collapse: float = 0.01
    kernel_dead_warn: float = 0.9
    kernel_dead_collapse: float = 0.99
    kernel_growth_warn: float = 10.0
    kernel_growth_collapse: float = 100.0
    # spectral_explosion: σ0 (largest singular value) a factor above its baseline
    spectral_warn: float = 10.0
    spectral_collapse: float = 100.0

    def __post_init__(self):
        if not isinstance(self.sustain_gaps, int) or self.sustain_gaps < 0:
            raise ValueError(f"Thresholds.sustain_gaps={self.sustain_gaps!r} must be an "
                             f"integer >= 0")
        for name in ("warmup_points", "baseline_points", "sustain_points"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "warmup_points" else 1):
                raise ValueError(f"Thresholds.{name}={value!r} must be an integer >= "
                                 f"{0 if name == 'warmup_points' else 1}")
        for warn, collapse, rising in (("divergence_warn", "divergence_collapse", True),
                                       ("gp_warn", "gp_collapse", True),
                                       ("mode_drop_warn", "mode_drop_collapse", False),
                                       ("dup_rise_warn", "dup_rise_collapse", True),
                                       ("kl_rise_warn", "kl_rise_collapse", True),
                                       ("kernel_drop_warn", "kernel_drop_collapse", False),
                                       ("kernel_dead_warn", "kernel_dead_collapse", True),
                                       ("kernel_growth_warn", "kernel_growth_collapse", True),
                                       ("spectral_warn", "spectral_collapse", True)):
            w, c = getattr(self, warn), getattr(self, collapse)
            if not (w <= c if rising else w >= c):
                raise ValueError(f"Thresholds.{warn}={w!r} must be {'<=' if rising else '>='} "
                                 f"{collapse}={c!r} (a warning comes before a collapse)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- rules
# A rule turns one point, given the tag's reference (baseline or best so far), into a level:
# 0 in band, 1 warning, 2 collapse. It also says how to phrase the excursion.

@dataclass(frozen=True)
class _Rule:
    kind: str
    label: str                   # "critic divergence", used in messages
    matches: Callable[[str], bool]
    level: Callable[[float, "_Reference", Thresholds], int]
    log: bool = False            # positive, multiplicative-noise quantity: judge ln(x)
    reference: str = "baseline"  # baseline | best_max | best_min (best smoothed value so far)
    extreme: str = "abs"         # which value to report: abs (farthest), max, min


@dataclass
class _Reference:
    median: float                # of the baseline, in the rule's space (ln x for log rules)
    scale: float                 # robust std in that space, floored
    best: float                  # best smoothed value so far, in x (best_* rules)
    log: bool

    @property
    def center(self) -> float:
        """The baseline median as a value of the metric itself."""
        return math.exp(self.median) if self.log else self.median

    def z(self, x: float) -> float:
        """How many robust standard deviations x is from the baseline median."""
        return abs(_space(x, self.log) - self.median) / self.scale


def _space(x: float, log: bool) -> float:
    return (math.log(x) if x > 0 else -math.inf) if log else x


def _grade(value: float, warn: float, collapse: float, rising: bool = True) -> int:
    if rising:
        return 2 if value >= collapse else 1 if value >= warn else 0
    return 2 if value <= collapse else 1 if value <= warn else 0


def _band(x, ref, t):
    """Two-sided: |x − baseline| in multiples of |baseline|."""
    if ref.z(x) < t.robust_z:
        return 0
    return _grade(abs(x - ref.median) / max(abs(ref.median), ref.scale),
                  t.divergence_warn, t.divergence_collapse)


def _gp(x, ref, t):
    """Gradient norms f× away from 1 (either way), beyond the baseline's noise around 1."""
    distance = (abs(math.log(x)) if x > 0 else math.inf) if ref.log else abs(x - 1.0)
    if x < 0 or distance < t.robust_z * ref.scale:
        return 0
    return _grade(math.inf if x == 0 else max(x, 1.0 / x), t.gp_warn, t.gp_collapse)


def _drop(warn_attr, collapse_attr, use_best=False):
    """x falling to a fraction of its baseline, beyond its noise; or of its best so far (a
    sustained running median: the fraction alone decides, the noise is in the median)."""
    def level(x, ref, t):
        base = ref.best if use_best else ref.center
        if base <= 0 or x >= base or (not use_best and ref.z(x) < t.robust_z):
            return 0
        return _grade(x / base, getattr(t, warn_attr), getattr(t, collapse_attr), rising=False)
    return level


def _rise(warn_attr, collapse_attr, use_best=False):
    """x rising by an absolute amount above its baseline, beyond its noise (or above its best
    so far: the amount alone decides)."""
    def level(x, ref, t):
        base = ref.best if use_best else ref.center
        if x <= base or (not use_best and ref.z(x) < t.robust_z):
            return 0
        return _grade(x - base, getattr(t, warn_attr), getattr(t, collapse_attr))
    return level


def _above(warn_attr, collapse_attr):
    """x (a fraction) reaching an absolute level, beyond the baseline's noise."""
    def level(x, ref, t):
        if x <= ref.center or ref.z(x) < t.robust_z:
            return 0
        return _grade(x, getattr(t, warn_attr), getattr(t, collapse_attr))
    return level


def _growth(warn_attr, collapse_attr):
    """x growing by a factor over its baseline, beyond the baseline's noise (log rules)."""
    def level(x, ref, t):
        if x <= ref.center or ref.z(x) < t.robust_z:
            return 0
        return _grade(x / ref.center, getattr(t, warn_attr), getattr(t, collapse_attr))
    return level


def _stat(name):
    return lambda tag: tag.startswith("kernel/") and tag.rsplit("/", 1)[-1] == name


def _rules(t: Thresholds) -> list[_Rule]:
    mode, kernel = "mode collapse", "kernel collapse"
    return [
        _Rule("divergence", "critic divergence", lambda tag: tag in t.divergence_tags, _band),
        _Rule("gp_blowup", "gradient-penalty blow-up", lambda tag: tag in t.gp_tags, _gp,
              log=True),
        _Rule("mode_collapse", mode, lambda tag: tag == "coverage/modes",
              _drop("mode_drop_warn", "mode_drop_collapse", use_best=True),
              reference="best_max", extreme="min"),
        _Rule("mode_collapse", mode, lambda tag: tag == "coverage/kl",
              _rise("kl_rise_warn", "kl_rise_collapse", use_best=True),
              reference="best_min", extreme="max"),
        _Rule("mode_collapse", mode, lambda tag: tag == "diversity/pairwise",
              _drop("mode_drop_warn", "mode_drop_collapse", use_best=True),
              reference="best_max", extreme="min"),
        _Rule("mode_collapse", mode, lambda tag: tag == "diversity/dup_rate",
              _rise("dup_rise_warn", "dup_rise_collapse"), extreme="max"),
        _Rule("kernel_collapse", kernel, _stat("entropy"),
              _drop("kernel_drop_warn", "kernel_drop_collapse"), log=True, extreme="min"),
        _Rule("kernel_collapse", kernel, _stat("spatial_var"),
              _drop("kernel_drop_warn", "kernel_drop_collapse"), log=True, extreme="min"),
        _Rule("kernel_collapse", "kernel saturation", _stat("near_zero"),
              _above("kernel_dead_warn", "kernel_dead_collapse"), extreme="max"),
        _Rule("kernel_collapse", "kernel saturation", _stat("max_abs"),
              _growth("kernel_growth_warn", "kernel_growth_collapse"), log=True, extreme="max"),
        _Rule("spectral_explosion", "spectral explosion",
              lambda tag: tag.startswith("spectra/") and tag.endswith("/sigma0"),
              _growth("spectral_warn", "spectral_collapse"), log=True, extreme="max"),
    ]


# --------------------------------------------------------------------------- state machine

class _Watch:
    """One tag under one rule: baseline, best-so-far and the latest points' levels."""

    __slots__ = ("rule", "tag", "early", "ref", "recent", "sustain", "span", "latest",
                 "active", "baseline_steps")

    def __init__(self, rule: _Rule, tag: str):
        self.rule, self.tag = rule, tag
        self.early: list[tuple[int, float]] = []  # (step, x) until the baseline is frozen
        self.baseline_steps: list[int] = []
        self.ref: _Reference | None = None
        self.sustain = self.span = 0    # out-of-band points needed, within this many points
        self.recent: list[float] = []   # latest in-band points (best-so-far rules)
        self.latest: deque[tuple[int, int, float]] = deque()  # (step, level, x), span + 1
        self.active = [False, False]    # per level (warning, collapse): confirmed, still out

    def feed(self, step: int, x: float, t: Thresholds,
             log_interval: int | None) -> list[tuple[int, int, float, int]]:
        """Add a finite point; returns [(level, onset, extreme, previous step)] it confirms."""
        if self.ref is None:
            self.early.append((step, x))
            warmup, baseline, self.sustain = _counts(self.early, t, log_interval)
            self.span = self.sustain + (t.sustain_gaps if self.sustain >= 4 else 0)
            if len(self.early) >= warmup + baseline:
                window = [v for _, v in self.early[warmup:]]
                self.baseline_steps = [s for s, _ in self.early[warmup:]]
                log = self.rule.log and min(window) > 0  # ln needs a positive baseline
                values = [_space(v, log) for v in window]
                self.ref = _Reference(statistics.median(values), _robust_scale(values, t),
                                      statistics.median(window), log)
                self.recent = window[-self.sustain:]
                self.latest = deque([(self.early[-1][0], 0, self.early[-1][1])],
                                    maxlen=self.span + 1)
                self.early = []
            return []
        level = self.rule.level(x, self.ref, t)
        if level == 0 and self.rule.reference != "baseline":
            # best-so-far rules follow the metric as it improves: the best running median of
            # sustain in-band points (a best must be sustained too)
            self.recent = (self.recent + [x])[-self.sustain:]
            pick = max if self.rule.reference == "best_max" else min
            self.ref.best = pick(self.ref.best, statistics.median(self.recent))
        self.latest.append((step, level, x))
        window = list(self.latest)[-self.span:]
        confirmed = []
        for i, threshold in enumerate((1, 2)):
            out = [j for j, (_, lv, _) in enumerate(window) if lv >= threshold]
            if not out:
                self.active[i] = False
            elif (len(out) >= self.sustain and window[-1][1] >= threshold
                  and not self.active[i]):
                self.active[i] = True
                first = len(self.latest) - len(window) + out[0]
                previous = self.latest[first - 1][0] if first > 0 else window[out[0]][0]
                extreme = window[out[0]][2]
                for j in out:
                    extreme = self._more_extreme(extreme, window[j][2])
                confirmed.append((threshold, window[out[0]][0], extreme, previous))
        return confirmed

    def _more_extreme(self, a: float, b: float) -> float:
        how = self.rule.extreme
        if how == "max":
            return max(a, b)
        if how == "min":
            return min(a, b)
        return b if self.ref.z(b) > self.ref.z(a) else a

    def pending_onset(self) -> int | None:
        """First step of an out-of-band stretch (warning or worse) in the current window."""
        if self.ref is None:
            return None
        window = list(self.latest)[-self.span:]
        return next((step for step, level, _ in window if level >= 1), None)


def _counts(early: list[tuple[int, float]], t: Thresholds,
            log_interval: int | None) -> tuple[int, int, int]:
    """(warmup, baseline, sustain) in points of this tag. The Thresholds counts are in logged
    steps of the run; a tag read k times more sparsely (σ0, diversity) needs k times fewer
    points to cover the same steps, but at least 3 baseline points and 2 sustained ones."""
    k = 1
    if len(early) >= 2 and log_interval:
        k = max(1, round((early[1][0] - early[0][0]) / log_interval))
    return (math.ceil(t.warmup_points / k),
            max(math.ceil(t.baseline_points / k), min(3, t.baseline_points)),
            max(math.ceil(t.sustain_points / k), min(2, t.sustain_points)))


def _robust_scale(values: list[float], t: Thresholds) -> float:
    """1.4826·MAD (a standard deviation under Gaussian noise), floored."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return max(1.4826 * mad, t.scale_floor * abs(median), 1e-12)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


class DetectorState:
    """The incremental detector: feed logged steps in order, collect events.

    `detect` and `OnlineDetector` both run this; it has no I/O.
    """

    def __init__(self, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()
        self._rules = _rules(self.thresholds)
        self._watches: dict[str, list[_Watch]] = {}
        self._emitted: set[tuple[str, str]] = set()  # (kind, severity)
        self.events: list[dict] = []
        self.latest: dict[str, float] = {}
        self.last_step: int | None = None
        self.log_interval: int | None = None  # smallest step gap between logged steps

    def _watches_for(self, tag: str) -> list[_Watch]:
        watches = self._watches.get(tag)
        if watches is None:
            watches = self._watches[tag] = [_Watch(r, tag) for r in self._rules if r.matches(tag)]
        return watches

    def update(self, step: int, scalars: Mapping[str, float]) -> list[dict]:
        """Feed one logged step's scalars (any tags); returns the events it confirmed."""
        t = self.thresholds
        if self.last_step is not None and step > self.last_step:
            gap = step - self.last_step
            self.log_interval = gap if self.log_interval is None else min(self.log_interval, gap)
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        values = {tag: float(v) for tag, v in scalars.items() if _is_number(v)}
        self.latest.update(values)
        new: list[dict] = []

        # nan: non-finite losses or weights, reported at the step they are logged
        bad = {tag: v for tag, v in values.items()
               if tag.split("/", 1)[0] in t.nan_groups
               and (not math.isfinite(v) or (tag == NONFINITE_WEIGHTS and v > 0))}
        if bad and ("nan", COLLAPSE) not in self._emitted:
            new.append(self._nan_event(step, bad))

        for tag, x in values.items():
            if not math.isfinite(x):
                continue
            for watch in self._watches_for(tag):
                confirmed = watch.feed(step, x, t, self.log_interval)
                for level, onset, extreme, previous in sorted(confirmed, reverse=True):
                    severity = COLLAPSE if level == 2 else WARNING
                    kind = watch.rule.kind
                    if (kind, severity) in self._emitted or (
                            severity == WARNING and (kind, COLLAPSE) in self._emitted):
                        continue
                    new.append(self._event(watch, severity, onset, step, extreme, previous))
                    self._emitted.add((kind, severity))
        for event in new:
            self._emitted.add((event["kind"], event["severity"]))
        self.events.extend(new)
        self.events.sort(key=lambda e: (e["step"], e["severity"] != COLLAPSE))
        return new

    def _nan_event(self, step: int, bad: dict[str, float]) -> dict:
        shown = ", ".join(f"{tag} {_fmt(v)}" for tag, v in sorted(bad.items()))
        what = "weights" if set(bad) == {NONFINITE_WEIGHTS} else "values"
        return {"kind": "nan", "step": step, "severity": COLLAPSE,
                "evidence": {"tags": dict(sorted(bad.items())), "detected_step": step},
                "message": f"collapsed at step {step:,}: non-finite {what} ({shown})"}

    def _event(self, watch: _Watch, severity: str, onset: int, detected: int,
               extreme: float, previous: int) -> dict:
        ref = watch.ref
        baseline = ref.best if watch.rule.reference != "baseline" else ref.center
        context = {tag: self.latest[tag] for tag in CONTEXT_TAGS
                   if tag != watch.tag and tag in self.latest}
        evidence = {
            "tag": watch.tag,
            "baseline": baseline,
            "baseline_median": ref.center,
            "baseline_scale": ref.scale,       # robust std, of ln(value) for ratio quantities
            "log_scale": ref.log,
            "baseline_steps": [watch.baseline_steps[0], watch.baseline_steps[-1]],
            "reference": watch.rule.reference,
            "value": extreme,
            "step_before_onset": previous,  # the last logged step before the excursion
            "detected_step": detected,
            "context": context,
        }
        head = "collapsed" if severity == COLLAPSE else "warning"
        shown = next((tag for tag in MESSAGE_CONTEXT.get(watch.rule.kind, ()) if tag in context),
                     None)
        extra = f", {shown} {_fmt(context[shown])}" if shown else ""
        message = (f"{head} at step {onset:,}: {watch.rule.label} ({watch.tag} {_fmt(baseline)} → "
                   f"{_fmt(extreme)} within {detected - previous:,} steps{extra})")
        return {"kind": watch.rule.kind, "step": onset, "severity": severity,
                "evidence": evidence, "message": message}

    def pending_onset(self) -> int | None:
        """Earliest onset of an excursion that is out of band but not yet confirmed."""
        onsets = [w.pending_onset() for ws in self._watches.values() for w in ws]
        onsets = [s for s in onsets if s is not None]
        return min(onsets) if onsets else None

    def diagnosis(self) -> dict:
        return make_diagnosis(self.events, self.thresholds, self.last_step)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- public functions

def detect(series: Mapping[str, tuple[Iterable[int], Iterable[float]]],
           thresholds: Thresholds | None = None) -> list[dict]:
    """Events for a metric series (tag -> (steps, values), as `runlog.metric_series` returns).

    Pure: the series is replayed step by step through a fresh `DetectorState`. Events are
    sorted by onset step; at most one warning and one collapse per kind (a collapse makes its
    kind's later warning redundant).
    """
    by_step = _by_step(series)
    state = DetectorState(thresholds)
    for step in sorted(by_step):
        state.update(step, by_step[step])
    return state.events


def verdict(events: Iterable[dict]) -> tuple[str, int | None]:
    """(verdict, onset_step): collapsed at the earliest collapse event, else unstable/healthy."""
    events = list(events)
    collapses = [e["step"] for e in events if e["severity"] == COLLAPSE]
    if collapses:
        return "collapsed", min(collapses)
    return ("unstable" if events else "healthy"), None


def make_diagnosis(events: list[dict], thresholds: Thresholds | None = None,
                   last_step: int | None = None) -> dict:
    """The diagnosis.json object for a list of events."""
    name, onset = verdict(events)
    return {"verdict": name, "onset_step": onset, "events": list(events),
            "last_step": last_step, "thresholds": (thresholds or Thresholds()).to_dict()}


def diagnose_run(run_dir: Path | str, thresholds: Thresholds | None = None) -> dict:
    """Recompute the diagnosis from metrics.jsonl; write diagnosis.json atomically and set
    summary.json's "verdict" and "onset_step" (when summary.json exists). Works on runs still
    being written and on truncated files. Returns the diagnosis."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    state = DetectorState(thresholds)
    events = detect(metric_series(records), state.thresholds)
    diagnosis = make_diagnosis(events, state.thresholds,
                               max((r["step"] for r in records), default=None))
    write_json(run_dir / DIAGNOSIS, diagnosis)
    update_summary(run_dir, diagnosis)
    return diagnosis


def update_summary(run_dir: Path, diagnosis: dict) -> None:
    """Set summary.json's verdict and onset_step, keeping every other key (no-op without one)."""
    summary = read_json(Path(run_dir) / SUMMARY)
    if summary is not None:
        summary.update(verdict=diagnosis["verdict"], onset_step=diagnosis["onset_step"])
        write_json(Path(run_dir) / SUMMARY, summary)


def format_diagnosis(diagnosis: dict, run_dir: Path | str | None = None) -> str:
    """A few human lines: the verdict, then one line per event."""
    name = diagnosis["verdict"]
    where = f"{run_dir}: " if run_dir is not None else ""
    head = f"{where}{name}"
    if diagnosis.get("onset_step") is not None:
        head += f" (onset at step {diagnosis['onset_step']:,})"
    events = diagnosis.get("events", [])
    last = diagnosis.get("last_step")
    head += f"; {len(events)} event{'s' * (len(events) != 1)}"
    if last is not None:
        head += f" (metrics up to step {last:,})"
    return "\n".join([head] + [f"  {e['severity']:<8} {e['kind']:<18} {e['message']}"
                               for e in events])


class OnlineDetector:
    """The detector inside a training loop: `update(step, scalars)` per logged step.

    Keeps run_dir/diagnosis.json current: rewritten (atomically, about a millisecond) at
    every update, so it is never older than metrics.jsonl. On its first update it replays the
    run's earlier metrics (a resumed run), so its diagnosis equals `diagnose_run`'s.
    """

    def __init__(self, run_dir: Path | str | None = None, thresholds: Thresholds | None = None):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.state = DetectorState(thresholds)
        self._primed = False

    @property
    def events(self) -> list[dict]:
        return self.state.events

    @property
    def verdict(self) -> str:
        return verdict(self.state.events)[0]

    @property
    def onset_step(self) -> int | None:
        return verdict(self.state.events)[1]

    @property
    def collapsed(self) -> bool:
        return self.onset_step is not None

    def pending_onset(self) -> int | None:
        """Onset of an excursion being watched but not yet confirmed (None when in band)."""
        return self.state.pending_onset()

    def update(self, step: int, scalars: Mapping[str, float]) -> list[dict]:
        """Feed one logged step; returns the new events (usually none)."""
        if not self._primed:
            self._prime(step)
        new = self.state.update(step, scalars)
        self.write()
        return new

    def _prime(self, step: int) -> None:
        self._primed = True
        if self.run_dir is None:
            return
        earlier = metric_series(r for r in read_metrics(self.run_dir) if r["step"] < step)
        for event_step, scalars in sorted(_by_step(earlier).items()):
            self.state.update(event_step, scalars)

    def diagnosis(self) -> dict:
        return self.state.diagnosis()

    def write(self) -> dict:
        """Write diagnosis.json now (and return it)."""
        if not self._primed:  # never updated (e.g. a resumed run with no step left)
            self._prime(math.inf)
        diagnosis = self.diagnosis()
        if self.run_dir is not None:
            write_json(self.run_dir / DIAGNOSIS, diagnosis)
        return diagnosis

    def close(self) -> dict:
        """Write the final diagnosis.json and set summary.json's verdict and onset_step."""
        diagnosis = self.write()
        if self.run_dir is not None:
            update_summary(self.run_dir, diagnosis)
        return diagnosis


def _by_step(series) -> dict[int, dict[str, float]]:
    by_step: dict[int, dict[str, float]] = {}
    for tag, (steps, values) in series.items():
        for step, value in zip(steps, values):
            by_step.setdefault(int(step), {})[tag] = value
    return by_step


__all__ = ["KINDS", "VERDICTS", "Thresholds", "DetectorState", "OnlineDetector", "detect",
           "diagnose_run", "format_diagnosis", "make_diagnosis", "verdict", "NONFINITE_WEIGHTS"]
