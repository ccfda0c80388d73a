"""Collapse detection: pure functions over metric series -> events; an online wrapper.

    events = detect(RunDir(run_dir).series())                  # offline, pure
    diagnosis = diagnose_run(run_dir)                          # same, and writes diagnosis.json
    detector = OnlineDetector(run_dir); detector.update(step, scalars)   # inside a training loop

An event is `{"kind", "step", "severity": "warning"|"collapse", "evidence", "first_signs",
"message"}`; `step` is the onset (the first logged step of the sustained excursion),
`evidence["detected_step"]` the step at which it was confirmed. Kinds (docs/design.md): nan,
divergence, gp_blowup, mode_collapse, low_coverage, oscillation, quality_regression,
kernel_collapse, spectral_explosion, overfitting.

The band. Every logged tag (but `time/` and `weights/`) has a band that follows the run: the
median and MAD of its latest `baseline_points` in-band points (from `baseline_min_points` on:
the window fills as the run goes), each joining `baseline_lag` points after it was read (ln x
for positive magnitudes). A point is out of band when it is
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

Grading. A degenerate layer (kernel_collapse, spectral_explosion), or a critic whose gradient
penalty does not hold (gp_blowup), is a collapse of the run only when the samples show it too:
when the sample readings (coverage, diversity) are logged and all in band at its confirmation,
it is a warning about that layer or that penalty.

Corroboration. A critic excursion (divergence, gp_blowup) that the samples feel is a warning
before it is sustained: `corroborate_points` of the latest `corroborate_window` logged points
out of band and past the rule's warning threshold, with a sample reading (mode_collapse) at
warning level among them. A spike the critic recovers from in a few steps but that cost the
samples most of their classes is then reported; a spike the samples did not feel is not.

Recovery. A collapse the samples showed (mode_collapse, low_coverage, and no other kind) is
over while every sample reading has been in band at `recover_share` of its latest
`recover_points` readings and at collapse level at none of them (`recover_collapsed`), all
read after the collapse was confirmed: the verdict is then unstable, and the diagnosis's
`recovery` says when the samples came back. A slow learner stuck on a few modes for a long
stretch before it covers the data is told of that stretch, not left called collapsed; a
generator back on the modes but hopping between them, whose readings still fall low now and
then, too; one that still falls onto a mode or two among its good readings is not back.

`detect` replays the series through the same incremental state machine `OnlineDetector` runs,
so online and offline diagnoses agree step for step; an update costs O(number of tags).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

from probes.collapse.rules import Thresholds, layer_of
from probes.objectives import WGAN_GP, Objective
from probes.collapse.state import (COLLAPSE, KINDS, LAYER_KINDS, NONFINITE_WEIGHTS,
                                   SAMPLE_GRADED_KINDS, VERDICTS, WARNING, DetectorState,
                                   detect, make_diagnosis, recovery_text, series_by_step,
                                   sign_size, sign_text, verdict)
from probes.rundir.files import DIAGNOSIS, SUMMARY, read_json, write_json
from probes.rundir.reader import RunDir, as_lists


def judge_run(run_dir: Path | str, thresholds: Thresholds | None = None) -> dict:
    """The diagnosis recomputed from metrics.jsonl, judged by the run's objective (config.json's
    loss and penalty) with thresholds sized to its length (`Thresholds.for_run`); nothing is
    written. Works on runs still being written and on truncated files."""
    run = RunDir(Path(run_dir))
    metrics = run.metrics()
    thresholds = (thresholds or Thresholds()).for_run(run.config.get("steps"),
                                                      run.config.get("log_every"))
    state = DetectorState(thresholds, run.objective)
    state.replay(as_lists(metrics.series))
    return {**state.diagnosis(), "last_step": metrics.last_step}


def diagnose_run(run_dir: Path | str, thresholds: Thresholds | None = None) -> dict:
    """`judge_run`, written: diagnosis.json atomically, and summary.json's "verdict" and
    "onset_step" (when summary.json exists), each file only when its content changes.
    Returns the diagnosis."""
    run_dir = Path(run_dir)
    diagnosis = judge_run(run_dir, thresholds)
    # unchanged files keep their time stamps, so the report's cached rendering stays valid
    write_json(run_dir / DIAGNOSIS, diagnosis, changed_only=True)
    update_summary(run_dir, diagnosis)
    return diagnosis


def update_summary(run_dir: Path, diagnosis: dict) -> None:
    """Set summary.json's verdict and onset_step, keeping every other key (no-op without one)."""
    summary = read_json(Path(run_dir) / SUMMARY)
    if summary is not None:
        summary.update(verdict=diagnosis["verdict"], onset_step=diagnosis["onset_step"])
        write_json(Path(run_dir) / SUMMARY, summary, changed_only=True)


SIGNS_SHOWN = 3  # first signs per event in format_diagnosis


