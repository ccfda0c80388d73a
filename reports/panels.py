"""Which plots a run gets: its declared panels (probes.readings.Panel) matched against the tags
it logged, then "Other readings" for every logged tag no panel claimed.

A panel is drawn when one of its lines was logged; a tag never logged gives no line, and a
section with no plot is left out. A section named for several tag groups ("Spectra and
gradients") is headed by the ones it draws ("Spectra" under the default probes, which log no
gradients). Sections come in probes.readings.SECTIONS order, then any other (a probe of your
own), then "Other readings"; panels in declaration order within each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from probes.readings import SECTIONS, UNPLOTTED, Panel, matched_part

OTHER = "Other readings"


@dataclass
class Line:
    label: str
    steps: np.ndarray
    values: np.ndarray
    dashed: bool = False


@dataclass
class Band:
    """A shaded band between lo and hi over steps, in the colour of the plot's line `line`."""
    steps: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    label: str
    line: int = 0


@dataclass
class Plot:
    """One small plot with its data: lines over steps, bands, an optional horizontal target."""
    title: str
    lines: list[Line]
    bands: list[Band] = field(default_factory=list)
    target: tuple[float, str] | None = None
    logy: bool = False
    tags: list[str] = field(default_factory=list)


def plot_sections(series: dict[str, tuple[np.ndarray, np.ndarray]],
                  panels: tuple[Panel, ...]) -> list[tuple[str, list[Plot]]]:
    """[(section title, plots)] of a run: see the module docstring."""
    exact = {tag for panel in panels for tag in panel.named_tags() if "*" not in tag}
    claimed: set[str] = set()
    sections: dict[str, list[Plot]] = {}
    for panel in panels:
        plot = _plot(panel, series, exact, claimed)
        if plot is not None:
            sections.setdefault(panel.section, []).append(plot)
    order = sorted(sections, key=lambda s: SECTIONS.index(s) if s in SECTIONS else len(SECTIONS))
    found = [(_heading(title, sections[title]), sections[title]) for title in order]
    groups: dict[str, list[str]] = {}
    for tag in sorted(series):
        if tag not in claimed and not any(fnmatchcase(tag, p) for p in UNPLOTTED):
            groups.setdefault(tag.split("/")[0], []).append(tag)
    if groups:
        found.append((OTHER, [Plot(group, [Line(t, *series[t]) for t in tags], tags=tags)
                              for group, tags in groups.items()]))
    return found


def _heading(section: str, plots: list[Plot]) -> str:
    """The section's title, or its "X and Y" parts that name a drawn tag group (a part naming
    the group or a word it starts: "gradients" names grad/...); the title when none does."""
    parts = section.split(" and ")
    groups = {tag.split("/")[0] for plot in plots for tag in plot.tags}
    shown = [part for part in parts if any(part.lower().startswith(g) for g in groups)]
    if len(parts) < 2 or not shown:
        return section
    heading = " and ".join(shown)
    return heading[0].upper() + heading[1:]


def _plot(panel: Panel, series, exact: set[str], claimed: set[str]) -> Plot | None:
    """The panel's plot over the logged tags, claiming them; None when no line was logged."""
    def logged(entry: str) -> list[str]:
        if "*" not in entry:
            return [entry] if entry in series else []
        return sorted(t for t in series
                      if fnmatchcase(t, entry) and t not in exact and t not in claimed)

    lines, spreads, tags = [], [], []
    for i, entry in enumerate(panel.tags):
        label = panel.labels[i] if i < len(panel.labels) else ""
        for tag in logged(entry):
            claimed.add(tag)
            tags.append(tag)
            lines.append(Line(label or matched_part(entry, tag), *series[tag],
                              dashed=tag in panel.dashed))
            spreads.append(panel.std[i] if i < len(panel.std) else "")
    if not lines:
        return None
    bands = []
    if panel.band and all(t in series for t in panel.band):
        lo, hi = panel.band
        bands.append(_band(series[lo], series[hi], panel.band_label or f"{lo}–{hi}"))
        tags += panel.band
    else:
        for i, (line, std) in enumerate(zip(lines, spreads)):
            if std in series and np.array_equal(series[std][0], line.steps):
                spread = series[std][1]
                bands.append(Band(line.steps, line.values - spread, line.values + spread,
                                  f"{line.label} ± std", i))
    tags += [t for t in panel.std if t in series and t not in tags]
    claimed.update(tags)
    target = None if panel.target is None else (panel.target, f"target {panel.target:g}")
    return Plot(panel.title, lines, bands, target, panel.log, tags)


def _band(lo_series, hi_series, label: str) -> Band:
    """A band between two series, on the steps both were logged at."""
    (s_lo, lo), (s_hi, hi) = lo_series, hi_series
    if not np.array_equal(s_lo, s_hi):
        s_lo, i_lo, i_hi = np.intersect1d(s_lo, s_hi, return_indices=True)
        lo, hi = lo[i_lo], hi[i_hi]
    return Band(s_lo, lo, hi, label)
