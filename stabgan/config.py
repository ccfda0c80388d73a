"""RunConfig: every setting of a run in one flat, frozen dataclass; presets and validation.

Click options map one-to-one onto these fields (see cli.py). `resolve_config` applies a preset,
then the user's overrides, then validates; the result is written into config.json and into
every checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from probes.objectives import LOSSES, PENALTIES, Objective
from probes.readings import COVERAGE_K

ARCHS = ("dcgan", "sagan", "igan")  # conv nets, for image datasets
POINT_ARCH = "mlp"  # the one arch of 2-D point datasets, implied by them
INV_WHERE = ("g", "d", "both")
NORMS = ("none", "batch", "spectral", "softmax")  # of the involution kernels
INV_BLOCKS = ("bn", "plain", "residual")
INV_STACKS = ("successive", "stages")
SPECTRAL_NORM = ("none", "g", "d", "both")
PENALTY_UPDATES = ("joint", "separate")
DEVICES = ("auto", "cpu", "cuda")
FEATURES = ("domain", "inception")  # FID feature extractors; the first is the default
PRESETS = ("quick", "toy", "paper", "paper-sagan")
# Where a sweep's points run (stabgan.sweep); here, so the CLI's options name them and the wait
# for a Ray cluster without importing the sweep package at start-up.
EXECUTORS = ("local", "ray")
RAY_JOIN_TIMEOUT_S = 30  # ray.init(address=...) waits for minutes, or for ever, on a non-Ray port
# RunConfig fields restricted to a fixed set of values (the CLI and the sweep grid check them).
CHOICES = {"arch": (*ARCHS, POINT_ARCH), "norm": NORMS, "inv_where": INV_WHERE,
           "inv_stack": INV_STACKS, "inv_block": INV_BLOCKS, "spectral_norm": SPECTRAL_NORM,
           "loss": tuple(LOSSES), "penalty": tuple(PENALTIES), "penalty_update": PENALTY_UPDATES,
           "device": DEVICES}
# Fields an earlier stabgan wrote into config.json and checkpoints, and their names now.
RENAMED_FIELDS = {"gp_lambda": "penalty_weight", "gp_update": "penalty_update"}


POINT_DATASETS = ("ring8", "grid25")  # 2-D Gaussian mixtures (stabgan.toy)
STACKED_MNIST = "stacked-mnist"  # three mnist5k digits as an image's colour channels: 1,000 modes
DATASET_KINDS = ("mnist5k", "folder:PATH", "celeba:ROOT", "mnist:ROOT", STACKED_MNIST,
                 *POINT_DATASETS)
# Samples stacked-mnist's FID and mode count are measured on unless --fid-samples says otherwise:
# VEEGAN's and PacGAN's 26,000. A mode is covered by >= covered_threshold(26,000, 1,000) = 3 of
# them (PacGAN counted 1), which a perfect generator (26 a mode on average) misses with
# probability P(Poisson(26) < 3) = 2e-9 a mode: all 1,000 covered. At 10,000 the threshold falls
# to one sample, and the classifier's misread channels alone cover modes never drawn: real images
# of 500 labels read as 588 modes at 10,000 samples, 508 at 26,000.
STACKED_MNIST_SAMPLES = 26_000
# Samples (and real images) a diversity reading of stacked-mnist compares unless
# --diversity-samples says otherwise. Coverage asks whether a sample falls in a real image's
# 5-nearest-neighbour ball among the real ones: among 64 real images of 1,000 modes those balls
# span other modes, so samples of a few dozen modes reach most of them. Measured on the final
# generators of 3 runs of ns without a penalty (16-22 modes) and 3 of the quick preset
# (938-967), on 2,048 samples and as many real images, the mean of 4 draws:
# 0.14-0.43 against 0.93-0.98 at 64, 0.05-0.25 against 0.89-0.91 at 256, 0.02-0.08 against
# 0.77-0.82 at 1,024 (each reading 4 times the cost of the one before).
STACKED_MNIST_DIVERSITY = 256


class DatasetError(ValueError):
    """The dataset spec names something that is not there or not usable."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the models need to know about a dataset."""
    channels: int  # of an image, or a point's coordinates (2)
    # classes a domain classifier learns for FID and coverage; 0 for unlabelled images and for
    # points, whose modes stabgan.toy counts exactly
    num_classes: int
    points: bool = False  # 2-D points (arch mlp; image_size does not apply)
    # the one-channel labelled dataset whose domain classifier reads each channel on its own,
    # the channels' classes being the digits of the image's class (stacked-mnist: mnist5k's,
    # 10 ** 3 classes); "" when the dataset's own classifier is trained
    channel_source: str = ""


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split `kind:PATH` into (kind, path); raise DatasetError naming the accepted forms."""
    kind, _, path = spec.partition(":")
    if kind in ("mnist5k", STACKED_MNIST, *POINT_DATASETS) and not path:
        return kind, None
    if kind in ("folder", "celeba", "mnist") and path:
        return kind, path
    raise DatasetError(f"dataset {spec!r} is not one of {', '.join(DATASET_KINDS)}")


def dataset_info(spec: str) -> DatasetInfo:
    """Channels, class count and kind of a dataset spec, without loading it."""
    kind, _ = parse_spec(spec)
    if kind in POINT_DATASETS:
        return DatasetInfo(2, 0, points=True)
    return {"mnist5k": DatasetInfo(1, 10), "mnist": DatasetInfo(1, 10),
            STACKED_MNIST: DatasetInfo(3, 1000, channel_source="mnist5k"),
            "folder": DatasetInfo(3, 0), "celeba": DatasetInfo(3, 0)}[kind]


def stage_widths(width: int, image_size: int) -> list[int]:
    """Channel counts of the generator's stages from 4x4 up to S/2, e.g. [4w, 2w, w] for S=32."""
    doublings = (image_size // 4).bit_length() - 1
    return [width * 2 ** (doublings - 1 - i) for i in range(doublings)]


class ConfigError(ValueError):
    """A setting has a value that cannot work; the message names the field and accepted values."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _field(default, help: str):
    """A config field whose help text doubles as the CLI option's help."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RunConfig:
    # model
    arch: str = _field("igan", "dcgan | sagan | igan (images) | mlp (2-D points, implied by "
                               "ring8 and grid25)")
    inv_layers: int = _field(1, "involution blocks (igan), or attention blocks (sagan)")
    inv_where: str = _field("g", "involution blocks in the generator (g), critic (d) or both "
                                 "(sagan: attention in both)")
    inv_stack: str = _field("successive", "successive: all blocks back to back at S/2; stages: "
                                          "one after each of the last N stages (S/2, S/4, ...)")
    inv_block: str = _field("bn", "after each involution: bn (BatchNorm+ReLU in G, LeakyReLU "
                                  "in D), plain (nothing), residual (x + gamma*inv(x), gamma=0)")
    kernel_size: int = _field(3, "involution kernel size K (odd)")
    groups: int = _field(4, "involution groups G (must divide the channels at that layer)")
    reduction: int = _field(2, "involution reduction ratio R")
    norm: str = _field("none", "kernel-generation normalization: none | batch | spectral | softmax")
    width: int = _field(32, "channels at half the image size, where involution/attention sit "
                            "(mlp: 4 x width units per hidden layer)")
    spectral_norm: str = _field("none", "spectral norm on the backbone convs of g, d, both or none")
    z_dim: int = _field(128, "latent dimension")
    # data
    dataset: str = _field("mnist5k", "mnist5k | folder:PATH | celeba:ROOT | mnist:ROOT | "
                                     "stacked-mnist (three digits as RGB, 1,000 modes) | ring8 "
                                     "| grid25 (2-D Gaussian mixtures)")
    image_size: int = _field(32, "square output size, 32 or 64 (images only)")
    holdout: int = _field(0, "real images kept out of training (a fixed choice, the same for "
                             "every --seed); the overfit probe scores them to tell whether the "
                             "critic memorises its training set (0: none)")
    subset: int = _field(0, "train on only this many images, a fixed choice among those not "
                            "held out (0: all of them)")
    # objective (stabgan.losses; probes.objectives says what each logs)
    loss: str = _field("wgan", "wgan (Wasserstein) | hinge | ns (non-saturating) | rpgan "
                               "(relativistic pairing)")
    penalty: str = _field("gp", "gradient penalty: gp (‖∇D‖ → 1 at interpolates) | r1 (at real "
                                "data) | r2 (at generated samples) | r1r2 | none")
    penalty_weight: float = _field(10.0, "penalty weight: λ for gp, γ for r1/r2 (applied as γ/2)")
    penalty_every: int = _field(1, "take the penalty every k critic updates, scaled by k (lazy "
                                   "regularization; 1: every update)")
    penalty_update: str = _field("joint", "joint: one critic Adam step on loss + penalty; "
                                          "separate: two (the loss, then the penalty alone)")
    # optimisation (TTUR)
    steps: int = _field(500, "generator updates")
    batch_size: int = _field(64, "images per critic and generator batch")
    n_critic: int = _field(1, "critic updates per generator update")
    lr_g: float = _field(3e-4, "generator learning rate")
    lr_d: float = _field(1.2e-3, "critic learning rate")
    beta1: float = _field(0.0, "Adam β1")
    beta2: float = _field(0.9, "Adam β2")
    lr_decay: float = _field(0.95, "factor applied to both learning rates every lr-decay-every steps")
    lr_decay_every: int = _field(1000, "steps between learning-rate decays")
    seed: int = _field(0, "seed for weights, noise and data order")
    # bookkeeping
    device: str = _field("auto", "auto | cpu | cuda")
    log_every: int = _field(10, "steps between scalar logs (metrics.jsonl and TensorBoard)")
    sample_every: int = _field(100, "steps between fixed-noise sample grids")
    ckpt_every: int = _field(200, "steps between checkpoints (checkpoints/last.pt)")
    probes: str = _field("default", "default | all | none | comma-separated probe names")
    probe_every: int = _field(0, "steps between gp/critic/kernel/grad readings (0: log-every)")
    spectra_every: int = _field(0, "steps between singular-value readings (0: 10 x log-every)")
    diversity_every: int = _field(0, "steps between diversity readings (0: 10 x log-every, "
                                     "or often enough for 10 in a shorter run)")
    diversity_samples: int = _field(0, "fixed-noise samples of each diversity reading, and "
                                       "real images their coverage is read against: the "
                                       "step's batch, or a fixed draw of training images "
                                       "when the batch is smaller (0: 64 samples against "
                                       "the batch's first 64; stacked-mnist: 256 unless "
                                       "given)")
    overfit_every: int = _field(0, "steps between overfit readings of the --holdout images "
                                   "(0: as diversity's)")
    stop_on_collapse: bool = _field(False, "end the run cleanly at the first collapse event")
    fid_every: int = _field(0, "FID probe cadence in steps (0: off); on 2-D points the "
                               "coverage probe's (0: every 50)")
    fid_samples: int = _field(1000, "generated samples per FID measurement (stacked-mnist: "
                                    "26,000 unless given, to count its 1,000 modes)")
    fid_final: bool = _field(True, "at the end of a completed run, the final generator's FID "
                                   "and classes covered beside the real data's own FID (data "
                                   "with labels; the domain classifier is trained once per "
                                   "machine)")
    threads: int = _field(0, "torch CPU threads (0: torch's default)")
    # validating the collapse detector
    fault: str = _field("", "a fault injected at the end of step S, to check the detector: "
                            "nan@S, lr@S:F (both learning rates xF), data@S (real images "
                            "rescaled to [0, 1]), saturate@S:F (G's involution kernel logits "
                            "xF), collapse@S:K (G maps every z to one of K codes); empty: none")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PRESET_VALUES = {
    # RunConfig's defaults, sized so that `stabgan run` with no flags stays under two minutes on
    # 2 CPU cores whose step times differ up to 2.4x (140 ms a step idle here, 200 ms on the
    # slowest measured; start-up and the final FID add ~5 s) and ends with recognisable digits:
    # 500 steps at 3x the seed's learning rates (3e-4, 1.2e-3; its 1:4 ratio kept) reach domain
    # FID 16.8 (mean of seeds 0-4, one thread; 10 of 10 classes), below the 19.4 of the seed's
    # rates over 800 steps on every seed. Means of seeds 0-2 at 500 steps: 2x the rates 18.9, 3x
    # 16.9, 4x 17.2; a 1:2 ratio (2e-4, 4e-4) 33.9 on seed 0, batch 32 over 800 steps 21.7. A
    # faster decay (x0.8 every 200 steps, at the seed's rates) ended worse (22.1), so the seed's
    # 0.95 per 1,000 stays (it never acts within the run).
    "quick": {},
    # A GAN on 8 Gaussians on a ring whose every sample's mode is known (stabgan.toy), ~15 s on
    # 2 CPU cores. The MLP pair took more than 1,500 steps to reach any mode at the defaults'
    # rates (1e-4, and 1e-3): at 2e-3 with Adam(0.5, 0.9), batch 256, z 8 and the rates halved
    # every 300 steps, non-saturating + R1 (γ 0.1), hinge + R1 and rpgan + R1R2 reached 8 of 8
    # modes by step 650-900 and kept them; without the decay they hop between modes. Layers of
    # 64 units (width 16) take half the time of 128; at 2e-3 they reached the modes later
    # (steps 650-1,400 on seeds 0-3 of those and ns, 3 of 16 runs never); at 3e-3 ns + R1 by
    # step 750-850 on 8 of 8 seeds, hinge + R1 by 800-1,150 on 6 of 8 (seed 7 at 1,400, seed 6
    # never), rpgan + R1R2 by 700-800 (4 seeds) and WGAN-GP by 550-650 (2). One torch thread:
    # on two, such small matrices take 2.5x as long (a run 17.8-21.1 s against 7.1-7.6 s).
    "toy": {"dataset": "ring8", "steps": 1500, "batch_size": 256, "z_dim": 8, "width": 16,
            "loss": "ns", "penalty": "r1", "penalty_weight": 0.1, "lr_g": 3e-3, "lr_d": 3e-3,
            "beta1": 0.5, "lr_decay": 0.5, "lr_decay_every": 300, "diversity_every": 50,
            "sample_every": 250, "ckpt_every": 500, "threads": 1},
    # The seed's Table 1 (CelebA 64x64; use with folder: or celeba: data).
    "paper": {"steps": 50_000, "batch_size": 64, "penalty_weight": 10.0, "z_dim": 128, "lr_g": 1e-4,
              "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9, "lr_decay": 0.95, "lr_decay_every": 1000,
              "image_size": 64, "width": 64, "log_every": 50, "sample_every": 1000,
              "ckpt_every": 1000},
    # The public SAGAN codebase whose defaults are the seed's Table 1, with involution in place
    # of attention: spectral norm in G and D, one block at each of the last stages, the
    # attention block's residual form, the penalty in its own Adam step; 64x64 with width 64
    # (C=64 at S/2, as the seed's Table 2). That codebase defines the 0.95 decay but never
    # applies it; Table 1 lists it, so it is kept.
    "paper-sagan": {"spectral_norm": "both", "inv_stack": "stages", "inv_block": "residual",
             "penalty_update": "separate", "steps": 50_000, "batch_size": 64,
             "penalty_weight": 10.0,
             "z_dim": 128, "lr_g": 1e-4, "lr_d": 4e-4, "beta1": 0.0, "beta2": 0.9,
             "lr_decay": 0.95, "lr_decay_every": 1000, "image_size": 64, "width": 64,
             "log_every": 50, "sample_every": 1000, "ckpt_every": 1000},
}

# Fields a resumed run may change: they do not alter the model, the data or the optimiser.
RESUMABLE_FIELDS = frozenset({"steps", "device", "log_every", "sample_every", "ckpt_every",
                              "probes", "stop_on_collapse", "fid_every", "fid_samples",
                              "fid_final", "threads",
                              "probe_every", "spectra_every", "diversity_every",
                              "diversity_samples", "overfit_every"})

FIELD_NAMES = tuple(f.name for f in fields(RunConfig))

# --fault NAME@STEP[:VALUE]: name -> what its value is (None: it takes none). The faults
# themselves are stabgan.faults'; this is their grammar, checked before torch loads.
FAULTS = {"nan": None, "lr": "factor", "data": None, "saturate": "factor", "collapse": "codes"}


@dataclass(frozen=True)
class FaultSpec:
    name: str
    step: int
    value: float | None


def parse_fault(spec: str) -> FaultSpec | None:
    """`lr@800:10` -> FaultSpec("lr", 800, 10.0); "" -> None; ConfigError naming the forms."""
    if not spec:
        return None
    forms = ", ".join(f"{n}@STEP" + (f":{v.upper()}" if v else "") for n, v in FAULTS.items())
    name, at, rest = spec.partition("@")
    step_text, colon, value_text = rest.partition(":")
    if name not in FAULTS or not at or not step_text.isdigit() or int(step_text) < 1:
        raise ConfigError("fault", f"fault={spec!r} is not one of {forms} (STEP >= 1)")
    kind = FAULTS[name]
    if (kind is None) != (not colon):
        raise ConfigError("fault", f"fault={spec!r}: {name} takes "
                                   f"{'no value' if kind is None else 'a ' + kind} ({forms})")
    value = None
    if kind is not None:
        try:
            value = float(value_text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0) or (kind == "codes" and value != int(value)):
            raise ConfigError("fault", f"fault={spec!r}: the {kind} must be a positive "
                                       f"{'integer' if kind == 'codes' else 'number'}")
    return FaultSpec(name, int(step_text), value)


def upgrade_saved(saved: dict) -> dict:
    """A config.json's or checkpoint's settings with an earlier stabgan's field names renamed."""
    return {RENAMED_FIELDS.get(k, k): v for k, v in saved.items()}


def config_objective(config: RunConfig) -> Objective:
    """The run's loss and penalty, as the Monitor and the detector read them."""
    return Objective(config.loss, config.penalty)


def resolve_config(preset: str = "quick", **overrides) -> RunConfig:
    """Preset values, then every override that is not None, then validation."""
    if preset not in PRESETS:
        raise ConfigError("preset", f"preset {preset!r} is not one of {', '.join(PRESETS)}")
    values = dict(PRESET_VALUES[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(unknown[0], f"unknown setting {unknown[0]!r}")
    # Without --arch, point data means mlp and --inv-layers 0 dcgan; dcgan and mlp have no
    # blocks, sagan one unless asked.
    if "arch" not in overrides or overrides["arch"] is None:
        if values.get("dataset", RunConfig.dataset) in POINT_DATASETS:
            values["arch"] = POINT_ARCH
        elif values.get("inv_layers", RunConfig.inv_layers) == 0:
            values["arch"] = "dcgan"
    if values.get("arch") in ("dcgan", POINT_ARCH) and "inv_layers" not in values:
        values["inv_layers"] = 0
    # Unless told otherwise, stacked-mnist is measured on as many samples as count its modes,
    # and its coverage read on more samples and real images than a batch.
    if values.get("dataset") == STACKED_MNIST:
        values.setdefault("fid_samples", STACKED_MNIST_SAMPLES)
        values.setdefault("diversity_samples", STACKED_MNIST_DIVERSITY)
    config = RunConfig(**values)
    validate(config)
    return config


def _choice(field: str, value, accepted) -> None:
    if value not in accepted:
        raise ConfigError(field, f"{field.replace('_', '-')}={value!r} is not one of "
                                 f"{', '.join(map(str, accepted))}")


def _positive(field: str, value, minimum=1) -> None:
    if value < minimum:
        raise ConfigError(field, f"{field.replace('_', '-')}={value!r} must be >= {minimum}")


def validate(config: RunConfig) -> None:
    """Raise ConfigError for the first setting that cannot work, naming value and accepted range."""
    for name, accepted in CHOICES.items():
        _choice(name, getattr(config, name), accepted)
    _choice("image_size", config.image_size, (32, 64))
    try:
        points = dataset_info(config.dataset).points
    except DatasetError as error:
        raise ConfigError("dataset", str(error)) from None
    if points and config.arch != POINT_ARCH:
        raise ConfigError("arch", f"arch={config.arch!r} builds conv nets for images; dataset "
                                  f"{config.dataset!r} is 2-D points, which take arch "
                                  f"{POINT_ARCH} (implied when --arch is not given)")
    if config.arch == POINT_ARCH and not points:
        raise ConfigError("arch", f"arch={POINT_ARCH!r} is for 2-D point data "
                                  f"({', '.join(POINT_DATASETS)}); dataset {config.dataset!r} "
                                  f"holds images (use {', '.join(ARCHS)})")
    for name in ("steps", "batch_size", "n_critic", "width", "z_dim", "lr_decay_every",
                 "log_every", "sample_every", "ckpt_every", "fid_samples", "kernel_size",
                 "groups", "reduction"):
        _positive(name, getattr(config, name))
    for name in ("inv_layers", "seed", "fid_every", "threads", "probe_every", "spectra_every",
                 "diversity_every", "overfit_every", "holdout", "subset"):
        _positive(name, getattr(config, name), minimum=0)
    if config.diversity_samples:
        _positive("diversity_samples", config.diversity_samples, minimum=COVERAGE_K + 1)
    if 0 < config.subset < config.batch_size:
        raise ConfigError("subset", f"subset={config.subset} must be 0 (all images) or at least "
                                    f"batch-size {config.batch_size}: every batch is drawn from it")
    for name in ("lr_g", "lr_d"):
        if not getattr(config, name) > 0:
            raise ConfigError(name, f"{name.replace('_', '-')}={getattr(config, name)!r} must be > 0")
    if not config.penalty_weight >= 0:
        raise ConfigError("penalty_weight", f"penalty-weight={config.penalty_weight!r} must be >= 0")
    _positive("penalty_every", config.penalty_every)
    if config.penalty == "none":
        for name, default in (("penalty_every", 1), ("penalty_update", "joint")):
            if getattr(config, name) != default:
                raise ConfigError(name, f"{name.replace('_', '-')}={getattr(config, name)!r} "
                                        f"acts on a penalty; penalty=none has none (use "
                                        f"--penalty gp|r1|r2|r1r2 or --{name.replace('_', '-')} "
                                        f"{default})")
    for name in ("beta1", "beta2"):
        if not 0.0 <= getattr(config, name) < 1.0:
            raise ConfigError(name, f"{name}={getattr(config, name)!r} must be in [0, 1)")
    if not 0.0 < config.lr_decay <= 1.0:
        raise ConfigError("lr_decay", f"lr-decay={config.lr_decay!r} must be in (0, 1]")
    if config.arch in ("igan", "sagan"):
        _positive("inv_layers", config.inv_layers)
    elif config.inv_layers:
        raise ConfigError("inv_layers", f"inv-layers={config.inv_layers} needs arch igan or "
                                        f"sagan, not {config.arch!r} (which has no such block)")
    elif config.inv_stack != "successive":
        raise ConfigError("inv_stack", f"inv-stack={config.inv_stack!r} places involution or "
                                       f"attention blocks; arch {config.arch!r} has none")
    if config.arch != "igan":
        for name, default in (("norm", "none"), ("inv_block", "bn")):
            if getattr(config, name) != default:
                raise ConfigError(name, f"{name.replace('_', '-')}={getattr(config, name)!r} "
                                        f"acts on involution layers; arch {config.arch!r} has "
                                        f"none (use --arch igan or --{name.replace('_', '-')} "
                                        f"{default})")
    stages = len(stage_widths(config.width, config.image_size))
    if config.inv_stack == "stages" and config.inv_layers > stages:
        raise ConfigError("inv_layers", f"inv-layers={config.inv_layers} with inv-stack=stages "
                                        f"needs as many stages; a {config.image_size}x"
                                        f"{config.image_size} model has {stages} (S/2 ... 4x4)")
    fault = parse_fault(config.fault)
    if fault and fault.step > config.steps:
        raise ConfigError("fault", f"fault={config.fault!r} is at step {fault.step:,}, after the "
                                   f"run's last step {config.steps:,}: it would never act")
    if config.fault.startswith("saturate@") and not (config.arch == "igan"
                                                      and config.inv_where in ("g", "both")):
        raise ConfigError("fault", f"fault={config.fault!r} acts on the generator's involution "
                                   f"layers; use --arch igan with --inv-where g or both")
    if config.kernel_size % 2 == 0:
        raise ConfigError("kernel_size", f"kernel-size={config.kernel_size} must be odd")
    # every involution position has a multiple of width channels; width is the fewest
    if config.width % config.groups:
        raise ConfigError("groups", f"groups={config.groups} must divide the involution layer's "
                                    f"{config.width} channels (= width)")
    if config.reduction > config.width:
        raise ConfigError("reduction", f"reduction={config.reduction} must be <= the involution "
                                       f"layer's {config.width} channels (= width)")


def run_name(config: RunConfig) -> str:
    """A readable directory name from the settings that define the experiment."""
    parts = [config.dataset if config.arch == POINT_ARCH else config.arch]  # mlp: the data's
    if config.arch == "igan":
        where = "" if config.inv_where == "g" else config.inv_where
        parts += [f"inv{config.inv_layers}{where}", config.norm,
                  f"k{config.kernel_size}g{config.groups}r{config.reduction}"]
        if config.inv_block != "bn":
            parts.append(config.inv_block)
    elif config.arch == "sagan" and config.inv_layers != 1:
        parts.append(f"att{config.inv_layers}")
    if config.inv_stack != "successive":
        parts.append(config.inv_stack)
    if config.spectral_norm != "none":
        parts.append(f"sn{config.spectral_norm}")
    if config.loss != "wgan" or config.penalty != "gp":
        parts += [config.loss, config.penalty]
    if config.penalty_every != 1:
        parts.append(f"every{config.penalty_every}")
    if config.penalty_update != "joint":
        parts.append(f"{config.penalty}sep")
    if config.subset:
        parts.append(f"subset{config.subset}")
    if config.holdout:
        parts.append(f"holdout{config.holdout}")
    return "-".join(parts + [f"s{config.seed}"])
