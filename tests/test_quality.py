"""The run's best quality reading kept as checkpoints/best.pt, and the detections that read the
samples' quality on real runs: a rising FID (quality_regression) and a generator that never
covers the data (low_coverage)."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import TINY, stabgan_cli
from probes.collapse import Thresholds
from probes.readings import COVERAGE_MODES, DIVERSITY_COVERAGE
from probes.rundir.files import read_json, read_metrics
from probes.rundir.reader import RunDir
from stabgan.config import RunConfig
from stabgan.models import MlpGenerator
from stabgan.toy import COVERAGE_HIGH_QUALITY, CoverageProbe
from stabgan.train import quality_score

pytestmark = pytest.mark.usefixtures("one_thread")

RING = ["--dataset", "ring8", "--loss", "wgan", "--penalty", "gp", "--penalty-weight", "0.1",
        "--lr-g", "1e-3", "--lr-d", "1e-3", "--beta1", "0.5", "--batch-size", "64",
        "--fid-every", "20", "--probes", "coverage", "--threads", "1"]


def _ring_run(out, name: str, steps: int, *extra: str):
    result = stabgan_cli("run", "--out", str(out), "--name", name, *RING, "--steps", str(steps),
                         *extra)
    assert result.returncode == 0, result.stderr
    return out / name


def _best_of(records: list[dict]) -> tuple[int, float]:
    """(step, modes) of the best coverage reading: most modes, then the most high-quality
    samples, the earliest on a tie."""
    readings = [r for r in records if COVERAGE_MODES in r]
    best = max(readings, key=lambda r: (r[COVERAGE_MODES], r[COVERAGE_HIGH_QUALITY], -r["step"]))
    return best["step"], best[COVERAGE_MODES]


def test_best_checkpoint_holds_the_best_readings_generator_and_survives_a_resume(tmp_path):
    run_dir = _ring_run(tmp_path, "whole", 120)
    summary = read_json(run_dir / "summary.json")
    step, modes = _best_of(read_metrics(run_dir))
    assert summary["best_checkpoint"] == {"step": step, "tag": COVERAGE_MODES, "value": modes}
    best = RunDir(run_dir).checkpoint("best")  # weights_only: no code runs
    assert best["step"] == step and best["best"]["step"] == step
    # the generator in best.pt gives the logged reading again, exactly
    config = RunConfig(**best["config"])
    generator = MlpGenerator(config, 2)
    generator.load_state_dict(best["generator"])
    probe = CoverageProbe(config.dataset, z_dim=config.z_dim, seed=config.seed)
    probe.attach(generator, None)
    assert probe.on_step(None)[COVERAGE_MODES] == modes
    if step != 120:  # a later, worse generator did not overwrite it
        last = RunDir(run_dir).checkpoint("last")
        assert any(not torch.equal(last["generator"][k], best["generator"][k])
                   for k in best["generator"])
    # a run stopped half-way and resumed keeps the same best, bit for bit
    split = _ring_run(tmp_path, "split", 60)
    resumed = stabgan_cli("run", "--out", str(tmp_path), "--name", "split", "--resume",
                          "--steps", "120")
    assert resumed.returncode == 0, resumed.stderr
    assert read_json(split / "summary.json")["best_checkpoint"] == summary["best_checkpoint"]
    kept = RunDir(split).checkpoint("best")["generator"]
    assert all(torch.equal(kept[k], best["generator"][k]) for k in kept)


def test_quality_score_ranks_fid_lower_and_modes_higher():
    assert quality_score({"fid/domain": 12.0})[2] > quality_score({"fid/domain": 30.0})[2]
    assert quality_score({"fid/domain": float("nan")}) is None
    assert quality_score({"loss/critic": 1.0}) is None
    more = quality_score({COVERAGE_MODES: 8.0, COVERAGE_HIGH_QUALITY: 0.2})
    fewer = quality_score({COVERAGE_MODES: 7.0, COVERAGE_HIGH_QUALITY: 0.9})
    assert more[2] > fewer[2] and more[:2] == (COVERAGE_MODES, 8.0)


def test_a_generator_that_never_learns_never_covers_the_data(tmp_path):
    """A generator whose learning rate is too small to move it: its samples sit where they
    started, far from the ring; nothing falls from a better past, and the run says so."""
    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "stuck", "--dataset", "ring8",
                         "--loss", "ns", "--penalty", "none", "--lr-g", "1e-9", "--steps", "300",
                         "--log-every", "3", "--diversity-every", "3", "--threads", "1",
                         "--probes", "diversity")
    assert result.returncode == 0, result.stderr
    coverage = [r[DIVERSITY_COVERAGE] for r in read_metrics(tmp_path / "stuck")
                if DIVERSITY_COVERAGE in r]
    assert len(coverage) == 100 and max(coverage) < 0.25
    diagnosis = read_json(tmp_path / "stuck" / "diagnosis.json")
    [event] = [e for e in diagnosis["events"] if e["kind"] == "low_coverage"]
    assert event["severity"] == "collapse" and diagnosis["verdict"] == "collapsed"
    assert "low coverage of the data (diversity/coverage" in event["message"]
    assert "verdict: collapsed" in result.stderr


def test_a_short_image_run_stuck_from_the_start_is_told_within_its_length(tmp_path):
    """At the default cadences a stretch of low coverage is at most cover_run_share of the run,
    and a run reads its samples often enough to show one: a default-length (500-step) mnist5k
    run whose generator never moves hears of it (the unsized patience, 800 steps, would
    outlast the run, and readings every 100 steps would leave the rule one point to judge)."""
    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "stuck", *TINY[:-3],
                         "--no-fid-final", "--probes", "diversity", "--lr-g", "1e-9",
                         "--steps", "500", "--threads", "1")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "stuck"
    readings = [r["step"] for r in read_metrics(run_dir) if DIVERSITY_COVERAGE in r]
    assert readings == list(range(50, 501, 50))  # 10 readings: 500 // 10
    diagnosis = read_json(run_dir / "diagnosis.json")
    assert diagnosis["thresholds"]["cover_patience"] == 28  # ceil(0.55 · 500 / 10) logged steps
    [event] = [e for e in diagnosis["events"] if e["kind"] == "low_coverage"]
    assert event["severity"] == "collapse" and event["evidence"]["detected_step"] <= 500
    # the cadence: 10 x log_every, denser in a run too short for 10 readings of it; a loop
    # of unknown length keeps 10 x log_every
    from types import SimpleNamespace
    from probes.base import sample_cadence
    assert [sample_cadence(SimpleNamespace(steps=n, log_every=10))
            for n in (500, 800, 1500, 55, None)] == [50, 80, 100, 10, 100]
    assert Thresholds().for_run(200, 10).cover_patience == 11  # 0.55 · 200 / 10, exactly
    assert Thresholds().for_run(None, 10) == Thresholds()  # a length unknown: unchanged
    assert Thresholds().for_run(1500, 10).cover_patience == 80  # the toy preset's: the cap
    with pytest.raises(ValueError, match="cover_run_share=0"):
        Thresholds(cover_run_share=0)


@pytest.mark.slow
@pytest.mark.usefixtures("classifier_cache")
def test_a_late_fid_rise_is_a_quality_regression_and_best_pt_is_from_before_it(tmp_path):
    """A generator that learns for 160 steps, then a corrupted data stream (real images
    rescaled to [0, 1]): it learns the wrong data, its FID against the true data rises several
    times over its best, and best.pt keeps the generator from before."""
    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "rise", "--steps", "240",
                         "--fid-every", "20", "--fid-samples", "200", "--probes", "fid",
                         "--no-fid-final", "--threads", "2", "--fault", "data@160")
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "rise"
    fid = [(r["step"], r["fid/domain"]) for r in read_metrics(run_dir) if "fid/domain" in r]
    best_step, best_value = min(fid, key=lambda p: (p[1], p[0]))
    assert best_step <= 160 and max(v for s, v in fid if s > 160) > 3 * best_value
    diagnosis = read_json(run_dir / "diagnosis.json")
    [event] = [e for e in diagnosis["events"] if e["kind"] == "quality_regression"]
    assert event["step"] == 180 and event["evidence"]["value"] > 3 * best_value
    summary = read_json(run_dir / "summary.json")
    assert summary["best_checkpoint"] == {"step": best_step, "tag": "fid/domain",
                                          "value": best_value}
    measured = stabgan_cli("fid", str(run_dir), "-n", "200", "--checkpoint", "best", "--json")
    assert measured.returncode == 0, measured.stderr
    readings = json.loads(measured.stdout)
    assert readings["step"] == best_step and readings["fid/domain"] < fid[-1][1]
