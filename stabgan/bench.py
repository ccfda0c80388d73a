"""Side-by-side benchmarks: ours vs a reference in one process, interleaved, medians of repeats."""
from __future__ import annotations

import statistics
import time
from typing import Callable

from stabgan.device import resolve_device


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 5,
                        warmup: int = 1) -> dict[str, float]:
    """Median wall seconds of each callable, run round-robin so machine noise hits all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def bench_monitor(cycles: int = 3, width: int | None = None, batch_size: int | None = None,
                  threads: int | None = None, log_every: int | None = None,
                  selections: tuple[str, ...] = ("none", "default", "all"),
                  echo: Callable[[str], object] = print) -> dict[str, float]:
    """Training-step time of the quick config with each probe selection, side by side.

    One WGAN-GP loop per selection (the trainer's step, models, optimisers and data, and a
    Monitor with the collapse detector, as `stabgan run` has) in one process, advanced
    log_every steps at a time, round-robin (`interleaved_medians`), so load drifts on a shared
    machine hit all selections alike. A cycle is 10 × log_every steps, the longest default
    cadence, so every probe fires at its true rate; a selection's figure is the median over
    `cycles` cycles of its mean s/step. Returns {selection: s/step, "<selection>/none": ratio}.
    width, batch_size, threads, log_every: override the quick preset's (a smaller log_every
    shortens the cycle and makes every probe fire proportionally more often).
    """
    import tempfile
    from pathlib import Path

    import torch

    from stabgan.config import resolve_config

    sizes = {"width": width, "batch_size": batch_size, "threads": threads, "log_every": log_every}
    config = resolve_config("quick", **{k: v for k, v in sizes.items() if v is not None})
    if cycles < 1:
        raise ValueError(f"cycles={cycles!r} must be >= 1")
    block, cycle = config.log_every, 10 * config.log_every
    blocks: dict[str, list[float]] = {name: [] for name in selections}
    with tempfile.TemporaryDirectory() as tmp:
        loops = {name: _MonitoredLoop(config, name, Path(tmp) / name) for name in selections}

        def turn(name: str) -> None:
            start = time.perf_counter()
            loops[name].advance(block)
            blocks[name].append(time.perf_counter() - start)

        interleaved_medians({name: (lambda name=name: turn(name)) for name in selections},
                            repeats=cycles * cycle // block, warmup=1)
        for loop in loops.values():
            loop.monitor.close()
    per_cycle = cycle // block
    result = {}
    for name, times in blocks.items():
        times = times[1:]  # the warm-up turn
        result[name] = statistics.median(sum(times[i:i + per_cycle]) / cycle
                                         for i in range(0, len(times), per_cycle))
    base = result.get("none")
    echo(f"monitor overhead: quick config (width {config.width}, batch {config.batch_size}, "
         f"{torch.get_num_threads()} threads), "
         f"{cycles} cycles of {cycle} steps per selection, interleaved every {block} steps "
         f"(median over cycles of mean s/step)")
    for name in selections:
        ratio = f"{result[name] / base:6.3f}" if base else "     -"
        echo(f"  probes {name:<8} {1000 * result[name]:8.1f} ms/step   ratio vs none {ratio}")
    if base:
        result.update({f"{name}/none": result[name] / base
                       for name in selections if name != "none"})
    return result


class _MonitoredLoop:
    """The trainer's WganGp step plus a Monitor with the collapse detector, advanced a few steps
    at a time (bench only; the trainer's NaN checks, samples and checkpoints are not monitor
    cost and are left out)."""

    def __init__(self, config, selection: str, run_dir):
        import dataclasses

        import torch

        from probes import build_probes
        from probes.collapse import OnlineDetector
        from probes.monitor import Monitor
        from stabgan.config import dataset_info
        from stabgan.data import load_dataset
        from stabgan.train import WganGp

        if config.threads:
            torch.set_num_threads(config.threads)
        self.gan = WganGp(config, load_dataset(config.dataset, config.image_size),
                          dataset_info(config.dataset).channels)
        self.generator, self.critic, self.step = self.gan.generator, self.gan.critic, 0
        probes = build_probes(dataclasses.replace(config, probes=selection))
        self.monitor = Monitor(run_dir, self.generator, self.critic, probes,
                               log_every=config.log_every, detector=OnlineDetector(run_dir))

    def advance(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            self.monitor.step(self.step, **self.gan.step())


# --- involution operator ------------------------------------------------------------------

def _sync(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()


def machine_peaks(device: str | None = None, n: int = 1024, copy_mb: int = 64,
                  repeats: int = 5) -> dict[str, float]:
    """Measured fp32 matmul GFLOP/s (n x n) and tensor-copy GB/s (copy_mb MiB, past the last-level
    cache by default): the limits the involution bench is held to."""
    import torch
    device = str(resolve_device(device or "auto"))
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    src = torch.randn(copy_mb * 2**18, device=device)
    dst = torch.empty_like(src)

    def matmul():
        a @ b
        _sync(device)

    def copy():
        dst.copy_(src)
        _sync(device)

    t = interleaved_medians({"matmul": matmul, "copy": copy}, repeats=repeats, warmup=2)
    return {"matmul_gflops": 2 * n**3 / t["matmul"] / 1e9,
            "copy_gbps": 2 * src.numel() * src.element_size() / t["copy"] / 1e9}


class _QuietStderr:
    """Silence fd 2 (kineto prints start/stop lines there) for the length of a with-block."""

    def __enter__(self):
        import os
        import sys
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        import os
        os.dup2(self._saved, 2)
        os.close(self._saved)


def peak_allocated_bytes(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak bytes held by torch's allocator while fn runs, above what was held when it started.

    CUDA: max_memory_allocated. CPU has no allocator statistics, so this replays the
    profiler's allocation/free events in time order and takes the running maximum.
    """
    import torch
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile
    with _QuietStderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"
              and e.device_type() == torch.autograd.DeviceType.CPU]
    current = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def bench_involution(kernel_sizes: tuple[int, ...] = (1, 3, 5, 7), groups: tuple[int, ...] = (1, 4),
                     sizes: tuple[int, ...] = (16, 32), batch: int = 64, channels: int = 64,
                     repeats: int = 5, warmup: int = 1, device: str | None = None,
                     peaks: dict[str, float] | None = None, with_table2: bool = True,
                     echo: Callable[[str], object] = print) -> list[dict]:
    """Forward+backward of `involution` vs `involution_reference`, side by side; prints a table.

    Times are medians of `repeats` interleaved runs after `warmup`; memory is the allocator peak
    of one extra run of each. `bound ms` is the physical limit max(FLOPs / matmul rate,
    minimal bytes / copy rate) and `limit%` = bound / ours: how close ours is to this machine.
    `peaks` is `machine_peaks()` output, measured now when None.
    """
    import torch
    from stabgan.nn.involution import involution, involution_reference
    device = str(resolve_device(device or "auto"))
    peaks = peaks or machine_peaks(device, repeats=repeats)
    echo(f"involution forward+backward, B={batch} C={channels}, {device}, "
         f"{torch.get_num_threads()} threads; medians of {repeats} interleaved repeats")
    echo(f"machine: matmul {peaks['matmul_gflops']:.1f} GFLOP/s, copy "
         f"{peaks['copy_gbps']:.1f} GB/s (measured now)")
    header = (f"{'HxW':>5} {'K':>2} {'G':>2} | {'ref ms':>8} {'ours ms':>8} {'speedup':>7} | "
              f"{'ref MB':>7} {'ours MB':>7} {'mem':>5} | {'GFLOP/s':>7} {'/matmul':>7} "
              f"{'bound ms':>8} {'limit%':>6}")
    echo(header)
    echo("-" * len(header))
    rows = []
    for size in sizes:
        for k in kernel_sizes:
            for g in groups:
                torch.manual_seed(0)
                x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
                kern = torch.randn(batch, g, k, k, size, size, device=device, requires_grad=True)
                gy = torch.randn(batch, channels, size, size, device=device)

                def step(op):
                    def run():
                        op(x, kern).backward(gy)
                        _sync(device)
                        x.grad = kern.grad = None  # after the sync: a window starts holding nothing
                    return run

                fns = {"reference": step(involution_reference), "ours": step(involution)}
                t = interleaved_medians(fns, repeats=repeats, warmup=warmup)
                mem = {name: peak_allocated_bytes(fn, device) for name, fn in fns.items()}
                flops = 6 * batch * channels * k * k * size * size  # y, grad_x, grad_kernel
                # Minimal traffic: forward reads x, k, writes y; backward reads gy, x, k, writes gx, gk.
                bytes_min = x.element_size() * (4 * x.numel() + 3 * kern.numel() + gy.numel())
                bound = max(flops / (peaks["matmul_gflops"] * 1e9),
                            bytes_min / (peaks["copy_gbps"] * 1e9))
                row = {"size": size, "kernel_size": k, "groups": g,
                       "reference_ms": t["reference"] * 1e3, "ours_ms": t["ours"] * 1e3,
                       "speedup": t["reference"] / t["ours"],
                       "reference_peak_mb": mem["reference"] / 2**20,
                       "ours_peak_mb": mem["ours"] / 2**20,
                       "memory_ratio": mem["ours"] / max(mem["reference"], 1),
                       "ours_gflops": flops / t["ours"] / 1e9,
                       "matmul_gflops": peaks["matmul_gflops"], "bound_ms": bound * 1e3,
                       "limit_fraction": bound / t["ours"]}
                rows.append(row)
                echo(f"{size:>2}x{size:<2} {k:>2} {g:>2} | {row['reference_ms']:>8.1f} "
                     f"{row['ours_ms']:>8.1f} {row['speedup']:>6.1f}x | "
                     f"{row['reference_peak_mb']:>7.1f} {row['ours_peak_mb']:>7.1f} "
                     f"{row['memory_ratio']:>5.2f} | {row['ours_gflops']:>7.1f} "
                     f"{row['ours_gflops'] / peaks['matmul_gflops']:>7.2f} "
                     f"{row['bound_ms']:>8.2f} {100 * row['limit_fraction']:>5.0f}%")
    echo("mem = ours / reference peak (both include y, grad_x and grad_kernel themselves); "
         "bound = max(FLOPs / matmul rate, minimal bytes / copy rate); limit% = bound / ours")
    if with_table2:
        echo("")
        table2_costs(device=device, repeats=repeats, echo=echo)
    return rows


