"""The failure zoo: realistic failures with a ground truth the detector does not see, healthy
runs, and how the collapse detector did on them (scripts/failure_zoo.py writes docs/collapse.md).

A recipe is data: RunConfig settings, a fault from stabgan.faults among them or a setting that
makes training go wrong. The ground truth never comes from the detector's readings: a run has
failed when its FID (domain features, 1,000 samples, every 2 % of the run) rises `FID_RISE`x
over its best so far, or when a loss or weight goes non-finite, or, for a setting that trains
badly, when its FID stays `FID_RISE`x that of its healthy twin (the same arch and seed with
default settings) at the same steps for `TWIN_READINGS` readings in a row: a run that never
learns never rises over its own best. The failure's onset is the fault's step for a recipe
with a fault (the cause; the FID sees it a reading later), else the first such FID step. A fault that turns out harmless (the FID never rises) is no failure, and
the detector should say nothing. A layer fault (`layer`) breaks one layer at its step: whether
or not the samples suffer, the detector should name that layer.

Every recipe runs on the tuning seeds and on held-out ones; each (recipe, seed) is one point of
one `stabgan.sweep` sweep, so the zoo is resumable like any sweep. `score_run` compares a run's
diagnosis with its ground truth; `summarize` gives the targets' numbers.
"""
from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from probes.collapse import LAYER_KINDS, OnlineDetector, series_by_step
from probes.readings import TIME_STEP_S
from probes.rundir.reader import RunDir, as_lists
from stabgan.sweep import SweepSpec, point_name, run_ended

FID_RISE = 3.0              # ground truth: FID this many times its best so far
FID_TAG = "fid/domain"
TWIN_READINGS = 3           # ground truth: FID readings in a row this far above the twin's
ONSET_TOLERANCE = 0.05      # a catch is within this fraction of the run length of the truth
TUNE_SEEDS = (0, 1, 2)      # thresholds were tuned on these runs ...
HELD_OUT_SEEDS = (3,)       # ... and are reported unchanged on these
NONFINITE_GROUPS = ("loss/", "weights/")  # a non-finite reading there ends a run: a failure
# kinds that read the ground truth itself (the FID): scored apart, never as a catch
TRUTH_KINDS = ("quality_regression",)


@dataclass(frozen=True)
class Recipe:
    name: str
    group: str                   # healthy | realistic
    what: str                    # one line for the doc
    settings: dict = field(default_factory=dict)  # RunConfig fields (not the seed)
    fault_at: float | None = None  # where the fault acts, as a fraction of the run
    layer: bool = False          # the fault breaks one layer (the detector should name it)
    twin: str | None = None      # the healthy recipe its FID is compared with (no fault)

    def values(self, steps: int, seed: int) -> dict:
        """The sweep point: settings, the fault placed in a run of `steps`, and the seed."""
        values = dict(self.settings)
        if "fault" in values:
            values["fault"] = values["fault"].replace("STEP", str(self.fault_step(steps)))
        return {**values, "seed": seed}

    def fault_step(self, steps: int) -> int | None:
        """The injected step in a run of `steps` (a logged step: a multiple of 10)."""
        if self.fault_at is None:
            return None
        return max(10, round(self.fault_at * steps / 10) * 10)


