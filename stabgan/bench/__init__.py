"""Side-by-side benchmarks: ours vs a reference in one process, interleaved, medians of repeats
(`stabgan bench ...`). `timing` times things; `training` measures the step, the Monitor and the
trainer; `ops` the involution operator and the Fréchet distance."""
from __future__ import annotations

from stabgan.bench.ops import (bench_fid, bench_involution, machine_peaks, peak_allocated_bytes,
                               table2_costs)
from stabgan.bench.timing import interleaved_medians
from stabgan.bench.training import MinimalGan, bench_monitor, bench_scale, bench_trainer

__all__ = ["MinimalGan", "bench_fid", "bench_involution", "bench_monitor", "bench_scale",
           "bench_trainer",
           "interleaved_medians", "machine_peaks", "peak_allocated_bytes", "table2_costs"]
