"""The `stabgan` command: parses, validates and dispatches to public functions.

Bad input ends in a one-line click error with exit code 2, before anything is written.
"""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click

from stabgan.config import (CHOICES, DEVICES, EXECUTORS, FEATURES, PRESETS,
                            RAY_JOIN_TIMEOUT_S, RENAMED_FIELDS, ConfigError, DatasetError,
                            RunConfig)

# One phrase per preset for --preset's help; a preset added to PRESETS needs its phrase here.
PRESET_HELP = {"quick": "the default, under two minutes on 2 CPU cores",
               "toy": "8 Gaussians on a ring, non-saturating + R1, about 15 s",
               "paper": "the seed's Table 1: 64x64, 50,000 steps, for a GPU",
               "paper-sagan": "paper in the layout of the public SAGAN codebase"}


def _config_option(field: dataclasses.Field):
    """A click option for one RunConfig field; its default is None, meaning 'preset value'."""
    flag = "--" + field.name.replace("_", "-")
    help_text = f"{field.metadata['help']} [default: {field.default}]"
    if field.type in ("bool", bool):  # --flag/--no-flag: a preset's value can be undone
        flags = f"{flag}/--no-{flag[2:]}"
        return click.option(flags, field.name, default=None, help=help_text)
    if field.name in CHOICES:
        kind = click.Choice(CHOICES[field.name])
    else:
        kind = {"int": int, "float": float, "str": str}[field.type]
    return click.option(flag, field.name, type=kind, default=None, help=help_text)


def _renamed_option(old: str, new: str):
    """A hidden option for a field's earlier name: a one-line error naming its new flag."""
    def refuse(ctx, param, value):
        if value is not None:
            raise click.BadParameter(f"--{old.replace('_', '-')} is now --{new.replace('_', '-')}",
                                     ctx=ctx, param=param)
    return click.option("--" + old.replace("_", "-"), hidden=True, expose_value=False,
                        callback=refuse, is_eager=True)


def config_options(function):
    """Decorate a command with one option per RunConfig field (and a refusal naming the new
    flag for each field's earlier name)."""
    for old, new in RENAMED_FIELDS.items():
        function = _renamed_option(old, new)(function)
    for field in reversed(dataclasses.fields(RunConfig)):
        function = _config_option(field)(function)
    presets = "; ".join(f"{name} ({PRESET_HELP[name]})" for name in PRESETS)
    return click.option("--preset", type=click.Choice(PRESETS), default=None,
                        help=f"base values: {presets}")(function)


def usage_error(error: Exception, ctx: click.Context | None = None) -> click.ClickException:
    """The click error for a library error: BadParameter naming the option, else UsageError."""
    if isinstance(error, ConfigError):
        return click.BadParameter(str(error), ctx=ctx, param_hint=f"--{error.field.replace('_', '-')}")
    return click.UsageError(str(error), ctx=ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="stabgan")
def cli():
    """Train involution GANs and find out, with evidence, when and why training collapses."""


@cli.command()
@config_options
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="folder holding run directories")
@click.option("--name", default=None, help="run directory name [default: from the config]")
@click.option("--resume", is_flag=True, help="continue run NAME from checkpoints/last.pt")
@click.pass_context
def run(ctx, preset, out, name, resume, **overrides):
    """Train one GAN into OUT/NAME (embedded default: iGAN, 1 involution layer, mnist5k)."""
    from stabgan.config import resolve_config, run_name
    from probes.rundir.files import fresh_run_dir

    if resume and not name:
        raise click.UsageError("--resume needs --name NAME of the run to continue")
    try:  # settings are checked before torch loads, so a typo is reported at once
        run_dir = out / name if name else fresh_run_dir(
            out, run_name(resolve_config(preset or "quick", **overrides)))
    except (ConfigError, DatasetError) as error:
        raise usage_error(error, ctx) from None
    from stabgan.run_probes import run_probes
    from stabgan.train import RunError, prepare_run, train
    try:
        prepared = prepare_run(run_dir, overrides, preset, resume, command=sys.argv)
    except (ConfigError, RunError, DatasetError) as error:
        raise usage_error(error, ctx) from None
    try:
        probes = run_probes(prepared.config, prepared.held_out, prepared.reference)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="--probes") from None
    for warning in prepared.warnings:
        click.echo(f"warning: {warning}", err=True)
    if prepared.checkpoint is None:
        click.echo(f"run directory: {run_dir}", err=True)
    else:
        click.echo(f"resumed {run_dir} from step {prepared.checkpoint['step']:,} of "
                   f"{prepared.config.steps:,}", err=True)
    try:
        summary = train(prepared, probes)
    except Exception as error:  # summary.json and error.log keep it; show one line, not a traceback
        raise click.ClickException(failure_line(error, run_dir)) from None
    click.echo(end_of_run(summary, run_dir), err=True)
    if summary.get("exit_signal"):
        ctx.exit(128 + summary["exit_signal"])


