"""How a number reads in messages, report tables and docs: one rule for all of them; and how a
title becomes a file name (`slug`).

Tick labels (reports.figures.compact_number: 1.2M, 350k) and the study's fixed-decimal table
columns are formatted for their layout and stay where they are drawn.
"""
from __future__ import annotations

import math
import re


def number(value, digits: int = 3) -> str:
    """`1,234` for integers and magnitudes ≥ 1,000, else `digits` significant digits; `—` for
    None; `nan`, `inf`; anything that is not a number as str()."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def slug(text: str) -> str:
    """A file-name stem from a title: lower case, runs of other characters as one "-"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
