"""The probe registry: probe names -> probe classes, and `build_probes` for a selection.

A selection is what `--probes` takes: `default` (the probes the collapse detector reads),
`all`, `none`, or probe names separated by commas. Each probe builds itself (`from_config`)
from settings: its cadence and sizes, read as attributes of any object that has them (stabgan
passes its RunConfig) or given as keyword arguments over `ProbeSettings`' defaults.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from probes.critic import CriticProbe
from probes.diversity import DiversityProbe
from probes.penalty import PenaltyProbe
from probes.gradients import GradientProbe
from probes.kernels import KernelProbe
from probes.overfit import OverfitProbe
from probes.spectra import SpectraProbe

# name -> (probe class, in the default set), in the order probes run within a step.
# The default set is what the collapse detector reads; `gradients` (two tags per layer, a
# weight copy per reading) is for finding the layer that went wrong, so only in `all`.
# `overfit` joins both only when there are held-out images to score (its `enabled`).
REGISTRY: dict[str, tuple[type, bool]] = {
    probe.name: (probe, default) for probe, default in (
        (PenaltyProbe, True),
        (CriticProbe, True),
        (KernelProbe, True),
        (SpectraProbe, True),
        (DiversityProbe, True),
        (OverfitProbe, True),
        (GradientProbe, False),
    )}


@dataclass(frozen=True)
class ProbeSettings:
    """What the registered probes read to build themselves, for a loop without a RunConfig:
    the RunConfig fields of the same names, with the same defaults, and the held-out images."""
    log_every: int = 10       # the Monitor's cadence
    probe_every: int = 0      # gp, critic, kernel and gradient readings (0: log_every)
    spectra_every: int = 0    # singular values (0: 10 x log_every)
    diversity_every: int = 0  # diversity (0: 10 x log_every; probes.base.sample_cadence)
    diversity_samples: int = 0  # its samples, and real images read against (0: 64, the batch)
    overfit_every: int = 0    # overfit readings of held-out images (0: as diversity's)
    z_dim: int = 128          # the generator's noise size (diversity's fixed batch)
    seed: int = 0             # fixed noise: diversity's from seed + 0x5EED, overfit's + 0x0F17
    # (real images the loop never trains on, a fixed sample of images it trains on): the
    # overfit probe's; not a RunConfig field (stabgan passes its run's --holdout images)
    held_out: tuple | None = None
    # real images diversity's coverage reads against in place of the step's batch (None: the
    # batch); not a RunConfig field (stabgan passes a fixed draw when the batch is smaller)
    diversity_reference: torch.Tensor | None = None


def build_probes(selection: str = "default", settings=None, registry=None,
                 **overrides) -> list:
    """Probe instances for a selection of registry's probes (REGISTRY when None); ValueError
    naming an unknown probe and the known ones.

    settings: any object with ProbeSettings' attributes (a probe's `enabled` and
    `from_config` read what they need), with `overrides` replaced; when None,
    ProbeSettings(**overrides), e.g. `build_probes("default", z_dim=64, log_every=10)`.
    """
    if settings is None:
        settings = ProbeSettings(**overrides)
    elif overrides:
        settings = dataclasses.replace(settings, **overrides)
    registry = REGISTRY if registry is None else registry
    spec = selection.strip()
    if spec == "none":
        return []
    if spec in ("default", "all"):
        names = [n for n, (cls, default) in registry.items()
                 if (spec == "all" or default) and cls.enabled(settings)]
    else:
        names = [n.strip() for n in spec.split(",") if n.strip()]
        unknown = [n for n in names if n not in registry]
        if unknown or not names:
            known = ", ".join(["default", "all", "none", *registry])
            raise ValueError(f"probes={spec!r}: unknown probe {unknown[0] if unknown else ''!r}; "
                             f"choose from {known}")
    return [registry[n][0].from_config(settings) for n in names]
