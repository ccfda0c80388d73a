"""The natural-failure zoo: GANs whose failures grow by themselves, no fault injected, each
beside a healthy twin that differs in one setting; the ground truth from exact mode counts; the
detector scored blind to them. Three parts: the toy part, the MLP pair on 8 Gaussians on a ring
(`--preset toy`), the image part, the default iGAN on mnist5k (`--preset quick`), and the
Stacked MNIST part, the same on three mnist5k digits as colour channels (1,000 modes).

The truth is `coverage/modes`: on the ring, modes holding their share of samples within 3 std
(stabgan.toy, 2,500 fixed-noise samples every 50 steps); on mnist5k, digit classes holding their
share of generated samples by the domain classifier (the FID probe, every `fid_every` steps; on
Stacked MNIST the digit triples, read channel by channel).
It is smoothed as the median of `SMOOTH_READINGS` readings in a row. A run has covered the
data when that count stays at `COVERED` of the modes (the part's `covered`) or more for
`COVER_READINGS` readings in a row (a generator hopping between modes touches that many now
and then), and has failed when
it is at most half of them after it had covered the data (it lost them: the onset is the first
low reading of that stretch), or when it has not covered them by `GRACE` of the run and does
not end covering them (the onset is the grace step, and any event from step 0 on catches it; a
run that covers the data late and to the end is a slow learner, not a failure). A failure is
*sustained* when the count stays at most half to the end, *gradual* when it took at least
`ONSET_TOLERANCE` of the run to fall from its peak to the onset.

The detector never sees the truth: each run is re-diagnosed from its metrics without the
part's truth tags (`blind`: `coverage/*`, and on images `fid/*`, read from the same
generated samples), so what it judges is what a user's own data gives it (losses, penalty
norms, `diversity/*`). Each (recipe, seed) of a part is one point of one `stabgan.sweep` sweep,
so the zoo is resumable like any sweep.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path

from probes.collapse import DetectorState, Thresholds
from probes.objectives import Objective
from probes.readings import COVERAGE_MODES, LOSS_CRITIC, LOSS_CRITIC_ADVERSARIAL
from probes.rundir.reader import RunDir, as_lists
from stabgan.config import RunConfig, dataset_info, resolve_config
from stabgan.losses import Penalty
from stabgan.sweep import SweepSpec, point_name, run_ended
from stabgan.toy import mixture
from stabgan.zoo import ONSET_TOLERANCE, first_near

SMOOTH_READINGS = 3   # the truth's mode count: the median of this many readings in a row
COVERED = 0.75        # the share of the modes a run covers the data with ...
COVER_READINGS = 4    # ... for this many readings in a row (200 steps of the toy preset)
GRACE = 0.6           # a run that has not covered the data by this fraction of it fails
TUNE_SEEDS = (0, 1, 2)  # thresholds were tuned on these runs, and reported on the others


@dataclass(frozen=True)
class Part:
    """Where a part's runs come from and what of them the detector may not read."""
    name: str
    preset: str
    base: dict                    # RunConfig fields every run of the part adds to the preset
    blind_prefixes: tuple[str, ...]  # the truth's tags, hidden from the detector
    covered: float = COVERED      # the share of its modes a run covers the data with
    recipes_of: str = ""          # the part whose recipes it runs, when not its own
    runs: dict = field(default_factory=dict)  # recipes it runs fewer seeds of: name -> seeds

    @property
    def config(self) -> RunConfig:
        """A run's settings but its recipe's and seed."""
        return resolve_config(self.preset, **self.base)

    @property
    def steps(self) -> int:
        return self.config.steps

    @property
    def modes(self) -> int:
        """The modes (classes) the truth counts."""
        dataset = self.config.dataset
        info = dataset_info(dataset)
        return len(mixture(dataset)[0]) if info.points else info.num_classes


