"""The study's sweeps. The seed study: does "two successive involution layers" make WGAN-GP training collapse?

Sweeps of seed-faithful iGANs (`--preset paper-sagan`: spectral norm in G and D, one involution block
at each of the last stages, the attention block's residual form, the penalty in its own Adam
step, Table 1's optimiser), scaled to what two CPU cores train in a session: mnist5k at 32x32
with width 32 (the seed: CelebA 64x64, width 64, 50,000 steps). Every run logs every probe,
domain FID on 1,000 samples every 2% of the run, and keeps going after a collapse, so the
curves after the onset are there to see. Every sweep writes into one folder (studies/seed-study),
whose finished runs are kept in the repository.

  faithful    inv_layers {1, 2} x 3 seeds, 5,000 steps: the seed's central comparison
  successive  the other reading of "two successive layers": blocks stacked at S/2 with nothing
              between them (--inv-stack successive --inv-block plain), inv_layers {1, 2}
  norms       kernel normalization {batch, spectral, softmax} on two faithful layers
  mechanism   involution in G, D or both x 1, 2 layers x kernel BatchNorm or none, 2,000 steps
  table2      the seed's Table 2: seven (K, G, R) cases at width 64, 2,000 steps
  archs       dcgan, sagan and igan, 2,000 steps

table2 and archs train stabgan's own models (dcgan has no involution stage for the seed's
layout) with the seed's Table 1 settings (`--preset paper`, at the study's size), with the same
bookkeeping as the rest.

Each sweep is resumable: running it again skips finished runs and resumes interrupted ones.
`scripts/reproduction_study.py` runs them (`--only faithful`, ...) and writes docs/reproduction.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from stabgan.config import ARCHS
from stabgan.sweep import SweepSpec

DEFAULT_DATASET = "mnist5k"
SEED_SWEEPS = ("faithful", "successive", "norms")  # the long, seed-faithful runs
SHORT_SWEEPS = ("mechanism", "table2", "archs")  # SHORT_STEPS a run (--steps)
SWEEPS = (*SEED_SWEEPS, *SHORT_SWEEPS)
# What each sweep runs, in words: the doc's line for a sweep without a finished run.
SWEEP_TEXT = {"faithful": "the seed's layout with 1 and 2 involution layers",
              "successive": "1 and 2 involution layers stacked at one resolution",
              "norms": "two faithful layers with batch-, spectral- and softmax-normalized kernels",
              "mechanism": "involution in G, D or both × 1, 2 layers × kernel BatchNorm or none",
              "table2": "the seed's seven (K, G, R) cases at width 64",
              "archs": "dcgan, sagan and igan"}


class Setting(NamedTuple):
    """A mechanism setting: where the involution layers are, how they are stacked, how many,
    and the kernel generation's normalization."""
    inv_where: str
    inv_stack: str
    inv_layers: int
    norm: str


SWEEP_KEYS = {"archs": ("arch",), "table2": ("kernel_size", "groups", "reduction"),
              "mechanism": Setting._fields,  # a grid point, over seeds
              **{name: ("inv_layers", "norm") for name in SEED_SWEEPS}}
LONG_STEPS = 5000   # faithful, successive, norms
SHORT_STEPS = 2000  # mechanism, table2, archs
# Where batch statistics meet the WGAN-GP critic: the seed layout with involution in G, D or
# both, one or two layers, kernel generation with or without BatchNorm; the stacked (plain)
# form for both. Involution in G only without BatchNorm (1 and 2 layers) and with it (2
# layers) are the faithful and norms sweeps (5,000 steps, healthy), so they are not run again.
# Ordered by what the question needs first: the critic with batch statistics, its controls.
MECHANISM_SETTINGS = (
    *({"inv_where": where, "inv_layers": layers, "norm": norm}
      for where in ("both", "d") for norm in ("batch", "none") for layers in (1, 2)),
    {"inv_where": "g", "inv_layers": 1, "norm": "batch"},
    *({"inv_where": "both", "inv_stack": "successive", "inv_block": "plain", "inv_layers": 2,
       "norm": norm} for norm in ("batch", "none")),
)
# The seed's Table 2 (CelebA 64x64, Inception FID, C=64 at the involution layer):
# case, K, G, R, min FID, #parameters as printed, seconds per step.
SEED_TABLE2 = (
    (1, 3, 4, 2, 61.51, 800, 0.154),
    (2, 7, 4, 8, 76.00, 520, 0.333),
    (3, 7, 4, 2, 112.85, 2080, 0.342),
    (4, 3, 4, 8, 76.01, 200, 0.152),
    (5, 3, 1, 2, 62.34, 2336, 0.152),
    (6, 1, 4, 2, 68.73, 644, 0.120),
    (7, 5, 4, 2, 63.37, 1312, 0.230),
)
STUDY_SEEDS = (0, 1, 2)
STUDY_BASE = {"image_size": 32, "width": 32, "probes": "all", "fid_samples": 1000,
              "log_every": 10, "sample_every": 250, "ckpt_every": 250}


