"""Benchmarks of the operators: the involution (ours vs the reference transcription, time and
peak memory, and the seed's Table 2 cases) and the Fréchet distance (ours vs pytorch-fid), with
the machine's peak rates for scale."""
from __future__ import annotations

import os
import sys
import warnings
from typing import Callable

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from stabgan.bench.timing import interleaved_medians
from stabgan.device import resolve_device
from stabgan.nn.involution import (Involution2d, eq5_parameter_estimate, involution,
                                   involution_reference)
from stabgan.study.sweeps import SEED_TABLE2


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def machine_peaks(device: str = "auto", n: int = 1024, copy_mb: int = 64,
                  repeats: int = 5) -> dict[str, float]:
    """Measured fp32 matmul GFLOP/s (n x n) and tensor-copy GB/s (copy_mb MiB, past the last-level
    cache by default): the limits the involution bench is held to."""
    device = str(resolve_device(device))
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
        sys.stderr.flush()
        self._saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)


def peak_allocated_bytes(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak bytes held by torch's allocator while fn runs, above what was held when it started.

    CUDA: max_memory_allocated. CPU has no allocator statistics, so this replays the
    profiler's allocation/free events in time order and takes the running maximum.
    """
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
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
                     repeats: int = 5, warmup: int = 1, device: str = "auto",
                     peaks: dict[str, float] | None = None, with_table2: bool = True,
                     echo: Callable[[str], object] = print) -> list[dict]:
    """Forward+backward of `involution` vs `involution_reference`, side by side; prints a table.

    Times are medians of `repeats` interleaved runs after `warmup`; memory is the allocator peak
    of one extra run of each. `bound ms` is the physical limit max(FLOPs / matmul rate,
    minimal bytes / copy rate) and `limit%` = bound / ours: how close ours is to this machine.
    `peaks` is `machine_peaks()` output, measured now when None.
    """
    device = str(resolve_device(device))
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
                 device: str = "auto", echo: Callable[[str], object] | None = print) -> list[dict]:
    """The seed's Table 2 cases: its eq. 5 estimate, its printed count, our exact count, our time.

    Time is forward+backward of one Involution2d(C, K, groups=G, reduction=R) at
    (batch, C, size, size), median of `repeats` after one warm-up.
    """
    device = str(resolve_device(device))
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
    # imported here: the involution benches need neither the fid package nor pytorch-fid
    from pytorch_fid.fid_score import calculate_frechet_distance
    from stabgan.fid.distance import frechet_distance, statistics as feature_statistics

    rng = np.random.default_rng(seed)
    mixing = np.eye(dim) + 0.5 * rng.standard_normal((dim, dim)) / np.sqrt(dim)
    stats = (*feature_statistics(rng.standard_normal((n, dim))),
             *feature_statistics(rng.standard_normal((n, dim)) @ mixing + 0.1))
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
