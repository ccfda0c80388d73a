"""What a sweep asks for: the grid syntax, sweep files merged with command-line values
(`sweep_spec` -> SweepSpec), the points a grid expands to and their run names, and where a
sweep writes in its folder DIR.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from stabgan.config import CHOICES, EXECUTORS, FIELD_NAMES, PRESETS, RAY_JOIN_TIMEOUT_S, RunConfig

DEFAULT_OUT = Path("runs/sweep")
# The sweep's own files sit in a hidden folder, so DIR holds run directories only (reports skip
# hidden folders): DIR/.sweep/logs/NAME.log (each run's output), DIR/.sweep/sweep.json (what the
# last sweep into DIR asked for), DIR/.sweep/lock (one sweep at a time per DIR).
SWEEP_DIR = ".sweep"
LOGS = f"{SWEEP_DIR}/logs"
SWEEP_RECORD = f"{SWEEP_DIR}/sweep.json"
LOCK = f"{SWEEP_DIR}/lock"
FILE_KEYS = ("grid", "points", "base", "preset", "out", "workers", "executor", "ray_address",
             "ray_timeout", "shared_storage", "retry_failed", "report")
# Fields with a fixed set of values, so a typo in the grid is caught as a bad value.
_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}
# The sweep sets each run's CPU share itself (see parallelism); a grid over it makes no sense.
_NOT_GRID_KEYS = ("threads",)


class SweepError(ValueError):
    """A sweep cannot start as asked; `param` names the option to blame (for the CLI)."""

    def __init__(self, message: str, param: str = "--grid"):
        super().__init__(message)
        self.param = param


# ---------------------------------------------------------------------------------------------
# grid syntax

def _accepted_keys() -> str:
    return ", ".join(k for k in FIELD_NAMES if k not in _NOT_GRID_KEYS)


def parse_value(key: str, text: str, token: str | None = None):
    """One grid value, typed as RunConfig's field `key`; SweepError naming the token if it can't be."""
    where = f"grid token {token!r}: " if token else ""
    kind = _TYPES[key]
    text = str(text).strip()
    try:
        if kind == "bool":
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError
            return value
    except ValueError:
        kinds = {"bool": "true/false", "int": "integers", "float": "finite numbers"}
        raise SweepError(f"{where}{key} takes {kinds[kind]}, not {text!r}") from None
    if key in CHOICES and text not in CHOICES[key]:
        raise SweepError(f"{where}{key}={text!r} is not one of {', '.join(CHOICES[key])}")
    return text


def _grid_key(raw: str, token: str) -> str:
    key = raw.strip().replace("-", "_")
    if key not in FIELD_NAMES or key in _NOT_GRID_KEYS:
        hint = " (the sweep sets it per run; pass --threads T as a run flag)" \
            if key in _NOT_GRID_KEYS else ""
        raise SweepError(f"grid token {token!r}: unknown key {raw.strip()!r}{hint}; accepted "
                         f"keys: {_accepted_keys()}")
    return key


def parse_grid(text: str) -> dict[str, tuple]:
    """`"inv_layers=1,2 norm=none,batch seed=0,1"` -> {field: values}, in the order written.

    Tokens are separated by whitespace (shell quoting works for values with spaces); each is
    KEY=V1,V2,... over RunConfig fields (dashes or underscores). Raises SweepError naming the
    bad token and the accepted keys.
    """
    try:
        tokens = shlex.split(text)
    except ValueError as error:
        raise SweepError(f"grid {text!r} cannot be split into tokens: {error}") from None
    if not tokens:
        raise SweepError(f"grid is empty; write KEY=V1,V2 ... with keys from: {_accepted_keys()}")
    grid: dict[str, tuple] = {}
    for token in tokens:
        raw_key, eq, raw_values = token.partition("=")
        if not eq or not raw_key.strip():
            raise SweepError(f"grid token {token!r} is not KEY=V1,V2,...; accepted keys: "
                             f"{_accepted_keys()}")
        key = _grid_key(raw_key, token)
        if key in grid:
            raise SweepError(f"grid token {token!r}: key {key!r} appears twice")
        parts = raw_values.split(",")
        if any(not p.strip() for p in parts):
            raise SweepError(f"grid token {token!r}: empty value (write {key}=V1,V2,...)")
        grid[key] = _unique(key, [parse_value(key, p, token) for p in parts], token)
    return grid


def _unique(key: str, values: list, token: str) -> tuple:
    if len(set(values)) != len(values):
        raise SweepError(f"grid token {token!r}: a value of {key!r} is repeated")
    return tuple(values)


def _typed_mapping(raw: Mapping, what: str, param: str) -> dict:
    """Settings from a sweep file ({field: value}) typed like grid values."""
    if not isinstance(raw, Mapping):
        raise SweepError(f"{what} must be a table of settings, not {raw!r}", param)
    out = {}
    for raw_key, value in raw.items():
        token = f"{raw_key}={value}"
        key = str(raw_key).replace("-", "_")
        if what == "points":
            key = _grid_key(str(raw_key), token)
        elif key not in FIELD_NAMES:
            raise SweepError(f"{what}: unknown setting {raw_key!r}; accepted: {', '.join(FIELD_NAMES)}",
                             param)
        out[key] = parse_value(key, value, token)
    return out


def grid_from_mapping(raw: Mapping) -> dict[str, tuple]:
    """A grid written as a table {field: [values]} (sweep files); a scalar is one value."""
    grid = {}
    for raw_key, values in raw.items():
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        token = f"{raw_key}={','.join(map(str, values))}"
        key = _grid_key(str(raw_key), token)
        if not values:
            raise SweepError(f"grid token {token!r}: empty value (write {key}=V1,V2,...)")
        grid[key] = _unique(key, [parse_value(key, v, token) for v in values], token)
    return grid


# ---------------------------------------------------------------------------------------------
# the spec: what a sweep asks for, from options and/or a sweep file

@dataclass(frozen=True)
class SweepSpec:
    """Everything a sweep needs. `points` (explicit settings) are each crossed with `grid`."""
    grid: dict = field(default_factory=dict)      # field -> tuple of values (cross product)
    points: tuple = ()                            # explicit points: ({field: value}, ...)
    base: dict = field(default_factory=dict)      # run settings shared by every point
    preset: str | None = None
    out: Path = DEFAULT_OUT
    workers: int | None = None                    # None: see parallelism()
    executor: str = "local"
    ray_address: str | None = None                # None: start a local Ray instance
    ray_timeout: float = RAY_JOIN_TIMEOUT_S       # seconds to wait for ray_address to answer
    shared_storage: bool = False                  # Ray: DIR is at the same path on every node
    retry_failed: bool = False
    report: bool = True                           # write DIR/report.html at the end
    # local runs forked from a warm interpreter (process.start_warm_run): about 4 s of CPU
    # saved a run, which matters only for runs of seconds (the zoos'); a fresh process shows
    # its `stabgan run` command line in ps and top, a forked one the forkserver's. As with any
    # multiprocessing start but fork, the forkserver imports the calling script: its own work
    # must sit under `if __name__ == "__main__":`
    warm: bool = False


def read_sweep_file(path: Path) -> dict:
    """A sweep file (.toml, .json, or .yaml/.yml when PyYAML is installed) as a dict."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text()
    except OSError as error:
        raise SweepError(f"cannot read sweep file {str(path)!r}: {error.strerror}", "--config") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                raise SweepError("reading .toml needs Python 3.11+ (tomllib); use a .json sweep "
                                 "file", "--config") from None
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise SweepError("reading YAML needs PyYAML, which stabgan does not depend on "
                                 "(pip install pyyaml), or write the sweep as .toml or .json",
                                 "--config") from None
            data = yaml.safe_load(text)
        else:
            raise SweepError(f"sweep file {str(path)!r} must end in .toml, .json, .yaml or .yml",
                             "--config")
    except SweepError:
        raise
    except Exception as error:  # each parser has its own error type
        message = " ".join(str(error).split())
        raise SweepError(f"sweep file {str(path)!r}: {message}", "--config") from None
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {str(path)!r} must hold a table of settings", "--config")
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise SweepError(f"sweep file {str(path)!r}: unknown key {unknown[0]!r}; accepted: "
                         f"{', '.join(FILE_KEYS)}", "--config")
    return data


