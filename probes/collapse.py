"""Collapse detection: pure functions over metric series -> events; an online wrapper.

    events = detect(metric_series(read_metrics(run_dir)))      # offline, pure
    diagnosis = diagnose_run(run_dir)                          # same, and writes diagnosis.json
    detector = OnlineDetector(run_dir); detector.update(step, scalars)   # inside a training loop

An event is `{"kind", "step", "severity": "warning"|"collapse", "evidence", "first_signs",
"message"}`; `step` is the onset (the first logged step of the sustained excursion),
`evidence["detected_step"]` the step at which it was confirmed. Kinds (docs/design.md): nan,
divergence, gp_blowup, mode_collapse, kernel_collapse, spectral_explosion.

The band. Every logged tag (but `time/` and `weights/`) has a band that follows the run: the
median and MAD of its latest `baseline_points` in-band points, each joining `baseline_lag`
points after it was read (ln x for positive magnitudes). A point is out of band when it is
`robust_z` robust standard deviations from the median *and* `band_factor` times away from it
(a tag of any sign: that many times its typical magnitude), or when a rule finds it out of
band; such points never join. An excursion is therefore judged against the run as it was just
before it, however long ago the early transient was, and the transient itself, followed point
by point, raises nothing. An excursion that lasts `rebase_points` without any rule minding it
is the run's new level: the band re-centres on it.

The rules. A detector's tag is out of band only when it is beyond `robust_z` of its band *and*
beyond a size threshold that has a meaning of its own (×10 the band's level, a gradient norm
10× away from 1, 60% of the modes lost, ...); an event needs `sustain_points` such points,
interrupted by at most `sustain_gaps` in-band ones. Thresholds that are absolute (a gradient
norm far from 1, a fraction of dead taps) also keep the points past them out of the band, so a
slow drift past them is still caught. Metrics that improve as training goes (coverage,
pairwise diversity) are judged against their best running median so far. A tag read more
sparsely than the run logs (σ0, diversity) counts proportionally fewer points. A tag that was
never logged is never judged.

First signs. Each event lists the tags that were out of their band at its onset, and had been
since a step at or before it, in time order: step, lead over the onset, size, layer.

Grading. A degenerate layer (kernel_collapse, spectral_explosion) is a collapse of the run
only when the samples show it too: when the sample readings (coverage, diversity) are logged
and all in band at its confirmation, it is a warning about that layer.

`detect` replays the series through the same incremental state machine `OnlineDetector` runs,
so online and offline diagnoses agree step for step; an update costs O(number of tags).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from stabgan.runlog import DIAGNOSIS, SUMMARY, metric_series, read_json, read_metrics, write_json

KINDS = ("nan", "divergence", "gp_blowup", "mode_collapse", "kernel_collapse",
         "spectral_explosion")
LAYER_KINDS = ("kernel_collapse", "spectral_explosion")  # about one layer; graded by the samples
VERDICTS = ("healthy", "unstable", "collapsed")
WARNING, COLLAPSE = "warning", "collapse"
NONFINITE_WEIGHTS = "weights/nonfinite"  # count of non-finite weight elements (G and D), logged by the trainer

# Tags shown beside an event's own tag in its message, when they were logged at that step.
CONTEXT_TAGS = ("wgan/distance", "loss/critic", "gp/norm_p95", "gp/norm_mean")
# The one context tag a message names (the first one logged), per kind.
MESSAGE_CONTEXT = {"divergence": ("gp/norm_p95", "gp/norm_mean"),
                   "gp_blowup": ("wgan/distance",), "spectral_explosion": ("wgan/distance",)}
TYPICAL_DECAY = 0.98  # per point: the running mean |x| that scales a linear tag's band
# Tags without a rule whose band is in ln x: positive magnitudes with multiplicative noise
# (README's readings table); every other tag without a rule is judged as it is.
RATIO_TAGS = ("gp/norm_*", "gp/penalty", "critic/*_std", "kernel/*/std", "kernel/*/max_abs",
              "kernel/*/entropy", "kernel/*/*_var", "kernel/*/*_norm", "spectra/*", "grad/*",
              "update/*", "diversity/pairwise*", "fid/*")


@dataclass(frozen=True)
class Thresholds:
    """Detector settings, written into diagnosis.json. Defaults were tuned on synthetic series
    and real quick runs (tests/test_collapse.py, docs/collapse.md); `*_warn` / `*_collapse`
    pairs grade the same excursion (a warning comes first). Counts are in logged points."""
    # the band every tag is judged against
    warmup_points: int = 1        # skipped: the first reading is taken before training settles
    baseline_points: int = 20     # points whose median/MAD are the band
    baseline_lag: int = 10        # a point joins the band this many points after it is read
    rebase_points: int = 30       # an excursion this long that no rule minds: the new level
    robust_z: float = 4.0         # out of band: this many robust std (1.4826·MAD) from the median
    band_factor: float = 2.0      # ... and by this factor (x/band; for a tag of any sign,
    #                               |x − band| ≥ (factor − 1)·its typical |value|)
    scale_floor: float = 0.05     # robust std floor: ln units for positive tags, else this
    #                               fraction of the tag's typical |value|
    min_change: float = 1e-3      # a tag of any sign moving less than this stays in band (a
    #                               fraction of taps or samples near 0 is noise there)
    untracked: tuple[str, ...] = ("time/", "weights/")  # tag prefixes with no band (no rule)
    # events
    sustain_points: int = 5       # out-of-band points before an event ...
    sustain_gaps: int = 1         # ... among which this many in-band ones may fall (if >= 4)
    # first signs: tags out of band at an event's onset, since a step at or before it
    sign_points: int = 3          # out-of-band points before an excursion counts as a sign
    # nan: any non-finite value in these tag groups (plus weights/nonfinite > 0), at once
    nan_groups: tuple[str, ...] = ("loss", "wgan", "gp", "weights", "grad", "spectra")
    # divergence: |x − band| in multiples of |band| (two-sided)
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
    dup_rise_warn: float = 0.2      # fraction of near-duplicate pairs above the band
    dup_rise_collapse: float = 0.5
    kl_rise_warn: float = 0.5       # nats above the best (lowest) coverage/kl so far
    kl_rise_collapse: float = 1.0
    # kernel_collapse: entropy or spatial variance falling to a fraction of the band,
    # near-zero taps rising to a fraction, or max |kernel| growing by a factor (saturation)
    kernel_drop_warn: float = 0.2
    kernel_drop_collapse: float = 0.01
    kernel_dead_warn: float = 0.9
    kernel_dead_collapse: float = 0.99
    kernel_growth_warn: float = 10.0
    kernel_growth_collapse: float = 100.0
    # spectral_explosion: σ0 (largest singular value) a factor above its band
    spectral_warn: float = 10.0
    spectral_collapse: float = 100.0

    def __post_init__(self):
        minimum = {"warmup_points": 0, "baseline_lag": 0, "sustain_gaps": 0,
                   "baseline_points": 1, "sustain_points": 1, "rebase_points": 1,
                   "sign_points": 1}
        for name, low in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"Thresholds.{name}={value!r} must be an integer >= {low}")
        if not self.band_factor > 1:
            raise ValueError(f"Thresholds.band_factor={self.band_factor!r} must be > 1")
        if not self.min_change >= 0:
            raise ValueError(f"Thresholds.min_change={self.min_change!r} must be >= 0")
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
# A rule grades one point against the tag's band (or its best so far): 0 in band, 1 warning,
# 2 collapse by the size threshold alone, and whether the point is beyond the band's noise.
# The point's level is the grade when it is beyond the noise, else 0.

@dataclass(frozen=True)
class _Rule:
    kind: str
    label: str                   # "critic divergence", used in messages
    matches: Callable[[str], bool]
    grade: Callable[[float, "_Band", float | None, Thresholds], tuple[int, bool]]
    log: bool = False            # positive, multiplicative-noise quantity: judge ln(x)
    reference: str = "band"      # band | best_max | best_min (best smoothed value so far)
    extreme: str = "abs"         # which value to report: abs (farthest), max, min
    absolute: bool = False       # the threshold means the same in any run: points past it
    #                              never join the band, even within its noise


@dataclass
class _Band:
    """A tag's band: median and robust std of its admitted points, in the tag's space."""
    median: float
    scale: float
    log: bool
    steps: tuple[int, int]       # first and last step of the points it was computed from

    @property
    def center(self) -> float:
        """The band's median as a value of the metric itself."""
        return math.exp(self.median) if self.log else self.median

    def z(self, x: float) -> float:
        """How many robust standard deviations x is from the band's median."""
        return abs(_space(x, self.log) - self.median) / self.scale