def format_diagnosis(diagnosis: dict, run_dir: Path | str | None = None) -> str:
    """A few human lines: the verdict, then one line per event and its first signs."""
    name = diagnosis["verdict"]
    where = f"{run_dir}: " if run_dir is not None else ""
    head = f"{where}{name}"
    if diagnosis.get("onset_step") is not None:
        head += f" (onset at step {diagnosis['onset_step']:,})"
    if diagnosis.get("recovery"):
        head += f" ({recovery_text(diagnosis['recovery'])})"
    events = diagnosis.get("events", [])
    last = diagnosis.get("last_step")
    head += f"; {len(events)} event{'s' * (len(events) != 1)}"
    if last is not None:
        head += f" (metrics up to step {last:,})"
    points, needed = diagnosis.get("logged_points"), diagnosis.get("points_needed")
    if points is not None and needed and points < needed:
        head += f"; too short to judge: {points} logged steps of the {needed} a band needs"
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

    Keeps run_dir/diagnosis.json current: written (atomically) at its first update, whenever
    an event is confirmed, and when closed; its last_step is the step it was written at.
    Events never change once confirmed, so the file is never wrong, only conservative (its
    verdict may still say collapsed while the samples are recovering): killed
    at any step, the run leaves a correct diagnosis of its metrics up to that last_step, and
    one older than metrics.jsonl (which `diagnose_run`, and so the report, then brings up to
    date). On its first update it replays the run's earlier metrics (a resumed run), so its
    diagnosis equals `diagnose_run`'s.
    """

    def __init__(self, run_dir: Path | str | None = None, thresholds: Thresholds | None = None,
                 objective: Objective | None = None):
        """objective: the run's loss and penalty; None reads them from run_dir's config.json
        when the detector starts (WGAN-GP without one)."""
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.objective = objective
        self.state = DetectorState(thresholds, objective or WGAN_GP)
        self._primed = False
        self._written: tuple | None = None  # the _written_key of the file last written

    @property
    def events(self) -> list[dict]:
        return self.state.events

    @property
    def verdict(self) -> str:
        return verdict(self.state.events, self.state.recovery())[0]

    @property
    def onset_step(self) -> int | None:
        return verdict(self.state.events, self.state.recovery())[1]

    @property
    def collapsed(self) -> bool:
        return self.onset_step is not None

    def pending_onset(self) -> int | None:
        """Onset of an excursion being watched but not yet confirmed (None when in band), the
        run's earlier metrics included before the first update."""
        self._catch_up()
        return self.state.pending_onset()

    def first_sign(self) -> dict | None:
        """The first sign of the earliest collapse (or of the first warning); None before any
        event (see `watching`)."""
        events = self.state.events
        collapses = [e for e in events if e["severity"] == COLLAPSE]
        for event in collapses[:1] or events[:1]:
            if event.get("first_signs"):
                return event["first_signs"][0]
        return None

    def watching(self) -> dict | None:
        """Before any event, what to keep an eye on: the earliest excursion under way of a tag
        some rule judges (one that can become an event), else None."""
        return None if self.state.events else self.state.watching(ruled_only=True)

    def update(self, step: int, scalars: Mapping[str, float]) -> list[dict]:
        """Feed one logged step; returns the new events (usually none)."""
        if not self._primed:
            self._prime(step)
        new = self.state.update(step, scalars)
        if self._written != self._written_key():
            self.write()
        return new

    def _catch_up(self) -> None:
        """Before any update (e.g. a resumed run's checkpoint or close with no step logged
        yet): replay all of the run's metrics on disk."""
        if not self._primed:
            self._prime(math.inf)

    def _prime(self, step: int) -> None:
        self._primed = True
        if self.run_dir is None:
            return
        if self.objective is None:  # nothing fed yet: judge by the run's own objective
            self.state = DetectorState(self.state.thresholds, RunDir(self.run_dir).objective)
        earlier = {tag: (steps[steps < step], values[steps < step])
                   for tag, (steps, values) in RunDir(self.run_dir).series().items()}
        self.state.replay(as_lists(earlier))

    def diagnosis(self) -> dict:
        return self.state.diagnosis()

    def write(self) -> dict:
        """Write diagnosis.json now (and return it)."""
        self._catch_up()
        diagnosis = self.diagnosis()
        if self.run_dir is not None:
            write_json(self.run_dir / DIAGNOSIS, diagnosis)
        self._written = self._written_key()
        return diagnosis

    def _written_key(self) -> tuple:
        """What diagnosis.json must be rewritten for when it changes: a new event, the run's
        recovery from its collapse, or its end (the samples falling again)."""
        return self.run_dir, len(self.state.events), self.state.recovery() is not None

    def close(self) -> dict:
        """Write the final diagnosis.json and set summary.json's verdict and onset_step."""
        diagnosis = self.write()
        if self.run_dir is not None:
            update_summary(self.run_dir, diagnosis)
        return diagnosis


__all__ = ["KINDS", "LAYER_KINDS", "SAMPLE_GRADED_KINDS", "VERDICTS", "WARNING", "COLLAPSE",
           "NONFINITE_WEIGHTS",
           "Thresholds", "DetectorState", "OnlineDetector", "series_by_step", "detect",
           "diagnose_run", "judge_run", "format_diagnosis", "make_diagnosis", "recovery_text",
           "update_summary",
           "verdict",
           "layer_of", "sign_size", "sign_text"]
