"""Fréchet distance between generated and real images, computed offline.

Two feature extractors share one interface, `extractor.features(images) -> (N, D)`:
- `domain` (default): a small CNN that stabgan trains on the run's labelled dataset and caches;
  its pooled penultimate layer gives the FID features, its logits give mode coverage.
- `inception`: pytorch-fid's FID Inception (2048-d pool features), loaded from a local weights
  file only. Nothing in this module downloads.

The distance itself, ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2·tr √(Σ1Σ2), is computed exactly in float64
from the eigenvalues of a symmetric matrix that shares its spectrum with Σ1Σ2 (see
`frechet_distance`), with no matrix square root and no complex numbers.

Caches (under `cache_root()`): `domain/<key>.pt` + `.json` (the classifier and its held-out
accuracy) and `stats/<key>-<features>.npz` (real-data mean and covariance), where the key names
the dataset spec and image size. They are written atomically (`runlog.atomic_write_bytes`):
parallel runs of a sweep may fill the same cache, and readers never see a partial file.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from stabgan.cache import CACHE_ENV, cache_root  # noqa: F401  (CACHE_ENV: part of this API)
from stabgan.config import FEATURES, dataset_info
from stabgan.data import load_dataset
from stabgan.runlog import CheckpointError, atomic_write_bytes, safe_load

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's FID weights
INCEPTION_WEIGHTS_ENV = "STABGAN_INCEPTION_WEIGHTS"
COVERAGE_MIN_SHARE = 0.1  # a class is covered when it gets >= 10% of its uniform share N/K
DOMAIN_VERSION = 1  # bump when the classifier or its training changes: old caches are retrained
DOMAIN_HELD_OUT = 1000  # fixed, seeded held-out split for the recorded accuracy
DOMAIN_MAX_TRAIN = 20_000  # larger datasets are subsampled: training is step-bounded anyway
DOMAIN_STEPS = 300  # ≈ 10 epochs of mnist5k's 4,000 training images at batch 128
REAL_STATS_MAX = 10_000  # real images used for the statistics (all of them when fewer)



def progress_bar(total: int, desc: str, unit: str):
    """A progress bar on stderr for long silent work; it disappears when the work is done."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0, leave=False,
                dynamic_ncols=True)


class FIDError(ValueError):
    """FID cannot be computed as asked (wrong features for the dataset, unusable weights)."""


class MissingWeightsError(FIDError):
    """The FID Inception weights file is not on this machine (nothing is ever downloaded)."""


# ----------------------------------------------------------------------------------------------
# The Fréchet distance

def _as_float64(name: str, value, ndim: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    tensor = tensor.detach().to("cpu", torch.float64)
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    # A finite sum proves every entry finite at a fraction of the cost of an elementwise test.
    if not torch.isfinite(tensor.sum()):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{name} has {bad} non-finite (NaN or Inf) entries")
    return tensor


def _checked_statistics(mu1, sigma1, mu2, sigma2) -> tuple[torch.Tensor, ...]:
    mu1, mu2 = _as_float64("mu1", mu1, 1), _as_float64("mu2", mu2, 1)
    sigma1, sigma2 = _as_float64("sigma1", sigma1, 2), _as_float64("sigma2", sigma2, 2)
    d = mu1.shape[0]
    for name, shape, want in (("mu2", mu2.shape, (d,)), ("sigma1", sigma1.shape, (d, d)),
                              ("sigma2", sigma2.shape, (d, d))):
        if tuple(shape) != want:
            raise ValueError(f"{name} has shape {tuple(shape)} but mu1 has shape ({d},), "
                             f"so {want} is expected")
    return mu1, _symmetric("sigma1", sigma1), mu2, _symmetric("sigma2", sigma2)


def _symmetric(name: str, sigma: torch.Tensor) -> torch.Tensor:
    if torch.equal(sigma, sigma.T):  # the usual case, and 3x cheaper than measuring asymmetry
        return sigma
    scale = sigma.abs().max().item()
    asymmetry = (sigma - sigma.T).abs().max().item()
    # float32-accumulated covariances are symmetric to ~1e-7 relative; far more is a bug.
    if asymmetry > 1e-5 * scale:
        raise ValueError(f"{name} is not symmetric (max |S - S^T| = {asymmetry:.3g}, "
                         f"max |S| = {scale:.3g}): not a covariance matrix")
    return (sigma + sigma.T) / 2


def _check_psd(name: str, eigenvalues: torch.Tensor) -> None:
    # Rounding leaves eigenvalues of order -1e-7 relative on rank-deficient covariances;
    # anything far below that means the input was not a covariance matrix.
    low, high = eigenvalues.min().item(), eigenvalues.max().item()
    if low < -1e-4 * max(high, 0.0) and low < -1e-12:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {low:.3g}, "
                         f"largest {high:.3g}): not a covariance matrix")


