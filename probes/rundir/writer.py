"""`RunWriter`: the one writer of a run directory (the Monitor's and so the trainer's).

It appends metrics.jsonl (flushed per write), mirrors scalars, histograms and images into
TensorBoard, saves fixed-noise sample grids and writes checkpoints atomically, in the files
and formats of `probes.rundir.files`; `probes.rundir.reader.RunDir` reads them back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from probes.rundir.files import (CHECKPOINTS, LAST_CHECKPOINT, METRICS, SAMPLES,
                                 atomic_write_bytes, logged_value, metrics_line, read_metrics)


class RunWriter:
    """Writes one run directory; see docs/design.md for the contract."""

    def __init__(self, run_dir: Path, purge_after_step: int | None = None):
        """Open run_dir for writing. purge_after_step (on resume) drops later metrics records,
        in metrics.jsonl and in TensorBoard, so a resumed run has no duplicated steps."""
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir)
        (self.dir / SAMPLES).mkdir(parents=True, exist_ok=True)
        (self.dir / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        # a writer killed between writing a checkpoint's temp file and renaming it leaves the
        # temp file (the checkpoint before it is intact); only this writer writes checkpoints/
        for stale in (self.dir / CHECKPOINTS).glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        if purge_after_step is not None:
            kept = [r for r in read_metrics(self.dir) if r["step"] <= purge_after_step]
            atomic_write_bytes(self.dir / METRICS,
                               "".join(json.dumps(r) + "\n" for r in kept).encode())
        self._metrics = open(self.dir / METRICS, "a", encoding="utf-8")
        purge = None if purge_after_step is None else purge_after_step + 1
        self.tensorboard = SummaryWriter(str(self.dir), purge_step=purge)

    def log_scalars(self, step: int, wall_time: float,
                    scalars: dict[str, float]) -> dict[str, float]:
        """One metrics.jsonl record (flushed now) and the same tags as TensorBoard scalars.
        Returns the values as written (logged_value), which is what a reader gets back."""
        written = {tag: logged_value(v) for tag, v in scalars.items()}
        self._metrics.write(metrics_line(step, wall_time, written))
        self._metrics.flush()
        for tag, value in written.items():
            self.tensorboard.add_scalar(tag, value, step)
        return written

    def log_histogram(self, tag: str, values, step: int) -> None:
        """A TensorBoard histogram of a tensor's values (non-finite values dropped)."""
        import torch
        values = values.detach().float().flatten().cpu()
        values = values[torch.isfinite(values)]
        if values.numel():
            self.tensorboard.add_histogram(tag, values, step)

    def log_layout(self, layout: dict[str, dict[str, list]]) -> None:
        """TensorBoard custom-scalars layout: {category: {chart: ["Multiline"|"Margin", [tags]]}}
        (a Margin chart's tags are [value, lower, upper]). Written once per writer."""
        if layout:
            self.tensorboard.add_custom_scalars(layout)

    def log_hparams(self, hparams: dict[str, Any], metrics: dict[str, float | None],
                    step: int) -> None:
        """A TensorBoard hparams entry for this run, in the run's own event file.

        hparams: name -> bool | int | float | str (None values are dropped). metrics: the scalar
        tags the hparams table shows (their last logged value); a tag given with a number is
        written now as a scalar at `step`, one given with None must already be logged.
        """
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        clean = {k: v for k, v in hparams.items() if isinstance(v, (bool, int, float, str))}
        experiment, start, end = hparams_summaries(clean, {tag: 0.0 for tag in metrics})
        for summary in (experiment, start, end):
            self.tensorboard.file_writer.add_summary(summary, step)
        for tag, value in metrics.items():
            if value is not None:
                self.tensorboard.add_scalar(tag, value, step)

    def save_samples(self, step: int, images) -> Path:
        """Save a grid of images in [-1, 1] to samples/step_NNNNNN.png and to TensorBoard."""
        from torchvision.utils import make_grid
        return self.save_picture(step, make_grid(images.detach().float().cpu(), nrow=8,
                                                 normalize=True, value_range=(-1, 1)))

    def save_picture(self, step: int, picture) -> Path:
        """Save a (3, H, W) picture in [0, 1] of the samples (a grid, or a scatter plot of
        2-D points) to samples/step_NNNNNN.png and to TensorBoard."""
        from torchvision.utils import save_image
        path = self.dir / SAMPLES / f"step_{step:06d}.png"
        save_image(picture, path)
        self.tensorboard.add_image("samples", picture, step)
        return path

    def save_checkpoint(self, state: dict, name: str = LAST_CHECKPOINT) -> Path:
        """torch.save state to checkpoints/name atomically."""
        import io
        import torch
        buffer = io.BytesIO()
        torch.save(state, buffer)
        path = self.dir / CHECKPOINTS / name
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def close(self) -> None:
        self._metrics.close()
        self.tensorboard.close()
