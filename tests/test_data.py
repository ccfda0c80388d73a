"""Datasets and the resumable batch stream."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from stabgan.config import DatasetError, dataset_info, parse_spec
from stabgan.data import BatchStream, load_dataset


def test_mnist5k_is_embedded_balanced_and_scaled():
    data = load_dataset("mnist5k", 32)
    images, labels = data.tensors
    assert images.shape == (5000, 1, 32, 32)
    assert images.min() == -1.0 and images.max() == 1.0
    assert torch.bincount(labels).tolist() == [500] * 10
    assert (images[:, :, :2, :] == -1).all(), "digits are zero-padded from 28 to 32"
    assert load_dataset("mnist5k", 64).tensors[0].shape == (5000, 1, 64, 64)
    assert dataset_info("mnist5k").num_classes == 10


def test_batch_stream_resumes_exactly_across_epochs():
    data = torch.utils.data.TensorDataset(torch.arange(50).float(), torch.arange(50))
    stream = BatchStream(data, batch_size=8, seed=7)
    batches = [stream.next()[1].tolist() for _ in range(20)]  # 6 batches/epoch: crosses 3 epochs
    assert sorted(sum(batches[:6], [])) == sorted(set(sum(batches[:6], [])))  # no repeats in an epoch
    resumed = BatchStream(data, batch_size=8, seed=7)
    replay = BatchStream(data, batch_size=8, seed=7)
    for _ in range(9):
        replay.next()
    resumed.load_state_dict(replay.state_dict())
    assert [resumed.next()[1].tolist() for _ in range(11)] == batches[9:]


def test_folder_dataset_crops_resizes_and_reads_rgb(tmp_path):
    Image.new("L", (60, 40), 255).save(tmp_path / "gray.png")
    Image.new("RGB", (30, 50), (255, 0, 0)).save(tmp_path / "red.jpg")
    data = load_dataset(f"folder:{tmp_path}", 32)
    assert len(data) == 2
    image, label = data[1]
    assert image.shape == (3, 32, 32) and label == -1
    assert image[0].min() > 0.9 and image[1].max() < -0.9  # red stays red in [-1, 1]


@pytest.mark.parametrize("spec", ["cifar", "folder:", "mnist5k:x", "celeba"])
def test_bad_specs_name_the_accepted_forms(spec):
    with pytest.raises(DatasetError, match="mnist5k, folder:PATH"):
        parse_spec(spec)
