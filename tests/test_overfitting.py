"""--holdout and --subset, the overfit probe (ADA's r_v on held-out images) and the detector's
overfitting warning: the split, r_v of critics with a known answer, the rule on synthetic
series, a real loop whose critic memorises its data, the CLI's errors and resume."""
from __future__ import annotations

import json
import random

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from conftest import TINY, metrics_without_time
from probes import CollapseGuard, Monitor, OverfitProbe, build_probes
from probes.base import StepState
from probes.collapse import Thresholds, detect, verdict
from probes.objectives import Objective
from probes.overfit import overfit_readings
from probes.readings import OVERFIT_D_FAKE, OVERFIT_D_HOLDOUT, OVERFIT_D_TRAIN, OVERFIT_R_V
from probes.rundir.reader import RunDir
from stabgan.cli import cli
from stabgan.config import ConfigError
from stabgan.data import BatchStream, load_dataset, split_dataset
from stabgan.train import prepare_run

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- the split

def _ids(n: int) -> TensorDataset:
    """n items whose 'image' is their own index: what a batch holds is read off directly."""
    return TensorDataset(torch.arange(n, dtype=torch.float32)[:, None], torch.arange(n))


def test_held_out_items_never_reach_a_training_batch():
    train, held = split_dataset(_ids(1000), holdout=100, subset=300, min_training=32)
    held_ids = set(held.images.flatten().long().tolist())
    train_ids = set(train.tensors[1].tolist())
    assert len(held_ids) == 100 and len(train) == len(train_ids) == 300
    assert not held_ids & train_ids
    # as many training images as held-out ones, to score beside them
    assert len(held.training) == 100 and set(held.training.flatten().long().tolist()) <= train_ids
    stream = BatchStream(train, batch_size=32, seed=5)
    seen = {i for _ in range(40) for i in stream.next()[1].tolist()}  # four epochs
    assert seen == train_ids
    # fewer trained on than held out: the training sample is every training image
    small, held_small = split_dataset(_ids(1000), holdout=100, subset=40)
    assert sorted(held_small.training.flatten().long().tolist()) == small.tensors[1].tolist()


def test_the_split_is_fixed_nested_and_the_same_for_every_seed(tmp_path):
    data = _ids(1000)
    (a, held_a), (b, held_b) = (split_dataset(data, 100, 300) for _ in range(2))
    assert torch.equal(a.tensors[1], b.tensors[1]) and torch.equal(held_a.images, held_b.images)
    smaller, _ = split_dataset(data, 100, 50)
    whole, held_whole = split_dataset(data, 100, 0)
    assert set(smaller.tensors[1].tolist()) < set(a.tensors[1].tolist())  # a subset grows
    assert len(whole) == 900 and torch.equal(held_whole.images, held_a.images)  # twins
    assert split_dataset(data) == (data, None)
    # a run's --seed draws weights and batches, never the split: seed twins train on the same
    runs = [prepare_run(tmp_path / f"s{seed}", {"holdout": 50, "subset": 64, "seed": seed,
                                                "batch_size": 16}) for seed in (0, 1)]
    assert not any(tmp_path.iterdir()), "prepare_run writes nothing"
    for one, other in ([r.dataset.tensors[0] for r in runs], [r.held_out.images for r in runs],
                       [r.held_out.training for r in runs]):
        assert torch.equal(one, other)
    assert len(runs[0].dataset) == 64 and runs[0].held_out.images.shape == (50, 1, 32, 32)


def test_a_folder_dataset_is_split_too(tmp_path):
    for i in range(30):
        Image.new("RGB", (8, 8), (i * 8, 0, 0)).save(tmp_path / f"{i:02d}.png")
    train, held = split_dataset(load_dataset(f"folder:{tmp_path}", 32), holdout=5, subset=20)
    reds = lambda images: {round(float(x[0, 0, 0]), 3) for x in images}  # noqa: E731
    trained = reds(train[i][0] for i in range(len(train)))
    assert len(train) == 20 and len(trained) == 20 and held.images.shape == (5, 3, 32, 32)
    assert not reds(held.images) & trained and reds(held.training) <= trained


