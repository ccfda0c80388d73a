"""Sweeps: grid parsing and naming, the parallelism rule, and real sweeps of tiny runs
(local pool: folders, skip on re-run, retry of a failed run, Ctrl-C then resume; Ray: one test)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from markupsafe import escape

from conftest import TINY, stabgan_cli
from probes.rundir.files import read_json, read_metrics, write_json
from reports import write_report
from stabgan.cli import cli
from stabgan.train import load_checkpoint
from stabgan.sweep import (RAY_JOIN_TIMEOUT_S, SweepError, SweepSpec, expand, parallelism,
                           parse_grid, point_name, run_sweep, sweep_spec)
from stabgan.sweep.process import runs_import_from

TINY_SETTINGS = {"width": 8, "z_dim": 16, "batch_size": 16, "probes": "none", "fid_final": False}
# runs that go on until stopped, logging every step
SLOW_SETTINGS = {"steps": 100000, "log_every": 1, "ckpt_every": 100000, "sample_every": 100000}
SLOW_RUN = [word for key, value in SLOW_SETTINGS.items()
            for word in (f"--{key.replace('_', '-')}", str(value))]


def sweep_cli(*args: str):
    """`stabgan sweep ARGS` in this process (its runs start as processes of their own)."""
    return CliRunner().invoke(cli, ["sweep", *args], catch_exceptions=False)


def sweep_process(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stabgan.cli", "sweep", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def ctrl_c_once(ready, timeout=180.0):
    """From a thread: SIGINT to this process, as a Ctrl-C, once ready() holds (or at timeout)."""
    def wait_then_signal():
        deadline = time.time() + timeout
        while not ready() and time.time() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=wait_then_signal, daemon=True).start()


def ray_sweep_of_slow_runs(out) -> SweepSpec:
    """Two slow tiny runs (seed 0, 1) as Ray tasks writing into OUT directly (shared storage)."""
    return SweepSpec(grid={"seed": (0, 1)}, base={**TINY_SETTINGS, **SLOW_SETTINGS}, out=out,
                     executor="ray", shared_storage=True, report=False)


def wait_for_metrics(run_dirs, records=1, timeout=180.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(len(read_metrics(d)) >= records for d in run_dirs):
            return
        time.sleep(0.2)
    raise AssertionError(f"runs never started logging: {run_dirs}")


# --- grid syntax, names, the plan ------------------------------------------------------------

@pytest.mark.parametrize("grid,message", [
    ("norms=none,batch", "unknown key 'norms'; accepted keys: arch, inv_layers"),
    ("norm=none,foo", "norm='foo' is not one of none, batch, spectral, softmax"),
    ("seed=0,x", "seed takes integers, not 'x'"),
    ("norm=", "empty value"),
    ("seed=0,,1", "empty value"),
    ("norm", "is not KEY=V1,V2,...; accepted keys: arch"),
    ("=1,2", "is not KEY=V1,V2,...; accepted keys: arch"),
    ("seed=0 seed=1", "appears twice"),
    ("seed=1,1", "repeated"),
    ("threads=1,2", "unknown key 'threads'"),
    ("", "grid is empty"),
    ("arch=dcgan,igan norm=none,batch", "1 of 4 grid points are invalid, nothing was run: "
                                        "arch-dcgan_norm-batch: norm='batch'"),
])
def test_bad_grid_is_a_one_line_error_before_anything_runs(tmp_path, grid, message):
    result = sweep_cli("--grid", grid, "--out", str(tmp_path / "s"), *TINY)
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "--grid" in error[0] and message in error[0], result.output
    if grid.strip() and grid != "arch=dcgan,igan norm=none,batch":
        assert repr(grid.split()[-1]) in error[0]  # names the bad token
    assert not (tmp_path / "s").exists()


def test_grid_key_also_given_as_run_flag_is_refused(tmp_path):
    result = sweep_cli("--grid", "seed=0,1", "--seed", "3", "--out", str(tmp_path / "s"))
    assert result.exit_code == 2 and "'seed' is both a grid key and a run flag" in result.output


def test_points_and_names():
    grid = parse_grid("seed=0,1 norm=none,batch inv-layers=2")
    assert list(grid) == ["seed", "norm", "inv_layers"] and grid["inv_layers"] == (2,)
    points = expand(grid)
    assert len(points) == 4
    names = [point_name(p) for p in points]
    # keys in RunConfig order whatever the grid's order, so a re-run finds the same folders
    assert names[0] == "inv_layers-2_norm-none_seed-0"
    assert len(set(names)) == 4
    assert point_name({"dataset": "folder:/data/my imgs", "lr_g": 1e-05,
                       "stop_on_collapse": True}) == \
        "dataset-folder-data-my-imgs_lr_g-1e-05_stop_on_collapse-true"
    # explicit points (a sweep file's `points`) are crossed with the grid
    table2 = [{"kernel_size": 3, "groups": 4, "reduction": 2}, {"kernel_size": 7, "groups": 4,
                                                                "reduction": 8}]
    assert [point_name(p) for p in expand({"seed": (0, 1)}, table2)] == [
        "kernel_size-3_groups-4_reduction-2_seed-0", "kernel_size-3_groups-4_reduction-2_seed-1",
        "kernel_size-7_groups-4_reduction-8_seed-0", "kernel_size-7_groups-4_reduction-8_seed-1"]


def test_parallelism_rule():
    # neither given: one run per core, the cores shared out when there are fewer runs
    assert parallelism(24, cores=8) == (8, 1)
    assert parallelism(3, cores=8) == (3, 2)
    assert parallelism(1, cores=8) == (1, 8)
    assert parallelism(5, cores=2, workers=1) == (1, 2)
    assert parallelism(5, cores=8, threads=4) == (2, 4)
    assert parallelism(5, cores=2, threads=4) == (1, 4)
    assert parallelism(6, cores=2, executor="ray") == (6, 1)
    assert parallelism(6, cores=2, workers=2, threads=3, executor="ray") == (2, 3)


def test_sweep_file_toml_and_json_match_the_flags(tmp_path):
    (tmp_path / "s.toml").write_text(
        'out = "x/norms"\nworkers = 2\n[base]\nsteps = 50\nwidth = 16\n'
        '[grid]\nnorm = ["none", "batch"]\nseed = [0, 1]\n')
    (tmp_path / "s.json").write_text(json.dumps(
        {"grid": "norm=none,batch seed=0,1", "base": {"steps": 50, "width": 16}, "out": "x/norms",
         "workers": 2}))
    from_flags = sweep_spec("norm=none,batch seed=0,1", None, {"steps": 50, "width": 16},
                            out="x/norms", workers=2)
    assert sweep_spec(config_file=tmp_path / "s.toml") == from_flags
    assert sweep_spec(config_file=tmp_path / "s.json") == from_flags
    # flags win over the file, key by key
    spec = sweep_spec("seed=5", tmp_path / "s.toml", {"steps": 7, "width": None}, workers=1)
    assert spec.grid == {"norm": ("none", "batch"), "seed": (5,)}
    assert spec.base == {"steps": 7, "width": 16} and spec.workers == 1
    (tmp_path / "bad.toml").write_text('[grid]\nnorm = ["none", "bogus"]\n')
    with pytest.raises(SweepError, match="norm='bogus' is not one of"):
        sweep_spec(config_file=tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text('{"gird": "seed=0"}')
    with pytest.raises(SweepError, match="unknown key 'gird'"):
        sweep_spec(config_file=tmp_path / "bad.json")
    (tmp_path / "slow.json").write_text('{"grid": "seed=0", "executor": "ray", '
                                        '"ray_address": "head:6379", "ray_timeout": 120}')
    assert sweep_spec(config_file=tmp_path / "slow.json").ray_timeout == 120
    assert sweep_spec("seed=0").ray_timeout == RAY_JOIN_TIMEOUT_S
    ray = {"executor": "ray", "ray_address": "head:6379"}
    with pytest.raises(SweepError, match="ray_timeout='soon' must be a number of seconds > 0"):
        sweep_spec("seed=0", **ray, ray_timeout="soon")
    with pytest.raises(SweepError, match="ray_timeout=5 is the wait for a cluster to join"):
        sweep_spec("seed=0", executor="ray", ray_timeout=5)
    with pytest.raises(SweepError, match="ray_address='head:6379' acts on Ray tasks: add "
                                         "--executor ray"):
        sweep_spec("seed=0", ray_address="head:6379")


# --- copy mode: a run folder coming back from a Ray node --------------------------------------

def test_a_returning_run_folder_replaces_the_old_one_despite_a_leftover_old_copy(tmp_path):
    from stabgan.sweep.ray_executor import _pack, _receive
    out = tmp_path / "sweep"
    (out / "seed-0").mkdir(parents=True)
    (out / "seed-0" / "summary.json").write_text('{"status": "interrupted"}')
    (out / ".seed-0.old").mkdir()  # left by an earlier sweep killed after its second rename
    (out / ".seed-0.old" / "summary.json").write_text('{"status": "interrupted"}')
    node = tmp_path / "node" / "seed-0"
    node.mkdir(parents=True)
    write_json(node / "summary.json", {"status": "completed"})
    _receive(out, "seed-0", {"log": b"done\n", "files": _pack(node)})
    assert read_json(out / "seed-0" / "summary.json") == {"status": "completed"}
    assert sorted(p.name for p in out.iterdir()) == [".sweep", "seed-0"]
    assert (out / ".sweep" / "logs" / "seed-0.log").read_bytes() == b"done\n"


def test_planning_puts_back_a_run_folder_left_only_as_its_old_copy(tmp_path):
    from stabgan.sweep import plan_sweep
    out = tmp_path / "sweep"
    old = out / ".seed-0.old"  # a sweep killed between the two renames of a returning folder
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "last.pt").write_bytes(b"checkpoint")
    write_json(old / "config.json", {"config": {"seed": 0}})
    write_json(old / "summary.json", {"status": "interrupted", "steps": 5})
    jobs = plan_sweep(SweepSpec(grid={"seed": (0,)}, base={"steps": 10}, out=out))
    assert [(j.name, j.action, j.reason) for j in jobs] == [("seed-0", "resume", "interrupted")]
    assert sorted(p.name for p in out.iterdir()) == ["seed-0"]
    assert read_json(out / "seed-0" / "summary.json")["status"] == "interrupted"


# --- the scheduling loop, over an executor that stands in for processes or Ray ----------------

class ScriptedExecutor:
    """Stands in for the subprocess/Ray layer: poll i ends the jobs and delivers the signals
    that `script[i]` names, as a Ctrl-C arriving while the loop waits would."""
    verb = "started"

    def __init__(self, script, stop):
        self.script, self.stop = list(script), stop
        self.in_flight, self.submitted, self.most, self.forwarded = [], [], 0, []

    def submit(self, job):
        self.in_flight.append(job)
        self.submitted.append(job.name)
        self.most = max(self.most, len(self.in_flight))

    def signal(self, signum):
        self.forwarded.append((signum, [job.name for job in self.in_flight]))

    def poll(self):
        ends, signals = self.script.pop(0)
        self.stop.count += signals
        self.stop.signum = self.stop.signum or (signal.SIGINT if signals else None)
        ended = [job for job in self.in_flight if job.name in ends]
        self.in_flight = [job for job in self.in_flight if job not in ended]
        return [(job, "ok") for job in ended]


def test_scheduling_loop_keeps_workers_in_flight_and_forwards_each_signal_once(tmp_path):
    from types import SimpleNamespace
    from stabgan.config import RunConfig
    from stabgan.sweep.executors import execute
    from stabgan.sweep.plan import Job

    jobs = [Job(f"p{i}", {}, RunConfig(), "run") for i in range(5)]
    stop = SimpleNamespace(count=0, signum=None)
    # p0 ends; a Ctrl-C while p1 and p2 run; a second one; then both end
    executor = ScriptedExecutor([({"p0"}, 0), (set(), 1), (set(), 1), ({"p1", "p2"}, 0)], stop)
    lines = []
    execute(executor, jobs, tmp_path, 2, stop, lines.append)
    assert executor.most == 2 and executor.submitted == ["p0", "p1", "p2"]
    assert executor.forwarded == [(signal.SIGINT, ["p1", "p2"])] * 2
    assert lines == ["started  p0 (run)", "started  p1 (run)", "finished p0: ok [1/5]",
                     "started  p2 (run)", "finished p1: ok [2/5]", "finished p2: ok [3/5]",
                     "not started: 2 run(s) (the sweep was stopped)"]


# --- real sweeps ------------------------------------------------------------------------------

@pytest.mark.slow
def test_local_sweep_writes_one_run_per_point_and_skips_them_on_rerun(tmp_path):
    out = tmp_path / "sweep"
    args = ["--grid", "seed=0,1", *TINY, "--steps", "3", "--out", str(out)]
    first = sweep_cli(*args)
    assert first.exit_code == 0, first.output
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in first.stderr
    args.append("--no-report")
    names = ["seed-0", "seed-1"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name[0] != ".") == names
    for name in names:
        summary = read_json(out / name / "summary.json")
        assert summary["status"] == "completed" and summary["steps"] == 3
        config = read_json(out / name / "config.json")["config"]
        assert config["seed"] == int(name[-1]) and config["threads"] >= 1
        assert name in first.stdout and (out / ".sweep" / "logs" / f"{name}.log").is_file()
    stamps = [(out / n / "summary.json").stat().st_mtime_ns for n in names]
    again = sweep_cli(*args)
    assert again.exit_code == 0, again.output
    assert "skipped  seed-0: completed" in again.stderr and "started" not in again.stderr
    assert [(out / n / "summary.json").stat().st_mtime_ns for n in names] == stamps
    # a different experiment in the same folder is refused, not mixed in
    other = sweep_cli(*args[:-1], "--lr-g", "0.001", "--no-report")
    assert other.exit_code == 2 and "holds a different run: lr_g=" in other.output


def test_a_warm_sweep_forks_its_runs_with_the_environment_of_their_start(tmp_path, monkeypatch):
    """Warm runs are forked from an interpreter started with this process's first warm sweep:
    they run as fresh ones do, and what the environment says later still reaches them."""
    def sweep(seed: int, out: Path):
        spec = SweepSpec(points=({"seed": seed},), base={**TINY_SETTINGS, "steps": 2},
                         out=out, workers=1, report=False, warm=True)
        return run_sweep(spec, echo=lambda message: None)

    assert sweep(0, tmp_path / "a").exit_code == 0
    summary = read_json(tmp_path / "a" / "seed-0" / "summary.json")
    assert summary["status"] == "completed" and summary["steps"] == 2
    log = (tmp_path / "a" / ".sweep" / "logs" / "seed-0.log").read_text()
    assert log.startswith(f"\n$ {sys.executable} -m stabgan.cli run") and "verdict: " in log
    config = read_json(tmp_path / "a" / "seed-0" / "config.json")
    assert config["command"][0].endswith("stabgan/cli.py")  # as `python -m stabgan.cli` has it
    monkeypatch.setenv("STABGAN_INVOLUTION_BACKEND", "bogus")
    assert sweep(1, tmp_path / "b").exit_code != 0
    log = (tmp_path / "b" / ".sweep" / "logs" / "seed-1.log").read_text()
    assert "STABGAN_INVOLUTION_BACKEND='bogus' is not one of" in log


def test_a_resume_that_stops_before_training_is_an_error_not_its_old_status(tmp_path):
    out = tmp_path / "sweep"
    run = out / "seed-0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    write_json(run / "config.json", {"config": {"seed": 0}})
    old = {"status": "interrupted", "steps": 5, "target_steps": 100}
    write_json(run / "summary.json", old)
    result = sweep_cli("--grid", "seed=0", *TINY, "--steps", "100", "--out", str(out), "--no-report")
    assert "started  seed-0 (resume: interrupted)" in result.stderr
    assert "finished seed-0: exit 2 before training" in result.stderr
    assert "last.pt' is unreadable" in result.stderr  # the log's last line says why
    assert result.exit_code == 1, result.output
    row = next(line for line in result.stdout.splitlines() if line.startswith("seed-0"))
    assert row.split()[1:4] == ["error", "(exit", "2)"], result.stdout
    assert "1 run(s) did not finish" in result.stderr
    assert read_json(run / "summary.json") == old  # the earlier attempt's, untouched


@pytest.mark.slow
def test_failed_run_is_retried_only_with_retry_failed(tmp_path):
    from PIL import Image
    images = tmp_path / "images"
    images.mkdir()
    for i in range(64):  # 4 batches an epoch: fewer DataLoader starts than one batch an epoch
        Image.new("RGB", (32, 32), (i * 4, 0, 255 - i * 4)).save(images / f"{i}.png")
    out = tmp_path / "sweep"
    common = ["--grid", "seed=0", *TINY, "--dataset", f"folder:{images}", "--out", str(out),
              "--no-report"]
    # a real failure: the images become unreadable while the run trains
    process = sweep_process(*common, *SLOW_RUN)
    wait_for_metrics([out / "seed-0"])
    saved = {p: p.read_bytes() for p in images.iterdir()}
    for path in saved:
        path.write_bytes(b"not an image")
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 1, stderr
    failed = read_json(out / "seed-0" / "summary.json")
    assert failed["status"] == "failed" and "could be read" in failed["error"]
    # the table and the report show the error and where its traceback is
    error_log = out / "seed-0" / "error.log"
    assert f"seed-0: {failed['error']} (traceback: {error_log})" in stdout.splitlines()
    page = write_report(out, tmp_path / "report.html").read_text()
    assert escape(failed["error"]) in page and escape(error_log.read_text()) in page
    for path, data in saved.items():
        path.write_bytes(data)
    skipped = sweep_cli(*common, "--steps", "3")
    assert skipped.exit_code == 1
    assert "skipped  seed-0: failed earlier (pass --retry-failed" in skipped.stderr
    assert read_json(out / "seed-0" / "summary.json") == failed
    retried = sweep_cli(*common, "--steps", "3", "--retry-failed")
    assert retried.exit_code == 0, retried.output
    assert read_json(out / "seed-0" / "summary.json")["status"] == "completed"
    log = (out / ".sweep" / "logs" / "seed-0.log").read_text()
    assert "starting over; the previous attempt ended failed" in log
    assert "# its error.log:\nTraceback (most recent call last):" in log


@pytest.mark.slow
def test_ctrl_c_interrupts_every_run_and_a_rerun_resumes_them(tmp_path):
    out = tmp_path / "sweep"
    common = ["--grid", "seed=0,1,2", *TINY, "--out", str(out), "--no-report", "--workers", "2"]
    process = sweep_process(*common, *SLOW_RUN)
    runs = [out / "seed-0", out / "seed-1"]
    wait_for_metrics(runs, records=2)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=180)  # seed-2 waits: it must not be waited for
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "not started: 1 run(s)" in stdout + stderr and not (out / "seed-2").exists()
    steps = []
    for run in runs:
        summary = read_json(run / "summary.json")
        assert summary["status"] == "interrupted", summary
        checkpoint = load_checkpoint(run / "checkpoints" / "last.pt")
        assert checkpoint["step"] == summary["steps"] > 0
        steps.append(summary["steps"])
    assert stdout.count("interrupted") == 2
    target = max(steps) + 2
    resumed = sweep_cli(*common, "--steps", str(target), "--log-every", "1")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stderr.count("(resume: interrupted)") == 2
    assert "started  seed-2 (run)" in resumed.stderr
    for run in [*runs, out / "seed-2"]:
        assert read_json(run / "summary.json")["status"] == "completed"
        logged = [r["step"] for r in read_metrics(run)]
        assert logged == list(range(1, target + 1))


@pytest.mark.slow
def test_ray_executor_interrupts_and_resumes_points_as_tasks(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "sweep"
        runs = [out / "seed-0", out / "seed-1"]
        # shared storage: tasks write into OUT directly; Ctrl-C reaches runs through the driver
        ctrl_c_once(lambda: all(len(read_metrics(d)) >= 2 for d in runs))
        stopped = run_sweep(ray_sweep_of_slow_runs(out))
        assert stopped.exit_code == 130
        assert [r["status"] for r in stopped.rows] == ["interrupted", "interrupted"], stopped.rows
        target = max(r["steps"] for r in stopped.rows) + 2
        # default storage: each interrupted folder goes to its task and comes back completed
        resumed = run_sweep(SweepSpec(grid={"seed": (0, 1)},
                                      base={**TINY_SETTINGS, **SLOW_SETTINGS, "steps": target},
                                      out=out, executor="ray", report=False))
        assert [j.action for j in resumed.jobs] == ["resume", "resume"]
        assert [(r["status"], r["steps"]) for r in resumed.rows] == [("completed", target)] * 2
        for run in runs:
            assert [r["step"] for r in read_metrics(run)] == list(range(1, target + 1))
            assert f"completed: {target} steps" in (out / ".sweep" / "logs" / f"{run.name}.log").read_text()
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_tasks_queued_at_ctrl_c_start_no_run(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)  # one task at a time
    try:
        out = tmp_path / "sweep"
        ctrl_c_once(lambda: any(read_metrics(out / f"seed-{i}") for i in (0, 1)))
        lines = []
        stopped = run_sweep(ray_sweep_of_slow_runs(out), echo=lines.append)
        assert stopped.exit_code == 130
        assert sorted(r["status"] for r in stopped.rows) == ["interrupted", "not started"], lines
        queued = next(r["name"] for r in stopped.rows if r["status"] == "not started")
        assert f"finished {queued}: not started (the sweep was stopped) [2/2]" in lines
        assert not (out / queued).exists()
    finally:
        ray.shutdown()


def test_a_ray_address_without_a_cluster_is_a_one_line_error_in_bounded_time(tmp_path):
    """Nothing listens on port 1: Ray retries for minutes, the sweep gives up after
    --ray-timeout seconds with one line naming the address, and writes nothing."""
    pytest.importorskip("ray")
    out = tmp_path / "sweep"
    started = time.time()
    result = stabgan_cli("sweep", "--grid", "seed=0", *TINY, "--steps", "2", "--out", str(out),
                         "--executor", "ray", "--ray-address", "127.0.0.1:1",
                         "--ray-timeout", "2.5", timeout=120)
    assert time.time() - started < 60
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "'127.0.0.1:1'" in errors[0], result.stderr
    assert "no answer within 2.5 s" in errors[0] and "auto" in errors[0]
    assert not out.exists()


def test_a_study_script_makes_its_runs_import_its_own_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(["/elsewhere", ""]))
    runs_import_from(tmp_path)
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/elsewhere"]
