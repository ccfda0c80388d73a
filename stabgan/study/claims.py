"""The seed's claims, each judged by a stated rule on grid points: supported, contradicted or
inconclusive, with its numbers and the same numbers in words."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable

from stabgan.config import NORMS
from stabgan.nn.involution import eq5_parameter_estimate as eq5
from stabgan.study.records import Point
from stabgan.study.sweeps import Setting

MIN_RUNS = 3  # runs with a verdict needed on each side of a stability comparison
BEST_K = (3, 5)  # the seed: "the best K is around 4 x 4"


def table2_width(t2: dict[tuple, Point]) -> int:
    """C of the table2 runs (64 unless a quick check shrank it)."""
    widths = [r.config.get("width") for p in t2.values() for r in p.runs if r.config.get("width")]
    return widths[0] if widths else 64


def exact_params(config: dict) -> int | None:
    """Parameters of one involution layer of our model for this config (weights, biases, norm)."""
    if config.get("arch") != "igan":
        return None
    from stabgan.models import count_parameters
    from stabgan.nn.involution import Involution2d
    layer = Involution2d(config["width"], config["kernel_size"], 1,
                         config["groups"], config["reduction"], config["norm"])
    return count_parameters(layer)


RULE_NOISE = ("A difference between two points counts only when it exceeds the seed-to-seed "
              "noise: the larger of the two points' spreads (max − min of min-FID over seeds). "
              "With one seed per point, or no FID recorded, a FID claim is inconclusive.")
RULE_RATE = ("Instability rate = runs whose verdict is unstable or collapsed / runs with a "
             "verdict. A setting is worse when its rate exceeds the baseline's by at least one "
             "run in three (1/3).")
RULE_FLIP = ("over the settings run both with and without it: supported if the instability rate "
             "with it exceeds the rate without by ≥ 1/3; contradicted if it is not higher while "
             "some runs were unstable; inconclusive when no run was; at least 3 runs a side")


@dataclass
class Finding:
    """A claim's verdict, its numbers for the claims table, and the same numbers in words."""
    verdict: str   # supported | contradicted | inconclusive
    numbers: str
    reading: str
    measured: bool = True  # False: the runs the rule needs are missing


@dataclass
class Rate:
    """Unstable or collapsed runs among the runs with a verdict."""
    bad: int
    judged: int

    @property
    def value(self) -> float | None:
        return self.bad / self.judged if self.judged else None

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.bad}/{self.judged})"


def _unmeasured(needs: str) -> Finding:
    return Finding("inconclusive", f"needs {needs}", f"Not measured: the rule needs {needs}.",
                   measured=False)


def _compare(a: Point | None, b: Point | None, attr: str = "fid_min"):
    """(b - a, noise) or None when the study cannot tell."""
    if a is None or b is None:
        return None
    ma, mb, sa, sb = a.mean(attr), b.mean(attr), a.spread(attr), b.spread(attr)
    if ma is None or mb is None or sa is None or sb is None:
        return None
    return mb - ma, max(sa, sb)


def _noise(diff: float, noise: float) -> str:
    """Where diff stands against the noise, in words."""
    return f"{'beyond' if abs(diff) > noise else 'within'} the seed-to-seed noise of {noise:.1f}"


def rate_of(points: list[Point]) -> Rate:
    """The instability rate over the runs of these points."""
    return Rate(sum(p.bad for p in points), sum(p.judged for p in points))


def _median_onset(points: list[Point]) -> float | None:
    onsets = [r.onset for p in points for r in p.runs if r.onset is not None]
    return statistics.median(onsets) if onsets else None


def _few(*rates: Rate) -> bool:
    """Too few runs with a verdict on a side to judge a rate."""
    return min(r.judged for r in rates) < MIN_RUNS


FEW_TEXT = f"fewer than {MIN_RUNS} runs on a side"
FEW = f"; {FEW_TEXT}"