# The image part: the default run made 800 steps long (in 500, hinge with spectral norm in D and
# hinge + R1 reached 8-10 of the 10 classes only in the last 100 steps, too late for the truth
# to call them covered), reading the classes covered every 50 steps on 1,000 generated digits;
# the final quality line would only repeat the last reading. Its samples are read every 100
# steps, the default cadence when its runs were made (a default 800-step run now reads them
# every 80), so a re-run reproduces the stored runs.
# The toy recipes whose generators hop between modes (the rates never decay): their seeds
# AFTER_HOLD were run after the hold (`Thresholds.hold_share`) was chosen on the ones before,
# a hold-out it never saw, AFTER_PATIENCE after `patience_share` 0.65 and `recover_collapsed`
# were chosen on the ones before, and AFTER_RECOVERY after the hold went back to all of the
# stretch and `recover_share` to 0.4 (4 seeds: what the toy zoo's time budget had left)
HOPPING = ("ns-r1-constant", "hinge-r1-constant", "rpgan-r1r2-constant")
AFTER_HOLD = range(8, 16)
AFTER_PATIENCE = range(16, 24)
AFTER_RECOVERY = range(24, 28)
# The Stacked MNIST part: the quick preset on 1,000 modes for 3,000 steps, the modes counted
# every 150 steps on 5,000 samples. On a pilot (seed 0) the quick preset covered 564 of them by
# step 450 and 938 by step 3,000, reaching three quarters only after the grace step: a run
# covers this data with half of its modes (set from that pilot, before the part ran).
PARTS = {"toy": Part("toy", "toy", {}, ("coverage/",)),
         "image": Part("image", "quick", {"steps": 800, "fid_every": 50, "fid_samples": 1000,
                                          "fid_final": False, "diversity_every": 100},
                       ("coverage/", "fid/")),
         "stacked": Part("stacked", "quick", {"dataset": "stacked-mnist", "steps": 3000,
                                              "fid_every": 150, "fid_samples": 5000,
                                              "fid_final": False, "diversity_every": 100},
                         ("coverage/", "fid/"), covered=0.5),
         # The first toy zoo: the toy recipes at the preset's first size (layers of 128 units
         # at 2e-3), with the seeds it ran (the toy part has run more of five recipes since);
         # the thresholds were tuned on its seeds 0-2. It missed the budget, so the preset
         # shrank.
         "first": Part("first", "toy", {"width": 32, "lr_g": 2e-3, "lr_d": 2e-3},
                       ("coverage/",), recipes_of="toy",
                       runs={"ns-r1": 29, "hinge-r1": 23,
                             **dict.fromkeys(HOPPING, AFTER_HOLD.start)})}
TOY, IMAGE, STACKED = PARTS["toy"], PARTS["image"], PARTS["stacked"]
MODES = TOY.modes


@dataclass(frozen=True)
class Recipe:
    name: str
    group: str                    # healthy | natural
    family: str                   # the loss family: ns, hinge, rpgan, wgan
    what: str                     # one line for the doc
    settings: dict = field(default_factory=dict)  # RunConfig fields over the part's preset
    twin: str | None = None       # the healthy recipe it differs from in one setting
    runs: int = 8                 # seeds 0 .. runs - 1
    part: str = "toy"

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.runs))

    def values(self, seed: int) -> dict:
        return {**self.settings, "seed": seed}


CONSTANT = {"lr_decay": 1.0}  # the rates never decay: left running at 3e-3


def recipes(part: str | None = None) -> list[Recipe]:
    """The healthy recipes of every loss family and their natural failures, of one part (or of
    all). A toy WGAN run costs 5 critic steps a generator step (with one, the toy critic never
    leads G anywhere), so that family runs fewer seeds."""
    every = _toy_recipes() + _image_recipes() + _stacked_recipes()
    if part is None:
        return every
    of = PARTS[part]
    return [replace(r, runs=min(r.runs, of.runs.get(r.name, r.runs))) for r in every
            if r.part == (of.recipes_of or part)]


