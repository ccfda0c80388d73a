"""stabgan.fid: exact Fréchet distances, mode coverage, local Inception weights, domain features.

Nothing here downloads or touches the real ~/.cache: every cache and the torch hub folder point
into pytest's temporary directories, and URL fetching is made to fail loudly.
"""
import json
import math
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from stabgan import fid
from stabgan.data import load_dataset


@pytest.fixture(autouse=True)
def offline_and_isolated(tmp_path, monkeypatch):
    """Caches in tmp, no weights from the environment, and any download attempt fails."""
    monkeypatch.setenv(fid.CACHE_ENV, str(tmp_path / "stabgan-cache"))
    monkeypatch.delenv(fid.INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"a download was attempted: {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr("urllib.request.urlopen", no_download)


def reference_fid(*stats):
    from pytorch_fid.fid_score import calculate_frechet_distance
    with warnings.catch_warnings():  # scipy >= 1.16 deprecates the sqrtm(disp=) it passes
        warnings.simplefilter("ignore", DeprecationWarning)
        return float(calculate_frechet_distance(*stats))


def random_covariance(rng, d, n=None):
    x = rng.standard_normal((n or 3 * d, d)) @ rng.standard_normal((d, d)) / math.sqrt(d)
    return fid.statistics(x)[1]


# ----------------------------------------------------------------------------------------------
# Exact answers

def test_equal_covariances_give_squared_mean_distance():
    rng = np.random.default_rng(0)
    sigma = random_covariance(rng, 32)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    expected = float(((mu1 - mu2) ** 2).sum())
    assert fid.frechet_distance(mu1, sigma, mu2, sigma) == pytest.approx(expected, rel=1e-10)


def test_diagonal_covariances_have_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 3, 50), rng.uniform(0.1, 3, 50)
    mu1, mu2 = rng.standard_normal(50), np.zeros(50)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_identical_statistics_give_zero_and_tensors_are_accepted():
    rng = np.random.default_rng(2)
    mu, sigma = fid.statistics(rng.standard_normal((500, 64)))
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    as_tensors = [torch.from_numpy(x).float() for x in (mu, sigma, mu, sigma)]
    assert fid.frechet_distance(*as_tensors) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("d", [2, 8, 64, 256])
def test_agrees_with_pytorch_fid(d):
    rng = np.random.default_rng(d)
    x = rng.standard_normal((4 * d, d))
    y = rng.standard_normal((4 * d, d)) @ (np.eye(d) + rng.standard_normal((d, d)) / (2 * math.sqrt(d)))
    stats = (*fid.statistics(x), *fid.statistics(y + 0.3))
    assert fid.frechet_distance(*stats) == pytest.approx(reference_fid(*stats), rel=1e-9)


def test_bench_fid_command_prints_both_values_and_the_ratio():
    from click.testing import CliRunner
    from stabgan.cli import cli

    result = CliRunner().invoke(cli, ["bench", "fid", "-n", "128", "--dim", "32", "--repeats", "1"])
    assert result.exit_code == 0, result.output
    ours = float(re.search(r"ours\s+([\d.]+)\s+[\d.]+ s", result.output).group(1))
    theirs = float(re.search(r"pytorch-fid\s+([\d.]+)\s+[\d.]+ s", result.output).group(1))
    assert ours == pytest.approx(theirs, rel=1e-6) and ours > 0
    assert re.search(r"relative difference [\d.e+-]+; ours is [\d.]+x faster", result.output)


@pytest.mark.parametrize("n1,n2,d", [(20, 30, 100), (10, 500, 64), (300, 40, 128)])
def test_rank_deficient_covariances_are_exact(n1, n2, d):
    """Fewer samples than dimensions: no Cholesky factor exists, the result must still be exact.

    Independent route: with Σ = AᵀA from centred samples, tr √(Σ1Σ2) is the nuclear norm of A1A2ᵀ.
    """
    rng = np.random.default_rng(n1 + n2)
    x, y = rng.standard_normal((n1, d)), 0.5 * rng.standard_normal((n2, d)) + 0.1
    (mu1, s1), (mu2, s2) = fid.statistics(x), fid.statistics(y)
    a = (x - x.mean(0)) / math.sqrt(n1 - 1)
    b = (y - y.mean(0)) / math.sqrt(n2 - 1)
    nuclear = np.linalg.svd(a @ b.T, compute_uv=False).sum()
    exact = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * nuclear
    got = fid.frechet_distance(mu1, s1, mu2, s2)
    assert math.isfinite(got) and got >= 0
    assert got == pytest.approx(exact, rel=1e-10)


