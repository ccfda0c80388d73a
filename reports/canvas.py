"""A run's plots (reports.panels) drawn on one reusable, text-free figure (`Canvas`), with
reports.figures' style and encoding; `run_figures` gives the page its per-run sections.
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from reports.figures import PALETTE, PANEL_DPI, STYLE, data_uri, downsample, png_bytes
from reports.panels import Plot, plot_sections
from probes.text import number

MAX_LEGEND = 14    # legend entries per panel; more lines are drawn but not named
RANKED_LINES = 4   # from this many lines (per-layer ones), the legend is ranked: see render
LINE_STYLES = {"solid": "-", "dashed": "--", "dotted": ":"}
PLOT_SIZE = (3.6, 1.9)    # inches at PANEL_DPI: the 360 × 190 px plot area of a panel
ONSET_COLOR = "#c62828"
TARGET_COLOR = "#455a64"


def _limits(arrays: list[np.ndarray], log: bool) -> tuple[float, float] | None:
    finite = [a[np.isfinite(a) & ((a > 0) if log else True)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return None
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if _constant(lo, hi):  # an axis around the value; a constant 0 (a rate) sits on its floor
        half = 0.5 if log or hi == 0 else abs(hi) * 0.1
        lo, hi = (lo if hi == 0 and not log else lo - half), hi + half
    pad = (hi - lo) * 0.06
    lo, hi = lo - pad, hi + pad
    return (10 ** lo, 10 ** hi) if log else (lo, hi)


def _constant(lo: float, hi: float) -> bool:
    return hi - lo < 1e-12 * max(1.0, abs(hi))


def _flat(arrays: list[np.ndarray]) -> tuple[float, int] | None:
    """(the value, how many points) when every finite value drawn is the same, else None."""
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays]) if arrays else np.array([])
    if not finite.size or not _constant(float(finite.min()), float(finite.max())):
        return None
    return float(finite[0]), finite.size


def _last_finite(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if finite.size else math.nan


def compact_number(value: float) -> str:
    """Tick label: 1.2M, 350k, 0.0035, 12 (no scientific offset text)."""
    size = abs(value)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e4, "k")):
        if size >= scale:
            divisor = 1e3 if suffix == "k" else scale
            return f"{value / divisor:.4g}{suffix}"
    return f"{value:.6g}"


def _wide_positive_range(arrays: list[np.ndarray], decades: float = 1.5) -> bool:
    """A log axis only pays off over more than ~1.5 decades of positive values."""
    positive = [a[np.isfinite(a) & (a > 0)] for a in arrays]
    positive = [a for a in positive if a.size]
    if not positive:
        return False
    lo = min(float(a.min()) for a in positive)
    hi = max(float(a.max()) for a in positive)
    return math.log10(hi / lo) > decades


def _band_points(band) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, lo, hi) of a band downsampled on one index shared by both edges: the points
    `downsample` keeps of either edge (each bucket's lowest lo and highest hi among them; at
    most twice its points), so every drawn x has its own lo and hi."""
    lo = np.where(np.isfinite(band.lo), band.lo, np.nan)
    hi = np.where(np.isfinite(band.hi), band.hi, np.nan)
    points = np.arange(len(band.steps))
    index = np.union1d(downsample(points, lo)[0], downsample(points, hi)[0])
    return band.steps[index], lo[index], hi[index]