def failure_line(error: Exception, run_dir: Path) -> str:
    """`run failed: Type: message`, and where the traceback is when this failure wrote one."""
    from probes.rundir.reader import RunDir
    from probes.rundir.files import error_line

    line, run = error_line(error), RunDir(run_dir)
    log = run.error_log if run.summary.get("error") == line else None  # not an older one
    return f"run failed: {line}" + (f"; traceback in {log}" if log else "")


def end_of_run(summary: dict, run_dir: Path) -> str:
    """What `stabgan run` prints when it ends: status, verdict (with onset, kind and the
    evidence when not healthy), the run directory and the commands to look at it."""
    from probes.collapse import recovery_text
    from probes.rundir.reader import RunDir

    lines = [f"{summary['status']}: {summary['steps']:,} steps in {summary['wall_s']:.1f} s"]
    verdict = summary.get("verdict") or "unknown"
    diagnosis = RunDir(run_dir).diagnosis
    events = diagnosis.get("events", [])
    if verdict == "collapsed":
        onset = summary.get("onset_step")
        first = next((e for e in events if e.get("severity") == "collapse"
                      and e.get("step") == onset), None)
        lines.append(f"verdict: collapsed at step {onset:,}" +
                     (f" ({first['kind']}): {first['message']}" if first else ""))
    elif verdict == "unstable" and diagnosis.get("recovery"):
        lines.append(f"verdict: unstable ({recovery_text(diagnosis['recovery'])})")
    elif verdict == "unstable" and events:
        lines.append(f"verdict: unstable ({events[0]['kind']}): {events[0]['message']}")
    elif diagnosis.get("logged_points", 0) < diagnosis.get("points_needed", 0):
        lines.append(f"verdict: too short to judge: {diagnosis['logged_points']} logged steps, "
                     f"and the detector needs {diagnosis['points_needed']} before it can tell "
                     f"an excursion from the run's own level (more --steps, or a smaller "
                     f"--log-every)")
    else:
        lines.append(f"verdict: {verdict}")
    quality = summary.get("quality")
    if quality:
        lines.append(f"quality: FID {quality['fid']:.3g} in the domain classifier's features, "
                     f"{quality['modes']:g} of {quality['classes']} classes, over "
                     f"{quality['samples']:,} samples (lower is better; real images score "
                     f"{quality['reference_fid']:.3g} at that count, the floor)")
    if summary.get("fid_min") is not None:
        lines.append(f"best FID ({summary['fid_features']}): {summary['fid_min']:.4g} at step "
                     f"{summary['fid_min_step']:,}")
    lines.append(f"run directory: {run_dir}")
    if summary["status"] == "interrupted":
        lines.append(f"resume: stabgan run --out {shlex.quote(str(run_dir.parent))} --name "
                     f"{shlex.quote(run_dir.name)} --resume      (from step {summary['steps']:,} "
                     f"of {summary['target_steps']:,})")
    lines += [f"next: stabgan report {run_dir}      (one HTML file: curves, samples, evidence)",
              f"      tensorboard --logdir {run_dir}",
              f"      stabgan diagnose {run_dir}"]
    return "\n".join(lines)


@cli.command()
@config_options
@click.option("--grid", default=None, help='settings to sweep: "KEY=V1,V2 KEY=V1,..." over the '
              "run flags' fields; the other run flags are every point's base")
