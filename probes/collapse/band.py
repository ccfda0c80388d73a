"""The band every logged tag is judged against, and the excursions out of it.

A `Track` follows one tag: the rules that judge it, its band (median and robust std of its
latest in-band points, joining with a lag; ln x for positive magnitudes), its current
out-of-band stretch, and re-basing when an excursion no rule minds lasts long enough. A
`Watch` applies one rule to a tracked tag and confirms sustained excursions (the events' raw
material). No I/O.
"""
from __future__ import annotations

import bisect
import fnmatch
import math
from collections import deque
from dataclasses import dataclass

from probes.collapse.rules import Rule, Thresholds, layer_of
from probes.objectives import PENALTIES
from probes.readings import (FID, GRAD, KERNEL_ENTROPY, KERNEL_MAX_ABS, UPDATE, kernel_tag,
                             penalty_tag)

TYPICAL_DECAY = 0.98  # per point: the running mean |x| that scales a linear tag's band
# Tags without a rule whose band is in ln x: positive magnitudes with multiplicative noise
# (README's readings table); every other tag without a rule is judged as it is.
_TERMS = sorted({term.name for terms in PENALTIES.values() for term in terms})
RATIO_TAGS = (*(penalty_tag(t, stat) for t in _TERMS for stat in ("norm_*", "penalty")),
              "critic/*_std", kernel_tag("*", "std"), KERNEL_MAX_ABS,
              KERNEL_ENTROPY, "kernel/*/*_var", "kernel/*/*_norm", "spectra/*", GRAD, UPDATE,
              "diversity/pairwise*", FID)


@dataclass
class Band:
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


# --------------------------------------------------------------------------- state machine

@dataclass(frozen=True)
class _Counts:
    """A tag's counts in its own points (a sparse tag counts proportionally fewer)."""
    every: int      # logged steps per point of the tag
    warmup: int
    first: int      # points the first band is made of (the window then fills up)
    window: int
    lag: int
    sustain: int
    span: int       # the window an event's sustain points must fall in
    recent: int     # the latest points a watch keeps (span, and the corroboration window)
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
    first = min(window, max(math.ceil(t.baseline_min_points / k), min(3, t.baseline_min_points)))
    sustain = max(math.ceil(t.sustain_points / k), min(2, t.sustain_points))
    span = sustain + (t.sustain_gaps if sustain >= 4 else 0)
    return _Counts(every=k, warmup=math.ceil(t.warmup_points / k), first=first, window=window,
                   lag=math.ceil(t.baseline_lag / k),
                   rebase=max(math.ceil(t.rebase_points / k), window),
                   sustain=sustain, span=span,
                   recent=max(span, math.ceil(t.corroborate_window / k)) + 1,
                   sign=max(math.ceil(t.sign_points / k), min(2, t.sign_points)))


class _Stretch:
    """The current run of out-of-band points of one tag (ends after enough in-band ones)."""

    __slots__ = ("start", "points", "out", "in_band", "extreme", "extreme_z", "ruled", "values")

    def __init__(self, step: int, x: float, z: float, window: int):
        self.start, self.points, self.out, self.in_band = step, 0, 0, 0
        self.extreme, self.extreme_z = x, z
        self.ruled = False                          # a rule found a point of it out of band
        self.values: deque = deque(maxlen=window)   # (step, value in the tag's space)