def claim_best_k(t2: dict[tuple, Point]) -> Finding:
    """Cases 6, 1, 7, 3: K = 1, 3, 5, 7 at G=4, R=2. The best K within 3–5 is compared with
    the best K outside; a best K outside 3–5 with the next best K."""
    by_k = {k: t2.get((k, 4, 2)) for k in (1, 3, 5, 7)}
    if any(p is None or p.spread("fid_min") is None for p in by_k.values()):
        return _unmeasured("min FID for K = 1, 3, 5, 7 (G=4, R=2) over at least two seeds each")
    means = {k: p.mean("fid_min") for k, p in by_k.items()}
    best = min(means, key=means.get)
    rival = min((k for k in means if k not in BEST_K) if best in BEST_K else
                (k for k in means if k != best), key=means.get)
    gap = means[rival] - means[best]
    noise = max(by_k[best].spread("fid_min"), by_k[rival].spread("fid_min"))
    verdict = ("inconclusive" if gap <= noise else
               "supported" if best in BEST_K else "contradicted")
    times = {k: statistics.median(p.values("ms_per_step")) for k, p in by_k.items()
             if p.values("ms_per_step")}
    cost = 3 in times and 7 in times
    numbers = ("mean min FID " + ", ".join(f"K={k} {m:.1f}" for k, m in means.items()) +
               f"; K={rival} − K={best} = {gap:.1f} vs noise {noise:.1f}" +
               (f"; ms/step K=3 {times[3]:.0f}, K=7 {times[7]:.0f}" if cost else ""))
    rival_text = "the best K outside 3–5" if best in BEST_K else "the next best"
    reading = (f"Mean min FID is lowest at K = {best} ({means[best]:.1f}); {rival_text}, "
               f"K = {rival}, is {gap:.1f} higher, {_noise(gap, noise)}." +
               (f" A step took {times[3]:.0f} ms at K = 3 and {times[7]:.0f} ms at K = 7."
                if cost else ""))
    return Finding(verdict, numbers, reading)


def claim_groups(t2: dict[tuple, Point]) -> Finding:
    """Case 1 (G=4) vs case 5 (G=1): FID about the same."""
    cmp = _compare(t2.get((3, 4, 2)), t2.get((3, 1, 2)))
    if cmp is None:
        return _unmeasured("min FID of cases 1 (G=4) and 5 (G=1) over at least two seeds each")
    diff, noise = cmp
    verdict = ("supported" if abs(diff) <= noise else
               "contradicted" if abs(diff) > 2 * noise else "inconclusive")
    reading = (f"Mean min FID with G = 1 minus G = 4 is {diff:+.1f}, {_noise(diff, noise)}" +
               (" but not twice it." if verdict == "inconclusive" else "."))
    return Finding(verdict, f"FID(G=1) − FID(G=4) = {diff:.1f} vs noise {noise:.1f}", reading)


def claim_groups_memory(width: int) -> Finding:
    """Exact parameter counts of our layer at K=3, R=2: G=4 vs G=1 (no training needed)."""
    base = {"arch": "igan", "width": width, "kernel_size": 3, "reduction": 2, "norm": "none"}
    g4, g1 = exact_params({**base, "groups": 4}), exact_params({**base, "groups": 1})
    e4, e1 = eq5(width, 3, 4, 2), eq5(width, 3, 1, 2)
    numbers = f"C={width}: exact #params G=4 {g4}, G=1 {g1}; eq. 5: G=4 {e4:.0f}, G=1 {e1:.0f}"
    reading = (f"At C = {width}, K = 3, R = 2 our involution layer has {g4} parameters with "
               f"G = 4 and {g1} with G = 1 (the seed's eq. 5: {e4:.0f} and {e1:.0f}); this "
               "count needs no training.")
    return Finding("supported" if g4 < g1 else "contradicted", numbers, reading)


