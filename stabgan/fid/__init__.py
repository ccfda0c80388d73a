"""Fréchet distance between generated and real images, computed offline.

Two feature extractors share one interface, `extractor.features(images) -> (N, D)`:
- `domain` (default): a small CNN that stabgan trains on the run's labelled dataset and caches;
  its pooled penultimate layer gives the FID features, its logits give mode coverage. On
  stacked-mnist it is mnist5k's, read on each of the three channels (`PerChannelExtractor`).
- `inception`: pytorch-fid's FID Inception (2048-d pool features), loaded from a local weights
  file only. Nothing in this module downloads.

The distance itself, ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1Σ2), is computed exactly in float64
from the eigenvalues of a symmetric matrix that shares its spectrum with Σ1Σ2 (see
`frechet_distance`), with no matrix square root and no complex numbers.

The package: `distance` (the numerics: Fréchet distance, statistics, mode coverage),
`extractors` (the two feature extractors and their weights), and here the real and generated
statistics and the measurement of a generator or a run's checkpoint.

Caches (under `cache_root()`): `domain/<key>.pt` + `.json` (the classifier and its held-out
accuracy) and `stats/<key>-<features>.npz` (real-data mean and covariance), where the key names
the dataset spec and image size. They are written atomically (`rundir.files.atomic_write_bytes`):
parallel runs of a sweep may fill the same cache, and readers never see a partial file.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from probes.rundir.files import CheckpointError, atomic_write_bytes
from probes.rundir.reader import RunDir
from stabgan.cache import CACHE_ENV, cache_root  # noqa: F401  (CACHE_ENV: part of this API)
from stabgan.config import FIELD_NAMES, RunConfig, dataset_info, upgrade_saved
from stabgan.data import load_dataset
from stabgan.faults import build_fault
from stabgan.fid.distance import (COVERAGE_MIN_SHARE, frechet_distance, mode_coverage,
                                  statistics)
from stabgan.fid.extractors import (INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_FILE,
                                    DomainClassifier, DomainExtractor, FeatureExtractor,
                                    FIDError, InceptionExtractor, MissingWeightsError,
                                    PerChannelExtractor, cache_key,
                                    dataset_tensors, domain_extractor, get_extractor,
                                    inception_weights_path, progress_bar,
                                    train_domain_classifier)
from stabgan.models import build_models

REAL_STATS_MAX = 10_000  # real images used for the statistics (all of them when fewer)


# ----------------------------------------------------------------------------------------------
# Real and generated statistics

def real_statistics(extractor: FeatureExtractor, dataset_spec: str, image_size: int,
                    cache_dir=None, max_images: int = REAL_STATS_MAX
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the dataset's features, cached per (dataset, features, image size).

    Uses every image, or a seed-fixed subset of max_images. A cache made with other weights
    (different fingerprint) or another image count is recomputed.
    """
    key = cache_key(dataset_spec, image_size)
    path = cache_root(cache_dir) / "stats" / f"{key}-{extractor.name}.npz"
    if path.is_file():
        try:
            with np.load(path) as cached:
                if (str(cached["fingerprint"]) == extractor.fingerprint
                        and int(cached["max_images"]) == max_images):
                    return cached["mu"], cached["sigma"]
        except (OSError, KeyError, ValueError):
            pass  # unreadable or from an older layout: recompute
    dataset = load_dataset(dataset_spec, image_size)
    indices = torch.arange(len(dataset))
    if len(dataset) > max_images:
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:max_images]
    chunks = []
    bar = progress_bar(len(indices), f"real statistics ({extractor.name})", "img")
    for start in range(0, len(indices), 1000):
        images, _ = dataset_tensors(dataset, indices[start:start + 1000])
        chunks.append(extractor.features(images))
        bar.update(len(images))
    bar.close()
    mu, sigma = statistics(torch.cat(chunks))
    buffer = io.BytesIO()
    np.savez(buffer, mu=mu, sigma=sigma, fingerprint=np.array(extractor.fingerprint),
             max_images=np.array(max_images), n=np.array(len(indices)))
    atomic_write_bytes(path, buffer.getvalue())
    return mu, sigma


