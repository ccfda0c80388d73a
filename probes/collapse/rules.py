"""The detector's rules and settings: `Thresholds` (every number the detector uses, written into
diagnosis.json), and the rules that grade one point of a detector's tag against its band, its
best so far or a target (docs/design.md lists the kinds)."""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from probes.objectives import WGAN_GP, Objective
from probes.readings import (COVERAGE_KL, COVERAGE_MODES, DIVERSITY_COVERAGE, DIVERSITY_DUP_RATE,
                             DIVERSITY_PAIRWISE, FID, KERNEL_ENTROPY, KERNEL_MAX_ABS,
                             KERNEL_NEAR_ZERO, KERNEL_SPATIAL_VAR, LOSS_CRITIC,
                             LOSS_CRITIC_ADVERSARIAL, OVERFIT_R_V,
                             SPECTRA_SIGMA0)

if TYPE_CHECKING:
    from probes.collapse.band import Band


@dataclass(frozen=True)
class Thresholds:
    """Detector settings, written into diagnosis.json. Defaults were tuned on synthetic series
    and real quick runs (tests/test_collapse.py, docs/collapse.md); `*_warn` / `*_collapse`
    pairs grade the same excursion (a warning comes first). Counts are in logged points."""
    # the band every tag is judged against
    warmup_points: int = 1        # skipped: the first reading is taken before training settles
    baseline_points: int = 20     # points whose median/MAD are the band ...
    baseline_min_points: int = 10  # ... from this many on (the window fills as the run goes)
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
    # corroboration: a critic excursion (divergence, gp_blowup) is a warning before it is
    # sustained when, within the latest corroborate_window logged points (0: off), it has
    # corroborate_points points at warning level and out of its band, and a sample reading
    # (mode_collapse) one at warning level
    corroborate_window: int = 5
    corroborate_points: int = 3
    # recovery: a collapse the samples showed is over when every sample reading has been in
    # band at recover_share of this many of its latest readings (its own points: sample
    # readings are sparse, and one or two of them say little), read after the collapse was
    # confirmed, and at most recover_collapsed of them at collapse level. A generator hopping
    # between modes reads a low coverage now and then while it covers the data, as the
    # collapse side tolerates in-band points (patience_share): with all of them needed, two
    # held-out healthy toy runs (back on 6-8 modes, hopping) stayed collapsed to the end, and
    # with 3 of 5 one more, seen later (5-8 modes, `diversity/coverage` 0.44-0.61: a toy
    # generator on 6 of 8 modes reads about 0.5, the warning level). But one that still falls
    # onto one or two modes among its good readings is hopping, not back: any number at
    # collapse level let a sustained toy failure off (3 good coverage readings in 5 beside one
    # of 0.16). So 2 in band of 5 and none collapsed, each chosen after seeing those runs
    # (docs/collapse.md)
    recover_points: int = 5
    recover_share: float = 0.4
    recover_collapsed: int = 0
    # first signs: tags out of band at an event's onset, since a step at or before it
    sign_points: int = 3          # out-of-band points before an excursion counts as a sign
    # nan: any non-finite value in these tag groups or the objective's own readings (plus
    # weights/nonfinite > 0), at once
    nan_groups: tuple[str, ...] = ("loss", "weights", "grad", "spectra")
    # divergence: the objective's score gap or the critic loss, |x − band| in multiples of
    # |band| (two-sided); a softplus generator loss growing by these factors over its band
    divergence_warn: float = 3.0
    divergence_collapse: float = 10.0
    # gp_blowup: a penalty term's gradient norms (mean, median, p95) at least f× away from its
    # target (above f or below 1/f: the gradient penalty's 1), or f× above their band (R1, R2)
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
    # low_coverage: diversity/coverage (the real batch's share a sample reaches; real data
    # scores about 0.97 against itself) at or below these levels for patience_share of the
    # points of the latest cover_patience logged steps, the latest among them. Every run
    # starts low: healthy image runs here pass 0.5 within 300 steps, the first toy zoo's within
    # 650-900 (40 logged steps warned 5 of 7 healthy toy runs while they were still learning);
    # a generator hopping between modes crosses 0.5 now and then (all of a stretch low missed
    # half of them). So only a long, mostly low stretch is news: a run that never covers the
    # data, or no longer does. Learning takes longer in a longer run (people size a run to its
    # data): in a run of known length (`for_run`) the stretch is at most cover_run_share of it,
    # or the default 500-step run (275 steps) and the image zoo's 800-step runs (440) could
    # never show one; 0.55 keeps the toy preset's 1,500 steps at 80 logged steps. The share
    # was 0.75 at first; toy generators hopping among 0-8 modes that never cover the data read
    # low at 62-77 % of their points, and 0.65 warns two of three such held-out failures it
    # missed, while it warns more healthy runs and calls none collapsed (docs/collapse.md)
    cover_warn: float = 0.5
    cover_collapse: float = 0.25
    cover_patience: int = 80
    patience_share: float = 0.65
    cover_run_share: float = 0.55
    # ... and a collapse when hold_share of that stretch's points (the latest among them) are
    # at warning level or worse: a generator stuck on 2-4 of 8 modes scores 0.26-0.45, above
    # cover_collapse, for as long as it stays stuck, while one still learning or hopping
    # across many modes rises past cover_warn for longer. All of them, chosen on the first toy
    # zoo's tuning seeds (0-2; 0.9 called a healthy run collapsed there). It was 0.85 for a
    # while, for a stuck run hopping among 0-7 modes that all of them only warned; since the
    # warning needs 65 % of the stretch (patience_share), points at collapse level there make
    # that run's collapse, and 0.85 called a healthy hopper collapsed on seeds run after it
    # (docs/collapse.md). While fewer points than the stretch have been judged (a run low
    # since judging began, too short for the whole stretch yet), all of those judged, at
    # least the warning's count, hold it
    hold_share: float = 1.0
    # oscillation: the critic's loss without its penalty (`loss/critic_adversarial`; the
    # critic loss itself under an objective without one) at or above these multiples of the
    # objective's chance level (LossReadings.chance_loss: what a critic scoring every sample 0
    # gets) at outpace_share of the points of the same stretch as low_coverage's. A critic
    # that learns stays below chance; one that keeps doing worse than a constant chases a
    # generator that moves faster than it follows, and the two cycle instead of converging.
    # In any such stretch of the natural zoo's runs, at 1.25×: ns + R1 at 10× the rates (their
    # samples hop between a few classes) 30-41 % of the points, every healthy image run at
    # most 23 % (rpgan + R1R2 at 10× the rates, healthy by its classes: a recipe added after
    # the rule), every healthy toy run 2 % (4 % at the toy preset's later size). The penalty
    # stays out: with it, such a healthy rpgan run sat above 1.25× at 52 %.
    # WGAN has no chance level, so no such rule
    outpace_warn: float = 1.25
    outpace_collapse: float = 1.5
    outpace_share: float = 0.25
    # quality_regression: FID rising to these factors of its best (lowest) so far (the late
    # blow-up of a run that had been training well)
    quality_rise_warn: float = 1.5
    quality_rise_collapse: float = 3.0
    # overfitting: the overfit probe's r_v (0: held-out real images scored like training ones,
    # 1: like generated ones) at or above this level, sustained. Measured on mnist5k with 500
    # held out: twins trained on all 4,500 other images stayed at or below 0.093 (WGAN-GP,
    # 3,000 steps), 0.077 (ns + R1), 0.053 (rpgan + R1R2) and 0.036 (hinge, SN critic; 2,000
    # steps each); on 200 images r_v rose steadily, to 0.73, 0.50, 0.66 and 0.29, past this
    # level (2.7 times the healthy runs' highest) from step 1,000, 1,300, 800 and 1,800. A
    # warning only, never a collapse: those runs' samples kept improving while D memorised
    # (final FID 7.6, 13.2 and 9.2 against the twins' 6.3, 13.8 and 8.6; the hinge twin failed
    # on its own), so samples that suffer from it are for the sample readings' rules to judge
    overfit_warn: float = 0.25
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
                   "baseline_points": 1, "baseline_min_points": 1, "sustain_points": 1,
                   "rebase_points": 1, "sign_points": 1, "corroborate_window": 0,
                   "corroborate_points": 1, "cover_patience": 1,
                   "recover_points": 1, "recover_collapsed": 0}
        for name in ("patience_share", "cover_run_share", "outpace_share", "hold_share",
                     "recover_share"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"Thresholds.{name}={getattr(self, name)!r} must be in (0, 1]")
        for name, low in minimum.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"Thresholds.{name}={value!r} must be an integer >= {low}")
        if self.recover_collapsed > self.recover_points:
            raise ValueError(f"Thresholds.recover_collapsed={self.recover_collapsed!r} must be "
                             f"<= recover_points={self.recover_points!r}")
        if not self.hold_share >= self.patience_share:
            raise ValueError(f"Thresholds.hold_share={self.hold_share!r} must be >= "
                             f"patience_share={self.patience_share!r} (a warning comes before a "
                             f"collapse)")
        if not self.band_factor > 1:
            raise ValueError(f"Thresholds.band_factor={self.band_factor!r} must be > 1")
        if not self.min_change >= 0:
            raise ValueError(f"Thresholds.min_change={self.min_change!r} must be >= 0")
        for warn, collapse, rising in (("divergence_warn", "divergence_collapse", True),
                                       ("gp_warn", "gp_collapse", True),
                                       ("mode_drop_warn", "mode_drop_collapse", False),
                                       ("dup_rise_warn", "dup_rise_collapse", True),
                                       ("kl_rise_warn", "kl_rise_collapse", True),
                                       ("cover_warn", "cover_collapse", False),
                                       ("outpace_warn", "outpace_collapse", True),
                                       ("quality_rise_warn", "quality_rise_collapse", True),
                                       ("kernel_drop_warn", "kernel_drop_collapse", False),
                                       ("kernel_dead_warn", "kernel_dead_collapse", True),
                                       ("kernel_growth_warn", "kernel_growth_collapse", True),
                                       ("spectral_warn", "spectral_collapse", True)):
            w, c = getattr(self, warn), getattr(self, collapse)
            if not (w <= c if rising else w >= c):
                raise ValueError(f"Thresholds.{warn}={w!r} must be {'<=' if rising else '>='} "
                                 f"{collapse}={c!r} (a warning comes before a collapse)")

    @property
    def recover_needed(self) -> int:
        """The readings of the latest recover_points that must be in band for a recovery."""
        return math.ceil(round(self.recover_share * self.recover_points, 6))

    def run_patience(self, steps: int, log_every: int) -> int:
        """cover_run_share of a run of `steps` steps logged every `log_every`, in logged steps."""
        # rounded first: 0.55 · 200 / 10 is 11.000000000000002 in floating point
        return max(1, math.ceil(round(self.cover_run_share * steps / log_every, 6)))

    def for_run(self, steps: int | None, log_every: int | None) -> "Thresholds":
        """These settings for a run of `steps` steps logged every `log_every`: cover_patience
        at most cover_run_share of the run (unchanged when either is unknown)."""
        if not steps or not log_every:
            return self
        patience = min(self.cover_patience, self.run_patience(steps, log_every))
        return dataclasses.replace(self, cover_patience=patience)

    def to_dict(self) -> dict:
        """The settings as a dict (for diagnosis.json)."""
        return dict(self._as_dict)

    @functools.cached_property
    def _as_dict(self) -> dict:  # frozen, so computed once (asdict copies deeply: slow)
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- rules
# A rule grades one point against the tag's band (or its best so far): 0 in band, 1 warning,
# 2 collapse by the size threshold alone, and whether the point is beyond the band's noise.
# The point's level is the grade when it is beyond the noise, else 0.