def claim_reduction(t2: dict[tuple, Point]) -> Finding:
    """Case 1 (R=2) vs case 4 (R=8) at K=3; case 3 vs 2 at K=7 reported beside."""
    k3 = _compare(t2.get((3, 4, 2)), t2.get((3, 4, 8)))
    k7 = _compare(t2.get((7, 4, 2)), t2.get((7, 4, 8)))
    if k3 is None:
        return _unmeasured("min FID of cases 1 (R=2) and 4 (R=8) over at least two seeds each")
    diff, noise = k3
    verdict = "supported" if diff > noise else "contradicted" if diff < -noise else "inconclusive"
    numbers = (f"K=3: FID(R=8) − FID(R=2) = {diff:.1f} vs noise {noise:.1f}" +
               (f"; K=7: FID(R=8) − FID(R=2) = {k7[0]:.1f} vs noise {k7[1]:.1f}" if k7 else ""))
    reading = (f"At K = 3, mean min FID with R = 8 minus R = 2 is {diff:+.1f}, "
               f"{_noise(diff, noise)}" +
               (f"; at K = 7 (shown, not judged) it is {k7[0]:+.1f}, {_noise(*k7)}" if k7 else "")
               + ".")
    return Finding(verdict, numbers, reading)


def claim_flip(points: dict[tuple, Point], flip: Callable[[tuple], tuple | None],
               with_: str, without: str) -> Finding:
    """Are runs with an ingredient less stable than the same settings without it (RULE_FLIP)?
    flip maps a point with the ingredient to the point without it (None for a point without
    it); only pairs whose both points have finished runs count, so neither side weighs
    settings the other lacks."""
    pairs = [(key, flip(key)) for key in points if flip(key) in points]
    sides = [[points[k] for k in dict.fromkeys(side)] for side in zip(*pairs)] or [[], []]
    treated, control = rate_of(sides[0]), rate_of(sides[1])
    if not treated.judged or not control.judged:
        return _unmeasured(f"finished runs with a verdict both with {with_} and with {without}")
    numbers = f"instability rate with {with_} {treated}, with {without} {control}"
    reading = (f"{treated.bad} of {treated.judged} runs with {with_} were unstable or collapsed "
               f"vs {control.bad} of {control.judged} with {without} (rates "
               f"{treated.value:.2f} vs {control.value:.2f})")
    onsets = [_median_onset(side) for side in sides]
    if None not in onsets:
        numbers += f"; median collapse onset {onsets[0]:,.0f} vs {onsets[1]:,.0f}"
        reading += f", collapsing at a median step of {onsets[0]:,.0f} vs {onsets[1]:,.0f}"
    if _few(treated, control):
        return Finding("inconclusive", numbers + FEW, reading + FEW + ".")
    if treated.value >= control.value + 1 / 3:
        return Finding("supported", numbers, reading + ".")
    if not treated.bad and not control.bad:
        return Finding("inconclusive", numbers, reading + "; no run became unstable on either "
                       "side, so this training length cannot show the difference.")
    if treated.value <= control.value:
        return Finding("contradicted", numbers, reading + f"; runs with {with_} were not less "
                       "stable.")
    return Finding("inconclusive", numbers, reading + f"; higher with {with_}, but by less "
                   "than 1/3.")


def claim_two_layers(st: dict[tuple, Point]) -> Finding:
    """1 vs 2 layers over the (inv_layers, norm) points whose norm ran at both depths."""
    return claim_flip(st, lambda key: (1, key[1]) if key[0] == 2 else None, "two layers",
                      "one layer")


def critic_bn(setting: Setting) -> bool:
    """Batch statistics in the critic: involution in D with BatchNorm in its kernel generation."""
    return setting.inv_where != "g" and setting.norm == "batch"