def test_a_split_that_does_not_fit_names_the_setting():
    with pytest.raises(ConfigError, match=r"subset=950 with holdout=100 needs 1,050 images; "
                                          r"the dataset has 1,000 \(holdout \+ subset <= 1,000\)"):
        split_dataset(_ids(1000), 100, 950)
    with pytest.raises(ConfigError, match=r"holdout=990 leaves 10 .* fewer than a batch of 64 "
                                          r"\(holdout <= 936\)"):
        split_dataset(_ids(1000), 990, 0, min_training=64)


# --------------------------------------------------------------------------- r_v

def test_r_v_of_critics_with_a_known_answer():
    gen = torch.Generator().manual_seed(0)
    noise = lambda: 0.1 * torch.randn(500, generator=gen)  # noqa: E731
    # memorised: held-out real images scored exactly like generated ones
    memorised = overfit_readings(3 + noise(), -1 + noise(), -1 + noise())
    assert memorised[OVERFIT_R_V] == pytest.approx(1.0, abs=0.02)
    assert memorised[OVERFIT_D_TRAIN] == pytest.approx(3.0, abs=0.02)
    assert memorised[OVERFIT_D_HOLDOUT] == pytest.approx(-1.0, abs=0.02)
    assert memorised[OVERFIT_D_FAKE] == pytest.approx(-1.0, abs=0.02)
    # generalising: held-out images scored like training ones; a quarter of the way
    assert overfit_readings(3 + noise(), 3 + noise(), -1 + noise())[OVERFIT_R_V] == \
        pytest.approx(0.0, abs=0.02)
    assert overfit_readings(torch.full((4,), 2.0), torch.full((4,), 1.5),
                            torch.zeros(4))[OVERFIT_R_V] == 0.25
    # any loss: an offset and a scale of D's scores change nothing
    train, holdout, fake = 3 + noise(), 1 + noise(), -1 + noise()
    assert overfit_readings(7 * train - 4, 7 * holdout - 4, 7 * fake - 4)[OVERFIT_R_V] == \
        pytest.approx(overfit_readings(train, holdout, fake)[OVERFIT_R_V], rel=1e-9)
    # D does not tell training images from generated ones: no ratio to take
    assert OVERFIT_R_V not in overfit_readings(noise(), noise(), noise() + 0.001)
    assert OVERFIT_R_V not in overfit_readings(noise(), noise(), noise() + 1.0)  # fakes higher


class Memoriser(nn.Module):
    """A critic that scores an image 1 when it is one of `memorised`, else 0 (with a BatchNorm
    and a spectral-norm layer whose state a probe must leave alone)."""

    def __init__(self, memorised: torch.Tensor):
        super().__init__()
        self.register_buffer("memorised", memorised.flatten(1))
        self.norm = nn.BatchNorm1d(1)
        self.sn = nn.utils.parametrizations.spectral_norm(nn.Linear(1, 1))

    def forward(self, x):
        self.sn(self.norm(x.flatten(1)[:, :1]))  # runs both in whatever mode they are in
        return (torch.cdist(x.flatten(1), self.memorised).amin(dim=1) < 1e-6).float()


class Pool(nn.Module):
    """A 'generator' drawing images from a pool by its noise: real images it was never shown."""

    z_dim = 4

    def __init__(self, pool: torch.Tensor):
        super().__init__()
        self.register_buffer("pool", pool)
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, z):
        return self.scale * self.pool[(z[:, 0].abs() * 1e4).long() % len(self.pool)]


