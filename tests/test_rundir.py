"""RunDir, the one reader of a run directory: metrics as columns (fast, tolerant), the JSON
files, the best FID, checkpoints through the safe loader, the error log."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probes.rundir.files import (CheckpointError, logged_value, metrics_line, read_metrics,
                                 write_json)
from probes.rundir.reader import BestFid, RunDir, best_fid
from probes.rundir.writer import RunWriter


def test_metrics_handle_cadences_order_and_odd_values(tmp_path):
    lines = ['{"step": 3, "a": 1.0, "b": "nan", "time": 0.3}',
             '',
             '{"step": 1, "a": 2, "c": [1, 2]}',
             'not json',
             '{"step": 2, "a": "x", "b": true}',
             '{"step": 2, "a": 5.0}',
             '{"step": 1.5, "a": 1}',
             '[1]',
             '{"step": 1' + '0' * 30 + ', "a": 1}',  # a step beyond int64
             '{"step": 4, "b": null, "a": {"k": 1}}',
             '{"step": 5, "a": 1e400, "b": "-inf"}',
             '{"step": 6, "a": -1' + '0' * 400 + '}',  # an integer beyond float64
             '{"step": 7, "a": 7']  # truncated: the run is still writing
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
    metrics = RunDir(tmp_path).metrics()
    assert (metrics.records, metrics.bad_lines, metrics.last_step) == (7, 5, 6)
    got = {tag: (s.tolist(), v.tolist()) for tag, (s, v) in metrics.series.items()}
    assert set(got) == {"a", "b"}  # a list is not a reading; "time" is not a tag
    assert got["a"] == ([1, 2, 3, 5, 6], [2.0, 5.0, 1.0, float("inf"), -float("inf")])
    steps, values = got["b"]
    assert steps == [2, 3, 4, 5] and values[0] == 1.0 and values[3] == -float("inf")
    assert np.isnan(values[1]) and np.isnan(values[2])  # "nan" and null


def _clean_metrics(run_dir) -> dict[str, tuple[list[int], list[float]]]:
    """A clean metrics.jsonl of three cadences; returns what it wrote, tag -> (steps, values)."""
    rng = np.random.default_rng(0)
    written: dict[str, tuple[list[int], list[float]]] = {}
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step in range(1, 301):
            values = {"loss/critic": float(rng.normal())}
            if step % 7 == 0:
                values["spectra/x/sigma0"] = float(rng.random())
            if step % 50 == 0:
                values["fid/domain"] = float("nan") if step == 100 else float(rng.random())
            values = {t: logged_value(v) for t, v in values.items()}
            f.write(metrics_line(step, step * 0.1, values))
            for tag, value in values.items():
                written.setdefault(tag, ([], []))[0].append(step)
                written[tag][1].append(value)
    return written


def test_metrics_of_a_clean_file_are_what_was_written(tmp_path):
    written = _clean_metrics(tmp_path)
    fast = RunDir(tmp_path).series()
    assert set(fast) == set(written)
    for tag, (steps, values) in written.items():
        assert fast[tag][0].tolist() == steps
        assert np.array_equal(fast[tag][1], values, equal_nan=True)


def test_the_purge_on_resume_keeps_the_records_the_reader_takes(tmp_path):
    lines = ['{"step": 1, "a": 1.0}', '{"step": true, "a": 2.0}', 'not json',
             '{"step": 2.0, "a": 3.0}', '{"step": -1' + '0' * 30 + ', "a": 4.0}',
             '{"step": 2, "a": 5.0}', '{"step": 3, "a": 6.0}']
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert RunDir(tmp_path).metrics().records == len(read_metrics(tmp_path)) == 3
    RunWriter(tmp_path, purge_after_step=2).close()
    assert read_metrics(tmp_path) == [{"step": 1, "a": 1.0}, {"step": 2, "a": 5.0}]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2


def test_series_keeps_the_tags_and_groups_asked_for(tmp_path):
    _clean_metrics(tmp_path)
    run = RunDir(tmp_path)
    assert set(run.series(["fid/"])) == {"fid/domain"}
    assert set(run.series(["loss/critic", "spectra/"])) == {"loss/critic", "spectra/x/sigma0"}
    assert run.series(["nothing"]) == {} and run.metrics(["nothing"]).records == 300


def test_best_fid_is_the_lowest_finite_reading_else_the_summary(tmp_path):
    series = {"fid/domain": (np.array([10, 20, 30]), np.array([5.0, np.nan, 3.0])),
              "fid/inception": (np.array([10, 20]), np.array([3.0, 4.0])),
              "loss/critic": (np.array([10]), np.array([-9.0]))}
    assert best_fid(series) == BestFid(3.0, 10, "inception")  # a tie: the earlier step
    assert best_fid(series, features="domain") == BestFid(3.0, 30, "domain")
    summary = {"fid_min": 2.5, "fid_min_step": 40, "fid_features": "domain"}
    assert best_fid(series, summary) == BestFid(3.0, 10, "inception")  # readings first
    assert best_fid({}, summary) == BestFid(2.5, 40, "domain")
    assert best_fid({}, summary, features="inception") is None
    assert best_fid({}, {"fid_min": "nan"}) is None and best_fid({}, {"fid_min": True}) is None
    assert best_fid({"fid/domain": ([1], [float("inf")])}) is None
    assert BestFid(2.5, 40, "domain").summary_fields() == {
        "fid_min": 2.5, "fid_min_step": 40, "fid_features": "domain"}
    _clean_metrics(tmp_path)
    run = RunDir(tmp_path)
    steps, values = run.series()["fid/domain"]
    i = int(np.nanargmin(values))
    assert run.best_fid() == BestFid(float(values[i]), int(steps[i]), "domain")
    assert type(run.best_fid().step) is int


def test_json_files_read_as_empty_when_missing_or_garbled(tmp_path):
    run = RunDir(tmp_path)
    assert (run.config, run.summary, run.diagnosis, run.verdict, run.onset_step) == (
        {}, {}, {}, None, None)
    (tmp_path / "summary.json").write_text('{"status": "comp')  # truncated
    (tmp_path / "config.json").write_text('[1, 2]')  # not an object
    assert run.read("summary.json") is None and run.config_file == {} and run.summary == {}
    write_json(tmp_path / "diagnosis.json", {"verdict": "collapsed", "onset_step": 7})
    assert (run.verdict, run.onset_step) == ("collapsed", 7)
    write_json(tmp_path / "summary.json", {"verdict": "healthy", "onset_step": None,
                                           "error": "E: x", "error_log": "error.log"})
    assert (run.verdict, run.onset_step) == ("healthy", None)  # summary.json's first
    assert run.error_log == tmp_path / "error.log"
    with pytest.raises(OSError):
        run.traceback()  # named but missing
    (tmp_path / "error.log").write_text("Traceback ...\nE: x\n")
    assert run.traceback().endswith("E: x\n")


def test_checkpoints_load_through_the_safe_loader(tmp_path):
    run = RunDir(tmp_path)
    assert run.checkpoint_path() == tmp_path / "checkpoints" / "last.pt"
    assert run.checkpoint_path("pre_collapse") == tmp_path / "checkpoints" / "pre_collapse.pt"
    assert run.checkpoint_path(str(tmp_path / "x.pt")) == tmp_path / "x.pt"
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        run.checkpoint()
    (tmp_path / "checkpoints").mkdir()
    torch.save({"step": 3, "generator": {"w": torch.ones(2)}}, run.checkpoint_path())
    assert run.checkpoint()["step"] == 3
    torch.save({"weights": 1}, run.checkpoint_path("pre_collapse"))
    with pytest.raises(CheckpointError, match="is not a stabgan checkpoint"):
        run.checkpoint("pre_collapse")
    run.checkpoint_path().write_text(json.dumps({"step": 3}))
    with pytest.raises(CheckpointError, match="is unreadable"):
        run.checkpoint()


def test_files_written_atomically_get_the_mode_of_a_plain_write(tmp_path):
    """A run's JSON files and checkpoints are readable by whoever could read a plainly written
    file (mkstemp alone makes them 0o600)."""
    import os
    import stat

    from probes.rundir.files import atomic_write_bytes, write_json

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic_write_bytes(tmp_path / "atomic.bin", b"x")
    write_json(tmp_path / "summary.json", {"status": "completed"})
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in tmp_path.iterdir()}
    assert modes == {"plain.txt": modes["plain.txt"], "atomic.bin": modes["plain.txt"],
                     "summary.json": modes["plain.txt"]}
