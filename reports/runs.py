"""Finding run directories below a folder and reading each one into plain data.

Everything here reads files only (through `probes.rundir.reader.RunDir`, the one reader of a run); a
run that is still being written, truncated, half-missing or garbled comes back with warnings,
never an error.
"""
from __future__ import annotations

import math
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from probes.collapse import VERDICTS, diagnose_run, recovery_text, sign_text
from probes.objectives import DEFAULT_PANELS
from probes.readings import Panel, panels_from_json
from probes.rundir.files import (CHECKPOINTS, CONFIG, DIAGNOSIS, ERROR_LOG, METRICS, PANELS,
                                 SAMPLES, SUMMARY, to_float)
from probes.rundir.reader import Metrics, RunDir, best_fid

RUNNING_WINDOW_S = 600  # metrics.jsonl written this recently and no summary.json: still running
MAX_EVENTS = 50         # events listed per run; a pathological run can log thousands
MAX_TRACEBACK_CHARS = 20_000  # of a failed run's error.log shown (its end: the error itself)
_SAMPLE_NAME = re.compile(r"step_(\d+)\.png$")


# --------------------------------------------------------------------------- discovery

def discover(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(run directories at or below root, [(folder, reason)] for leaf folders that are not runs).

    A run directory holds a config.json or a metrics.jsonl (rundir.files.is_run_dir). Hidden folders
    (the report's cache) and a run's own samples/ and checkpoints/ are not walked.
    """
    root = Path(root)
    runs: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def unreadable(error: OSError) -> None:
        skipped.append((Path(error.filename or root), f"unreadable folder: {error.strerror}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        here = Path(dirpath)
        dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
        inside_run = any(parent in runs for parent in here.parents)
        if CONFIG in filenames or METRICS in filenames:
            runs.append(here)
            dirnames[:] = [n for n in dirnames if n not in (SAMPLES, CHECKPOINTS)]
        elif not dirnames and not inside_run:
            visible = [n for n in filenames if not n.startswith(".")]
            skipped.append((here, "empty folder" if not visible else
                            f"not a run: no {CONFIG} or {METRICS}"))
    return sorted(runs), skipped


# --------------------------------------------------------------------------- file state

def file_stamp(path: Path) -> list[int] | None:
    """[mtime_ns, size] of a file, or None when it is missing; the cache key is made of these."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size]


def sample_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every samples/step_NNNNNN.png, by step."""
    try:
        entries = list(os.scandir(run_dir / SAMPLES))
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _SAMPLE_NAME.match(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), Path(entry.path)))
    return sorted(found)


def run_stamp(run_dir: Path) -> dict:
    """Everything a run's rendering depends on, as file stamps (cache key)."""
    return {"files": {name: file_stamp(run_dir / name)
                      for name in (CONFIG, METRICS, SUMMARY, DIAGNOSIS, ERROR_LOG, PANELS)},
            "samples": [[p.name, *(file_stamp(p) or [])] for _, p in sample_files(run_dir)]}


def refresh_diagnosis(run_dir: Path) -> str | None:
    """Recompute diagnosis.json (probes.collapse.diagnose_run) when it is missing, or older than
    metrics.jsonl and made before its last step; returns a warning when that was needed but
    could not be done."""
    metrics, diagnosis = file_stamp(run_dir / METRICS), file_stamp(run_dir / DIAGNOSIS)
    if metrics is None or metrics[1] == 0:
        return None
    if diagnosis is not None and diagnosis[0] >= metrics[0]:
        return None
    # a copy or a checkout stamps a run's files in any order: a diagnosis made at the metrics'
    # last step is current, and rewriting it would change a stored run's record
    run = RunDir(run_dir)
    if diagnosis is not None and run.diagnosis.get("last_step") == run.metrics([]).last_step:
        return None
    try:
        diagnose_run(run_dir)
    except Exception as error:  # a detector bug or a read-only folder must not stop the report
        return f"diagnosis could not be recomputed: {type(error).__name__}: {error}"
    return None


# --------------------------------------------------------------------------- one run

def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    return to_float(value) if not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def format_value(value: Any) -> str:
    """A short human form of a config/evidence value (the template escapes it)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if value == 0:
            return "0"
        if abs(value) >= 1e5 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(format_value(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 300 else text[:300] + "…"


@dataclass
class RunData:
    """One run directory read into plain data (no rendering yet)."""
    path: Path
    config: dict = field(default_factory=dict)       # RunConfig fields
    config_file: dict = field(default_factory=dict)  # the whole config.json
    summary: dict = field(default_factory=dict)
    diagnosis: dict | None = None
    metrics: Metrics = field(default_factory=lambda: Metrics({}))
    samples: list[tuple[int, Path]] = field(default_factory=list)
    traceback: str | None = None  # a failed run's error.log, when summary.json names it
    panels: tuple[Panel, ...] = DEFAULT_PANELS  # panels.json's, or stabgan's own without one
    warnings: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str | None:
        verdict = _dict(self.diagnosis).get("verdict")
        return verdict if verdict in VERDICTS else None

    @property
    def onset_step(self) -> int | None:
        return _int(_dict(self.diagnosis).get("onset_step"))

    @property
    def recovery(self) -> str | None:
        """How the run recovered from its collapse, in words (None: it did not, or
        diagnosis.json does not say)."""
        recovery = _dict(self.diagnosis).get("recovery")
        if not isinstance(recovery, dict):
            return None
        readings, kinds = recovery.get("readings"), recovery.get("kinds", [])
        steps_ok = all(_int(recovery.get(k)) is not None for k in ("collapsed_at", "step"))
        readings_ok = isinstance(readings, dict) and all(type(v) in (int, float)
                                                          for v in readings.values())
        kinds_ok = isinstance(kinds, list) and all(isinstance(k, str) for k in kinds)
        return recovery_text(recovery) if steps_ok and readings_ok and kinds_ok else None

    @property
    def events(self) -> list[dict]:
        events = _dict(self.diagnosis).get("events")
        return [e for e in events if isinstance(e, dict)] if isinstance(events, list) else []


def _read_json_file(source: RunDir, name: str, warnings: list[str], required: bool) -> dict:
    if not (source.path / name).is_file():
        if required:
            warnings.append(f"no {name}")
        return {}
    value = source.read(name)
    if value is None:
        warnings.append(f"{name} is unreadable (truncated or not a JSON object)")
        return {}
    return value


def load_run(run_dir: Path) -> RunData:
    """Read config, summary, diagnosis, metrics, panels and the sample list of one run directory."""
    source = RunDir(run_dir)
    run = RunData(source.path)
    warnings = run.warnings
    run.config_file = _read_json_file(source, CONFIG, warnings, required=True)
    run.config = _dict(run.config_file.get("config"))
    if run.config_file and not run.config:
        warnings.append(f"{CONFIG} has no \"config\" object")
    run.summary = _read_json_file(source, SUMMARY, warnings, required=False)
    diagnosis = _read_json_file(source, DIAGNOSIS, warnings, required=False)
    run.diagnosis = diagnosis or None
    if diagnosis and diagnosis.get("verdict") not in VERDICTS:
        verdict = format_value(diagnosis.get("verdict"))
        warnings.append(f"{DIAGNOSIS} has an unknown verdict {verdict}")
    run.metrics = source.metrics()
    if not (run.path / METRICS).is_file():
        warnings.append(f"no {METRICS}")
    elif run.metrics.records == 0:
        warnings.append(f"{METRICS} has no readable records")
    if run.metrics.bad_lines:
        n = run.metrics.bad_lines
        warnings.append(f"{METRICS}: {n} unreadable line{'s' * (n != 1)} skipped (truncated?)")
    nonfinite = sorted(tag for tag, (_, v) in run.metrics.series.items()
                       if not np.isfinite(v).all())
    if nonfinite:
        shown = ", ".join(nonfinite[:4]) + (", …" if len(nonfinite) > 4 else "")
        warnings.append(f"non-finite values in {len(nonfinite)} tag"
                        f"{'s' * (len(nonfinite) != 1)}: {shown}")
    run.samples = sample_files(run.path)
    if (run.path / PANELS).is_file():
        try:
            run.panels = panels_from_json(source.read(PANELS))
        except ValueError as error:
            warnings.append(f"{PANELS} is unreadable ({error}); stabgan's own panels are shown")
    try:
        traceback = source.traceback()
    except OSError as error:
        warnings.append(f"{SUMMARY} names {ERROR_LOG}, which is unreadable: {error.strerror}")
    else:
        run.traceback = traceback[-MAX_TRACEBACK_CHARS:] if traceback is not None else None
    return run


# --------------------------------------------------------------------------- table row

def ms_per_step(run: RunData) -> float | None:
    value = _number(run.summary.get("step_s_median"))
    if value is None or not math.isfinite(value):
        steps = run.metrics.series.get("time/step_s")
        finite = steps[1][np.isfinite(steps[1])] if steps else []
        value = float(statistics.median(finite)) if len(finite) else None
    return None if value is None else value * 1000


def run_row(run: RunData) -> dict:
    """The overview table's values for one run (raw values; the template formats them)."""
    c, s = run.config, run.summary
    fid, fid_step, features = best_fid(run.metrics.series, run.summary) or (None, None, None)
    named = [e for e in run.events if isinstance(e.get("kind"), str)]
    kinds = list(dict.fromkeys(e["kind"] for e in named if e.get("severity") == "collapse"))
    warn_kinds = list(dict.fromkeys(e["kind"] for e in named if e["kind"] not in kinds))
    steps = _int(s.get("steps"))
    if steps is None:
        steps = run.metrics.last_step
    target = _int(s.get("target_steps"))
    if target is None:
        target = _int(c.get("steps"))
    return {
        "arch": c.get("arch"), "inv_layers": c.get("inv_layers"), "norm": c.get("norm"),
        "kernel_size": c.get("kernel_size"), "groups": c.get("groups"),
        "reduction": c.get("reduction"), "seed": c.get("seed"),
        "steps": steps, "target_steps": target,
        "status": s.get("status") if isinstance(s.get("status"), str) else None,
        "error": s.get("error") if isinstance(s.get("error"), str) else None,
        "verdict": run.verdict, "onset_step": run.onset_step, "recovery": run.recovery,
        "kinds": kinds, "warning_kinds": warn_kinds,
        "fid": fid, "fid_features": features, "fid_step": fid_step,
        "quality": final_quality(s.get("quality")),
        "ms_per_step": ms_per_step(run),
    }


def final_quality(quality) -> dict | None:
    """summary.json's quality of the final generator (its FID, the real data's own FID at that
    sample count, classes covered), when it holds the numbers a reader needs."""
    keys = ("fid", "reference_fid", "modes", "classes", "samples")
    if not isinstance(quality, dict) or not all(
            isinstance(quality.get(k), (int, float)) and not isinstance(quality.get(k), bool)
            for k in keys):
        return None
    return {k: quality[k] for k in keys}


def run_events(run: RunData) -> list[dict]:
    """diagnosis.json's events for display: evidence as (key, formatted value) pairs."""
    shown = []
    for event in run.events[:MAX_EVENTS]:
        evidence = event.get("evidence")
        pairs = ([(str(k), format_value(v)) for k, v in evidence.items()]
                 if isinstance(evidence, dict) else [])
        shown.append({"kind": format_value(event.get("kind")), "step": _int(event.get("step")),
                      "severity": "collapse" if event.get("severity") == "collapse" else "warning",
                      "message": format_value(event.get("message")) if event.get("message")
                      else "", "evidence": pairs})
    return shown


def _sign_label(sign: dict) -> str:
    try:
        return sign_text(sign)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):  # a hand-edited diagnosis
        return str(sign["tag"])


def run_timeline(run: RunData) -> dict | None:
    """The run's first signs and events in time order, placed on its step axis ("pos": % of
    the last step), for the report's timeline; None for a run without events. A sign listed
    by several events appears once, with its lead over the first of them."""
    items, seen = [], set()
    for event in run.events[:MAX_EVENTS]:
        step, kind = _int(event.get("step")), event.get("kind")
        if step is None or not isinstance(kind, str):
            continue
        severity = "collapse" if event.get("severity") == "collapse" else "warning"
        signs = event.get("first_signs")
        for sign in signs if isinstance(signs, list) else []:
            if not isinstance(sign, dict) or _int(sign.get("step")) is None \
                    or not isinstance(sign.get("tag"), str):
                continue
            if (sign["tag"], sign["step"]) in seen:
                continue
            seen.add((sign["tag"], sign["step"]))
            items.append({"step": sign["step"], "what": "sign", "label": _sign_label(sign),
                          "layer": sign.get("layer") if isinstance(sign.get("layer"), str) else None,
                          "note": f"{step - sign['step']:,} steps before the {kind} {severity}"
                          if sign["step"] < step else f"at the {kind} {severity} onset"})
        evidence = event.get("evidence") if isinstance(event.get("evidence"), dict) else {}
        detected = _int(evidence.get("detected_step"))
        layer = evidence.get("layer")
        items.append({"step": step, "what": severity, "label": f"{kind} {severity}",
                      "layer": layer if isinstance(layer, str) else None,
                      "note": f"onset; confirmed at step {detected:,}" if detected is not None
                      else "onset"})
    if not items:
        return None
    items.sort(key=lambda item: (item["step"], item["what"] != "sign"))
    last = max([run.metrics.last_step or 0] + [item["step"] for item in items]) or 1
    for item in items:
        item["pos"] = round(100 * min(max(item["step"], 0), last) / last, 2)
    return {"items": items, "last_step": last}


def live_status(stamp: dict, summary_status: str | None) -> tuple[str, str | None]:
    """(status shown, warning) from summary.json or, without it, from metrics.jsonl's age."""
    if summary_status:
        return summary_status, None
    metrics = stamp["files"].get(METRICS)
    if metrics and time.time() - metrics[0] / 1e9 < RUNNING_WINDOW_S:
        return "running", "no summary.json yet: the run is still being written"
    return "unfinished", "no summary.json: the run was killed or is still starting"
