"""Probes: exact answers on hand-built inputs, then readings of one real short training run."""
from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest
import torch
from torch import nn

from probes import (CriticProbe, DiversityProbe, GradientProbe, KernelProbe, PenaltyProbe,
                    ProbeSettings, SpectraProbe, StepState, build_probes)
from probes.base import weight_of
from probes.diversity import diversity_stats
from probes.kernels import kernel_stats
from probes.layers import named_layers
from probes.monitor import core_readings
from probes.rundir.files import read_json
from probes.rundir.reader import RunDir, as_lists
from probes.spectra import top_singular_values, weight_matrix
from stabgan import fid
from stabgan.config import RunConfig, resolve_config
from stabgan.data import HeldOut, load_dataset
from stabgan.fid_probe import FidProbe
from stabgan.models import Critic, Generator
from stabgan.nn.involution import Involution2d
from stabgan.run_probes import REGISTRY, run_probes
from stabgan.toy import mixture

K = 3
LOG_K2 = math.log(K * K)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_nets(**overrides):
    config = resolve_config(width=8, z_dim=16, **overrides)
    torch.manual_seed(0)
    return config, Generator(config, 1), Critic(config, 1)


# --------------------------------------------------------------------- exact answers

def test_kernel_stats_of_hand_built_kernels():
    shape = (2, 1, K, K, 1, 2)  # B=2, G=1, 3x3 taps, H=1, W=2
    uniform = torch.full(shape, 1 / 9)
    stats = kernel_stats(uniform)
    assert stats["entropy"] == pytest.approx(LOG_K2, abs=1e-6)
    assert stats["mean"] == pytest.approx(1 / 9) and stats["max_abs"] == pytest.approx(1 / 9)
    assert stats["spatial_var"] == 0 and stats["sample_var"] == 0 and stats["near_zero"] == 0

    one_hot = torch.zeros(shape)
    one_hot[:, :, 1, 1] = -2.0  # sign does not matter: entropy is over |taps|
    stats = kernel_stats(one_hot)
    assert stats["entropy"] == pytest.approx(0, abs=1e-6)
    assert stats["near_zero"] == pytest.approx(8 / 9)
    assert stats["max_abs"] == 2.0

    two_taps = torch.zeros(shape)
    two_taps[:, :, 0, 0] = two_taps[:, :, 2, 2] = 0.5
    assert kernel_stats(two_taps)["entropy"] == pytest.approx(math.log(2), abs=1e-6)

    spatial = torch.zeros(shape)
    spatial[..., 1] = 2.0  # each tap is 0 at one position and 2 at the other
    stats = kernel_stats(spatial)
    assert stats["spatial_var"] == pytest.approx(2.0)  # unbiased variance of (0, 2)
    assert stats["sample_var"] == 0
    assert stats["entropy"] == pytest.approx(LOG_K2 / 2)  # uniform at one position, dead at one

    samples = torch.zeros(shape)
    samples[1] = 1.0  # sample 0 all zeros, sample 1 all ones
    assert kernel_stats(samples)["sample_var"] == pytest.approx(0.5)


def test_softmax_kernels_have_entropy_at_most_log_k2():
    layer = Involution2d(8, kernel_size=K, groups=2, norm="softmax")
    kernel = layer.generate_kernel(torch.randn(4, 8, 6, 6)).detach()
    stats = kernel_stats(kernel)
    assert 0 < stats["entropy"] <= LOG_K2 + 1e-6
    assert kernel.sum(dim=(2, 3)).allclose(torch.ones(4, 2, 6, 6))


def test_singular_values_of_a_known_matrix():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(7, 3))
    v, _ = torch.linalg.qr(torch.randn(5, 3))
    matrix = u @ torch.diag(torch.tensor([5.0, 3.0, 1.0])) @ v.T
    sigma0, sigma1 = top_singular_values(matrix)
    assert (sigma0, sigma1) == (pytest.approx(5.0, rel=1e-5), pytest.approx(3.0, rel=1e-5))
    assert top_singular_values(torch.ones(1, 4)) == (pytest.approx(2.0), None)  # rank 1 by shape


