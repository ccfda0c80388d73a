"""The step: split critic scoring equals the joint formulation, the separate penalty update,
and every model option of the seed-faithful iGAN (build, train, config, resume)."""
from __future__ import annotations

import copy

import pytest
import torch
from click.testing import CliRunner

from conftest import TINY
from probes.rundir.files import read_json
from stabgan.cli import cli
from stabgan.config import resolve_config
from stabgan.config import dataset_info
from stabgan.data import load_dataset
from stabgan.models import Critic, Generator
from stabgan.nn.layers import Residual
from stabgan.losses import Penalty, Wasserstein
from stabgan.train import Gan

TINY_SETTINGS = {"width": 8, "z_dim": 16, "batch_size": 6, "probes": "none", "fid_final": False}


def _joint(critic, real, fake, eps_seed, gp_lambda):
    """The formulation the split replaced: real, fake and x̂ scored in one critic call."""
    eps = _eps(real, eps_seed)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    d_real, d_fake, d_hat = critic(torch.cat([real, fake, x_hat])).chunk(3)
    grad, = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
    gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
    return {"d_real": d_real, "d_fake": d_fake, "gp_penalty": gp, "grad_x_hat": grad,
            "loss": d_fake.mean() - d_real.mean() + gp_lambda * gp}


def critic_loss(critic, real, fake, eps_seed, gp_lambda):
    """The trainer's (joint update) critic loss from its parts: real and fake in one call,
    the penalty's interpolates in another."""
    d_real, d_fake = critic(torch.cat([real, fake])).chunk(2)
    penalty = Penalty("gp", gp_lambda)
    terms = penalty.compute(critic, real, fake, torch.Generator().manual_seed(eps_seed))
    return {"d_real": d_real, "d_fake": d_fake, "gp_penalty": terms.values["gp"],
            "grad_x_hat": terms.grads["gp"],
            "loss": Wasserstein().critic(d_real, d_fake) + penalty.loss(terms.values)}


def _eps(real, seed):
    """The interpolation weights the penalty draws from a generator seeded with `seed`."""
    return torch.rand(real.shape[0], 1, 1, 1, generator=torch.Generator().manual_seed(seed),
                      dtype=real.dtype)


