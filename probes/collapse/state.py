"""The incremental detector (`DetectorState`): logged steps in, events out; `detect` replays a
metric series through it, so online and offline diagnoses agree step for step. No I/O."""
from __future__ import annotations

import fnmatch
import math
from typing import Iterable, Mapping

from probes.collapse.band import Track, Watch
from probes.collapse.rules import Thresholds, layer_of, make_rules
from probes.objectives import WGAN_GP, Objective
from probes.readings import LOSS_CRITIC, NONFINITE_WEIGHTS
from probes.text import number

KINDS = ("nan", "divergence", "gp_blowup", "mode_collapse", "low_coverage", "oscillation",
         "quality_regression", "kernel_collapse", "spectral_explosion", "overfitting")
LAYER_KINDS = ("kernel_collapse", "spectral_explosion")  # about one layer
# A collapse of the run only when the samples show it too: a degenerate layer, or a critic whose
# penalty does not hold, while coverage and diversity stay in band is a warning about that part.
SAMPLE_GRADED_KINDS = LAYER_KINDS + ("gp_blowup",)
# Critic readings whose excursion is a warning before it is sustained when the samples feel it.
CRITIC_KINDS = ("divergence", "gp_blowup")
# Read from the samples themselves: a collapse of these kinds alone is over when they are back.
SAMPLE_KINDS = ("mode_collapse", "low_coverage")
VERDICTS = ("healthy", "unstable", "collapsed")
WARNING, COLLAPSE = "warning", "collapse"


def context_tags(objective: Objective) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """(the tags shown beside an event's own tag in its evidence, when logged at that step;
    the one a message names per kind, the first one logged): the objective's gap, the critic
    loss and its first penalty term's p95 and mean norm."""
    norms = tuple(objective.terms[0].tag(s) for s in ("norm_p95", "norm_mean")) \
        if objective.terms else ()
    gap = (objective.gap_tag,)
    return (*gap, LOSS_CRITIC, *norms), {"divergence": norms, "gp_blowup": gap,
                                         "spectral_explosion": gap}


def sign_size(sign: dict) -> str:
    """A first sign's excursion in a few characters: ×12, ÷8.5, or 3.1 → -2.4."""
    factor = sign.get("factor")
    if factor is not None and math.isfinite(factor) and factor > 0:
        return f"×{number(factor)}" if factor >= 1 else f"÷{number(1 / factor)}"
    return f"{number(sign['baseline'])} → {number(sign['value'])}"


def sign_text(sign: dict) -> str:
    """`kernel/g.inv1/max_abs ×12`"""
    return f"{sign['tag']} {sign_size(sign)}"


