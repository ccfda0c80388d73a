"""How many modes N samples cover, and how evenly: one convention for the classes the domain
classifier finds on images (stabgan.fid) and the exact modes of 2-D mixtures (stabgan.toy), so
`coverage/modes` and `coverage/kl` mean the same to the detector on both kinds of data."""
from __future__ import annotations

import math

import torch

COVERAGE_MIN_SHARE = 0.1  # a mode is covered with >= 10% of its uniform share N/K


def covered_threshold(samples: int, modes: int, min_share: float = COVERAGE_MIN_SHARE) -> int:
    """Samples that make a mode covered among `samples`: ceil(min_share·N/K), at least 1, so a
    few strays (misclassified images, points grazing a mode) do not count as one."""
    return max(1, math.ceil(min_share * samples / modes))


def kl_from_uniform(counts: torch.Tensor) -> float:
    """KL (nats) of the histogram `counts` from uniform over its K bins: 0 when every bin holds
    the same share, log K when one holds them all, and when the histogram is empty."""
    k, total = len(counts), int(counts.sum())
    if total == 0:
        return math.log(k)
    p = counts[counts > 0].double() / total
    return max(float((p * (p * k).log()).sum()), 0.0)  # rounding can dip below 0
