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
from probes.rundir.files import read_json, read_metrics
from stabgan.cli import cli
from stabgan.config import PRESETS, RunConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_gives_the_cpu_only_install_before_the_first_command():
    text = README.read_text()
    quickstart = text[text.index("## Quickstart"):]
    first_command = quickstart.index("pip install . && stabgan run")
    assert "download.pytorch.org/whl/cpu" in quickstart[:first_command]
    # the Quickstart still has exactly its two commands
    block = re.search(r"```bash\n(.*?)```", quickstart, re.S).group(1)
    assert block.strip().splitlines()[-2:] == ["pip install . && stabgan run", "bash .ci/run"]


def test_readme_describes_the_default_run_as_it_is_sized():
    """The Quickstart's length and sample file follow RunConfig's defaults (sized to take about
    two minutes on the slower 2-core machines), and the seed's 1:4 learning-rate ratio stays."""
    text = README.read_text()
    first_run = text[text.index("The first trains"):text.index("The second installs")]
    steps = RunConfig.steps
    assert f"{steps} steps" in first_run and f"samples/step_{steps:06d}.png" in first_run
    assert RunConfig.lr_d == pytest.approx(4 * RunConfig.lr_g)
    assert "about two minutes" in first_run


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


@pytest.mark.slow
@pytest.mark.usefixtures("classifier_cache")
def test_a_completed_run_ends_with_its_quality_beside_the_real_datas(tmp_path):
    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "q", *TINY[:-1],
                         "--steps", "20", "--log-every", "2", "--fid-samples", "200")
    assert result.returncode == 0, result.stderr
    quality = read_json(tmp_path / "q" / "summary.json")["quality"]
    assert quality["features"] == "domain" and quality["samples"] == 200
    assert quality["classes"] == 10 and 0 <= quality["modes"] <= 10
    assert 0 < quality["reference_fid"] < quality["fid"]  # 20 steps are far from the data
    # logged at the last step, so the report's best FID and TensorBoard have it too
    last = [r for r in read_metrics(tmp_path / "q") if r["step"] == 20]
    assert any(r.get("fid/domain") == pytest.approx(quality["fid"], rel=1e-6) for r in last)
    line = next(s for s in result.stderr.splitlines() if s.startswith("quality: "))
    assert f"{quality['modes']:g} of 10 classes" in line and "real images score" in line
    report = CliRunner().invoke(cli, ["report", str(tmp_path / "q"), "-o",
                                      str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "r.html").read_text()
    assert "FID (lower is better)" in page  # the final FID has its panel, not 'Other readings'
    assert re.search(r"final generator: FID <b>[\d.]+</b> over 200 samples \(lower is better; "
                     r"real images score [\d.]+ at that count\), <b>\d+</b> of 10 classes", page)
    off = stabgan_cli("run", "--out", str(tmp_path), "--name", "off", *TINY, "--steps", "2")
    assert off.returncode == 0, off.stderr
    assert read_json(tmp_path / "off" / "summary.json")["quality"] is None


def test_a_run_too_short_to_judge_says_so(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path), "--name", "s", *TINY,
                                      "--steps", "30"])
    assert result.exit_code == 0, result.output
    assert "verdict: too short to judge: 3 logged steps, and the detector needs 11" in \
        result.output
    diagnosis = read_json(tmp_path / "s" / "diagnosis.json")
    assert (diagnosis["logged_points"], diagnosis["points_needed"]) == (3, 11)
    shown = CliRunner().invoke(cli, ["diagnose", str(tmp_path / "s")])
    assert "too short to judge: 3 logged steps of the 11 a band needs" in shown.output
