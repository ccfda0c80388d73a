"""docs/reproduction.md, written from the study's run directories, section by section.

The doc is computed from each run's summary.json, diagnosis.json and metrics.jsonl: min
`fid/domain` when the FID probe ran, coverage, verdicts, onset steps, collapse kinds, ms/step,
the detector's evidence and first signs, and the exact parameter count of our involution layer
beside the seed's eq. 5 estimate. Each claim gets a verdict by a stated rule and a conclusion in
words from the same numbers. The doc also says how long the study took (from the run files'
times), what limits it, and shows figures beside the doc: each sweep's overview figures from the
reports package and the seed's Fig. 7/8 analogue for every setting whose runs went bad.
Unfinished runs (no summary.json yet) are listed, not counted; a sweep without a finished run is
one line saying what it will run and the command that runs it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from dataclasses import replace

from probes.rundir.files import read_json
from stabgan.config import ARCHS, NORMS
from stabgan.nn.involution import eq5_parameter_estimate as eq5
from stabgan.nn.layers import CRITIC_SLOPE
from stabgan.study.claims import (RULE_NOISE, RULE_RATE, Finding, claims, exact_params,
                                  table2_width)
from stabgan.study.markdown import (ONSET_PREFIX, figure_lines, fmt, fmt_duration, fmt_mean,
                                    join, kinds, median_ms, not_run_line, onset_lines, onsets,
                                    runs_count, sweep_status, table, verdicts)
from stabgan.study.mechanism import (mechanism_answer, mechanism_lines, mechanism_points,
                                     mechanism_rows)
from stabgan.study.records import (BAD_VERDICTS, Point, RunRecord, Sweep, config_values,
                                   load_sweeps, timing)
from stabgan.study.sweeps import (DEFAULT_DATASET, SEED_SWEEPS, SEED_TABLE2, SHORT_SWEEPS,
                                  StudyOptions, default_out, sweep_steps)
from stabgan.sweep import SWEEP_RECORD

SEED_STEPS = 50_000
SEED_DATA = "CelebA 64×64"
# what a seed-study row is, beyond its grid point: the sweep's fixed settings, in words
SEED_SETTING = {"faithful": "seed layout: stages (S/2, S/4), residual γ, SN in G and D, separate GP step",
                "successive": "stacked at S/2 with nothing between (plain), SN in G and D, separate GP step",
                "norms": "seed layout (as faithful), with kernel normalization"}
SEED_READING = {"faithful": "at two resolutions in the seed's layout",
                "successive": "stacked at one resolution",
                "norms": "with normalized kernels"}
FID_FEATURES = {"fid/domain": "features of a classifier trained on the dataset, not Inception",
                "fid/inception": "Inception features, as the seed"}


def timing_lines(sweeps: dict[str, Sweep]) -> list[str]:
    """The 'Time taken' section: per sweep with runs and total, and how the runs shared the
    machine."""
    records = [r for s in sweeps.values() for r in s.records]
    if not records:
        return ["## Time taken", "", "No run has started yet.", ""]
    total = timing(records)
    rows = [[name, str(t.runs), fmt_duration(t.span_s), fmt_duration(t.compute_s),
             fmt(t.ms_per_step, 0)]
            for name, t in [*((n, timing(s.records)) for n, s in sweeps.items() if s.records),
                            ("total", total)]]
    executors = sorted({(read_json(s.out / SWEEP_RECORD) or {}).get("executor")
                        for s in sweeps.values()} - {None})
    threads = config_values(records, "threads")
    return [
        "## Time taken", "",
        table(["sweep", "runs", "wall span", "compute (sum of run times)", "median ms/step"], rows),
        "",
        f"Wall span: from the first run's start to the last run's end (summary.json's "
        f"started_at and ended_at), pauses between invocations included. Machine: {os.cpu_count()} cores; "
        f"{join(executors, 'unknown')} executor, at most {total.peak} runs at once (from "
        f"overlapping run times) × {join(threads)} torch thread(s) per run (from the runs' "
        "config).", ""]


def regen_command(args: StudyOptions, sweeps: dict[str, Sweep]) -> str:
    """The command that resumes this study and rewrites this doc: the options its runs need."""
    words = ["python scripts/reproduction_study.py"]
    if args.quick_check:
        words.append("--quick-check")
    if args.out != default_out(args.quick_check):
        words.append(f"--out {args.out}")
    defaults = sweep_steps(replace(args, steps=None, seed_steps=None))
    for option, names, default in (("--seed-steps", SEED_SWEEPS, defaults[0]),
                                   ("--steps", SHORT_SWEEPS, defaults[1])):
        steps = config_values([r for n in names for r in sweeps[n].finished], "steps")
        if len(steps) == 1 and steps[0] != default:
            words.append(f"{option} {steps[0]}")
    if args.doc is not None:
        words.append(f"--doc {args.doc}")
    datasets = config_values([r for s in sweeps.values() for r in s.finished], "dataset")
    if len(datasets) == 1 and datasets[0] != DEFAULT_DATASET:
        words.append(f"--dataset {datasets[0]}")
    return " ".join(words)


def sweep_lines(title: str, sweep: Sweep, folder: Path, command: str, header: list[str],
                rows: list[list[str]], notes: str = "") -> list[str]:
    """A sweep's section: status, table, notes, overview figures; or, before its first
    finished run, the line saying what it will run."""
    if not sweep.finished:
        return [f"## {title}", "", not_run_line(sweep, command), ""]
    return ([f"## {title}", "", sweep_status(sweep), "", table(header, rows), ""] +
            ([notes, ""] if notes else []) + figure_lines(sweep, folder))


def table2_lines(sweep: Sweep, folder: Path, command: str) -> list[str]:
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
        f"Table 2: involution hyperparameters (C = {width})", sweep, folder, command,
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


def archs_lines(sweep: Sweep, folder: Path, command: str) -> list[str]:
    return sweep_lines("Architectures", sweep, folder, command, ["arch", *POINT_HEADER],
                       [[arch, *point_cells(sweep.points.get((arch,)))] for arch in ARCHS])


def conclusion(cid: str, finding: Finding, steps: int | None) -> str:
    """A claim's verdict and its numbers in words; an inconclusive one says why."""
    text = f"- **{cid}** — **{finding.verdict.capitalize()}.** {finding.reading}"
    if finding.verdict == "inconclusive" and finding.measured and steps:
        text += (f" Each run trained {steps:,} steps, {SEED_STEPS / steps:,.0f}× fewer than the "
                 f"seed's {SEED_STEPS:,} on {SEED_DATA}: a difference that only appears later "
                 "in training cannot show here.")
    return text