def _toy_recipes() -> list[Recipe]:
    ns_r1 = {"loss": "ns", "penalty": "r1", "penalty_weight": 0.1}
    ns = {"loss": "ns", "penalty": "none"}
    hinge_r1 = {"loss": "hinge", "penalty": "r1", "penalty_weight": 0.1}
    rpgan = {"loss": "rpgan", "penalty": "r1r2", "penalty_weight": 0.1}
    wgan = {"loss": "wgan", "penalty": "gp", "penalty_weight": 1.0, "n_critic": 5}
    # Seeds of the healthy recipes: ns never covered the data on 3 of 4 pilot seeds (10 of 23
    # in the zoo; the truth calls those failures), so ns-r1, hinge-r1 and rpgan-r1r2, which
    # nearly always do, run more: over 100 runs whose truth is healthy.
    return [
        Recipe("ns-r1", "healthy", "ns", "non-saturating + R1 (γ 0.1): the toy preset", ns_r1,
               runs=36),
        Recipe("ns", "healthy", "ns", "non-saturating, no penalty", ns, runs=23),
        Recipe("hinge-r1", "healthy", "hinge", "hinge + R1 (γ 0.1)", hinge_r1, runs=29),
        Recipe("rpgan-r1r2", "healthy", "rpgan", "relativistic + R1 and R2 (γ 0.1)", rpgan,
               runs=29),
        Recipe("wgan-gp", "healthy", "wgan", "WGAN-GP (λ 1, 5 critic steps)", wgan),
        Recipe("ns-r1-constant", "natural", "ns", "ns-r1 with the learning rates never "
               "decayed", {**ns_r1, **CONSTANT}, twin="ns-r1", runs=AFTER_RECOVERY.stop),
        Recipe("ns-constant", "natural", "ns", "ns with the learning rates never decayed",
               {**ns, **CONSTANT}, twin="ns"),
        Recipe("ns-beta1", "natural", "ns", "ns with Adam β1 = 0.9", {**ns, "beta1": 0.9},
               twin="ns"),
        Recipe("hinge", "natural", "hinge", "hinge without a penalty",
               {"loss": "hinge", "penalty": "none"}, twin="hinge-r1"),
        Recipe("hinge-r1-constant", "natural", "hinge", "hinge-r1 with the learning rates "
               "never decayed", {**hinge_r1, **CONSTANT}, twin="hinge-r1",
               runs=AFTER_RECOVERY.stop),
        Recipe("rpgan-r1r2-constant", "natural", "rpgan", "rpgan-r1r2 with the learning "
               "rates never decayed", {**rpgan, **CONSTANT}, twin="rpgan-r1r2",
               runs=AFTER_RECOVERY.stop),
        Recipe("wgan-gp-strong", "natural", "wgan", "WGAN-GP with the usual λ 10",
               {**wgan, "penalty_weight": 10.0}, twin="wgan-gp", runs=4),
        Recipe("wgan", "natural", "wgan", "WGAN without a penalty",
               {**wgan, "penalty": "none"}, twin="wgan-gp", runs=4),
    ]


