"""Numbers, tables and figures of the study document."""
from __future__ import annotations

import statistics
from pathlib import Path

from probes.collapse import VERDICTS
from stabgan.study.records import Point, Sweep
from stabgan.study.sweeps import SEED_SWEEPS, SWEEP_KEYS
from stabgan.sweep import FINISHED

# Run fields hidden from the reports' overview figures, so that each sweep shows the figures that
# mean something for it: the collapse-rate grid (inv-layers x norm) for stability only, verdicts
# by arch for archs only; FID curves and collapse onsets for every sweep.
FIGURE_HIDDEN = {"stability": ("arch",), "archs": ("inv_layers", "norm"),
                 "table2": ("arch", "inv_layers", "norm"), **{name: ("arch",) for name in SEED_SWEEPS}}
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