def claim_steps(cid: str, sweeps: dict[str, Sweep]) -> int | None:
    """The steps of the runs a claim is judged on, when they all trained the same number."""
    names = {"L": SEED_SWEEPS, "M": (*SEED_SWEEPS, "mechanism"), "T2": ("table2",),
             "A": ("archs",)}[cid.split("-")[0]]
    steps = config_values([r for n in names for r in sweeps[n].finished], "steps")
    return steps[0] if len(steps) == 1 else None


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
    return (f"Each run trained {join(f'{s:,}' for s in steps)} steps (the seed: {SEED_STEPS:,}, "
            f"on {SEED_DATA}) on `{join(config_values(counted, 'dataset'))}` at "
            f"{join(f'{s}×{s}' for s in sizes)} pixels, so verdicts and FID describe early "
            f"training only. Seeds per grid point: {seeds}; the noise a FID difference is judged "
            f"against is the spread of these few seeds. {fid} Verdicts are stabgan's collapse "
            f"detector's, from the logged metrics. The critic's LeakyReLU slope is "
            f"{CRITIC_SLOPE:g} in every run (the seed's codebase: 0.1). At the seed's full scale "
            f"(CelebA 64×64, width 64, 50,000 steps) a GPU user tests its claim with "
            f"{GPU_COMMAND}." +
            (f" {unfinished} planned runs are unfinished or not started and not counted."
             if unfinished else ""))


GPU_COMMAND = ('`stabgan sweep --preset paper-sagan --grid "inv_layers=1,2 seed=0,1,2" --dataset '
               'celeba:ROOT --fid-every 1000`')
SEED_ROWS = [("faithful", 1, "none"), ("faithful", 2, "none"), ("successive", 1, "none"),
             ("successive", 2, "none"), *[("norms", 2, n) for n in NORMS[1:]]]