def recipes() -> list[Recipe]:
    """The zoo: healthy settings across arch, inv-layers and norm, today's forced faults, and
    realistic failures (mid-run faults and settings that train badly)."""
    healthy = [  # SAGAN first: the longest runs start first, so the last ones overlap less
        Recipe("healthy-sagan", "healthy", "SAGAN (self-attention)", {"arch": "sagan"}),
        Recipe("healthy-dcgan", "healthy", "DCGAN", {"arch": "dcgan"}),
        Recipe("healthy-igan", "healthy", "iGAN, one involution layer", {"arch": "igan"}),
        Recipe("healthy-igan-spectral", "healthy", "iGAN, spectral-norm kernels",
               {"arch": "igan", "norm": "spectral"}),
        Recipe("healthy-igan-2", "healthy", "iGAN, two successive involution layers",
               {"arch": "igan", "inv_layers": 2}),
    ]
    realistic = [
        Recipe("lr-raise", "realistic", "schedule bug: both learning rates ×100 at 40 %",
               {"arch": "igan", "fault": "lr@STEP:100"}, fault_at=0.4),
        Recipe("lr-raise-dcgan", "realistic", "schedule bug on DCGAN: learning rates ×30 at 60 %",
               {"arch": "dcgan", "fault": "lr@STEP:30"}, fault_at=0.6),
        Recipe("gp-weak-0.1", "realistic", "too weak a penalty: λ = 0.1",
               {"arch": "igan", "penalty_weight": 0.1}, twin="healthy-igan"),
        Recipe("gp-weak-1", "realistic", "too weak a penalty: λ = 1",
               {"arch": "igan", "penalty_weight": 1.0}, twin="healthy-igan"),
        Recipe("critic-bn", "realistic", "batch norm in the critic (its involution kernels)",
               {"arch": "igan", "inv_where": "both", "norm": "batch"}, twin="healthy-igan"),
        Recipe("g-overpowers", "realistic", "generator overpowers the critic: lr G 1e-3 ≫ "
               "lr D 1e-4, one critic step", {"arch": "igan", "lr_g": 1e-3, "lr_d": 1e-4,
                                              "n_critic": 1}, twin="healthy-igan"),
        Recipe("softmax-saturated", "realistic", "softmax kernels saturate: G's kernel logits "
               "×30 at 40 %", {"arch": "igan", "norm": "softmax", "fault": "saturate@STEP:30"},
               fault_at=0.4, layer=True),
        Recipe("k-outputs", "realistic", "G collapses to 4 outputs at 50 %",
               {"arch": "igan", "fault": "collapse@STEP:4"}, fault_at=0.5),
        Recipe("data-corrupt", "realistic", "corrupted data stream: images rescaled to [0, 1] "
               "at 50 %", {"arch": "igan", "fault": "data@STEP"}, fault_at=0.5),
    ]
    return healthy + realistic


SEEDS = TUNE_SEEDS + HELD_OUT_SEEDS


# The zoo trains the seed's Table 1 settings (learning rates 1e-4/4e-4 among them) at 32x32,
# width 32: the quick preset's until its learning rates were raised for a shorter default run.
# Through a preset, since a recipe (g-overpowers) sets the learning rates itself and a sweep's
# shared settings may not name a point's field; the stored runs stay this sweep's.
ZOO_PRESET = "paper"


