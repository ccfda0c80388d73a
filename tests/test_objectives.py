"""The objective seam: each loss and penalty against an independent formula (float64), the lazy
penalty, every loss x penalty trained, round-tripped through config.json and resumed bit for
bit, the settings' errors, and a detector that judges the tags its objective declares."""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch
from torch import nn

from conftest import TINY, stabgan_cli
from probes.collapse import detect, diagnose_run
from probes.objectives import LOSSES, PENALTIES, Objective
from probes.rundir.files import read_json, write_json
from probes.readings import LOSS_CRITIC_ADVERSARIAL
from probes.rundir.reader import RunDir
from stabgan.config import resolve_config
from stabgan.losses import LOSSES as LOSS_MATHS
from stabgan.losses import Penalty
from stabgan.natural_zoo import with_adversarial_loss
from stabgan.run_probes import run_probes
from stabgan.train import prepare_run, train

pytestmark = pytest.mark.usefixtures("one_thread")


def _softplus(x):
    return torch.log(1 + torch.exp(x))


# the losses as the papers write them, one sample at a time
FORMULAS = {
    "wgan": (lambda r, f: sum(f) / len(f) - sum(r) / len(r), lambda f, r: -sum(f) / len(f)),
    "hinge": (lambda r, f: sum(max(0, 1 - x) for x in r) / len(r)
              + sum(max(0, 1 + x) for x in f) / len(f), lambda f, r: -sum(f) / len(f)),
    "ns": (lambda r, f: sum(_softplus(-x) for x in r) / len(r)
           + sum(_softplus(x) for x in f) / len(f), lambda f, r: sum(_softplus(-x) for x in f) / len(f)),
    "rpgan": (lambda r, f: sum(_softplus(-(a - b)) for a, b in zip(r, f)) / len(r),
              lambda f, r: sum(_softplus(-(b - a)) for a, b in zip(r, f)) / len(r)),
}


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_equals_its_formula(name):
    g = torch.Generator().manual_seed(0)
    d_real = torch.randn(7, generator=g, dtype=torch.float64) * 3
    d_fake = torch.randn(7, generator=g, dtype=torch.float64) * 3
    loss = LOSS_MATHS[name]()
    critic, generator = FORMULAS[name]
    assert torch.allclose(loss.critic(d_real, d_fake), torch.as_tensor(critic(d_real, d_fake),
                                                                      dtype=torch.float64))
    expected = generator(d_fake, d_real)
    assert torch.allclose(loss.generator(d_fake, d_real), torch.as_tensor(expected,
                                                                         dtype=torch.float64))
    assert loss.needs_real == (name == "rpgan")


def _critic():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 1), nn.Flatten(0)).double()


def _independent(critic, points, target):
    """E over samples of (‖∇D(x)‖ − target)² or ‖∇D(x)‖², ∇D taken one sample at a time."""
    terms = []
    for x in points:
        x = x[None].detach().clone().requires_grad_(True)
        grad, = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        norm_sq = (grad ** 2).sum()
        terms.append((norm_sq.sqrt() - target) ** 2 if target is not None else norm_sq)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("name", [p for p in PENALTIES if p != "none"])