def _trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """tr √(Σ1Σ2) = Σ √λ over the eigenvalues λ of Σ1Σ2, all real and >= 0 for PSD inputs.

    LAPACK's generalized symmetric eigensolver of type 2 (A·B·v = λ·v, `dsygv`) gives the λ
    of Σa·Σb for a positive definite Σb: a Cholesky factor of Σb, a congruence Lᵀ·Σa·L and
    an eigenvalues-only tridiagonal solve, all in float64 and all real. A rank-deficient Σ (fewer
    samples than dimensions) has no Cholesky factor; when neither has one, Σ1 = F·Fᵀ with
    F = V·√w from its eigen-decomposition (tiny negative w set to 0) and the λ are those of the
    symmetric Fᵀ·Σ2·F.
    """
    for (name_a, a), b in ((("sigma1", sigma1), sigma2), (("sigma2", sigma2), sigma1)):
        try:
            eigenvalues = torch.from_numpy(scipy.linalg.eigh(
                a.numpy(), b.numpy(), type=2, eigvals_only=True, driver="gv", check_finite=False))
            break
        except np.linalg.LinAlgError:  # b is not positive definite
            continue
    else:
        w, v = torch.linalg.eigh(sigma1)
        _check_psd("sigma1", w)
        factor = v * _drop_rounding_noise(w).sqrt()
        name_a, eigenvalues = "sigma2", torch.linalg.eigvalsh(factor.T @ (sigma2 @ factor))
    _check_psd(name_a, eigenvalues)
    return _drop_rounding_noise(eigenvalues).sqrt().sum().item()


def _drop_rounding_noise(eigenvalues: torch.Tensor) -> torch.Tensor:
    # A null direction comes out as ±(D·eps·λmax) at best; its square root, ~1e-7·√λmax,
    # summed over hundreds of null directions would bias tr √ upward, so such values are 0.
    tol = eigenvalues.shape[0] * torch.finfo(eigenvalues.dtype).eps * eigenvalues.max().clamp(min=0)
    return torch.where(eigenvalues > tol, eigenvalues, torch.zeros_like(eigenvalues))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exact, in float64.

    Accepts numpy arrays or tensors: mu (D,), sigma (D, D). Covariances may be rank-deficient.
    Raises ValueError naming the argument on non-finite entries, mismatched shapes, or a sigma
    that is not a (symmetric, positive semi-definite) covariance matrix.
    """
    mu1, sigma1, mu2, sigma2 = _checked_statistics(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    value = (diff @ diff).item() + sigma1.trace().item() + sigma2.trace().item() \
        - 2.0 * _trace_sqrt_product(sigma1, sigma2)
    # The exact value is >= 0; equal inputs can round to about -1e-12 * tr(sigma).
    return max(value, 0.0)


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 numpy, N >= 2."""
    x = _as_float64("features", features, 2)
    if x.shape[0] < 2:
        raise ValueError(f"statistics need at least 2 feature rows, got {x.shape[0]}")
    mu = x.mean(0)
    centered = x - mu
    sigma = centered.T @ centered / (x.shape[0] - 1)
    return mu.numpy(), ((sigma + sigma.T) / 2).numpy()


# ----------------------------------------------------------------------------------------------
# Mode coverage

