"""The probes of a `stabgan run`: its `--probes` selection over probes' registry plus the FID
probe, built from its RunConfig, then its `--fault`."""
from __future__ import annotations

from probes.registry import REGISTRY as PROBES_REGISTRY, build_probes
from stabgan.config import RunConfig
from stabgan.faults import build_fault
from stabgan.fid_probe import FidProbe

# probes' registry with the FID probe, which joins `default` and `all` only when --fid-every > 0
# (its `enabled`): after the other probes of the default set, before those only in `all`.
REGISTRY: dict[str, tuple[type, bool]] = {
    **{name: entry for name, entry in PROBES_REGISTRY.items() if entry[1]},
    FidProbe.name: (FidProbe, True),
    **{name: entry for name, entry in PROBES_REGISTRY.items() if not entry[1]},
}


def run_probes(config: RunConfig) -> list:
    """Probe instances for config.probes, cadences and sizes from config, then config.fault's
    fault (stabgan.faults), if any; ValueError naming an unknown probe and the known ones."""
    spec = config.probes.strip()
    if config.fid_every and spec not in ("default", "all") and "fid" not in spec.split(","):
        raise ValueError(f"--fid-every {config.fid_every} asks for the fid probe but "
                         f"probes={spec!r} leaves it out; add fid to --probes or drop --fid-every")
    fault = build_fault(config.fault)
    return build_probes(spec, config, registry=REGISTRY) + ([fault] if fault else [])