def table2_costs(channels: int = 64, batch: int = 64, size: int = 16, repeats: int = 5,
                 device: str | None = None, echo: Callable[[str], object] | None = print) -> list[dict]:
    """The seed's Table 2 cases: its eq. 5 estimate, its printed count, our exact count, our time.

    Time is forward+backward of one Involution2d(C, K, groups=G, reduction=R) at
    (batch, C, size, size), median of `repeats` after one warm-up.
    """
    import torch
    from stabgan.nn.involution import Involution2d, eq5_parameter_estimate
    from stabgan.study.sweeps import SEED_TABLE2
    device = str(resolve_device(device or "auto"))
    rows, fns = [], {}
    for case, k, g, r, _, printed, _ in SEED_TABLE2:
        torch.manual_seed(0)
        layer = Involution2d(channels, kernel_size=k, groups=g, reduction=r).to(device)
        x = torch.randn(batch, channels, size, size, device=device, requires_grad=True)

        def run(layer=layer, x=x):
            layer.zero_grad(set_to_none=True)
            layer(x).sum().backward()
            _sync(device)

        fns[case] = run
        rows.append({"case": case, "kernel_size": k, "groups": g, "reduction": r,
                     "seed_printed": printed,
                     "eq5": eq5_parameter_estimate(channels, k, g, r),
                     "exact": sum(p.numel() for p in layer.parameters())})
    times = interleaved_medians(fns, repeats=repeats, warmup=1)
    for row in rows:
        row["layer_ms"] = times[row["case"]] * 1e3
    if echo is not None:
        echo(f"seed Table 2 at C={channels}: eq. 5 (C/G + K*K) * C/(R*G) * G vs our exact "
             f"Involution2d parameter count; layer forward+backward at B={batch}, {size}x{size}")
        echo(f"{'case':>4} {'K':>2} {'G':>2} {'R':>2} | {'seed@64':>7} {'eq.5':>6} {'exact':>6} | "
             f"{'layer ms':>8}")
        for row in rows:
            note = ""
            if channels == 64 and row["seed_printed"] != row["eq5"]:
                note = f"  <- the seed prints {row['seed_printed']}; its eq. 5 gives {row['eq5']:g}"
            echo(f"{row['case']:>4} {row['kernel_size']:>2} {row['groups']:>2} "
                 f"{row['reduction']:>2} | {row['seed_printed']:>7} {row['eq5']:>6g} "
                 f"{row['exact']:>6} | {row['layer_ms']:>8.2f}{note}")
        echo("eq. 5 = C*C/(R*G) + K*K*C/R; exact = reduce C*C/R + C/R, span C/R*K*K*G + K*K*G: "
             "eq. 5 counts the reduce conv as if grouped G ways, the span as if it made K*K (not "
             "K*K*G) channels, and no biases")
    return rows


