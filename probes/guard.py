"""CollapseGuard: a training loop's collapse policy as one callback, stabgan's trainer included.

    guard = CollapseGuard(run_dir, stop_on_collapse=True)
    monitor = Monitor(run_dir, generator=G, critic=D, probes=..., guard=guard)
    for step in range(1, steps + 1):
        ...  # your updates
        monitor.step(step, ...)            # feeds guard.update(step, readings) when it logs
        if guard.should_stop:
            break
        if step % ckpt_every == 0:
            guard.save_checkpoint(monitor.writer, step, {"generator": G.state_dict(), ...})
    monitor.close()                        # closes the guard too: the final diagnosis.json

The guard owns the online detector (`probes.collapse.OnlineDetector`: diagnosis.json kept
current), checkpoints/pre_collapse.pt (the newest checkpoint from before a collapse's onset,
for checkpoints written through `save_checkpoint`) and the stop decision: stop at once when a
loss or the weights are logged non-finite (nothing after that is worth training or keeping),
and at a confirmed collapse when `stop_on_collapse`. The detector's own state is rebuilt from
metrics.jsonl when a run resumes; `state_dict` holds the rest, and every checkpoint written
through `save_checkpoint` carries it under `STATE_KEY`.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping

from probes.collapse import NONFINITE_WEIGHTS, OnlineDetector, Thresholds
from probes.readings import LOSS_CRITIC, LOSS_GENERATOR
from probes.rundir.files import (CHECKPOINTS, LAST_CHECKPOINT, PRE_COLLAPSE_CHECKPOINT,
                                 atomic_write_bytes)
from probes.rundir.writer import RunWriter

LOSS_TAGS = (LOSS_CRITIC, LOSS_GENERATOR)  # non-finite: the run stops at once


class CollapseGuard:
    """The online detector, pre_collapse.pt and the stop decision of one run (module docstring).

    run_dir: where diagnosis.json and checkpoints/ are; a Monitor given the guard fills it in
    when it is None. stop_on_collapse: stop at a confirmed collapse too.
    """

    STATE_KEY = "collapse_guard"  # the guard's state in a checkpoint written by save_checkpoint

    def __init__(self, run_dir: Path | str | None = None, stop_on_collapse: bool = False,
                 thresholds: Thresholds | None = None):
        self.detector = OnlineDetector(None, thresholds)
        self.stop_on_collapse = stop_on_collapse
        self.nonfinite_step: int | None = None  # the step a loss or weight went non-finite
        self._keeper = _PreCollapseKeeper()
        self.run_dir = run_dir

    @property
    def run_dir(self) -> Path | None:
        return self.detector.run_dir

    @run_dir.setter
    def run_dir(self, path: Path | str | None) -> None:
        self.detector.run_dir = None if path is None else Path(path)
        self._keeper.dir = None if path is None else Path(path) / CHECKPOINTS

    @property
    def verdict(self) -> str:
        return self.detector.verdict

    @property
    def pre_collapse_step(self) -> int | None:
        """The step of checkpoints/pre_collapse.pt, once one is kept."""
        return self._keeper.kept_step

    @property
    def should_stop(self) -> bool:
        """Whether the loop should stop now: non-finite losses or weights, or a confirmed
        collapse with stop_on_collapse."""
        return self.nonfinite_step is not None or (self.stop_on_collapse and
                                                   self.detector.collapsed)

    def update(self, step: int, readings: Mapping[str, float]) -> list[dict]:
        """Feed one logged step's readings (as written to metrics.jsonl); returns the
        detector's new events. At a confirmed collapse, keeps pre_collapse.pt."""
        events = self.detector.update(step, readings)
        if self.nonfinite_step is None and _nonfinite(readings):
            self.nonfinite_step = step
        if self.detector.collapsed:
            self._keeper.keep(self.detector.onset_step)
        return events

    def save_checkpoint(self, writer: RunWriter, step: int, state: dict) -> Path:
        """Write state (plus the guard's own, under STATE_KEY) as checkpoints/last.pt. While an
        excursion is watched, the last.pt it replaces is set aside first: if the excursion turns
        out a collapse, that one is from before its onset."""
        self._keeper.before_save(self.detector.pending_onset())
        path = writer.save_checkpoint({**state, self.STATE_KEY: self.state_dict()})
        self._keeper.saved(step)
        return path

    def state_dict(self) -> dict:
        """The steps of the copy set aside and of pre_collapse.pt (None: there is none)."""
        return {"aside_step": self._keeper.aside_step, "kept_step": self._keeper.kept_step}

    def load_state_dict(self, state: dict, step: int) -> None:
        """Continue from the checkpoint of `step`, given its STATE_KEY entry ({} for one written
        without the guard; an earlier stabgan's also holds that step, as "checkpoint_step").
        A copy set aside or a pre_collapse.pt no longer on disk is forgotten; a copy set aside
        after that checkpoint, by a run killed before its next checkpoint, is removed."""
        keeper = self._keeper
        keeper.last_step = step
        keeper.aside_step = state.get("aside_step") if _exists(keeper.dir, keeper.ASIDE) else None
        if keeper.aside_step is None and _exists(keeper.dir, keeper.ASIDE):
            (keeper.dir / keeper.ASIDE).unlink()  # set aside after this checkpoint: stale
        keeper.kept_step = state.get("kept_step") if _exists(
            keeper.dir, PRE_COLLAPSE_CHECKPOINT) else None

    def close(self) -> dict:
        """Write the final diagnosis.json (and summary.json's verdict), drop a copy set aside;
        returns the diagnosis. The Monitor calls it when it closes."""
        diagnosis = self.detector.close()
        self._keeper.discard_aside()
        return diagnosis