def test_spectra_reads_layers_as_out_by_fan_in_matrices():
    conv_t = nn.ConvTranspose2d(3, 5, 2)  # weight (in=3, out=5, 2, 2)
    assert weight_matrix(conv_t).shape == (5, 12)
    assert weight_matrix(nn.Conv2d(3, 5, 2)).shape == (5, 12)
    assert weight_matrix(nn.Linear(4, 6)).shape == (6, 4)
    assert weight_matrix(nn.BatchNorm2d(3)) is None


def test_spectra_reads_the_original_weight_of_spectral_norm_layers_without_side_effects():
    _, generator, critic = tiny_nets(norm="spectral", inv_where="both")
    probe = SpectraProbe(every=1)
    probe.attach(generator, critic)
    layer = dict(named_layers(generator, "g"))["g.inv0.reduce"]
    u_before = layer.parametrizations.weight[0]._u.clone()
    readings = probe.on_step(StepState(step=1, generator=generator, critic=critic))
    assert torch.equal(layer.parametrizations.weight[0]._u, u_before)  # no power iteration ran
    original = layer.parametrizations.weight.original.detach().reshape(4, -1)
    assert readings["spectra/g.inv0.reduce/sigma0"] == pytest.approx(
        torch.linalg.svdvals(original)[0].item(), rel=1e-5)
    assert weight_of(layer) is layer.parametrizations.weight.original


def test_layer_names_are_short_and_stable():
    _, generator, critic = tiny_nets(norm="spectral", inv_where="both", inv_layers=2)
    g_names = [name for name, _ in named_layers(generator, "g")]
    d_names = [name for name, _ in named_layers(critic, "d")]
    assert {"g.inv0.reduce", "g.inv0.span", "g.inv1.span", "g.project.0"} <= set(g_names)
    assert {"d.inv0.reduce", "d.inv1.span", "d.score.1"} <= set(d_names)
    assert not any("parametrizations" in n for n in g_names + d_names)
    assert g_names == [name for name, _ in named_layers(Generator(resolve_config(
        width=8, z_dim=16, norm="spectral", inv_where="both", inv_layers=2), 1), "g")]


def test_penalty_probe_quantiles_and_off_band_fraction_of_known_norms():
    norms = torch.linspace(0.0, 1.9, 20)
    directions = torch.nn.functional.normalize(torch.randn(20, 1, 4, 4).flatten(1), dim=1)
    grad = (directions * norms[:, None]).view(20, 1, 4, 4)
    state = StepState(step=1, generator=nn.Identity(), critic=nn.Identity(),
                      penalty_grads={"gp": grad})
    readings = PenaltyProbe(every=1).on_step(state)
    expected = np.percentile(norms.numpy(), [5, 50, 95])  # linear interpolation, as torch
    quantiles = [readings[f"gp/norm_p{q}"] for q in ("05", "50", "95")]
    assert quantiles == pytest.approx(expected, abs=1e-5)
    assert readings["gp/norm_std"] == pytest.approx(norms.std().item(), abs=1e-5)
    assert readings["gp/frac_off"] == pytest.approx(((norms - 1).abs() > 0.5).float().mean().item())
    assert readings["gp/norm"].shape == (20,)  # the histogram
    assert core_readings(state)["gp/norm_mean"] == pytest.approx(norms.mean().item(), abs=1e-5)
    assert "gp/norm_mean" not in readings  # one place: the core readings