def _space(x: float, log: bool) -> float:
    return (math.log(x) if x > 0 else -math.inf) if log else x


def _grade(value: float, warn: float, collapse: float, rising: bool = True) -> int:
    if rising:
        return 2 if value >= collapse else 1 if value >= warn else 0
    return 2 if value <= collapse else 1 if value <= warn else 0


def _divergence(x, band, best, t):
    """Two-sided: |x − band| in multiples of |band|."""
    size = abs(x - band.median) / max(abs(band.median), band.scale)
    return _grade(size, t.divergence_warn, t.divergence_collapse), band.z(x) >= t.robust_z


def _gp(x, band, best, t):
    """Gradient norms f× away from 1 (either way), beyond the band's noise around 1."""
    if x < 0:
        return 0, False
    distance = (abs(math.log(x)) if x > 0 else math.inf) if band.log else abs(x - 1.0)
    grade = _grade(math.inf if x == 0 else max(x, 1.0 / x), t.gp_warn, t.gp_collapse)
    return grade, distance >= t.robust_z * band.scale


def _drop(warn_attr, collapse_attr, use_best=False):
    """x falling to a fraction of its band, beyond its noise; or of its best so far (a
    sustained running median: the fraction alone decides, the noise is in the median)."""
    def grade(x, band, best, t):
        base = best if use_best else band.center
        if base <= 0 or x >= base:
            return 0, False
        level = _grade(x / base, getattr(t, warn_attr), getattr(t, collapse_attr), rising=False)
        return level, use_best or band.z(x) >= t.robust_z
    return grade


