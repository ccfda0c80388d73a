"""The probes of a `stabgan run`: its `--probes` selection over probes' registry plus the
measures of sample quality (the FID probe for images, the exact mode count for 2-D points),
built from its RunConfig, then its `--fault`."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from probes.registry import REGISTRY as PROBES_REGISTRY, build_probes
from stabgan.config import RunConfig, dataset_info
from stabgan.data import HeldOut
from stabgan.faults import build_fault
from stabgan.fid_probe import FidProbe
from stabgan.toy import CoverageProbe

# probes' registry with the quality measures, after the other probes of the default set,
# before those only in `all`. `fid` joins `default` and `all` only when --fid-every > 0 (its
# `enabled`), on images; on 2-D points `coverage` counts the modes exactly in its place, always
# on (--fid-every: its cadence).
REGISTRY: dict[str, tuple[type, bool]] = {
    **{name: entry for name, entry in PROBES_REGISTRY.items() if entry[1]},
    FidProbe.name: (FidProbe, True),
    CoverageProbe.name: (CoverageProbe, True),
    **{name: entry for name, entry in PROBES_REGISTRY.items() if not entry[1]},
}
# why a quality measure cannot run on the other kind of data
MISFITS = {"fid": "FID measures images; probe 'coverage' counts the modes of 2-D points exactly",
           "coverage": "it counts the modes of 2-D points (ring8, grid25); images have probe "
                       "'fid'"}


def run_probes(config: RunConfig, held_out: HeldOut | None = None,
               reference: torch.Tensor | None = None) -> list:
    """Probe instances for config.probes, cadences and sizes from config, then config.fault's
    fault (stabgan.faults), if any; ValueError naming an unknown probe and the known ones, or
    a quality measure that does not apply to the dataset. held_out: the run's --holdout images
    (stabgan.data.split_dataset), which the overfit probe scores; reference: the real images
    the diversity probe reads coverage against when a batch is too small
    (stabgan.data.reference_images)."""
    spec = config.probes.strip()
    # the quality measure --fid-every times, and the other kind of data's, which cannot run
    measure, misfit = ("coverage", "fid") if dataset_info(config.dataset).points else \
        ("fid", "coverage")
    named = [n.strip() for n in spec.split(",")]
    if config.fid_every and spec not in ("default", "all") and measure not in named:
        raise ValueError(f"--fid-every {config.fid_every} asks for the {measure} probe but "
                         f"probes={spec!r} leaves it out; add {measure} to --probes or drop "
                         f"--fid-every")
    if misfit in named:
        raise ValueError(f"probe {misfit!r} does not apply to dataset {config.dataset!r}: "
                         f"{MISFITS[misfit]}")
    registry = {name: entry for name, entry in REGISTRY.items() if name != misfit}
    fault = build_fault(config.fault)
    settings = SimpleNamespace(**config.to_dict(), held_out=held_out,
                               diversity_reference=reference)
    return build_probes(spec, settings, registry=registry) + ([fault] if fault else [])
