"""FID and mode-coverage probe: how far the generated distribution is from the data's.

Collapse that the critic-side readings miss ends here: mode collapse drops whole classes
(`coverage/modes` falls, `coverage/kl` — KL of the predicted class histogram from uniform —
rises) and the Fréchet distance of features (`fid/<features>`) rises or stops falling.
Features come from `stabgan.fid`: the domain classifier trained on the run's labelled dataset
(cached; trained once, about a minute on 2 CPU cores), or pytorch-fid's Inception from local
weights for unlabelled data. The extractor and the real statistics are loaded when the probe
attaches, before the first step; each reading generates `samples` images from the probe's own
seeded noise (eval mode, global RNG untouched, involution kernels restored).
Cost: `samples` generator and feature passes per reading (about a second per 1,000 32×32
images with the domain classifier on one CPU thread), so it runs only when --fid-every > 0.
"""
from __future__ import annotations

from torch import nn

from probes.base import Probe, StepState, sampling
from probes.readings import FID_PANELS
from stabgan.config import dataset_info


class FidProbe(Probe):
    """fid/<features>, and coverage/modes, coverage/kl with a classifier's features."""

    name = "fid"
    panels = FID_PANELS

    def __init__(self, every: int, samples: int = 1000, dataset: str = "mnist5k",
                 image_size: int = 32, z_dim: int | None = None, seed: int = 0,
                 extractor=None, real_stats=None):
        """extractor / real_stats: a `stabgan.fid` FeatureExtractor and its (mu, sigma) of the
        real data; by default the dataset's (domain classifier when it has labels)."""
        super().__init__(every)
        if samples < 2:
            raise ValueError(f"FidProbe: samples={samples!r} must be >= 2")
        self.samples, self.dataset, self.image_size = samples, dataset, image_size
        self.z_dim, self.seed = z_dim, seed
        self.extractor, self.real_stats = extractor, real_stats
        self.generator: nn.Module | None = None

    @classmethod
    def enabled(cls, config) -> bool:
        return config.fid_every > 0

    @classmethod
    def from_config(cls, config) -> "FidProbe":
        if not cls.enabled(config):
            raise ValueError("probe 'fid' is off while --fid-every is 0; "
                             "give it a cadence in steps")
        return cls(every=config.fid_every, samples=config.fid_samples, dataset=config.dataset,
                   image_size=config.image_size, z_dim=config.z_dim, seed=config.seed)

    def attach(self, generator: nn.Module, critic: nn.Module) -> None:
        # stabgan.fid loads scipy: imported when the probe runs, never by a run without it
        from stabgan import fid

        self.z_dim = self.z_dim or getattr(generator, "z_dim", None)
        if not self.z_dim:
            raise ValueError("FidProbe: the generator has no z_dim attribute; "
                             "pass FidProbe(z_dim=...)")
        device = next(generator.parameters()).device
        if self.extractor is None:
            features = "domain" if dataset_info(self.dataset).num_classes else "inception"
            self.extractor = fid.get_extractor(features, self.dataset, self.image_size,
                                               device=device)
        if self.real_stats is None:
            self.real_stats = fid.real_statistics(self.extractor, self.dataset, self.image_size)
        self.generator = generator

    def on_step(self, state: StepState) -> dict[str, float]:
        from stabgan.fid import measure_generator

        device = next(self.generator.parameters()).device
        with sampling(self.generator) as generator:
            return measure_generator(generator, self.z_dim, self.extractor, self.real_stats,
                                     n=self.samples, device=device, seed=self.seed)

    def detach(self) -> None:
        self.generator = None