def study_base(steps: int, base: dict | None = None) -> dict:
    """STUDY_BASE for runs of `steps` steps (FID every 2% of the run), then base's overrides."""
    return {**STUDY_BASE, "steps": steps, "fid_every": max(1, steps // 50), **(base or {})}


def mechanism_sweep(out: Path, steps: int = SHORT_STEPS, workers: int | None = 2,
                    seeds: tuple[int, ...] = STUDY_SEEDS, base: dict | None = None,
                    **spec) -> SweepSpec:
    """Which setting makes involution layers unstable: MECHANISM_SETTINGS x seeds in the seed
    layout, seed by seed (every setting's first seed before any second one), into OUT/mechanism."""
    points = tuple({**setting, "seed": seed} for seed in seeds for setting in MECHANISM_SETTINGS)
    return SweepSpec(points=points, base=study_base(steps, base), preset="paper-sagan", workers=workers,
                     out=Path(out) / "mechanism", **spec)


def seed_study(out: Path, steps: int = LONG_STEPS, workers: int | None = 2,
               seeds: tuple[int, ...] = STUDY_SEEDS, base: dict | None = None,
               **spec) -> dict[str, SweepSpec]:
    """The study's sweeps, in the order its questions need them, each into OUT/<name>.
    `base` overrides run settings of every sweep (a smoke test shrinks the models with it)."""
    base = study_base(steps, base)
    common = {"preset": "paper-sagan", "workers": workers, **spec}
    return {
        "faithful": SweepSpec(grid={"inv_layers": (1, 2), "seed": seeds}, base=base,
                              out=Path(out) / "faithful", **common),
        "successive": SweepSpec(grid={"inv_layers": (1, 2), "seed": seeds},
                                base={**base, "inv_stack": "successive", "inv_block": "plain"},
                                out=Path(out) / "successive", **common),
        "norms": SweepSpec(grid={"norm": ("batch", "spectral", "softmax"), "seed": seeds},
                           base={**base, "inv_layers": 2}, out=Path(out) / "norms", **common),
    }


@dataclass
class StudyOptions:
    """What a study run asks for (scripts/reproduction_study.py's options)."""
    out: Path                      # folder of every sweep
    doc: Path | None = None        # None: docs/reproduction.md
    steps: int | None = None       # mechanism, table2, archs: None is SHORT_STEPS
    seed_steps: int | None = None  # faithful, successive, norms: None is LONG_STEPS
    dataset: str = DEFAULT_DATASET
    quick_check: bool = False      # tiny models, few steps, one seed: a smoke test
    workers: int | None = None
    executor: str = "local"
    ray_address: str | None = None
    no_report: bool = False


def default_out(quick_check: bool) -> Path:
    """Where the study's runs live. Its finished runs are the study's record and are kept in
    the repository (studies/seed-study, without checkpoints and TensorBoard events, see
    .gitignore), so a later checkout regenerates the doc and resumes the sweeps from them."""
    return Path("runs/seed-study-check" if quick_check else "studies/seed-study")


def sweep_steps(args: StudyOptions) -> tuple[int, int]:
    """Steps of the long sweeps and of the short ones (4 each in a quick check)."""
    if args.quick_check:
        return args.seed_steps or 4, args.steps or 4
    return args.seed_steps or LONG_STEPS, args.steps or SHORT_STEPS


def reproduction_sweeps(args: StudyOptions) -> dict[str, SweepSpec]:
    """Every sweep of the study (SWEEPS, in that order), each into args.out/<name>; quick_check
    shrinks each to a few tiny runs of one seed."""
    seeds, cases, tiny = STUDY_SEEDS, SEED_TABLE2, {}
    if args.quick_check:
        seeds, cases = (0,), SEED_TABLE2[:2]
        tiny = {"width": 8, "z_dim": 16, "batch_size": 16, "probes": "none", "fid_every": 0,
                "log_every": 1, "sample_every": 1000, "ckpt_every": 1000}
    long_steps, short_steps = sweep_steps(args)
    base = {"dataset": args.dataset, **tiny}
    short = study_base(short_steps, base)
    spec = dict(workers=args.workers, executor=args.executor, ray_address=args.ray_address,
                report=not args.no_report)
    # cases the claims compare first (K = 1, 5, 7 beside case 1; then R = 8; then G = 1); the
    # slow case 2 (K = 7, R = 8), which no claim needs, last
    order = {1: 0, 6: 1, 7: 2, 3: 3, 4: 4, 5: 5, 2: 6}
    table2_points = tuple({"kernel_size": k, "groups": g, "reduction": r}
                          for _, k, g, r, *_ in sorted(cases, key=lambda c: order[c[0]]))
    return {
        **seed_study(args.out, long_steps, seeds=seeds, base=base, **spec),
        "mechanism": mechanism_sweep(args.out, short_steps, seeds=seeds, base=base, **spec),
        "table2": SweepSpec(grid={"seed": seeds}, points=table2_points,
                            base={**short, "width": 64, **tiny}, preset="paper",
                            out=args.out / "table2", **spec),
        "archs": SweepSpec(grid={"arch": ARCHS, "seed": seeds}, base=short, preset="paper",
                           out=args.out / "archs", **spec),
    }