def test_tiny_negative_eigenvalues_are_tolerated():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    w = np.concatenate([rng.uniform(0.5, 2, 30), np.full(10, -1e-13)])
    sigma = (q * w) @ q.T
    sigma = (sigma + sigma.T) / 2
    value = fid.frechet_distance(np.zeros(40), sigma, np.ones(40), np.eye(40))
    w0 = np.clip(w, 0, None)
    assert value == pytest.approx(40 + ((np.sqrt(w0) - 1) ** 2).sum(), rel=1e-9)


@pytest.mark.parametrize("bad,name", [
    (dict(mu2=np.zeros(4)), "mu2"),
    (dict(sigma1=np.eye(4)), "sigma1"),
    (dict(mu1=np.zeros((3, 1))), "mu1"),
    (dict(mu1=np.array([0.0, np.nan, 0.0])), "mu1"),
    (dict(sigma2=np.diag([1.0, np.inf, 1.0])), "sigma2"),
    (dict(sigma1=np.triu(np.ones((3, 3)))), "sigma1"),
    (dict(sigma2=-np.eye(3)), "sigma2"),
])
def test_bad_input_raises_naming_the_argument(bad, name):
    args = dict(mu1=np.zeros(3), sigma1=np.eye(3), mu2=np.ones(3), sigma2=np.eye(3))
    args.update(bad)
    with pytest.raises(ValueError, match=name):
        fid.frechet_distance(**args)


def test_statistics_match_numpy():
    x = np.random.default_rng(4).standard_normal((100, 7))
    mu, sigma = fid.statistics(torch.from_numpy(x).float())
    np.testing.assert_allclose(mu, x.mean(0), atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), atol=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        fid.statistics(np.zeros((1, 7)))


# ----------------------------------------------------------------------------------------------
# Mode coverage

def one_hot_logits(classes):
    return torch.eye(10)[torch.as_tensor(classes)] * 5


def test_mode_coverage_of_a_single_class():
    readings = fid.mode_coverage(one_hot_logits([3] * 100), 10)
    assert readings == {"coverage/modes": 1, "coverage/kl": pytest.approx(math.log(10))}


def test_mode_coverage_of_a_uniform_histogram():
    readings = fid.mode_coverage(one_hot_logits(list(range(10)) * 20), 10)
    assert readings == {"coverage/modes": 10, "coverage/kl": pytest.approx(0.0, abs=1e-12)}


def test_stray_samples_do_not_count_as_modes():
    # 1000 samples: a class needs >= 10% of its uniform share, i.e. 10 samples.
    classes = [0] * 500 + [1] * 480 + [2] * 10 + [3] * 9 + [4]
    readings = fid.mode_coverage(one_hot_logits(classes), 10)
    assert readings["coverage/modes"] == 3
    p = np.array([500, 480, 10, 9, 1]) / 1000
    assert readings["coverage/kl"] == pytest.approx(float((p * np.log(p * 10)).sum()))


def test_mode_coverage_checks_the_logits_shape():
    with pytest.raises(ValueError, match=r"\(N >= 1, 10\)"):
        fid.mode_coverage(torch.zeros(5, 3), 10)


# ----------------------------------------------------------------------------------------------
# Caches and extractor choice

def test_cache_root_precedence(tmp_path, monkeypatch):
    assert fid.cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert fid.cache_root() == tmp_path / "stabgan-cache"
    monkeypatch.delenv(fid.CACHE_ENV)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert fid.cache_root().parts[-2:] == (".cache", "stabgan")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fid.cache_root() == tmp_path / "xdg" / "stabgan"


