"""The objective a run trains with, as what it logs and how the detector judges it.

An objective is a loss (how the critic's scores on real and fake become the critic's and the
generator's losses) and a penalty (∇D taken at some points, pulled towards a target or towards
0). Each declares its own readings here: the score gap's tag, how D's scores decide real vs
fake (for D's accuracy), the penalty terms' tag groups, their report panels and the tags the
detector's divergence and penalty rules judge. The maths lives with the trainer
(stabgan/losses.py); a bring-your-own loop names its objective to the Monitor, which writes it
into the run directory's config.json, where `stabgan diagnose` and the report read it back.
A run written before objectives existed trained WGAN-GP (`objective_of`). No torch here.

A new loss: its maths in stabgan/losses.py and its `LossReadings` in LOSSES below; a new
penalty: its maths there and its terms in PENALTIES below.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from probes.readings import (CORE_PANELS, CRITIC, CRITIC_ACCURACY, CRITIC_PANELS, CRITIC_R_T,
                             DIVERSITY_PANELS, FID_PANELS, FRAC_OFF, GP_NORM_TITLE, GRADIENT_PANELS,
                             KERNEL_PANELS, LOSS_GENERATOR, SPECTRA_PANELS, TRAINING,
                             WGAN_DISTANCE, Panel, merge_panels, penalty_tag)

CRITIC_GAP = "critic/gap"  # E[D(real)] − E[D(fake)] of a loss whose gap is no distance


@dataclass(frozen=True)
class LossReadings:
    """What one loss logs beyond the two losses.

    gap_tag: where E[D(real)] − E[D(fake)] goes (WGAN: the Wasserstein estimate, `wgan/distance`).
    decision: how D's scores call a sample real, for `critic/accuracy`: "sign" (D(x) > 0: the
    losses with a fixed decision boundary, which also log ADA's r_t = E[sign D(real)]) or
    "pair" (D(real) > D(fake) for the pair: the losses of score differences, where D's zero
    means nothing).
    runaway: positive losses whose growth far over their band is a divergence: a generator
    loss that climbs while D wins (softplus losses; hinge's and WGAN's take any sign).
    chance_loss: the critic's loss when it scores every sample 0, telling nothing apart (hinge
    2, ns 2·ln 2, rpgan ln 2; WGAN none). The loss moves over that range as the players trade
    the lead: early on a critic that separates everything (loss near 0) is caught up with
    (near chance), an ordinary 30-fold rise over a band near 0 and no divergence. So a move
    of the critic loss counts in multiples of at least this.
    """
    name: str
    gap_tag: str
    gap_title: str
    decision: str
    runaway: tuple[str, ...] = ()
    chance_loss: float = 0.0


@dataclass(frozen=True)
class PenaltyTerm:
    """One gradient penalty: ∇D taken at `points`, its readings under `name/`.

    target: the norm the penalty pulls ‖∇D‖ to (the gradient penalty's 1), judged as a
    distance from it; None (R1, R2: pulled towards 0) judges the norms against their own band.
    """
    name: str
    points: str
    target: float | None = None

    def tag(self, stat: str) -> str:
        """`<name>/<stat>`: penalty, norm_mean, norm_std, norm_p05, norm_p50, norm_p95, ..."""
        return penalty_tag(self.name, stat)

    @property
    def norm_title(self) -> str:
        return GP_NORM_TITLE if self.name == "gp" else f"{self.name.upper()}: ‖∇D‖ at {self.points}"

    @property
    def label(self) -> str:
        """The detector's name for its blow-up."""
        return "gradient-penalty blow-up" if self.name == "gp" else \
            f"{self.name.upper()} penalty blow-up"


LOSSES = {loss.name: loss for loss in (
    LossReadings("wgan", WGAN_DISTANCE, "wgan/distance = E[D(real)] − E[D(fake)]", "pair"),
    LossReadings("hinge", CRITIC_GAP, "critic/gap = E[D(real)] − E[D(fake)]", "sign",
                 chance_loss=2.0),
    LossReadings("ns", CRITIC_GAP, "critic/gap = E[D(real)] − E[D(fake)] (logits)", "sign",
                 runaway=(LOSS_GENERATOR,), chance_loss=2 * math.log(2)),
    LossReadings("rpgan", CRITIC_GAP, "critic/gap = E[D(real)] − E[D(fake)] (logits)", "pair",
                 runaway=(LOSS_GENERATOR,), chance_loss=math.log(2)),
)}
_R1 = PenaltyTerm("r1", "real data")
_R2 = PenaltyTerm("r2", "generated samples")
PENALTIES: dict[str, tuple[PenaltyTerm, ...]] = {
    "gp": (PenaltyTerm("gp", "interpolates", target=1.0),),
    "r1": (_R1,),
    "r2": (_R2,),
    "r1r2": (_R1, _R2),
    "none": (),
}


@dataclass(frozen=True)
class Objective:
    """A loss and a penalty (names from LOSSES and PENALTIES); ValueError naming a bad one."""
    loss: str = "wgan"
    penalty: str = "gp"

    def __post_init__(self):
        for what, value, accepted in (("loss", self.loss, LOSSES), ("penalty", self.penalty,
                                                                    PENALTIES)):
            if value not in accepted:
                raise ValueError(f"{what}={value!r} is not one of {', '.join(accepted)}")

    @property
    def readings(self) -> LossReadings:
        return LOSSES[self.loss]

    @property
    def terms(self) -> tuple[PenaltyTerm, ...]:
        return PENALTIES[self.penalty]

    @property
    def gap_tag(self) -> str:
        return self.readings.gap_tag

    @property
    def nan_tags(self) -> tuple[str, ...]:
        """The objective's own readings whose non-finite value is a nan event: the gap, and
        every tag of its penalty terms (as `<term>/*` patterns)."""
        return self.gap_tag, *(term.tag("*") for term in self.terms)

    def panels(self) -> tuple[Panel, ...]:
        """The plots of the Monitor's core readings of this objective: the gap, and per
        penalty term the mean norm (the target's line where it has one) and the penalty."""
        panels = [Panel(self.readings.gap_title, TRAINING, (self.gap_tag,))]
        for term in self.terms:
            target = {"target": term.target} if term.target is not None else {}
            panels += [Panel(term.norm_title, TRAINING, (term.tag("norm_mean"),),
                             labels=("mean",), **target),
                       Panel(term.tag("penalty"), TRAINING, (term.tag("penalty"),))]
        return tuple(panels)

    def penalty_panels(self) -> tuple[Panel, ...]:
        """The penalty probe's plots: per term the norms' median and p05–p95 band over the
        core's mean (the same title: it replaces the core's plot), and for a term with a target
        the fraction of points far from it."""
        panels = []
        for term in self.terms:
            target = {"target": term.target} if term.target is not None else {}
            panels.append(Panel(term.norm_title, TRAINING, (term.tag("norm_mean"),
                                                            term.tag("norm_p50")),
                                labels=("mean", "median"), dashed=(term.tag("norm_p50"),),
                                band=(term.tag("norm_p05"), term.tag("norm_p95")),
                                band_label="p05–p95", std=(term.tag("norm_std"),), **target))
            if term.target is not None:
                panels.append(Panel(term.tag(FRAC_OFF), TRAINING, (term.tag(FRAC_OFF),)))
        return tuple(panels)

    def critic_panels(self) -> tuple[Panel, ...]:
        """The critic probe's plots: the score populations, the loss's drift, and how well D
        tells real from fake (with ADA's r_t where D's sign decides)."""
        sign = self.readings.decision == "sign"
        tags = (CRITIC_ACCURACY, CRITIC_R_T) if sign else (CRITIC_ACCURACY,)
        title = "D's accuracy on real vs fake" + (" and r_t = E[sign D(real)]" if sign else "")
        return (*CRITIC_PANELS, Panel(title, CRITIC, tags))

    def to_dict(self) -> dict[str, str]:
        return {"loss": self.loss, "penalty": self.penalty}

    def __str__(self) -> str:
        return f"{self.loss} + {self.penalty}"


def objective_of(config: Mapping) -> Objective:
    """The objective of a run directory's config (config.json's "config"): its loss and penalty;
    a run written before they were recorded trained WGAN-GP."""
    return Objective(config.get("loss", "wgan"), config.get("penalty", "gp"))


WGAN_GP = Objective()
# The panels of a run directory without runlog.PANELS (written before the file existed, so
# trained with WGAN-GP): the core's and every probe's of stabgan's registry, in its order.
DEFAULT_PANELS = merge_panels(CORE_PANELS, WGAN_GP.panels(), WGAN_GP.penalty_panels(),
                              WGAN_GP.critic_panels(), KERNEL_PANELS, SPECTRA_PANELS,
                              DIVERSITY_PANELS, FID_PANELS, GRADIENT_PANELS)
