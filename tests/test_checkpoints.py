"""Faults around checkpoints, each in a real `stabgan` process: a malicious checkpoint never runs
code; a write killed by SIGKILL or refused by the kernel leaves the previous checkpoint intact;
a run that fails keeps its traceback in error.log."""
from __future__ import annotations

import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from PIL import Image

from conftest import TINY, metrics_without_time, stabgan_cli
from probes.rundir.files import read_json, read_metrics
from stabgan.train import load_checkpoint

QUIET = ["--sample-every", "100000"]  # one sample grid: the run's other files stay small


class RunsAShellCommand:
    """Unpickles as os.system(command): what a malicious checkpoint does."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _write_malicious(path, marker, form: str) -> None:
    state = {"step": 1, "generator": RunsAShellCommand(f"touch {marker}")}
    if form == "torch.save":
        torch.save(state, path)
    elif form == "legacy torch.save":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:  # a bare pickle, as any Python writes it
        path.write_bytes(pickle.dumps(state, protocol=2))


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in root.rglob("*"))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = stabgan_cli("run", "--out", str(out), "--name", "done", *TINY, *QUIET,
                         "--steps", "4", "--log-every", "2", "--ckpt-every", "2")
    assert result.returncode == 0, result.stderr
    return out / "done"


@pytest.mark.parametrize("command,form", [
    ("run --resume", "torch.save"),
    ("fid", "torch.save"),
    ("fid --checkpoint PATH", "torch.save"),
    ("fid --checkpoint PATH", "legacy torch.save"),
    ("fid --checkpoint PATH", "pickle"),
])
def test_a_malicious_checkpoint_runs_no_code(tmp_path, monkeypatch, finished_run, command, form):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.pt" if "PATH" in command else run_dir / "checkpoints" / "last.pt"
    _write_malicious(evil, marker, form)
    before = _snapshot(tmp_path)
    args = {"run --resume": ["run", "--out", str(tmp_path), "--name", "run", "--resume",
                             "--steps", "8"],
            "fid": ["fid", str(run_dir)],
            "fid --checkpoint PATH": ["fid", str(run_dir), "--checkpoint", str(evil)]}[command]
    monkeypatch.setenv("STABGAN_CACHE", str(tmp_path / "cache"))  # fid's caches: none written
    result = stabgan_cli(*args)
    assert not marker.exists(), "the checkpoint's pickle ran its command"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: refused: checkpoint {str(evil)!r} contains posix.system; "
                      f"stabgan loads checkpoints without running code"], result.stderr
    assert _snapshot(tmp_path) == before, "a refused checkpoint wrote something"


def test_a_checkpoint_of_an_earlier_stabgan_resumes(tmp_path, finished_run):
    run_dir = tmp_path / "done"
    shutil.copytree(finished_run, run_dir)
    last = run_dir / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    state["versions"]["torch"] = torch.__version__  # a TorchVersion, as earlier versions wrote
    state["collapse_guard"]["checkpoint_step"] = state["step"]  # as earlier versions wrote too
    torch.save(state, last)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == [
        "torch.torch_version.TorchVersion"]
    resumed = stabgan_cli("run", "--out", str(tmp_path), "--name", "done", "--resume",
                          "--steps", "6")
    assert resumed.returncode == 0, resumed.stderr
    assert torch.serialization.get_unsafe_globals_in_checkpoint(last) == []
    assert load_checkpoint(last)["step"] == 6


# Runs the CLI and SIGKILLs itself while checkpoints/last.pt is rewritten (once a last.pt
# exists), at an audit event once the new temp file exists: "open" (the temp file made and being
# opened, nothing in it yet) or "os.rename" (written and synced, about to replace last.pt).
KILL_WHILE_CHECKPOINTING = """
import os, signal, sys
event_to_kill_at, rewriting = sys.argv[1], []

