"""CollapseGuard: the stop decision, pre_collapse.pt and its state through a checkpoint, in a
bare loop and in the trainer (a collapsed run resumed keeps what a straight one keeps)."""
from __future__ import annotations

import math

import pytest
import torch

from probes import CollapseGuard, Monitor
from probes.guard import _PreCollapseKeeper
from probes.rundir.files import PRE_COLLAPSE_CHECKPOINT
from probes.rundir.reader import RunDir
from probes.rundir.writer import RunWriter
from test_collapse import FakeDivergence

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_nonfinite_loss_or_weight_stops_at_once_a_collapse_only_when_asked(tmp_path):
    for readings in ({"loss/critic": math.nan}, {"loss/generator": math.inf},
                     {"weights/nonfinite": 3.0}):
        guard = CollapseGuard(tmp_path)
        guard.update(1, {"loss/critic": -1.0, "loss/generator": 1.0})
        assert not guard.should_stop
        guard.update(2, readings)
        assert guard.should_stop and guard.nonfinite_step == 2 and guard.verdict == "collapsed"
    guard = CollapseGuard(tmp_path)  # a NaN reading elsewhere: a collapse, but the run can go on
    events = guard.update(1, {"loss/critic": -1.0, "spectra/g.0/sigma0": math.nan})
    assert [e["kind"] for e in events] == ["nan"] and not guard.should_stop
    guard = CollapseGuard(tmp_path, stop_on_collapse=True)
    guard.update(1, {"spectra/g.0/sigma0": math.nan})
    assert guard.should_stop and guard.nonfinite_step is None


def test_checkpoints_carry_the_guard_state_and_a_collapse_keeps_the_one_before(tmp_path):
    writer = RunWriter(tmp_path)
    guard = CollapseGuard(tmp_path)
    for step in (10, 20):
        guard.update(step, {"loss/critic": -1.0})
        guard.save_checkpoint(writer, step, {"step": step, "generator": {}})
    saved = RunDir(tmp_path).checkpoint()[CollapseGuard.STATE_KEY]
    assert saved == {"aside_step": None, "kept_step": None}
    guard.update(25, {"loss/critic": math.nan})
    assert guard.pre_collapse_step == 20
    assert RunDir(tmp_path).checkpoint("pre_collapse")["step"] == 20
    guard.close()
    writer.close()
    resumed = CollapseGuard(tmp_path)
    resumed.load_state_dict({**saved, "kept_step": 20}, 20)
    assert resumed.state_dict() == {"aside_step": None, "kept_step": 20}
    earlier = CollapseGuard(tmp_path)  # an earlier stabgan's state also named the step
    earlier.load_state_dict({"checkpoint_step": 20, "aside_step": None, "kept_step": 20}, 20)
    assert earlier.state_dict() == resumed.state_dict()
    (tmp_path / "checkpoints" / "pre_collapse.pt").unlink()
    resumed.load_state_dict({**saved, "kept_step": 20, "aside_step": 10}, 20)  # files gone
    assert resumed.state_dict() == saved
    aside = tmp_path / "checkpoints" / ".pre_onset.pt"  # set aside after the checkpoint, then
    aside.write_bytes(b"x")                              # the run was killed: stale
    resumed.load_state_dict(saved, 20)
    assert not aside.exists() and resumed.state_dict() == saved


def test_a_collapsed_run_resumed_keeps_its_pre_collapse_checkpoint(tmp_path):
    from stabgan.train import prepare_run, train

    settings = dict(width=8, z_dim=16, batch_size=16, probes="none", threads=1, log_every=1,
                    ckpt_every=5, sample_every=100)
    straight = train(prepare_run(tmp_path / "straight", dict(settings, steps=40)), [FakeDivergence(24)])
    train(prepare_run(tmp_path / "parts", dict(settings, steps=30)), [FakeDivergence(24)])
    resumed = train(prepare_run(tmp_path / "parts", {"steps": 40}, resume=True), [FakeDivergence(24)])
    assert straight["onset_step"] == resumed["onset_step"] == 24
    assert straight["pre_collapse_step"] == resumed["pre_collapse_step"] == 20
    for run in ("straight", "parts"):
        checkpoints = tmp_path / run / "checkpoints"
        assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt", "pre_collapse.pt"]
        assert RunDir(tmp_path / run).checkpoint("pre_collapse")["step"] == 20
    assert RunDir(tmp_path / "parts").diagnosis["events"] == RunDir(
        tmp_path / "straight").diagnosis["events"]
    last = RunDir(tmp_path / "parts").checkpoint()
    assert last["step"] == 40 and last[CollapseGuard.STATE_KEY] == {"aside_step": None,
                                                                    "kept_step": 20}
    assert all(torch.isfinite(v).all() for v in last["generator"].values()
               if v.is_floating_point())