# The mechanism's questions, each an ingredient switched off: (id, claim, flip, with, without).
MECHANISM_FLIPS = (
    ("M-BN-D", "BatchNorm in the critic's kernel generation makes WGAN-GP training unstable "
               "(the hypothesis)",
     lambda s: s._replace(norm="none") if critic_bn(s) else None,
     "BatchNorm in the critic's kernel generation", "the same settings without it"),
    ("M-BN-G", "BatchNorm in the generator's kernel generation alone makes training unstable",
     lambda s: s._replace(norm="none") if s.inv_where == "g" and s.norm == "batch" else None,
     "BatchNorm in the generator's kernel generation only", "the same settings without it"),
    ("M-INV-D", "Involution in the critic without BatchNorm makes training unstable",
     lambda s: s._replace(inv_where="g") if s.inv_where != "g" and s.norm == "none" else None,
     "involution in the critic without BatchNorm", "involution in the generator only"),
    ("M-2L-BN", "Depth matters beyond BatchNorm in the critic: with it, two involution layers "
                "are less stable than one",
     lambda s: s._replace(inv_layers=1) if s.inv_layers == 2 and critic_bn(s) else None,
     "two layers", "one layer"),
    ("M-2L", "Without BatchNorm in the critic, two involution layers are less stable than one "
             "(every other setting of the study run at both depths)",
     lambda s: s._replace(inv_layers=1) if s.inv_layers == 2 and not critic_bn(s) else None,
     "two layers", "one layer"),
)


def mechanism_claims(mech: dict[Setting, Point]) -> list[tuple[str, str, Finding, str]]:
    """(id, claim, finding, rule) of each MECHANISM_FLIPS question on the Setting points."""
    return [(cid, text, claim_flip(mech, flip, with_, without), RULE_FLIP)
            for cid, text, flip, with_, without in MECHANISM_FLIPS]


RULE_NORM = ("2 layers, vs none, at least 3 runs a side. When 2-layer runs without "
             "normalization are unstable: contradicted if the normalization cuts the "
             "instability rate by ≥ 1/3, supported if it does not lower it. When they are not: "
             "supported if the normalization makes training worse (2-layer rate ≥ 1/3, 1-layer "
             "rate ≥ none's + 1/3, or 1-layer min FID worse beyond the noise), else inconclusive")


def claim_norm(st: dict[tuple, Point], norm: str) -> Finding:
    """The seed lists the normalizations under its stability issues: they "do not work" to
    stabilize two successive involution layers. Judged at 2 layers against norm none; when
    2-layer training without normalization shows no instability there is nothing to fix, and
    the claim holds only if the normalization makes training worse (rate or FID, 1 or 2 layers)."""
    points = {(layers, n): st.get((layers, n)) for layers in (1, 2) for n in ("none", norm)}
    if any(points[(2, n)] is None or not points[(2, n)].judged for n in ("none", norm)):
        return _unmeasured(f"finished 2-layer runs with a verdict for norm none and {norm}")
    rates = {key: rate_of([p]) if p is not None else Rate(0, 0) for key, p in points.items()}
    base2, norm2, base1, norm1 = (rates[(2, "none")], rates[(2, norm)], rates[(1, "none")],
                                  rates[(1, norm)])
    cmp = _compare(points[(1, "none")], points[(1, norm)])
    numbers = (f"2 layers: instability rate {norm} {norm2} vs none {base2}" +
               (f"; 1 layer: {norm1} vs {base1}" if base1.judged and norm1.judged else "") +
               (f"; 1 layer FID({norm}) − FID(none) = {cmp[0]:.1f} vs noise {cmp[1]:.1f}"
                if cmp else ""))
    reading = (f"With two layers, {norm2.bad} of {norm2.judged} {norm}-normalized runs were "
               f"unstable or collapsed vs {base2.bad} of {base2.judged} without normalization")
    if _few(base2, norm2):
        return Finding("inconclusive", numbers + FEW, reading + FEW + ".")
    if base2.bad:
        if norm2.value <= base2.value - 1 / 3:
            return Finding("contradicted", numbers, reading + f": {norm} normalization "
                           "removed part of the instability.")
        if norm2.value >= base2.value:
            return Finding("supported", numbers, reading + f": {norm} normalization did not "
                           "make two layers more stable.")
        return Finding("inconclusive", numbers, reading + "; lower with normalization, but by "
                       "less than 1/3.")
    worse_rate = norm2.value >= 1 / 3 or (
        base1.judged >= MIN_RUNS and norm1.judged >= MIN_RUNS and norm1.value >= base1.value + 1 / 3)
    fid = (f"; with one layer, mean min FID {norm} minus none is {cmp[0]:+.1f}, {_noise(*cmp)}"
           if cmp else "")
    if worse_rate or (cmp is not None and cmp[0] > cmp[1]):
        return Finding("supported", numbers, reading + fid + f": {norm} normalization made "
                       "training worse.")
    return Finding("inconclusive", numbers, reading + fid + ": without normalization two "
                   "layers showed no instability to fix at this training length, and "
                   f"{norm} normalization did not make training worse.")


