"""matplotlib figures for the report, returned as base64 PNG data URIs (no file, no URL).

matplotlib is used through `Figure` + the Agg canvas only, never pyplot, so rendering a report
does not touch the caller's backend. Per-run panels share one reusable, text-free figure
(`Canvas`); their titles, tick labels and legends are HTML text set by the page.
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image, ImageChops

MAX_POINTS = 400   # points per plotted series after downsampling (plots are 360 px wide)
MAX_LEGEND = 14    # legend entries per panel; more lines are drawn but not named
PLOT_SIZE = (3.6, 1.9)    # inches at PANEL_DPI: the 360 × 190 px plot area of a panel
PANEL_DPI = 100
PNG_LEVEL = 3      # zlib level: 2.5× faster than the default 6, files ~15% larger
AGGREGATE_SIZE = (4.0, 2.6)
ONSET_COLOR = "#c62828"
TARGET_COLOR = "#455a64"
VERDICT_COLORS = {"healthy": "#2e7d32", "unstable": "#ef8f00", "collapsed": "#c62828",
                  None: "#9e9e9e"}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
STYLE = {  # rcParams for every figure; text.parse_math off: run names may contain "$"
    "font.size": 7.5, "axes.titlesize": 8, "axes.titleweight": "bold", "axes.titley": 1.0,
    "axes.titlepad": 4, "axes.labelsize": 7, "xtick.labelsize": 6.5, "ytick.labelsize": 6.5,
    "legend.fontsize": 6, "axes.grid": True, "grid.color": "#e6e6e6", "grid.linewidth": 0.6,
    "axes.spines.top": False, "axes.spines.right": False, "axes.edgecolor": "#888888",
    "text.parse_math": False, "legend.framealpha": 0.75, "legend.handlelength": 1.4,
    "legend.borderaxespad": 0.3, "legend.labelspacing": 0.25, "lines.linewidth": 1.0,
    "svg.fonttype": "none", "path.simplify": True,
}


# --------------------------------------------------------------------------- downsampling

def downsample(steps: np.ndarray, values: np.ndarray, max_points: int = MAX_POINTS):
    """At most max_points points keeping each bucket's min and max in step order, so spikes
    survive. NaN is ignored by the min/max; a bucket of only NaN stays a gap."""
    n = len(steps)
    if n <= max_points:
        return steps, values
    buckets = max(1, max_points // 2)
    size = -(-n // buckets)
    buckets = -(-n // size)  # every bucket holds at least one real point
    grid = np.concatenate([values, np.full(buckets * size - n, np.nan)]).reshape(buckets, size)
    missing = np.isnan(grid)
    i_min = np.where(missing, np.inf, grid).argmin(axis=1)
    i_max = np.where(missing, -np.inf, grid).argmax(axis=1)
    offsets = np.arange(buckets)[:, None] * size
    index = np.minimum(np.sort(np.column_stack([i_min, i_max]), axis=1) + offsets, n - 1).ravel()
    out = values[index].astype(np.float64, copy=True)
    out[np.repeat(missing.all(axis=1), 2)] = np.nan
    return steps[index], out


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def png_bytes(fig) -> bytes:
    """Draw fig with Agg and encode it as a palette PNG: plots have few colours, and a
    128-colour palette makes them ~4× smaller than RGBA (it matters at 100 runs × 16 panels)."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw",
                             "RGBA", 0, 1).quantize(colors=128, method=Image.Quantize.FASTOCTREE)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


# --------------------------------------------------------------------------- panel model

@dataclass
class Line:
    label: str
    steps: np.ndarray
    values: np.ndarray
    color: str | None = None
    dashed: bool = False


@dataclass
class Panel:
    """One small plot: lines over steps, optionally shaded bands and a horizontal target."""
    title: str
    lines: list[Line]
    bands: list[tuple[np.ndarray, np.ndarray, np.ndarray, str, str]] = field(default_factory=list)
    # each band: steps, lo, hi, label, colour
    target: tuple[float, str] | None = None
    logy: bool = False
    tags: list[str] = field(default_factory=list)