def bench_fid(n: int = 4096, dim: int = 2048, repeats: int = 5, seed: int = 0,
              echo: Callable[[str], object] = print) -> dict:
    """Our Fréchet distance vs pytorch-fid's on the same statistics of n random dim-d features.

    The two feature sets differ in mean and (well-conditioned) covariance. Prints both values,
    their relative difference and the speed ratio; returns them in a dict.
    """
    import warnings

    import numpy as np
    from pytorch_fid.fid_score import calculate_frechet_distance

    from stabgan.fid import frechet_distance, statistics

    rng = np.random.default_rng(seed)
    mixing = np.eye(dim) + 0.5 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    stats = (*statistics(rng.standard_normal((n, dim))),
             *statistics(rng.standard_normal((n, dim)) @ mixing + 0.1))
    values = {}

    def ours():
        values["ours"] = frechet_distance(*stats)

    def reference():
        with warnings.catch_warnings():  # scipy >= 1.16 deprecates the sqrtm(disp=) it passes
            warnings.simplefilter("ignore", DeprecationWarning)
            values["pytorch-fid"] = float(calculate_frechet_distance(*stats))

    seconds = interleaved_medians({"ours": ours, "pytorch-fid": reference}, repeats, warmup=0)
    rel = abs(values["ours"] - values["pytorch-fid"]) / abs(values["pytorch-fid"])
    speedup = seconds["pytorch-fid"] / seconds["ours"]
    echo(f"fid: {dim}-d statistics of {n} random features, median of {repeats} interleaved runs")
    for name in ("ours", "pytorch-fid"):
        echo(f"  {name:<12} {values[name]:.10f}  {seconds[name]:8.3f} s")
    echo(f"  relative difference {rel:.2e}; ours is {speedup:.1f}x faster")
    return {"n": n, "dim": dim, "ours": values["ours"], "pytorch_fid": values["pytorch-fid"],
            "rel_diff": rel, "ours_s": seconds["ours"], "pytorch_fid_s": seconds["pytorch-fid"],
            "speedup": speedup}


