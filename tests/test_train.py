"""The trainer end to end: run-directory contract, every model variant, GP value, resume, signals."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from conftest import TINY, metrics_without_time, stabgan_cli
from probes import Probe
from probes.rundir.files import read_json, read_metrics
from probes.rundir.reader import RunDir, as_lists
from stabgan.config import ARCHS, NORMS, resolve_config
from stabgan.models import Critic
from stabgan.losses import Penalty
from stabgan.train import load_checkpoint, prepare_run, train

TINY_OVERRIDES = {"width": 8, "z_dim": 16, "batch_size": 16, "probes": "none", "fid_final": False}


def test_run_writes_the_whole_contract(tmp_path):
    result = stabgan_cli("run", "--steps", "30", "--out", str(tmp_path), "--name", "t",
                         "--log-every", "5", "--sample-every", "10", "--ckpt-every", "10",
                         "--probes", "none", "--no-fid-final")  # its quality: test_newcomer.py
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "t"
    config = read_json(run_dir / "config.json")
    assert config["config"]["arch"] == "igan" and config["config"]["inv_layers"] == 1
    assert set(config["versions"]) == {"python", "torch", "stabgan"}
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30]
    core = {"loss/critic", "loss/generator", "wgan/distance", "gp/penalty", "gp/norm_mean",
            "time/step_s"}
    assert core <= set(records[-1])
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "completed" and summary["steps"] == 30
    assert summary["step_s_median"] > 0
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    pngs = sorted((run_dir / "samples").glob("step_*.png"))
    assert [p.name for p in pngs] == ["step_000000.png", "step_000010.png", "step_000020.png",
                                      "step_000030.png"]
    with Image.open(pngs[-1]) as image:
        assert image.size[0] > 32 and image.size[1] > 32

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert core <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("wgan/distance")] == [5, 10, 15, 20, 25, 30]
    assert "samples" in events.Tags()["images"]


def _valid_variants():
    yield "dcgan", 0, "none"
    yield "sagan", 1, "none"
    for norm in NORMS:
        for layers in (1, 2):
            yield "igan", layers, norm


def test_a_failure_before_the_first_step_keeps_its_traceback_and_a_summary(tmp_path):
    """A probe that cannot attach fails the run once its directory exists: error.log holds the
    traceback and summary.json says failed, as for a failure inside the loop."""
    from probes import Probe

    class Unattachable(Probe):
        def attach(self, generator, critic):
            raise RuntimeError("this probe cannot attach")

    run = prepare_run(tmp_path / "r", {**TINY_OVERRIDES, "steps": 5})
    with pytest.raises(RuntimeError, match="cannot attach"):
        train(run, [Unattachable()])
    summary = read_json(tmp_path / "r" / "summary.json")
    assert (summary["status"], summary["steps"], summary["error"]) == (
        "failed", 0, "RuntimeError: this probe cannot attach")
    assert "attach" in (tmp_path / "r" / summary["error_log"]).read_text()
    assert summary["started_at"] <= summary["ended_at"]


@pytest.mark.parametrize("arch,inv_layers,norm", list(_valid_variants()))
def test_every_model_variant_trains(tmp_path, arch, inv_layers, norm):
    run = prepare_run(tmp_path / "r", {**TINY_OVERRIDES, "arch": arch, "inv_layers": inv_layers,
                                       "norm": norm, "steps": 5, "log_every": 1,
                                       "inv_where": "both" if arch == "igan" else None})
    summary = train(run)
    assert summary["status"] == "completed" and summary["steps"] == 5
    series = as_lists(RunDir(tmp_path / "r").series())
    assert all(torch.isfinite(torch.tensor(series["loss/critic"][1])))
    assert {a for a, *_ in _valid_variants()} == set(ARCHS)


def test_gradient_penalty_matches_independent_autograd():
    torch.manual_seed(0)
    critic = Critic(resolve_config(**TINY_OVERRIDES), 1).double()
    real = torch.randn(6, 1, 32, 32, dtype=torch.float64)
    fake = torch.randn(6, 1, 32, 32, dtype=torch.float64)
    terms = Penalty("gp", 10.0).compute(critic, real, fake, torch.Generator().manual_seed(0))
    x_hat, penalty, grad = terms.points["gp"], terms.values["gp"], terms.grads["gp"]
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(x_hat, eps * real + (1 - eps) * fake)
    expected = []
    for i in range(6):  # one sample at a time: no batch coupling can hide in the batched version
        xi = x_hat[i:i + 1].detach().clone().requires_grad_(True)
        gi, = torch.autograd.grad(critic(xi).sum(), xi)
        expected.append((gi.norm() - 1) ** 2)
        assert torch.allclose(grad[i], gi[0], atol=1e-12)
    assert torch.allclose(penalty, torch.stack(expected).mean(), atol=1e-12)


def test_resume_equals_uninterrupted_run(tmp_path):
    common = ["--out", str(tmp_path), *TINY, "--log-every", "2", "--ckpt-every", "6",
              "--sample-every", "100", "--seed", "3", "--inv-layers", "2", "--norm", "batch"]
    whole = stabgan_cli("run", "--name", "whole", "--steps", "20", *common)
    assert whole.returncode == 0, whole.stderr
    first = stabgan_cli("run", "--name", "parts", "--steps", "12", *common)
    assert first.returncode == 0, first.stderr
    second = stabgan_cli("run", "--name", "parts", "--resume", "--steps", "20",
                         "--out", str(tmp_path))
    assert second.returncode == 0, second.stderr
    a, b = metrics_without_time(tmp_path / "whole"), metrics_without_time(tmp_path / "parts")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(2, 21, 2))
    for ra, rb in zip(a, b):
        for tag in ra:
            assert rb[tag] == pytest.approx(ra[tag], abs=1e-6, rel=1e-6), (ra["step"], tag)
    assert read_json(tmp_path / "parts" / "summary.json")["steps"] == 20


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_step_and_leaves_a_resumable_run(tmp_path, sig, code):
    process = subprocess.Popen(
        [sys.executable, "-m", "stabgan.cli", "run", "--out", str(tmp_path), "--name", "s",
         *TINY, "--steps", "100000", "--log-every", "1", "--ckpt-every", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "s" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(tmp_path / "s")) < 3:
        time.sleep(0.2)
    assert metrics.exists(), "the run never started logging"
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    summary = read_json(tmp_path / "s" / "summary.json")
    assert summary["status"] == "interrupted"
    checkpoint = load_checkpoint(tmp_path / "s" / "checkpoints" / "last.pt")
    assert checkpoint["step"] == summary["steps"] > 0
    resumed = stabgan_cli("run", "--name", "s", "--resume", "--steps",
                          str(summary["steps"] + 2), "--out", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert read_json(tmp_path / "s" / "summary.json")["status"] == "completed"
    steps = [r["step"] for r in read_metrics(tmp_path / "s")]
    assert steps == sorted(set(steps)), "a resumed run must not duplicate logged steps"


class SignalsItself(Probe):
    """Sends SIGINT to its own process while the run is at step `at` (as a Ctrl-C then)."""

    name = "signals_itself"

    def __init__(self, at: int):
        super().__init__(every=1)
        self.at = at

    def on_step(self, state):
        if state.step == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return {}


@pytest.mark.parametrize("at,status", [(4, "interrupted"), (5, "completed")])
def test_a_signal_stops_the_run_after_its_step_and_in_the_last_step_it_completes(tmp_path, at,
                                                                                 status):
    run = prepare_run(tmp_path / "r", {**TINY_OVERRIDES, "steps": 5, "log_every": 1,
                                       "ckpt_every": 100, "sample_every": 100})
    summary = train(run, [SignalsItself(at)])
    assert (summary["status"], summary["steps"], summary["target_steps"]) == (status, at, 5)
    assert summary["exit_signal"] == (signal.SIGINT if status == "interrupted" else None)
    assert read_json(tmp_path / "r" / "summary.json")["status"] == status
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == at


def test_a_probe_the_monitor_refuses_leaves_no_run_directory(tmp_path):
    class OldStyle(Probe):  # an earlier stabgan's declaration of its plots
        layout = {"Old": {"chart": ["Multiline", ["old/tag"]]}}

    settings = {**TINY_OVERRIDES, "steps": 2}
    with pytest.raises(ValueError, match="OldStyle.layout is no longer read"):
        train(prepare_run(tmp_path / "r", settings), [OldStyle()])
    assert not (tmp_path / "r").exists()
    assert train(prepare_run(tmp_path / "r", settings))["status"] == "completed"  # same name