def test_critic_probe_ema_drift_z_and_exact_resume():
    losses = [1.0, 1.2, 0.9, 1.1, 1.0, 1.05, 3.0, 1.0]
    probe = CriticProbe(every=1, window=5)
    readings = [probe._loss_readings(x) for x in losses]
    assert "critic/loss_drift_z" not in readings[4]  # needs 5 earlier readings
    window = losses[1:6]
    assert readings[6]["critic/loss_drift_z"] == pytest.approx(
        (3.0 - statistics.mean(window)) / statistics.stdev(window))
    ema = losses[0]
    for x in losses[1:]:
        ema = 0.9 * ema + 0.1 * x
    assert readings[-1]["critic/loss_ema"] == pytest.approx(ema)

    first = CriticProbe(every=1, window=5)
    for x in losses[:4]:
        first._loss_readings(x)
    resumed = CriticProbe(every=1, window=5)
    resumed.load_state_dict(first.state_dict())
    assert [resumed._loss_readings(x) for x in losses[4:]] == readings[4:]

    scores = StepState(step=1, generator=nn.Identity(), critic=nn.Identity(),
                       d_real=torch.tensor([1.0, 3.0]), d_fake=torch.tensor([-1.0, -1.0]))
    out = CriticProbe(every=1).on_step(scores)
    assert out == {"critic/d_real_mean": 2.0, "critic/d_real_std": pytest.approx(math.sqrt(2)),
                   "critic/d_fake_mean": -1.0, "critic/d_fake_std": 0.0, "critic/accuracy": 1.0}


def test_diversity_of_known_images():
    images = torch.tensor([0.0, 0.0, 1.0, -1.0]).view(4, 1, 1, 1)
    pairwise, dup_rate = diversity_stats(images)
    assert pairwise == pytest.approx(1.0)  # distances 0, 1, 1, 1, 1, 2: mean 1
    assert dup_rate == 0.5                 # the two zeros are each other's duplicate
    assert diversity_stats(torch.ones(3, 1, 2, 2)) == (0.0, 1.0)  # full collapse


def test_diversity_probe_leaves_rng_modes_and_kernels_untouched():
    _, generator, critic = tiny_nets(norm="batch")
    kernels = KernelProbe(every=1)
    kernels.attach(generator, critic)
    generator(torch.randn(2, 16))
    kernel, rng = kernels.kernels["g.inv0"], torch.get_rng_state()
    bn_stats = [b.clone() for b in generator.buffers()]
    probe = DiversityProbe(every=1, samples=8)
    probe.attach(generator, critic)
    real = torch.rand(32, *probe.generate().shape[1:], generator=torch.Generator().manual_seed(0))
    state = StepState(step=1, generator=generator, critic=critic, real=real)  # 4 coverage sets
    first, second = probe.on_step(state), probe.on_step(state)
    assert first == second and 0 < first["diversity/pairwise"] <= 2
    assert 0 <= first["diversity/coverage"] <= 1
    assert torch.equal(torch.get_rng_state(), rng)
    assert generator.training and all(m.training for m in generator.modules())
    assert kernels.kernels["g.inv0"] is kernel  # its no-grad passes are not the training's
    assert all(torch.equal(a, b) for a, b in zip(generator.buffers(), bn_stats))


def _samples_of(points: torch.Tensor, samples: int) -> DiversityProbe:
    """A diversity probe whose fixed-noise samples are `points`: the first `samples` of them,
    then its further coverage draws (an identity generator)."""
    generator = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
    probe = DiversityProbe(every=1, samples=samples, z_dim=2)
    probe.attach(generator, nn.Identity())
    probe.noise, probe.draw_noise = points[:samples], points[samples:]
    return probe


def _coverage(probe: DiversityProbe, real: torch.Tensor) -> float:
    state = StepState(step=1, generator=probe.generator, critic=nn.Identity(), real=real)
    return probe.on_step(state)["diversity/coverage"]