def claim_arch(ar: dict[tuple, Point]) -> Finding:
    igan = ar.get(("igan",))
    cmps = {a: _compare(ar.get((a,)), igan) for a in ("dcgan", "sagan")}
    if None in cmps.values():
        return _unmeasured("min FID of igan, dcgan and sagan over at least two seeds each")
    numbers = "; ".join(f"FID(igan) − FID({a}) = {d:.1f} vs noise {n:.1f}"
                        for a, (d, n) in cmps.items())
    reading = "Mean min FID of igan minus " + "; minus ".join(
        f"{a} is {d:+.1f}, {_noise(d, n)}" for a, (d, n) in cmps.items())
    worse = [a for a, (d, n) in cmps.items() if d > n]
    if not worse:
        return Finding("supported", numbers, reading + ".")
    if len(worse) == len(cmps):
        return Finding("contradicted", numbers, reading + ".")
    return Finding("inconclusive", numbers, f"{reading}; igan is worse than {worse[0]} only.")


def claims(t2, ar, seed=None, stacked=None, mech=None) -> list[tuple[str, str, Finding, str]]:
    """(id, claim, finding, rule) for every claim this study judges: the seed's on its long
    seed-faithful runs (seed: faithful and norms points; stacked: the successive reading), the
    mechanism's on every setting of the seed study (mech: Setting points), then the seed's
    Table 2 and architecture claims."""
    seed, stacked, mech = seed or {}, stacked or {}, mech or {}
    return [
        ("L-2L", "Two successive involution layers are unstable — seed layout (two stages), "
                 "long runs", claim_two_layers(seed), RULE_FLIP),
        ("L-2L-stacked", "Two successive involution layers are unstable — stacked at one "
                         "resolution, long runs", claim_two_layers(stacked), RULE_FLIP),
        *[(f"L-{norm}", f"{norm} normalization of the kernels does not work (does not "
                        "stabilize two involution layers) — seed layout, long runs",
           claim_norm(seed, norm), RULE_NORM) for norm in NORMS[1:]],
        *mechanism_claims(mech),
        ("T2-K", "The best K is around 3–5; larger K costs time and memory without better FID "
                 "(Table 2, cases 6, 1, 7, 3)", claim_best_k(t2),
         "supported if the lowest mean min-FID is at K = 3 or 5 and beats the best K outside "
         "3–5 by more than the noise; contradicted if K = 1 or 7 is best by more than the noise"),
        ("T2-G", "G hardly affects FID (cases 1 vs 5)", claim_groups(t2),
         "supported if abs(ΔFID) ≤ noise; contradicted if abs(ΔFID) > 2 × noise"),
        ("T2-Gm", "Larger G saves memory (cases 1 vs 5, #params)",
         claim_groups_memory(table2_width(t2)),
         "our layer's exact parameter count: supported if G=4 has fewer than G=1"),
        ("T2-R", "R affects FID: larger R (fewer parameters) gives worse FID (cases 1 vs 4)",
         claim_reduction(t2), "supported if FID(R=8) − FID(R=2) > noise; contradicted if < −noise"),
        ("A-FID", "iGAN's FID is competitive with DCGAN and SAGAN (Fig. 5, left; no numbers "
                  "in the seed)", claim_arch(ar),
         "supported if FID(igan) is no worse than each baseline beyond the noise; "
         "contradicted if worse than both beyond the noise"),
    ]