@click.option("--config", "sweep_file", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="sweep file (.toml, .json; .yaml with PyYAML): grid, points, "
                                 "base, out, workers, executor ...; flags override it")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="folder for the run directories [default: runs/sweep, or runs/<file stem>]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="runs at a time [default: min(runs, CPUs); threads per run = CPUs // workers]")
@click.option("--executor", type=click.Choice(EXECUTORS), default=None,
              help="local process pool (default) or Ray tasks")
@click.option("--ray-address", default=None,
              help="Ray cluster to join: its head's HOST:PORT, or auto for the cluster started on "
                   "this node (`ray start --head`, then --ray-address auto) [default: start a "
                   "local one]")
@click.option("--ray-timeout", type=float, default=None,
              help="seconds to wait for --ray-address to answer before giving up "
                   f"[default: {RAY_JOIN_TIMEOUT_S:g}]")
@click.option("--shared-storage", is_flag=True, default=None,
              help="Ray: OUT is at the same path on every node (else runs come back as files)")
@click.option("--retry-failed", is_flag=True, default=None, help="run failed runs again")
@click.option("--no-report", "report", flag_value=False, default=None,
              help="skip OUT/report.html")
@click.pass_context
def sweep(ctx, preset, grid, sweep_file, out, workers, executor, ray_address, ray_timeout,
          shared_storage, retry_failed, report, **overrides):
    """Run every point of a grid as a `stabgan run` into OUT/<name>; re-running resumes it."""
    from stabgan.sweep import LOGS, SweepError, format_table, run_sweep, sweep_spec

    try:
        spec = sweep_spec(grid, sweep_file, overrides, preset=preset, out=out, workers=workers,
                          executor=executor, ray_address=ray_address,
                          ray_timeout=ray_timeout, shared_storage=shared_storage,
                          retry_failed=retry_failed, report=report)
        result = run_sweep(spec)
    except SweepError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint=error.param) from None
    except (ConfigError, DatasetError) as error:
        raise usage_error(error, ctx) from None
    click.echo(format_table(result.rows))
    if result.report:
        click.echo(f"report: {result.report}", err=True)
    if result.report_error:
        click.echo(f"report failed: {result.report_error}", err=True)
    if result.failed and not result.signum:
        click.echo(f"{len(result.failed)} run(s) did not finish; logs in {spec.out / LOGS}; "
                   f"failed runs run again with --retry-failed", err=True)
    ctx.exit(result.exit_code)


@cli.command()
@config_options
@click.pass_context
def inspect(ctx, preset, **overrides):
    """Print the generator and critic layer tables with parameter counts."""
    from stabgan.config import resolve_config
    from stabgan.config import dataset_info
    from stabgan.models import layer_table

    try:
        config = resolve_config(preset or "quick", **overrides)
    except ConfigError as error:
        raise usage_error(error, ctx) from None
    click.echo(layer_table(config, dataset_info(config.dataset).channels))


# --- diagnose: collapse detection ---
@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print the diagnosis.json object (for a "
              "folder of runs: one object, run directory -> diagnosis)")
@click.option("--fail-on-collapse", is_flag=True, help="exit 1 when a verdict is collapsed")
@click.pass_context
def diagnose(ctx, run_dir, as_json, fail_on_collapse):
    """Recompute RUN_DIR's collapse diagnosis from metrics.jsonl; rewrite diagnosis.json.

    RUN_DIR may also be a folder of run directories (a sweep's OUT): each is diagnosed, then
    one summary line. Exit 1 when a run cannot be diagnosed (or, with --fail-on-collapse, when
    one collapsed).
    """
    import json
    from probes.collapse import VERDICTS, diagnose_run, format_diagnosis
    from probes.rundir.files import find_runs, is_run_dir

    single = is_run_dir(run_dir)
    runs = [run_dir] if single else find_runs(run_dir)
    if not runs:
        raise click.BadParameter(f"{str(run_dir)!r} is not a run directory and holds none (no "
                                 f"config.json or metrics.jsonl in it or below it)", ctx=ctx,
                                 param_hint="RUN_DIR")
    diagnoses, failed = {}, []
    for path in runs:
        try:
            diagnoses[path] = diagnose_run(path)
        except Exception as error:  # one unreadable run must not hide the others' diagnoses
            failed.append(path)
            click.echo(f"{path}: could not be diagnosed: {type(error).__name__}: {error}",
                       err=True)
            continue
        if not as_json:
            click.echo(format_diagnosis(diagnoses[path], path) + ("" if single else "\n"))
    if as_json and (diagnoses or not single):
        click.echo(json.dumps(diagnoses[run_dir] if single else
                              {str(p): d for p, d in diagnoses.items()}, indent=2, default=str))
    verdicts = [d["verdict"] for d in diagnoses.values()]
    if not single:
        counts = [f"{verdicts.count(v)} {v}" for v in reversed(VERDICTS) if v in verdicts]
        counts += [f"{len(failed)} could not be diagnosed"] if failed else []
        click.echo(f"{len(runs)} run{'s' * (len(runs) != 1)} under {run_dir}: "
                   f"{', '.join(counts)}", err=as_json)
    if failed or (fail_on_collapse and "collapsed" in verdicts):
        ctx.exit(1)