def _sorted_layers(names):
    return sorted(names, key=lambda n: (n.split(".")[0], n))


def build_panels(series: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[tuple[str, list[Panel]]]:
    """Group a run's tags into titled sections of panels; tags that were never logged give no
    panel (and a section with no panel is left out)."""
    used: set[str] = set()

    def line(tag, label=None, color=None, dashed=False):
        used.add(tag)
        steps, values = series[tag]
        return Line(label or tag, steps, values, color, dashed)

    def tags_under(prefix):
        return sorted(t for t in series if t.startswith(prefix) and t not in used)

    sections: list[tuple[str, list[Panel]]] = []

    # training: losses, distance, the gradient-penalty norm band
    training = []
    losses = [t for t in ("loss/critic", "loss/generator") if t in series]
    losses += [t for t in tags_under("loss/") if t not in losses]
    if losses:
        training.append(Panel("Losses", [line(t) for t in losses], tags=losses))
    if "wgan/distance" in series:
        training.append(Panel("wgan/distance = E[D(real)] − E[D(fake)]",
                              [line("wgan/distance")], tags=["wgan/distance"]))
    gp_norm = [t for t in ("gp/norm_mean", "gp/norm_p50", "gp/norm_p05", "gp/norm_p95",
                           "gp/norm_std") if t in series]
    if gp_norm:
        lines, band = [], None
        if "gp/norm_p05" in series and "gp/norm_p95" in series:
            band = _band(series["gp/norm_p05"], series["gp/norm_p95"], "p05–p95", PALETTE[0])
        elif "gp/norm_mean" in series and "gp/norm_std" in series:
            mean, std = series["gp/norm_mean"], series["gp/norm_std"]
            if len(mean[0]) == len(std[0]) and (mean[0] == std[0]).all():
                band = (mean[0], mean[1] - std[1], mean[1] + std[1], "mean ± std", PALETTE[0])
        if "gp/norm_mean" in series:
            lines.append(line("gp/norm_mean", "mean"))
        if "gp/norm_p50" in series:
            lines.append(line("gp/norm_p50", "median", dashed=True))
        used.update(gp_norm)
        if not lines and band is not None:
            lines.append(Line("p05", *series["gp/norm_p05"], dashed=True))
        training.append(Panel("GP: ‖∇D(x̂)‖ at interpolates", lines, bands=[band] if band else [],
                              target=(1.0, "target 1"), tags=gp_norm))
    for tag in tags_under("gp/"):
        training.append(Panel(tag, [line(tag)], tags=[tag]))
    if training:
        sections.append(("Training", training))

    # FID, coverage and diversity
    fid = tags_under("fid/")
    if fid:
        sections.append(("FID", [Panel("FID (lower is better)",
                                       [line(t, t[4:]) for t in fid], tags=fid)]))
    quality = [Panel(t, [line(t)], tags=[t])
               for t in tags_under("coverage/") + tags_under("diversity/")]
    if quality:
        sections.append(("Coverage and diversity", quality))

    # critic scores: real vs fake means with ± std bands
    critic, score_lines, bands = [], [], []
    for side, color in (("real", PALETTE[0]), ("fake", PALETTE[1])):
        mean_tag, std_tag = f"critic/d_{side}_mean", f"critic/d_{side}_std"
        if mean_tag not in series:
            continue
        score_lines.append(line(mean_tag, f"D({side}) mean", color))
        mean = series[mean_tag]
        if std_tag in series and np.array_equal(series[std_tag][0], mean[0]):
            used.add(std_tag)
            std = series[std_tag][1]
            bands.append((mean[0], mean[1] - std, mean[1] + std, f"D({side}) ± std", color))
    if score_lines:
        critic.append(Panel("Critic scores", score_lines, bands=bands,
                            tags=[t for t in series if t.startswith("critic/d_") and t in used]))
    critic += [Panel(t, [line(t)], tags=[t]) for t in tags_under("critic/")]
    if critic:
        sections.append(("Critic", critic))

    # involution kernels: one panel per statistic, one line per layer
    kernel_tags = tags_under("kernel/")
    stats: dict[str, list[str]] = {}
    for tag in kernel_tags:
        parts = tag.split("/")
        stat = parts[-1] if len(parts) >= 3 else tag
        stats.setdefault(stat, []).append(tag)
    if stats:
        panels = []
        for stat, tags in stats.items():
            lines = [line(t, "/".join(t.split("/")[1:-1]) or t) for t in _sorted_layers(tags)]
            panels.append(Panel(f"kernel {stat}", lines, tags=tags))
        sections.append(("Involution kernels", panels))

    # spectra: one panel per measure (sigma0, sigma1, ratio), one line per layer
    spectra: dict[str, list[str]] = {}
    for tag in tags_under("spectra/"):
        parts = tag.split("/")
        spectra.setdefault(parts[-1] if len(parts) >= 3 else "value", []).append(tag)
    order = {"sigma0": 0, "sigma1": 1, "ratio": 2}
    panels = []
    for measure in sorted(spectra, key=lambda m: (order.get(m, 9), m)):
        tags = spectra[measure]
        lines = [line(t, "/".join(t.split("/")[1:-1]) or t) for t in _sorted_layers(tags)]
        title = {"sigma0": "spectra σ0 (largest singular value)", "sigma1": "spectra σ1",
                 "ratio": "spectra σ0/σ1"}.get(measure, f"spectra {measure}")
        panels.append(Panel(title, lines, logy=measure.startswith("sigma"), tags=tags))
    for group, title in (("grad", "gradient norms per layer"),
                         ("update", "update / weight per layer")):
        tags = tags_under(group + "/")
        if tags:
            lines = [line(t, t.split("/", 1)[1]) for t in _sorted_layers(tags)]
            panels.append(Panel(title, lines, logy=True, tags=tags))
    if panels:
        sections.append(("Spectra and gradients", panels))

    # any other group (time/* is the ms/step column, not a stability reading)
    other: dict[str, list[str]] = {}
    for tag in sorted(series):
        if tag not in used and not tag.startswith("time/"):
            other.setdefault(tag.split("/")[0], []).append(tag)
    panels = [Panel(group, [line(t) for t in tags], tags=tags) for group, tags in other.items()]
    if panels:
        sections.append(("Other readings", panels))
    return sections


def _band(lo_series, hi_series, label, color):
    """A shaded band between two series, on the steps both were logged at."""
    (s_lo, lo), (s_hi, hi) = lo_series, hi_series
    if len(s_lo) != len(s_hi) or not (s_lo == s_hi).all():
        common, i_lo, i_hi = np.intersect1d(s_lo, s_hi, return_indices=True)
        return common, lo[i_lo], hi[i_hi], label, color
    return s_lo, lo, hi, label, color


# --------------------------------------------------------------------------- rendering

def _limits(arrays: list[np.ndarray], log: bool) -> tuple[float, float] | None:
    finite = [a[np.isfinite(a) & ((a > 0) if log else True)] for a in arrays]
    finite = [a for a in finite if a.size]
    if not finite:
        return None
    lo = min(float(a.min()) for a in finite)
    hi = max(float(a.max()) for a in finite)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = 0.5 if log else max(abs(hi) * 0.1, 0.5)
        lo, hi = lo - pad, hi + pad
    else:
        pad = (hi - lo) * 0.06
        lo, hi = lo - pad, hi + pad
    return (10 ** lo, 10 ** hi) if log else (lo, hi)


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

    def _series_line(self, i: int, steps, values, color: str, dashed: bool, points: int):
        while len(self.series) <= i:
            self.series.append(self._add_line(zorder=2))
        line = self.series[i]
        line.set_data(steps, values)
        line.set_color(color)
        line.set_linestyle("--" if dashed else "-")
        line.set_marker("o" if points <= 40 else "None")  # few points (sparse cadence): each one
        line.set_markersize(4 if points <= 2 else 2)
        line.set_visible(True)

    def render(self, panel: Panel, onset: int | None, xmax: int | None) -> dict:
        """{"uri", "xticks", "yticks", "legend", "empty"} for one panel."""
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
        for steps, lo, hi, label, color in panel.bands:
            s, l = downsample(steps, np.where(np.isfinite(lo), lo, np.nan))
            _, h = downsample(steps, np.where(np.isfinite(hi), hi, np.nan))
            ax.fill_between(s, l, h, color=color, alpha=0.18, linewidth=0)
            legend.append({"label": label, "color": color, "style": "band"})
            arrays += [l, h]
            xs.append(s)
        for i, item in enumerate(panel.lines):
            finite = np.isfinite(item.values)
            if not finite.all():
                bad_steps.append(item.steps[~finite])
            s, v = downsample(item.steps, np.where(finite, item.values, np.nan))
            color = item.color or PALETTE[i % len(PALETTE)]
            self._series_line(i, s, v, color, item.dashed, int(np.isfinite(v).sum()))
            legend.append({"label": item.label, "color": color,
                           "style": "dashed" if item.dashed else "solid"})
            arrays.append(v)
            xs.append(s)
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
                "legend": legend, "empty": found is None}