def test_each_penalty_and_its_gradient_equal_the_formula(name):
    """R1 = γ/2·E‖∇ₓD(x)‖² at real data, R2 the same at fake, GP λ·E(‖∇D(x̂)‖ − 1)² at x̂."""
    g = torch.Generator().manual_seed(1)
    real = torch.rand(5, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(5, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1
    critic, weight = _critic(), 3.0
    penalty = Penalty(name, weight)
    terms = penalty.compute(critic, real, fake, torch.Generator().manual_seed(7))
    loss = penalty.loss(terms.values)
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    at = {"gp": (eps * real + (1 - eps) * fake, weight, 1.0), "r1": (real, weight / 2, None),
          "r2": (fake, weight / 2, None)}
    expected = sum(scale * _independent(critic, points, target)
                   for points, scale, target in (at[t.name] for t in PENALTIES[name]))
    assert torch.allclose(loss, expected, rtol=1e-10)
    params = list(critic.parameters())[:-1]  # the score's bias has no part in ∇ₓD
    ours = torch.autograd.grad(loss, params, retain_graph=True)
    theirs = torch.autograd.grad(expected, params)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    assert set(terms.points) == set(terms.grads) == {t.name for t in PENALTIES[name]}


def test_a_lazy_penalty_is_taken_every_k_updates_scaled_by_k():
    values = {"r1": torch.tensor(0.25, dtype=torch.float64)}
    eager, lazy = Penalty("r1", 10.0), Penalty("r1", 10.0, every=16)
    assert [u for u in range(40) if lazy.due(u)] == [0, 16, 32]
    assert all(eager.due(u) for u in range(5)) and not Penalty("none", 1.0).due(0)
    assert lazy.loss(values) == 16 * eager.loss(values) == 16 * 10.0 / 2 * 0.25
    assert lazy.loss(values, lazy=False) == eager.loss(values)  # what the logged loss holds


def _tiny(tmp_path, name, **settings):
    config = {"width": 8, "z_dim": 16, "batch_size": 8, "probes": "penalty", "log_every": 2,
              "ckpt_every": 3, "sample_every": 100, "fid_final": False, **settings}
    return prepare_run(tmp_path / name, config)


def _train(run):
    return train(run, run_probes(run.config))


def _weights(run_dir):
    state = RunDir(run_dir).checkpoint()
    return {f"{net}.{k}": v for net in ("generator", "critic") for k, v in state[net].items()}


# Resumed bit for bit: every loss and every penalty at least once, lazy penalties included.
RESUMED = {("wgan", "gp"), ("hinge", "none"), ("ns", "r1"), ("rpgan", "r1r2"), ("ns", "r2"),
           ("hinge", "gp")}


@pytest.mark.slow
@pytest.mark.parametrize("loss,penalty", list(itertools.product(LOSSES, PENALTIES)))
def test_every_objective_trains_round_trips_and_resumes_bit_exactly(tmp_path, loss, penalty):
    every = 3 if penalty in ("r1", "r1r2") else 1  # a lazy penalty across the resume too
    settings = {"loss": loss, "penalty": penalty, "penalty_every": every,
                "penalty_weight": 5.0 if penalty != "none" else 10.0}
    whole = _train(_tiny(tmp_path, "whole", steps=8, **settings))
    assert whole["status"] == "completed"
    saved = read_json(tmp_path / "whole" / "config.json")["config"]
    assert {k: saved[k] for k in settings} == settings
    tags = set(RunDir(tmp_path / "whole").series())
    objective = Objective(loss, penalty)
    assert objective.gap_tag in tags and ("wgan/distance" in tags) == (loss == "wgan")
    for term in objective.terms:
        assert {term.tag("penalty"), term.tag("norm_mean"), term.tag("norm_p95")} <= tags
    assert not {t for t in tags if t.split("/")[0] in ("gp", "r1", "r2")} - {
        t for term in objective.terms for t in tags if t.startswith(term.name + "/")}
    assert read_json(tmp_path / "whole" / "diagnosis.json")["objective"] == objective.to_dict()
    # the critic's loss without its penalty: logged with a penalty (lazy too), and what the
    # natural zoo derives for runs recorded before it was
    assert (LOSS_CRITIC_ADVERSARIAL in tags) == bool(objective.terms)
    if objective.terms:
        series = RunDir(tmp_path / "whole").series()
        logged = series.pop(LOSS_CRITIC_ADVERSARIAL)
        derived = with_adversarial_loss(series, saved)[LOSS_CRITIC_ADVERSARIAL]
        assert list(derived[0]) == list(logged[0])
        assert derived[1] == pytest.approx(list(logged[1]), rel=1e-5, abs=1e-5)
    if (loss, penalty) in RESUMED:
        _train(_tiny(tmp_path, "parts", steps=4, **settings))
        resumed = _train(prepare_run(tmp_path / "parts", {"steps": 8}, resume=True))
        assert resumed["status"] == "completed" and resumed["steps"] == 8
        a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "parts")
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("args,message", [
    (["--penalty", "none", "--penalty-every", "4"], "penalty-every=4 acts on a penalty"),
    (["--penalty", "none", "--penalty-update", "separate"], "penalty-update='separate' acts on"),
    (["--gp-lambda", "5"], "--gp-lambda is now --penalty-weight"),
    (["--gp-update", "separate"], "--gp-update is now --penalty-update"),
    (["--loss", "lsgan"], "'lsgan' is not one of 'wgan', 'hinge', 'ns', 'rpgan'"),
    (["--penalty-weight", "-1"], "penalty-weight=-1.0 must be >= 0"),
])
def test_invalid_objective_settings_are_one_line_errors(tmp_path, args, message):
    result = stabgan_cli("run", "--out", str(tmp_path), *TINY, "--steps", "2", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.strip().splitlines()[-1]
    assert not any(tmp_path.iterdir())  # nothing written


def test_old_config_names_resume_as_the_new_ones():
    from stabgan.config import upgrade_saved
    from stabgan.train import resume_config

    saved = {**resolve_config("paper-sagan").to_dict()}
    saved["gp_lambda"], saved["gp_update"] = saved.pop("penalty_weight"), saved.pop("penalty_update")
    for name in ("loss", "penalty", "penalty_every"):
        saved.pop(name)  # a run from before objectives: WGAN-GP
    config = resume_config(saved, {})
    assert (config.loss, config.penalty, config.penalty_update) == ("wgan", "gp", "separate")
    assert upgrade_saved({"gp_lambda": 0.1})["penalty_weight"] == 0.1
    # and `stabgan fid` reads such a checkpoint's generator
    from stabgan.fid import checkpoint_generator
    from stabgan.models import Generator
    generator = Generator(resolve_config("paper-sagan"), 1)
    config, loaded = checkpoint_generator({"config": saved, "generator": generator.state_dict()})
    assert (config.penalty_weight, config.penalty_update) == (10.0, "separate")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 generator.state_dict().values()))