def test_coverage_averages_every_set_of_samples_the_real_batch_holds():
    # every set of samples sits on the points `near`; the batch's sets of 16 alternate between
    # those points and far ones, whose balls no sample reaches; a fifth set is past
    # COVERAGE_DRAWS
    near = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    probe = _samples_of(near.repeat(4, 1), 16)
    batch = torch.cat([near, near + 100, near, near + 100, near + 100])
    readings = {n: _coverage(probe, batch[:n]) for n in (16, 31, 32, 48, 64, 80)}
    assert readings == {16: 1.0, 31: 1.0, 32: 0.5, 48: pytest.approx(2 / 3), 64: 0.5, 80: 0.5}


def test_more_draws_steady_the_coverage_of_a_generator_on_half_the_modes():
    # 8 Gaussians on a ring and a generator on 4 of them: one set of 64 real points reads
    # across the warning level (0.5) from batch to batch, the mean of 4 sets far less
    means, std = mixture("ring8")
    rng = torch.Generator().manual_seed(1)

    def points(n, modes):
        chosen = torch.randint(modes, (n,), generator=rng)
        return (means[chosen] + std * torch.randn(n, 2, generator=rng, dtype=torch.float64)).float()

    spread = {}
    for size in (64, 256):
        values = [_coverage(_samples_of(points(256, 4), 64), points(size, 8)) for _ in range(40)]
        spread[size] = statistics.pstdev(values)
        assert 0.35 < statistics.mean(values) < 0.6
    assert spread[256] < 0.6 * spread[64]


def test_coverage_is_read_against_the_reference_when_one_is_given():
    # every sample at the origin; the batch holds only points near it, the reference also
    # as many near (10, 10), whose 5-nearest-neighbour balls no sample reaches
    generator = nn.Linear(2, 2)
    nn.init.zeros_(generator.weight)
    nn.init.zeros_(generator.bias)
    near = torch.randn(8, 2, generator=torch.Generator().manual_seed(0)) * 0.1
    state = StepState(step=1, generator=generator, critic=nn.Identity(), real=near)
    readings = {}
    for reference in (None, torch.cat([near, near + 10])):
        probe = DiversityProbe(every=1, samples=16, z_dim=2, reference=reference)
        probe.attach(generator, nn.Identity())
        readings[reference is None] = probe.on_step(state)
    assert readings[True]["diversity/coverage"] == 1.0
    assert readings[False]["diversity/coverage"] == 0.5
    assert readings[False]["diversity/pairwise_real"] > 5 * readings[True]["diversity/pairwise_real"]
    with pytest.raises(ValueError, match="reference of 5 real images"):
        DiversityProbe(reference=near[:5])


def test_gradient_probe_update_ratio_is_exact_for_a_known_sgd_step():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    probe = GradientProbe(every=2)
    probe.attach(net, nn.Sequential())
    before = torch.cat([net.weight.detach().flatten(), net.bias.detach()])
    probe.prepare(StepState(step=1, generator=net, critic=nn.Sequential()))
    net(torch.randn(4, 3)).pow(2).sum().backward()
    grad = torch.cat([net.weight.grad.flatten(), net.bias.grad])
    torch.optim.SGD(net.parameters(), lr=0.01).step()
    readings = probe.on_step(StepState(step=2, generator=net, critic=nn.Sequential()))
    assert readings["grad/g"] == pytest.approx(grad.norm().item(), rel=1e-5)
    assert readings["update/g"] == pytest.approx(0.01 * grad.norm().item() / before.norm().item(),
                                                 rel=1e-4)
    # a reading without the copy from the step before has no update ratio
    assert "update/g" not in probe.on_step(StepState(step=4, generator=net, critic=nn.Sequential()))


@pytest.fixture(scope="module")
def domain():
    """stabgan.fid's domain extractor with an untrained classifier (training one takes about a
    minute), and the feature statistics of 256 real digits."""
    torch.manual_seed(0)
    extractor = fid.DomainExtractor(fid.DomainClassifier(1, 10, 32), "untrained", {"accuracy": 0.0})
    real = load_dataset("mnist5k", 32).tensors[0][:256]
    return extractor, fid.statistics(extractor.features(real)), real


