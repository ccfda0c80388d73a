"""Synthetic run directories and the report's render-time benchmark.

`make_synthetic_runs` writes run directories with the same files and tag names the trainer and
probes write (config, metrics.jsonl, summary, sample grids; diagnosis via the real detector),
with made-up but plausible series: about a third of the runs diverge at a random step, a few end
in NaN. `bench_report` times `write_report` over them, cold (no cache) and warm (cache filled).
"""
from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from probes.rundir.files import (CONFIG, METRICS, SAMPLES, SUMMARY, logged_value, metrics_line,
                                 write_json)

ARCH_GRID = [("dcgan", 0, "none"), ("sagan", 0, "none")] + [
    ("igan", layers, norm)
    for layers in (1, 2) for norm in ("none", "batch", "spectral", "softmax")]
SAMPLE_STEPS = 5   # sample grids per run (the report embeds up to three)


def _series(rng: np.random.Generator, steps: np.ndarray, onset: int | None, nan_at: int | None,
            n_layers: int) -> dict[str, np.ndarray]:
    """tag -> values over steps; after onset, a divergence grows distance, losses, GP norms."""
    n = len(steps)
    t = steps / steps[-1]
    blow = np.ones(n)
    if onset is not None:
        growth = np.exp(np.minimum((steps - onset) / (0.05 * steps[-1]), 14.0))  # ≤ ~1e6
        blow = np.where(steps >= onset, growth, 1.0)
    noise = lambda scale=1.0: rng.normal(0, scale, n)  # noqa: E731
    distance = (2 + 3 * np.exp(-5 * t) + 0.2 * noise()) * blow
    tags = {
        "loss/critic": -distance + 0.4 + 0.1 * noise(),
        "loss/generator": 1.5 * np.sin(6 * t) + 0.3 * noise() - 0.5 * (blow - 1),
        "wgan/distance": distance,
        "gp/penalty": np.abs(0.05 + 0.02 * noise()) * blow,
        "gp/norm_mean": (1 + 0.05 * noise()) * np.sqrt(blow),
        "gp/norm_std": np.abs(0.1 + 0.02 * noise()),
        "gp/norm_p05": (0.85 + 0.04 * noise()) * np.sqrt(blow),
        "gp/norm_p50": (1.0 + 0.04 * noise()) * np.sqrt(blow),
        "gp/norm_p95": (1.15 + 0.04 * noise()) * np.sqrt(blow),
        "critic/d_real_mean": distance / 2 + 0.1 * noise(),
        "critic/d_fake_mean": -distance / 2 + 0.1 * noise(),
        "critic/d_real_std": np.abs(0.5 + 0.05 * noise()),
        "critic/d_fake_std": np.abs(0.5 + 0.05 * noise()),
        "diversity/pairwise": np.clip(0.3 + 0.02 * noise() - 0.2 * (blow > 10), 0, None),
        "coverage/modes": np.clip(np.round(10 - 2 * np.exp(-4 * t) - 5 * (blow > 10)), 0, 10),
        "coverage/kl": np.abs(0.2 * np.exp(-3 * t) + 0.02 * noise()) + 0.5 * (blow > 10),
        "time/step_s": np.abs(0.09 + 0.005 * noise()),
    }
    for layer in ("d.from_image.0", "d.body.0.0", "d.score.1", "g.project.0", "g.to_image.0"):
        sigma0 = (1 + t + 0.05 * noise()) * (blow ** 0.3)
        tags[f"spectra/{layer}/sigma0"] = sigma0
        tags[f"spectra/{layer}/sigma1"] = sigma0 / (1.5 + 0.05 * noise())
        tags[f"spectra/{layer}/ratio"] = 1.5 + 0.05 * noise()
        tags[f"grad/{layer}"] = np.abs(0.1 * np.exp(-t) + 0.01 * noise()) * blow
    for i in range(n_layers):
        entropy = np.log(9) * (1 - 0.2 * t) - (0.0 if onset is None else 1.5 * (steps >= onset))
        tags[f"kernel/g.inv{i}/entropy"] = np.clip(entropy + 0.02 * noise(), 0, None)
        tags[f"kernel/g.inv{i}/spatial_var"] = np.abs(0.01 + 0.001 * noise())
        tags[f"kernel/g.inv{i}/max_abs"] = np.abs(1 + 0.1 * noise())
        tags[f"kernel/g.inv{i}/near_zero"] = np.clip(0.1 + 0.01 * noise(), 0, 1)
    if nan_at is not None:
        for tag in ("loss/critic", "loss/generator", "wgan/distance", "gp/norm_mean"):
            tags[tag] = np.where(steps >= nan_at, np.nan, tags[tag])
    return tags


def _sample_grid(rng: np.random.Generator, path: Path, collapsed: bool) -> None:
    from PIL import Image
    cells = rng.random((8, 8, 32, 32)) ** (4 if collapsed else 1.5)
    grid = np.zeros((8 * 34 + 2, 8 * 34 + 2))
    for i in range(8):
        for j in range(8):
            grid[2 + 34 * i: 34 * (i + 1), 2 + 34 * j: 34 * (j + 1)] = cells[i, j]
    Image.fromarray((grid * 255).astype(np.uint8)).convert("RGB").save(path)