def _series(tags: dict, steps=range(10, 1210, 10), seed=0) -> dict:
    """Noisy flat tags (tag -> level), with 5 % noise."""
    rng = random.Random(seed)
    return {tag: (list(steps), [level * math.exp(rng.gauss(0, 0.05)) for _ in steps])
            for tag, level in tags.items()}


def _blow_up(series, tag, at, factor):
    steps, values = series[tag]
    series[tag] = (steps, [v * factor if s >= at else v for s, v in zip(steps, values)])
    return series


def test_the_detector_judges_the_tags_its_objective_declares():
    ns_r1 = Objective("ns", "r1")
    healthy = {"critic/gap": 1.5, "loss/critic": 1.2, "r1/norm_mean": 0.4, "r1/norm_p95": 0.7}
    assert detect(_series(healthy), objective=ns_r1) == []
    # a logit gap running away is a critic divergence for a non-saturating critic ...
    diverging = _blow_up(_series(healthy), "critic/gap", 800, 15)
    [event] = detect(diverging, objective=ns_r1)
    assert (event["kind"], event["severity"], event["step"]) == ("divergence", "collapse", 800)
    assert event["evidence"]["tag"] == "critic/gap"
    assert "r1/norm_p95" in event["evidence"]["context"]
    # ... and R1 norms growing far above their own band is its penalty blowing up
    blowing = _blow_up(_series(healthy), "r1/norm_p95", 800, 12)
    [event] = detect(blowing, objective=ns_r1)
    assert (event["kind"], event["evidence"]["tag"]) == ("gp_blowup", "r1/norm_p95")
    assert "R1 penalty blow-up" in event["message"]
    # ... and a generator loss climbing while D wins is one too (a softplus loss: positive)
    climbing = _blow_up(_series({**healthy, "loss/generator": 1.1}), "loss/generator", 800, 4)
    [event] = detect(climbing, objective=ns_r1)
    assert (event["kind"], event["severity"]) == ("divergence", "warning")
    assert "generator loss runaway" in event["message"]
    # a WGAN-GP run has no critic/gap, r1 or generator-loss rules: the same series raise
    # nothing there
    assert detect(diverging) == detect(blowing) == detect(climbing) == []
    # and an R1 norm of 0.4 is no blow-up, where a gradient-penalty norm of 0.4 far from 1 is
    gp_low = _series({"wgan/distance": 3.0, "gp/norm_mean": 0.05})
    assert [e["kind"] for e in detect(gp_low)] == ["gp_blowup"]


def test_a_critic_loss_caught_up_with_is_no_divergence_but_one_far_past_chance_is():
    """Early in a hinge run the critic separates everything (loss near 0) until the generator
    catches up (near 2, where D scores all 0): thirty times its band, yet no divergence. The
    same loss far past chance is one; WGAN's critic loss, which has no chance level, keeps
    its band as the yardstick."""
    hinge = Objective("hinge", "none")
    steps = list(range(10, 1210, 10))
    rng = random.Random(0)
    caught_up = {"critic/gap": (steps, [1.0 + rng.gauss(0, 0.05) for _ in steps]),
                 "loss/critic": (steps, [(0.07 if s < 500 else 2.1) * math.exp(rng.gauss(0, 0.05))
                                         for s in steps])}
    assert detect(caught_up, objective=hinge) == []
    past_chance = _blow_up(dict(caught_up), "loss/critic", 800, 12)  # 2.1 → 25
    events = detect(past_chance, objective=hinge)
    # a critic that far past chance for long is also worse than chance (oscillation)
    assert sorted(e["kind"] for e in events) == ["divergence", "oscillation"]
    [event] = [e for e in events if e["kind"] == "divergence"]
    assert (event["severity"], event["step"]) == ("collapse", 800)
    assert event["evidence"]["tag"] == "loss/critic"
    wgan = {"wgan/distance": (steps, caught_up["critic/gap"][1]),
            "loss/critic": caught_up["loss/critic"]}
    assert [e["kind"] for e in detect(wgan)] == ["divergence"]