def _diverging(step: int) -> dict[str, float]:
    """FakeDivergence's readings for a step: flat, then the distance ×1000 from step 24 on."""
    distance = 1000.0 if step >= 24 else 1.0
    return {"wgan/distance": distance, "loss/critic": -distance, "gp/norm_mean": 1.0}


def _bare_loop(guard: CollapseGuard, monitor: Monitor, steps, logged) -> None:
    """A loop of your own: _diverging readings at the logged steps, a checkpoint every 5."""
    for step in steps:
        if step in logged:
            monitor.record(step, _diverging(step))
        if step % 5 == 0:
            guard.save_checkpoint(monitor.writer, step, {"step": step, "generator": {}})


def test_a_run_killed_while_an_excursion_is_watched_keeps_its_copy_through_a_resume(tmp_path):
    """Checkpoint 25 sets 20 aside (an excursion from 24 is watched); the run is killed. Resumed
    logging every 8 steps, checkpoint 30 comes before the first logged step: the copy must
    survive it, to be kept when the excursion is confirmed."""
    net = torch.nn.Linear(2, 2)
    guard = CollapseGuard(tmp_path)
    monitor = Monitor(tmp_path, net, net, log_every=1, guard=guard)
    _bare_loop(guard, monitor, range(1, 26), range(1, 26))
    assert guard.state_dict()["aside_step"] == 20
    monitor.writer.close()  # killed: neither the monitor nor the guard closes
    resumed = CollapseGuard(tmp_path)
    monitor = Monitor(tmp_path, net, net, log_every=8, resume_from=25, guard=resumed)
    resumed.load_state_dict(RunDir(tmp_path).checkpoint()[CollapseGuard.STATE_KEY], 25)
    _bare_loop(resumed, monitor, range(26, 57), range(32, 57, 8))
    monitor.close()
    assert (resumed.verdict, resumed.detector.onset_step) == ("collapsed", 24)
    assert resumed.pre_collapse_step == 20
    assert RunDir(tmp_path).checkpoint("pre_collapse")["step"] == 20


def _keeper(ckpt_dir) -> _PreCollapseKeeper:
    keeper = _PreCollapseKeeper()
    keeper.dir = ckpt_dir
    return keeper


def test_pre_collapse_keeper_sets_aside_the_checkpoint_from_before_the_onset(tmp_path):
    ckpt = tmp_path
    keeper = _keeper(ckpt)

    def save(step):
        (ckpt / "last.pt").write_text(str(step))
        keeper.saved(step)

    keeper.before_save(pending_onset=None)
    save(200)
    keeper.before_save(pending_onset=380)  # checkpoint 400: an excursion began at 380
    save(400)
    keeper.keep(onset=380)  # confirmed at 420: last.pt (400) is after the onset, 200 is kept
    assert (ckpt / PRE_COLLAPSE_CHECKPOINT).read_text() == "200" and keeper.kept_step == 200
    assert not (ckpt / keeper.ASIDE).exists()
    # an excursion that ends without a collapse drops the copy
    keeper = _keeper(ckpt)
    save(600)
    keeper.before_save(pending_onset=610)
    save(800)
    assert (ckpt / keeper.ASIDE).read_text() == "600"
    keeper.before_save(pending_onset=None)
    assert not (ckpt / keeper.ASIDE).exists()


def test_a_later_excursion_sets_aside_the_newest_checkpoint_from_before_its_onset(tmp_path):
    """Excursion A (from 150) set checkpoint 100 aside; A ended and B began (250) with no
    checkpoint in between: checkpoint 300 replaces that copy by 200, the newest before B."""
    keeper = _keeper(tmp_path)

    def save(step, pending_onset):
        keeper.before_save(pending_onset)
        (tmp_path / "last.pt").write_text(str(step))
        keeper.saved(step)

    save(100, None)
    save(200, 150)
    save(300, 250)
    keeper.keep(onset=250)
    assert (tmp_path / PRE_COLLAPSE_CHECKPOINT).read_text() == "200" and keeper.kept_step == 200
    assert not (tmp_path / keeper.ASIDE).exists()
