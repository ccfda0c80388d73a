"""The Fréchet distance between two Gaussians, exactly in float64, the feature statistics it
needs, and mode coverage from class logits. Pure numerics: no model, no file."""
from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from probes.readings import COVERAGE_KL, COVERAGE_MODES
from stabgan.coverage import COVERAGE_MIN_SHARE, covered_threshold, kl_from_uniform


# ----------------------------------------------------------------------------------------------
# The Fréchet distance

def _as_float64(name: str, value, ndim: int) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    tensor = tensor.detach().to("cpu", torch.float64)
    if tensor.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(tensor.shape)}")
    # A finite sum proves every entry finite at a fraction of the cost of an elementwise test.
    if not torch.isfinite(tensor.sum()):
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise ValueError(f"{name} has {bad} non-finite (NaN or Inf) entries")
    return tensor


def _checked_statistics(mu1, sigma1, mu2, sigma2) -> tuple[torch.Tensor, ...]:
    mu1, mu2 = _as_float64("mu1", mu1, 1), _as_float64("mu2", mu2, 1)
    sigma1, sigma2 = _as_float64("sigma1", sigma1, 2), _as_float64("sigma2", sigma2, 2)
    d = mu1.shape[0]
    for name, shape, want in (("mu2", mu2.shape, (d,)), ("sigma1", sigma1.shape, (d, d)),
                              ("sigma2", sigma2.shape, (d, d))):
        if tuple(shape) != want:
            raise ValueError(f"{name} has shape {tuple(shape)} but mu1 has shape ({d},), "
                             f"so {want} is expected")
    return mu1, _symmetric("sigma1", sigma1), mu2, _symmetric("sigma2", sigma2)


def _symmetric(name: str, sigma: torch.Tensor) -> torch.Tensor:
    if torch.equal(sigma, sigma.T):  # the usual case, and 3x cheaper than measuring asymmetry
        return sigma
    scale = sigma.abs().max().item()
    asymmetry = (sigma - sigma.T).abs().max().item()
    # float32-accumulated covariances are symmetric to ~1e-7 relative; far more is a bug.
    if asymmetry > 1e-5 * scale:
        raise ValueError(f"{name} is not symmetric (max |S - S^T| = {asymmetry:.3g}, "
                         f"max |S| = {scale:.3g}): not a covariance matrix")
    return (sigma + sigma.T) / 2


def _check_psd(name: str, eigenvalues: torch.Tensor) -> None:
    # Rounding leaves eigenvalues of order -1e-7 relative on rank-deficient covariances;
    # anything far below that means the input was not a covariance matrix.
    low, high = eigenvalues.min().item(), eigenvalues.max().item()
    if low < -1e-4 * max(high, 0.0) and low < -1e-12:
        raise ValueError(f"{name} is not positive semi-definite (eigenvalue {low:.3g}, "
                         f"largest {high:.3g}): not a covariance matrix")


def _trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> float:
    """tr √(Σ1Σ2) = Σ √λ over the eigenvalues λ of Σ1Σ2, all real and >= 0 for PSD inputs.

    LAPACK's generalized symmetric eigensolver of type 2 (A·B·v = λ·v, `dsygv`) gives the λ
    of Σa·Σb for a positive definite Σb: a Cholesky factor of Σb, a congruence Lᵀ·Σa·L and
    an eigenvalues-only tridiagonal solve, all in float64 and all real. A rank-deficient Σ (fewer
    samples than dimensions) has no Cholesky factor; when neither has one, Σ1 = F·Fᵀ with
    F = V·√w from its eigen-decomposition (tiny negative w set to 0) and the λ are those of the
    symmetric Fᵀ·Σ2·F.
    """
    for (name_a, a), b in ((("sigma1", sigma1), sigma2), (("sigma2", sigma2), sigma1)):
        try:
            eigenvalues = torch.from_numpy(scipy.linalg.eigh(
                a.numpy(), b.numpy(), type=2, eigvals_only=True, driver="gv", check_finite=False))
            break
        except np.linalg.LinAlgError:  # b is not positive definite
            continue
    else:
        w, v = torch.linalg.eigh(sigma1)
        _check_psd("sigma1", w)
        factor = v * _drop_rounding_noise(w).sqrt()
        name_a, eigenvalues = "sigma2", torch.linalg.eigvalsh(factor.T @ (sigma2 @ factor))
    _check_psd(name_a, eigenvalues)
    return _drop_rounding_noise(eigenvalues).sqrt().sum().item()


def _drop_rounding_noise(eigenvalues: torch.Tensor) -> torch.Tensor:
    # A null direction comes out as ±(D·eps·λmax) at best; its square root, ~1e-7·√λmax,
    # summed over hundreds of null directions would bias tr √ upward, so such values are 0.
    tol = eigenvalues.shape[0] * torch.finfo(eigenvalues.dtype).eps * eigenvalues.max().clamp(min=0)
    return torch.where(eigenvalues > tol, eigenvalues, torch.zeros_like(eigenvalues))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), exact, in float64.

    Accepts numpy arrays or tensors: mu (D,), sigma (D, D). Covariances may be rank-deficient.
    Raises ValueError naming the argument on non-finite entries, mismatched shapes, or a sigma
    that is not a (symmetric, positive semi-definite) covariance matrix.
    """
    mu1, sigma1, mu2, sigma2 = _checked_statistics(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    value = (diff @ diff).item() + sigma1.trace().item() + sigma2.trace().item() \
        - 2.0 * _trace_sqrt_product(sigma1, sigma2)
    # The exact value is >= 0; equal inputs can round to about -1e-12 * tr(sigma).
    return max(value, 0.0)


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 numpy, N >= 2."""
    x = _as_float64("features", features, 2)
    if x.shape[0] < 2:
        raise ValueError(f"statistics need at least 2 feature rows, got {x.shape[0]}")
    mu = x.mean(0)
    centered = x - mu
    sigma = centered.T @ centered / (x.shape[0] - 1)
    return mu.numpy(), ((sigma + sigma.T) / 2).numpy()


# ----------------------------------------------------------------------------------------------
# Mode coverage

def mode_coverage(logits, num_classes: int, min_share: float = COVERAGE_MIN_SHARE) -> dict:
    """Classes covered by N samples and KL(predicted class histogram ‖ uniform).

    Each sample counts for its argmax class. A class is covered when at least
    max(1, ceil(min_share · N / num_classes)) samples fall in it, i.e. 10% of what a uniform
    generator would give it, so a few stray misclassifications do not count as a mode.
    KL is in nats: 0 for a uniform histogram, log(num_classes) when all samples are one class.
    """
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[1] != num_classes or logits.shape[0] == 0:
        raise ValueError(f"logits must have shape (N >= 1, {num_classes}), "
                         f"got {tuple(logits.shape)}")
    counts = torch.bincount(logits.argmax(1).cpu(), minlength=num_classes)
    threshold = covered_threshold(logits.shape[0], num_classes, min_share)
    return {COVERAGE_MODES: int((counts >= threshold).sum()),
            COVERAGE_KL: kl_from_uniform(counts)}
