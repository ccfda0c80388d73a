"""Probes: training hooks that record stability readings into a run directory.

`build_probes(config)` turns the `--probes` selection (default | all | none | name,name) into
probe instances; `Monitor` runs them for any training loop.
"""
from __future__ import annotations

import importlib

# Names are imported on first use, so that `import probes.collapse` (the detector: pure Python
# over metric files) does not load torch with the probes: `stabgan diagnose` starts at once.
_EXPORTS = {
    "Monitor": "probes.monitor", "Probe": "probes.base", "StepState": "probes.base",
    "Panel": "probes.readings",
    "REGISTRY": "probes.registry", "build_probes": "probes.registry",
    "CriticProbe": "probes.critic", "DiversityProbe": "probes.diversity", "FidProbe": "probes.fid",
    "GradientPenaltyProbe": "probes.gp", "GradientProbe": "probes.gradients",
    "KernelProbe": "probes.kernels", "SpectraProbe": "probes.spectra",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
