"""Reproduction study: the seed's Table 2, its two stability claims and its architecture
comparison, run as three stabgan sweeps; writes docs/reproduction.md from the run directories.

    python scripts/reproduction_study.py                   # run what is missing, write the doc
    python scripts/reproduction_study.py --steps 5000 --workers 2 --executor ray
    python scripts/reproduction_study.py --doc-only        # rewrite the doc from existing runs
    python scripts/reproduction_study.py --quick-check     # tiny smoke test (runs/reproduction-check)

Sweeps (each into OUT/<study>, resumable: re-running skips finished runs, resumes interrupted):
  table2     the seed's seven (K, G, R) cases with --width 64 (C=64 at the involution layer,
             as in the seed) x 2 seeds
  stability  inv_layers {1, 2} x norm {none, batch, spectral, softmax} x 3 seeds
  archs      arch {dcgan, sagan, igan} x 3 seeds

The doc is computed from each run's summary.json, diagnosis.json and metrics.jsonl (through
stabgan.runlog): min `fid/domain` when the FID probe ran, coverage, verdicts, onset steps,
collapse kinds, ms/step, and the exact parameter count of our involution layer beside the
seed's eq. 5 estimate (C/G + K*K) * C/(R*G) * G. Each claim gets a verdict by a stated rule:
supported, contradicted or inconclusive, and a conclusion in words from the same numbers. The
doc also says how long the study took (from the run files' times), what limits it, and shows
each sweep's overview figures from the reports package, written as PNGs beside the doc
(docs/reproduction/). Unfinished runs (no summary.json yet) and sweeps not started are listed,
not counted.
"""
from __future__ import annotations

import argparse
import base64
import math
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stabgan.config import resolve_config  # noqa: E402
from stabgan.study import seed_study  # noqa: E402
from stabgan.runlog import (CONFIG, DIAGNOSIS, SUMMARY, find_runs, metric_series,  # noqa: E402
                            read_json, read_metrics)
from stabgan.sweep import (FINISHED, SWEEP_RECORD, SweepSpec, expand, format_table,  # noqa: E402
                           point_name, run_sweep)

# The seed's Table 2 (CelebA 64x64, Inception FID, C=64): case, K, G, R, min FID, #params, s/step.
SEED_TABLE2 = [
    (1, 3, 4, 2, 61.51, 800, 0.154),
    (2, 7, 4, 8, 76.00, 520, 0.333),
    (3, 7, 4, 2, 112.85, 2080, 0.342),
    (4, 3, 4, 8, 76.01, 200, 0.152),
    (5, 3, 1, 2, 62.34, 2336, 0.152),
    (6, 1, 4, 2, 68.73, 644, 0.120),
    (7, 5, 4, 2, 63.37, 1312, 0.230),
]
FID_TAGS = ("fid/domain", "fid/inception")  # the first one a run has is used
COVERAGE_TAG = "coverage/modes"
NORMS = ("none", "batch", "spectral", "softmax")
MIN_RUNS = 3  # runs with a verdict needed on each side of a stability comparison
ARCHS = ("dcgan", "sagan", "igan")
BEST_K = (3, 5)  # the seed: "the best K is around 4 x 4"
SEED_STEPS = 50_000
SEED_DATA = "CelebA 64×64"
DEFAULT_DATASET = "mnist5k"
SEED_SWEEPS = ("faithful", "successive", "norms")  # stabgan.study: the long, seed-faithful runs
SWEEP_KEYS = {"stability": ("inv_layers", "norm"), "archs": ("arch",),  # a grid point, over seeds
              "table2": ("kernel_size", "groups", "reduction"),
              **{name: ("inv_layers", "norm") for name in SEED_SWEEPS}}
# Run fields hidden from the reports' overview figures, so that each sweep shows the figures that
# mean something for it: the collapse-rate grid (inv-layers x norm) for stability only, verdicts
# by arch for archs only; FID curves and collapse onsets for every sweep.
FIGURE_HIDDEN = {"stability": ("arch",), "archs": ("inv_layers", "norm"),
                 "table2": ("arch", "inv_layers", "norm"), **{name: ("arch",) for name in SEED_SWEEPS}}
# what a seed-study row is, beyond its grid point: the sweep's fixed settings, in words
SEED_SETTING = {"faithful": "seed layout: stages (S/2, S/4), residual γ, SN in G and D, separate GP step",
                "successive": "stacked at S/2 with nothing between (plain), SN in G and D, separate GP step",
                "norms": "seed layout (as faithful), with kernel normalization"}
LABEL_PREFIX = {"inv_layers": "L", "kernel_size": "K", "groups": "G", "reduction": "R",
                "seed": "s"}  # run labels in the figures: "L2 batch s0"
FID_FEATURES = {"fid/domain": "features of a classifier trained on the dataset, not Inception",
                "fid/inception": "Inception features, as the seed"}


def eq5(channels: int, k: int, g: int, r: int) -> float:
    """The seed's eq. 5 estimate of an involution layer's parameters."""
    return (channels / g + k * k) * channels / (r * g) * g


def exact_params(config: dict) -> int | None:
    """Parameters of one involution layer of our model for this config (weights, biases, norm)."""
    if config.get("arch") != "igan":
        return None
    from stabgan.models import count_parameters
    from stabgan.nn.involution import Involution2d
    layer = Involution2d(config["width"], config["kernel_size"], 1,
                         config["groups"], config["reduction"], config["norm"])
    return count_parameters(layer)