@dataclass(frozen=True)
class Rule:
    kind: str
    label: str                   # "critic divergence", used in messages
    matches: Callable[[str], bool]
    grade: Callable[[float, "Band", float | None, Thresholds], tuple[int, bool]]
    log: bool = False            # positive, multiplicative-noise quantity: judge ln(x)
    reference: str = "band"      # band | best_max | best_min (best smoothed value so far) |
    #                              target (a value with a meaning of its own: `target`)
    target: float | None = None  # the value a "target" rule measures distance from
    extreme: str = "abs"         # which value to report: abs (farthest), max, min
    absolute: bool = False       # the threshold means the same in any run: points past it
    #                              never join the band, even within its noise
    patience: str | None = None  # the Thresholds count (logged steps) an excursion must last,
    #                              in place of sustain_points ...
    share: str = "patience_share"  # ... filling this Thresholds share of its points
    hold: str | None = None      # the Thresholds share of the stretch's points at warning
    #                              level or worse that makes it a collapse
    target_label: str = ""       # what a "target" rule's target is, in messages
    meaning: str = ""            # what an event says about the run, ending its message


def _grade(value: float, warn: float, collapse: float, rising: bool = True) -> int:
    if rising:
        return 2 if value >= collapse else 1 if value >= warn else 0
    return 2 if value <= collapse else 1 if value <= warn else 0