class Replay(nn.Module):
    """A 'generator' that returns the same real images whatever the noise."""

    def __init__(self, images):
        super().__init__()
        self.images = nn.Parameter(images, requires_grad=False)

    def forward(self, z):
        return self.images[:len(z)]


def test_fid_probe_of_the_data_itself_is_zero(domain):
    extractor, stats, real = domain
    probe = FidProbe(every=1, samples=len(real), z_dim=4, extractor=extractor, real_stats=stats)
    probe.attach(Replay(real), nn.Sequential())
    readings = probe.on_step(StepState(step=1, generator=None, critic=None))
    assert readings["fid/domain"] == pytest.approx(0.0, abs=1e-3)
    expected = fid.mode_coverage(extractor.logits(real), 10)
    assert (readings["coverage/modes"], readings["coverage/kl"]) == (
        expected["coverage/modes"], pytest.approx(expected["coverage/kl"]))


def test_selection_builds_registered_probes_with_config_cadences():
    config = resolve_config(log_every=5)
    default = run_probes(config)
    # fid waits for --fid-every, overfit for --holdout (tests/test_overfitting.py); coverage is
    # for 2-D points (tests/test_toy.py)
    off = {"fid", "coverage", "overfit"}
    assert {p.name for p in default} == {n for n, (_, d) in REGISTRY.items() if d} - off
    assert {p.name for p in run_probes(resolve_config(probes="all"))} == set(REGISTRY) - off
    assert [p.every for p in run_probes(resolve_config(fid_every=50)) if p.name == "fid"] == [50]
    with pytest.raises(ValueError, match="fid-every is 0"):
        run_probes(resolve_config(probes="fid"))
    assert run_probes(resolve_config(probes="none")) == []
    every = {p.name: p.every for p in default}
    assert every["penalty"] == every["critic"] == every["kernels"] == 5
    assert every["spectra"] == every["diversity"] == 50
    assert [p.every for p in build_probes("spectra,penalty", spectra_every=7, probe_every=3)] == [7, 3]
    with pytest.raises(ValueError, match="unknown probe 'nope'.*gradients"):
        run_probes(resolve_config(probes="penalty,nope"))
    with pytest.raises(ValueError, match="every=0"):
        KernelProbe(every=0)


def test_a_loop_without_a_run_config_gets_the_probes_a_run_of_the_same_settings_gets():
    defaults = RunConfig()
    assert all(getattr(ProbeSettings(), f.name) == getattr(defaults, f.name)
               for f in dataclasses.fields(ProbeSettings)
               if f.name not in ("held_out", "diversity_reference"))  # data

    def built(probes):
        return [(type(p), p.every, getattr(p, "z_dim", None), getattr(p, "seed", None),
                 getattr(p, "samples", None)) for p in probes]

    for selection in ("default", "all", "kernels,penalty"):
        assert built(build_probes(selection, log_every=5, z_dim=32)) == built(
            run_probes(resolve_config(probes=selection, log_every=5, z_dim=32)))
    images = torch.zeros(4, 1, 32, 32)
    assert built(build_probes("all", log_every=5, held_out=(images, images))) == built(
        run_probes(resolve_config(probes="all", log_every=5, holdout=4), HeldOut(images, images)))


# --------------------------------------------------------------------- one real run

RUN = {"steps": 60, "width": 8, "batch_size": 16, "log_every": 10, "probes": "all",
       "norm": "softmax", "inv_where": "both", "spectra_every": 20, "diversity_every": 20,
       "sample_every": 30}


def train_run(path, extra=(), **overrides):
    from stabgan.train import prepare_run, train
    run = prepare_run(path, {**RUN, **overrides})
    train(run, run_probes(run.config) + list(extra))
    return run.run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, domain):
    """A healthy 60-step iGAN run (softmax kernels, involution in G and D) with every probe."""
    extractor, stats, _ = domain
    fid_probe = FidProbe(every=20, samples=64, extractor=extractor, real_stats=stats)
    return train_run(tmp_path_factory.mktemp("probes") / "run", extra=[fid_probe])