def _rise(warn_attr, collapse_attr, use_best=False):
    """x rising by an absolute amount above its band, beyond its noise (or above its best
    so far: the amount alone decides)."""
    def grade(x, band, best, t):
        base = best if use_best else band.center
        if x <= base:
            return 0, False
        level = _grade(x - base, getattr(t, warn_attr), getattr(t, collapse_attr))
        return level, use_best or band.z(x) >= t.robust_z
    return grade


def _above(warn_attr, collapse_attr):
    """x (a fraction) reaching an absolute level, beyond the band's noise."""
    def grade(x, band, best, t):
        if x <= band.center:
            return 0, False
        level = _grade(x, getattr(t, warn_attr), getattr(t, collapse_attr))
        return level, band.z(x) >= t.robust_z
    return grade


def _growth(warn_attr, collapse_attr):
    """x growing by a factor over its band, beyond the band's noise (log rules)."""
    def grade(x, band, best, t):
        if x <= band.center:
            return 0, False
        level = _grade(x / band.center, getattr(t, warn_attr), getattr(t, collapse_attr))
        return level, band.z(x) >= t.robust_z
    return grade


def _stat(name):
    return lambda tag: tag.startswith("kernel/") and tag.rsplit("/", 1)[-1] == name


def _rules(t: Thresholds) -> list[_Rule]:
    mode, kernel = "mode collapse", "kernel collapse"
    return [
        _Rule("divergence", "critic divergence", lambda tag: tag in t.divergence_tags,
              _divergence),
        _Rule("gp_blowup", "gradient-penalty blow-up", lambda tag: tag in t.gp_tags, _gp,
              log=True, absolute=True),
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
              _above("kernel_dead_warn", "kernel_dead_collapse"), extreme="max", absolute=True),
        _Rule("kernel_collapse", "kernel saturation", _stat("max_abs"),
              _growth("kernel_growth_warn", "kernel_growth_collapse"), log=True, extreme="max"),
        _Rule("spectral_explosion", "spectral explosion",
              lambda tag: tag.startswith("spectra/") and tag.endswith("/sigma0"),
              _growth("spectral_warn", "spectral_collapse"), log=True, extreme="max"),
    ]