def _image_recipes() -> list[Recipe]:
    """The quick preset (WGAN-GP, λ 10, the iGAN with one involution layer in G), the same with
    involution in the critic too, and a healthy recipe of each other loss family, on mnist5k;
    each failure differs from one of them in one setting. Found on pilot runs (seed 0, 500
    steps): ns without a penalty, hinge without spectral norm, Adam β1 = 0.9 and WGAN-GP at 10×
    the rates all reached 7-10 classes, so they are not here."""
    ns_r1 = {"loss": "ns", "penalty": "r1", "penalty_weight": 1.0}
    hinge_sn = {"loss": "hinge", "penalty": "none", "spectral_norm": "d"}
    rpgan = {"loss": "rpgan", "penalty": "r1r2", "penalty_weight": 1.0}
    both = {"inv_where": "both"}
    fast = {"lr_g": 3e-3, "lr_d": 1.2e-2}  # 10× the quick preset's
    # a long run with 500 real images held out, whose scores tell the overfit probe whether
    # the critic memorises its training set
    long_ns = {"loss": "ns", "penalty": "none", "steps": 3000, "holdout": 500}
    healthy, failing = 5, 4

    def image(*args, **kwargs) -> Recipe:
        return Recipe(*args, **{"runs": healthy, **kwargs, "part": "image"})

    return [
        image("img-wgan-gp", "healthy", "wgan", "WGAN-GP (λ 10): the quick preset", {}),
        image("img-wgan-gp-both", "healthy", "wgan", "the quick preset with involution in G "
              "and D", both),
        image("img-ns-r1", "healthy", "ns", "non-saturating + R1 (γ 1)", ns_r1),
        image("img-hinge-sn", "healthy", "hinge", "hinge, spectral norm in D", hinge_sn),
        image("img-rpgan-r1r2", "healthy", "rpgan", "relativistic + R1 and R2 (γ 1)", rpgan),
        image("img-critic-bn", "natural", "wgan", "involution in G and D, batch-normalized "
              "kernel generation", {**both, "norm": "batch"}, twin="img-wgan-gp-both",
              runs=failing),
        image("img-wgan", "natural", "wgan", "WGAN without a penalty", {"penalty": "none"},
              twin="img-wgan-gp", runs=failing),
        image("img-ns-r1-fast", "natural", "ns", "ns-r1 at 10× the learning rates",
              {**ns_r1, **fast}, twin="img-ns-r1", runs=failing),
        # the other families at the same rates, added after the oscillation rule was set on
        # img-ns-r1-fast: runs it was not set on
        image("img-hinge-sn-fast", "natural", "hinge", "hinge-sn at 10× the learning rates",
              {**hinge_sn, **fast}, twin="img-hinge-sn", runs=failing),
        image("img-rpgan-r1r2-fast", "natural", "rpgan", "rpgan-r1r2 at 10× the learning "
              "rates", {**rpgan, **fast}, twin="img-rpgan-r1r2", runs=failing),
        image("img-hinge-sn-both", "natural", "hinge", "hinge, spectral norm in G and D",
              {**hinge_sn, "spectral_norm": "both"}, twin="img-hinge-sn", runs=failing),
        image("img-rpgan", "natural", "rpgan", "relativistic without a penalty",
              {**rpgan, "penalty": "none"}, twin="img-rpgan-r1r2", runs=failing),
        # a failure that grows: on a pilot (seed 0) on 100 images the critic memorised them
        # and the samples, 10 classes at FID 19 by step 800, fell to 1 class at FID 116 over
        # steps 1,500-2,900; added after every threshold was set, 3 seeds each for the time
        image("img-ns-long", "healthy", "ns", "non-saturating, no penalty, 3,000 steps, 500 "
              "images held out", long_ns, runs=3),
        image("img-ns-small", "natural", "ns", "img-ns-long trained on 100 images",
              {**long_ns, "subset": 100}, twin="img-ns-long", runs=3),
    ]


def _stacked_recipes() -> list[Recipe]:
    """The quick preset on Stacked MNIST, and ns without a penalty, the generator of the
    coverage benchmark's mode-dropping GANs: on a pilot (seed 0) it never covered more than 31
    of the 1,000 modes."""
    return [
        Recipe("stk-wgan-gp", "healthy", "wgan", "WGAN-GP (λ 10): the quick preset", {},
               runs=5, part="stacked"),
        Recipe("stk-ns", "natural", "ns", "non-saturating, no penalty",
               {"loss": "ns", "penalty": "none"}, twin="stk-wgan-gp", runs=5, part="stacked"),
    ]


def run_name(recipe: Recipe, seed: int) -> str:
    return point_name(recipe.values(seed))


def chosen(part: str, only: tuple[str, ...] = ()) -> list[Recipe]:
    """The part's recipes named (or of the groups named) in `only`; all of them without."""
    return [r for r in recipes(part) if not only or r.name in only or r.group in only]