class DetectorState:
    """The incremental detector: feed logged steps in order, collect events.

    `detect` and `OnlineDetector` both run this; it has no I/O.
    """

    def __init__(self, thresholds: Thresholds | None = None, objective: Objective = WGAN_GP):
        self.thresholds = thresholds or Thresholds()
        self.objective = objective
        self._rules = make_rules(self.thresholds, objective)
        self._context, self._message_context = context_tags(objective)
        self._nan_patterns = objective.nan_tags
        self._tracks: dict[str, Track] = {}
        self._watches: dict[str, list[Watch]] = {}
        self._by_kind: dict[str, list[Watch]] = {}   # the same watches, by their rule's kind
        self._emitted: set[tuple[str, str]] = set()  # (kind, severity or "graded")
        self.events: list[dict] = []
        self._recovery: dict | None = None
        self.latest: dict[str, float] = {}   # the context tags' latest values (those logged)
        self.last_step: int | None = None
        self.log_interval: int | None = None  # smallest step gap between logged steps
        self.points = 0  # logged steps seen

    def _track_for(self, tag: str) -> Track:
        track = self._tracks.get(tag)
        if track is None:
            track = self._tracks[tag] = Track(tag, [r for r in self._rules if r.matches(tag)])
        return track

    def update(self, step: int, scalars: Mapping[str, float]) -> list[dict]:
        """Feed one logged step's scalars (any tags); returns the events it confirmed."""
        t = self.thresholds
        if self.last_step is None or step > self.last_step:
            self.points += 1
        if self.last_step is not None and step > self.last_step:
            gap = step - self.last_step
            self.log_interval = gap if self.log_interval is None else min(self.log_interval, gap)
        self.last_step = step if self.last_step is None else max(self.last_step, step)
        values = {tag: float(v) for tag, v in scalars.items() if _is_number(v)}
        self.latest.update((tag, values[tag]) for tag in self._context if tag in values)
        new: list[dict] = []

        # nan: non-finite losses or weights, reported at the step they are logged
        bad = {tag: v for tag, v in values.items()
               if (not math.isfinite(v) or (tag == NONFINITE_WEIGHTS and v > 0))
               and self._nan_watched(tag)}

        # every tag moves first, so an event's first signs see this step whole
        confirmed = []
        for tag, x in values.items():  # tracks are independent: any order gives the same events
            if not math.isfinite(x) or tag.startswith(t.untracked):
                continue
            track = self._track_for(tag)
            if track.band is None:
                if track.collect(step, x, t, self.log_interval):
                    self._watches[tag] = [Watch(r, track, t) for r in track.rules]
                    for watch in self._watches[tag]:
                        self._by_kind.setdefault(watch.rule.kind, []).append(watch)
                continue
            blocked = False
            for watch in self._watches[tag]:
                grade, level, found = watch.judge(step, x, t)
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
            if severity == COLLAPSE and kind in SAMPLE_GRADED_KINDS and self._samples_unhurt():
                key = (kind, "graded")
            if key in self._emitted or (severity == WARNING and (
                    (kind, COLLAPSE) in self._emitted or (kind, "graded") in self._emitted)):
                continue
            graded = key[1] == "graded"
            new.append(self._event(watch, WARNING if graded else severity, onset, step,
                                   extreme, previous, graded=graded))
            self._emitted.add(key)
        new += self._corroborated(step)
        if new:
            self.events.extend(new)
            self.events.sort(key=lambda e: (e["step"], e["severity"] != COLLAPSE))
        self._recovery = self._recovered()
        return new

    def replay(self, series: Mapping[str, tuple[Iterable[int], Iterable[float]]]) -> list[dict]:
        """Feed a metric series (tag -> (steps, values)) step by step; returns the events it
        confirmed."""
        return [event for step, scalars in series_by_step(series).items()
                for event in self.update(step, scalars)]

    def _nan_watched(self, tag: str) -> bool:
        return tag.split("/", 1)[0] in self.thresholds.nan_groups or any(
            fnmatch.fnmatchcase(tag, pattern) for pattern in self._nan_patterns)

    def _samples_unhurt(self) -> bool:
        """The sample readings (coverage, diversity) are logged and all in band now, and none
        has raised a mode-collapse warning."""
        watches = self._kind_watches("mode_collapse")
        if not watches or ("mode_collapse", WARNING) in self._emitted:
            return False
        return all(w.pending_onset() is None for w in watches)

    def _corroborated(self, step: int) -> list[dict]:
        """The warning of a critic excursion confirmed early because the samples felt it: a
        critic reading (divergence, gp_blowup) at warning level or worse, and out of its own
        band, at `corroborate_points` of the latest `corroborate_window` logged points, and a
        sample reading (mode_collapse) at warning level at one. A critic spike the samples
        felt and recovered from (shorter than sustain_points) is what a user wants to hear
        about; one they did not feel stays unreported. It is the kind's warning: a sustained
        warning of the kind adds nothing, a collapse still does."""
        t = self.thresholds
        window = t.corroborate_window * (self.log_interval or 0)
        if not window:
            return []
        since = step - window
        samples = [(found, w) for w in self._kind_watches("mode_collapse")
                   for found in [w.excursion(since)] if found is not None]
        if not samples:
            return []
        critic = [(found, w) for kind in CRITIC_KINDS for w in self._kind_watches(kind)
                  if not {(kind, WARNING), (kind, COLLAPSE), (kind, "graded")} & self._emitted
                  for found in [w.excursion(since, t.corroborate_points, t)] if found is not None]
        if not critic:
            return []
        earliest = lambda pair: (pair[0][0], pair[1].tag)  # noqa: E731
        (onset, extreme, previous), watch = min(critic, key=earliest)
        felt = min(samples, key=earliest)
        self._emitted.add((watch.rule.kind, WARNING))
        return [self._event(watch, WARNING, onset, step, extreme, previous, felt=felt)]

    def _kind_watches(self, kind: str) -> list[Watch]:
        return self._by_kind.get(kind, [])

    def first_signs(self, onset: int) -> list[dict]:
        """Every tag out of its band at `onset` since a step at or before it, earliest first.
        A tag judged against its best so far (coverage, pairwise diversity) shows that best:
        its band may have followed a slow decline down to the excursion's own level; one
        judged against a target (‖∇D(x̂)‖: 1) is sized against the target, which its band
        may have been far from all along."""
        signs = []
        for tag, track in self._tracks.items():
            sign = track.sign(onset) if track.band is not None else None
            if sign is None:
                continue
            reference = next((w.reference for w in self._watches.get(tag, ())
                              if w.rule.reference != "band"), None)
            if reference is not None:
                sign["baseline"] = reference
                if sign["factor"] is not None and reference > 0:
                    sign["factor"] = sign["value"] / reference
            signs.append(sign)
        return sorted(signs, key=lambda s: (s["step"], -s["z"], s["tag"]))

    def watching(self, ruled_only: bool = False) -> dict | None:
        """The earliest excursion under way now (a first sign before any event), or None;
        ruled_only: of a tag some rule judges (one whose excursion can become an event)."""
        signs = self.first_signs(self.last_step) if self.last_step is not None else []
        if ruled_only:
            signs = [s for s in signs if self._watches.get(s["tag"])]
        return signs[0] if signs else None

    @property
    def points_needed(self) -> int:
        """Logged steps before any tag has a band: fewer, and nothing can be judged."""
        return self.thresholds.warmup_points + self.thresholds.baseline_min_points

    @property
    def judged(self) -> bool:
        """Whether enough steps were logged for a band (else a healthy verdict means nothing)."""
        return self.points >= self.points_needed

    def _nan_event(self, step: int, bad: dict[str, float]) -> dict:
        shown = ", ".join(f"{tag} {number(v)}" for tag, v in sorted(bad.items()))
        what = "weights" if set(bad) == {NONFINITE_WEIGHTS} else "values"
        signs = self.first_signs(step)
        return {"kind": "nan", "step": step, "severity": COLLAPSE,
                "evidence": {"tags": dict(sorted(bad.items())), "detected_step": step},
                "first_signs": signs,
                "message": f"collapsed at step {step:,}: non-finite {what} ({shown})"
                           + _first_sign_clause(signs, None, step)}

    def _event(self, watch: Watch, severity: str, onset: int, detected: int,
               extreme: float, previous: int, graded: bool = False,
               felt: tuple[tuple[int, float, int], Watch] | None = None) -> dict:
        """The event of a watch's excursion; graded: a collapse the samples did not show,
        reported as a warning; felt: (the samples' excursion, its watch) that confirmed it."""
        band = watch.track.band
        reference = watch.reference
        context = {tag: self.latest[tag] for tag in self._context
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
        shown = next((tag for tag in self._message_context.get(watch.rule.kind, ())
                      if tag in context), None)
        extra = f", {shown} {number(context[shown])}" if shown else ""
        where = f" in {layer}" if layer and watch.rule.kind in LAYER_KINDS else ""
        if watch.rule.patience is not None:  # a long stretch at a level, not a change
            where_to = ("low", "down") if watch.rule.extreme == "min" else ("high", "up")
            held = severity == COLLAPSE and watch.held()
            level = 2 if severity == COLLAPSE and not held else 1
            out = sum(lv >= level for _, lv, _ in list(watch.latest)[-watch.span:])
            change = (f"{'held ' if held else ''}{where_to[0]} at {out} readings in "
                      f"{detected - previous:,} steps, {where_to[1]} to {number(extreme)}; "
                      f"{watch.rule.target_label}: {number(reference)}")
            evidence["held"] = held
        else:
            change = (f"{number(reference)} → {number(extreme)} within {detected - previous:,} "
                      f"steps")
        message = f"{head} at step {onset:,}: {watch.rule.label}{where} ({watch.tag} {change}{extra})"
        if watch.rule.meaning:
            message += f": {watch.rule.meaning}"
        if graded:
            part = f"the layer {layer}" if layer else "the critic's gradient penalty"
            evidence["graded"] = f"{part} only: the sample readings are in band"
            message += (f"; samples unaffected (coverage and diversity in band), so a warning "
                        f"about {part}, not a collapse of the run")
        if felt is not None:
            (sample_onset, sample_value, _), sample_watch = felt
            evidence["corroborated_by"] = {"tag": sample_watch.tag, "step": sample_onset,
                                           "value": sample_value,
                                           "baseline": sample_watch.reference}
            message += (f"; confirmed before it was sustained: the samples felt it "
                        f"({sample_watch.tag} {number(sample_watch.reference)} → "
                        f"{number(sample_value)} at step {sample_onset:,})")
        signs = self.first_signs(onset)
        message += _first_sign_clause(signs, watch.tag, onset)
        return {"kind": watch.rule.kind, "step": onset, "severity": severity,
                "evidence": evidence, "first_signs": signs, "message": message}

    def recovery(self) -> dict | None:
        """The run's recovery from its collapse, while it lasts; None when it has not recovered
        (or never collapsed). A collapse the samples showed (every collapse event of a sample
        kind) is over once every sample reading (each watch of those kinds) has been in band
        at recover_share of its latest recover_points readings, and at collapse level at no
        more than recover_collapsed of them, all read after the last collapse was confirmed: a
        slow learner stuck for a long stretch before it covers the data, or a generator back on
        its modes. Readings that fall again end the recovery: the run is collapsed again."""
        return self._recovery

    def _recovered(self) -> dict | None:
        """The recovery as of the latest update: the one under way, or one found now."""
        collapses = [e for e in self.events if e["severity"] == COLLAPSE]
        if not collapses or any(e["kind"] not in SAMPLE_KINDS for e in collapses):
            return None
        confirmed = max(e["evidence"]["detected_step"] for e in collapses)
        watches = [w for kind in SAMPLE_KINDS for w in self._kind_watches(kind)]
        if not watches:
            return None
        t = self.thresholds
        back = []   # per watch: the first in-band step among its latest readings
        for watch in watches:
            latest = [(step, level) for step, level, _ in watch.latest
                      if step > confirmed][-t.recover_points:]
            calm = [step for step, level in latest if level == 0]
            fallen = sum(level >= 2 for _, level in latest)
            if len(latest) < t.recover_points or len(calm) < t.recover_needed \
                    or fallen > t.recover_collapsed:
                return None
            back.append(calm[0])
        readings = {w.tag: w.latest[-1][2] for w in watches}
        if self._recovery is not None:
            return {**self._recovery, "readings": readings}
        return {"collapsed_at": min(e["step"] for e in collapses),
                "kinds": list(dict.fromkeys(e["kind"] for e in collapses)),
                "step": max(back), "detected_step": self.last_step, "readings": readings}

    def pending_onset(self) -> int | None:
        """Earliest onset of an excursion that is out of band but not yet confirmed."""
        onsets = [w.pending_onset() for ws in self._watches.values() for w in ws]
        onsets = [s for s in onsets if s is not None]
        return min(onsets) if onsets else None

    def diagnosis(self) -> dict:
        return {**make_diagnosis(self.events, self.thresholds, self.last_step, self.objective,
                                 self.recovery()),
                "logged_points": self.points, "points_needed": self.points_needed}


def recovery_text(recovery: dict) -> str:
    """A diagnosis's recovery in words: `collapsed at step 250 (low_coverage), recovered:
    the sample readings back in band from step 1,300 (diversity/coverage 0.66, ...)`."""
    shown = ", ".join(f"{tag} {number(v)}" for tag, v in recovery["readings"].items())
    kinds = ", ".join(recovery.get("kinds") or ())
    return (f"collapsed at step {recovery['collapsed_at']:,}{f' ({kinds})' if kinds else ''}, "
            f"recovered: the sample readings back in band from step {recovery['step']:,} ({shown})")


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
           thresholds: Thresholds | None = None, objective: Objective = WGAN_GP) -> list[dict]:
    """Events for a metric series (tag -> (steps, values), as `RunDir.series` returns) of a
    run trained with `objective`.

    Pure: the series is replayed step by step through a fresh `DetectorState`. Events are
    sorted by onset step; at most one warning and one collapse per kind (a collapse makes its
    kind's later warning redundant; a layer graded down by the samples adds one warning).
    """
    state = DetectorState(thresholds, objective)
    state.replay(series)
    return state.events


