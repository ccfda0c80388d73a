"""2-D Gaussian mixtures: the data, exact mode counting on points placed by hand, a real run on
ring8 per loss family (coverage readings, scatter samples, verdict, report), and the settings
that make no sense for points as one-line errors."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from probes.readings import COVERAGE_KL, COVERAGE_MODES
from stabgan.cli import cli
from stabgan.config import resolve_config, run_name
from stabgan.coverage import COVERAGE_MIN_SHARE, covered_threshold, kl_from_uniform
from stabgan.data import load_dataset
from stabgan.fid.distance import COVERAGE_MIN_SHARE as IMAGE_MIN_SHARE
from stabgan.models import MlpCritic, MlpGenerator, build_models
from stabgan.run_probes import run_probes
from stabgan.toy import (COVERAGE_HIGH_QUALITY, coverage, mixture, mode_counts,
                         nearest_modes)

pytestmark = pytest.mark.usefixtures("one_thread")

RING_MEANS, RING_STD = mixture("ring8")
GRID_MEANS, GRID_STD = mixture("grid25")


def _at(means: torch.Tensor, per_mode: list[int], offset=(0.0, 0.0)) -> torch.Tensor:
    """per_mode[k] points at mode k, each moved by offset."""
    return torch.cat([means[k].expand(n, 2) + torch.tensor(offset, dtype=torch.float64)
                      for k, n in enumerate(per_mode)])


def test_the_mixtures_are_the_benchmarks():
    assert RING_STD == 0.02 and GRID_STD == 0.05
    assert torch.allclose(RING_MEANS.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    angles = torch.atan2(RING_MEANS[:, 1], RING_MEANS[:, 0]).remainder(2 * math.pi)
    assert torch.allclose(angles, torch.arange(8, dtype=torch.float64) * math.pi / 4)
    assert sorted({tuple(p) for p in GRID_MEANS.tolist()}) == [
        (x, y) for x in (-4.0, -2.0, 0.0, 2.0, 4.0) for y in (-4.0, -2.0, 0.0, 2.0, 4.0)]


@pytest.mark.parametrize("spec, modes, std", [("ring8", 8, 0.02), ("grid25", 25, 0.05)])
def test_each_dataset_is_a_fixed_balanced_sample_labelled_by_its_mode(spec, modes, std):
    data = load_dataset(spec, image_size=32)
    points, labels = data.tensors
    assert points.shape == (10_000, 2) and points.dtype == torch.float32
    assert torch.equal(labels.bincount(), torch.full((modes,), 10_000 // modes))
    means, _ = mixture(spec)
    nearest, good = nearest_modes(points, means, std)
    assert torch.equal(nearest, labels)  # every point's nearest mode is its own
    assert good.float().mean() > 0.98  # within 3 std: 98.9% of a 2-D Gaussian's mass
    spread = (points.double() - means[labels]).std(dim=0)
    assert torch.allclose(spread, torch.full((2,), std, dtype=torch.float64), rtol=0.05)
    assert torch.equal(load_dataset(spec, image_size=64).tensors[0], points)  # fixed seed


def test_points_at_the_modes_cover_them_all_uniformly():
    readings = coverage(_at(RING_MEANS, [40] * 8), RING_MEANS, RING_STD, min_count=1)
    assert readings == {COVERAGE_MODES: 8.0, COVERAGE_HIGH_QUALITY: 1.0, COVERAGE_KL: 0.0}


def test_high_quality_is_within_three_std_of_the_nearest_mode():
    inside = _at(RING_MEANS, [1] * 8, offset=(2.9 * RING_STD, 0.0))
    outside = _at(RING_MEANS, [1] * 8, offset=(0.0, 3.1 * RING_STD))
    nearest, good = nearest_modes(torch.cat([inside, outside]), RING_MEANS, RING_STD)
    assert torch.equal(nearest, torch.arange(8).repeat(2))
    assert torch.equal(good, torch.tensor([True] * 8 + [False] * 8))
    # grid25: either side of the midpoint between two modes (far from both), and 2.8 std off one
    points = torch.tensor([[0.9, 0.0], [1.1, 0.0], [1.86, 4.0]], dtype=torch.float64)
    nearest, good = nearest_modes(points, GRID_MEANS, GRID_STD)
    assert GRID_MEANS[nearest].tolist() == [[0.0, 0.0], [2.0, 0.0], [2.0, 4.0]]
    assert good.tolist() == [False, False, True]


def test_a_mode_counts_from_a_tenth_of_its_uniform_share():
    assert COVERAGE_MIN_SHARE == IMAGE_MIN_SHARE  # coverage/modes means what it does on images
    assert covered_threshold(2_500, 8) == 32 and covered_threshold(2_500, 25) == 10
    assert covered_threshold(5, 8) == 1
    # 2,500 points: modes 0-2 hold 32, 31 and 1 high-quality points, the rest sit off the ring
    points = torch.cat([_at(RING_MEANS, [32, 31, 1]),
                        torch.zeros(2_500 - 64, 2, dtype=torch.float64)])
    readings = coverage(points, RING_MEANS, RING_STD)
    assert readings[COVERAGE_MODES] == 1.0  # only mode 0 reaches 32
    assert readings[COVERAGE_HIGH_QUALITY] == 64 / 2_500
    assert coverage(points, RING_MEANS, RING_STD, min_count=1)[COVERAGE_MODES] == 3.0
    assert torch.equal(mode_counts(points, RING_MEANS, RING_STD),
                       torch.tensor([32, 31, 1, 0, 0, 0, 0, 0]))


def test_kl_of_the_high_quality_histogram_from_uniform():
    one_mode = coverage(_at(GRID_MEANS, [100] + [0] * 24), GRID_MEANS, GRID_STD)
    assert one_mode[COVERAGE_MODES] == 1.0
    assert one_mode[COVERAGE_KL] == pytest.approx(math.log(25))
    # half the points at mode 0, the other half over modes 1-4: p = (1/2, 1/8 x 4)
    expected = 0.5 * math.log(0.5 * 8) + 4 * 0.125 * math.log(0.125 * 8)
    assert kl_from_uniform(torch.tensor([4, 1, 1, 1, 1, 0, 0, 0])) == pytest.approx(expected)
    assert kl_from_uniform(torch.zeros(8, dtype=torch.long)) == pytest.approx(math.log(8))


def test_no_high_quality_point_covers_nothing_and_nonfinite_points_never_count():
    points = torch.tensor([[0.0, 0.0], [float("nan"), 2.0], [float("inf"), 0.0], [9.0, 9.0]])
    readings = coverage(points, RING_MEANS, RING_STD)
    assert readings == {COVERAGE_MODES: 0.0, COVERAGE_HIGH_QUALITY: 0.0,
                        COVERAGE_KL: pytest.approx(math.log(8))}
    with pytest.raises(ValueError, match=r"\(N >= 1, 2\)"):
        coverage(torch.zeros(3, 1, 2, 2), RING_MEANS, RING_STD)


def test_point_data_implies_the_mlp_pair():
    config = resolve_config(dataset="ring8")
    assert (config.arch, config.inv_layers, run_name(config)) == ("mlp", 0, "ring8-s0")
    generator, critic = build_models(config, 2)
    assert isinstance(generator, MlpGenerator) and isinstance(critic, MlpCritic)
    points = generator(torch.randn(5, config.z_dim))
    assert points.shape == (5, 2) and critic(points).shape == (5,)
    assert generator.body[0].out_features == 4 * config.width  # 128 units at the default width
    assert [p.name for p in run_probes(config)][-1] == "coverage"
    assert "coverage" not in [p.name for p in run_probes(resolve_config())]


def _run(out, name: str, *args: str):
    result = CliRunner().invoke(cli, ["run", "--out", str(out), "--name", name, "--dataset",
                                      "ring8", "--steps", "300", *args])
    assert result.exit_code == 0, result.output
    return out / name, result.output


@pytest.mark.parametrize("objective, probes", [
    (("--loss", "wgan", "--penalty", "gp"), "default"),
    (("--loss", "ns", "--penalty", "none"), "all"),
    (("--loss", "hinge", "--penalty", "none"), "default")])
def test_a_ring8_run_logs_exact_coverage_and_scatter_samples(tmp_path, objective, probes):
    run_dir, output = _run(tmp_path, "toy", *objective, "--probes", probes)
    assert "completed: 300 steps" in output and "verdict:" in output
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    coverage_steps = [r["step"] for r in records if COVERAGE_MODES in r]
    assert coverage_steps == [50, 100, 150, 200, 250, 300]  # every 50 steps by default
    for record in records:
        if COVERAGE_MODES in record:
            assert 0 <= record[COVERAGE_MODES] <= 8 and 0 <= record[COVERAGE_HIGH_QUALITY] <= 1
            assert 0 <= record[COVERAGE_KL] <= math.log(8) + 1e-9
    assert any(key.startswith("diversity/") for r in records for key in r)
    samples = sorted(p.name for p in (run_dir / "samples").iterdir())
    assert samples == ["step_000000.png", "step_000100.png", "step_000200.png",
                       "step_000300.png"]
    with Image.open(run_dir / "samples" / "step_000300.png") as image:
        assert image.size == (400, 400)
        colours = image.convert("RGB").getcolors(maxcolors=100_000)
        assert any(r > 200 and g < 80 and b < 80 for _, (r, g, b) in colours)  # the modes' red
    if probes == "all":
        report = CliRunner().invoke(cli, ["report", str(run_dir), "-o", str(tmp_path / "r.html")])
        assert report.exit_code == 0, report.output
        assert "coverage/high_quality" in (tmp_path / "r.html").read_text()


def test_fid_of_a_point_run_is_refused_in_one_line(tmp_path):
    run_dir, _ = _run(tmp_path, "toy", "--steps", "20", "--loss", "ns", "--penalty", "none")
    result = CliRunner().invoke(cli, ["fid", str(run_dir)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].endswith(
        "trained on 2-D points (ring8): FID measures images; the run's exact mode coverage is "
        "its coverage/* readings (metrics.jsonl, the report)")


def test_fid_every_sets_the_coverage_cadence_on_points(tmp_path):
    run_dir, _ = _run(tmp_path, "toy", "--steps", "40", "--fid-every", "20", "--probes",
                      "coverage", "--loss", "ns", "--penalty", "none")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if COVERAGE_MODES in r] == [20, 40]


def test_more_diversity_samples_than_a_batch_read_coverage_against_fixed_points(tmp_path):
    run_dir, _ = _run(tmp_path, "toy", "--steps", "40", "--batch-size", "32",
                      "--diversity-samples", "200", "--diversity-every", "20", "--probes",
                      "diversity", "--loss", "ns", "--penalty", "none")
    resumed, _ = _run(tmp_path, "toy", "--steps", "60", "--resume")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    read = [r for r in records if "diversity/coverage" in r]
    assert resumed == run_dir and [r["step"] for r in read] == [20, 40, 60]
    # the reference is fixed, so its own spread reads the same every time, resumed too
    assert len({r["diversity/pairwise_real"] for r in read}) == 1
    too_few = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "x"), "--dataset",
                                       "ring8", "--diversity-samples", "5"])
    assert too_few.exit_code == 2 and not (tmp_path / "x").exists()
    assert too_few.output.strip().splitlines()[-1].endswith("diversity-samples=5 must be >= 6")
    too_many = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "x"), "--dataset",
                                        "ring8", "--diversity-samples", "20000"])
    assert too_many.exit_code == 2 and not (tmp_path / "x").exists()
    assert too_many.output.strip().splitlines()[-1] == (
        "Error: Invalid value for --diversity-samples: diversity-samples=20,000 needs that many "
        "real images to compare with; the training set has 10,000 (diversity-samples <= "
        "10,000)")


@pytest.mark.parametrize("args, named", [
    (["--dataset", "ring8", "--arch", "igan"], "arch='igan' builds conv nets for images"),
    (["--dataset", "grid25", "--arch", "dcgan"], "dataset 'grid25' is 2-D points"),
    (["--arch", "mlp"], "arch='mlp' is for 2-D point data"),
    (["--dataset", "ring8", "--inv-layers", "2"], "inv-layers=2"),
    (["--dataset", "ring8:x"], "ring8, grid25"),
    (["--dataset", "ring8", "--probes", "fid"], "probe 'fid' does not apply to dataset 'ring8'"),
    (["--probes", "coverage"], "probe 'coverage' does not apply to dataset 'mnist5k'"),
    (["--dataset", "ring8", "--fid-every", "20", "--probes", "critic"],
     "asks for the coverage probe"),
])
def test_settings_that_make_no_sense_for_points_are_one_line_errors(tmp_path, args, named):
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "out"), "--steps", "3",
                                      *args])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and named in errors[0], result.output
    assert not (tmp_path / "out").exists()