def test_unknown_features_and_unlabelled_datasets_are_refused(tmp_path):
    with pytest.raises(fid.FIDError, match="not one of domain, inception"):
        fid.get_extractor("clip", "mnist5k", 32)
    with pytest.raises(fid.FIDError, match="--features inception"):
        fid.get_extractor("domain", f"folder:{tmp_path}", 32)


# ----------------------------------------------------------------------------------------------
# Inception from a local file

def random_fid_inception_state():
    """State dict of pytorch-fid's FID Inception structure with random weights."""
    from pytorch_fid import inception as pf
    net = pf._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf.FIDInceptionE_1(1280)
    net.Mixed_7c = pf.FIDInceptionE_2(2048)
    return net.state_dict()


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / fid.INCEPTION_WEIGHTS_FILE
    state = random_fid_inception_state()
    torch.save(state, path)
    return path, state["Conv2d_1a_3x3.conv.weight"]


def assert_loaded(extractor, first_conv):
    assert isinstance(extractor, fid.InceptionExtractor)
    assert torch.equal(extractor.model.blocks[0][0].conv.weight, first_conv)


def test_inception_weights_from_the_argument(inception_weights):
    path, first_conv = inception_weights
    extractor = fid.get_extractor("inception", "mnist5k", 32, inception_weights=path)
    assert_loaded(extractor, first_conv)
    images = torch.rand(2, 1, 32, 32) * 2 - 1  # one channel, small: repeated and resized
    features = extractor.features(images)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()


def test_inception_weights_from_the_environment(inception_weights, monkeypatch):
    path, first_conv = inception_weights
    monkeypatch.setenv(fid.INCEPTION_WEIGHTS_ENV, str(path))
    assert_loaded(fid.get_extractor("inception", "mnist5k", 32), first_conv)


def test_inception_weights_from_the_torch_hub_cache(inception_weights, tmp_path, monkeypatch):
    path, first_conv = inception_weights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    hub_file = tmp_path / "home" / "hub" / "checkpoints" / fid.INCEPTION_WEIGHTS_FILE
    assert torch.hub.get_dir() == str(tmp_path / "home" / "hub")
    hub_file.parent.mkdir(parents=True)
    hub_file.symlink_to(path)
    assert_loaded(fid.get_extractor("inception", "mnist5k", 32), first_conv)


def test_missing_inception_weights_say_what_is_needed(tmp_path, monkeypatch):
    with pytest.raises(fid.MissingWeightsError) as caught:
        fid.get_extractor("inception", "mnist5k", 32)
    message = str(caught.value)
    assert "\n" not in message
    for needed in (fid.INCEPTION_WEIGHTS_FILE, "--inception-weights", fid.INCEPTION_WEIGHTS_ENV,
                   str(tmp_path / "torch-home" / "hub" / "checkpoints")):
        assert needed in message
    monkeypatch.setenv(fid.INCEPTION_WEIGHTS_ENV, str(tmp_path / "nowhere.pth"))
    with pytest.raises(fid.MissingWeightsError, match="nowhere.pth"):
        fid.get_extractor("inception", "mnist5k", 32)


