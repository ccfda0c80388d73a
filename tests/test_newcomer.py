"""A newcomer's first hour: the README's install advice, --preset's help, diagnosing a folder of
runs, and what an interrupted run tells you about resuming it."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TINY, stabgan_cli
from stabgan.cli import cli
from stabgan.config import PRESETS
from stabgan.runlog import read_json, read_metrics

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_gives_the_cpu_only_install_before_the_first_command():
    text = README.read_text()
    quickstart = text[text.index("## Quickstart"):]
    first_command = quickstart.index("pip install . && stabgan run")
    assert "download.pytorch.org/whl/cpu" in quickstart[:first_command]
    # the Quickstart still has exactly its two commands
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    assert block.strip().splitlines()[-2:] == ["pip install . && stabgan run", "bash .ci/run"]


def test_preset_help_names_every_preset():
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0, result.output
    help_text = " ".join(result.output.split())
    for name in PRESETS:
        assert re.search(rf"\b{name} \([^)]+\)", help_text), name


def test_diagnose_a_folder_diagnoses_each_run(tmp_path):
    root = tmp_path / "runs"
    trained = CliRunner().invoke(cli, ["run", "--out", str(root), "--name", "a", *TINY,
                                       "--steps", "4", "--log-every", "1"])
    assert trained.exit_code == 0, trained.output
    shutil.copytree(root / "a", root / "b")
    result = CliRunner().invoke(cli, ["diagnose", str(root)])
    assert result.exit_code == 0, result.output
    verdicts = {name: read_json(root / name / "diagnosis.json")["verdict"] for name in "ab"}
    for name, verdict in verdicts.items():
        assert re.search(rf"^{re.escape(str(root / name))}: {verdict}\b", result.output, re.M)
    found = list(verdicts.values())
    counts = ", ".join(f"{found.count(v)} {v}" for v in ("collapsed", "unstable", "healthy")
                       if v in found)
    assert result.output.rstrip().splitlines()[-1] == f"2 runs under {root}: {counts}"

    as_json = CliRunner().invoke(cli, ["diagnose", "--json", str(root)])
    assert as_json.exit_code == 0
    assert set(json.loads(as_json.stdout)) == {str(root / "a"), str(root / "b")}

    # a run whose diagnosis cannot be written: the other is still diagnosed, exit 1
    (root / "b" / "diagnosis.json").unlink()
    (root / "b" / "diagnosis.json").mkdir()
    broken = CliRunner().invoke(cli, ["diagnose", str(root)])
    assert broken.exit_code == 1
    assert f"{root / 'a'}: {verdicts['a']}" in broken.output
    assert f"{root / 'b'}: could not be diagnosed: IsADirectoryError" in broken.output
    assert broken.output.rstrip().endswith("1 could not be diagnosed")
    assert "Traceback" not in broken.output


def test_diagnose_a_folder_without_runs_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    result = CliRunner().invoke(cli, ["diagnose", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{str(tmp_path)!r} is not a run directory and holds none" in result.output


@pytest.mark.slow
def test_an_interrupted_run_prints_the_command_that_resumes_it(tmp_path):
    out = tmp_path / "my runs"  # a space: the printed command must survive a shell
    process = subprocess.Popen(
        [sys.executable, "-m", "stabgan.cli", "run", "--out", str(out), "--name", "s", *TINY,
         "--steps", "100000", "--log-every", "1", "--ckpt-every", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(read_metrics(out / "s")) < 3:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    steps = read_json(out / "s" / "summary.json")["steps"]
    [line] = [line for line in stderr.splitlines() if line.startswith("resume: ")]
    command, note = line[len("resume: "):].split("      ")
    assert shlex.split(command) == ["stabgan", "run", "--out", str(out), "--name", "s", "--resume"]
    assert note.strip() == f"(from step {steps:,} of 100,000)"

    resumed = stabgan_cli(*shlex.split(command)[1:], "--steps", str(steps + 2))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed {out / 's'} from step {steps:,} of {steps + 2:,}" in resumed.stderr
    assert "resume: " not in resumed.stderr  # a completed run needs no resuming
