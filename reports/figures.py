"""matplotlib figures for the report, returned as base64 PNG data URIs (no file, no URL).

matplotlib is used through `Figure` + the Agg canvas only, never pyplot, so rendering a report
does not touch the caller's backend. Here: the style, palette, downsampling and PNG encoding
every figure shares, the sample grids and the overview figures; a run's own plots are drawn
on one reusable, text-free figure (reports.canvas).
"""
from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageChops

from probes.text import slug

MAX_POINTS = 400   # points per plotted series after downsampling (plots are 360 px wide)
PANEL_DPI = 100
PNG_LEVEL = 3      # zlib level: 2.5× faster than the default 6, files ~15% larger
AGGREGATE_SIZE = (4.0, 2.6)
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


# --------------------------------------------------------------------------- sample grids

def save_figures(figures: list[dict], folder: Path, prefix: str) -> list[str]:
    """Write each of `aggregate_figures`' figures as folder/<prefix>-<title>.png; returns the
    markdown that shows them, relative to folder's parent."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for figure in figures:
        name = f"{prefix}-{slug(figure['title'])}.png"
        (folder / name).write_bytes(base64.b64decode(figure["uri"].split(",", 1)[1]))
        images.append(f"![{figure['title']}]({folder.name}/{name})")
    return images


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
    values]}). A figure that compares nothing is left out: each needs two runs (the grid two
    of its cells), since one run's figure only repeats its row (a one-cell grid, a bar of one
    colour)."""
    figures = []
    judged = [r for r in rows if r.get("verdict")]  # runs without a config are left out here
    gridded = [r for r in judged
               if type(r.get("inv_layers")) is int and isinstance(r.get("norm"), str)]
    named = [r for r in judged if isinstance(r.get("arch"), str)]
    features = sorted({f for _, _, curves in fid_curves for f in curves})
    shared = [f for f in features if sum(f in curves for _, _, curves in fid_curves) >= 2]
    with matplotlib.rc_context({**STYLE, "axes.grid": False}):
        if len({(r["inv_layers"], r["norm"]) for r in gridded}) >= 2:
            figures.append(_rate_grid(gridded))
        if len(named) >= 2:
            figures.append(_by_arch(named))
        for feature in shared[:2]:
            figures.append(_fid_overlay(fid_curves, feature))
        onsets = [r for r in judged if r.get("onset_step") is not None]
        if onsets and len(judged) >= 2:
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
