"""Monitor: the bring-your-own-loop examples from README.md (with and without a CollapseGuard),
cadences, resume, the bench command."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from probes import CollapseGuard, CriticProbe, Monitor, Probe
from probes.rundir.files import read_metrics
from probes.rundir.reader import RunDir, as_lists

README = Path(__file__).resolve().parents[1] / "README.md"


pytestmark = pytest.mark.usefixtures("one_thread")


def readme_example(section: str = "Readings") -> str:
    """The python code block of README.md's `## <section>` section."""
    text = README.read_text().split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    return blocks[0]


@pytest.fixture(scope="module")
def readme_loops(tmp_path_factory, one_thread):
    """README's own loop (## Readings), then its guarded form (## Collapse detection), run in
    one namespace in a fresh folder: (the folder, the names the code left)."""
    folder = tmp_path_factory.mktemp("readme")
    names = {"__name__": "readme"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for section in ("Readings", "Collapse detection"):
            exec(compile(readme_example(section), "README.md", "exec"), names)
    return folder, names


def test_readme_bring_your_own_loop_runs_and_fills_a_run_directory(readme_loops):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert len(readme_example().splitlines()) <= 50
    run_dir = readme_loops[0] / "runs" / "byo"
    series = as_lists(RunDir(run_dir).series())
    assert series["loss/critic"][0] == [10, 20, 30, 40]
    # the objective's readings: the logit gap, R1's norms, D's accuracy and ADA's r_t
    for tag in ("critic/gap", "r1/penalty", "r1/norm_mean", "r1/norm_p95", "critic/accuracy",
                "critic/r_t", "critic/d_fake_mean", "grad/d.0", "update/g.0", "time/step_s"):
        assert tag in series, tag
    assert not any(tag.startswith(("wgan/", "gp/")) for tag in series)  # no Wasserstein here
    assert "spectra/g.0/sigma0" not in series  # its cadence (100) was not reached
    assert not any(tag.startswith("kernel/") for tag in series)  # no involution layer here
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step_000020.png",
                                                                      "step_000040.png"]
    run = RunDir(run_dir)  # a finished run of its own: the report calls it completed
    assert run.config == {"loss": "ns", "penalty": "r1", "model": "tiny-dcgan", "batch_size": 32}
    assert run.summary["status"] == "completed" and run.summary["steps"] == 40
    with pytest.raises(ValueError, match="already holds a run"):  # never two runs in one
        Monitor(run_dir, nn.Linear(1, 1), nn.Linear(1, 1))
    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    assert "r1/norm" in acc.Tags()["histograms"] and "samples" in acc.Tags()["images"]
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["model"].string_value == "tiny-dcgan"
    assert hparams["batch_size"].number_value == 32
    assert hparams["verdict"].string_value == "unknown"  # no detector, no diagnosis.json


def test_readme_guarded_loop_stops_at_the_fault_and_keeps_the_checkpoint_before(readme_loops):
    folder, names = readme_loops
    run, guard = RunDir(folder / "runs" / "guarded"), names["guard"]
    # NaN weights after step 25: step 26's losses are NaN, logged at once, and the loop stops
    assert names["step"] == 26 and guard.should_stop and guard.nonfinite_step == 26
    assert run.series(["loss/critic"])["loss/critic"][0].tolist() == [10, 20, 26]
    assert (run.diagnosis["verdict"], run.diagnosis["onset_step"]) == ("collapsed", 26)
    assert [e["kind"] for e in run.diagnosis["events"]] == ["nan"]
    assert guard.pre_collapse_step == 20
    kept = run.checkpoint("pre_collapse")
    assert kept["step"] == 20 and all(torch.isfinite(w).all() for w in kept["generator"].values())
    assert run.checkpoint()[CollapseGuard.STATE_KEY] == {"aside_step": None, "kept_step": None}
    assert sorted(p.name for p in (run.path / "checkpoints").iterdir()) == [
        "last.pt", "pre_collapse.pt"]


class Recorder(Probe):
    """Records when the monitor calls it; returns a scalar, a 0-d tensor and a histogram."""

    name = "recorder"

    def __init__(self, every):
        super().__init__(every)
        self.calls: list[tuple[str, int]] = []

    def prepare(self, state):
        self.calls.append(("prepare", state.step))

    def on_step(self, state):
        self.calls.append(("on_step", state.step))
        return {"t/float": 1.5, "t/zero_d": torch.tensor(2.0), "t/hist": torch.arange(3.0)}


def test_monitor_cadence_prepare_and_histogram_routing(tmp_path):
    net = nn.Linear(2, 2)
    recorder = Recorder(every=4)
    monitor = Monitor(tmp_path / "r", generator=net, critic=net, probes=[recorder], log_every=5)
    due = [step for step in range(1, 13) if monitor.due(step)]
    assert due == [3, 4, 5, 7, 8, 10, 11, 12]  # readings, logs, and the steps before readings
    for step in range(1, 13):
        monitor.step(step, loss_critic=torch.tensor(float(step)))
    monitor.close()
    assert recorder.calls == [("prepare", 3), ("on_step", 4), ("prepare", 7), ("on_step", 8),
                              ("prepare", 11), ("on_step", 12)]
    records = {r["step"]: r for r in read_metrics(tmp_path / "r")}
    assert sorted(records) == [4, 5, 8, 10, 12]  # nothing written on prepare-only steps
    assert records[4]["t/float"] == 1.5 and records[4]["t/zero_d"] == 2.0
    assert "t/hist" not in records[4] and "loss/critic" not in records[4]
    assert records[10]["loss/critic"] == 10.0