def _grid_segments(xs, ys, xlim, ylim) -> tuple[np.ndarray, np.ndarray]:
    """x and y of full-height lines at xs and full-width lines at ys, NaN between segments."""
    x = [v for tick in xs for v in (tick, tick, np.nan)] + [*xlim, np.nan] * len(ys)
    y = [v for _ in xs for v in (*ylim, np.nan)] + [v for tick in ys for v in (tick, tick, np.nan)]
    return np.array(x), np.array(y)


def _ticks(locator, limits: tuple[float, float], log: bool) -> list[dict]:
    """[{"value", "label", "pos"}]: the locator's ticks inside limits, pos in % of the axis."""
    lo, hi = limits
    to_axis = (lambda v: math.log10(v)) if log else (lambda v: v)
    span = to_axis(hi) - to_axis(lo)
    return [{"value": float(v), "label": compact_number(float(v)),
             "pos": round(100 * (to_axis(v) - to_axis(lo)) / span, 2)}
            for v in locator.tick_values(lo, hi) if lo <= v <= hi]


_canvas: Canvas | None = None  # one per process: creating the figure costs more than a panel


def run_figures(series, onset: int | None, xmax: int | None) -> list[dict]:
    """[{"title": section, "figures": [{"title", "tags", **Canvas.render}]}] for one run."""
    global _canvas
    sections = []
    with matplotlib.rc_context(STYLE):
        canvas = _canvas = _canvas or Canvas()
        for title, panels in build_panels(series):
            figures = []
            for panel in panels:
                caption = panel.title
                if len(panel.lines) == 1 and panel.lines[0].label not in caption:
                    caption += f" · {panel.lines[0].label}"
                figures.append({"title": caption, "tags": panel.tags,
                                **canvas.render(panel, onset, xmax)})
            sections.append({"title": title, "figures": figures})
    return sections


