"""Probes: training hooks that record stability readings into a run directory.

`build_probes(config)` turns the `--probes` selection (default | all | none | name,name) into
probe instances; `Monitor` runs them for any training loop.
"""
from __future__ import annotations

from probes.base import Probe, StepState
from probes.monitor import Monitor

# name -> (probe class, in the default set); filled in by the probe modules' registration below.
REGISTRY: dict[str, tuple[type[Probe], bool]] = {}


def build_probes(config) -> list[Probe]:
    """Probe instances for config.probes; ValueError naming an unknown probe and the known ones."""
    spec = config.probes.strip()
    if spec == "none":
        return []
    if spec in ("default", "all"):
        names = [n for n, (_, default) in REGISTRY.items() if spec == "all" or default]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in REGISTRY]
        if unknown or not names:
            known = ", ".join(["default", "all", "none", *REGISTRY])
            raise ValueError(f"probes={spec!r}: unknown probe {unknown[0] if unknown else ''!r}; "
                             f"choose from {known}")
    return [REGISTRY[n][0].from_config(config) for n in names]


__all__ = ["Monitor", "Probe", "StepState", "REGISTRY", "build_probes"]
