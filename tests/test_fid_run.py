"""FID during training (summary's fid_min) and `stabgan fid RUN_DIR` on a real run's checkpoint."""
from __future__ import annotations

import json

import pytest

from click.testing import CliRunner

from conftest import TINY
from probes.rundir.files import read_json
from probes.rundir.reader import RunDir, as_lists
from stabgan.cli import cli
from stabgan.fid import INCEPTION_WEIGHTS_ENV


def stabgan(*args: str):
    """The CLI in this process: a command costs no interpreter and torch start-up."""
    return CliRunner().invoke(cli, list(args))


@pytest.mark.usefixtures("classifier_cache")
def test_fid_probe_summary_and_fid_command(tmp_path, monkeypatch):
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    result = stabgan("run", "--out", str(tmp_path), "--name", "f", *TINY, "--steps", "6",
                     "--log-every", "2", "--fid-every", "3", "--fid-samples", "100",
                     "--probes", "penalty,fid")
    assert result.exit_code == 0, result.output
    fids = as_lists(RunDir(tmp_path / "f").series())["fid/domain"]
    assert fids[0] == [3, 6]
    summary = read_json(tmp_path / "f" / "summary.json")
    assert summary["fid_min"] == min(fids[1]) and summary["fid_features"] == "domain"
    assert summary["fid_min_step"] == fids[0][fids[1].index(min(fids[1]))]

    measured = stabgan("fid", str(tmp_path / "f"), "-n", "100", "--json")
    assert measured.exit_code == 0, measured.output
    readings = json.loads(measured.stdout)
    assert readings["step"] == 6 and readings["fid/domain"] > 0
    assert 1 <= readings["coverage/modes"] <= 10

    missing = stabgan("fid", str(tmp_path / "f"), "--features", "inception")
    assert missing.exit_code == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in missing.stderr
    assert "Traceback" not in missing.stderr
    ignored = stabgan("run", "--out", str(tmp_path), *TINY, "--fid-every", "3")
    assert ignored.exit_code == 2 and "--fid-every 3" in ignored.stderr
    no_checkpoint = stabgan("fid", str(tmp_path / "f"), "--checkpoint", "pre_collapse")
    assert no_checkpoint.exit_code == 2 and "pre_collapse.pt" in no_checkpoint.stderr
