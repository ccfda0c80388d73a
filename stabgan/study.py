"""The seed study: does "two successive involution layers" make WGAN-GP training collapse?

Sweeps of seed-faithful iGANs (`--preset seed`: spectral norm in G and D, one involution block
at each of the last stages, the attention block's residual form, the penalty in its own Adam
step, Table 1's optimiser), scaled to what two CPU cores train in a session: mnist5k at 32x32
with width 32 (the seed: CelebA 64x64, width 64, 50,000 steps). Every run logs every probe,
domain FID on 1,000 samples every 2% of the run, and keeps going after a collapse, so the
curves after the onset are there to see.

  faithful    inv_layers {1, 2} x 3 seeds: the seed's central comparison
  successive  the other reading of "two successive layers": blocks stacked at S/2 with nothing
              between them (--inv-stack successive --inv-block plain), inv_layers {1, 2}
  norms       kernel normalization {batch, spectral, softmax} on two faithful layers

Each sweep is resumable: running it again skips finished runs and resumes interrupted ones.
`scripts/reproduction_study.py` runs them (`--only faithful`, ...) and writes docs/reproduction.md.
"""
from __future__ import annotations

from pathlib import Path

from stabgan.sweep import SweepSpec

STUDY_SEEDS = (0, 1, 2)
STUDY_BASE = {"image_size": 32, "width": 32, "probes": "all", "fid_samples": 1000,
              "log_every": 10, "sample_every": 250, "ckpt_every": 250}


def seed_study(out: Path, steps: int = 5000, workers: int | None = 2,
               seeds: tuple[int, ...] = STUDY_SEEDS, base: dict | None = None,
               **spec) -> dict[str, SweepSpec]:
    """The study's sweeps, in the order its questions need them, each into OUT/<name>.
    `base` overrides run settings of every sweep (a smoke test shrinks the models with it)."""
    base = {**STUDY_BASE, "steps": steps, "fid_every": max(1, steps // 50), **(base or {})}
    common = {"preset": "seed", "workers": workers, **spec}
    return {
        "faithful": SweepSpec(grid={"inv_layers": (1, 2), "seed": seeds}, base=base,
                              out=Path(out) / "faithful", **common),
        "successive": SweepSpec(grid={"inv_layers": (1, 2), "seed": seeds},
                                base={**base, "inv_stack": "successive", "inv_block": "plain"},
                                out=Path(out) / "successive", **common),
        "norms": SweepSpec(grid={"norm": ("batch", "spectral", "softmax"), "seed": seeds},
                           base={**base, "inv_layers": 2}, out=Path(out) / "norms", **common),
    }