def _closest_cell(p: Point | None) -> str:
    """The largest of each closest reading over the point's runs."""
    if p is None:
        return "–"
    found = [r.closest for r in p.runs]
    labels = (("gp_p95_max", "‖∇D‖ p95 ≤ {:.2f}"), ("distance_late_max", "abs(distance) ≤ {:.1f}"),
              ("kernel_growth", "kernel max ×{:.1f}"), ("sigma0_growth", "σ0 ×{:.1f}"))
    return "; ".join(text.format(max(f[key] for f in found if key in f))
                     for key, text in labels if any(key in f for f in found)) or "–"


def seed_records(sweeps: dict[str, Sweep]) -> list[RunRecord]:
    """The finished runs of the seed study's sweeps."""
    return [r for name in SEED_SWEEPS for r in sweeps[name].finished]


def seed_study_lines(sweeps: dict[str, Sweep], folder: Path, command: str) -> list[str]:
    """The seed-faithful study: one row per setting with finished runs, with how close its runs
    came to trouble, then the seed's Fig. 7/8 analogue for every setting whose runs went bad."""
    shown = [(name, layers, norm, sweeps[name].points[(layers, norm)])
             for name, layers, norm in SEED_ROWS if (layers, norm) in sweeps[name].points]
    rows = [[name, str(layers), norm, SEED_SETTING[name], *point_cells(p), _closest_cell(p)]
            for name, layers, norm, p in shown]
    status = [f"- `{name}`: " + (sweep_status(sweeps[name]) if sweeps[name].finished
                                 else not_run_line(sweeps[name], command))
              for name in SEED_SWEEPS]
    records = seed_records(sweeps)
    lines = ["## The seed-faithful study (long runs)", "",
             "The seed's iGAN is most likely the public SAGAN codebase whose defaults are its "
             "Table 1, with involution in place of attention (`--preset paper-sagan`).", "", *status, ""]
    if not records:
        return lines
    sizes = config_values(records, "image_size")
    lines += [f"Its runs: mnist5k at {join(f'{s}×{s}' for s in sizes)}, "
              f"width {join(config_values(records, 'width'))}, "
              f"{join(f'{s:,}' for s in config_values(records, 'steps'))} steps, every probe, "
              f"domain FID every {join(config_values(records, 'fid_every'))} steps on "
              f"{join(config_values(records, 'fid_samples'))} samples, no early stop.", "",
              table(["sweep", "inv layers", "norm", "setting", *POINT_HEADER,
                     "closest to instability (max over runs)"], rows), "",
              "`closest to instability`: the largest p95 of ‖∇D(x̂)‖ (healthy near 1), the "
              "largest |E[D(real)] − E[D(fake)]| after the first tenth of the run, and the "
              "largest growth of an involution kernel's max |h| and of a layer's σ0 over their "
              "first readings.", ""]
    for name, layers, norm, p in shown:
        bad = [r for r in p.runs if r.verdict in BAD_VERDICTS]
        if bad:
            title = (f"{name}, {layers} layer{'s' * (layers != 1)}, norm {norm}: verdicts "
                     f"healthy / unstable / collapsed {verdicts(p)}")
            lines += onset_lines(title, f"{name}-{layers}-{norm}", bad, folder)
    for name in SEED_SWEEPS:
        lines += figure_lines(sweeps[name], folder)
    return lines


