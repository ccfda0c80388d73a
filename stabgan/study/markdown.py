"""Numbers, tables and figures of the study document."""
from __future__ import annotations

import statistics
from pathlib import Path

from probes.collapse import SIGNS_SHOWN, VERDICTS, sign_text
from probes.readings import LOSS_CRITIC, WGAN_DISTANCE
from probes.rundir.reader import RunDir
from stabgan.study.records import Point, RunRecord, Sweep
from stabgan.study.sweeps import SEED_SWEEPS, SWEEP_KEYS, SWEEP_TEXT
from stabgan.sweep import FINISHED

# Run fields hidden from the reports' overview figures, so that each sweep shows the figures that
# mean something for it: the collapse-rate grid (inv-layers x norm) for the seed sweeps,
# verdicts by arch for archs only; FID curves and collapse onsets for every sweep.
FIGURE_HIDDEN = {"archs": ("inv_layers", "norm"), "table2": ("arch", "inv_layers", "norm"),
                 **{name: ("arch",) for name in SEED_SWEEPS}}
ONSET_PREFIX = "onset-"  # the seed's Fig. 7/8 analogues beside the doc (rewritten every time)
ONSET_TAGS = (WGAN_DISTANCE, LOSS_CRITIC)
LABEL_PREFIX = {"inv_layers": "L", "kernel_size": "K", "groups": "G", "reduction": "R",
                "seed": "s"}  # run labels in the figures: "L2 batch s0"


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
    counts = {v: sum(r.verdict == v for r in point.runs) for v in VERDICTS}
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


def overview_figures(sweep: Sweep) -> list[dict]:
    """The reports package's overview figures over the sweep's finished runs (FIGURE_HIDDEN)."""
    from reports import html
    runs = [r for r in html.collect(sweep.out, progress=False)["runs"]
            if r["row"]["status"] in FINISHED]
    return html.overview_figures(runs, lambda row: run_label(row, sweep.name),
                                 FIGURE_HIDDEN[sweep.name])


def run_label(row: dict, sweep: str) -> str:
    """A legend label short enough for the figures: "L2 batch s0", "K3 G4 R2 s1", "igan s2"."""
    return " ".join(f"{LABEL_PREFIX.get(k, '')}{row.get(k)}" for k in (*SWEEP_KEYS[sweep], "seed"))


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
    from reports.figures import save_figures
    images = save_figures(figures, folder, sweep.name)
    return [" ".join(images), ""] if images else []



def sweep_status(sweep: Sweep) -> str:
    """Which of the sweep's runs the numbers below cover."""
    count = len(sweep.finished)
    text = f"{count} finished run{'s' * (count != 1)} counted ({len(sweep.planned)} planned)"
    if sweep.unfinished:
        text += "; not counted, unfinished: " + ", ".join(
            f"`{r.name}` ({r.status or 'no summary.json'})" for r in sweep.unfinished)
    if sweep.not_started:
        text += f"; {len(sweep.not_started)} not started"
    report = sweep.out / "report.html"
    return text + (f". Every run in detail: `{report}`." if report.is_file() else ".")


def not_run_line(sweep: Sweep, command: str) -> str:
    """The one line of a sweep without a finished run: what will run, and the command."""
    configs = list(sweep.planned.values())
    seeds = join(sorted({c["seed"] for c in configs}))
    steps = join(f"{s:,}" for s in sorted({c["steps"] for c in configs}))
    under_way = f" ({len(sweep.unfinished)} under way)" if sweep.unfinished else ""
    return (f"_No finished run yet{under_way}: `{sweep.name}` trains {len(configs)} runs "
            f"({SWEEP_TEXT[sweep.name]}; seeds {seeds}; {steps} steps each) into `{sweep.out}`; "
            f"`{command} --only {sweep.name}` runs them. The claims that need them are "
            "inconclusive until then._")


def _grid_step(grid: Path) -> int:
    return int(grid.stem.split("_")[1])


def onset_grids(record: RunRecord) -> list[tuple[str, Path]]:
    """The run's sample grids: the last one before the step it went bad, the first one after
    it, and its last one, each with its label."""
    grids = sorted((record.path / "samples").glob("step_*.png"), key=_grid_step)
    bad = record.went_bad
    before = [g for g in grids if bad is not None and _grid_step(g) < bad][-1:]
    after = [g for g in grids if bad is not None and _grid_step(g) > bad][:1]
    shown: dict[Path, str] = {}
    for label, found in (("before", before), ("after", after), ("last", grids[-1:])):
        for grid in found:
            shown.setdefault(grid, label)
    return [(f"step {_grid_step(g):,}, {label}", g) for g, label in shown.items()]


def _at(step: int | None) -> str:
    return f" at step {step:,}" if step is not None else ""


def event_text(record: RunRecord) -> str:
    """The event behind a bad run's verdict in words: the detector's message (its evidence),
    when it was confirmed, and its first signs."""
    event = record.event
    text = event.get("message") or f"{record.verdict}{_at(record.went_bad)} ({event.get('kind')})"
    detected = (event.get("evidence") or {}).get("detected_step")
    if detected is not None:
        text += f"; confirmed at step {detected:,}"
    signs = event.get("first_signs") or []
    if signs:
        text += "; first signs: " + "; ".join(
            f"step {s['step']:,} {sign_text(s)}" + (f" [{s['layer']}]" if s.get("layer") else "")
            for s in signs[:SIGNS_SHOWN])
    return text


def onset_lines(title: str, stem: str, runs: list[RunRecord], folder: Path) -> list[str]:
    """The seed's Fig. 7/8 analogue for a setting's bad runs: `wgan/distance` and the critic
    loss of each, the step it went bad dashed; the first run's sample grids before and after
    that step and at its end (files folder/ONSET_PREFIX+stem-*); each run's event in words."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(7, 2.6))
    axes = figure.subplots(1, 2)
    for i, record in enumerate(runs):
        series = RunDir(record.path).series(ONSET_TAGS)
        for axis, tag in zip(axes, ONSET_TAGS):
            steps, values = series.get(tag, ([], []))
            axis.plot(steps, values, lw=0.8, color=f"C{i}",
                      label=f"seed {record.config.get('seed')}")
            if record.went_bad is not None:
                axis.axvline(record.went_bad, color=f"C{i}", ls="--", lw=1)
    for axis, tag in zip(axes, ONSET_TAGS):
        axis.set_title(f"{tag} (dashed: onset)", fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    stem = ONSET_PREFIX + stem
    figure.savefig(folder / f"{stem}-curves.png", dpi=110)
    first = runs[0]
    grids = onset_grids(first)
    for _, grid in grids:
        (folder / f"{stem}-{grid.name}").write_bytes(grid.read_bytes())
    lines = [f"**{title}**", "",
             f"![{' and '.join(ONSET_TAGS)}, onsets dashed]({folder.name}/{stem}-curves.png)", ""]
    if grids:
        lines += [f"Samples of `{first.name}`, which went bad{_at(first.went_bad)}: " +
                  " ".join(f"![{label}]({folder.name}/{stem}-{grid.name})"
                           for label, grid in grids), ""]
    lines += [f"- `{r.path.parent.name}/{r.name}` — {r.verdict}: {event_text(r)}" for r in runs]
    return lines + [""]