def verdict(events: Iterable[dict], recovery: dict | None = None) -> tuple[str, int | None]:
    """(verdict, onset_step): collapsed at the earliest collapse event unless the run has
    recovered from it (`DetectorState.recovery`), else unstable (any event) or healthy."""
    events = list(events)
    collapses = [e["step"] for e in events if e["severity"] == COLLAPSE]
    if collapses and recovery is None:
        return "collapsed", min(collapses)
    return ("unstable" if events else "healthy"), None


def make_diagnosis(events: list[dict], thresholds: Thresholds | None = None,
                   last_step: int | None = None, objective: Objective = WGAN_GP,
                   recovery: dict | None = None) -> dict:
    """The diagnosis.json object for a list of events of a run trained with `objective`, and
    its recovery from a collapse (None: it has none)."""
    name, onset = verdict(events, recovery)
    return {"verdict": name, "onset_step": onset, "events": list(events),
            "recovery": recovery, "last_step": last_step, "objective": objective.to_dict(),
            "thresholds": (thresholds or Thresholds()).to_dict()}


def series_by_step(series) -> dict[int, dict[str, float]]:
    """A metric series (tag -> (steps, values)) as step -> {tag: value}, in step order: the
    order a detector is fed."""
    by_step: dict[int, dict[str, float]] = {}
    for tag, (steps, values) in series.items():
        for step, value in zip(steps, values):
            by_step.setdefault(int(step), {})[tag] = value
    return dict(sorted(by_step.items()))