# --------------------------------------------------------------------------- sample grids

def sample_uri(path: Path, max_width: int = 360) -> str | None:
    """A sample grid as a data URI: grayscale PNG when the grid is gray (MNIST), else JPEG;
    at most max_width px wide. None when the file cannot be decoded (still being written)."""
    try:
        with Image.open(path) as image:
            image.load()
            image = image.convert("RGB")
    except Exception:  # PIL raises many types for truncated/garbled files
        return None
    r, g, b = image.split()
    gray = all(ImageChops.difference(r, other).getbbox() is None for other in (g, b))
    if image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)),
                             Image.LANCZOS)
    buffer = io.BytesIO()
    if gray:
        image.convert("L").save(buffer, format="PNG", compress_level=PNG_LEVEL)
        return data_uri(buffer.getvalue())
    image.save(buffer, format="JPEG", quality=85)
    return data_uri(buffer.getvalue(), "image/jpeg")


# --------------------------------------------------------------------------- overview figures

def _figure(size=AGGREGATE_SIZE):
    return Figure(figsize=size, dpi=PANEL_DPI)


def _png(fig) -> str:
    return data_uri(png_bytes(fig))


def _category(value) -> str:
    return "—" if value is None else str(value)


def aggregate_figures(rows: list[dict],
                      fid_curves: list[tuple[str, str | None, dict]]) -> list[dict]:
    """Overview figures: collapse rate by (inv-layers × norm) and by arch, FID curves overlaid,
    onset steps. rows: run_row dicts with "name"; fid_curves: (name, verdict, {features: [steps,
    values]}). A figure with nothing to show is left out."""
    figures = []
    judged = [r for r in rows if r.get("verdict")]  # runs without a config are left out here
    gridded = [r for r in judged
               if type(r.get("inv_layers")) is int and isinstance(r.get("norm"), str)]
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        if gridded:
            figures.append(_rate_grid(gridded))
        if any(isinstance(r.get("arch"), str) for r in judged):
            figures.append(_by_arch([r for r in judged if isinstance(r.get("arch"), str)]))
        for features in sorted({f for _, _, curves in fid_curves for f in curves})[:2]:
            figures.append(_fid_overlay(fid_curves, features))
        onsets = [r for r in judged if r.get("onset_step") is not None]
        if onsets:
            figures.append(_onsets(onsets))
    return figures


