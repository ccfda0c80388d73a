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
supported, contradicted or inconclusive.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stabgan.config import resolve_config  # noqa: E402
from stabgan.runlog import (CONFIG, DIAGNOSIS, SUMMARY, find_runs, metric_series,  # noqa: E402
                            read_json, read_metrics)
from stabgan.sweep import SweepSpec, format_table, run_sweep  # noqa: E402

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


def eq5(channels: int, k: int, g: int, r: int) -> float:
    """The seed's eq. 5 estimate of an involution layer's parameters."""
    return (channels / g + k * k) * channels / (r * g) * g


def exact_params(config: dict) -> int | None:
    """Parameters of one involution layer of our model for this config (weights, biases, norm)."""
    if config.get("arch") != "igan":
        return None
    from stabgan.models import count_parameters, involution_channels
    from stabgan.nn.involution import Involution2d
    layer = Involution2d(involution_channels(config["width"]), config["kernel_size"], 1,
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
    table2_points = tuple({"kernel_size": k, "groups": g, "reduction": r}
                          for _, k, g, r, *_ in cases)
    return {  # the stability claims first: they matter most if the study is cut short
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
    coverage_last: float | None
    coverage_best: float | None
    ms_per_step: float | None
    steps: int | None


def _finite(values) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


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
        fid_min=min(fid) if fid else None,
        coverage_last=coverage[-1] if coverage else None,
        coverage_best=max(coverage) if coverage else None,
        ms_per_step=step_s * 1000 if isinstance(step_s, (int, float)) else None,
        steps=summary.get("steps"))


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


def group(out: Path, key_fields: tuple[str, ...]) -> dict[tuple, Point]:
    points: dict[tuple, Point] = {}
    for run_dir in find_runs(out):
        record = read_run(run_dir)
        key = tuple(record.config.get(f) for f in key_fields)
        points.setdefault(key, Point(key)).runs.append(record)
    return points


# --------------------------------------------------------------------------- formatting

def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_mean(point: Point, attr: str, digits: int = 1) -> str:
    mean, spread = point.mean(attr), point.spread(attr)
    if mean is None:
        return "–"
    return fmt(mean, digits) + (f" ± {spread / 2:.{digits}f}" if spread is not None else "")


def verdicts(point: Point) -> str:
    counts = {v: sum(r.verdict == v for r in point.runs) for v in ("healthy", "unstable", "collapsed")}
    missing = len(point.runs) - sum(counts.values())
    text = " / ".join(str(counts[v]) for v in counts)
    return text + (f" (+{missing} n/a)" if missing else "")


def median_ms(point: Point | None) -> str:
    values = point.values("ms_per_step") if point else []
    return fmt(statistics.median(values), 0) if values else "–"


def onsets(point: Point) -> str:
    values = [r.onset for r in point.runs if r.onset is not None]
    return ", ".join(map(str, values)) or "–"


def kinds(point: Point) -> str:
    found = list(dict.fromkeys(k for r in point.runs for k in r.kinds))
    return ", ".join(found) or "–"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- claims

RULE_NOISE = ("A difference between two points counts only when it exceeds the seed-to-seed "
              "noise: the larger of the two points' spreads (max − min of min-FID over seeds). "
              "With one seed per point, or no FID recorded, a FID claim is inconclusive.")
RULE_RATE = ("Instability rate = runs whose verdict is unstable or collapsed / runs with a "
             "verdict. A setting is worse when its rate exceeds the baseline's by at least one "
             "run in three (1/3).")


def _compare(a: Point | None, b: Point | None, attr: str = "fid_min"):
    """(b - a, noise) or None when the study cannot tell."""
    if a is None or b is None:
        return None
    ma, mb, sa, sb = a.mean(attr), b.mean(attr), a.spread(attr), b.spread(attr)
    if ma is None or mb is None or sa is None or sb is None:
        return None
    return mb - ma, max(sa, sb)


def claim_best_k(t2: dict[tuple, Point]) -> tuple[str, str]:
    """Cases 6, 1, 7, 3: K = 1, 3, 5, 7 at G=4, R=2."""
    by_k = {k: t2.get((k, 4, 2)) for k in (1, 3, 5, 7)}
    means = {k: p.mean("fid_min") for k, p in by_k.items() if p is not None}
    if len(means) < 4 or None in means.values() or any(by_k[k].spread("fid_min") is None for k in means):
        return "inconclusive", "needs min FID for K = 1, 3, 5, 7 with at least two seeds each"
    best = min(means, key=means.get)
    other = min((k for k in means if k != best), key=means.get)
    noise = max(by_k[best].spread("fid_min"), by_k[other].spread("fid_min"))
    gap = means[other] - means[best]
    times = {k: statistics.median(p.values("ms_per_step")) for k, p in by_k.items()
             if p is not None and p.values("ms_per_step")}
    cost = (f"; ms/step K=3 {times[3]:.0f}, K=7 {times[7]:.0f}" if 3 in times and 7 in times else "")
    detail = (f"best K = {best} (min FID {means[best]:.1f}); next K = {other}, gap {gap:.1f} vs "
              f"noise {noise:.1f}{cost}")
    if best in (3, 5):
        return ("supported" if gap > noise or other in (3, 5) else "inconclusive"), detail
    return ("contradicted" if gap > noise else "inconclusive"), detail


def claim_groups(t2: dict[tuple, Point]) -> tuple[str, str]:
    """Case 1 (G=4) vs case 5 (G=1): FID about the same; G=4 fewer parameters."""
    a, b = t2.get((3, 4, 2)), t2.get((3, 1, 2))
    cmp = _compare(a, b)
    params = [exact_params(p.runs[0].config) if p and p.runs else None for p in (a, b)]
    memory = (f"params G=4 {params[0]} vs G=1 {params[1]}" if None not in params else "params n/a")
    if cmp is None:
        return "inconclusive", f"needs min FID of cases 1 and 5 over two seeds; {memory}"
    diff, noise = cmp
    detail = f"FID(G=1) − FID(G=4) = {diff:.1f} vs noise {noise:.1f}; {memory}"
    if abs(diff) <= noise:
        return "supported", detail
    return ("contradicted" if abs(diff) > 2 * noise else "inconclusive"), detail


def claim_groups_memory(width: int) -> tuple[str, str]:
    """Exact parameter counts of our layer at K=3, R=2: G=4 vs G=1 (no training needed)."""
    base = {"arch": "igan", "width": width, "kernel_size": 3, "reduction": 2, "norm": "none"}
    g4, g1 = exact_params({**base, "groups": 4}), exact_params({**base, "groups": 1})
    detail = f"C={width}: exact #params G=4 {g4}, G=1 {g1}; eq. 5: G=4 {eq5(width, 3, 4, 2):.0f}, " \
             f"G=1 {eq5(width, 3, 1, 2):.0f}"
    return ("supported" if g4 < g1 else "contradicted"), detail


def claim_reduction(t2: dict[tuple, Point]) -> tuple[str, str]:
    """Case 1 (R=2) vs case 4 (R=8) at K=3; case 3 vs 2 at K=7 reported beside."""
    k3 = _compare(t2.get((3, 4, 2)), t2.get((3, 4, 8)))
    k7 = _compare(t2.get((7, 4, 2)), t2.get((7, 4, 8)))
    extra = f"; K=7: FID(R=8) − FID(R=2) = {k7[0]:.1f} vs noise {k7[1]:.1f}" if k7 else ""
    if k3 is None:
        return "inconclusive", "needs min FID of cases 1 and 4 over two seeds" + extra
    diff, noise = k3
    detail = f"K=3: FID(R=8) − FID(R=2) = {diff:.1f} vs noise {noise:.1f}" + extra
    if diff > noise:
        return "supported", detail
    return ("contradicted" if diff < -noise else "inconclusive"), detail


def _rate(points: list[Point]) -> tuple[float | None, int]:
    judged = sum(p.judged for p in points)
    return (sum(p.bad for p in points) / judged if judged else None), judged


def claim_two_layers(st: dict[tuple, Point]) -> tuple[str, str]:
    one, n1 = _rate([p for (layers, _), p in st.items() if layers == 1])
    two, n2 = _rate([p for (layers, _), p in st.items() if layers == 2])
    if one is None or two is None:
        return "inconclusive", "no verdicts"
    detail = f"instability rate 1 layer {one:.2f} (n={n1}), 2 layers {two:.2f} (n={n2})"
    if min(n1, n2) < MIN_RUNS:
        return "inconclusive", detail + f"; fewer than {MIN_RUNS} runs on a side"
    if two >= one + 1 / 3:
        return "supported", detail
    return ("contradicted" if two <= one else "inconclusive"), detail


def claim_norm(st: dict[tuple, Point], norm: str) -> tuple[str, str]:
    base, n = st.get((1, "none")), st.get((1, norm))
    if base is None or n is None:
        return "inconclusive", "runs missing"
    rate_base, nb = _rate([base])
    rate_norm, nn = _rate([n])
    if rate_base is None or rate_norm is None:
        return "inconclusive", "no verdicts"
    cmp = _compare(base, n)
    fid = f"; FID({norm}) − FID(none) = {cmp[0]:.1f} vs noise {cmp[1]:.1f}" if cmp else ""
    detail = f"1 layer: instability rate {norm} {rate_norm:.2f} (n={nn}) vs none {rate_base:.2f} (n={nb}){fid}"
    worse_fid = cmp is not None and cmp[0] > cmp[1]
    if min(nb, nn) < MIN_RUNS:
        return "inconclusive", detail + f"; fewer than {MIN_RUNS} runs on a side"
    if rate_norm >= rate_base + 1 / 3 or worse_fid:
        return "supported", detail
    return ("contradicted" if rate_norm <= rate_base and cmp is not None else "inconclusive"), detail


def claim_arch(ar: dict[tuple, Point]) -> tuple[str, str]:
    igan = ar.get(("igan",))
    others = [ar.get((a,)) for a in ("dcgan", "sagan")]
    cmps = [_compare(o, igan) for o in others]
    if None in cmps:
        return "inconclusive", "needs min FID of all three archs over several seeds"
    detail = "; ".join(f"FID(igan) − FID({a}) = {d:.1f} vs noise {n:.1f}"
                       for a, (d, n) in zip(("dcgan", "sagan"), cmps))
    if all(d <= n for d, n in cmps):
        return "supported", detail
    return ("contradicted" if all(d > n for d, n in cmps) else "inconclusive"), detail


# --------------------------------------------------------------------------- the doc

def table2_width(t2: dict[tuple, Point]) -> int:
    """C of the table2 runs (64 unless a quick check shrank it)."""
    widths = [r.config.get("width") for p in t2.values() for r in p.runs if r.config.get("width")]
    return widths[0] if widths else 64


def write_doc(args, path: Path) -> str:
    t2 = group(args.out / "table2", ("kernel_size", "groups", "reduction"))
    st = group(args.out / "stability", ("inv_layers", "norm"))
    ar = group(args.out / "archs", ("arch",))
    all_runs = [r for pts in (t2, st, ar) for p in pts.values() for r in p.runs]
    steps = sorted({r.config.get("steps") for r in all_runs if r.config.get("steps")})
    datasets = sorted({r.config.get("dataset") for r in all_runs if r.config.get("dataset")})
    lines = [
        "# Reproduction of the seed's claims",
        "",
        f"Generated by `python scripts/reproduction_study.py{' --quick-check' if args.quick_check else ''}` "
        f"on {time.strftime('%Y-%m-%d')} from the run directories under `{args.out}` "
        f"({len(all_runs)} runs; steps {', '.join(map(str, steps)) or '–'}; dataset "
        f"{', '.join(datasets) or '–'}). Re-running the script resumes the sweeps and rewrites this file.",
        "",
        "The seed measured min FID with Inception features on CelebA 64×64 after 50,000 steps; "
        f"we report the minimum of `{FID_TAGS[0]}` (domain-classifier features; `{FID_TAGS[1]}` "
        "for unlabeled datasets) over each run. Absolute "
        "values are not comparable with the seed's; the claims are about differences between "
        "settings, and those are what is judged below. FID cells are mean ± half the seed-to-seed "
        "range; verdicts are counts healthy / unstable / collapsed.",
        "",
        "## Table 2: involution hyperparameters (C = 64)",
        "",
    ]
    rows = []
    for case, k, g, r, fid, params, step_s in SEED_TABLE2:
        p = t2.get((k, g, r))
        exact = exact_params(p.runs[0].config) if p and p.runs else None
        channels = p.runs[0].config.get("width") if p and p.runs else 64
        rows.append([str(case), f"{k}×{k}", str(g), str(r), f"{fid:.2f}",
                     fmt_mean(p, "fid_min") if p else "–", str(params),
                     f"{eq5(channels, k, g, r):.0f}", fmt(exact), f"{step_s * 1000:.0f}",
                     median_ms(p),
                     verdicts(p) if p else "–", fmt_mean(p, "coverage_last", 2) if p else "–",
                     kinds(p) if p else "–"])
    lines += [table(["case", "K", "G", "R", "seed min FID", "our min FID", "seed #params",
                     "eq. 5", "our exact #params", "seed ms/step", "our ms/step", "verdicts",
                     "coverage", "collapse kinds"], rows), "",
              "`eq. 5` is the seed's estimate (C/G + K·K)·C/(R·G)·G with our C; `our exact "
              "#params` counts one involution layer of our model (reduce 1×1 conv C→C/R and span "
              "C/R→K·K·G, with biases, plus BatchNorm when norm=batch). The seed's ms/step is on "
              "its hardware; ours is the median over the run on this machine.", ""]

    lines += ["## Stability: involution layers × kernel normalization", ""]
    rows = []
    for layers in (1, 2):
        for norm in NORMS:
            p = st.get((layers, norm))
            if p is None:
                continue
            rows.append([str(layers), norm, str(len(p.runs)), verdicts(p), onsets(p), kinds(p),
                         fmt_mean(p, "fid_min"), fmt_mean(p, "coverage_last", 2),
                         median_ms(p)])
    lines += [table(["inv layers", "norm", "runs", "verdicts", "onset steps", "collapse kinds",
                     "min FID", "coverage", "ms/step"], rows), ""]

    lines += ["## Architectures", ""]
    rows = []
    for arch in ARCHS:
        p = ar.get((arch,))
        if p is None:
            continue
        rows.append([arch, str(len(p.runs)), verdicts(p), onsets(p), kinds(p),
                     fmt_mean(p, "fid_min"), fmt_mean(p, "coverage_last", 2),
                     median_ms(p)])
    lines += [table(["arch", "runs", "verdicts", "onset steps", "collapse kinds", "min FID",
                     "coverage", "ms/step"], rows), ""]

    claims = [
        ("T2-K", "The best K is around 3–5; larger K costs time and memory without better FID "
                 "(Table 2, cases 6, 1, 7, 3)", claim_best_k(t2),
         "supported if the lowest mean min-FID is at K = 3 or 5 and beats the next K outside "
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
         "≥ 1/3; contradicted if it is not higher; at least 3 runs a side"),
        *[(f"S-{norm}", f"{norm} normalization of the kernels does not work (1 layer, vs none)",
           claim_norm(st, norm),
           "supported if its instability rate exceeds none's by ≥ 1/3 or its min FID is worse "
           "by more than the noise; contradicted if its rate is not higher and its FID (measured) "
           "not worse; at least 3 runs a side")
          for norm in NORMS[1:]],
        ("A-FID", "iGAN's FID is competitive with DCGAN and SAGAN (Fig. 5, left; no numbers "
                  "in the seed)", claim_arch(ar),
         "supported if FID(igan) is no worse than each baseline beyond the noise; "
         "contradicted if worse than both beyond the noise"),
    ]
    lines += ["## Claims", "", RULE_NOISE, RULE_RATE, ""]
    lines += [table(["id", "claim (seed)", "verdict", "numbers", "rule"],
                    [[cid, text, f"**{verdict}**", detail, rule]
                     for cid, text, (verdict, detail), rule in claims]), ""]
    lines += ["## Conclusions", ""]
    for cid, text, (verdict, _), _ in claims:
        lines.append(f"- **{cid}** ({verdict}): _to be written from the numbers above._")
    lines.append("")
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
    parser.add_argument("--dataset", default="mnist5k", help="dataset spec for every run")
    parser.add_argument("--quick-check", action="store_true",
                        help="tiny models, few steps, a subset of points, one seed: a smoke test")
    parser.add_argument("--doc-only", action="store_true", help="do not run; rewrite the doc")
    parser.add_argument("--only", choices=("table2", "stability", "archs"), action="append",
                        help="run only these sweeps (repeatable)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--no-report", action="store_true", help="skip each sweep's report.html")
    args = parser.parse_args(argv)
    args.out = args.out or Path("runs/reproduction-check" if args.quick_check else "runs/reproduction")
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