def layer_of(tag: str) -> str | None:
    """The layer a tag reads (`kernel/g.inv1/max_abs` -> g.inv1, `grad/d.body.1.0` ->
    d.body.1.0), or None for a reading of the whole run."""
    group, _, rest = tag.partition("/")
    if group in ("kernel", "spectra") and rest.count("/") == 1:
        return rest.split("/")[0]
    if group in ("grad", "update") and rest and "/" not in rest:
        return rest
    return None


# --------------------------------------------------------------------------- state machine

@dataclass(frozen=True)
class _Counts:
    """A tag's counts in its own points (a sparse tag counts proportionally fewer)."""
    warmup: int
    window: int
    lag: int
    sustain: int
    span: int       # the window an event's sustain points must fall in
    rebase: int
    sign: int


def _counts(first_gap: int | None, t: Thresholds, log_interval: int | None) -> _Counts:
    """The Thresholds counts are in logged steps of the run; a tag read k times more sparsely
    (σ0, diversity) needs k times fewer points to cover the same steps, but at least 3 band
    points and 2 sustained ones."""
    k = 1
    if first_gap and log_interval:
        k = max(1, round(first_gap / log_interval))
    window = max(math.ceil(t.baseline_points / k), min(3, t.baseline_points))
    sustain = max(math.ceil(t.sustain_points / k), min(2, t.sustain_points))
    return _Counts(warmup=math.ceil(t.warmup_points / k), window=window,
                   lag=math.ceil(t.baseline_lag / k),
                   rebase=max(math.ceil(t.rebase_points / k), window),
                   sustain=sustain, span=sustain + (t.sustain_gaps if sustain >= 4 else 0),
                   sign=max(math.ceil(t.sign_points / k), min(2, t.sign_points)))


class _Stretch:
    """The current run of out-of-band points of one tag (ends after enough in-band ones)."""

    __slots__ = ("start", "points", "out", "in_band", "extreme", "extreme_z", "ruled", "values")

    def __init__(self, step: int, x: float, z: float, window: int):
        self.start, self.points, self.out, self.in_band = step, 0, 0, 0
        self.extreme, self.extreme_z = x, z
        self.ruled = False                          # a rule found a point of it out of band
        self.values: deque = deque(maxlen=window)   # (step, value in the tag's space)