@pytest.fixture(scope="module")
def series(run_dir):
    return as_lists(RunDir(run_dir).series())


def values(series, tag, after=0):
    steps, vals = series[tag]
    return [v for s, v in zip(steps, vals) if s >= after]


def test_every_reading_of_the_run_is_finite(series):
    assert len(series) > 100
    bad = {tag: v for tag, (_, vals) in series.items() for v in vals if not math.isfinite(v)}
    assert not bad


def test_gp_readings_near_one_after_warm_up(series):
    assert series["gp/norm_p50"][0] == [10, 20, 30, 40, 50, 60]
    for p05, p50, p95 in zip(*(values(series, f"gp/norm_p{q}") for q in ("05", "50", "95"))):
        assert 0 <= p05 <= p50 <= p95
    assert all(0.5 <= v <= 2.0 for v in values(series, "gp/norm_p50", after=40))
    assert all(0 <= v <= 1 for v in values(series, "gp/frac_off"))
    assert all(v >= 0 for v in values(series, "gp/norm_std"))


def test_critic_readings_separate_real_from_fake(series):
    real, fake = values(series, "critic/d_real_mean", 20), values(series, "critic/d_fake_mean", 20)
    assert all(r > f for r, f in zip(real, fake))
    stds = values(series, "critic/d_real_std") + values(series, "critic/d_fake_std")
    assert all(v > 0 for v in stds)
    assert len(series["critic/loss_ema"][0]) == 6
    assert series["critic/loss_drift_z"][0] == [60]  # from the 6th reading on


def test_kernel_readings_of_softmax_kernels(series):
    for layer in ("g.inv0", "d.inv0"):
        assert all(0 < v <= LOG_K2 + 1e-6 for v in values(series, f"kernel/{layer}/entropy"))
        assert all(0 < v <= 1 for v in values(series, f"kernel/{layer}/max_abs"))
        assert all(0 <= v <= 1 for v in values(series, f"kernel/{layer}/near_zero"))
        for stat in ("spatial_var", "sample_var", "std", "reduce_norm", "span_norm"):
            assert all(v > 0 for v in values(series, f"kernel/{layer}/{stat}")), stat
        assert values(series, f"kernel/{layer}/mean") == pytest.approx([1 / 9] * 6, rel=1e-4)


def test_spectra_readings_are_ordered_and_positive(series):
    sigma1_tags = [t for t in series if t.startswith("spectra/") and t.endswith("/sigma1")]
    assert len(sigma1_tags) >= 8 and series[sigma1_tags[0]][0] == [20, 40, 60]
    assert any(t.startswith("spectra/g.inv0.span/") for t in sigma1_tags)
    for tag in sigma1_tags:
        layer = tag[:-len("/sigma1")]
        readings = (values(series, f"{layer}/{x}") for x in ("sigma0", "sigma1", "ratio"))
        for s0, s1, ratio in zip(*readings):
            assert s0 >= s1 > 0 and ratio == pytest.approx(s0 / s1)
    assert "spectra/d.score.1/sigma0" in series and "spectra/d.score.1/sigma1" not in series


def test_gradient_readings_cover_every_layer(series):
    grads = [t for t in series if t.startswith("grad/")]
    updates = [t for t in series if t.startswith("update/")]
    assert {"grad/g.inv0.span", "grad/d.inv0.reduce", "grad/d.score.1"} <= set(grads)
    assert {t.replace("grad/", "update/") for t in grads} == set(updates)
    assert all(v > 0 for t in grads for v in values(series, t))
    # Adam moves each weight by about lr per step: a small positive fraction of the weights
    assert all(0 < v < 0.1 for t in updates for v in values(series, t))


