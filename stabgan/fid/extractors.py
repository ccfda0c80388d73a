"""Feature extractors behind one interface, `extractor.features(images) -> (N, D)`: the domain
classifier stabgan trains and caches, and pytorch-fid's FID Inception from a local weights file
(nothing here downloads); `get_extractor` picks one by name."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from probes.rundir.files import CheckpointError, atomic_write_bytes, safe_load
from stabgan.cache import cache_root
from stabgan.config import FEATURES, dataset_info
from stabgan.data import load_dataset

INCEPTION_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"  # pytorch-fid's FID weights
INCEPTION_WEIGHTS_ENV = "STABGAN_INCEPTION_WEIGHTS"
DOMAIN_VERSION = 1  # bump when the classifier or its training changes: old caches are retrained
DOMAIN_HELD_OUT = 1000  # fixed, seeded held-out split for the recorded accuracy
DOMAIN_MAX_TRAIN = 20_000  # larger datasets are subsampled: training is step-bounded anyway
DOMAIN_STEPS = 300  # ≈ 10 epochs of mnist5k's 4,000 training images at batch 128


def progress_bar(total: int, desc: str, unit: str):
    """A progress bar on stderr for long silent work; it disappears when the work is done."""
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0, leave=False,
                dynamic_ncols=True)


class FIDError(ValueError):
    """FID cannot be computed as asked (wrong features for the dataset, unusable weights)."""


class MissingWeightsError(FIDError):
    """The FID Inception weights file is not on this machine (nothing is ever downloaded)."""


# ----------------------------------------------------------------------------------------------
# Cache locations

def cache_key(dataset_spec: str, image_size: int) -> str:
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

    def logits(self, images: torch.Tensor) -> torch.Tensor | None:
        """(N, num_classes) class logits of a classifier; None for other features."""
        return self.features_and_logits(images)[1]


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


class PerChannelExtractor(FeatureExtractor):
    """A one-channel `DomainExtractor` read on each channel of an image on its own (stacked-mnist:
    mnist5k's classifier on each of the three digits). Features: the channels' concatenated.
    Logits: one per combination of the channels' classes, the first channel the most
    significant digit (as stacked-mnist's labels), each the sum of the channels'
    log-probabilities, so that the argmax is the combination of the channels' own predictions."""
    name = "domain"

    def __init__(self, channel: DomainExtractor, channels: int):
        self.channel, self.channels = channel, channels
        self.dim = channels * channel.dim
        self.num_classes = channel.num_classes ** channels
        self.fingerprint = f"{channel.fingerprint}-per-channel-{channels}"
        super().__init__(channel.model, channel.device, channel.batch_size)

    def _prepare(self, images):
        images = _match_channels(images, self.channels)
        return self.channel._prepare(images.flatten(0, 1).unsqueeze(1))

    def _forward(self, batch):
        features, logits = self.model(batch)
        log_probs = logits.log_softmax(1).unflatten(0, (-1, self.channels))
        joint = log_probs[:, 0]
        for channel in range(1, self.channels):
            joint = (joint.unsqueeze(2) + log_probs[:, channel].unsqueeze(1)).flatten(1)
        return features.unflatten(0, (-1, self.channels)).flatten(1), joint


def dataset_tensors(dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
    held_x, held_y = dataset_tensors(dataset, order[:n_held])
    train_x, train_y = dataset_tensors(dataset, order[n_held:n_held + DOMAIN_MAX_TRAIN])
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
                     retrain: bool = False) -> FeatureExtractor:
    """The cached domain classifier for (dataset, image size), trained and cached if absent; for
    a dataset of stacked digits (stacked-mnist), the classifier of its channels' dataset read on
    each channel."""
    info = dataset_info(dataset_spec)
    if info.channel_source:
        return PerChannelExtractor(domain_extractor(info.channel_source, image_size, cache_dir,
                                                    device, retrain), info.channels)
    root = cache_root(cache_dir) / "domain"
    key = cache_key(dataset_spec, image_size)
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