def test_a_critic_worse_than_chance_for_much_of_a_long_stretch_is_oscillation():
    """A learning critic sits below its chance level (what a critic scoring every sample 0
    gets); spikes above it now and then are noise, but one doing worse than that constant at a
    quarter of its readings or more is chasing a generator it cannot follow. What is judged is
    the loss without its penalty; WGAN has no chance level, so the same numbers mean nothing
    there."""
    ns_r1, ns = Objective("ns", "r1"), Objective("ns", "none")
    chance = ns.readings.chance_loss
    steps = list(range(10, 1210, 10))

    def spiking(every: int, tag: str) -> dict:
        """ns's critic loss near 1.05 (and `tag`, near it) with a spike to 2 × chance at every
        `every`-th point of `tag`."""
        rng = random.Random(0)
        calm = [1.05 * math.exp(rng.gauss(0, 0.03)) for _ in steps]
        series = {"critic/gap": (steps, [1.3 + rng.gauss(0, 0.05) for _ in steps]),
                  "loss/critic": (steps, calm), LOSS_CRITIC_ADVERSARIAL: (steps, calm)}
        series[tag] = (steps, [2 * chance if i % every == 0 else v for i, v in enumerate(calm)])
        return series
    adversarial = LOSS_CRITIC_ADVERSARIAL
    assert detect(spiking(5, adversarial), objective=ns_r1) == []   # a fifth of the points
    [event] = detect(spiking(2, adversarial), objective=ns_r1)      # half of them
    assert (event["kind"], event["severity"]) == ("oscillation", "collapse")
    assert event["evidence"]["tag"] == adversarial
    assert event["evidence"]["baseline"] == chance
    assert "its chance level: 1.39" in event["message"]
    # a penalty lifting the whole critic loss is no oscillation ...
    assert detect(spiking(2, "loss/critic"), objective=ns_r1) == []
    # ... but without a penalty the critic loss is the one judged
    [event] = detect(spiking(2, "loss/critic"), objective=ns)
    assert (event["kind"], event["evidence"]["tag"]) == ("oscillation", "loss/critic")
    assert detect(spiking(2, adversarial)) == []  # the same numbers under WGAN-GP


def test_offline_diagnosis_reads_the_objective_from_the_run_directory(tmp_path):
    from probes.monitor import Monitor

    healthy = {"critic/gap": 1.5, "loss/critic": 1.2, "r1/norm_mean": 0.4, "r1/norm_p95": 0.7}
    series = _blow_up(_series(healthy), "critic/gap", 800, 15)
    for name, objective in (("ns", Objective("ns", "r1")), ("old", None)):
        run_dir = tmp_path / name
        net = nn.Linear(1, 1)
        if objective is None:  # a run from before objectives: no loss or penalty recorded
            run_dir.mkdir()
            write_json(run_dir / "config.json", {"config": {"arch": "igan"}})
        monitor = Monitor(run_dir, net, net, log_every=10, objective=objective or Objective())
        for step in series["critic/gap"][0]:
            monitor.record(step, {tag: values[series[tag][0].index(step)]
                                  for tag, (_, values) in series.items()})
        monitor.close()
        diagnosis = diagnose_run(run_dir)
        kinds = [e["kind"] for e in diagnosis["events"]]
        assert kinds == (["divergence"] if objective else []), name
        assert diagnosis["objective"] == (objective or Objective()).to_dict()


def test_a_monitor_refuses_another_objective_than_its_run_directorys(tmp_path):
    from probes.monitor import Monitor

    write_json(tmp_path / "config.json", {"config": resolve_config(loss="hinge",
                                                                   penalty="none").to_dict()})
    net = nn.Linear(1, 1)
    with pytest.raises(ValueError, match="trained with hinge \\+ none"):
        Monitor(tmp_path, net, net, objective=Objective("ns", "r1"))
    with pytest.raises(ValueError, match="penalty=.r3. is not one of gp, r1, r2, r1r2, none"):
        Objective("ns", "r3")