def test_diversity_readings_are_plausible(series):
    assert series["diversity/pairwise"][0] == [20, 40, 60]
    assert all(0.05 < v < 2 for v in values(series, "diversity/pairwise"))
    assert all(0 <= v <= 1 for v in values(series, "diversity/dup_rate"))
    assert all(0.4 < v < 0.9 for v in values(series, "diversity/pairwise_real"))  # MNIST digits


def test_fid_readings_are_plausible(series):
    assert series["fid/domain"][0] == [20, 40, 60]
    assert all(v > 0 for v in values(series, "fid/domain"))
    assert all(1 <= v <= 10 for v in values(series, "coverage/modes"))
    assert all(0 <= v <= math.log(10) + 1e-9 for v in values(series, "coverage/kl"))


def test_probes_do_not_change_training(run_dir, tmp_path):
    """Same seed, no probes: identical losses, so probes touch neither RNG nor model state."""
    bare = as_lists(RunDir(train_run(tmp_path / "bare", steps=20, probes="none")).series())
    probed = as_lists(RunDir(run_dir).series())
    for tag in ("loss/critic", "loss/generator", "wgan/distance"):
        assert bare[tag][1] == probed[tag][1][:2], tag


def test_panels_of_old_runs_are_the_core_and_every_registered_probe():
    import re

    from probes.objectives import DEFAULT_PANELS, WGAN_GP
    from probes.readings import CORE_PANELS, KERNELS, Panel, merge_panels, tensorboard_layout

    # coverage (2-D points) and overfit (--holdout) came after panels.json: every run of them
    # has its own panels
    registered = [cls.from_config(resolve_config(fid_every=10)).panels
                  for name, (cls, _) in REGISTRY.items() if name not in ("coverage", "overfit")]
    assert DEFAULT_PANELS == merge_panels(CORE_PANELS, WGAN_GP.panels(), *registered)
    charts = tensorboard_layout(DEFAULT_PANELS)
    entropy = charts[KERNELS]["kernel entropy"]
    assert entropy[0] == "Multiline" and re.match(entropy[1][0], "kernel/g.inv0/entropy")
    with pytest.raises(ValueError, match="tags"):
        Panel("brightness", "Mine", "brightness/fake")  # a string, not a tuple of tags


def test_tensorboard_holds_scalars_histograms_images_layout_and_hparams(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0,
                                                         "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"gp/norm_p95", "critic/d_real_mean", "kernel/g.inv0/entropy", "fid/domain",
            "spectra/g.inv0.span/sigma0", "diversity/pairwise", "grad/d.score.1",
            "coverage/modes"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("gp/norm_p95")] == [10, 20, 30, 40, 50, 60]
    assert {"gp/norm", "kernel/g.inv0/taps", "kernel/d.inv0/taps"} <= set(tags["histograms"])
    assert acc.Histograms("gp/norm")[-1].histogram_value.num == 16  # one per interpolate
    assert "samples" in tags["images"] and [e.step for e in acc.Images("samples")] == [0, 30, 60]

    layout = layout_pb2.Layout.FromString(
        acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {chart.title: chart for category in layout.category for chart in category.chart}
    band = next(c.margin for c in charts.values() if c.WhichOneof("content") == "margin")
    assert (band.series[0].value, band.series[0].lower, band.series[0].upper) == (
        "gp/norm_mean", "gp/norm_p05", "gp/norm_p95")
    assert list(charts["D(real) and D(fake)"].multiline.tag) == ["critic/d_real_mean",
                                                                 "critic/d_fake_mean"]

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["verdict"].string_value == read_json(run_dir / "summary.json")["verdict"]
    assert hparams["norm"].string_value == "softmax" and hparams["steps"].number_value == 60
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert {m.name.tag for m in experiment.experiment.metric_infos} == {
        "wgan/distance", "gp/norm_mean", "hparams/fid_min"}
    assert acc.Scalars("hparams/fid_min")[-1].value == pytest.approx(
        min(e.value for e in acc.Scalars("fid/domain")))
