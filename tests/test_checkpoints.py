"""Faults around checkpoints, each in a real `stabgan` process: a malicious checkpoint never runs
code; a write killed by SIGKILL leaves the previous checkpoint intact."""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import TINY, metrics_without_time, stabgan_cli
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