def make_synthetic_runs(root: Path | str, n_runs: int = 100, steps: int = 5000,
                        log_every: int = 1, seed: int = 0, diagnose: bool = True) -> list[Path]:
    """Write n_runs run directories with steps / log_every logged steps each under root.
    diagnose: write diagnosis.json with the real detector (else the report will)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    logged = np.arange(log_every, steps + 1, log_every)
    made = []
    for index in range(n_runs):
        arch, layers, norm = ARCH_GRID[index % len(ARCH_GRID)]
        run_seed = index // len(ARCH_GRID)
        run_dir = root / f"{arch}-inv{layers}-{norm}-s{run_seed}"
        (run_dir / SAMPLES).mkdir(parents=True, exist_ok=True)
        onset = int(rng.integers(steps // 5, steps * 4 // 5)) if rng.random() < 0.35 else None
        nan_at = None if onset is None or rng.random() < 0.7 else min(steps, onset + steps // 10)
        config = {"arch": arch, "inv_layers": layers, "norm": norm, "kernel_size": 3,
                  "groups": 4, "reduction": 2, "width": 32, "dataset": "mnist5k",
                  "steps": steps, "seed": run_seed, "log_every": log_every}
        write_json(run_dir / CONFIG, {"config": config, "versions": {"synthetic": "1"},
                                      "command": ["reports.bench.make_synthetic_runs"]})
        series = _series(rng, logged, onset, nan_at, layers)
        if index % 4 == 0:  # FID every 250 steps on a quarter of the runs
            fid_steps = logged[logged % 250 == 0]
            fid = 150 * np.exp(-3 * fid_steps / steps) + 20 + rng.normal(0, 2, len(fid_steps))
            if onset is not None:
                fid = fid + np.where(fid_steps >= onset, 80.0, 0.0)
            fid_at = dict(zip(fid_steps.tolist(), fid.tolist()))
        else:
            fid_at = {}
        names = list(series)
        columns = np.column_stack([series[t] for t in names])
        with open(run_dir / METRICS, "w", encoding="utf-8") as f:  # as RunWriter writes it
            for row, step in enumerate(logged.tolist()):
                values = dict(zip(names, columns[row].tolist()))
                if step in fid_at:
                    values["fid/domain"] = fid_at[step]
                f.write(metrics_line(step, step * 0.09,
                                     {t: logged_value(v) for t, v in values.items()}))
        for k in range(1, SAMPLE_STEPS + 1):
            step = steps * k // SAMPLE_STEPS
            _sample_grid(rng, run_dir / SAMPLES / f"step_{step:06d}.png",
                         onset is not None and step >= onset)
        stopped = nan_at is not None
        write_json(run_dir / SUMMARY, {
            "status": "stopped_on_collapse" if stopped else "completed",
            "steps": nan_at if stopped else steps, "target_steps": steps,
            "wall_s": steps * 0.09, "step_s_median": 0.09})
        if diagnose:
            from probes.collapse import diagnose_run
            diagnose_run(run_dir)
        made.append(run_dir)
    return made


def bench_report(root: Path | str, n_runs: int = 100, steps: int = 5000,
                 workers: int | None = None, repeats: int = 3, echo=print) -> dict:
    """Time write_report over n_runs synthetic runs of `steps` logged steps in root (made if
    root holds no run yet): cold (cache emptied) and warm (cache reused), each `repeats` times
    alternately; medians in seconds, wall and CPU."""
    from reports.html import CACHE_FILE, write_report
    from reports.runs import discover

    root = Path(root)
    found = discover(root)[0] if root.is_dir() else []
    if not found:
        started = time.perf_counter()
        make_synthetic_runs(root, n_runs, steps)
        echo(f"made {n_runs} synthetic runs × {steps} logged steps in "
             f"{time.perf_counter() - started:.1f} s ({root})")
        found = discover(root)[0]
    render = lambda: write_report(root, workers=workers, progress=False)  # noqa: E731
    cold, warm = [], []
    for _ in range(repeats):
        for run_dir in found:
            (run_dir / CACHE_FILE).unlink(missing_ok=True)
        cold.append(_timed(render))
        warm.append(_timed(render))
    (cold_s, cold_cpu), (warm_s, warm_cpu) = (
        [statistics.median(column) for column in zip(*times)] for times in (cold, warm))
    out = root / "report.html"
    size = os.path.getsize(out)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    result = {"runs": len(found), "repeats": repeats, "cold_s": round(cold_s, 2),
              "cold_cpu_s": round(cold_cpu, 2), "cold_all_s": [round(w, 2) for w, _ in cold],
              "warm_s": round(warm_s, 2), "warm_cpu_s": round(warm_cpu, 2),
              "html_mb": round(size / 1e6, 1), "workers": workers, "load_avg": round(load, 1),
              "report": str(out)}
    how = "default workers" if workers is None else f"{workers} worker{'s' * (workers != 1)}"
    each = ", ".join(f"{w:.1f}" for w, _ in cold)
    echo(f"report over {len(found)} runs, median of {repeats}: cold {cold_s:.1f} s wall / "
         f"{cold_cpu:.1f} s CPU (no cache, {how}; each: {each} s); warm {warm_s:.1f} s wall / "
         f"{warm_cpu:.1f} s CPU (cache); {size / 1e6:.1f} MB; load average {load:.1f} -> {out}")
    return result


def _timed(fn) -> tuple[float, float]:
    """(wall s, CPU s of this process and its finished children) of fn()."""
    before, started = os.times(), time.perf_counter()
    fn()
    wall, after = time.perf_counter() - started, os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user, system, children's user, system
    return wall, cpu