def _divergence(floor: float = 0.0):
    """Two-sided: |x − band| in multiples of |band|, or of `floor` when the band is nearer 0
    (a loss's level at chance: LossReadings.chance_loss)."""
    def grade(x, band, best, t):
        size = abs(x - band.median) / max(abs(band.median), band.scale, floor)
        return _grade(size, t.divergence_warn, t.divergence_collapse), band.z(x) >= t.robust_z
    return grade


def _toward(target: float):
    """Gradient norms f× away from the penalty's target (either way), beyond the band's noise
    around it."""
    def grade(x, band, best, t):
        if x < 0:
            return 0, False
        ratio = x / target
        distance = (abs(math.log(ratio)) if x > 0 else math.inf) if band.log else abs(x - target)
        level = _grade(math.inf if x == 0 else max(ratio, 1.0 / ratio), t.gp_warn, t.gp_collapse)
        return level, distance >= t.robust_z * band.scale
    return grade


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


def _over_best(warn_attr, collapse_attr):
    """x rising by a factor over its best (lowest) so far: the factor alone decides."""
    def grade(x, band, best, t):
        if x <= best:
            return 0, False
        factor = x / best if best > 0 else math.inf
        return _grade(factor, getattr(t, warn_attr), getattr(t, collapse_attr)), True
    return grade