def _nonfinite(readings: Mapping[str, float]) -> bool:
    """A non-finite loss, or non-finite weight elements counted, among the readings."""
    return any(tag in readings and not math.isfinite(readings[tag]) for tag in LOSS_TAGS) \
        or readings.get(NONFINITE_WEIGHTS, 0) > 0


def _exists(folder: Path | None, name: str) -> bool:
    return folder is not None and (folder / name).is_file()


class _PreCollapseKeeper:
    """Keeps checkpoints/pre_collapse.pt: the newest checkpoint from before a collapse's onset.

    An excursion is confirmed sustain_points logged steps after its onset, and last.pt may be
    rewritten in between; so while one is being watched the checkpoint about to be overwritten
    is copied aside (a hidden file), and dropped once the excursion is over without a collapse.
    """

    ASIDE = ".pre_onset.pt"

    def __init__(self):
        self.dir: Path | None = None  # checkpoints/, set with the guard's run_dir
        self.last_step: int | None = None  # step of checkpoints/last.pt, None before the first
        self.aside_step: int | None = None
        self.kept_step: int | None = None

    def before_save(self, pending_onset: int | None) -> None:
        if pending_onset is None:
            self.discard_aside()
        elif self.last_step is not None and self.last_step < pending_onset:
            # last.pt is from before every excursion watched now, and newer than a copy already
            # aside (whose excursion is over): the newest checkpoint before the onset
            atomic_write_bytes(self.dir / self.ASIDE, (self.dir / LAST_CHECKPOINT).read_bytes())
            self.aside_step = self.last_step

    def saved(self, step: int) -> None:
        self.last_step = step

    def keep(self, onset: int) -> None:
        if self.kept_step is not None:
            return
        if self.aside_step is not None and self.aside_step < onset:
            os.replace(self.dir / self.ASIDE, self.dir / PRE_COLLAPSE_CHECKPOINT)
            self.kept_step, self.aside_step = self.aside_step, None
        elif self.last_step is not None and self.last_step < onset:
            atomic_write_bytes(self.dir / PRE_COLLAPSE_CHECKPOINT,
                               (self.dir / LAST_CHECKPOINT).read_bytes())
            self.kept_step = self.last_step

    def discard_aside(self) -> None:
        if self.aside_step is not None:
            (self.dir / self.ASIDE).unlink(missing_ok=True)
            self.aside_step = None
