"""The CLI starts without torch where no model is needed, and a run ends by saying what
happened and what to type next."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import TINY, stabgan_cli
from probes.rundir.files import read_json


def _imported_modules(*args: str) -> set[str]:
    """Modules `python -X importtime -m stabgan.cli ARGS` imported (from its stderr)."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "stabgan.cli", *args],
                            capture_output=True, text=True, timeout=120)
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and line.count("|") == 2}


def _write_metrics_only_run(run_dir):
    run_dir.mkdir()
    lines = [{"step": s, "time": s / 10, "loss/critic": -1.0, "wgan/distance": 2.0,
              "gp/norm_mean": 1.0} for s in range(10, 210, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("report", "--help"),
                                  ("run", "--steps", "0"), ("run", "--norm", "layer"),
                                  ("sweep", "--grid", "norms=none")],
                         ids=["help", "run-help", "report-help", "bad-steps", "bad-norm",
                              "bad-grid"])
def test_help_and_settings_errors_import_no_torch(args):
    modules = _imported_modules(*args)
    assert "click" in modules  # the measurement itself works
    assert "torch" not in modules


def test_help_imports_no_sweep_package():
    assert "stabgan.sweep" not in _imported_modules("--help")


def test_a_local_sweep_is_planned_without_torch(tmp_path):
    (tmp_path / "file").write_text("")  # --out below a file: refused after the whole plan
    modules = _imported_modules("sweep", "--grid", "seed=0", "--out", str(tmp_path / "file" / "out"))
    assert "stabgan.sweep.plan" in modules and "stabgan.device" in modules
    assert "torch" not in modules


def test_diagnose_imports_no_torch(tmp_path):
    _write_metrics_only_run(tmp_path / "r")
    modules = _imported_modules("diagnose", str(tmp_path / "r"))
    assert "probes.collapse" in modules and "torch" not in modules
    assert read_json(tmp_path / "r" / "diagnosis.json")["verdict"] == "healthy"


def test_a_run_ends_with_its_verdict_directory_and_next_commands(tmp_path):
    # 11 logged steps: the fewest the detector judges (a shorter run says it is too short)
    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "r", *TINY, "--steps", "22",
                         "--log-every", "2")
    assert result.returncode == 0, result.stderr
    tail = result.stderr.splitlines()[-6:]
    run_dir = tmp_path / "r"
    assert tail[0] == "completed: 22 steps in " + tail[0].split(" in ")[1]
    assert tail[1] == "verdict: healthy"
    assert tail[2] == f"run directory: {run_dir}"
    assert tail[3].startswith(f"next: stabgan report {run_dir}")
    assert tail[4].strip() == f"tensorboard --logdir {run_dir}"
    assert tail[5].strip() == f"stabgan diagnose {run_dir}"
    assert (run_dir / "samples" / "step_000000.png").is_file()


def test_the_end_of_run_message_names_onset_kind_and_evidence(tmp_path):
    from stabgan.cli import end_of_run

    run_dir = tmp_path / "r"
    run_dir.mkdir()
    event = {"kind": "divergence", "step": 1840, "severity": "collapse", "evidence": {},
             "message": "collapsed at step 1,840: critic divergence (wgan/distance 3 → 90)"}
    (run_dir / "diagnosis.json").write_text(json.dumps({"verdict": "collapsed",
                                                        "onset_step": 1840, "events": [event]}))
    summary = {"status": "completed", "steps": 2000, "wall_s": 12.5, "verdict": "collapsed",
               "onset_step": 1840, "fid_min": 20.5, "fid_min_step": 1500, "fid_features": "domain"}
    lines = end_of_run(summary, run_dir).splitlines()
    assert lines[0] == "completed: 2,000 steps in 12.5 s"
    assert lines[1] == ("verdict: collapsed at step 1,840 (divergence): collapsed at step "
                        "1,840: critic divergence (wgan/distance 3 → 90)")
    assert lines[2] == "best FID (domain): 20.5 at step 1,500"