# --------------------------------------------------------------------------- the sweeps

def studies(args) -> dict[str, SweepSpec]:
    """The three sweeps; --quick-check shrinks every one to a few tiny runs."""
    base = {"dataset": args.dataset}
    if args.steps:
        base["steps"] = args.steps
    fid_every = max(1, (args.steps or resolve_config().steps) // 10)
    base["fid_every"] = fid_every
    seeds2, seeds3 = (0, 1), (0, 1, 2)
    cases = SEED_TABLE2
    norms, layers, archs = NORMS, (1, 2), ARCHS
    table2_width = 64
    if args.quick_check:
        base.update(steps=args.steps or 4, width=8, z_dim=16, batch_size=16, probes="none",
                    fid_every=0, log_every=1, sample_every=1000, ckpt_every=1000)
        seeds2 = seeds3 = (0,)
        cases, norms, table2_width = SEED_TABLE2[:2], ("none", "batch"), 8
    common = dict(workers=args.workers, executor=args.executor, ray_address=args.ray_address,
                  report=not args.no_report)
    # cases the claims compare first (K = 1, 5, 7 beside case 1; then R = 8; then G = 1); the
    # slow case 2 (K = 7, R = 8), which no claim needs, last
    order = {1: 0, 6: 1, 7: 2, 3: 3, 4: 4, 5: 5, 2: 6}
    table2_points = tuple({"kernel_size": k, "groups": g, "reduction": r}
                          for _, k, g, r, *_ in sorted(cases, key=lambda c: order[c[0]]))
    seed_base, seed_seeds = None, (0, 1, 2)
    if args.quick_check:
        seed_base = {k: v for k, v in base.items() if k not in ("dataset", "steps")}
        seed_seeds = (0,)
    long_runs = seed_study(args.seed_out, args.seed_steps or (4 if args.quick_check else 5000),
                           args.workers, seed_seeds, seed_base, executor=args.executor,
                           ray_address=args.ray_address, report=not args.no_report)
    return {  # the long seed-faithful sweeps first, then the short ones of the first round
        **long_runs,
        "stability": SweepSpec(grid={"inv_layers": layers, "norm": norms, "seed": seeds3},
                               base=base, out=args.out / "stability", **common),
        "archs": SweepSpec(grid={"arch": archs, "seed": seeds3}, base=base,
                           out=args.out / "archs", **common),
        "table2": SweepSpec(grid={"seed": seeds2}, points=table2_points,
                            base={**base, "width": table2_width}, out=args.out / "table2", **common),
    }


# --------------------------------------------------------------------------- reading runs

@dataclass
class RunRecord:
    name: str
    config: dict
    status: str | None
    verdict: str | None
    onset: int | None
    kinds: list[str]
    fid_min: float | None
    fid_tag: str | None
    coverage_last: float | None
    coverage_best: float | None
    ms_per_step: float | None
    steps: int | None
    wall_s: float | None
    started: float | None  # mtime of config.json (rewritten when a run resumes)
    ended: float | None    # mtime of summary.json (written when a run stops)
    path: Path | None = None
    events: list = field(default_factory=list)  # diagnosis.json's events

    @property
    def finished(self) -> bool:
        """Completed or stopped on collapse: the runs the doc counts."""
        return self.status in FINISHED


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def read_run(run_dir: Path) -> RunRecord:
    config = (read_json(run_dir / CONFIG) or {}).get("config") or {}
    summary = read_json(run_dir / SUMMARY) or {}
    diagnosis = read_json(run_dir / DIAGNOSIS) or {}
    series = metric_series(read_metrics(run_dir))
    tag = next((t for t in FID_TAGS if t in series), None)
    fid = _finite(series[tag][1]) if tag else []
    coverage = _finite(series.get(COVERAGE_TAG, ((), ()))[1])
    events = diagnosis.get("events") or []
    kinds = list(dict.fromkeys(e.get("kind") for e in events
                               if e.get("severity") == "collapse" and e.get("kind")))
    step_s = summary.get("step_s_median")
    return RunRecord(
        name=run_dir.name, config=config, status=summary.get("status"),
        verdict=summary.get("verdict") or diagnosis.get("verdict"),
        onset=summary.get("onset_step", diagnosis.get("onset_step")), kinds=kinds,
        fid_min=min(fid) if fid else None, fid_tag=tag if fid else None,
        coverage_last=coverage[-1] if coverage else None,
        coverage_best=max(coverage) if coverage else None,
        ms_per_step=step_s * 1000 if isinstance(step_s, (int, float)) else None,
        steps=summary.get("steps"), wall_s=summary.get("wall_s"),
        started=_mtime(run_dir / CONFIG), ended=_mtime(run_dir / SUMMARY), path=run_dir,
        events=events)


@dataclass
class Point:
    """The runs of one grid point over seeds."""
    key: tuple
    runs: list[RunRecord] = field(default_factory=list)

    def values(self, attr: str) -> list[float]:
        return _finite(getattr(r, attr) for r in self.runs)

    def mean(self, attr: str) -> float | None:
        values = self.values(attr)
        return statistics.fmean(values) if values else None

    def spread(self, attr: str) -> float | None:
        """Max - min over seeds: the seed-to-seed noise this study can see."""
        values = self.values(attr)
        return max(values) - min(values) if len(values) > 1 else None

    @property
    def bad(self) -> int:
        """Runs whose verdict is not healthy (unstable or collapsed)."""
        return sum(r.verdict in ("unstable", "collapsed") for r in self.runs)

    @property
    def judged(self) -> int:
        return sum(r.verdict is not None for r in self.runs)


def group(records: list[RunRecord], key_fields: tuple[str, ...]) -> dict[tuple, Point]:
    """Runs by the values of key_fields in their config."""
    points: dict[tuple, Point] = {}
    for record in records:
        key = tuple(record.config.get(f) for f in key_fields)
        points.setdefault(key, Point(key)).runs.append(record)
    return points


@dataclass
class Sweep:
    """One sweep of the study as found on disk: its runs, and the runs it plans."""
    name: str
    out: Path
    planned: list[str]
    records: list[RunRecord]

    @property
    def finished(self) -> list[RunRecord]:
        return [r for r in self.records if r.finished]

    @property
    def unfinished(self) -> list[RunRecord]:
        return [r for r in self.records if not r.finished]

    @property
    def not_started(self) -> list[str]:
        found = {r.name for r in self.records}
        return [name for name in self.planned if name not in found]

    @cached_property
    def points(self) -> dict[tuple, Point]:
        """The finished runs by grid point."""
        return group(self.finished, SWEEP_KEYS[self.name])


def load_sweeps(args) -> dict[str, Sweep]:
    """Every sweep of the study, with whatever runs its folder holds (none if not started)."""
    return {name: Sweep(name, spec.out, [point_name(v) for v in expand(spec.grid, spec.points)],
                        [read_run(d) for d in find_runs(spec.out)])
            for name, spec in studies(args).items()}


def config_values(records: list[RunRecord], key: str) -> list:
    """The distinct values of a config field over records, sorted."""
    return sorted({r.config[key] for r in records if r.config.get(key) is not None}, key=str)


# --------------------------------------------------------------------------- formatting

def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_mean(point: Point | None, attr: str, digits: int = 1) -> str:
    mean = point.mean(attr) if point else None
    if mean is None:
        return "–"
    spread = point.spread(attr)
    return fmt(mean, digits) + (f" ± {spread / 2:.{digits}f}" if spread is not None else "")


def verdicts(point: Point | None) -> str:
    if point is None:
        return "–"
    counts = {v: sum(r.verdict == v for r in point.runs) for v in ("healthy", "unstable", "collapsed")}
    missing = len(point.runs) - sum(counts.values())
    text = " / ".join(str(counts[v]) for v in counts)
    return text + (f" (+{missing} n/a)" if missing else "")


def median_ms(point: Point | None) -> str:
    values = point.values("ms_per_step") if point else []
    return fmt(statistics.median(values), 0) if values else "–"


def onsets(point: Point | None) -> str:
    values = [r.onset for r in point.runs if r.onset is not None] if point else []
    return ", ".join(map(str, values)) or "–"


def kinds(point: Point | None) -> str:
    found = list(dict.fromkeys(k for r in point.runs for k in r.kinds)) if point else []
    return ", ".join(found) or "–"


def runs_count(point: Point | None) -> str:
    return str(len(point.runs)) if point else "0"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def join(values, empty: str = "–") -> str:
    return ", ".join(map(str, values)) or empty


# --------------------------------------------------------------------------- claims

RULE_NOISE = ("A difference between two points counts only when it exceeds the seed-to-seed "
              "noise: the larger of the two points' spreads (max − min of min-FID over seeds). "
              "With one seed per point, or no FID recorded, a FID claim is inconclusive.")
RULE_RATE = ("Instability rate = runs whose verdict is unstable or collapsed / runs with a "
             "verdict. A setting is worse when its rate exceeds the baseline's by at least one "
             "run in three (1/3).")


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


def _rate(points: list[Point]) -> Rate:
    return Rate(sum(p.bad for p in points), sum(p.judged for p in points))


def _few(*rates: Rate) -> bool:
    """Too few runs with a verdict on a side to judge a rate."""
    return min(r.judged for r in rates) < MIN_RUNS


FEW = f"; fewer than {MIN_RUNS} runs on a side"


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


def claim_two_layers(st: dict[tuple, Point]) -> Finding:
    one = _rate([p for (layers, _), p in st.items() if layers == 1])
    two = _rate([p for (layers, _), p in st.items() if layers == 2])
    if not one.judged or not two.judged:
        return _unmeasured("finished stability runs with a verdict for both 1 and 2 layers")
    numbers = f"instability rate 1 layer {one}, 2 layers {two}"
    reading = (f"{two.bad} of {two.judged} two-layer runs were unstable or collapsed vs "
               f"{one.bad} of {one.judged} one-layer runs (rates {two.value:.2f} vs "
               f"{one.value:.2f})")
    if _few(one, two):
        return Finding("inconclusive", numbers + FEW, reading + FEW + ".")
    if two.value >= one.value + 1 / 3:
        return Finding("supported", numbers, reading + ".")
    if not two.bad and not one.bad:
        return Finding("inconclusive", numbers, reading + "; no run became unstable with either "
                       "depth, so this training length cannot show the difference.")
    if two.value <= one.value:
        return Finding("contradicted", numbers, reading + "; two layers were not less stable.")
    return Finding("inconclusive", numbers, reading + "; higher with two layers, but by less "
                   "than 1/3.")


def claim_norm(st: dict[tuple, Point], norm: str) -> Finding:
    """The seed lists the normalizations under its stability issues: they "do not work" to
    stabilize two successive involution layers. Judged at 2 layers against norm none; when
    2-layer training without normalization shows no instability there is nothing to fix, and
    the claim holds only if the normalization makes training worse (rate or FID, 1 or 2 layers)."""
    points = {(layers, n): st.get((layers, n)) for layers in (1, 2) for n in ("none", norm)}
    if any(points[(2, n)] is None or not points[(2, n)].judged for n in ("none", norm)):
        return _unmeasured(f"finished 2-layer runs with a verdict for norm none and {norm}")
    rates = {key: _rate([p]) if p is not None else Rate(0, 0) for key, p in points.items()}
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


# --------------------------------------------------------------------------- timing

@dataclass
class Timing:
    """How long a set of runs took on this machine, from their files."""
    runs: int
    span_s: float | None   # last summary.json written - first config.json written
    compute_s: float | None  # sum of the runs' own wall times
    ms_per_step: float | None
    peak: int              # most runs alive at once


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one time (an interval ending as another starts does not count)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    alive = peak = 0
    for _, change in events:
        alive += change
        peak = max(peak, alive)
    return peak


def timing(records: list[RunRecord]) -> Timing:
    starts = [r.started for r in records if r.started is not None]
    ends = [r.ended for r in records if r.ended is not None]
    ms = [r.ms_per_step for r in records if r.ms_per_step is not None]
    return Timing(
        runs=len(records), span_s=max(ends) - min(starts) if starts and ends else None,
        compute_s=sum(walls) if (walls := _finite(r.wall_s for r in records)) else None,
        ms_per_step=statistics.median(ms) if ms else None,
        peak=peak_overlap([(r.started, r.ended) for r in records
                           if r.started is not None and r.ended is not None]))


def timing_lines(sweeps: dict[str, Sweep]) -> list[str]:
    """The 'Time taken' section: per sweep and total, and how the runs shared the machine."""
    records = [r for s in sweeps.values() for r in s.records]
    total = timing(records)
    rows = [[name, str(t.runs), fmt_duration(t.span_s), fmt_duration(t.compute_s),
             fmt(t.ms_per_step, 0)]
            for name, t in [*((n, timing(s.records)) for n, s in sweeps.items()), ("total", total)]]
    executors = sorted({(read_json(s.out / SWEEP_RECORD) or {}).get("executor")
                        for s in sweeps.values()} - {None})
    threads = config_values(records, "threads")
    return [
        "## Time taken", "",
        table(["sweep", "runs", "wall span", "compute (sum of run times)", "median ms/step"], rows),
        "",
        f"Wall span: from the first run's config.json to the last run's summary.json, pauses "
        f"between invocations included. Machine: {os.cpu_count()} cores; "
        f"{join(executors, 'unknown')} executor, at most {total.peak} runs at once (from "
        f"overlapping run times) × {join(threads)} torch thread(s) per run (from the runs' "
        "config).", ""]


# --------------------------------------------------------------------------- figures

def overview_figures(sweep: Sweep) -> list[dict]:
    """The reports package's overview figures over the sweep's finished runs (FIGURE_HIDDEN)."""
    from reports import figures, html
    runs = [r for r in html.collect(sweep.out, progress=False)["runs"]
            if r["row"]["status"] in FINISHED]
    hidden = FIGURE_HIDDEN[sweep.name]
    rows = [{**{k: v for k, v in r["row"].items() if k not in hidden},
             "name": run_label(r["row"], sweep.name)} for r in runs]
    fid_curves = [(row["name"], row["verdict"], r["fid"]) for row, r in zip(rows, runs) if r["fid"]]
    return figures.aggregate_figures(rows, fid_curves)


def run_label(row: dict, sweep: str) -> str:
    """A legend label short enough for the figures: "L2 batch s0", "K3 G4 R2 s1", "igan s2"."""
    return " ".join(f"{LABEL_PREFIX.get(k, '')}{row.get(k)}" for k in (*SWEEP_KEYS[sweep], "seed"))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def figure_lines(sweep: Sweep, folder: Path) -> list[str]:
    """Write the sweep's overview figures as folder/<sweep>-<title>.png (replacing the ones of
    an earlier doc) and return the markdown that shows them."""
    for old in folder.glob(f"{sweep.name}-*.png"):
        old.unlink()
    if not sweep.finished:
        return []
    try:
        figures = overview_figures(sweep)
    except Exception as error:  # reports is another package: its failure must not cost the doc
        return [f"_Overview figures could not be rendered: {type(error).__name__}: {error}_", ""]
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for figure in figures:
        name = f"{sweep.name}-{slug(figure['title'])}.png"
        (folder / name).write_bytes(base64.b64decode(figure["uri"].split(",", 1)[1]))
        images.append(f"![{figure['title']}]({folder.name}/{name})")
    return [" ".join(images), ""] if images else []


# --------------------------------------------------------------------------- the doc

def table2_width(t2: dict[tuple, Point]) -> int:
    """C of the table2 runs (64 unless a quick check shrank it)."""
    widths = [r.config.get("width") for p in t2.values() for r in p.runs if r.config.get("width")]
    return widths[0] if widths else 64


def default_out(quick_check: bool) -> Path:
    return Path("runs/reproduction-check" if quick_check else "runs/reproduction")


def regen_command(args, steps: list, seed_steps: list, datasets: list) -> str:
    """The command that resumes this study and rewrites this doc."""
    words = ["python scripts/reproduction_study.py"]
    if args.quick_check:
        words.append("--quick-check")
    if args.out != default_out(args.quick_check):
        words.append(f"--out {args.out}")
    if args.seed_out != args.out.parent / ("seed-study-check" if args.quick_check else "seed-study"):
        words.append(f"--seed-out {args.seed_out}")
    if len(seed_steps) == 1 and seed_steps[0] != 5000:
        words.append(f"--seed-steps {seed_steps[0]}")
    if args.doc is not None:
        words.append(f"--doc {args.doc}")
    if len(datasets) == 1 and datasets[0] != DEFAULT_DATASET:
        words.append(f"--dataset {datasets[0]}")
    if len(steps) == 1:
        words.append(f"--steps {steps[0]}")
    return " ".join(words)


def sweep_status(sweep: Sweep) -> str:
    """Which of the sweep's runs the numbers below cover."""
    if not sweep.records:
        return (f"_Not started: no runs in `{sweep.out}` yet; the claims that need them are "
                "inconclusive._")
    text = f"{len(sweep.finished)} finished runs counted ({len(sweep.planned)} planned)"
    if sweep.unfinished:
        text += "; not counted, unfinished: " + ", ".join(
            f"`{r.name}` ({r.status or 'no summary.json'})" for r in sweep.unfinished)
    if sweep.not_started:
        text += f"; {len(sweep.not_started)} not started"
    report = sweep.out / "report.html"
    return text + (f". Every run in detail: `{report}`." if report.is_file() else ".")


def sweep_lines(title: str, sweep: Sweep, folder: Path, header: list[str],
                rows: list[list[str]], notes: str = "") -> list[str]:
    """A sweep's section: status, table, notes, overview figures."""
    return ([f"## {title}", "", sweep_status(sweep), "", table(header, rows), ""] +
            ([notes, ""] if notes else []) + figure_lines(sweep, folder))


def table2_lines(sweep: Sweep, folder: Path) -> list[str]:
    t2 = sweep.points
    width = table2_width(t2)
    rows = []
    for case, k, g, r, fid, params, step_s in SEED_TABLE2:
        p = t2.get((k, g, r))
        rows.append([str(case), f"{k}×{k}", str(g), str(r), f"{fid:.2f}", fmt_mean(p, "fid_min"),
                     str(params), f"{eq5(width, k, g, r):.0f}",
                     fmt(exact_params(p.runs[0].config) if p else None), f"{step_s * 1000:.0f}",
                     median_ms(p), verdicts(p), fmt_mean(p, "coverage_last", 2), kinds(p)])
    return sweep_lines(
        f"Table 2: involution hyperparameters (C = {width})", sweep, folder,
        ["case", "K", "G", "R", "seed min FID", "our min FID", "seed #params", "eq. 5",
         "our exact #params", "seed ms/step", "our ms/step", "verdicts", "coverage",
         "collapse kinds"], rows,
        "`eq. 5` is the seed's estimate (C/G + K·K)·C/(R·G)·G with our C; `our exact #params` "
        "counts one involution layer of our model (reduce 1×1 conv C→C/R and span C/R→K·K·G, "
        "with biases, plus BatchNorm when norm=batch). The seed's ms/step is on its hardware; "
        "ours is the median over the run on this machine.")


POINT_HEADER = ["runs", "verdicts", "onset steps", "collapse kinds", "min FID", "coverage",
                "ms/step"]


def point_cells(p: Point | None) -> list[str]:
    """The POINT_HEADER cells of one grid point ("–" where it has no finished run)."""
    return [runs_count(p), verdicts(p), onsets(p), kinds(p), fmt_mean(p, "fid_min"),
            fmt_mean(p, "coverage_last", 2), median_ms(p)]


def stability_lines(sweep: Sweep, folder: Path) -> list[str]:
    return sweep_lines("Stability: involution layers × kernel normalization", sweep, folder,
                       ["inv layers", "norm", *POINT_HEADER],
                       [[str(layers), norm, *point_cells(sweep.points.get((layers, norm)))]
                        for layers in (1, 2) for norm in NORMS])


def archs_lines(sweep: Sweep, folder: Path) -> list[str]:
    return sweep_lines("Architectures", sweep, folder, ["arch", *POINT_HEADER],
                       [[arch, *point_cells(sweep.points.get((arch,)))] for arch in ARCHS])


def conclusion(cid: str, finding: Finding, steps: int | None) -> str:
    """A claim's verdict and its numbers in words; an inconclusive one says why."""
    text = f"- **{cid}** — **{finding.verdict.capitalize()}.** {finding.reading}"
    if finding.verdict == "inconclusive" and finding.measured and steps:
        text += (f" Each run trained {steps:,} steps, {SEED_STEPS / steps:,.0f}× fewer than the "
                 f"seed's {SEED_STEPS:,} on {SEED_DATA}: a difference that only appears later "
                 "in training cannot show here.")
    return text


def limits(sweeps: dict[str, Sweep], counted: list[RunRecord]) -> str:
    """The 'Limits of this study' paragraph, from the counted runs' configs."""
    if not counted:
        return "No run has finished yet: every claim that needs training is inconclusive."
    steps = config_values(counted, "steps")
    sizes = config_values(counted, "image_size")
    seeds = ", ".join(f"{name} {len(config_values(s.finished, 'seed'))}"
                      for name, s in sweeps.items() if s.finished)
    tags = sorted({r.fid_tag for r in counted if r.fid_tag})
    fid = ("No FID was recorded (fid_every = 0), so every FID claim is inconclusive." if not tags
           else "Min FID is over `" + "`, `".join(tags) + "` (" +
           "; ".join(FID_FEATURES.get(t, t) for t in tags) + f"), every "
           f"{join(config_values(counted, 'fid_every'))} steps on "
           f"{join(config_values(counted, 'fid_samples'))} generated images; absolute values are "
           "not comparable with the seed's.")
    unfinished = sum(len(s.unfinished) + len(s.not_started) for s in sweeps.values())
    return (f"Each run trained {join(steps)} steps (the seed: {SEED_STEPS:,}, on {SEED_DATA}) on "
            f"`{join(config_values(counted, 'dataset'))}` at "
            f"{join(f'{s}×{s}' for s in sizes)} pixels, so verdicts and FID describe early "
            f"training only. Seeds per grid point: {seeds}; the noise a FID difference is judged "
            f"against is the spread of these few seeds. {fid} Verdicts are stabgan's collapse "
            "detector's, from the logged metrics." +
            (f" {unfinished} planned runs are unfinished or not started and not counted."
             if unfinished else ""))


def claims(t2, st, ar, seed=None, stacked=None) -> list[tuple[str, str, Finding, str]]:
    """(id, claim, finding, rule) for every claim of the seed this study judges: on the
    long seed-faithful runs (seed: faithful and norms points; stacked: the successive reading)
    and on the first round's short runs."""
    seed, stacked = seed or {}, stacked or {}
    rule_2l = ("supported if the 2-layer instability rate exceeds the 1-layer one by ≥ 1/3; "
               "contradicted if it is not higher while some runs were unstable; inconclusive "
               "when no run was; at least 3 runs a side")
    return [
        ("L-2L", "Two successive involution layers are unstable — seed layout (two stages), "
                 "long runs", claim_two_layers(seed), rule_2l),
        ("L-2L-stacked", "Two successive involution layers are unstable — stacked at one "
                         "resolution, long runs", claim_two_layers(stacked), rule_2l),
        *[(f"L-{norm}", f"{norm} normalization of the kernels does not work — seed layout, "
                        "long runs", claim_norm(seed, norm),
           "as S-norm below, on the long runs (2 layers vs none)") for norm in NORMS[1:]],
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
        ("S-2L", "Two successive involution layers are unstable", claim_two_layers(st),
         "supported if the 2-layer instability rate (all norms) exceeds the 1-layer one by "
         "≥ 1/3; contradicted if it is not higher while some runs were unstable; inconclusive "
         "when no run was; at least 3 runs a side"),
        *[(f"S-{norm}", f"{norm} normalization of the kernels does not work (does not "
                        "stabilize two successive involution layers)", claim_norm(st, norm),
           "2 layers, vs none, at least 3 runs a side. When 2-layer runs without normalization "
           "are unstable: contradicted if the normalization cuts the instability rate by ≥ 1/3, "
           "supported if it does not lower it. When they are not: supported if the "
           "normalization makes training worse (2-layer rate ≥ 1/3, 1-layer rate ≥ none's + 1/3, "
           "or 1-layer min FID worse beyond the noise), else inconclusive")
          for norm in NORMS[1:]],
        ("A-FID", "iGAN's FID is competitive with DCGAN and SAGAN (Fig. 5, left; no numbers "
                  "in the seed)", claim_arch(ar),
         "supported if FID(igan) is no worse than each baseline beyond the noise; "
         "contradicted if worse than both beyond the noise"),
    ]


# --------------------------------------------------------------------------- the seed study

SEED_ROWS = [("faithful", 1, "none"), ("faithful", 2, "none"), ("successive", 1, "none"),
             ("successive", 2, "none"), *[("norms", 2, n) for n in NORMS[1:]]]


def closest_readings(run_dir: Path) -> dict[str, float]:
    """How near a run came to instability, from its metrics: the largest gradient norm at x̂
    (p95), the largest |distance| after the first tenth of the run, and the largest growth of an
    involution kernel's max |h| and of a layer's σ0 over their first logged values."""
    series = metric_series(read_metrics(run_dir))
    out: dict[str, float] = {}
    p95 = _finite(series.get("gp/norm_p95", ((), ()))[1])
    if p95:
        out["gp_p95_max"] = max(p95)
    steps, values = series.get("wgan/distance", ((), ()))
    late = _finite(v for st, v in zip(steps, values) if steps and st > steps[-1] / 10)
    if late:
        out["distance_late_max"] = max(abs(v) for v in late)

    def growth(suffix: str) -> float | None:
        ratios = []
        for tag, (_, vals) in series.items():
            vals = _finite(vals)
            if tag.endswith(suffix) and len(vals) > 3 and statistics.median(vals[:3]) > 0:
                ratios.append(max(vals) / statistics.median(vals[:3]))
        return max(ratios) if ratios else None

    for key, suffix in (("kernel_growth", "/max_abs"), ("sigma0_growth", "/sigma0")):
        value = growth(suffix)
        if value is not None:
            out[key] = value
    return out


def _closest_cell(p: Point | None) -> str:
    """The largest of each closest reading over the point's runs."""
    if p is None:
        return "–"
    found = [closest_readings(r.path) for r in p.runs if r.path is not None]
    labels = (("gp_p95_max", "‖∇D‖ p95 ≤ {:.2f}"), ("distance_late_max", "|distance| ≤ {:.1f}"),
              ("kernel_growth", "kernel max ×{:.1f}"), ("sigma0_growth", "σ0 ×{:.1f}"))
    return "; ".join(text.format(max(f[key] for f in found if key in f))
                     for key, text in labels if any(key in f for f in found)) or "–"


def seed_points(sweeps: dict[str, Sweep], name: str) -> dict[tuple, Point]:
    return sweeps[name].points if name in sweeps else {}


def seed_study_lines(sweeps: dict[str, Sweep], folder: Path) -> list[str]:
    """The seed-faithful study: one row per setting, with how close its runs came to trouble,
    then the seed's Fig. 7/8 analogue for every run that collapsed."""
    rows = [[name, str(layers), norm, SEED_SETTING[name],
             *point_cells(seed_points(sweeps, name).get((layers, norm))),
             _closest_cell(seed_points(sweeps, name).get((layers, norm)))]
            for name, layers, norm in SEED_ROWS]
    status = [f"- `{name}`: {sweep_status(sweeps[name])}" for name in SEED_SWEEPS]
    records = [r for name in SEED_SWEEPS for r in sweeps[name].finished]
    size = ", ".join(f"{s}×{s}" for s in config_values(records, "image_size")) or "–"
    lines = ["## The seed-faithful study (long runs)", "",
             "The seed's iGAN is most likely the public SAGAN codebase whose defaults are its "
             "Table 1, with involution in place of attention (`--preset seed`). Its runs here: "
             f"mnist5k at {size}, width {join(config_values(records, 'width'))}, "
             f"{join(config_values(records, 'steps'))} steps, every probe, domain FID every "
             f"{join(config_values(records, 'fid_every'))} steps on "
             f"{join(config_values(records, 'fid_samples'))} samples, no early stop.", "",
             *status, "",
             table(["sweep", "inv layers", "norm", "setting", *POINT_HEADER,
                    "closest to instability (max over runs)"], rows), "",
             "`closest to instability`: the largest p95 of ‖∇D(x̂)‖ (healthy near 1), the largest "
             "|E[D(real)] − E[D(fake)]| after the first tenth of the run, and the largest growth of "
             "an involution kernel's max |h| and of a layer's σ0 over their first readings.", ""]
    lines += collapse_figure_lines([r for r in records if r.verdict == "collapsed"], folder)
    for name in SEED_SWEEPS:
        lines += figure_lines(sweeps[name], folder)
    return lines


def collapse_figure_lines(records: list[RunRecord], folder: Path) -> list[str]:
    """The seed's Fig. 7/8 analogue for each collapsed run: its distance and critic loss with
    the onset marked, and its sample grids before the onset and at the end."""
    for old in folder.glob("collapse-*"):
        old.unlink()
    if not records:
        return []
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["### Collapsed runs (the seed's Fig. 7 and 8)", ""]
    for record in records:
        series = metric_series(read_metrics(record.path))
        figure = Figure(figsize=(7, 2.6))
        for axis, tag in zip(figure.subplots(1, 2), ("wgan/distance", "loss/critic")):
            steps, values = series.get(tag, ([], []))
            axis.plot(steps, values, lw=0.8)
            axis.axvline(record.onset, color="red", ls="--", lw=1, label=f"onset {record.onset:,}")
            axis.set_title(tag, fontsize=9)
            axis.set_xlabel("step", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.legend(fontsize=7)
        figure.tight_layout()
        stem = f"collapse-{slug(record.path.parent.name)}-{slug(record.name)}"
        figure.savefig(folder / f"{stem}-curves.png", dpi=110)
        grids = sorted((record.path / "samples").glob("step_*.png"))
        before = [g for g in grids if int(g.stem.split("_")[1]) < record.onset]
        shown = [g for g in (before[-1] if before else None, grids[-1] if grids else None) if g]
        for grid in dict.fromkeys(shown):
            (folder / f"{stem}-{grid.name}").write_bytes(grid.read_bytes())
        event = next((e for e in record.events if e.get("severity") == "collapse"
                      and e.get("step") == record.onset), {})
        lines += [f"**{record.path.parent.name}/{record.name}** — "
                  f"{event.get('message', f'collapsed at step {record.onset:,}')}", "",
                  f"![curves]({folder.name}/{stem}-curves.png) " +
                  " ".join(f"![{g.stem}]({folder.name}/{stem}-{g.name})"
                           for g in dict.fromkeys(shown)), ""]
    return lines


def seed_answer(sweeps: dict[str, Sweep]) -> str:
    """The study's answer in one paragraph: does the seed's instability appear here, under
    which setting, and what did the detector see; or the strongest negative result."""
    records = [r for name in SEED_SWEEPS for r in sweeps[name].finished]
    if not records:
        return ("No seed-faithful run has finished yet, so the seed's instability is neither "
                "reproduced nor refuted here.")
    bad = [r for r in records if r.verdict in ("unstable", "collapsed")]
    steps = join(config_values(records, "steps"))
    settings = {(r.path.parent.name, r.config.get("inv_layers"), r.config.get("norm"))
                for r in records}
    seeds = len(config_values(records, "seed"))
    if not bad:
        closest = _closest_cell(Point(("all",), records))
        return (f"**Not reproduced.** {len(records)} finished runs ({len(settings)} settings × "
                f"up to {seeds} seed{'s' * (seeds != 1)} × {steps} steps) stayed healthy, two successive involution "
                f"layers included, in the seed's layout and stacked. The nearest any came to "
                f"instability: {closest}. At the seed's full scale (CelebA 64×64, width 64, "
                "50,000 steps) a GPU user tests it with `stabgan sweep --preset seed --grid "
                "\"inv_layers=1,2 seed=0,1,2\" --dataset celeba:ROOT --fid-every 1000`.")
    parts = []
    for record in bad:
        event = next((e for e in record.events if e.get("step") == record.onset), None) or (
            record.events[0] if record.events else {})
        signs = event.get("first_signs") or []
        sign = (f"; first sign at step {signs[0]['step']:,}: {signs[0]['tag']}" if signs
                and isinstance(signs[0], dict) and "tag" in signs[0] else "")
        parts.append(f"`{record.path.parent.name}/{record.name}` {record.verdict}"
                     + (f" at step {record.onset:,}" if record.onset is not None else "")
                     + (f" ({event.get('kind')})" if event.get("kind") else "") + sign)
    return (f"**{len(bad)} of {len(records)} seed-study runs went bad** ({steps} steps): "
            + "; ".join(parts) + ".")


def write_doc(args, path: Path) -> str:
    """Write the doc at path and its figures in path's folder/<path stem>/; returns the text."""
    sweeps = load_sweeps(args)
    counted = [r for s in sweeps.values() for r in s.finished]
    steps = config_values(counted, "steps")
    long_runs = [r for n in SEED_SWEEPS for r in sweeps[n].finished]
    short_steps = config_values([r for n, s in sweeps.items() if n not in SEED_SWEEPS
                                 for r in s.finished], "steps")
    datasets = config_values(counted, "dataset")
    folder = path.parent / path.stem
    lines = [
        "# Reproduction of the seed's claims",
        "",
        f"Generated on {time.strftime('%Y-%m-%d')} from the run directories under `{args.out}` "
        f"({len(counted)} finished runs) by "
        f"`{regen_command(args, short_steps, config_values(long_runs, 'steps'), datasets)}`: "
        f"running it again "
        f"resumes the sweeps (finished runs are skipped) and rewrites this file and "
        f"`{folder.name}/`. Add `--doc-only` to rewrite them without training.",
        "",
        "The seed's claims are about differences between settings, and those are what is judged "
        "below; the limits of this study are at the end. FID cells are mean ± half the "
        "seed-to-seed range of each run's min FID; verdicts are counts healthy / unstable / "
        "collapsed. Only finished runs are counted. The figures come from the reports package; "
        "their collapse rate counts collapsed runs only, the instability rate below also counts "
        "unstable ones.",
        "",
        *timing_lines(sweeps),
    ]
    lines += ["## The answer", "", seed_answer(sweeps), ""]
    lines += seed_study_lines(sweeps, folder)
    lines += table2_lines(sweeps["table2"], folder)
    lines += stability_lines(sweeps["stability"], folder)
    lines += archs_lines(sweeps["archs"], folder)
    long_points = {**seed_points(sweeps, "faithful"), **seed_points(sweeps, "norms")}
    found = claims(*(sweeps[n].points for n in ("table2", "stability", "archs")), long_points,
                   seed_points(sweeps, "successive"))
    lines += ["## Claims", "", RULE_NOISE, RULE_RATE, "",
              table(["id", "claim (seed)", "verdict", "numbers", "rule"],
                    [[cid, text, f"**{f.verdict}**", f.numbers, rule]
                     for cid, text, f, rule in found]), "",
              "## Conclusions", "",
              *[conclusion(cid, f, steps[0] if len(steps) == 1 else None)
                for cid, _, f, _ in found], "",
              "## Limits of this study", "", limits(sweeps, counted), ""]
    doc = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return doc


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of the three sweeps [default: runs/reproduction, or "
                             "runs/reproduction-check with --quick-check]")
    parser.add_argument("--doc", type=Path, default=None,
                        help="markdown to write [default: docs/reproduction.md, or "
                             "OUT/reproduction.md with --quick-check]")
    parser.add_argument("--steps", type=int, default=None, help="steps per run [default: preset quick]")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset spec for every run")
    parser.add_argument("--quick-check", action="store_true",
                        help="tiny models, few steps, a subset of points, one seed: a smoke test")
    parser.add_argument("--doc-only", action="store_true", help="do not run; rewrite the doc")
    parser.add_argument("--seed-out", type=Path, default=None,
                        help="folder of the seed study's sweeps [default: OUT's sibling seed-study]")
    parser.add_argument("--seed-steps", type=int, default=None,
                        help="steps per seed-study run [default: 5000]")
    parser.add_argument("--only", choices=(*SEED_SWEEPS, "table2", "stability", "archs"),
                        action="append",
                        help="run only these sweeps (repeatable)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--no-report", action="store_true", help="skip each sweep's report.html")
    args = parser.parse_args(argv)
    args.out = args.out or default_out(args.quick_check)
    args.seed_out = args.seed_out or args.out.parent / (
        "seed-study-check" if args.quick_check else "seed-study")
    doc = args.doc or (args.out / "reproduction.md" if args.quick_check
                       else ROOT / "docs" / "reproduction.md")
    code = 0
    if not args.doc_only:
        for name, spec in studies(args).items():
            if args.only and name not in args.only:
                continue
            print(f"== {name}: {spec.out}", file=sys.stderr, flush=True)
            result = run_sweep(spec)
            print(format_table(result.rows), flush=True)
            if result.signum:
                return result.exit_code
            code = max(code, result.exit_code)
    write_doc(args, doc)
    print(f"wrote {doc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
