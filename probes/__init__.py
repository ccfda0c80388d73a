"""Probes: training hooks that record stability readings into a run directory.

`build_probes("default", z_dim=..., log_every=...)` turns a selection (default | all | none |
name,name) into probe instances; `Monitor` runs them for any training loop and writes the run
directory (`probes.rundir`), and `CollapseGuard` (fed by the Monitor) detects collapse online,
keeps a pre-collapse checkpoint and says when to stop. Nothing here imports the trainer
(stabgan) or the report: a loop of your own needs this package only.
"""
from __future__ import annotations

import importlib

# Names are imported on first use, so that `import probes.collapse` (the detector: pure Python
# over metric files) does not load torch with the probes: `stabgan diagnose` starts at once.
_EXPORTS = {
    "Monitor": "probes.monitor", "CollapseGuard": "probes.guard", "Panel": "probes.readings",
    "Probe": "probes.base", "StepState": "probes.base",
    "REGISTRY": "probes.registry", "ProbeSettings": "probes.registry",
    "build_probes": "probes.registry", "Objective": "probes.objectives",
    "CriticProbe": "probes.critic", "DiversityProbe": "probes.diversity",
    "PenaltyProbe": "probes.penalty", "GradientProbe": "probes.gradients",
    "KernelProbe": "probes.kernels", "SpectraProbe": "probes.spectra",
    "OverfitProbe": "probes.overfit",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