class _Track:
    """One tag's band, following the run with a lag, and its current excursion."""

    __slots__ = ("tag", "log", "improves", "counts", "early", "band", "window", "pending",
                 "typical", "stretch", "initial")

    def __init__(self, tag: str, rule: _Rule | None):
        self.tag = tag
        self.log = rule.log if rule else any(fnmatch.fnmatchcase(tag, p) for p in RATIO_TAGS)
        # the direction a best-so-far rule calls improvement: not an excursion (+1 rising)
        self.improves = {"best_max": 1, "best_min": -1}.get(rule.reference, 0) if rule else 0
        self.counts: _Counts | None = None
        self.early: list[tuple[int, float]] = []   # (step, x) until the band exists
        self.band: _Band | None = None
        self.window: deque = deque()        # the band's (step, value in the tag's space)
        self.pending: deque = deque()       # (step, value, joins?) read < lag points ago
        self.typical = 0.0                  # running mean |x| (a linear tag's scale)
        self.stretch: _Stretch | None = None
        self.initial: list[float] = []      # the first band's values (best-so-far rules)

    def collect(self, step: int, x: float, t: Thresholds, log_interval: int | None) -> bool:
        """Gather points until the first band exists; True when it has just been made."""
        self.early.append((step, x))
        gap = self.early[1][0] - self.early[0][0] if len(self.early) >= 2 else None
        self.counts = c = _counts(gap, t, log_interval)
        if len(self.early) < c.warmup + c.window:
            return False
        points = self.early[c.warmup:]
        values = [v for _, v in points]
        self.log = self.log and min(values) > 0  # ln needs a positive band
        self.window = deque(((s, _space(v, self.log)) for s, v in points), maxlen=c.window)
        self.typical = sum(abs(v) for v in values) / len(values)
        self.initial = values
        self.early = []
        self._refresh(t)
        return True

    def _refresh(self, t: Thresholds) -> None:
        values = [v for _, v in self.window]
        median = _median(values)
        mad = _median([abs(v - median) for v in values])
        floor = t.scale_floor if self.log else t.scale_floor * max(abs(median), self.typical)
        self.band = _Band(median, max(1.4826 * mad, floor, 1e-12), self.log,
                          (self.window[0][0], self.window[-1][0]))

    def out_of_band(self, x: float, z: float, t: Thresholds) -> bool:
        """Beyond the band's noise and by band_factor at least (x/band for positive tags,
        |x − band| in multiples of the tag's typical magnitude, and min_change, otherwise), and
        not in the direction a best-so-far rule calls improvement."""
        band = self.band
        if z < t.robust_z or (x - band.center) * self.improves > 0:
            return False
        if self.log:
            return abs(_space(x, True) - band.median) >= math.log(t.band_factor)
        size = (t.band_factor - 1) * max(abs(band.median), self.typical)
        return abs(x - band.median) >= max(size, t.min_change)

    def advance(self, step: int, x: float, t: Thresholds, ruled: bool) -> None:
        """Move the band past one judged point. ruled: a rule found it out of band (or past
        an absolute threshold). Out-of-band points never join the band, in-band ones join
        `lag` points after they were read; an excursion that lasts `rebase` points and that
        no rule minds is the run's new level."""
        c = self.counts
        z = self.band.z(x)
        out = ruled or self.out_of_band(x, z, t)
        if not self.log:
            self.typical = TYPICAL_DECAY * self.typical + (1 - TYPICAL_DECAY) * abs(x)
        value = _space(x, self.log)
        stretch = self.stretch
        if out:
            if stretch is None:
                stretch = self.stretch = _Stretch(step, x, z, c.window)
            stretch.out += 1
            stretch.in_band = 0
            if z > stretch.extreme_z:
                stretch.extreme, stretch.extreme_z = x, z
        elif stretch is not None:
            stretch.in_band += 1
            if stretch.in_band > t.sustain_gaps:
                stretch = self.stretch = None
        if stretch is not None:
            stretch.points += 1
            stretch.ruled |= ruled
            stretch.values.append((step, value))
            if stretch.points >= c.rebase and not stretch.ruled:
                self.window = deque(stretch.values, maxlen=c.window)
                self.pending.clear()
                self.stretch = None
                self._refresh(t)
                return
        self.pending.append((step, value, not out))
        if len(self.pending) > c.lag:
            joined_step, joined, joins = self.pending.popleft()
            if joins:
                self.window.append((joined_step, joined))
                self._refresh(t)

    def sign(self, onset: int) -> dict | None:
        """This tag as a first sign of an event with this onset: out of band since a step at
        or before it, for at least `sign` points."""
        stretch = self.stretch
        if stretch is None or stretch.start > onset or stretch.out < self.counts.sign:
            return None
        band = self.band
        factor = stretch.extreme / band.center if self.log else None
        return {"tag": self.tag, "layer": layer_of(self.tag), "step": stretch.start,
                "lead": onset - stretch.start, "baseline": band.center,
                "value": stretch.extreme, "factor": factor, "z": stretch.extreme_z}


