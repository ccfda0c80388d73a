"""The probe registry: `--probes` names -> probe classes, and `build_probes`."""
from __future__ import annotations

import dataclasses

from probes.critic import CriticProbe
from probes.diversity import DiversityProbe
from probes.fid import FidProbe
from probes.penalty import PenaltyProbe
from probes.gradients import GradientProbe
from probes.inject import build_fault
from probes.kernels import KernelProbe
from probes.spectra import SpectraProbe
from stabgan.config import RunConfig, dataset_info
from stabgan.toy import CoverageProbe

# name -> (probe class, in the default set), in the order probes run within a step.
# The default set is what the collapse detector reads; `gradients` (two tags per layer, a
# weight copy per reading) is for finding the layer that went wrong, so only in `all`.
# `fid` joins `default` and `all` only when --fid-every > 0 (its `enabled`), on images; on 2-D
# points `coverage` counts the modes exactly in its place, always on (--fid-every: its cadence).
REGISTRY: dict[str, tuple[type, bool]] = {
    probe.name: (probe, default) for probe, default in (
        (PenaltyProbe, True),
        (CriticProbe, True),
        (KernelProbe, True),
        (SpectraProbe, True),
        (DiversityProbe, True),
        (FidProbe, True),
        (CoverageProbe, True),
        (GradientProbe, False),
    )}
# why a coverage measure cannot run on the other kind of data
MISFITS = {"fid": "FID measures images; probe 'coverage' counts the modes of 2-D points exactly",
           "coverage": "it counts the modes of 2-D points (ring8, grid25); images have probe "
                       "'fid'"}


def build_probes(config="default", **settings) -> list:
    """Probe instances for config.probes, then config.fault's fault (probes.inject), if any;
    ValueError naming an unknown probe and the known ones.

    config is a RunConfig, or a selection string for loops without one: then cadences and
    sizes come from RunConfig's defaults and `settings`, e.g.
    `build_probes("default", z_dim=64, log_every=10)`.
    """
    if isinstance(config, str):
        config = RunConfig(probes=config, **settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    spec = config.probes.strip()
    points = dataset_info(config.dataset).points
    # the coverage measure --fid-every times, and the other kind of data's, which cannot run
    measure, misfit = ("coverage", "fid") if points else ("fid", "coverage")
    if config.fid_every and spec not in ("default", "all") and measure not in spec.split(","):
        raise ValueError(f"--fid-every {config.fid_every} asks for the {measure} probe but "
                         f"probes={spec!r} leaves it out; add {measure} to --probes or drop "
                         f"--fid-every")
    fault = build_fault(config.fault)
    faults = [fault] if fault else []
    if spec == "none":
        return faults
    if spec in ("default", "all"):
        names = [n for n, (cls, default) in REGISTRY.items()
                 if (spec == "all" or default) and cls.enabled(config) and n != misfit]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in REGISTRY]
        if unknown or not names:
            known = ", ".join(["default", "all", "none", *REGISTRY])
            raise ValueError(f"probes={spec!r}: unknown probe {unknown[0] if unknown else ''!r}; "
                             f"choose from {known}")
        if misfit in names:
            raise ValueError(f"probe {misfit!r} does not apply to dataset {config.dataset!r}: "
                             f"{MISFITS[misfit]}")
    return [REGISTRY[n][0].from_config(config) for n in names] + faults