# --- report: one HTML file ---
@cli.command()
@click.argument("runs_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="HTML file to write [default: RUNS_DIR/report.html]")
@click.option("--no-cache", is_flag=True, help="re-render every run, ignoring the figure cache")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="processes rendering uncached runs [default: 1, up to 4 from 8 runs]")
@click.pass_context
def report(ctx, runs_dir, out, no_cache, workers):
    """Write one self-contained HTML report over every run directory below RUNS_DIR."""
    from reports import write_report
    from probes.rundir.files import unwritable_reason

    unwritable = unwritable_reason(out.parent if out else runs_dir)
    if unwritable:  # checked before rendering, which can take minutes
        raise click.BadParameter(unwritable, ctx=ctx, param_hint="'-o' / '--out'")
    try:
        click.echo(write_report(runs_dir, out, cache=not no_cache, workers=workers))
    except OSError as error:  # a folder that refuses the file after all
        raise click.BadParameter(f"cannot write the report to {error.filename!r}: "
                                 f"{error.strerror}", ctx=ctx, param_hint="'-o' / '--out'") from None


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--features", type=click.Choice(FEATURES), default="domain",
              show_default=True, help="domain classifier (offline) or pytorch-fid's Inception")
@click.option("--inception-weights", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="local pt_inception-2015-12-05 weights file")
@click.option("-n", "samples", type=click.IntRange(min=2), default=5000, show_default=True,
              help="generated samples")
@click.option("--checkpoint", default="last", show_default=True,
              help="last, best (the best quality reading's step), pre_collapse, or a "
                   "checkpoint file")
@click.option("--json", "as_json", is_flag=True, help="print the readings as JSON")
def fid(run_dir, features, inception_weights, samples, checkpoint, as_json):
    """FID (and mode coverage) of a run's generator against its dataset."""
    import json
    from stabgan.fid import FIDError, measure_run

    try:
        readings = measure_run(run_dir, features, samples, checkpoint, inception_weights)
    except (FIDError, DatasetError) as error:
        raise click.UsageError(str(error)) from None
    if as_json:
        click.echo(json.dumps(readings, indent=2))
        return
    fault = f", its fault {readings['fault']} acting" if readings["fault"] else ""
    click.echo(f"{run_dir} step {readings['step']} ({samples} samples{fault}):")
    for tag, value in readings.items():
        if "/" in tag:
            click.echo(f"  {tag:<16} {value:.4g}")


@cli.group()
def bench():
    """Side-by-side benchmarks (interleaved in one process, medians)."""


def _step_timing(steps: int, repeats: int):
    """The --steps, --repeats and --threads options of a training-step benchmark."""
    options = (click.option("--steps", type=click.IntRange(min=1), default=steps,
                            show_default=True, help="steps per measurement"),
               click.option("--repeats", type=click.IntRange(min=1), default=repeats,
                            show_default=True),
               click.option("--threads", type=click.IntRange(min=0), default=1,
                            show_default=True, help="torch CPU threads (0: torch's default)"))

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command
    return decorate


@bench.command("trainer")
@_step_timing(steps=8, repeats=5)
@click.option("--arch", "archs", type=click.Choice(CHOICES["arch"]), multiple=True,
              default=("igan", "dcgan"), show_default=True, help="architectures (repeatable)")
@click.option("--loss", type=click.Choice(CHOICES["loss"]), default="wgan", show_default=True)
@click.option("--penalty", type=click.Choice(CHOICES["penalty"]), default="gp", show_default=True)
@click.option("--penalty-every", type=click.IntRange(min=1), default=1, show_default=True,
              help="lazy penalty: every k critic updates")
def bench_trainer(steps, repeats, threads, archs, loss, penalty, penalty_every):
    """Our step vs an independent minimal loop of the same models and objective, and the
    trainer."""
    from stabgan.bench import bench_trainer as run_bench
    run_bench(steps, repeats, {"threads": threads, "loss": loss, "penalty": penalty,
                               "penalty_every": penalty_every}, archs, echo=click.echo)