def mode_coverage(logits, num_classes: int, min_share: float = COVERAGE_MIN_SHARE) -> dict:
    """Classes covered by N samples and KL(predicted class histogram ‖ uniform).

    Each sample counts for its argmax class. A class is covered when at least
    max(1, ceil(min_share · N / num_classes)) samples fall in it, i.e. 10% of what a uniform
    generator would give it, so a few stray misclassifications do not count as a mode.
    KL is in nats: 0 for a uniform histogram, log(num_classes) when all samples are one class.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[1] != num_classes or logits.shape[0] == 0:
        raise ValueError(f"logits must have shape (N >= 1, {num_classes}), "
                         f"got {tuple(logits.shape)}")
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes).double()
    n = logits.shape[0]
    threshold = max(1, math.ceil(min_share * n / num_classes))
    p = counts / n
    nonzero = p > 0
    kl = (p[nonzero] * (p[nonzero] * num_classes).log()).sum().item()
    return {"coverage/modes": int((counts >= threshold).sum()), "coverage/kl": max(kl, 0.0)}


# ----------------------------------------------------------------------------------------------
# Cache locations

def _cache_key(dataset_spec: str, image_size: int) -> str:
    # Readable prefix plus a hash, so folder:/a/b and folder:/a_b never share a file.
    slug = re.sub(r"[^A-Za-z0-9]+", "_", dataset_spec).strip("_")[:40]
    digest = hashlib.sha1(dataset_spec.encode()).hexdigest()[:8]
    return f"{slug}-{digest}-{image_size}px"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# Feature extractors

def _check_images(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got shape {tuple(images.shape)}")
    return images


def _match_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    if images.shape[1] == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1)
    return images.mean(1, keepdim=True)


class FeatureExtractor:
    """`features(images) -> (N, D)` float32 on CPU, images (N, 1|3, H, W) in [-1, 1].

    `name` is the tag suffix (`fid/<name>`), `dim` is D, `fingerprint` identifies the weights
    (cached real statistics are reused only with the same fingerprint).
    """
    name: str
    dim: int
    fingerprint: str
    num_classes: int = 0  # > 0 when `logits` exists and mode coverage can be measured

    def __init__(self, model: nn.Module, device: str | torch.device, batch_size: int):
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Features (N, D) and, for a classifier, logits (N, num_classes); else None."""
        images = _check_images(torch.as_tensor(images))
        features, logits = [], []
        for start in range(0, images.shape[0], self.batch_size):
            batch = self._prepare(images[start:start + self.batch_size].to(self.device).float())
            f, l = self._forward(batch)
            features.append(f.float().cpu())
            if l is not None:
                logits.append(l.float().cpu())
        if not features:
            return torch.zeros(0, self.dim), (torch.zeros(0, self.num_classes) if self.num_classes else None)
        return torch.cat(features), (torch.cat(logits) if logits else None)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) features of images in [-1, 1]."""
        return self.features_and_logits(images)[0]


class InceptionExtractor(FeatureExtractor):
    """pytorch-fid's FID Inception V3, 2048-d final pool features; images resized to 299."""
    name, dim = "inception", 2048

    def __init__(self, weights: str | os.PathLike, device="cpu", batch_size: int = 50):
        path = Path(weights)
        data = path.read_bytes()
        self.fingerprint = _sha256(data)
        self.weights_path = path
        super().__init__(_fid_inception(data, path), device, batch_size)

    def _prepare(self, images):
        # InceptionV3 resizes to 299 itself and maps [0, 1] to the [-1, 1] the weights expect.
        return _match_channels(images, 3).add(1).div(2).clamp(0, 1)

    def _forward(self, batch):
        return self.model(batch)[0].flatten(1), None


_INCEPTION_LOCK = threading.Lock()