def sweep_spec(grid: str | None = None, config_file: Path | None = None,
               base: Mapping | None = None, **options) -> SweepSpec:
    """Merge a sweep file with command-line values; the command line wins, key by key.

    `grid` is the --grid text, `base` the run flags (None values are unset), `options` the
    other SweepSpec fields (None values are unset).
    """
    data = read_sweep_file(config_file) if config_file else {}
    merged_grid: dict = {}
    if "grid" in data:
        raw = data["grid"]
        merged_grid = parse_grid(raw) if isinstance(raw, str) else grid_from_mapping(raw)
    if grid is not None:
        merged_grid.update(parse_grid(grid))
    raw_points = data.get("points", ())
    if not isinstance(raw_points, (list, tuple)):
        raise SweepError("points must be a list of tables of settings", "--config")
    points = tuple(_typed_mapping(p, "points", "--config") for p in raw_points)
    if not merged_grid and not points:
        raise SweepError("a sweep needs --grid \"KEY=V1,V2 ...\" or --config FILE with a grid "
                         f"or points; accepted keys: {_accepted_keys()}")
    merged_base = _typed_mapping(data.get("base", {}), "base", "--config")
    merged_base.update({k: v for k, v in (base or {}).items() if v is not None})
    merged_base = {k: v for k, v in merged_base.items() if v is not None}
    values = {k: data[k] for k in FILE_KEYS if k in data and k not in ("grid", "points", "base")}
    values.update({k: v for k, v in options.items() if v is not None})
    if "out" in values:
        values["out"] = Path(values["out"])
    elif config_file:
        values["out"] = DEFAULT_OUT.parent / Path(config_file).stem
    workers = values.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise SweepError(f"workers={workers!r} must be an integer >= 1", "--workers")
    if values.get("executor", "local") not in EXECUTORS:
        raise SweepError(f"executor {values['executor']!r} is not one of {', '.join(EXECUTORS)}",
                         "--executor")
    _check_ray_options(values)
    if values.get("preset") not in (None, *PRESETS):
        raise SweepError(f"preset {values['preset']!r} is not one of {', '.join(PRESETS)}",
                         "--preset")
    return SweepSpec(grid=merged_grid, points=points, base=merged_base, **values)