def _inputs(seed=0, batch=6):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(batch, 1, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(batch, 1, 32, 32, generator=g, dtype=torch.float64) * 2 - 1
    return real, fake, seed + 1


def _loss_and_grads(formulation, critic, inputs, gp_lambda=10.0):
    critic.zero_grad(set_to_none=True)
    terms = formulation(critic, *inputs, gp_lambda)
    terms["loss"].backward()
    return terms, {n: p.grad.clone() for n, p in critic.named_parameters()}


@pytest.mark.parametrize("settings", [
    {"arch": "dcgan"},
    {"arch": "igan", "inv_where": "d", "inv_layers": 2},
    {"arch": "igan", "inv_where": "both", "inv_stack": "stages", "inv_layers": 2,
     "inv_block": "residual", "spectral_norm": "both"},
    {"arch": "sagan"},
], ids=["dcgan", "igan-d", "igan-seedlike", "sagan"])
def test_split_scoring_equals_the_joint_formulation(settings):
    torch.manual_seed(0)
    critic = Critic(resolve_config(**TINY_SETTINGS, **settings), 1).double()
    # spectral norm runs a power iteration per forward call: compare in eval mode, where it
    # uses its stored vectors, so both formulations see the same normalised weights
    critic.train(settings.get("spectral_norm", "none") == "none")
    inputs = _inputs()
    split, split_grads = _loss_and_grads(critic_loss, critic, inputs)
    joint, joint_grads = _loss_and_grads(_joint, critic, inputs)
    for name in ("loss", "gp_penalty", "d_real", "d_fake", "grad_x_hat"):
        assert torch.allclose(split[name], joint[name], rtol=1e-6, atol=1e-9), name
    assert split["gp_penalty"] > 0
    for name, grad in joint_grads.items():
        assert torch.allclose(split_grads[name], grad, rtol=1e-6, atol=1e-9), name


def test_split_scoring_with_batch_norm_in_the_critic_normalises_x_hat_on_its_own():
    torch.manual_seed(0)
    critic = Critic(resolve_config(**TINY_SETTINGS, inv_where="d", norm="batch"), 1).double()
    bn = next(m for m in critic.modules() if isinstance(m, torch.nn.BatchNorm2d))
    real, fake, eps_seed = inputs = _inputs()
    eps = _eps(real, eps_seed)
    joint_critic, alone = copy.deepcopy(critic), copy.deepcopy(critic)
    split = critic_loss(critic, *inputs, 10.0)
    joint = _joint(joint_critic, *inputs, 10.0)
    # the joint call mixes x̂ into real and fake's batch statistics; the split one does not
    assert not torch.allclose(split["gp_penalty"], joint["gp_penalty"], rtol=1e-3)
    assert not torch.allclose(split["d_real"], joint["d_real"], rtol=1e-3)
    # x̂'s penalty is that of x̂ scored as a batch of its own
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(alone(x_hat).sum(), x_hat)
    assert torch.allclose(split["gp_penalty"], ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean(),
                          rtol=1e-9)
    # and the running statistics are updated once per critic call: twice, not once
    joint_bn = next(m for m in joint_critic.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 2 and int(joint_bn.num_batches_tracked) == 1


def _gan(**settings):
    config = resolve_config(**TINY_SETTINGS, **settings)
    dataset = load_dataset(config.dataset, config.image_size)
    return Gan(config, dataset, dataset_info(config.dataset).channels)


@pytest.mark.parametrize("update,weight,steps", [("joint", 10.0, 1), ("separate", 10.0, 2),
                                                  ("separate", 0.0, 1)])
def test_separate_update_makes_two_critic_adam_steps(update, weight, steps, one_thread):
    gan = _gan(penalty_update=update, penalty_weight=weight, n_critic=2)
    out = gan.step()
    # n_critic=2 critic updates; the score's bias has no part in ∇D(x̂), so only the W-loss
    # steps reach it
    counter = {name: int(gan.opt_d.state[p]["step"]) for name, p in gan.critic.named_parameters()}
    assert counter.pop("score.1.bias") == 2
    assert set(counter.values()) == {2 * steps}, counter
    assert {int(s["step"]) for s in gan.opt_g.state.values()} == {1}
    assert torch.isfinite(out["loss_critic"]) and out["penalty_grads"]["gp"] is not None


def test_separate_update_steps_on_the_w_loss_then_on_the_penalty(one_thread):
    """The second step's gradient is λ·∇GP alone, at the critic the first step produced."""
    gan = _gan(penalty_update="separate", penalty_weight=10.0)
    before = copy.deepcopy(gan)
    out = gan.step()
    last_grads = {n: p.grad for n, p in gan.critic.named_parameters()}
    # replay by hand: one Adam step on the W-loss, then λ·GP at the updated critic
    real, fake, x_hat = out["real"], out["fake"], out["penalty_points"]["gp"].detach()
    d_real, d_fake = before.critic(torch.cat([real, fake])).chunk(2)
    before._critic_update(d_fake.mean() - d_real.mean())
    x_hat.requires_grad_(True)
    grad, = torch.autograd.grad(before.critic(x_hat).sum(), x_hat, create_graph=True)
    before.opt_d.zero_grad()
    (10.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()).backward()
    for name, p in before.critic.named_parameters():
        if p.grad is None:  # the score's bias: no part in the penalty
            assert last_grads[name] is None, name
            continue
        assert torch.allclose(last_grads[name], p.grad, rtol=1e-4, atol=1e-7), name


def test_residual_blocks_start_as_the_identity():
    config = resolve_config(**TINY_SETTINGS, inv_where="both", inv_stack="stages", inv_layers=3,
                            inv_block="residual")
    for net, shape in ((Generator(config, 1), (4, 16)), (Critic(config, 1), (4, 1, 32, 32))):
        blocks = [m for m in net.modules() if isinstance(m, Residual)]
        assert len(blocks) == 3
        for block in blocks:
            channels = block.inner.channels
            x = torch.randn(2, channels, 8, 8)
            assert torch.equal(block(x), x)
    plain = resolve_config(**TINY_SETTINGS, inv_where="both", inv_layers=2, inv_block="plain")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in Critic(plain, 1).modules())


def test_stages_put_one_block_per_resolution():
    config = resolve_config(**TINY_SETTINGS, inv_where="both", inv_stack="stages", inv_layers=2)
    shapes = {}
    for prefix, net, example in (("g", Generator(config, 1), torch.zeros(2, 16)),
                                 ("d", Critic(config, 1), torch.zeros(2, 1, 32, 32))):
        from probes.layers import involution_layers
        for name, layer in involution_layers(net, prefix):
            layer.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(
                name, tuple(o.shape[1:])))
        net(example)
    # 32x32 with width 8: S/2 = 16 has 8 channels, S/4 = 8 has 16
    assert shapes == {"g.inv0": (16, 8, 8), "g.inv1": (8, 16, 16),
                      "d.inv0": (8, 16, 16), "d.inv1": (16, 8, 8)}


