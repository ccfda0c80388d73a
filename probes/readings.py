"""The readings stabgan logs: their tag names, and the panels that plot them.

A `Panel` declares one plot of the HTML report and one chart of TensorBoard's custom-scalars
tab. Every probe declares its panels (`Probe.panels`); the Monitor merges them with
`CORE_PANELS` (the readings the Monitor and the trainer log themselves), writes them into the
run directory (rundir.files.PANELS) and derives TensorBoard's layout from them; the report
draws them from that file. stabgan's own probes take their tag names and panels from this
module, which imports no torch: the detector (probes.collapse), `stabgan diagnose` and the
report use the same names without loading the probes. A probe of your own declares its panels
in its own class.

Tags are `group/name`; per-layer ones (`kernel/<layer>/<stat>`) depend on the model, so a panel
names them by pattern: `*` matches any text, `/` included (`kernel/*/entropy`).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

# report sections, in the order the report shows them (then any other, then "Other readings")
TRAINING, FID_SECTION, QUALITY = "Training", "FID", "Coverage and diversity"
CRITIC, KERNELS, SPECTRA = "Critic", "Involution kernels", "Spectra and gradients"
SECTIONS = (TRAINING, FID_SECTION, QUALITY, CRITIC, KERNELS, SPECTRA)


@dataclass(frozen=True)
class Panel:
    """One plot: a line per tag over steps, optionally a shaded band and a reference line.

    tags: drawn in order; a pattern draws every logged tag it matches that no panel names
    exactly and no earlier pattern took, sorted. labels: legend labels by position in tags
    (missing or "": the tag itself; a pattern's matches: what its `*` matched). dashed: tags
    drawn dashed. band: (lower, upper) tags shaded around the first line, labelled band_label
    ("lower–upper" by default); TensorBoard shows such a panel as a Margin chart. std: by
    position in tags, a std tag drawn as a mean ± std band around that line where the panel has
    no band logged. log: a log y axis (used when the values span over 1.5 decades). target: a
    reference value drawn as a dotted line (the GP norm's 1).
    """
    title: str
    section: str
    tags: tuple[str, ...]
    labels: tuple[str, ...] = ()
    dashed: tuple[str, ...] = ()
    band: tuple[str, str] | None = None
    band_label: str = ""
    std: tuple[str, ...] = ()
    log: bool = False
    target: float | None = None

    def __post_init__(self):
        strings = all(isinstance(getattr(self, name), tuple)
                      and all(isinstance(t, str) for t in getattr(self, name))
                      for name in ("tags", "labels", "dashed", "std"))
        if not (strings and self.tags and isinstance(self.title, str)
                and isinstance(self.section, str) and isinstance(self.band_label, str)):
            raise ValueError(f"panel {self.title!r}: title, section and band_label are strings; "
                             f"tags (at least one), labels, dashed and std tuples of strings")
        if self.band is not None and not (isinstance(self.band, tuple) and len(self.band) == 2
                                          and all(isinstance(t, str) for t in self.band)):
            raise ValueError(f"panel {self.title!r}: band={self.band!r} must be "
                             f"(lower tag, upper tag) or None")
        if not isinstance(self.log, bool) or not (
                self.target is None or type(self.target) in (int, float)):
            raise ValueError(f"panel {self.title!r}: log must be a bool and target a number "
                             f"or None (got {self.log!r}, {self.target!r})")

    @property
    def kind(self) -> str:
        """"band" (a Margin chart in TensorBoard) or "lines" (a Multiline chart)."""
        return "band" if self.band else "lines"

    def named_tags(self) -> tuple[str, ...]:
        """Every tag and pattern the panel reads: lines, band and std tags."""
        return (*self.tags, *(self.band or ()), *(t for t in self.std if t))


def merge_panels(*groups) -> tuple[Panel, ...]:
    """The panels of several declarations, one per title, in first-declared order; a later
    panel of the same title replaces the earlier one (the gp probe adds its band to the core
    gradient-norm panel)."""
    merged: dict[str, Panel] = {}
    for group in groups:
        for panel in group:
            merged[panel.title] = panel
    return tuple(merged.values())


def panels_json(panels) -> dict:
    """What rundir.files.PANELS holds: {"panels": [{field: value}, ...]}."""
    return {"panels": [dataclasses.asdict(panel) for panel in panels]}


def panels_from_json(data) -> tuple[Panel, ...]:
    """The panels of a panels_json() object; ValueError naming what is wrong with it."""
    if not isinstance(data, dict) or not isinstance(data.get("panels"), list):
        raise ValueError('not an object with a "panels" list')
    names = {f.name for f in dataclasses.fields(Panel)}
    panels = []
    for item in data["panels"]:
        if not isinstance(item, dict) or not {"title", "section", "tags"} <= set(item) <= names:
            raise ValueError(f"not a panel: {str(item)[:80]}")
        panels.append(Panel(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in item.items()}))
    return tuple(panels)


def tensorboard_layout(panels) -> dict[str, dict[str, list]]:
    """TensorBoard's custom-scalars layout of the panels (rundir.writer.RunWriter.log_layout): one
    category per section; a band panel is a Margin chart of its first line, any other a
    Multiline chart of its tags as regexes (TensorBoard matches them at the start of a tag)."""
    layout: dict[str, dict[str, list]] = {}
    for panel in panels:
        if panel.kind == "band":
            chart = ["Margin", [panel.tags[0], *panel.band]]
        else:
            chart = ["Multiline", [".*".join(map(re.escape, t.split("*"))) for t in panel.tags]]
        layout.setdefault(panel.section, {})[panel.title] = chart
    return layout


def matched_part(pattern: str, tag: str) -> str:
    """What a one-`*` pattern's `*` matched in tag (`kernel/*/entropy`, `kernel/g.inv0/entropy`
    -> `g.inv0`); the tag itself for a pattern with no or several `*`."""
    head, star, tail = pattern.partition("*")
    if not star or "*" in tail:
        return tag
    return tag[len(head):len(tag) - len(tail)]


# --------------------------------------------------------------------------- core: the Monitor
# (probes/monitor.py core_readings) and the trainer (stabgan/train.py); the objective's own
# (the score gap, the penalty terms) are declared by probes/objectives.py

LOSS_CRITIC = "loss/critic"
LOSS_CRITIC_ADVERSARIAL = "loss/critic_adversarial"  # without the penalty
LOSS_GENERATOR = "loss/generator"
WGAN_DISTANCE = "wgan/distance"        # E[D(real)] − E[D(fake)] under the Wasserstein loss
TIME_STEP_S = "time/step_s"            # wall seconds per step: the report's ms/step column
NONFINITE_WEIGHTS = "weights/nonfinite"  # non-finite weight elements of G and D (trainer)
UNPLOTTED = ("time/*",)  # timings: a column of the report's table, not a plot

CORE_PANELS = (
    Panel("Losses", TRAINING, (LOSS_CRITIC, LOSS_GENERATOR, "loss/*")),
    Panel("non-finite weight elements", TRAINING, (NONFINITE_WEIGHTS,)),
)

# --------------------------------------------------------------------------- penalty terms:
# the core's <term>/penalty and <term>/norm_mean, the penalty probe's spread and quantiles


def penalty_tag(term: str, stat: str) -> str:
    """<term>/<stat> of a penalty term (gp, r1, r2): penalty (its weight-free value),
    norm_mean, norm_std, norm_p05, norm_p50, norm_p95, frac_off (gp), norm (histogram)."""
    return f"{term}/{stat}"


GP_PENALTY = penalty_tag("gp", "penalty")        # mean (‖∇D(x̂)‖ − 1)², without λ
GP_NORM_MEAN = penalty_tag("gp", "norm_mean")    # mean per-sample ‖∇D(x̂)‖
GP_NORM_P50 = penalty_tag("gp", "norm_p50")
GP_NORM_P95 = penalty_tag("gp", "norm_p95")
GP_NORM_TITLE = "GP: ‖∇D(x̂)‖ at interpolates"
PENALTY_NORM_STATS = ("norm_std", "norm_p05", "norm_p50", "norm_p95")
FRAC_OFF = "frac_off"  # fraction of points whose norm is more than 0.5 from the target

# --------------------------------------------------------------------------- critic probe

CRITIC_D_REAL_MEAN = "critic/d_real_mean"
CRITIC_D_REAL_STD = "critic/d_real_std"
CRITIC_D_FAKE_MEAN = "critic/d_fake_mean"
CRITIC_D_FAKE_STD = "critic/d_fake_std"
CRITIC_LOSS_EMA = "critic/loss_ema"
CRITIC_LOSS_DRIFT_Z = "critic/loss_drift_z"
CRITIC_ACCURACY = "critic/accuracy"    # fraction of real and fake D tells apart
CRITIC_R_T = "critic/r_t"              # ADA's overfitting heuristic E[sign D(real)]

CRITIC_PANELS = (
    Panel("D(real) and D(fake)", CRITIC, (CRITIC_D_REAL_MEAN, CRITIC_D_FAKE_MEAN),
          labels=("D(real) mean", "D(fake) mean"), std=(CRITIC_D_REAL_STD, CRITIC_D_FAKE_STD)),
    Panel(CRITIC_LOSS_DRIFT_Z, CRITIC, (CRITIC_LOSS_DRIFT_Z,)),
    Panel(CRITIC_LOSS_EMA, CRITIC, (CRITIC_LOSS_EMA,)),
)

# --------------------------------------------------------------------------- kernels probe


def kernel_tag(layer: str, stat: str) -> str:
    """kernel/<layer>/<stat>; kernel_tag("*", stat) is the pattern of every layer's."""
    return f"kernel/{layer}/{stat}"


KERNEL_STATS = ("entropy", "max_abs", "mean", "near_zero", "reduce_norm", "sample_var",
                "spatial_var", "span_norm", "std")
KERNEL_ENTROPY = kernel_tag("*", "entropy")
KERNEL_MAX_ABS = kernel_tag("*", "max_abs")
KERNEL_NEAR_ZERO = kernel_tag("*", "near_zero")
KERNEL_SPATIAL_VAR = kernel_tag("*", "spatial_var")

KERNEL_PANELS = tuple(Panel(f"kernel {stat}", KERNELS, (kernel_tag("*", stat),))
                      for stat in KERNEL_STATS)

# --------------------------------------------------------------------------- spectra probe


def spectra_tag(layer: str, measure: str) -> str:
    """spectra/<layer>/<measure> (sigma0, sigma1, ratio); layer "*": the pattern."""
    return f"spectra/{layer}/{measure}"


SPECTRA_SIGMA0 = spectra_tag("*", "sigma0")
SPECTRA_SIGMA1 = spectra_tag("*", "sigma1")
SPECTRA_RATIO = spectra_tag("*", "ratio")

SPECTRA_PANELS = (
    Panel("spectra σ0 (largest singular value)", SPECTRA, (SPECTRA_SIGMA0,), log=True),
    Panel("spectra σ1", SPECTRA, (SPECTRA_SIGMA1,), log=True),
    Panel("spectra σ0/σ1", SPECTRA, (SPECTRA_RATIO,)),
)

# --------------------------------------------------------------------------- gradients probe


def grad_tag(layer: str) -> str:
    """grad/<layer>: ‖∇W‖ of the layer's parameters; layer "*": the pattern."""
    return f"grad/{layer}"


def update_tag(layer: str) -> str:
    """update/<layer>: ‖W_t − W_{t−1}‖ / ‖W_{t−1}‖; layer "*": the pattern."""
    return f"update/{layer}"


GRAD, UPDATE = grad_tag("*"), update_tag("*")

GRADIENT_PANELS = (
    Panel("gradient norms per layer", SPECTRA, (GRAD,), log=True),
    Panel("update / weight per layer", SPECTRA, (UPDATE,), log=True),
)

# --------------------------------------------------------------------------- diversity probe

DIVERSITY_PAIRWISE = "diversity/pairwise"
DIVERSITY_DUP_RATE = "diversity/dup_rate"
DIVERSITY_PAIRWISE_REAL = "diversity/pairwise_real"
DIVERSITY_COVERAGE = "diversity/coverage"
# its k, the nearest real neighbours whose ball a sample must fall in (Naeem et al.'s 5): real
# data covers itself at about 1 - 2^-k = 0.97, and coverage needs more than k real images
COVERAGE_K = 5

DIVERSITY_PANELS = tuple(Panel(tag, QUALITY, (tag,)) for tag in (
    DIVERSITY_COVERAGE, DIVERSITY_DUP_RATE, DIVERSITY_PAIRWISE, DIVERSITY_PAIRWISE_REAL))

# --------------------------------------------------------------------------- fid probe
# (the readings of stabgan.fid.measure_generator)

FID = "fid/*"                          # fid/<features>: domain or inception
COVERAGE_MODES = "coverage/modes"
COVERAGE_KL = "coverage/kl"

FID_PANELS = (
    Panel("FID (lower is better)", FID_SECTION, (FID,)),
    *(Panel(tag, QUALITY, (tag,)) for tag in (COVERAGE_KL, COVERAGE_MODES)),
)

# --------------------------------------------------------------------------- overfit probe
# D's raw scores on real images kept out of training, on training images and on generated ones

OVERFIT_R_V = "overfit/r_v"            # ADA's (E[D_train] − E[D_holdout]) / (E[D_train] − E[D_fake])
OVERFIT_D_TRAIN = "overfit/d_train"    # mean D(x) over a fixed sample of training images
OVERFIT_D_HOLDOUT = "overfit/d_holdout"  # ... over the held-out images
OVERFIT_D_FAKE = "overfit/d_fake"      # ... over generated images of fixed noise

OVERFIT_PANELS = (
    Panel("overfit/r_v: held-out images scored like training (0) or generated ones (1)", CRITIC,
          (OVERFIT_R_V,), target=0.0),
    Panel("D on training, held-out and generated images", CRITIC,
          (OVERFIT_D_TRAIN, OVERFIT_D_HOLDOUT, OVERFIT_D_FAKE),
          labels=("training", "held out", "generated")),
)