def _fid_inception(data: bytes, path: Path) -> nn.Module:
    """InceptionV3(2048-d block) with pytorch-fid's own FID structure and the local weights.

    pytorch-fid builds the FID network in `fid_inception_v3`, which fetches the weights with the
    module-level `load_state_dict_from_url`. That one name is swapped, for the duration of the
    constructor, for a reader of the local file, so the structure and the strict
    `load_state_dict` stay pytorch-fid's own and no URL is ever opened.
    """
    from pytorch_fid import inception as pf

    used = []

    def read_local_file(url, *args, **kwargs):
        used.append(url)
        try:
            return safe_load(data, path, what="weights file")
        except CheckpointError as error:
            raise FIDError(f"{error}; pytorch-fid's FID Inception weights are "
                           f"{INCEPTION_WEIGHTS_FILE}") from None

    with _INCEPTION_LOCK:
        original = pf.load_state_dict_from_url
        pf.load_state_dict_from_url = read_local_file
        try:
            model = pf.InceptionV3([pf.InceptionV3.BLOCK_INDEX_BY_DIM[2048]],
                                   resize_input=True, normalize_input=True,
                                   use_fid_inception=True)
        except RuntimeError as error:  # strict load_state_dict: missing/unexpected keys, shapes
            raise FIDError(f"{str(path)!r} does not hold the FID Inception weights "
                           f"({INCEPTION_WEIGHTS_FILE}): {str(error).splitlines()[0]}") from None
        finally:
            pf.load_state_dict_from_url = original
    if not used:  # a pytorch-fid that loads differently would otherwise go unnoticed
        raise FIDError("pytorch-fid built its Inception without reading the local weights; "
                       "this pytorch-fid version is not supported")
    return model


def inception_weights_path(inception_weights: str | os.PathLike | None = None) -> Path:
    """The local FID Inception weights: the argument, else $STABGAN_INCEPTION_WEIGHTS, else
    pytorch-fid's own cache (`torch.hub.get_dir()/checkpoints/<file>`); MissingWeightsError if
    the chosen file is not there."""
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE
    if inception_weights is not None:
        path, source = Path(inception_weights).expanduser(), "--inception-weights"
    elif os.environ.get(INCEPTION_WEIGHTS_ENV):
        path, source = Path(os.environ[INCEPTION_WEIGHTS_ENV]).expanduser(), INCEPTION_WEIGHTS_ENV
    else:
        path, source = hub_file, None
    if path.is_file():
        return path
    where = f"{source} points to {str(path)!r}, which is not a file; " if source else ""
    raise MissingWeightsError(
        f"FID Inception weights not found: {where}stabgan needs {INCEPTION_WEIGHTS_FILE} "
        f"(pytorch-fid's FID Inception weights) and never downloads it; supply it with "
        f"--inception-weights PATH, or {INCEPTION_WEIGHTS_ENV}=PATH, or put it at {hub_file}")


class DomainClassifier(nn.Module):
    """A small CNN classifier; its globally pooled last conv layer is the feature vector.

    Sized to train in about a minute on 2 CPU cores (≈ 4 M multiply-adds per 32×32 image).
    Works at any image size >= 8 thanks to the global pool.
    """

    def __init__(self, channels: int, num_classes: int, image_size: int, width: int = 16):
        super().__init__()
        self.channels, self.num_classes, self.image_size = channels, num_classes, image_size

        def block(cin, cout, kernel=3):
            return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
                    nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.body = nn.Sequential(
            *block(channels, width, 5), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.MaxPool2d(2),
            *block(2 * width, 4 * width), nn.MaxPool2d(2),
            *block(4 * width, 8 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8 * width, num_classes)
        self.feature_dim = 8 * width

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return features, self.head(features)


class DomainExtractor(FeatureExtractor):
    """Features and logits of a trained `DomainClassifier`; `accuracy` is its held-out accuracy."""
    name = "domain"

    def __init__(self, model: DomainClassifier, fingerprint: str, record: dict,
                 device="cpu", batch_size: int = 500):
        self.dim, self.num_classes = model.feature_dim, model.num_classes
        self.fingerprint, self.record = fingerprint, record
        self.accuracy = record["accuracy"]
        super().__init__(model, device, batch_size)

    def _prepare(self, images):
        images = _match_channels(images, self.model.channels)
        if images.shape[-2:] != (self.model.image_size,) * 2:
            images = F.interpolate(images, size=self.model.image_size, mode="bilinear",
                                   antialias=True, align_corners=False)
        return images

    def _forward(self, batch):
        return self.model(batch)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class logits."""
        return self.features_and_logits(images)[1]


def _dataset_tensors(dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(images, labels) of the given indices, loaded into memory."""
    if isinstance(dataset, torch.utils.data.TensorDataset):
        images, labels = dataset.tensors[:2]
        return images[indices], torch.as_tensor(labels)[indices].long()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices.tolist()),
                                         batch_size=256, num_workers=0)
    batches = list(loader)
    return (torch.cat([b[0] for b in batches]),
            torch.cat([torch.as_tensor(b[1]) for b in batches]).long())