def _rate_grid(rows):
    ys = sorted({r["inv_layers"] for r in rows})
    norms = sorted({r["norm"] for r in rows}, key=lambda n: (n != "none", n))
    total = np.zeros((len(ys), len(norms)))
    collapsed = np.zeros_like(total)
    for r in rows:
        i, j = ys.index(r["inv_layers"]), norms.index(r["norm"])
        total[i, j] += 1
        collapsed[i, j] += r["verdict"] == "collapsed"
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(total > 0, collapsed / total, np.nan)
    fig = _figure()
    ax = fig.add_axes((0.14, 0.17, 0.66, 0.7))
    image = ax.imshow(np.ma.masked_invalid(rate), cmap="Reds", vmin=0, vmax=1, aspect="auto")
    ax.set_facecolor("#f2f2f2")
    for i in range(len(ys)):
        for j in range(len(norms)):
            if total[i, j]:
                ax.text(j, i, f"{rate[i, j]:.0%}\n{int(collapsed[i, j])}/{int(total[i, j])}",
                        ha="center", va="center", fontsize=7,
                        color="white" if rate[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(norms)), norms)
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel("norm")
    ax.set_ylabel("inv-layers")
    ax.set_title("Collapse rate by inv-layers × norm", loc="left")
    colorbar = fig.colorbar(image, cax=fig.add_axes((0.84, 0.17, 0.03, 0.7)))
    colorbar.ax.tick_params(labelsize=6)
    return {"title": "Collapse rate by inv-layers × norm", "uri": _png(fig)}