def test_a_file_that_is_not_the_inception_state_dict_is_refused(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(fid.FIDError, match="does not hold the FID Inception weights"):
        fid.get_extractor("inception", "mnist5k", 32, inception_weights=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(fid.FIDError, match="garbage.pth' is unreadable"):
        fid.get_extractor("inception", "mnist5k", 32, inception_weights=garbage)


# ----------------------------------------------------------------------------------------------
# Domain classifier features (trained once per session, about 20-40 s on 2 cores)

@pytest.fixture(scope="session")
def domain_cache(trained_classifier_cache):
    cache = trained_classifier_cache
    return cache, fid.get_extractor("domain", "mnist5k", 32, cache_dir=cache)


@pytest.fixture(scope="session")
def digits():
    return load_dataset("mnist5k", 32).tensors


@pytest.mark.slow
def test_domain_classifier_reaches_its_accuracy_target(domain_cache):
    cache, extractor = domain_cache
    assert extractor.accuracy >= 0.95
    record_files = list((cache / "domain").glob("*.json"))
    assert len(record_files) == 1
    record = json.loads(record_files[0].read_text())
    assert record["accuracy"] == extractor.accuracy and record["held_out"] == 1000
    print(f"domain classifier: accuracy {record['accuracy']:.4f}, trained in {record['train_s']:.1f} s")


@pytest.mark.slow
def test_domain_classifier_is_reused_from_the_cache(domain_cache, monkeypatch):
    cache, extractor = domain_cache

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(fid, "train_domain_classifier", no_training)
    again = fid.get_extractor("domain", "mnist5k", 32, cache_dir=cache)
    assert again.fingerprint == extractor.fingerprint and again.accuracy == extractor.accuracy


@pytest.mark.slow
def test_domain_fid_separates_real_from_noise(domain_cache, digits):
    _, extractor = domain_cache
    images, _ = digits
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    half_a, half_b = images[order[:2500]], images[order[2500:]]
    noise = torch.rand(2500, 1, 32, 32) * 2 - 1
    stats_a = fid.statistics(extractor.features(half_a))
    same = fid.frechet_distance(*stats_a, *fid.statistics(extractor.features(half_b)))
    different = fid.frechet_distance(*stats_a, *fid.statistics(extractor.features(noise)))
    assert same < 0.02 * different
    # any channel count and size is accepted: RGB 64x64 digits are mapped back to 1x32x32
    rgb = torch.nn.functional.interpolate(half_a[:200], size=64, mode="bilinear").repeat(1, 3, 1, 1)
    assert extractor.features(rgb).shape == (200, extractor.dim)


@pytest.mark.slow
def test_real_statistics_are_cached(domain_cache, monkeypatch):
    cache, extractor = domain_cache
    mu, sigma = fid.real_statistics(extractor, "mnist5k", 32, cache_dir=cache)
    assert mu.shape == (extractor.dim,) and sigma.shape == (extractor.dim, extractor.dim)
    assert len(list((cache / "stats").glob("*-domain.npz"))) == 1
    monkeypatch.setattr(fid, "load_dataset", lambda *a: pytest.fail("recomputed although cached"))
    mu2, sigma2 = fid.real_statistics(extractor, "mnist5k", 32, cache_dir=cache)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)


class ReplayGenerator(nn.Module):
    """A 'perfect' generator: returns real digits in turn, whatever z is."""

    def __init__(self, images):
        super().__init__()
        self.images, self.position = images, 0

    def forward(self, z):
        batch = self.images[self.position:self.position + len(z)]
        self.position += len(z)
        return batch


@pytest.mark.slow
def test_measure_generator_reports_fid_and_coverage(domain_cache, digits):
    cache, extractor = domain_cache
    real = fid.real_statistics(extractor, "mnist5k", 32, cache_dir=cache)
    images, labels = digits

    shuffled = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(1))]
    good = fid.measure_generator(ReplayGenerator(shuffled[:2000]), 8, extractor, real, n=2000)
    assert set(good) == {"fid/domain", "coverage/modes", "coverage/kl"}
    assert good["coverage/modes"] == 10 and good["coverage/kl"] < 0.05

    ones = images[labels == 1][:400]
    collapsed = fid.measure_generator(ReplayGenerator(ones), 8, extractor, real, n=400)
    assert collapsed["coverage/modes"] == 1
    assert collapsed["coverage/kl"] > 0.9 * math.log(10)
    assert collapsed["fid/domain"] > 5 * good["fid/domain"]

    torch.manual_seed(0)
    noise_generator = nn.Sequential(nn.Linear(8, 32 * 32), nn.Tanh(), nn.Unflatten(1, (1, 32, 32)))
    state = torch.random.get_rng_state()
    first = fid.measure_generator(noise_generator, 8, extractor, real, n=500, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # its own RNG
    assert noise_generator.training  # mode restored
    assert fid.measure_generator(noise_generator, 8, extractor, real, n=500, seed=3) == first
    assert first["fid/domain"] > 5 * good["fid/domain"]
