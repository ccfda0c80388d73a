"""`write_report(runs_dir)`: one self-contained HTML file over every run below a folder.

Per run: refresh diagnosis.json when it is missing or older than metrics.jsonl, then render its
panels and sample grids, or take them from the cache when none of the run's files changed
(key: mtime and size of config/metrics/summary/diagnosis/error.log and of every sample grid).
The page embeds everything as data URIs: no file beside it, no URL, readable without JavaScript.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
from pathlib import Path

from probes import readings, text
from probes.collapse import VERDICTS, state as collapse_state
from probes.rundir import reader
from probes.text import number
from reports import canvas, figures, runs as runlib

CACHE_VERSION = 1          # with a hash of this package's rendering code: the cache key's version
CACHE_FILE = ".stabgan-report.json"  # in each run directory: its cached rendering
PROGRESS_MIN_RUNS = 10     # show a progress bar from this many runs to render
PARALLEL_MIN_RUNS = 8      # default workers: 1 below this many uncached runs, else up to...
MAX_WORKERS = 4
FID_CURVE_POINTS = 200     # points per run in the overview's FID overlay


def _json_safe(value):
    """Payloads hold NaN/Inf only as None: the cache is strict JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def render_run(run_dir: Path) -> dict:
    """Everything the page shows about one run that depends only on its files (cacheable)."""
    run = runlib.load_run(run_dir)
    onset = run.onset_step
    last = run.metrics.last_step
    samples = _pick_samples(run.samples, onset)
    shown = []
    for label, step, path in samples:
        uri = figures.sample_uri(path)
        if uri is None:
            run.warnings.append(f"sample grid {path.name} could not be read")
        else:
            shown.append({"label": label, "step": step, "uri": uri})
    fid = {}
    for tag, (steps, values) in run.metrics.series.items():
        if tag.startswith("fid/"):
            s, v = figures.downsample(steps, values, FID_CURVE_POINTS)
            fid[tag[4:]] = [s.tolist(), v.tolist()]
    config_items = [(k, runlib.format_value(v)) for k, v in run.config.items()]
    versions = run.config_file.get("versions")
    command = run.config_file.get("command")
    status = run.summary.get("status")
    return _json_safe({
        "row": runlib.run_row(run),
        "summary_status": status if isinstance(status, str) else None,
        "config": config_items,
        "versions": [(str(k), runlib.format_value(v)) for k, v in versions.items()]
        if isinstance(versions, dict) else [],
        "command": " ".join(map(str, command)) if isinstance(command, list) else None,
        "events": runlib.run_events(run),
        "timeline": runlib.run_timeline(run),
        "records": run.metrics.records, "last_step": last,
        "sections": canvas.run_figures(run.metrics.series, run.panels, onset, last),
        "samples": shown,
        "fid": fid,
        "traceback": run.traceback,
        "warnings": run.warnings,
    })


def _render_safely(run_dir: Path) -> dict:
    """render_run, or a bare entry with the error as a warning: one odd run must not cost the
    whole report. Such an entry is not cached, so the next report tries again."""
    try:
        return render_run(run_dir)
    except Exception as error:
        bare = runlib.RunData(Path(run_dir))
        return {"row": runlib.run_row(bare), "summary_status": None, "config": [],
                "versions": [], "command": None, "events": [], "timeline": None, "records": 0,
                "last_step": None, "sections": [], "samples": [], "fid": {}, "traceback": None,
                "failed": True,
                "warnings": [f"could not be rendered: {type(error).__name__}: {error}"]}


def _pick_samples(samples, onset):
    """(label, step, path) by step: the first grid after step 0, the last one, the one between
    them nearest the middle of the run, and the last one before the onset. Step 0's grid (the
    untrained generator: flat grey) is shown only when it is the only one, labelled as such."""
    trained = [s for s in samples if s[0] > 0]
    if not trained:
        return [("untrained", *s) for s in samples[:1]]
    inner = trained[1:-1]
    middle = min(inner, key=lambda s: abs(s[0] - trained[-1][0] / 2)) if inner else None
    before = [s for s in trained if onset is not None and s[0] < onset]
    picked = {}  # step -> (label, step, path); a later label wins a shared grid
    for label, sample in (("first", trained[0]), ("middle", middle), ("end", trained[-1]),
                          ("before onset", before[-1] if before else None)):
        if sample is not None:
            picked[sample[0]] = (label, *sample)
    return [picked[step] for step in sorted(picked)]


class _Cache:
    """A run's rendering in RUN_DIR/CACHE_FILE, so reports over any folder above the run share it
    (a sweep's own report warms the cache for a later `stabgan report runs/`). Off when disabled,
    and silently off for a run directory that cannot be written."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def get(self, run_dir: Path, key: dict) -> dict | None:
        if not self.enabled:
            return None
        try:
            cached = json.loads((run_dir / CACHE_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cached.get("payload") if cached.get("key") == key else None

    def put(self, run_dir: Path, key: dict, payload: dict) -> None:
        if not self.enabled:
            return
        path = run_dir / CACHE_FILE
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps({"key": key, "payload": payload}))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _code_files() -> list[Path]:
    """The code that reads and renders a run: this package's modules, the run-directory
    reader, the panel declarations a run without its own panels file is drawn with, and the
    text the payload holds (first signs: probes.collapse.state, numbers: probes.text)."""
    return [*sorted(Path(__file__).parent.glob("*.py")),
            *(Path(m.__file__) for m in (readings, reader, collapse_state, text))]


def _code_version() -> str:
    """CACHE_VERSION plus a hash of `_code_files`: an upgrade re-renders."""
    digest = hashlib.sha1(str(CACHE_VERSION).encode())
    for path in _code_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _prepare(run_dir: Path, version: str) -> tuple[dict, str | None]:
    """Refresh the diagnosis if stale, then the run's cache key (taken after the refresh)."""
    warning = runlib.refresh_diagnosis(run_dir)
    return {"version": version, **runlib.run_stamp(run_dir)}, warning