def natural_sweeps(out: Path, part: str = "toy", workers: int | None = 2,
                   only: tuple[str, ...] = (), seeds: tuple[int, ...] | None = None,
                   base: dict | None = None) -> list[SweepSpec]:
    """The sweeps over every (recipe, seed) of a part of the zoo (or the recipes or groups in
    `only`, the seeds in `seeds` that each recipe runs), seed by seed so the tuning seeds
    finish first: one for the recipes that keep the part's settings and the caller's `base`,
    one for each set of those that recipes set themselves (a longer run), since a sweep's
    points may not set what its base does."""
    picked = chosen(part, only)
    every = sorted({s for r in picked for s in r.seeds if seeds is None or s in seeds})
    common = {**PARTS[part].base, **(base or {})}
    groups: dict[frozenset, list[dict]] = {}
    for point in (r.values(seed) for seed in every for r in picked if seed in r.seeds):
        groups.setdefault(frozenset(common.keys() & point.keys()), []).append(point)
    return [SweepSpec(points=tuple(points), preset=PARTS[part].preset, out=Path(out),
                      base={k: v for k, v in common.items() if k not in own}, workers=workers,
                      warm=True)
            for own, points in sorted(groups.items(), key=lambda group: len(group[0]))]


# --------------------------------------------------------------------------- ground truth

@dataclass(frozen=True)
class Truth:
    """A run's failure by its exact mode counts (None fields: it did not fail)."""
    onset: int | None
    how: str | None          # lost | never (covered)
    peak: float              # the most modes the smoothed count reached before the onset
    peak_step: int | None    # its last step before the onset
    sustained: bool = False  # at most half the modes from the onset to the end
    modes_end: float = math.nan  # the smoothed count at the last reading

    @property
    def failed(self) -> bool:
        return self.onset is not None

    @property
    def decline(self) -> int | None:
        """Steps from the peak to the onset (a failure that grew over them)."""
        if self.how != "lost" or self.peak_step is None:
            return None
        return self.onset - self.peak_step


def smoothed(values: list[float], width: int = SMOOTH_READINGS) -> list[float]:
    """The running median of the latest `width` values (fewer at the start)."""
    return [statistics.median(values[max(0, i - width + 1):i + 1]) for i in range(len(values))]


def mode_truth(steps: list[int], modes: list[float], run_steps: int,
               k: int = MODES, grace: float = GRACE, covered: float = COVERED) -> Truth:
    """The truth of a run from its `coverage/modes` readings (steps, values) in a run of
    `run_steps` steps over `k` modes, covering the data with a `covered` share of them."""
    low, high = k / 2, covered * k
    counts = smoothed(modes)
    if not counts:
        return Truth(None, None, math.nan, None)
    grace_step = grace * run_steps
    peak, peak_step, onset, how, found = -math.inf, None, None, None, len(counts)
    covered, streak = False, 0
    for i, (step, count) in enumerate(zip(steps, counts)):
        streak = streak + 1 if count >= high else 0
        covered = covered or streak >= COVER_READINGS
        if count <= low and covered:
            # the first low raw reading among those the median was taken over
            window = range(max(0, i - SMOOTH_READINGS + 1), i + 1)
            onset, how, found = next(steps[j] for j in window if modes[j] <= low), "lost", i
            # the peak it fell from: before that first low reading
            before = [(c, step) for step, c in zip(steps[:i], counts[:i]) if step < onset]
            peak, peak_step = max(before)
            break
        if not covered and step >= grace_step:
            onset, how, found = round(grace_step), "never", i
            break
        if count >= peak:
            peak, peak_step = count, step
    if how == "never" and all(c >= high for c in counts[-COVER_READINGS:]):
        return Truth(None, None, max(counts), None, modes_end=counts[-1])  # a slow learner
    sustained = onset is not None and all(c <= low for c in counts[found:])
    return Truth(onset, how, peak, peak_step, sustained, counts[-1])


# --------------------------------------------------------------------------- the detector

def blind(series: dict, part: str = "toy") -> dict:
    """A metric series (tag -> (steps, values)) without the part's truth tags: what the
    detector may read."""
    hidden = PARTS[part].blind_prefixes
    return {tag: values for tag, values in series.items() if not tag.startswith(hidden)}


@dataclass
class ZooRun:
    """One finished zoo run's data: what the scores are computed from."""
    recipe: Recipe
    seed: int
    name: str
    steps: int
    truth: Truth
    modes: tuple[list, list]  # the exact mode counts (steps, values): the truth's readings
    series: dict          # blind to the truth
    objective: Objective
    wall_s: float | None
    log_every: int | None = None

    @property
    def mode_count(self) -> int:
        """The modes of its data (the truth counts those it covers)."""
        return PARTS[self.recipe.part].modes

    @property
    def held_out(self) -> bool:
        """Not among the runs thresholds were tuned on: none was tuned on images."""
        return self.recipe.part != "toy" or self.seed not in TUNE_SEEDS