def zoo_base(steps: int) -> dict:
    """Settings of every zoo run: the quick preset's size (ZOO_PRESET is 64x64, width 64),
    every probe (first signs read every layer), FID on 1,000 samples every 2 % of the run (the
    ground truth), logs every 10 steps."""
    return {"image_size": 32, "width": 32, "steps": steps, "probes": "all",
            "fid_every": max(1, steps // 50), "fid_samples": 1000, "log_every": 10,
            "sample_every": max(10, steps // 8), "ckpt_every": max(10, steps // 8)}


def run_name(recipe: Recipe, steps: int, seed: int) -> str:
    return point_name(recipe.values(steps, seed))


def zoo_sweep(out: Path, steps: int = 2000, workers: int | None = 2,
              only: tuple[str, ...] = (), base: dict | None = None,
              seeds: tuple[int, ...] = SEEDS) -> SweepSpec:
    """One sweep over every (recipe, seed) of the zoo, or of the recipes (or groups) named in
    `only`; `base` overrides zoo_base (a smaller model for a smoke test). Seed by seed, so
    the tuning seeds finish first."""
    chosen = [r for r in recipes() if not only or r.name in only or r.group in only]
    points = tuple(r.values(steps, seed) for seed in seeds for r in chosen)
    return SweepSpec(points=points, base={**zoo_base(steps), **(base or {})}, preset=ZOO_PRESET,
                     out=Path(out), workers=workers, warm=True)


# --------------------------------------------------------------------------- ground truth

def fid_onset(steps: list[int], values: list[float], rise: float = FID_RISE) -> int | None:
    """The first step whose FID is `rise` times the best (lowest) FID before it, or None.
    A non-finite FID (the generator's samples went bad) counts as a rise."""
    best = math.inf
    for step, value in zip(steps, values):
        if not math.isfinite(value) or value >= rise * best:
            return step
        best = min(best, value)
    return None


def twin_onset(steps: list[int], values: list[float], twin: dict[int, float],
               rise: float = FID_RISE, readings: int = TWIN_READINGS) -> int | None:
    """The first of `readings` FID steps in a row whose FID is `rise` times the healthy twin's
    FID at the same step (`twin`: step -> FID), or None. A non-finite FID counts as above."""
    streak: list[int] = []
    for step, value in zip(steps, values):
        if step not in twin:
            continue
        if not math.isfinite(value) or value >= rise * twin[step]:
            streak.append(step)
            if len(streak) == readings:
                return streak[0]
        else:
            streak = []
    return None


def nonfinite_step(series: dict) -> int | None:
    """The first step with a non-finite loss, or non-finite weights, or None."""
    steps = [step for tag, (tag_steps, values) in series.items() if tag.startswith(NONFINITE_GROUPS)
             for step, value in zip(tag_steps, values)
             if not math.isfinite(value) or (tag.startswith("weights/") and value > 0)]
    return min(steps, default=None)


@dataclass
class RunScore:
    """One zoo run against its ground truth (None fields: not applicable or not there)."""
    recipe: Recipe
    seed: int
    name: str
    status: str | None
    steps: int | None                 # the run's target length
    verdict: str | None
    injected: int | None              # the fault's step (recipes with a fault)
    fid_onset: int | None             # the FID rules' onset, or the first non-finite step
    truth_onset: int | None           # the onset of the run's failure; None: it did not fail
    truth_from: str | None            # its rule: fault | FID | non-finite | FID vs twin
    events: list[dict]
    caught: dict | None = None        # the first event within tolerance of the truth (a
    #                                   setting: from step 0 to the truth + tolerance)
    early: list[dict] = field(default_factory=list)  # events before that window
    layer_event: dict | None = None   # layer faults: the event naming the broken layer
    quality_caught: dict | None = None  # the TRUTH_KINDS event within tolerance of the truth
    wall_s: float | None = None
    step_s: float | None = None       # the run's median wall seconds per step (machine speed)

    @property
    def failed(self) -> bool:
        return self.truth_onset is not None

    @property
    def held_out(self) -> bool:
        return self.seed in HELD_OUT_SEEDS

    @property
    def tolerance(self) -> int:
        return round(ONSET_TOLERANCE * (self.steps or 0))

    @property
    def latency(self) -> int | None:
        if self.caught is None or self.truth_onset is None:
            return None
        return self.caught["step"] - self.truth_onset

    @property
    def confirmed_after(self) -> int | None:
        """Steps from the truth to the catch's confirmation (when the verdict changed)."""
        detected = ((self.caught or {}).get("evidence") or {}).get("detected_step")
        if detected is None or self.truth_onset is None:
            return None
        return detected - self.truth_onset

    @property
    def first_sign(self) -> dict | None:
        signs = (self.caught or {}).get("first_signs") or []
        return signs[0] if signs else None


def first_near(events: list[dict], step: int, tolerance: int,
          since: int | None = None) -> tuple[dict | None, list[dict]]:
    """(the first event from `since` on (default step − tolerance), if it is by step +
    tolerance; the events before `since`)."""
    since = step - tolerance if since is None else since
    early = [e for e in events if e["step"] < since]
    later = [e for e in events if e["step"] >= since]
    first = min(later, key=lambda e: (e["step"], e["severity"] != "collapse"), default=None)
    return (first if first is not None and first["step"] <= step + tolerance else None), early


def score_run(run_dir: Path, recipe: Recipe, seed: int, twin_dir: Path | None = None) -> RunScore:
    """Read a zoo run (its diagnosis.json as it stands) and judge it against its truth;
    `twin_dir`: the run of the recipe's healthy twin, for a recipe that has one."""
    run = RunDir(run_dir)
    summary, diagnosis = run.summary, run.diagnosis
    steps = run.config.get("steps")
    series = as_lists(run.series([FID_TAG, TIME_STEP_S, *NONFINITE_GROUPS]))
    fid = series.get(FID_TAG, ([], []))
    onsets = {"FID": fid_onset(*fid), "non-finite": nonfinite_step(series)}
    if twin_dir is not None:
        twin = as_lists(RunDir(twin_dir).series([FID_TAG])).get(FID_TAG, ([], []))
        onsets["FID vs twin"] = twin_onset(*fid, dict(zip(*twin)))
    found = {step: rule for rule, step in reversed(onsets.items()) if step is not None}
    by_fid = min(found, default=None)
    truth_from = found.get(by_fid)
    injected = recipe.fault_step(steps) if steps else None
    truth = by_fid
    if by_fid is not None and injected is not None and injected <= by_fid:
        truth, truth_from = injected, "fault"  # the cause; the FID (read every 2 %) sees it later
    score = RunScore(recipe, seed, run.path.name, summary.get("status"), steps,
                     diagnosis.get("verdict"), injected, by_fid, truth, truth_from,
                     diagnosis.get("events") or [], wall_s=summary.get("wall_s"),
                     step_s=_median(series.get(TIME_STEP_S, ([], []))[1]))
    if truth is not None:
        # a setting acts from step 0: an event before its FID shows the failure is a catch
        # ahead of the FID, not a false alarm (there was no healthy stretch before it)
        since = 0 if recipe.twin is not None else None
        blind = [e for e in score.events if e["kind"] not in TRUTH_KINDS]
        score.caught, score.early = first_near(blind, truth, score.tolerance, since)
        score.quality_caught = first_near([e for e in score.events if e["kind"] in TRUTH_KINDS],
                                     truth, score.tolerance, since)[0]
    if recipe.layer and injected is not None:
        named = [e for e in score.events if e["kind"] in LAYER_KINDS]
        score.layer_event = first_near(named, injected, score.tolerance)[0]
    return score


def found_runs(out: Path, steps: int) -> list[tuple[Recipe, int, Path]]:
    """(recipe, seed, run directory) of every finished zoo run under `out`."""
    return [(recipe, seed, Path(out) / run_name(recipe, steps, seed))
            for recipe in recipes() for seed in SEEDS
            if run_ended(Path(out) / run_name(recipe, steps, seed))]


def score_zoo(out: Path, steps: int) -> list[RunScore]:
    """Every zoo run found under `out`, scored (a recipe with a twin against its twin's run
    of the same seed, when that one exists)."""
    by_name = {recipe.name: recipe for recipe in recipes()}
    scores = []
    for recipe, seed, run_dir in found_runs(out, steps):
        twin_dir = None
        if recipe.twin is not None:
            twin_dir = Path(out) / run_name(by_name[recipe.twin], steps, seed)
            twin_dir = twin_dir if run_ended(twin_dir) else None
        scores.append(score_run(run_dir, recipe, seed, twin_dir))
    return scores


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(scores: list[RunScore]) -> dict:
    """The targets' numbers: healthy verdicts, recall and latency per recipe, first signs."""
    healthy = [s for s in scores if s.recipe.group == "healthy" and not s.failed]
    failures = [s for s in scores if s.failed]
    caught = [s for s in failures if s.caught is not None]
    signs = [s for s in caught if s.first_sign is not None]
    per_recipe = {}
    for recipe in dict.fromkeys(s.recipe.name for s in scores):
        runs = [s for s in failures if s.recipe.name == recipe]
        hits = [s for s in runs if s.caught is not None]
        per_recipe[recipe] = {
            "failed": len(runs), "caught": len(hits),
            "median_latency": _median([s.latency for s in hits]),
            "signs": sum(s.first_sign is not None for s in hits),
            "median_lead": _median([s.first_sign["lead"] for s in hits if s.first_sign])}
    return {
        "healthy": len(healthy),
        "healthy_collapsed": [s.name for s in healthy if s.verdict == "collapsed"],
        "healthy_warnings": [s for s in healthy if s.verdict == "unstable"],
        # a fault or setting the FID shrugs off should leave the run healthy (a layer fault:
        # a warning naming the layer), so a collapse verdict there is an alarm the truth denies
        "unfailed_collapsed": [s.name for s in scores if s.recipe.group != "healthy"
                               and not s.failed and s.verdict == "collapsed"],
        "unfailed": sum(s.recipe.group != "healthy" and not s.failed for s in scores),
        "failures": len(failures), "caught": len(caught),
        "quality_caught": sum(s.quality_caught is not None for s in failures),
        "caught_held_out": sum(s.held_out for s in caught),
        "failures_held_out": sum(s.held_out for s in failures),
        "median_latency": _median([s.latency for s in caught]),
        "median_confirmed_after": _median([s.confirmed_after for s in caught
                                           if s.confirmed_after is not None]),
        "signs": len(signs), "signs_ahead": sum(s.first_sign["lead"] > 0 for s in signs),
        "per_recipe": per_recipe,
    }


# --------------------------------------------------------------------------- detector cost

def detector_cost(run_dirs: list[Path]) -> dict:
    """ms per logged step of what a training run pays for its detector: OnlineDetector.update
    (every tag tracked) with its diagnosis.json writes (into a temporary folder), replaying
    the runs' metrics. Thread CPU time: on a shared machine wall time adds whole scheduler
    slices to a random few updates, which says nothing about the detector."""

    times, tags = [], []
    with tempfile.TemporaryDirectory(prefix="detector-cost-") as scratch:
        for i, run_dir in enumerate(run_dirs):
            detector = OnlineDetector(Path(scratch) / str(i))
            for step, scalars in series_by_step(as_lists(RunDir(run_dir).series())).items():
                started = time.thread_time_ns()
                detector.update(step, scalars)
                times.append(1e-6 * (time.thread_time_ns() - started))
                tags.append(len(scalars))
    if not times:
        return {}
    times.sort()
    return {"updates": len(times), "median_ms": statistics.median(times),
            "p99_ms": times[int(0.99 * (len(times) - 1))], "max_ms": times[-1],
            "tags_median": statistics.median(tags), "tags_max": max(tags)}
