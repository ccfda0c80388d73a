"""Benchmarks of the training step: the Monitor's overhead per probe selection, our step
and whole trainer against an independent minimal loop, and what image size and width cost."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

from probes.collapse import OnlineDetector
from probes.monitor import Monitor
from stabgan.bench.timing import interleaved_medians
from stabgan.config import dataset_info, resolve_config
from stabgan.data import load_dataset
from stabgan.models import Critic, Generator
from stabgan.run_probes import run_probes
from stabgan.train import Gan, Run, train


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
    """The trainer's Gan step plus a Monitor with the collapse detector, advanced a few steps
    at a time (bench only; the trainer's NaN checks, samples and checkpoints are not monitor
    cost and are left out)."""

    def __init__(self, config, selection: str, run_dir):
        if config.threads:
            torch.set_num_threads(config.threads)
        self.gan = Gan(config, load_dataset(config.dataset, config.image_size),
                          dataset_info(config.dataset).channels)
        self.generator, self.critic, self.step = self.gan.generator, self.gan.critic, 0
        probes = run_probes(dataclasses.replace(config, probes=selection))
        self.monitor = Monitor(run_dir, self.generator, self.critic, probes,
                               log_every=config.log_every, guard=OnlineDetector(run_dir))

    def advance(self, steps: int) -> None:
        for _ in range(steps):
            self.step += 1
            self.monitor.step(self.step, **self.gan.step())


class MinimalGan:
    """An independent minimal loop (split scoring), the reference `bench trainer` measures ours
    against: the same models and maths for each loss and penalty, nothing else (no data
    loader, no schedulers, no state for resume), written here without the trainer's helpers."""

    def __init__(self, config, images, image_channels: int):
        torch.manual_seed(config.seed)
        self.config, self.images = config, images
        self.g, self.d = Generator(config, image_channels), Critic(config, image_channels)
        betas = (config.beta1, config.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=config.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=config.lr_d, betas=betas)
        self.updates = 0

    def _penalty(self, real, fake):
        """λ·E[(‖∇D(x̂)‖ − 1)²], or γ/2·E‖∇D‖² at real (r1), fake (r2) or both, times k."""
        c = self.config
        total = 0.0
        for name in ("gp",) if c.penalty == "gp" else [n for n in ("r1", "r2") if n in c.penalty]:
            if name == "gp":
                eps = torch.rand(c.batch_size, 1, 1, 1)
                x = (eps * real + (1 - eps) * fake).requires_grad_(True)
            else:
                x = (real if name == "r1" else fake).detach().requires_grad_(True)
            grad, = torch.autograd.grad(self.d(x).sum(), x, create_graph=True)
            if name == "gp":
                total = total + c.penalty_weight * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            else:
                total = total + c.penalty_weight / 2 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
        return total * c.penalty_every

    def step(self) -> None:
        c, g, d, softplus = self.config, self.g, self.d, torch.nn.functional.softplus
        d.requires_grad_(True)
        for _ in range(c.n_critic):
            real = self.images[torch.randint(len(self.images), (c.batch_size,))]
            with torch.no_grad():
                fake = g(torch.randn(c.batch_size, c.z_dim))
            scores = d(torch.cat([real, fake]))
            s_real, s_fake = scores[:c.batch_size], scores[c.batch_size:]
            if c.loss == "wgan":
                loss = s_fake.mean() - s_real.mean()
            elif c.loss == "hinge":
                loss = (1 - s_real).clamp(min=0).mean() + (1 + s_fake).clamp(min=0).mean()
            elif c.loss == "ns":
                loss = softplus(-s_real).mean() + softplus(s_fake).mean()
            else:
                loss = softplus(s_fake - s_real).mean()
            if c.penalty != "none" and self.updates % c.penalty_every == 0:
                loss = loss + self._penalty(real, fake)
            self.updates += 1
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        d.requires_grad_(False)
        s_fake = d(g(torch.randn(c.batch_size, c.z_dim)))
        if c.loss in ("wgan", "hinge"):
            loss_g = -s_fake.mean()
        elif c.loss == "ns":
            loss_g = softplus(-s_fake).mean()
        else:
            loss_g = softplus(d(real) - s_fake).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()