def hook(event, args):
    if event == "tempfile.mkstemp":
        folder, name = os.path.split(args[0])
        if name.startswith(".last.pt.") and os.path.exists(os.path.join(folder, "last.pt")):
            rewriting.append(args[0])
    elif event == event_to_kill_at and rewriting and os.path.exists(rewriting[0]):
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
sys.argv = ["stabgan", *sys.argv[2:]]
from stabgan.cli import main
main()
"""


KILLED_RUN = [*TINY, *QUIET, "--steps", "20", "--log-every", "2", "--ckpt-every", "6",
              "--seed", "5"]


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    result = stabgan_cli("run", "--out", str(out), "--name", "whole", *KILLED_RUN)
    assert result.returncode == 0, result.stderr
    return out / "whole"


@pytest.mark.slow
@pytest.mark.parametrize("event", ["open", "os.rename"])
def test_a_checkpoint_write_killed_leaves_the_previous_one_and_resume_is_exact(
        tmp_path, uninterrupted_run, event):
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_CHECKPOINTING, event, "run",
                             "--out", str(tmp_path), "--name", "killed", *KILLED_RUN],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert [p.name for p in checkpoints.glob(".last.pt.*.tmp")], "not killed mid-write"
    assert load_checkpoint(checkpoints / "last.pt")["step"] == 6  # the one before the kill
    resumed = stabgan_cli("run", "--name", "killed", "--resume", "--steps", "20",
                          "--out", str(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]
    assert metrics_without_time(tmp_path / "killed") == metrics_without_time(uninterrupted_run)


def _long_run(out, *args: str, until) -> subprocess.Popen:
    """A `stabgan run` of OUT/r for 100,000 steps, returned once until() holds."""
    process = subprocess.Popen(
        [sys.executable, "-m", "stabgan.cli", "run", "--out", str(out), "--name", "r", *TINY,
         *QUIET, "--steps", "100000", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.time() + 300
    while not until() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert until(), process.stderr.read() if process.poll() is not None else "timed out"
    return process


def _failed_with_traceback(process: subprocess.Popen, run_dir) -> tuple[dict, str]:
    """(summary, error.log) of a run that failed: exit 1 and one error line naming error.log."""
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr
    summary = read_json(run_dir / "summary.json")
    assert summary["status"] == "failed" and summary["error_log"] == "error.log"
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: run failed: {summary['error']}; traceback in "
                      f"{run_dir / 'error.log'}"]
    traceback = (run_dir / "error.log").read_text()
    assert traceback.startswith("Traceback (most recent call last):")
    return summary, traceback


@pytest.mark.slow
def test_a_checkpoint_write_the_kernel_refuses_fails_the_run_and_keeps_the_previous(tmp_path):
    """The file-size limit (RLIMIT_FSIZE) makes the kernel refuse the checkpoint's write as a
    full disk would (EFBIG rather than ENOSPC); smaller files can still be written."""
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    process = _long_run(tmp_path, "--log-every", "5", "--ckpt-every", "20", until=last.exists)
    limit = last.stat().st_size - 1  # every later checkpoint is as large
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))
    summary, traceback = _failed_with_traceback(process, tmp_path / "r")
    assert "File too large" in summary["error"]
    assert "save_checkpoint" in traceback and "File too large" in traceback
    kept = load_checkpoint(last)["step"]
    assert kept % 20 == 0 and 0 < kept < summary["steps"]
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.pt"]


def test_a_failure_inside_the_loop_keeps_its_traceback(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(32):
        Image.new("RGB", (32, 32), (i * 8, 0, 255 - i * 8)).save(images / f"{i}.png")
    process = _long_run(tmp_path, "--dataset", f"folder:{images}", "--log-every", "1",
                        until=lambda: read_metrics(tmp_path / "r"))
    for path in images.iterdir():  # the images become unreadable while the run trains
        path.write_bytes(b"not an image")
    summary, traceback = _failed_with_traceback(process, tmp_path / "r")
    assert summary["error"].startswith("DatasetError: ") and "\n" not in summary["error"]
    assert summary["error"].endswith("no image in the folder could be read")
    assert "stream.next()" in traceback and "no image in the folder could be read" in traceback