# --- the training step -------------------------------------------------------------------------

class MinimalWganGp:
    """An independent minimal WGAN-GP loop (split scoring), the reference `bench trainer`
    measures ours against: the same models and maths, nothing else (no data loader, no
    schedulers, no state for resume), written here without the trainer's helpers."""

    def __init__(self, config, images, image_channels: int):
        import torch
        from stabgan.models import Critic, Generator

        torch.manual_seed(config.seed)
        self.config, self.images = config, images
        self.g, self.d = Generator(config, image_channels), Critic(config, image_channels)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=config.lr_d, betas=betas)

    def step(self) -> None:
        import torch
        c, g, d = self.config, self.g, self.d
        d.requires_grad_(True)
        for _ in range(c.n_critic):
            real = self.images[torch.randint(len(self.images), (c.batch_size,))]
            with torch.no_grad():
                fake = g(torch.randn(c.batch_size, c.z_dim))
            scores = d(torch.cat([real, fake]))
            eps = torch.rand(c.batch_size, 1, 1, 1)
            x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(d(x_hat).sum(), x_hat, create_graph=True)
            penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            loss = scores[c.batch_size:].mean() - scores[:c.batch_size].mean() + c.gp_lambda * penalty
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        d.requires_grad_(False)
        loss_g = -d(g(torch.randn(c.batch_size, c.z_dim))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()


def bench_trainer(steps: int = 8, repeats: int = 5, overrides: dict | None = None,
                  archs: tuple[str, ...] = ("igan", "dcgan"),
                  echo: Callable[[str], object] = print) -> dict[str, dict[str, float]]:
    """Per arch: our WganGp step against an independent minimal loop of the same models
    (`MinimalWganGp`), interleaved in one process, `steps` steps per measurement, median of
    `repeats`; then the whole trainer (`stabgan run`: default probes, detector, logging,
    samples, checkpoints, bar) per step including start-up. Returns s/step and ratios."""
    import contextlib
    import io
    import tempfile
    from pathlib import Path

    import torch

    from probes import build_probes
    from stabgan.config import dataset_info, resolve_config
    from stabgan.data import load_dataset
    from stabgan.train import Run, WganGp, train

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            settings = {"arch": arch, "steps": steps, "sample_every": steps, "ckpt_every": steps,
                        **(overrides or {})}
            config = resolve_config("quick", **settings)
            if config.threads:
                torch.set_num_threads(config.threads)
            dataset = load_dataset(config.dataset, config.image_size)
            channels = dataset_info(config.dataset).channels
            ours, minimal = WganGp(config, dataset, channels), MinimalWganGp(
                config, dataset.tensors[0] if hasattr(dataset, "tensors") else
                torch.stack([dataset[i][0] for i in range(512)]), channels)
            runs = iter(range(10 ** 6))

            def trainer() -> None:
                run = Run(config, Path(tmp) / f"r{next(runs)}", dataset, channels, None, [])
                with contextlib.redirect_stderr(io.StringIO()):  # the run's progress bar
                    train(run, build_probes(config))

            medians = interleaved_medians({
                "minimal": lambda: [minimal.step() for _ in range(steps)],
                "ours": lambda: [ours.step() for _ in range(steps)],
                "trainer": trainer}, repeats=repeats)
            result = {name: seconds / steps for name, seconds in medians.items()}
            result["ours/minimal"] = result["ours"] / result["minimal"]
            result["trainer/minimal"] = result["trainer"] / result["minimal"]
            results[arch] = result
            echo(f"{arch}: width {config.width}, batch {config.batch_size}, "
                 f"{torch.get_num_threads()} thread(s), {steps} steps a measurement, median of "
                 f"{repeats} interleaved")
            echo(f"  minimal loop   {1000 * result['minimal']:8.1f} ms/step")
            echo(f"  WganGp.step    {1000 * result['ours']:8.1f} ms/step   ratio "
                 f"{result['ours/minimal']:.3f}")
            echo(f"  stabgan run    {1000 * result['trainer']:8.1f} ms/step   ratio "
                 f"{result['trainer/minimal']:.3f}  (probes, logging, samples, checkpoint, start-up)")
    return results