class _Watch:
    """One tag under one rule: best-so-far and the latest points' levels."""

    __slots__ = ("rule", "tag", "best", "recent", "latest", "active")

    def __init__(self, rule: _Rule, track: _Track):
        self.rule, self.tag = rule, track.tag
        sustain = track.counts.sustain
        self.recent = track.initial[-sustain:]  # latest in-band points (best-so-far rules)
        self.best = _median(track.initial)
        last_step = track.window[-1][0]
        self.latest: deque[tuple[int, int, float]] = deque([(last_step, 0, track.initial[-1])],
                                                           maxlen=track.counts.span + 1)
        self.active = [False, False]    # per level (warning, collapse): confirmed, still out

    def judge(self, step: int, x: float, band: _Band, counts: _Counts,
              t: Thresholds) -> tuple[int, int, list[tuple[int, int, float, int]]]:
        """(grade by the threshold alone, level, [(level, onset, extreme, previous step)]
        confirmed by this point)."""
        best = self.best if self.rule.reference != "band" else None
        grade, beyond_noise = self.rule.grade(x, band, best, t)
        level = grade if beyond_noise else 0
        if level == 0 and best is not None:
            # best-so-far rules follow the metric as it improves: the best running median of
            # sustain in-band points (a best must be sustained too)
            self.recent = (self.recent + [x])[-counts.sustain:]
            pick = max if self.rule.reference == "best_max" else min
            self.best = pick(self.best, _median(self.recent))
        self.latest.append((step, level, x))
        window = list(self.latest)[-counts.span:]
        confirmed = []
        for i, threshold in enumerate((1, 2)):
            out = [j for j, (_, lv, _) in enumerate(window) if lv >= threshold]
            if not out:
                self.active[i] = False
            elif (len(out) >= counts.sustain and window[-1][1] >= threshold
                  and not self.active[i]):
                self.active[i] = True
                first = len(self.latest) - len(window) + out[0]
                previous = self.latest[first - 1][0] if first > 0 else window[out[0]][0]
                extreme = window[out[0]][2]
                for j in out:
                    extreme = self._more_extreme(extreme, window[j][2], band)
                confirmed.append((threshold, window[out[0]][0], extreme, previous))
        return grade, level, confirmed

    def _more_extreme(self, a: float, b: float, band: _Band) -> float:
        how = self.rule.extreme
        if how == "max":
            return max(a, b)
        if how == "min":
            return min(a, b)
        return b if band.z(b) > band.z(a) else a

    def pending_onset(self, span: int) -> int | None:
        """First step of an out-of-band stretch (warning or worse) in the current window."""
        return next((step for step, level, _ in list(self.latest)[-span:] if level >= 1), None)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def sign_size(sign: dict) -> str:
    """A first sign's excursion in a few characters: ×12, ÷8.5, or 3.1 → -2.4."""
    factor = sign.get("factor")
    if factor is not None and math.isfinite(factor) and factor > 0:
        return f"×{_fmt(factor)}" if factor >= 1 else f"÷{_fmt(1 / factor)}"
    return f"{_fmt(sign['baseline'])} → {_fmt(sign['value'])}"


def sign_text(sign: dict) -> str:
    """`kernel/g.inv1/max_abs ×12`"""
    return f"{sign['tag']} {sign_size(sign)}"