# Each option is in one of these runs (a run each keeps the suite short).
OPTIONS = {
    "sn-separate-plain": ["--spectral-norm", "both", "--penalty-update", "separate",
                          "--inv-block", "plain", "--inv-layers", "2"],
    "stages-residual-both": ["--inv-stack", "stages", "--inv-layers", "2", "--inv-where", "both",
                             "--inv-block", "residual"],
    "sagan-stages": ["--arch", "sagan", "--inv-stack", "stages", "--inv-layers", "2"],
    "seed-preset": ["--preset", "paper-sagan", "--inv-layers", "2", "--image-size", "32",
                    "--width", "8", "--log-every", "2", "--sample-every", "4"],
}
EXPECTED = {
    "sn-separate-plain": {"spectral_norm": "both", "penalty_update": "separate", "inv_block": "plain"},
    "stages-residual-both": {"inv_stack": "stages", "inv_layers": 2, "inv_where": "both",
                             "inv_block": "residual"},
    "sagan-stages": {"arch": "sagan", "inv_stack": "stages", "inv_layers": 2},
    "seed-preset": {"spectral_norm": "both", "inv_stack": "stages", "inv_block": "residual",
                    "penalty_update": "separate", "lr_d": 4e-4, "inv_layers": 2},
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_every_option_trains_round_trips_and_resumes(tmp_path, option):
    common = ["--out", str(tmp_path), "--name", "r", *TINY, "--ckpt-every", "2",
              "--log-every", "2"]
    first = CliRunner().invoke(cli, ["run", *common, "--steps", "4", *OPTIONS[option]])
    assert first.exit_code == 0, first.output
    saved = read_json(tmp_path / "r" / "config.json")["config"]
    assert {k: saved[k] for k in EXPECTED[option]} == EXPECTED[option]
    resumed = CliRunner().invoke(cli, ["run", "--out", str(tmp_path), "--name", "r", "--resume",
                                       "--steps", "6"])
    assert resumed.exit_code == 0, resumed.output
    summary = read_json(tmp_path / "r" / "summary.json")
    assert summary["status"] == "completed" and summary["steps"] == 6
    assert read_json(tmp_path / "r" / "config.json")["config"] == saved | {"steps": 6}


def test_bench_trainer_prints_ours_against_the_minimal_loop():
    result = CliRunner().invoke(cli, ["bench", "trainer", "--steps", "1", "--repeats", "1",
                                      "--arch", "dcgan"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("dcgan: wgan + gp, width 32, batch 64, 1 thread(s)")
    assert "minimal loop" in lines[1] and "Gan.step" in lines[2] and "ratio" in lines[2]
    assert float(lines[2].split("ratio")[1]) > 0


def test_bench_scale_times_the_preset_at_each_size_side_by_side():
    from stabgan.bench import bench_scale

    lines = []
    result = bench_scale(sizes=((32, 8), (32, 16)), steps=1, repeats=1, echo=lines.append)
    assert set(result) == {"32px-w8", "32px-w16", "32px-w16/32px-w8"}
    assert result["32px-w16/32px-w8"] == result["32px-w16"] / result["32px-w8"] > 0
    assert lines[0].startswith("--preset paper-sagan --inv-layers 2 on mnist5k, 1 thread(s)")
    assert "×1.00 of 32px-w8" in lines[1] and "32px-w16" in lines[2]