def _by_arch(rows):
    archs = sorted({_category(r.get("arch")) for r in rows})
    fig = _figure()
    ax = fig.add_axes((0.16, 0.2, 0.62, 0.66))
    left = np.zeros(len(archs))
    counts = {a: sum(_category(r.get("arch")) == a for r in rows) for a in archs}
    for verdict in ("collapsed", "unstable", "healthy"):
        share = np.array([sum(_category(r.get("arch")) == a and r["verdict"] == verdict
                              for r in rows) / counts[a] for a in archs])
        ax.barh(range(len(archs)), share, left=left, color=VERDICT_COLORS[verdict], label=verdict,
                height=0.6)
        left += share
    for i, a in enumerate(archs):
        ax.text(1.02, i, f"n={counts[a]}", va="center", fontsize=6.5)
    ax.set_yticks(range(len(archs)), archs)
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
    ax.set_xlabel("share of runs")
    ax.set_title("Verdicts by arch (red: collapse rate)", loc="left")
    ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False)
    return {"title": "Verdicts by arch", "uri": _png(fig)}


def _fid_overlay(curves, features):
    fig = _figure()
    ax = fig.add_axes((0.12, 0.17, 0.62 if len(curves) <= 12 else 0.84, 0.7))
    ax.grid(True, color="#e6e6e6")
    named = len(curves) <= 12
    seen = set()
    for i, (name, verdict, series) in enumerate(curves):
        if features not in series:
            continue
        steps, values = (np.asarray(a, dtype=float) for a in series[features])
        values = np.where(np.isfinite(values), values, np.nan)
        if named:
            label, color = name, PALETTE[i % len(PALETTE)]
        else:
            label = None if verdict in seen else (verdict or "no verdict")
            seen.add(verdict)
            color = VERDICT_COLORS.get(verdict, VERDICT_COLORS[None])
        ax.plot(steps, values, color=color, label=label, alpha=0.9 if named else 0.5)
    ax.set_xlabel("step")
    ax.set_title(f"FID ({features}) of every run", loc="left")
    if ax.get_legend_handles_labels()[0]:  # run names beside the plot; verdicts (few) inside it
        where = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if named else {"loc": "best"}
        ax.legend(frameon=not named, fontsize=6, **where)
    return {"title": f"FID ({features}) of every run", "uri": _png(fig)}


def _onsets(rows):
    """Onset steps: one dot per run (named) for a few runs, a stacked histogram for many;
    coloured by the kind of the run's first collapse."""
    steps = np.array([r["onset_step"] for r in rows], dtype=float)
    kinds = [(r.get("kinds") or ["?"])[0] for r in rows]
    names = sorted(set(kinds))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}
    few = len(rows) <= 12
    height = max(1.6, 0.85 + 0.24 * len(rows)) if few else AGGREGATE_SIZE[1]
    fig = _figure((AGGREGATE_SIZE[0], height))
    ax = fig.add_axes((0.22, 0.45 / height, 0.52, 1 - 0.8 / height))  # 0.45 in below, 0.35 above
    title = f"Collapse onsets ({len(steps)} run{'s' * (len(steps) != 1)})"
    if few:
        order = np.argsort(steps, kind="stable")[::-1]
        ax.grid(True, axis="x", color="#e6e6e6")
        for y, i in enumerate(order):
            ax.plot([0, steps[i]], [y, y], color="#cccccc", linewidth=0.8)
            ax.plot(steps[i], y, "o", color=colors[kinds[i]], markersize=6)
        ax.set_yticks(range(len(order)), [_short(rows[i].get("name", "?")) for i in order])
        ax.set_ylim(-0.7, len(order) - 0.3)
        ax.set_xlim(0, max(1.0, float(steps.max())) * 1.08)
        for name in names:
            ax.plot([], [], "o", color=colors[name], label=name)
    else:
        ax.grid(True, axis="y", color="#e6e6e6")
        hi = max(steps.max(), steps.min() + 1)
        bins = np.linspace(min(0.0, steps.min()), hi, 21)
        ax.hist([steps[[k == name for k in kinds]] for name in names], bins=bins, stacked=True,
                label=names, color=[colors[n] for n in names])
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("runs")
    ax.set_xlabel("onset step")
    ax.set_title(title, loc="left")
    ax.legend(title="first collapse", loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False, title_fontsize=6.5)
    return {"title": "Collapse onsets", "uri": _png(fig)}


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