class DetectorState:
    """The incremental detector: feed logged steps in order, collect events.

    `detect` and `OnlineDetector` both run this; it has no I/O.
    """

    def __init__(self, thresholds: Thresholds | None = None):
        self.thresholds = thresholds or Thresholds()
        self._rules = _rules(self.thresholds)
        self._tracks: dict[str, _Track] = {}
        self._watches: dict[str, list[_Watch]] = {}
        self._emitted: set[tuple[str, str]] = set()  # (kind, severity or "layer")
        self.events: list[dict] = []
        self.latest: dict[str, float] = {}
        self.last_step: int | None = None
        self.log_interval: int | None = None  # smallest step gap between logged steps

    def _track_for(self, tag: str) -> _Track:
        track = self._tracks.get(tag)
        if track is None:
            rule = next((r for r in self._rules if r.matches(tag)), None)
            track = self._tracks[tag] = _Track(tag, rule)
        return track

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

        # every tag moves first, so an event's first signs see this step whole
        confirmed = []
        for tag in sorted(values):
            x = values[tag]
            if not math.isfinite(x) or tag.startswith(t.untracked):
                continue
            track = self._track_for(tag)
            if track.band is None:
                if track.collect(step, x, t, self.log_interval):
                    self._watches[tag] = [_Watch(r, track) for r in self._rules
                                          if r.matches(tag)]
                continue
            blocked = False
            for watch in self._watches[tag]:
                grade, level, found = watch.judge(step, x, track.band, track.counts, t)
                blocked |= level > 0 or (grade > 0 and watch.rule.absolute)
                confirmed += [(watch, *c) for c in found]
            track.advance(step, x, t, blocked)

        if bad and ("nan", COLLAPSE) not in self._emitted:
            new.append(self._nan_event(step, bad))
            self._emitted.add(("nan", COLLAPSE))
        for watch, level, onset, extreme, previous in sorted(
                confirmed, key=lambda c: (-c[1], c[0].tag, c[0].rule.kind)):
            severity = COLLAPSE if level == 2 else WARNING
            kind = watch.rule.kind
            key = (kind, severity)
            if severity == COLLAPSE and kind in LAYER_KINDS and self._samples_unhurt():
                key = (kind, "layer")
            if key in self._emitted or (severity == WARNING and (
                    (kind, COLLAPSE) in self._emitted or (kind, "layer") in self._emitted)):
                continue
            graded = key[1] == "layer"
            new.append(self._event(watch, WARNING if graded else severity, onset, step,
                                   extreme, previous, graded))
            self._emitted.add(key)
        self.events.extend(new)
        self.events.sort(key=lambda e: (e["step"], e["severity"] != COLLAPSE))
        return new

    def _samples_unhurt(self) -> bool:
        """The sample readings (coverage, diversity) are logged and all in band now, and none
        has raised a mode-collapse warning."""
        watches = [w for ws in self._watches.values() for w in ws
                   if w.rule.kind == "mode_collapse"]
        if not watches or ("mode_collapse", WARNING) in self._emitted:
            return False
        return all(w.pending_onset(self._tracks[w.tag].counts.span) is None for w in watches)

    def first_signs(self, onset: int) -> list[dict]:
        """Every tag out of its band at `onset` since a step at or before it, earliest first."""
        signs = [s for track in self._tracks.values() if track.band is not None
                 for s in [track.sign(onset)] if s is not None]
        return sorted(signs, key=lambda s: (s["step"], -s["z"], s["tag"]))

    def watching(self) -> dict | None:
        """The earliest excursion under way now (a first sign before any event), or None."""
        signs = self.first_signs(self.last_step) if self.last_step is not None else []
        return signs[0] if signs else None

    def _nan_event(self, step: int, bad: dict[str, float]) -> dict:
        shown = ", ".join(f"{tag} {_fmt(v)}" for tag, v in sorted(bad.items()))
        what = "weights" if set(bad) == {NONFINITE_WEIGHTS} else "values"
        signs = self.first_signs(step)
        return {"kind": "nan", "step": step, "severity": COLLAPSE,
                "evidence": {"tags": dict(sorted(bad.items())), "detected_step": step},
                "first_signs": signs,
                "message": f"collapsed at step {step:,}: non-finite {what} ({shown})"
                           + _first_sign_clause(signs, None, step)}

    def _event(self, watch: _Watch, severity: str, onset: int, detected: int,
               extreme: float, previous: int, graded: bool) -> dict:
        band = self._tracks[watch.tag].band
        reference = band.center if watch.rule.reference == "band" else watch.best
        context = {tag: self.latest[tag] for tag in CONTEXT_TAGS
                   if tag != watch.tag and tag in self.latest}
        layer = layer_of(watch.tag)
        evidence = {
            "tag": watch.tag,
            "layer": layer,
            "baseline": reference,
            "baseline_median": band.center,
            "baseline_scale": band.scale,      # robust std, of ln(value) for ratio quantities
            "log_scale": band.log,
            "baseline_steps": list(band.steps),
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
        where = f" in {layer}" if layer and watch.rule.kind in LAYER_KINDS else ""
        message = (f"{head} at step {onset:,}: {watch.rule.label}{where} ({watch.tag} "
                   f"{_fmt(reference)} → {_fmt(extreme)} within {detected - previous:,} "
                   f"steps{extra})")
        if graded:
            evidence["graded"] = "layer only: the sample readings are in band"
            message += "; samples unaffected (coverage and diversity in band), so a warning " \
                       "about the layer, not a collapse of the run"
        signs = self.first_signs(onset)
        message += _first_sign_clause(signs, watch.tag, onset)
        return {"kind": watch.rule.kind, "step": onset, "severity": severity,
                "evidence": evidence, "first_signs": signs, "message": message}

    def pending_onset(self) -> int | None:
        """Earliest onset of an excursion that is out of band but not yet confirmed."""
        onsets = [w.pending_onset(self._tracks[tag].counts.span)
                  for tag, ws in self._watches.items() for w in ws]
        onsets = [s for s in onsets if s is not None]
        return min(onsets) if onsets else None

    def diagnosis(self) -> dict:
        return make_diagnosis(self.events, self.thresholds, self.last_step)


def _first_sign_clause(signs: list[dict], own_tag: str | None, onset: int) -> str:
    """"; first sign at step 1,520: kernel/g.inv1/max_abs ×12" — unless the only news is the
    event's own tag leaving its band at the onset."""
    first = next((s for s in signs if s["step"] < onset or s["tag"] != own_tag), None)
    if first is None:
        return ""
    return f"; first sign at step {first['step']:,}: {sign_text(first)}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------- public functions

def detect(series: Mapping[str, tuple[Iterable[int], Iterable[float]]],
           thresholds: Thresholds | None = None) -> list[dict]:
    """Events for a metric series (tag -> (steps, values), as `runlog.metric_series` returns).

    Pure: the series is replayed step by step through a fresh `DetectorState`. Events are
    sorted by onset step; at most one warning and one collapse per kind (a collapse makes its
    kind's later warning redundant; a layer graded down by the samples adds one warning).
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
    thresholds = thresholds or Thresholds()
    events = detect(metric_series(records), thresholds)
    diagnosis = make_diagnosis(events, thresholds,
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


SIGNS_SHOWN = 3  # first signs per event in format_diagnosis


def format_diagnosis(diagnosis: dict, run_dir: Path | str | None = None) -> str:
    """A few human lines: the verdict, then one line per event and its first signs."""
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
    lines = [head]
    for event in events:
        lines.append(f"  {event['severity']:<8} {event['kind']:<18} {event['message']}")
        signs = event.get("first_signs") or []
        if signs:
            shown = "; ".join(
                f"step {s['step']:,} {sign_text(s)}"
                + (f" [{s['layer']}]" if s.get("layer") else "")
                + (f", {s['lead']:,} steps before" if s["lead"] else ", at the onset")
                for s in signs[:SIGNS_SHOWN])
            more = f" (+{len(signs) - SIGNS_SHOWN} more)" if len(signs) > SIGNS_SHOWN else ""
            lines.append(f"  {'':<8} {'':<18} first signs: {shown}{more}")
    return "\n".join(lines)


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

    def first_sign(self) -> dict | None:
        """What a user should look at now: the first sign of the earliest collapse (or of the
        first warning), else the earliest tag out of its band at the latest step."""
        events = self.state.events
        collapses = [e for e in events if e["severity"] == COLLAPSE]
        for event in collapses[:1] or events[:1]:
            if event.get("first_signs"):
                return event["first_signs"][0]
        return self.state.watching()

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


__all__ = ["KINDS", "LAYER_KINDS", "VERDICTS", "Thresholds", "DetectorState", "OnlineDetector",
           "detect", "diagnose_run", "format_diagnosis", "make_diagnosis", "verdict",
           "layer_of", "sign_size", "sign_text", "NONFINITE_WEIGHTS"]