def with_adversarial_loss(series: dict, config: dict) -> dict:
    """A run's series with `loss/critic_adversarial`, the critic's loss without its penalty,
    also for a run recorded before the trainer logged it: its critic loss less each penalty
    term's weighted value, as the trainer takes it out (`Penalty.weight_of`)."""
    if LOSS_CRITIC_ADVERSARIAL in series or LOSS_CRITIC not in series \
            or "penalty_weight" not in config:
        return series
    penalty = Penalty(config.get("penalty", "gp"), config["penalty_weight"])
    if not penalty.terms:
        return series
    terms = [(penalty.weight_of(term), dict(zip(*series.get(term.tag("penalty"), ([], [])))))
             for term in penalty.terms]
    steps, values = [], []
    for step, loss in zip(*series[LOSS_CRITIC]):
        if all(step in logged for _, logged in terms):
            steps.append(step)
            values.append(loss - sum(weight * logged[step] for weight, logged in terms))
    return {**series, LOSS_CRITIC_ADVERSARIAL: (steps, values)}


def load_run(run_dir: Path, recipe: Recipe, seed: int) -> ZooRun:
    run = RunDir(run_dir)
    steps = run.config.get("steps")
    series = with_adversarial_loss(as_lists(run.series()), run.config)
    modes = series.get(COVERAGE_MODES, ([], []))
    part = PARTS[recipe.part]
    truth = mode_truth(*modes, steps, k=part.modes, covered=part.covered)
    return ZooRun(recipe, seed, run.path.name, steps, truth, modes, blind(series, recipe.part),
                  run.objective, run.summary.get("wall_s"), run.config.get("log_every"))


@dataclass
class ZooScore:
    """A zoo run's blind diagnosis against its truth."""
    run: ZooRun
    events: list[dict]
    verdict: str
    recovery: dict | None = None      # its recovery from a collapse (DetectorState.recovery)
    caught: dict | None = None        # the first event within tolerance of the truth (a run
    #                                   that never covered: from step 0 to the grace step)
    early: list[dict] = field(default_factory=list)  # events before that window

    @property
    def truth(self) -> Truth:
        return self.run.truth

    @property
    def tolerance(self) -> int:
        return round(ONSET_TOLERANCE * self.run.steps)

    @property
    def latency(self) -> int | None:
        if self.caught is None:
            return None
        return self.caught["step"] - self.truth.onset

    @property
    def confirmed(self) -> int | None:
        """The step at which the run was first told: the earliest confirmation among the
        events that catch it (a warning may be confirmed before a collapse of the same onset)."""
        if self.caught is None:
            return None
        last_onset = self.truth.onset + self.tolerance
        return min(e["evidence"]["detected_step"] for e in self.events
                   if self.caught["step"] <= e["step"] <= last_onset)

    @property
    def first_sign(self) -> dict | None:
        signs = (self.caught or {}).get("first_signs") or []
        return signs[0] if signs else None

    @property
    def lead(self) -> int | None:
        """Steps by which the catch's first sign came before the truth's onset."""
        sign = self.first_sign
        return None if sign is None else self.truth.onset - sign["step"]


def score(run: ZooRun, thresholds: Thresholds | None = None) -> ZooScore:
    """Diagnose `run` blind (with these thresholds, sized to the run as a run's own detector
    sizes them) and judge it against its truth."""
    thresholds = (thresholds or Thresholds()).for_run(run.steps, run.log_every)
    state = DetectorState(thresholds, run.objective)
    state.replay(run.series)
    events = state.events
    result = ZooScore(run, events, state.diagnosis()["verdict"], state.recovery())
    if run.truth.failed:
        result.caught, result.early = first_near(events, run.truth.onset, result.tolerance,
                                                 catch_from(run.truth, result.tolerance))
    return result