def _render_job(run_dir: str) -> dict:
    return _render_safely(Path(run_dir))


def _keep(cache: _Cache, path: Path, key: dict, payload: dict, bar) -> None:
    if not payload.get("failed"):
        cache.put(path, key, payload)
    bar.update(1)


def collect(runs_dir: Path, cache: bool = True, progress: bool | None = None,
            workers: int | None = None) -> dict:
    """Every run below runs_dir as the template's data (see write_report)."""
    runs_dir = Path(runs_dir)
    found, skipped = runlib.discover(runs_dir)
    cache = _Cache(cache)
    version = _code_version()
    prepared = [(path, *_prepare(path, version)) for path in found]
    payloads: dict[Path, dict] = {}
    todo = []
    for path, key, _ in prepared:
        payload = cache.get(path, key)
        if payload is None:
            todo.append((path, key))
        else:
            payloads[path] = payload
    show = progress if progress is not None else len(todo) >= PROGRESS_MIN_RUNS
    from tqdm import tqdm
    bar = tqdm(total=len(todo), desc="report", unit="run", disable=not show, file=sys.stderr)
    if workers is None:
        workers = min(os.cpu_count() or 1, MAX_WORKERS) if len(todo) >= PARALLEL_MIN_RUNS else 1
    if workers > 1 and len(todo) > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(min(workers, len(todo))) as pool:
            rendered = pool.map(_render_job, [str(p) for p, _ in todo])
            for (path, key), payload in zip(todo, rendered):
                payloads[path] = payload
                _keep(cache, path, key, payload, bar)
    else:
        for path, key in todo:
            payloads[path] = _render_safely(path)
            _keep(cache, path, key, payloads[path], bar)
    bar.close()

    runs = []
    for index, (path, key, refresh_warning) in enumerate(prepared):
        payload = payloads[path]
        name = path.relative_to(runs_dir).as_posix() if path != runs_dir else path.name
        status, status_warning = runlib.live_status(key, payload["summary_status"])
        warnings = [w for w in (refresh_warning, status_warning) if w] + payload["warnings"]
        row = {**payload["row"], "status": status}
        runs.append({**payload, "name": name or ".", "anchor": f"run-{index + 1}", "row": row,
                     "warnings": warnings, "path": str(path)})
    return {"runs": runs,
            "skipped": [{"name": p.relative_to(runs_dir).as_posix() if p != runs_dir else ".",
                         "reason": reason} for p, reason in skipped]}


def overview_figures(runs: list[dict], label=None, hidden: tuple[str, ...] = ()) -> list[dict]:
    """The overview figures (verdicts and collapse rates by setting, FID curves, onsets) over
    `collect`'s runs. label(row) names a run in the legends (default: its folder); hidden: row
    fields the figures must not group by."""
    rows = [{**{k: v for k, v in r["row"].items() if k not in hidden},
             "name": label(r["row"]) if label else r["name"]} for r in runs]
    fid_curves = [(row["name"], row["verdict"], r["fid"]) for row, r in zip(rows, runs) if r["fid"]]
    return figures.aggregate_figures(rows, fid_curves)


def write_report(runs_dir: Path | str, out: Path | str | None = None, *, cache: bool = True,
                 progress: bool | None = None, workers: int | None = None) -> Path:
    """Write one self-contained HTML report over every run directory below runs_dir.

    out defaults to runs_dir/report.html. With cache, each run's rendering is kept in its own
    directory (CACHE_FILE), keyed by its files' stamps and the rendering code; a read-only run
    is rendered every time. progress: a tqdm bar (default: when 10 or more runs need
    rendering). workers: processes rendering uncached runs (default: 1, or one per core up to
    4 when 8 or more runs need rendering). Returns the path written.
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"no such folder: {runs_dir}")
    out = Path(out) if out is not None else runs_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)  # before rendering: a bad path fails at once
    data = collect(runs_dir, cache, progress, workers)
    runs = data["runs"]
    counts = {v: sum(r["row"]["verdict"] == v for r in runs) for v in VERDICTS}
    counts["none"] = sum(r["row"]["verdict"] is None for r in runs)
    html = _environment().get_template("report.html").render(
        title=str(runs_dir), runs=runs, skipped=data["skipped"], counts=counts,
        aggregates=overview_figures(runs),
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), version=_version(),
        verdict_colors=figures.VERDICT_COLORS, error_log=runlib.ERROR_LOG)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _version() -> str:
    """The installed stabgan's version, read from its package metadata: a report never imports
    the trainer. "unknown" when stabgan is not installed (its packages on sys.path only)."""
    from importlib import metadata

    try:
        return metadata.version("stabgan")
    except metadata.PackageNotFoundError:
        return "unknown"


def _environment():
    import jinja2
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = lambda value: number(value, digits=4)
    env.filters["count"] = number
    return env