def test_logged_values_are_what_the_detector_saw_and_what_readers_get_back(tmp_path):
    from probes.collapse import OnlineDetector
    from probes.rundir.files import LOGGED_DIGITS

    class Recording(OnlineDetector):  # the real detector, keeping what it was given
        seen: list[dict] = []

        def update(self, step, scalars):
            self.seen.append(dict(scalars))
            return super().update(step, scalars)

    net = nn.Linear(2, 2)
    detector = Recording()
    monitor = Monitor(tmp_path / "r", generator=net, critic=net, probes=[], log_every=1,
                      guard=detector)
    raw = {"loss/critic": 1 / 3, "wgan/distance": float(torch.tensor(0.1)),
           "big": 123456789012.345, "gone": float("nan"), "up": float("inf")}
    monitor.record(1, raw)
    monitor.close()
    record = read_metrics(tmp_path / "r")[0]
    assert record["loss/critic"] == 0.333333333 and record["big"] == 123456789000.0
    assert np.float32(record["wgan/distance"]) == torch.tensor(0.1).item()  # float32 round-trips
    assert record["gone"] == "nan" and record["up"] == "inf"
    digits = [repr(abs(v)).split("e")[0].replace(".", "").strip("0")
              for v in record.values() if isinstance(v, float)]
    assert max(map(len, digits)) == LOGGED_DIGITS
    written = detector.seen[0]
    assert written["loss/critic"] == record["loss/critic"] and written["big"] == record["big"]
    assert np.isnan(written["gone"]) and written["up"] == float("inf")


def test_critic_probe_resumes_exactly_through_a_checkpoint(tmp_path):
    from stabgan.run_probes import run_probes
    from stabgan.train import prepare_run, train

    settings = {"width": 8, "z_dim": 16, "batch_size": 16, "log_every": 2, "probes": "critic",
                "ckpt_every": 8}

    def critic_series(run_dir):
        series = as_lists(RunDir(run_dir).series())
        return series["critic/loss_ema"], series["critic/loss_drift_z"]

    straight = prepare_run(tmp_path / "straight", {**settings, "steps": 12})
    train(straight, run_probes(straight.config))
    part = prepare_run(tmp_path / "part", {**settings, "steps": 8})
    train(part, run_probes(part.config))
    resumed = prepare_run(tmp_path / "part", {"steps": 12}, resume=True)
    train(resumed, run_probes(resumed.config))
    assert critic_series(tmp_path / "part") == critic_series(tmp_path / "straight")
    assert critic_series(tmp_path / "part")[1][0] == [12]  # the z-score needs 5 earlier readings


def test_probe_constructors_validate_their_arguments():
    with pytest.raises(ValueError, match="window=2"):
        CriticProbe(window=2)
    with pytest.raises(ValueError, match="every=1.5"):
        CriticProbe(every=1.5)


def test_bench_monitor_command_prints_ratios():
    from stabgan.cli import cli

    result = CliRunner().invoke(cli, ["bench", "monitor", "--cycles", "1", "--log-every", "1",
                                      "--width", "8", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for selection in ("none", "default", "all"):
        line = next(l for l in lines if l.strip().startswith(f"probes {selection} "))
        assert re.search(r"[\d.]+ ms/step\s+ratio vs none\s+[\d.]+", line), line


def _last_hparams(run_dir: Path) -> dict:
    """The hparams entry of the run's newest TensorBoard event file (one file per segment)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    newest = sorted(run_dir.glob("events.out.tfevents.*"))[-1]
    acc = EventAccumulator(str(newest), size_guidance={"tensors": 0})
    acc.Reload()
    start = plugin_data_pb2.HParamsPluginData.FromString(
        acc.PluginTagToContent("hparams")["_hparams_/session_start_info"])
    return {k: v.string_value or v.number_value
            for k, v in start.session_start_info.hparams.items()}


def test_a_resumed_run_with_no_step_left_closes_with_its_history_verdict(tmp_path):
    """The detector of a segment that logs nothing has its verdict from the run's history:
    in summary.json, diagnosis.json and the hparams entry alike."""
    from stabgan.train import prepare_run, train
    from test_collapse import FakeDivergence

    settings = dict(width=8, z_dim=16, batch_size=16, probes="none", log_every=1,
                    ckpt_every=10, sample_every=100, steps=30)
    first = train(prepare_run(tmp_path / "r", settings), [FakeDivergence(24)])
    again = train(prepare_run(tmp_path / "r", {}, resume=True), [FakeDivergence(24)])
    run = RunDir(tmp_path / "r")
    assert first["verdict"] == again["verdict"] == run.summary["verdict"] == "collapsed"
    assert again["onset_step"] == run.diagnosis["onset_step"] == 24
    assert _last_hparams(run.path)["verdict"] == "collapsed"


def test_monitor_close_returns_the_detectors_final_diagnosis(tmp_path):
    net = nn.Linear(2, 2)
    guard = CollapseGuard()
    monitor = Monitor(tmp_path, net, net, log_every=1, guard=guard)
    monitor.record(1, {"loss/critic": float("nan")})
    diagnosis, written = monitor.close(), RunDir(tmp_path).diagnosis
    assert (diagnosis["verdict"], diagnosis["onset_step"]) == ("collapsed", 1)
    assert diagnosis["events"][0]["message"] == written["events"][0]["message"]
    assert Monitor(tmp_path / "bare", net, net).close() is None