@bench.command("scale")
@_step_timing(steps=3, repeats=3)
def bench_scale(steps, repeats, threads):
    """The seed's layout at the seed study's size (32x32, width 32) vs the seed's (64x64, 64)."""
    from stabgan.bench import bench_scale as run_bench
    run_bench(steps=steps, repeats=repeats, threads=threads, echo=click.echo)


@bench.command("monitor")
@click.option("--cycles", type=click.IntRange(min=1), default=3, show_default=True,
              help="cycles of 10 x log-every steps (every probe fires) per probe selection")
@click.option("--width", type=click.IntRange(min=1), default=None,
              help="model width [default: the quick preset's]")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="batch size [default: the quick preset's]")
@click.option("--threads", type=click.IntRange(min=0), default=None,
              help="torch CPU threads [default: the quick preset's]")
@click.option("--log-every", type=click.IntRange(min=1), default=None,
              help="steps per turn; probe cadences derive from it [default: the quick preset's]")
@click.pass_context
def bench_monitor(ctx, cycles, width, batch_size, threads, log_every):
    """Step time of the quick config with probes none, default and all, and their ratios."""
    from stabgan.bench import bench_monitor as run_bench

    try:
        run_bench(cycles, width, batch_size, threads, log_every, echo=click.echo)
    except (ConfigError, ValueError) as error:
        raise usage_error(error, ctx) from None


@bench.command("involution")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--size", "sizes", type=click.IntRange(min=1), multiple=True, default=(16, 32),
              show_default=True, help="feature-map height = width (repeatable)")
@click.option("--kernel-size", "kernel_sizes", type=click.IntRange(min=1), multiple=True,
              default=(1, 3, 5, 7), show_default=True, help="K (repeatable, odd)")
@click.option("--groups", type=click.IntRange(min=1), multiple=True, default=(1, 4),
              show_default=True, help="G (repeatable, divides --channels)")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--channels", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)
@click.pass_context
def bench_involution(ctx, repeats, sizes, kernel_sizes, groups, batch_size, channels, device):
    """Our involution vs the paper-definition reference (time, memory), then Table 2's costs."""
    from stabgan.bench import bench_involution as run_bench

    bad_k = [k for k in kernel_sizes if k % 2 == 0]
    if bad_k:
        raise click.BadParameter(f"{bad_k[0]} is even; kernel sizes must be odd", ctx,
                                 param_hint="--kernel-size")
    bad_g = [g for g in groups if channels % g]
    if bad_g:
        raise click.BadParameter(f"{bad_g[0]} does not divide --channels {channels}", ctx,
                                 param_hint="--groups")
    try:
        run_bench(kernel_sizes, groups, sizes, batch_size, channels, repeats, device=device,
                  echo=click.echo)
    except ConfigError as error:  # the device is not on this machine
        raise usage_error(error, ctx) from None


@bench.command("fid")
@click.option("-n", "--samples", "n", type=click.IntRange(min=2), default=4096, show_default=True,
              help="random feature rows behind each set of statistics")
@click.option("--dim", type=click.IntRange(min=1), default=2048, show_default=True,
              help="feature dimension (Inception pool features: 2048)")
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True)
def bench_fid(n, dim, repeats):
    """Our Fréchet distance vs pytorch-fid's on the same statistics: values, ratio."""
    from stabgan.bench import bench_fid as run_bench
    run_bench(n, dim, repeats, echo=click.echo)


@bench.command("report")
@click.option("--runs", type=click.IntRange(min=1), default=100, show_default=True,
              help="synthetic run directories")
@click.option("--steps", type=click.IntRange(min=10), default=5000, show_default=True,
              help="logged steps per run")
@click.option("--dir", "root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="folder for the runs, reused when it already holds some [default: a temp folder]")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="processes rendering uncached runs [default: as `stabgan report`]")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True,
              help="cold and warm renders each; the medians are reported")
def bench_report(runs, steps, root, workers, repeats):
    """Render time of `stabgan report` over synthetic runs: cold (no cache), then warm."""
    import shutil
    import tempfile
    from reports.bench import bench_report as run_bench

    temp = None if root else Path(tempfile.mkdtemp(prefix="stabgan-bench-report-"))
    try:
        run_bench(root or temp, runs, steps, workers, repeats, echo=click.echo)
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)


def main():
    cli(prog_name="stabgan")


if __name__ == "__main__":
    main()