class Track:
    """One tag's band, following the run with a lag, and its current excursion."""

    __slots__ = ("tag", "rules", "log", "improves", "counts", "early", "band", "window",
                 "ordered", "pending", "typical", "stretch", "initial")

    def __init__(self, tag: str, rules: list[Rule]):
        self.tag, self.rules = tag, rules   # the rules matching the tag (the first sets ln x)
        rule = rules[0] if rules else None
        self.log = rule.log if rule else any(fnmatch.fnmatchcase(tag, p) for p in RATIO_TAGS)
        # the direction a best-so-far rule calls improvement: not an excursion (+1 rising)
        self.improves = {"best_max": 1, "best_min": -1}.get(rule.reference, 0) if rule else 0
        self.counts: _Counts | None = None
        self.early: list[tuple[int, float]] = []   # (step, x) until the band exists
        self.band: Band | None = None
        self.window: deque = deque()        # the band's (step, value in the tag's space)
        self.ordered: list[float] = []      # the window's values, sorted
        self.pending: deque = deque()       # (step, value, joins?) read < lag points ago
        self.typical = 0.0                  # running mean |x| (a linear tag's scale)
        self.stretch: _Stretch | None = None
        self.initial: list[float] = []      # the first band's values (best-so-far rules)

    def collect(self, step: int, x: float, t: Thresholds, log_interval: int | None) -> bool:
        """Gather points until the first band exists; True when it has just been made."""
        self.early.append((step, x))
        gap = self.early[1][0] - self.early[0][0] if len(self.early) >= 2 else None
        self.counts = c = _counts(gap, t, log_interval)
        if len(self.early) < c.warmup + c.first:
            return False
        points = self.early[c.warmup:]
        values = [v for _, v in points]
        self.log = self.log and min(values) > 0  # ln needs a positive band
        self.typical = sum(abs(v) for v in values) / len(values)
        self.initial = values
        self.early = []
        self._set_window([(s, _space(v, self.log)) for s, v in points], t)
        return True

    def _set_window(self, points, t: Thresholds) -> None:
        """Make the band of these (step, value in the tag's space)."""
        self.window = deque(points, maxlen=self.counts.window)
        self.ordered = sorted(v for _, v in self.window)
        self._refresh(t)

    def _join(self, step: int, value: float, t: Thresholds) -> None:
        """One more point in the band, the oldest out when it is full (kept sorted as it goes:
        the median and MAD need no sort of the window)."""
        if len(self.window) == self.window.maxlen:
            del self.ordered[bisect.bisect_left(self.ordered, self.window[0][1])]
        self.window.append((step, value))
        bisect.insort(self.ordered, value)
        self._refresh(t)

    def _refresh(self, t: Thresholds) -> None:
        median = _middle(self.ordered)
        mad = _median([abs(v - median) for v in self.ordered])
        floor = t.scale_floor if self.log else t.scale_floor * max(abs(median), self.typical)
        self.band = Band(median, max(1.4826 * mad, floor, 1e-12), self.log,
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
        no rule minds is the run's new level. A point of a ln-space band at or below 0 (ln x
        = −inf) is an excursion that never joins the band nor becomes its new level."""
        c = self.counts
        z = self.band.z(x)
        out = ruled or self.out_of_band(x, z, t)
        if not self.log:
            self.typical = TYPICAL_DECAY * self.typical + (1 - TYPICAL_DECAY) * abs(x)
        value = _space(x, self.log)
        admissible = math.isfinite(value)
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
            if admissible:
                stretch.values.append((step, value))
            if (stretch.points >= c.rebase and not stretch.ruled
                    and len(stretch.values) == c.window):
                self.pending.clear()
                self.stretch = None
                self._set_window(stretch.values, t)
                return
        self.pending.append((step, value, admissible and not out))
        if len(self.pending) > c.lag:
            joined_step, joined, joins = self.pending.popleft()
            if joins:
                self._join(joined_step, joined, t)

    def sign(self, onset: int) -> dict | None:
        """This tag as a first sign of an event with this onset: out of band since a step at
        or before it, for at least `sign` points."""
        stretch = self.stretch
        if stretch is None or stretch.start > onset or stretch.out < self.counts.sign:
            return None
        band = self.band
        factor = stretch.extreme / band.center if self.log and band.center > 0 else None
        return {"tag": self.tag, "layer": layer_of(self.tag), "step": stretch.start,
                "lead": onset - stretch.start, "baseline": band.center,
                "value": stretch.extreme, "factor": factor, "z": stretch.extreme_z}


class Watch:
    """One tracked tag under one rule: best-so-far and the latest points' levels."""

    __slots__ = ("rule", "track", "best", "recent", "latest", "active", "sustain", "span",
                 "held_sustain")

    def __init__(self, rule: Rule, track: Track, t: Thresholds):
        self.rule, self.track = rule, track
        counts = track.counts
        self.sustain, self.span = counts.sustain, counts.span
        self.held_sustain = 0  # no warning held over its stretch makes a collapse
        if rule.patience is not None:  # in the tag's own points, like every other count
            self.span = max(math.ceil(getattr(t, rule.patience) / counts.every), 2)
            self.sustain = max(math.ceil(getattr(t, rule.share) * self.span), 2)
            if rule.hold is not None:
                self.held_sustain = max(math.ceil(getattr(t, rule.hold) * self.span), 2)
        self.recent = track.initial[-counts.sustain:]  # latest in-band points (best-so-far rules)
        self.best = _median(track.initial)
        last_step = track.window[-1][0]
        self.latest: deque[tuple[int, int, float]] = deque(
            [(last_step, 0, track.initial[-1])],
            maxlen=max(counts.recent, self.span + 1, t.recover_points))
        self.active = [False, False]    # per level (warning, collapse): confirmed, still out

    @property
    def tag(self) -> str:
        return self.track.tag

    @property
    def reference(self) -> float:
        """What the rule judges against: the band's level, its target, or the best so far."""
        if self.rule.reference == "band":
            return self.track.band.center
        return self.rule.target if self.rule.reference == "target" else self.best

    def judge(self, step: int, x: float,
              t: Thresholds) -> tuple[int, int, list[tuple[int, int, float, int]]]:
        """(grade by the threshold alone, level, [(level, onset, extreme, previous step)]
        confirmed by this point), judged against the track's band before it moves."""
        band, counts = self.track.band, self.track.counts
        best = self.best if self.rule.reference.startswith("best") else None
        grade, beyond_noise = self.rule.grade(x, band, best, t)
        level = grade if beyond_noise else 0
        if level == 0 and best is not None:
            # best-so-far rules follow the metric as it improves: the best running median of
            # sustain in-band points (a best must be sustained too)
            self.recent = (self.recent + [x])[-counts.sustain:]
            pick = max if self.rule.reference == "best_max" else min
            self.best = pick(self.best, _median(self.recent))
        self.latest.append((step, level, x))
        confirmed = []
        for i, threshold in enumerate((1, 2)):
            window, out, needed = self._stretch(threshold, self.sustain)
            if threshold == 2 and self.held():
                # a warning held over its stretch: its points, at warning level, make a collapse
                window, out, needed = self._stretch(1, self._held_needed())
                threshold = 1
            if not out:
                self.active[i] = False
            elif self._sustained(window, out, needed, threshold) and not self.active[i]:
                self.active[i] = True
                first = len(self.latest) - len(window) + out[0]
                previous = self.latest[first - 1][0] if first > 0 else window[out[0]][0]
                extreme = window[out[0]][2]
                for j in out:
                    extreme = self._more_extreme(extreme, window[j][2], band)
                confirmed.append((i + 1, window[out[0]][0], extreme, previous))
        return grade, level, confirmed

    def _stretch(self, threshold: int, sustain: int) -> tuple[list, list[int], int]:
        """(the latest `span` points, the indices of those at `threshold` or worse, how many
        of them confirm an event)."""
        window = list(self.latest)[-self.span:]
        return window, [j for j, (_, lv, _) in enumerate(window) if lv >= threshold], sustain

    @staticmethod
    def _sustained(window: list, out: list[int], needed: int, threshold: int) -> bool:
        return len(out) >= needed and window[-1][1] >= threshold

    def held(self) -> bool:
        """Whether a warning is held over the stretch (held_sustain of its points at warning
        level or worse, the latest among them) while points at collapse level alone would not
        confirm a collapse."""
        if not self.held_sustain or self._sustained(*self._stretch(2, self.sustain), 2):
            return False
        return self._sustained(*self._stretch(1, self._held_needed()), 1)

    def _held_needed(self) -> int:
        """held_sustain; while fewer points than the stretch have been judged (judging began
        late in a short run), every point judged so far, and at least the warning's count. Until
        `latest` is full it holds every judged point after the band's last one; once full, it
        is longer than the stretch."""
        return min(self.held_sustain, max(self.sustain, len(self.latest) - 1))

    def _more_extreme(self, a: float, b: float, band: Band) -> float:
        how = self.rule.extreme
        if how == "max":
            return max(a, b)
        if how == "min":
            return min(a, b)
        return b if band.z(b) > band.z(a) else a

    def excursion(self, since: int, points_needed: int = 1,
                  t: Thresholds | None = None) -> tuple[int, float, int] | None:
        """(onset, extreme, last step before it) of this watch's points at warning level or
        worse read after step `since`, when there are `points_needed` of them (with `t`: that
        are also out of the tag's own band, not only past the rule's threshold); else None."""
        points, track = list(self.latest), self.track
        out = [i for i, (step, level, x) in enumerate(points) if step > since and level >= 1
               and (t is None or track.out_of_band(x, track.band.z(x), t))]
        if len(out) < max(points_needed, 1):
            return None
        extreme = points[out[0]][2]
        for i in out:
            extreme = self._more_extreme(extreme, points[i][2], track.band)
        return points[out[0]][0], extreme, points[out[0] - 1][0] if out[0] > 0 else points[0][0]

    def pending_onset(self) -> int | None:
        """First step of an out-of-band stretch (warning or worse) in the current window."""
        return next((step for step, level, _ in list(self.latest)[-self.span:] if level >= 1),
                    None)


def _median(values: list[float]) -> float:
    return _middle(sorted(values))


def _middle(ordered: list[float]) -> float:
    """The median of sorted values."""
    n = len(ordered)
    return 0.5 * (ordered[(n - 1) // 2] + ordered[n // 2])