def catch_from(truth: Truth, tolerance: int) -> int:
    """The first step at which an event catches a failure: step 0 for a run that never
    covered the data; for one that lost it, the last peak it fell from (an event while the
    count declines tells of the loss before it is complete), or the tolerance before the
    onset if that is earlier."""
    if truth.how == "never":
        return 0
    return min(truth.onset - tolerance, truth.peak_step)


def load_zoo(out: Path, part: str = "toy") -> list[ZooRun]:
    """Every finished run of a part of the zoo under `out`, in recipe then seed order."""
    return [load_run(Path(out) / run_name(r, s), r, s) for r in recipes(part) for s in r.seeds
            if run_ended(Path(out) / run_name(r, s))]


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _recall(scores: list[ZooScore]) -> dict:
    """Runs, failures (lost, caught), how soon, and collapse verdicts of a group of runs; for a
    run that never covered the data, how soon is when the user was told (its confirmation)."""
    failed = [s for s in scores if s.truth.failed]
    hits = [s for s in failed if s.caught is not None]
    return {"runs": len(scores), "failed": len(failed), "caught": len(hits),
            "lost": sum(s.truth.how == "lost" for s in failed),
            "median_latency": _median(s.latency for s in hits if s.truth.how == "lost"),
            "median_confirmed": _median(s.confirmed for s in hits if s.truth.how == "never"),
            "collapsed": sum(s.verdict == "collapsed" for s in failed),
            "false_collapse": sum(s.verdict == "collapsed" for s in scores if not s.truth.failed)}


def summarize(scores: list[ZooScore]) -> dict:
    """The targets' numbers over the zoo's scores."""
    healthy = [s for s in scores if not s.truth.failed]
    failures = [s for s in scores if s.truth.failed]
    held = [s for s in failures if s.run.held_out]
    sustained = [s for s in failures if s.truth.sustained]
    gradual = [s for s in failures if (s.truth.decline or 0) >= s.tolerance]
    return {
        **_recall(scores), "healthy": len(healthy),
        "healthy_collapsed": [s.run.name for s in healthy if s.verdict == "collapsed"],
        "healthy_warned": [s.run.name for s in healthy if s.verdict == "unstable"],
        "held_out": len(held), "held_out_caught": sum(s.caught is not None for s in held),
        "sustained": len(sustained),
        "sustained_collapsed": sum(s.verdict == "collapsed" for s in sustained),
        "gradual": len(gradual), "gradual_led": sum((s.lead or 0) > 0 for s in gradual),
        "lost_caught": sum(s.truth.how == "lost" and s.caught is not None for s in failures),
        "median_lead": _median(s.lead for s in gradual if s.lead and s.lead > 0),
        "per_recipe": {r.name: _recall([s for s in scores if s.run.recipe.name == r.name])
                       for r in recipes() if any(s.run.recipe.name == r.name for s in scores)},
        "per_family": {f: _recall([s for s in scores if s.run.recipe.family == f])
                       for f in dict.fromkeys(r.family for r in recipes())},
        "kinds": {k: sum(1 for s in failures if s.caught and s.caught["kind"] == k)
                  for k in dict.fromkeys(s.caught["kind"] for s in failures if s.caught)},
    }


def threshold_sweep(runs: list[ZooRun], name: str, values: tuple[float, ...],
                    fixed: dict | None = None) -> list[dict]:
    """The trade-off of one Thresholds field (the others default, or as in `fixed`): per
    value, healthy runs called collapsed or warned, failures caught, and how soon over the
    zoo's runs."""
    rows = []
    for value in values:
        thresholds = replace(Thresholds(), **(fixed or {}), **{name: value})
        numbers = summarize([score(run, thresholds) for run in runs])
        rows.append({"value": value, **{k: numbers[k] for k in (
            "healthy", "failed", "caught", "held_out", "held_out_caught", "median_latency",
            "median_confirmed", "sustained", "sustained_collapsed", "collapsed")},
            "healthy_collapsed": len(numbers["healthy_collapsed"]),
            "healthy_warned": len(numbers["healthy_warned"])})
    return rows