def _at_most(warn_attr, collapse_attr):
    """x (a fraction with a meaning of its own) at or below absolute levels: the level alone
    decides."""
    def grade(x, band, best, t):
        level = _grade(x, getattr(t, warn_attr), getattr(t, collapse_attr), rising=False)
        return level, level > 0
    return grade


def _times(target: float, warn_attr, collapse_attr):
    """x at or above absolute multiples of `target` (a level with a meaning of its own): the
    multiple alone decides."""
    def grade(x, band, best, t):
        level = _grade(x / target, getattr(t, warn_attr), getattr(t, collapse_attr))
        return level, level > 0
    return grade


def _at_least(warn_attr):
    """x (a ratio with a meaning of its own) at or above an absolute level: a warning, never a
    collapse; the level alone decides."""
    def grade(x, band, best, t):
        level = int(x >= getattr(t, warn_attr))
        return level, level > 0
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
        factor = x / band.center if band.center > 0 else math.inf
        level = _grade(factor, getattr(t, warn_attr), getattr(t, collapse_attr))
        return level, band.z(x) >= t.robust_z
    return grade


def _matching(pattern: str) -> Callable[[str], bool]:
    return lambda tag: fnmatch.fnmatchcase(tag, pattern)


def _penalty_rule(term) -> Rule:
    """gp_blowup of one penalty term: its norms against its target, or against their band."""
    tags = {term.tag(stat) for stat in ("norm_mean", "norm_p95", "norm_p50")}
    matches = tags.__contains__
    if term.target is not None:
        return Rule("gp_blowup", term.label, matches, _toward(term.target), log=True,
                    reference="target", target=term.target, absolute=True)
    return Rule("gp_blowup", term.label, matches, _growth("gp_warn", "gp_collapse"), log=True,
                extreme="max")


def adversarial_tag(objective: Objective) -> str:
    """The tag of the critic's loss without its penalty under `objective`."""
    return LOSS_CRITIC_ADVERSARIAL if objective.terms else LOSS_CRITIC