def bench_trainer(steps: int = 8, repeats: int = 5, overrides: dict | None = None,
                  archs: tuple[str, ...] = ("igan", "dcgan"),
                  echo: Callable[[str], object] = print) -> dict[str, dict[str, float]]:
    """Per arch: our Gan step against an independent minimal loop of the same models
    (`MinimalGan`), interleaved in one process, `steps` steps per measurement, median of
    `repeats`; then the whole trainer (`stabgan run`: default probes, detector, logging,
    samples, checkpoints, bar) per step including start-up. Returns s/step and ratios."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for arch in archs:
            # the final FID is a one-off after training, not a cost per step
            settings = {"arch": arch, "steps": steps, "sample_every": steps, "ckpt_every": steps,
                        "fid_final": False, **(overrides or {})}
            config = resolve_config("quick", **settings)
            if config.threads:
                torch.set_num_threads(config.threads)
            dataset = load_dataset(config.dataset, config.image_size)
            channels = dataset_info(config.dataset).channels
            ours, minimal = Gan(config, dataset, channels), MinimalGan(
                config, dataset.tensors[0] if hasattr(dataset, "tensors") else
                torch.stack([dataset[i][0] for i in range(512)]), channels)
            runs = iter(range(10 ** 6))

            def trainer() -> None:
                run = Run(config, Path(tmp) / f"r{next(runs)}", dataset, channels, None, [])
                with contextlib.redirect_stderr(io.StringIO()):  # the run's progress bar
                    train(run, run_probes(config))

            medians = interleaved_medians({
                "minimal": lambda: [minimal.step() for _ in range(steps)],
                "ours": lambda: [ours.step() for _ in range(steps)],
                "trainer": trainer}, repeats=repeats)
            result = {name: seconds / steps for name, seconds in medians.items()}
            result["ours/minimal"] = result["ours"] / result["minimal"]
            result["trainer/minimal"] = result["trainer"] / result["minimal"]
            results[arch] = result
            echo(f"{arch}: {config.loss} + {config.penalty}"
                 + (f" every {config.penalty_every}" if config.penalty_every > 1 else "")
                 + f", width {config.width}, batch {config.batch_size}, "
                 f"{torch.get_num_threads()} thread(s), {steps} steps a measurement, median of "
                 f"{repeats} interleaved")
            echo(f"  minimal loop   {1000 * result['minimal']:8.1f} ms/step")
            echo(f"  Gan.step       {1000 * result['ours']:8.1f} ms/step   ratio "
                 f"{result['ours/minimal']:.3f}")
            echo(f"  stabgan run    {1000 * result['trainer']:8.1f} ms/step   ratio "
                 f"{result['trainer/minimal']:.3f}  (probes, logging, samples, checkpoint, start-up)")
    return results


def bench_scale(sizes: tuple[tuple[int, int], ...] = ((32, 32), (64, 64)),
                preset: str = "paper-sagan",
                inv_layers: int = 2, steps: int = 3, repeats: int = 3, threads: int = 1,
                echo: Callable[[str], object] = print) -> dict[str, float]:
    """Gan.step of one preset at each (image size, width), interleaved in one process: what
    a study that runs the seed's layout smaller than the seed (the seed study: 32×32, width 32;
    the seed: 64×64, width 64) gains in time. Returns s/step per "SIZEpx-wWIDTH" and, per
    later size, its ratio to the first."""
    gans = {}
    for size, width in sizes:
        config = resolve_config(preset, image_size=size, width=width, inv_layers=inv_layers,
                                dataset="mnist5k", threads=threads)
        gans[f"{size}px-w{width}"] = Gan(config, load_dataset(config.dataset, size),
                                            dataset_info(config.dataset).channels)
    if threads:
        torch.set_num_threads(threads)
    medians = interleaved_medians({name: (lambda gan=gan: [gan.step() for _ in range(steps)])
                                   for name, gan in gans.items()}, repeats=repeats)
    result = {name: seconds / steps for name, seconds in medians.items()}
    first = next(iter(result))
    echo(f"--preset {preset} --inv-layers {inv_layers} on mnist5k, {torch.get_num_threads()} "
         f"thread(s), {steps} steps a measurement, median of {repeats} interleaved")
    for name, seconds in list(result.items()):
        ratio = seconds / result[first]
        echo(f"  {name:<12} {1000 * seconds:9.1f} ms/step   ×{ratio:.2f} of {first}")
        if name != first:
            result[f"{name}/{first}"] = ratio
    return result
