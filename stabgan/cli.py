"""The `stabgan` command: parses, validates and dispatches to public functions.

Bad input ends in a one-line click error with exit code 2, before anything is written.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from stabgan.config import ARCHS, DEVICES, INV_WHERE, PRESETS, ConfigError, RunConfig
from stabgan.data import DatasetError
from stabgan.nn.involution import NORMS

CHOICES = {"arch": ARCHS, "norm": NORMS, "inv_where": INV_WHERE, "device": DEVICES}


def _config_option(field: dataclasses.Field):
    """A click option for one RunConfig field; its default is None, meaning 'preset value'."""
    flag = "--" + field.name.replace("_", "-")
    help_text = f"{field.metadata['help']} [default: {field.default}]"
    if field.type in ("bool", bool):
        return click.option(flag, field.name, is_flag=True, default=None, help=help_text)
    if field.name in CHOICES:
        kind = click.Choice(CHOICES[field.name])
    else:
        kind = {"int": int, "float": float, "str": str}[field.type]
    return click.option(flag, field.name, type=kind, default=None, help=help_text)


def config_options(function):
    """Decorate a command with one option per RunConfig field."""
    for field in reversed(dataclasses.fields(RunConfig)):
        function = _config_option(field)(function)
    return click.option("--preset", type=click.Choice(PRESETS), default=None,
                        help="base values: quick (default) or paper (the seed's Table 1)")(function)


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
    from probes import build_probes
    from stabgan.config import resolve_config
    from stabgan.train import RunError, fresh_run_dir, prepare_run, train

    if resume and not name:
        raise click.UsageError("--resume needs --name NAME of the run to continue")
    try:
        run_dir = out / name if name else fresh_run_dir(out, resolve_config(preset or "quick",
                                                                             **overrides))
        prepared = prepare_run(run_dir, overrides, preset, resume, command=sys.argv)
    except (ConfigError, RunError, DatasetError) as error:
        raise usage_error(error, ctx) from None
    try:
        probes = build_probes(prepared.config)
    except ValueError as error:
        raise click.BadParameter(str(error), ctx=ctx, param_hint="--probes") from None
    click.echo(f"run directory: {run_dir}", err=True)
    try:
        summary = train(prepared, probes)
    except Exception as error:  # the summary already records it; show one line, not a traceback
        raise click.ClickException(f"run failed: {type(error).__name__}: {error}") from None
    click.echo(f"{summary['status']}: {summary['steps']} steps in {summary['wall_s']:.1f} s "
               f"({run_dir})", err=True)
    if summary.get("exit_signal"):
        ctx.exit(128 + summary["exit_signal"])


@cli.command()
@config_options
@click.pass_context
def inspect(ctx, preset, **overrides):
    """Print the generator and critic layer tables with parameter counts."""
    from stabgan.config import resolve_config
    from stabgan.data import dataset_info
    from stabgan.models import layer_table

    try:
        config = resolve_config(preset or "quick", **overrides)
    except ConfigError as error:
        raise usage_error(error, ctx) from None
    click.echo(layer_table(config, dataset_info(config.dataset).channels))


def main():
    cli(prog_name="stabgan")


if __name__ == "__main__":
    main()