@torch.no_grad()
def generated_features(generator: nn.Module, z_dim: int | tuple[int, ...],
                       extractor: FeatureExtractor, n: int = 5000, batch_size: int = 250,
                       device="cpu", seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features (and logits, for a classifier) of n samples of `generator(z)`.

    z ~ N(0, I) of shape (batch, *z_dim), drawn from its own seeded RNG so the caller's random
    state is untouched and the same seed gives the same z. The generator runs in eval mode and
    is put back in its previous mode. ValueError if it produces non-finite images.
    """
    shape = (z_dim,) if isinstance(z_dim, int) else tuple(z_dim)
    rng = torch.Generator().manual_seed(seed)
    was_training = generator.training
    generator.eval()
    features, logits = [], []
    try:
        for start in range(0, n, batch_size):
            z = torch.randn((min(batch_size, n - start), *shape), generator=rng).to(device)
            images = generator(z)
            if not torch.isfinite(images).all():
                raise ValueError("the generator produced non-finite images; no FID for them")
            f, l = extractor.features_and_logits(images)
            features.append(f)
            if l is not None:
                logits.append(l)
    finally:
        generator.train(was_training)
    return torch.cat(features), (torch.cat(logits) if logits else None)


def measure_generator(generator: nn.Module, z_dim, extractor: FeatureExtractor, real_stats,
                      n: int = 5000, batch_size: int = 250, device="cpu", seed: int = 0) -> dict:
    """{"fid/<features>": ...} plus, for a domain classifier, coverage/modes and coverage/kl."""
    features, logits = generated_features(generator, z_dim, extractor, n, batch_size, device, seed)
    readings = {f"fid/{extractor.name}": frechet_distance(*statistics(features), *real_stats)}
    if logits is not None:
        readings.update(mode_coverage(logits, extractor.num_classes))
    return readings


def reference_fid(extractor: FeatureExtractor, dataset_spec: str, image_size: int, n: int,
                  real_stats, seed: int = 0) -> float:
    """The FID of n real images (a seed-fixed subset) against the data's statistics: what a
    generator that draws from the data itself scores with n samples, the floor beside which a
    measured FID is read (FID is biased upwards at small n)."""
    dataset = load_dataset(dataset_spec, image_size)
    indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n]
    images, _ = dataset_tensors(dataset, indices)
    features = torch.cat([extractor.features(images[i:i + 1000]) for i in range(0, n, 1000)])
    return frechet_distance(*statistics(features), *real_stats)


def final_quality(generator: nn.Module, config: RunConfig, device="cpu") -> dict | None:
    """How good the final generator is, for a dataset with labels (the domain classifier,
    trained and cached on first use): its FID and classes covered on config.fid_samples
    samples, beside the real data's own FID at that count. None for unlabelled data, whose
    Inception features need weights on disk (`stabgan fid --features inception`)."""
    if not dataset_info(config.dataset).num_classes:
        return None
    extractor = get_extractor("domain", config.dataset, config.image_size, device=device)
    stats = real_statistics(extractor, config.dataset, config.image_size)
    readings = measure_generator(generator, config.z_dim, extractor, stats,
                                 n=config.fid_samples, device=device, seed=config.seed)
    return {"readings": readings, "features": extractor.name, "samples": config.fid_samples,
            "fid": readings[f"fid/{extractor.name}"],
            "reference_fid": reference_fid(extractor, config.dataset, config.image_size,
                                           config.fid_samples, stats),
            "modes": readings["coverage/modes"], "classes": extractor.num_classes}


def checkpoint_generator(state: dict):
    """(RunConfig, generator) of a checkpoint, as it sampled at that step: with the run's
    `--fault` attached in the state it had, since a fault acting through a hook (collapse to
    k outputs) lives in no weight, and without it the FID would measure a generator the run
    never had."""
    config = RunConfig(**{k: v for k, v in upgrade_saved(state["config"]).items()
                          if k in FIELD_NAMES})
    generator, _ = build_models(config, dataset_info(config.dataset).channels)
    generator.load_state_dict(state["generator"])
    fault = build_fault(config.fault)
    if fault is not None:
        fault.attach(generator, None)
        fault.load_state_dict((state.get("monitor") or {}).get(fault.name, {}))
    return config, generator


def measure_run(run_dir, features: str = "domain", n: int = 5000, checkpoint: str = "last",
                inception_weights=None, cache_dir=None) -> dict:
    """FID (and coverage, with domain features) of a run's generator from one of its checkpoints.

    checkpoint: `last`, `pre_collapse`, or a path to a checkpoint file. Raises FIDError (or
    MissingWeightsError) with a one-line reason when something needed is absent.
    """
    run = RunDir(run_dir)
    path = run.checkpoint_path(checkpoint)
    try:
        state = run.checkpoint(checkpoint)
    except CheckpointError as error:
        raise FIDError(str(error)) from None
    config, generator = checkpoint_generator(state)
    if dataset_info(config.dataset).points:
        raise FIDError(f"{str(run_dir)!r} trained on 2-D points ({config.dataset}): FID measures "
                       f"images; the run's exact mode coverage is its coverage/* readings "
                       f"(metrics.jsonl, the report)")
    extractor = get_extractor(features, config.dataset, config.image_size, inception_weights,
                              cache_dir)
    stats = real_statistics(extractor, config.dataset, config.image_size, cache_dir)
    readings = measure_generator(generator, config.z_dim, extractor, stats, n=n, seed=config.seed)
    return {"checkpoint": str(path), "step": state["step"], "samples": n,
            "fault": config.fault or None, **readings}


__all__ = ["CACHE_ENV", "COVERAGE_MIN_SHARE", "INCEPTION_WEIGHTS_ENV", "INCEPTION_WEIGHTS_FILE",
           "DomainClassifier", "DomainExtractor", "FIDError", "FeatureExtractor",
           "InceptionExtractor", "MissingWeightsError", "PerChannelExtractor", "cache_root",
           "checkpoint_generator",
           "domain_extractor", "final_quality", "frechet_distance", "generated_features",
           "get_extractor", "inception_weights_path", "measure_generator", "measure_run",
           "mode_coverage", "real_statistics", "reference_fid", "statistics",
           "train_domain_classifier"]