def _check_ray_options(values: dict) -> None:
    """The Ray cluster's address and wait: only for the Ray executor, the wait only with an
    address, and a positive number of seconds (a SweepError naming the value otherwise)."""
    for key in ("ray_address", "ray_timeout"):
        if key in values and values.get("executor") != "ray":
            raise SweepError(f"{key}={values[key]!r} acts on Ray tasks: add --executor ray",
                             f"--{key.replace('_', '-')}")
    if "ray_timeout" not in values:
        return
    timeout = values["ray_timeout"]
    if not values.get("ray_address"):
        raise SweepError(f"ray_timeout={timeout!r} is the wait for a cluster to join: give its "
                         "--ray-address (without one a local Ray instance is started)",
                         "--ray-timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise SweepError(f"ray_timeout={timeout!r} must be a number of seconds > 0",
                         "--ray-timeout")


def displaced_dir(out: Path, name: str) -> Path:
    """DIR/.NAME.old: where copy mode moves DIR/NAME while the folder that came back from a Ray
    node takes its place (two renames; a sweep killed between them leaves only this one)."""
    return Path(out) / f".{name}.old"


# ---------------------------------------------------------------------------------------------
# points and names

def expand(grid: Mapping[str, Iterable], points: Iterable[Mapping] = ()) -> list[dict]:
    """Every explicit point (or one empty point) crossed with the grid's cross product."""
    points = list(points) or [{}]
    keys = list(grid)
    expanded = []
    for point in points:
        overlap = sorted(set(point) & set(keys))
        if overlap:
            raise SweepError(f"{overlap[0]!r} is both in the grid and in an explicit point")
        for combo in itertools.product(*(grid[k] for k in keys)):
            expanded.append({**point, **dict(zip(keys, combo))})
    return expanded


def _name_value(value) -> str:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9.+]+", "-", text).strip("-.") or "x"


def point_name(values: Mapping) -> str:
    """A filesystem-safe directory name from a point's values, keys in RunConfig order:
    {"inv_layers": 2, "norm": "batch", "seed": 1} -> "inv_layers-2_norm-batch_seed-1"."""
    keys = [k for k in FIELD_NAMES if k in values]
    return "_".join(f"{k}-{_name_value(values[k])}" for k in keys) or "run"