class Canvas:
    """One reusable text-free Figure for the per-run panels.

    The image holds only what must be drawn (bands, lines, grid, target, onset, ▼ marks); the
    title, tick labels and legend are returned as data for the page to set as HTML text. Text
    layout is most of matplotlib's cost per plot, and HTML text stays sharp, selectable and
    escaped. The axes fill the image, so a tick's position is its fraction of the axis range.
    """

    def __init__(self, size=PLOT_SIZE, dpi=PANEL_DPI):
        self.fig = Figure(figsize=size, dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()  # no matplotlib axis at all: its tick machinery is the slow part
        # Lines are kept across panels and given new data: creating artists is a large part of
        # a panel's cost. The grid is one line with NaN breaks.
        rc = matplotlib.rcParams
        self.grid = self._add_line(color=rc["grid.color"], linewidth=rc["grid.linewidth"],
                                   zorder=0.5)
        self.target = self._add_line(color=TARGET_COLOR, linestyle=":", linewidth=1.1, zorder=2.5)
        self.onset = self._add_line(color=ONSET_COLOR, linestyle="--", linewidth=1.1, zorder=2.6)
        self.series: list = []  # one per plotted series, grown as panels need more

    def _add_line(self, **style):
        return self.ax.add_line(Line2D([], [], **style))

    def _series_line(self, i: int, steps, values, color: str, style: str, points: int):
        while len(self.series) <= i:
            self.series.append(self._add_line(zorder=2))
        line = self.series[i]
        line.set_data(steps, values)
        line.set_color(color)
        line.set_linestyle(LINE_STYLES[style])
        line.set_marker("o" if points <= 40 else "None")  # few points (sparse cadence): each one
        line.set_markersize(4 if points <= 2 else 2)
        line.set_visible(True)

    def render(self, panel: Plot, onset: int | None, xmax: int | None) -> dict:
        """{"uri", "xticks", "yticks", "legend", "ranked", "note", "empty"} for one plot.

        A panel of many lines (one per layer) has a ranked legend: ordered by each line's last
        value, highest first (the order of the line ends), each entry with that value, and
        colours and styles given in that order, so neighbouring lines differ in both.
        """
        ax = self.ax
        kept = {self.grid, self.target, self.onset, *self.series}
        for artist in [*ax.lines, *ax.collections, *ax.patches]:
            if artist in kept:
                artist.set_visible(False)
            else:
                artist.remove()
        self.grid.set_visible(True)
        log = panel.logy and _wide_positive_range([l.values for l in panel.lines])
        if ax.get_yscale() != ("log" if log else "linear"):  # setting a scale costs ~1 ms
            ax.set_yscale("log" if log else "linear")
        legend, arrays, bad_steps, xs = [], [], [], []
        for band in panel.bands:
            s, l, h = _band_points(band)
            color = PALETTE[band.line % len(PALETTE)]
            ax.fill_between(s, l, h, color=color, alpha=0.18, linewidth=0)
            legend.append({"label": band.label, "color": color, "style": "band"})
            arrays += [l, h]
            xs.append(s)
        ranked = len(panel.lines) >= RANKED_LINES and not panel.bands  # bands name lines by index
        last = [_last_finite(item.values) for item in panel.lines]
        order = (sorted(range(len(last)), key=lambda i: (math.isnan(last[i]), -last[i]))
                 if ranked else range(len(last)))
        for slot, i in enumerate(order):
            item = panel.lines[i]
            finite = np.isfinite(item.values)
            if not finite.all():
                bad_steps.append(item.steps[~finite])
            s, v = downsample(item.steps, np.where(finite, item.values, np.nan))
            color = PALETTE[slot % len(PALETTE)]
            style = (list(LINE_STYLES)[slot % len(LINE_STYLES)] if ranked
                     else "dashed" if item.dashed else "solid")
            self._series_line(slot, s, v, color, style, int(np.isfinite(v).sum()))
            legend.append({"label": f"{item.label} · {number(last[i])}" if ranked else item.label,
                           "color": color, "style": style})
            arrays.append(v)
            xs.append(s)
        # a flat panel gets one tick, at its value, and says so: ticks around it would read
        # as a scale of variation
        flat = _flat(arrays)
        note = None if flat is None else (f"constant {number(flat[0])}" if flat[1] > 1
                                          else f"one reading: {number(flat[0])}")
        if panel.target is not None:
            y, label = panel.target
            legend.append({"label": label, "color": TARGET_COLOR, "style": "dotted"})
            arrays.append(np.array([y]))

        found = _limits(arrays, log)
        ylim = found or ((0.1, 10) if log else (0, 1))
        x_lo = min((float(x.min()) for x in xs if x.size), default=0.0)
        x_hi = float(xmax) if xmax else max((float(x.max()) for x in xs if x.size), default=1.0)
        x_lo, x_hi = min(0.0, x_lo), max(x_hi, x_lo + 1)
        xlim = (x_lo, x_hi + 0.015 * (x_hi - x_lo))  # room for a marker on the last step
        ax.set_ylim(*ylim)
        ax.set_xlim(*xlim)
        if flat:  # labelled as the note gives the value, not with all of the float's digits
            yticks = _ticks(ticker.FixedLocator([flat[0]]), ylim, log, number)
        else:
            y_locator = ticker.LogLocator(numticks=5) if log else ticker.MaxNLocator(nbins=4)
            yticks = _ticks(y_locator, ylim, log)
        xticks = _ticks(ticker.MaxNLocator(nbins=5, integer=True), xlim, False)
        self.grid.set_data(*_grid_segments([t["value"] for t in xticks],
                                           [t["value"] for t in yticks], xlim, ylim))
        if panel.target is not None:
            self.target.set_data(xlim, [panel.target[0]] * 2)
            self.target.set_visible(True)
        if onset is not None:
            self.onset.set_data([onset] * 2, ylim)
            self.onset.set_visible(True)
        if bad_steps:
            marks = np.unique(np.concatenate(bad_steps))
            if marks.size > 60:
                marks = marks[np.linspace(0, marks.size - 1, 60).astype(int)]
            ax.plot(marks, np.full(marks.size, 0.96), linestyle="none", marker="v",
                    markersize=3.5, color=ONSET_COLOR, transform=ax.get_xaxis_transform(),
                    clip_on=False, zorder=3)
            legend.append({"label": "non-finite", "color": ONSET_COLOR, "style": "marker"})
        if len(legend) > MAX_LEGEND:
            more = len(legend) - MAX_LEGEND + 1
            legend = legend[:MAX_LEGEND - 1] + [{"label": f"+{more} more (drawn, not named)",
                                                 "color": "#9e9e9e", "style": "solid"}]
        return {"uri": data_uri(png_bytes(self.fig)), "xticks": xticks, "yticks": yticks,
                "legend": legend, "ranked": ranked, "note": note, "empty": found is None}


def _grid_segments(xs, ys, xlim, ylim) -> tuple[np.ndarray, np.ndarray]:
    """x and y of full-height lines at xs and full-width lines at ys, NaN between segments."""
    x = [v for tick in xs for v in (tick, tick, np.nan)] + [*xlim, np.nan] * len(ys)
    y = [v for _ in xs for v in (*ylim, np.nan)] + [v for tick in ys for v in (tick, tick, np.nan)]
    return np.array(x), np.array(y)


def _ticks(locator, limits: tuple[float, float], log: bool, label=compact_number) -> list[dict]:
    """[{"value", "label", "pos"}]: the locator's ticks inside limits, pos in % of the axis."""
    lo, hi = limits
    to_axis = (lambda v: math.log10(v)) if log else (lambda v: v)
    span = to_axis(hi) - to_axis(lo)
    return [{"value": float(v), "label": label(float(v)),
             "pos": round(100 * (to_axis(v) - to_axis(lo)) / span, 2)}
            for v in locator.tick_values(lo, hi) if lo <= v <= hi]


_canvas: Canvas | None = None  # one per process: creating the figure costs more than a panel


def run_figures(series, panels, onset: int | None, xmax: int | None) -> list[dict]:
    """[{"title": section, "figures": [{"title", "tags", **Canvas.render}]}] for one run:
    series (tag -> (steps, values)) drawn as its declared panels (probes.readings.Panel)."""
    global _canvas
    sections = []
    with matplotlib.rc_context(STYLE):
        canvas = _canvas = _canvas or Canvas()
        for title, plots in plot_sections(series, panels):
            figures = []
            for panel in plots:
                caption = panel.title
                if len(panel.lines) == 1 and panel.lines[0].label not in caption:
                    caption += f" · {panel.lines[0].label}"
                figures.append({"title": caption, "tags": panel.tags,
                                **canvas.render(panel, onset, xmax)})
            sections.append({"title": title, "figures": figures})
    return sections