def _oscillation_rule(objective: Objective) -> Rule:
    """The critic's loss without its penalty at a multiple of its objective's chance level
    over a long stretch."""
    chance = objective.readings.chance_loss
    return Rule("oscillation", "critic worse than chance", adversarial_tag(objective).__eq__,
                _times(chance, "outpace_warn", "outpace_collapse"), reference="target",
                target=chance, extreme="max", absolute=True, patience="cover_patience",
                share="outpace_share", target_label="its chance level",
                meaning="the critic does worse on its own loss than one scoring every sample 0, "
                        "so it keeps chasing a generator that moves faster than it follows: "
                        "the two cycle instead of converging and the samples hop between a "
                        "few modes (lower learning rates or Adam's β1 help)")


def make_rules(t: Thresholds, objective: Objective = WGAN_GP) -> list[Rule]:
    """The rules for a run trained with `objective` (its gap, critic loss and penalty terms)."""
    mode, kernel = "mode collapse", "kernel collapse"
    return [
        Rule("divergence", "critic divergence", lambda tag: tag == objective.gap_tag,
              _divergence()),
        Rule("divergence", "critic divergence", lambda tag: tag == LOSS_CRITIC,
              _divergence(objective.readings.chance_loss)),
        Rule("divergence", "generator loss runaway",
              frozenset(objective.readings.runaway).__contains__,
              _growth("divergence_warn", "divergence_collapse"), log=True, extreme="max"),
        *(_penalty_rule(term) for term in objective.terms),
        Rule("mode_collapse", mode, lambda tag: tag == COVERAGE_MODES,
              _drop("mode_drop_warn", "mode_drop_collapse", use_best=True),
              reference="best_max", extreme="min"),
        Rule("mode_collapse", mode, lambda tag: tag == COVERAGE_KL,
              _rise("kl_rise_warn", "kl_rise_collapse", use_best=True),
              reference="best_min", extreme="max"),
        Rule("mode_collapse", mode, lambda tag: tag == DIVERSITY_PAIRWISE,
              _drop("mode_drop_warn", "mode_drop_collapse", use_best=True),
              reference="best_max", extreme="min"),
        Rule("mode_collapse", mode, lambda tag: tag == DIVERSITY_DUP_RATE,
              _rise("dup_rise_warn", "dup_rise_collapse"), extreme="max"),
        Rule("low_coverage", "low coverage of the data", lambda tag: tag == DIVERSITY_COVERAGE,
              _at_most("cover_warn", "cover_collapse"), reference="target", target=1.0,
              extreme="min", absolute=True, patience="cover_patience", hold="hold_share",
              target_label="the data itself"),
        *([_oscillation_rule(objective)] if objective.readings.chance_loss else []),
        Rule("quality_regression", "quality regression", _matching(FID),
              _over_best("quality_rise_warn", "quality_rise_collapse"), log=True,
              reference="best_min", extreme="max"),
        Rule("overfitting", "critic overfitting", lambda tag: tag == OVERFIT_R_V,
              _at_least("overfit_warn"), reference="target", target=0.0, extreme="max",
              absolute=True,
              meaning="the critic scores real images it never trained on (--holdout) like "
                      "generated ones, so it memorises its training set and teaches the "
                      "generator that set rather than the data (more data, augmentation or a "
                      "weaker critic help; check whether the samples copy training images)"),
        Rule("kernel_collapse", kernel, _matching(KERNEL_ENTROPY),
              _drop("kernel_drop_warn", "kernel_drop_collapse"), log=True, extreme="min"),
        Rule("kernel_collapse", kernel, _matching(KERNEL_SPATIAL_VAR),
              _drop("kernel_drop_warn", "kernel_drop_collapse"), log=True, extreme="min"),
        Rule("kernel_collapse", "kernel saturation", _matching(KERNEL_NEAR_ZERO),
              _above("kernel_dead_warn", "kernel_dead_collapse"), extreme="max", absolute=True),
        Rule("kernel_collapse", "kernel saturation", _matching(KERNEL_MAX_ABS),
              _growth("kernel_growth_warn", "kernel_growth_collapse"), log=True, extreme="max"),
        Rule("spectral_explosion", "spectral explosion",
              _matching(SPECTRA_SIGMA0),
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
