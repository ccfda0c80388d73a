"""Stacked MNIST: the dataset (three mnist5k digits as the colour channels, 1,000 modes), its
mode counting by mnist5k's domain classifier read on each channel, checked on real images whose
labels are known, and a real run that logs its coverage and FID.

Nothing here touches the real ~/.cache: the classifier comes from the session's temporary cache
(conftest's `classifier_cache`), which the run's subprocess reads too."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY
from probes.readings import COVERAGE_KL, COVERAGE_MODES
from probes.rundir.files import read_json
from probes.rundir.reader import RunDir, as_lists
from stabgan import fid
from stabgan.cli import cli
from stabgan.config import (STACKED_MNIST_DIVERSITY, STACKED_MNIST_SAMPLES, dataset_info,
                            resolve_config)
from stabgan.data import STACKED_IMAGES, load_dataset
from stabgan.coverage import covered_threshold
from stabgan.fid.distance import mode_coverage
from stabgan.fid.extractors import dataset_tensors
from stabgan.run_probes import run_probes
from stabgan.train import prepare_run

pytestmark = pytest.mark.usefixtures("one_thread")

PLACE_VALUES = torch.tensor([100, 10, 1])  # red, green, blue digit of a label


@pytest.fixture(scope="module")
def stacked():
    return load_dataset("stacked-mnist", 32)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("mnist5k", 32).tensors


@pytest.fixture(scope="module")
def three_of_each_label(stacked):
    """(images, labels): the first 3 images of every one of the 1,000 labels."""
    indices = torch.cat([torch.nonzero(stacked.labels == label).flatten()[:3]
                         for label in range(1000)])
    return dataset_tensors(stacked, indices)


def test_the_dataset_is_fixed_and_labelled_by_the_digits_it_stacks(stacked, digits):
    assert dataset_info("stacked-mnist").channels == 3
    assert dataset_info("stacked-mnist").num_classes == 1000
    assert len(stacked) == STACKED_IMAGES
    torch.manual_seed(123)  # the run's seed draws nothing here
    again = load_dataset("stacked-mnist", 64)
    assert torch.equal(again.labels, stacked.labels)
    assert torch.bincount(stacked.labels, minlength=1000).min() >= 20  # every mode, often
    digit_images, digit_labels = digits
    for index in range(0, STACKED_IMAGES, 2_500):
        image, label = stacked[index]
        assert image.shape == (3, 32, 32) and again[index][0].shape == (3, 64, 64)
        assert image.min() >= -1 and image.max() <= 1
        stacked_digits = []
        for channel in image:  # each channel is one of mnist5k's digits, as it is
            matches = torch.nonzero((digit_images[:, 0] == channel).all(-1).all(-1)).flatten()
            assert len(matches) >= 1
            stacked_digits.append(int(digit_labels[matches[0]]))
        assert int(label) == 100 * stacked_digits[0] + 10 * stacked_digits[1] + stacked_digits[2]


def test_the_per_channel_extractor_reads_each_channel_with_the_digit_classifier(stacked):
    channel = fid.DomainExtractor(fid.DomainClassifier(1, 10, 32), "untrained", {"accuracy": 0})
    extractor = fid.PerChannelExtractor(channel, 3)
    images = torch.stack([stacked[i][0] for i in range(16)])
    features, logits = extractor.features_and_logits(images)
    assert extractor.dim == 3 * channel.dim and extractor.num_classes == 1000
    assert torch.allclose(features, torch.cat([channel.features(images[:, c:c + 1])
                                               for c in range(3)], dim=1))
    per_channel = torch.stack([channel.logits(images[:, c:c + 1]).argmax(1) for c in range(3)], 1)
    assert torch.equal(logits.argmax(1), (per_channel * PLACE_VALUES).sum(1))


def test_stacked_mnist_is_measured_on_enough_samples_to_count_its_modes():
    assert resolve_config(dataset="stacked-mnist").fid_samples == STACKED_MNIST_SAMPLES
    assert resolve_config(dataset="stacked-mnist", fid_samples=200).fid_samples == 200
    assert resolve_config(dataset="mnist5k").fid_samples == 1000
    # modes a perfect generator leaves below the covered threshold: 1,000·P(Poisson(26) < 3)
    mean, threshold = STACKED_MNIST_SAMPLES / 1000, covered_threshold(STACKED_MNIST_SAMPLES, 1000)
    missed = 1000 * sum(math.exp(-mean) * mean ** j / math.factorial(j) for j in range(threshold))
    assert threshold == 3 and missed < 1e-5


def test_stacked_mnist_reads_diversity_against_a_fixed_draw_of_more_real_images(tmp_path):
    assert resolve_config(dataset="stacked-mnist").diversity_samples == STACKED_MNIST_DIVERSITY
    assert resolve_config(dataset="stacked-mnist", diversity_samples=64).diversity_samples == 64
    assert resolve_config().diversity_samples == 0  # 64 samples, against the batch
    runs = [prepare_run(tmp_path / str(seed), {"dataset": "stacked-mnist", "seed": seed})
            for seed in (0, 1)]
    reference = runs[0].reference  # more than a batch of 64: drawn once, the same every seed
    assert reference.shape == (STACKED_MNIST_DIVERSITY, 3, 32, 32)
    assert torch.equal(reference, runs[1].reference)
    assert len(torch.unique(reference.flatten(1), dim=0)) == len(reference)  # distinct images
    probe = next(p for p in run_probes(runs[0].config, reference=reference)
                 if p.name == "diversity")
    assert probe.samples == STACKED_MNIST_DIVERSITY and torch.equal(probe.reference, reference)
    assert prepare_run(tmp_path / "m", {}).reference is None  # the batch is enough


@pytest.mark.slow
def test_counting_recovers_the_labels_of_real_images(classifier_cache, three_of_each_label):
    extractor = fid.get_extractor("domain", "stacked-mnist", 32, cache_dir=classifier_cache)
    images, labels = three_of_each_label
    logits = extractor.logits(images)
    assert (logits.argmax(1) == labels).double().mean() > 0.95  # 98% measured
    every_label = mode_coverage(logits, 1000)
    assert every_label[COVERAGE_MODES] >= 995 and every_label[COVERAGE_KL] < 0.1
    chosen = torch.randperm(1000, generator=torch.Generator().manual_seed(0))[:100]
    restricted = mode_coverage(logits[torch.isin(labels, chosen)], 1000)
    # each chosen label has three images; a misread one adds at most one mode beside them
    assert 100 <= restricted[COVERAGE_MODES] <= 110
    assert restricted[COVERAGE_KL] == pytest.approx(math.log(10), abs=0.1)


@pytest.mark.slow
def test_a_run_logs_coverage_and_fid_and_stabgan_fid_measures_it(tmp_path, classifier_cache):
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path), "--name", "s", "--dataset",
                                      "stacked-mnist", *TINY, "--steps", "20", "--log-every",
                                      "10", "--fid-every", "10", "--fid-samples", "200",
                                      "--probes", "fid", "--fid-final"])
    assert result.exit_code == 0, result.output
    # mnist5k's classifier read the three channels: none was trained for the stacked images
    assert [p.name.split("-")[0] for p in (classifier_cache / "domain").glob("*.pt")] == ["mnist5k"]
    series = as_lists(RunDir(tmp_path / "s").series())
    assert series["fid/domain"][0] == [10, 20] and series[COVERAGE_MODES][0] == [10, 20]
    assert all(1 <= modes <= 1000 for modes in series[COVERAGE_MODES][1])
    assert all(fid_value > 0 for fid_value in series["fid/domain"][1])
    quality = read_json(tmp_path / "s" / "summary.json")["quality"]
    assert quality["classes"] == 1000 and quality["samples"] == 200
    assert 0 < quality["reference_fid"] < quality["fid"]
    line = next(s for s in result.stderr.splitlines() if s.startswith("quality: "))
    assert f"{quality['modes']:g} of 1000 classes, over 200 samples" in line

    measured = CliRunner().invoke(cli, ["fid", str(tmp_path / "s"), "-n", "200", "--json"])
    assert measured.exit_code == 0, measured.output
    readings = json.loads(measured.stdout)
    assert readings["step"] == 20 and readings["fid/domain"] > 0
    assert 1 <= readings[COVERAGE_MODES] <= 1000


@pytest.mark.parametrize("spec", ["stacked-mnist:x", "stacked", "stackedmnist"])
def test_a_bad_spec_is_a_one_line_error_naming_stacked_mnist(tmp_path, spec):
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "out"), "--dataset", spec])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and repr(spec) in errors[0] and "stacked-mnist" in errors[0]
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