def test_the_probe_reads_a_memorising_critic_and_leaves_training_alone():
    digits = load_dataset("mnist5k", 32).tensors[0]
    held_out, training, pool = digits[:40], digits[40:60], digits[100:200]
    critic, generator = Memoriser(training), Pool(pool)
    probe = OverfitProbe(held_out, training, every=1)
    probe.attach(generator, critic)
    before = ({k: v.clone() for k, v in critic.state_dict().items()}, torch.get_rng_state())
    readings = probe.on_step(StepState(step=1, generator=generator, critic=critic))
    assert readings == {OVERFIT_D_TRAIN: 1.0, OVERFIT_D_HOLDOUT: 0.0, OVERFIT_D_FAKE: 0.0,
                        OVERFIT_R_V: 1.0}
    after = critic.state_dict()
    assert all(torch.equal(before[0][k], after[k]) for k in after), "BatchNorm or SN moved"
    assert torch.equal(before[1], torch.get_rng_state()) and critic.training
    # a critic that knows digits rather than its training set: held out scored like training
    generalising = OverfitProbe(held_out, training, every=1)
    generalising.attach(generator, nn.Sequential(nn.Flatten(), nn.Linear(1024, 1)))
    with torch.no_grad():
        generalising.critic[1].weight.fill_(-1.0 / 1024)  # minus the mean pixel
    generator.scale.data.fill_(-1.0)  # every sample is a negative: far from any digit
    r_v = generalising.on_step(StepState(step=1, generator=generator, critic=critic))[OVERFIT_R_V]
    assert abs(r_v) < 0.15


def test_build_probes_adds_the_probe_only_with_held_out_images():
    images = torch.zeros(8, 1, 4, 4)
    assert "overfit" not in [p.name for p in build_probes("all")]
    built = build_probes("default", log_every=5, held_out=(images, images))
    assert [p.every for p in built if p.name == "overfit"] == [50]
    assert build_probes("overfit", overfit_every=7, held_out=(images, images))[0].every == 7
    with pytest.raises(ValueError, match="give --holdout N"):
        build_probes("critic,overfit")
    with pytest.raises(ValueError, match="same shape"):
        OverfitProbe(images, torch.zeros(8, 1, 5, 5))


# --------------------------------------------------------------------------- the rule

def _series(r_v, steps=3000, every=100) -> dict:
    """A run logged every 10 steps (its critic loss) whose overfit probe reads r_v(step, rng)
    every `every` steps."""
    rng = random.Random(0)
    logged = list(range(10, steps + 1, 10))
    read = [s for s in logged if s % every == 0]
    return {"loss/critic": (logged, [-5 + rng.gauss(0, 0.5) for _ in logged]),
            OVERFIT_R_V: (read, [r_v(s, rng) for s in read])}


def test_a_sustained_r_v_is_an_overfitting_warning_never_a_collapse():
    rising = _series(lambda s, rng: rng.gauss(0.05, 0.05) + (0.0 if s < 1500 else 0.9))
    events = detect(rising)
    assert [(e["kind"], e["severity"], e["step"]) for e in events] == [
        ("overfitting", "warning", 1500)]
    assert "memorises its training set" in events[0]["message"]
    assert verdict(events) == ("unstable", None)
    # however far: D scoring held-out images below generated ones is still a warning
    far = detect(_series(lambda s, rng: 0.05 if s < 1000 else 3.0))
    assert [(e["kind"], e["severity"]) for e in far] == [("overfitting", "warning")]
    # noise around a generalising critic, single readings over the level, and a stretch just
    # under it: nothing
    assert detect(_series(lambda s, rng: rng.gauss(0.05, 0.05) + (0.6 if s % 700 == 0 else 0))) == []
    t = Thresholds()
    assert detect(_series(lambda s, rng: t.overfit_warn - 0.01 if s > 800 else 0.0)) == []