def train_domain_classifier(dataset_spec: str, image_size: int, seed: int = 0,
                            steps: int = DOMAIN_STEPS, batch_size: int = 128
                            ) -> tuple[DomainClassifier, dict]:
    """Train the domain classifier on a labelled dataset; returns (model, record).

    The first DOMAIN_HELD_OUT images of a seed-fixed permutation (at most a fifth of the data)
    are held out; the record holds their accuracy. Runs in its own RNG scope, so the caller's
    random state is untouched. FIDError for datasets without labels.
    """
    info = dataset_info(dataset_spec)
    if info.num_classes == 0:
        raise FIDError(f"dataset {dataset_spec!r} has no labels, so no domain classifier can be "
                       f"trained for FID; use --features inception (with local Inception weights)")
    start = time.perf_counter()
    dataset = load_dataset(dataset_spec, image_size)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(dataset), generator=generator)
    n_held = min(DOMAIN_HELD_OUT, len(order) // 5)
    held_x, held_y = _dataset_tensors(dataset, order[:n_held])
    train_x, train_y = _dataset_tensors(dataset, order[n_held:n_held + DOMAIN_MAX_TRAIN])
    if train_y.min() < 0 or train_y.max() >= info.num_classes:
        raise FIDError(f"dataset {dataset_spec!r} has labels outside 0..{info.num_classes - 1}")

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainClassifier(info.channels, info.num_classes, image_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps)
        shift = 2 if image_size >= 16 else 1  # random translation, the one augmentation
        model.train()
        batch_order = torch.zeros(0, dtype=torch.long)
        bar = progress_bar(steps, "domain classifier", "step")
        for step in range(steps):
            if len(batch_order) < batch_size:
                batch_order = torch.cat([batch_order, torch.randperm(len(train_x), generator=generator)])
            idx, batch_order = batch_order[:batch_size], batch_order[batch_size:]
            dy, dx = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
            x = F.pad(train_x[idx], (shift,) * 4, mode="replicate")
            x = x[:, :, dy:dy + image_size, dx:dx + image_size]
            loss = F.cross_entropy(model(x)[1], train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            if (step + 1) % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        bar.close()
        model.eval()
        with torch.no_grad():
            predicted = torch.cat([model(held_x[i:i + 500])[1].argmax(1)
                                   for i in range(0, len(held_x), 500)])
    accuracy = (predicted == held_y).double().mean().item()
    record = {"dataset": dataset_spec, "image_size": image_size, "accuracy": accuracy,
              "held_out": n_held, "train_images": len(train_x), "steps": steps,
              "batch_size": batch_size, "seed": seed, "train_s": time.perf_counter() - start,
              "channels": info.channels, "num_classes": info.num_classes,
              "version": DOMAIN_VERSION, "torch": torch.__version__}
    return model, record


def domain_extractor(dataset_spec: str, image_size: int, cache_dir=None, device="cpu",
                     retrain: bool = False) -> DomainExtractor:
    """The cached domain classifier for (dataset, image size), trained and cached if absent."""
    root = cache_root(cache_dir) / "domain"
    key = _cache_key(dataset_spec, image_size)
    weights_file, record_file = root / f"{key}.pt", root / f"{key}.json"
    record = None
    if not retrain and weights_file.is_file() and record_file.is_file():
        try:
            record = json.loads(record_file.read_text())
            data = weights_file.read_bytes()
            state = safe_load(data, weights_file)
        except (OSError, ValueError):  # unreadable or refused (CheckpointError): train anew
            record = None
        if record and (record.get("version") != DOMAIN_VERSION or record.get("dataset") != dataset_spec):
            record = None
    if record is None:
        model, record = train_domain_classifier(dataset_spec, image_size)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        data = buffer.getvalue()
        record["fingerprint"] = _sha256(data)
        atomic_write_bytes(weights_file, data)
        atomic_write_bytes(record_file, (json.dumps(record, indent=2) + "\n").encode())
    else:
        model = DomainClassifier(record["channels"], record["num_classes"], image_size)
        model.load_state_dict(state)
    return DomainExtractor(model, _sha256(data), record, device=device)


def get_extractor(name: str, dataset_spec: str, image_size: int, inception_weights=None,
                  cache_dir=None, device="cpu") -> FeatureExtractor:
    """The feature extractor `name` (one of FEATURES) for a run's dataset and image size.

    `domain` trains and caches a classifier on first use (about a minute on 2 CPU cores);
    `inception` needs local weights (see `inception_weights_path`).
    """
    if name == "inception":
        return InceptionExtractor(inception_weights_path(inception_weights), device=device)
    if name == "domain":
        return domain_extractor(dataset_spec, image_size, cache_dir=cache_dir, device=device)
    raise FIDError(f"features {name!r} is not one of {', '.join(FEATURES)}")


# ----------------------------------------------------------------------------------------------
# Real and generated statistics

def real_statistics(extractor: FeatureExtractor, dataset_spec: str, image_size: int,
                    cache_dir=None, max_images: int = REAL_STATS_MAX
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of the dataset's features, cached per (dataset, features, image size).

    Uses every image, or a seed-fixed subset of max_images. A cache made with other weights
    (different fingerprint) or another image count is recomputed.
    """
    key = _cache_key(dataset_spec, image_size)
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
        images, _ = _dataset_tensors(dataset, indices[start:start + 1000])
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


def generator_fid(generator: nn.Module, z_dim, extractor: FeatureExtractor, real_stats,
                  n: int = 5000, batch_size: int = 250, device="cpu", seed: int = 0) -> float:
    """FID of n generated samples against real_stats = (mu, sigma)."""
    features, _ = generated_features(generator, z_dim, extractor, n, batch_size, device, seed)
    return frechet_distance(*statistics(features), *real_stats)


def measure_generator(generator: nn.Module, z_dim, extractor: FeatureExtractor, real_stats,
                      n: int = 5000, batch_size: int = 250, device="cpu", seed: int = 0) -> dict:
    """{"fid/<features>": ...} plus, for a domain classifier, coverage/modes and coverage/kl."""
    features, logits = generated_features(generator, z_dim, extractor, n, batch_size, device, seed)
    readings = {f"fid/{extractor.name}": frechet_distance(*statistics(features), *real_stats)}
    if logits is not None:
        readings.update(mode_coverage(logits, extractor.num_classes))
    return readings


def checkpoint_generator(state: dict):
    """(RunConfig, generator) of a checkpoint, as it sampled at that step: with the run's
    `--fault` attached in the state it had, since a fault acting through a hook (collapse to
    k outputs) lives in no weight, and without it the FID would measure a generator the run
    never had."""
    from probes.inject import build_fault
    from stabgan.config import RunConfig
    from stabgan.models import Generator

    config = RunConfig(**state["config"])
    generator = Generator(config, dataset_info(config.dataset).channels)
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
    from stabgan.rundir import RunDir

    run = RunDir(run_dir)
    path = run.checkpoint_path(checkpoint)
    try:
        state = run.checkpoint(checkpoint)
    except CheckpointError as error:
        raise FIDError(str(error)) from None
    config, generator = checkpoint_generator(state)
    extractor = get_extractor(features, config.dataset, config.image_size, inception_weights,
                              cache_dir)
    stats = real_statistics(extractor, config.dataset, config.image_size, cache_dir)
    readings = measure_generator(generator, config.z_dim, extractor, stats, n=n, seed=config.seed)
    return {"checkpoint": str(path), "step": state["step"], "samples": n,
            "fault": config.fault or None, **readings}