def seed_answer(sweeps: dict[str, Sweep]) -> str:
    """The seed study's answer in one paragraph: does the seed's instability appear in its
    layout, under which setting, and what did the detector see; or the strongest negative
    result."""
    records = seed_records(sweeps)
    if not records:
        return ("No seed-faithful run has finished yet, so the seed's instability is neither "
                "reproduced nor refuted here.")
    bad = [r for r in records if r.verdict in BAD_VERDICTS]
    steps = join(f"{s:,}" for s in config_values(records, "steps"))
    settings = {(r.path.parent.name, r.config.get("inv_layers"), r.config.get("norm"))
                for r in records}
    seeds = len(config_values(records, "seed"))
    if not bad:
        closest = _closest_cell(Point(("all",), records))
        readings = [f"{SEED_READING[name]}" for name in SEED_SWEEPS
                    if any(r.config.get("inv_layers") == 2 for r in sweeps[name].finished)]
        return (f"**Not reproduced in the seed's layout.** {len(records)} finished runs "
                f"({len(settings)} settings × up to {seeds} seed{'s' * (seeds != 1)} × {steps} "
                f"steps, involution in G only) stayed healthy, two involution layers included "
                f"({join(readings, 'none yet')}). The nearest any came to instability: {closest}.")
    parts = []
    for record in bad:
        event, signs = record.event, record.event.get("first_signs") or []
        sign = (f"; first sign at step {signs[0]['step']:,}: {signs[0]['tag']}" if signs
                and isinstance(signs[0], dict) and "tag" in signs[0] else "")
        parts.append(f"`{record.path.parent.name}/{record.name}` {record.verdict}"
                     + (f" at step {record.went_bad:,}" if record.went_bad is not None else "")
                     + (f" ({event.get('kind')})" if event.get("kind") else "") + sign)
    return (f"**{len(bad)} of {len(records)} seed-study runs went bad** ({steps} steps): "
            + "; ".join(parts) + ".")


def write_doc(args: StudyOptions, path: Path) -> str:
    """Write the doc at path and its figures in path's folder/<path stem>/; returns the text."""
    sweeps = load_sweeps(args)
    counted = [r for s in sweeps.values() for r in s.finished]
    command = regen_command(args, sweeps)
    folder = path.parent / path.stem
    for old in folder.glob(f"{ONSET_PREFIX}*"):
        old.unlink()
    rows = mechanism_rows(sweeps)
    found = claims(sweeps["table2"].points, sweeps["archs"].points,
                   {**sweeps["faithful"].points, **sweeps["norms"].points},
                   sweeps["successive"].points, mechanism_points(rows))
    lines = [
        "# Reproduction of the seed's claims",
        "",
        f"Generated on {time.strftime('%Y-%m-%d')} from the run directories under "
        f"`{args.out}` (kept in the repository without checkpoints and TensorBoard events), "
        f"{len(counted)} finished runs, by `{command}`: running it again resumes the sweeps "
        f"(finished runs are skipped) and rewrites this file and `{folder.name}/`. Add "
        "`--doc-only` to rewrite them without training.",
        "",
        "The seed's claims are about differences between settings, and those are what is judged "
        "below; the limits of this study are at the end. FID cells are mean ± half the "
        "seed-to-seed range of each run's min FID; verdicts are counts healthy / unstable / "
        "collapsed. Only finished runs are counted. The figures come from the reports package; "
        "their collapse rate counts collapsed runs only, the instability rate below also counts "
        "unstable ones.",
        "",
        "The first round's short sweeps (400 steps at the quick preset; their results are in "
        "this file's git history) are superseded: `stability` (involution layers × kernel "
        "normalization) by the seed study's sweeps — two layers is judged on `faithful`, "
        "`successive` and `mechanism` (L-2L, L-2L-stacked, M-2L-BN, M-2L), each normalization "
        "on `norms` (L-batch, L-spectral, L-softmax) and BatchNorm also on `mechanism` (M-BN-D, "
        "M-BN-G); `table2` and `archs` by 2,000-step runs of 3 seeds in the same folder.",
        "",
        *timing_lines(sweeps),
        "## The answer", "",
        seed_answer(sweeps), "",
        mechanism_answer({cid: f for cid, _, f, _ in found}), "",
        *seed_study_lines(sweeps, folder, command),
        *mechanism_lines(sweeps, rows, folder, command),
        *table2_lines(sweeps["table2"], folder, command),
        *archs_lines(sweeps["archs"], folder, command),
        "## Claims", "", RULE_NOISE, RULE_RATE, "",
        table(["id", "claim", "verdict", "numbers", "rule"],
              [[cid, text, f"**{f.verdict}**", f.numbers, rule] for cid, text, f, rule in found]),
        "",
        "## Conclusions", "",
        *[conclusion(cid, f, claim_steps(cid, sweeps)) for cid, _, f, _ in found], "",
        "## Limits of this study", "", limits(sweeps, counted), ""]
    doc = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return doc