def test_a_memorising_critic_in_a_loop_of_its_own_is_caught(tmp_path):
    """A real loop: D trained (non-saturating) on 16 digits against a 'generator' drawing other
    real digits, so the only way to tell them apart is to memorise the 16; the held-out digits
    then score like the generated ones (r_v above 0.6 from step 60 on) and the guard warns."""
    torch.manual_seed(0)
    digits = load_dataset("mnist5k", 32).tensors[0]
    held_out, training, generator = digits[:64], digits[64:80], Pool(digits[100:1100])
    critic = nn.Sequential(nn.Flatten(), nn.Linear(1024, 128), nn.LeakyReLU(0.2),
                           nn.Linear(128, 1), nn.Flatten(0))
    opt = torch.optim.Adam(critic.parameters(), 1e-3)
    guard = CollapseGuard(tmp_path)
    monitor = Monitor(tmp_path, generator, critic, log_every=10, guard=guard,
                      objective=Objective("ns", "none"),
                      probes=build_probes("default", z_dim=4, log_every=10, overfit_every=10,
                                          held_out=(held_out, training)))
    for step in range(1, 221):
        fake = generator(torch.randn(16, 4))
        d_real, d_fake = critic(torch.cat([training, fake])).chunk(2)
        loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        monitor.step(step, real=training, fake=fake, d_real=d_real, d_fake=d_fake,
                     loss_critic=loss, loss_generator=F.softplus(-d_fake).mean())
    monitor.close()
    r_v = RunDir(tmp_path).series([OVERFIT_R_V])[OVERFIT_R_V][1]
    assert len(r_v) == 22 and min(r_v[5:]) > 0.6
    events = [e for e in RunDir(tmp_path).diagnosis["events"] if e["kind"] == "overfitting"]
    assert [e["severity"] for e in events] == ["warning"]


# --------------------------------------------------------------------------- the CLI

def _run(out, name, *args):
    return CliRunner().invoke(cli, ["run", "--out", str(out), "--name", name, *TINY,
                                    "--log-every", "5", "--ckpt-every", "10", *args])


@pytest.mark.parametrize("args,named", [
    (["--holdout", "-1"], "holdout=-1 must be >= 0"),
    (["--subset", "-5"], "subset=-5 must be >= 0"),
    (["--subset", "8"], "subset=8 must be 0 (all images) or at least batch-size 16"),
    (["--holdout", "4990"], "holdout=4,990 leaves 10 of the dataset's 5,000 images"),
    (["--holdout", "500", "--subset", "4600"], "subset=4,600 with holdout=500 needs 5,100"),
    (["--probes", "critic,overfit"], "give --holdout N"),
])
def test_bad_settings_exit_2_in_one_line_and_write_nothing(tmp_path, args, named):
    result = _run(tmp_path / "out", "x", "--steps", "2", *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and named in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_run_with_held_out_images_logs_them_and_resumes_with_the_same_split(tmp_path):
    probes = ["--holdout", "48", "--subset", "32", "--probes", "critic,overfit",
              "--overfit-every", "10"]
    whole = _run(tmp_path, "whole", "--steps", "30", *probes)
    assert whole.exit_code == 0, whole.output
    part = _run(tmp_path, "part", "--steps", "20", *probes)
    assert part.exit_code == 0, part.output
    refused = _run(tmp_path, "part", "--resume", "--steps", "30", "--holdout", "10")
    assert refused.exit_code == 2 and "holdout=10 differs from the saved run's 48" in \
        refused.output, refused.output
    resumed = CliRunner().invoke(cli, ["run", "--out", str(tmp_path), "--name", "part",
                                       "--resume", "--steps", "30"])
    assert resumed.exit_code == 0, resumed.output
    config = json.loads((tmp_path / "part" / "config.json").read_text())["config"]
    assert (config["holdout"], config["subset"]) == (48, 32)
    # a resumed run trains on the same images and reads the same held-out ones
    a, b = metrics_without_time(tmp_path / "whole"), metrics_without_time(tmp_path / "part")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert rb == pytest.approx(ra, abs=1e-6, rel=1e-6), ra["step"]
    read = [r for r in a if OVERFIT_D_HOLDOUT in r]
    assert [r["step"] for r in read] == [10, 20, 30]
    assert all({OVERFIT_D_TRAIN, OVERFIT_D_FAKE} <= set(r) for r in read)
