"""Bad input: a one-line click error, exit code 2, no traceback, and no half-written run."""
from __future__ import annotations

import shutil

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from conftest import TINY
from stabgan.cli import cli
from stabgan.train import load_checkpoint


def _snapshot(root):
    return sorted((str(p.relative_to(root)), p.stat().st_mtime_ns, p.stat().st_size)
                  for p in root.rglob("*")) if root.exists() else None


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = CliRunner().invoke(cli, ["run", "--out", str(out), "--name", "done", *TINY,
                                      "--steps", "4", "--log-every", "2", "--ckpt-every", "2"])
    assert result.exit_code == 0, result.output
    return out


def _bad_inputs(tmp, finished):
    empty = tmp / "empty"
    empty.mkdir()
    not_a_dir = tmp / "file.txt"
    not_a_dir.write_text("x")
    corrupt = tmp / "corrupt"
    shutil.copytree(finished, corrupt)
    (corrupt / "done" / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    old = tmp / "old"  # the checkpoint layout of an earlier stabgan: "data" for "stream"
    shutil.copytree(finished, old)
    state = load_checkpoint(old / "done" / "checkpoints" / "last.pt")
    state["data"] = state.pop("stream")
    torch.save(state, old / "done" / "checkpoints" / "last.pt")
    bad_sweep_file = tmp / "night.toml"
    bad_sweep_file.write_text('[grid]\nseed = [0, 1\n')
    run = ["run", "--out", str(tmp / "out"), "--steps", "3"]
    sweep = ["sweep", "--out", str(tmp / "out"), "--steps", "3"]
    return {
        "unknown norm": (run + ["--norm", "layer"], "layer"),
        "unknown arch": (run + ["--arch", "vit"], "vit"),
        "zero steps": (run + ["--steps", "0"], "steps=0"),
        "negative batch": (run + ["--batch-size", "-4"], "batch-size=-4"),
        "even kernel size": (run + ["--kernel-size", "4"], "kernel-size=4"),
        "groups not dividing channels": (run + ["--groups", "5"], "groups=5"),
        "reduction above channels": (run + ["--reduction", "999"], "reduction=999"),
        "unsupported image size": (run + ["--image-size", "48"], "48"),
        "zero learning rate": (run + ["--lr-g", "0"], "lr-g=0"),
        "dcgan with involution layers": (run + ["--arch", "dcgan", "--inv-layers", "2"], "inv-layers=2"),
        "norm without involution": (run + ["--arch", "sagan", "--norm", "batch"], "norm='batch'"),
        "block form without involution": (run + ["--arch", "dcgan", "--inv-block", "residual"],
                                          "inv-block='residual'"),
        "stages without blocks": (run + ["--arch", "dcgan", "--inv-stack", "stages"],
                                  "inv-stack='stages'"),
        "more stages than the model has": (run + ["--inv-stack", "stages", "--inv-layers", "4"],
                                           "inv-layers=4"),
        "unknown spectral-norm place": (run + ["--spectral-norm", "all"], "all"),
        "unknown penalty update": (run + ["--penalty-update", "twice"], "twice"),
        "unknown preset": (run + ["--preset", "celeba"], "celeba"),
        "unknown dataset": (run + ["--dataset", "cifar"], "cifar"),
        "missing dataset path": (run + ["--dataset", f"folder:{tmp}/nope"],
                                 f"'{tmp}/nope' does not exist; folder:PATH expects a folder "
                                 f"holding .jpg/.jpeg/.png images"),
        "dataset path is a file": (run + ["--dataset", f"folder:{not_a_dir}"],
                                   f"'{not_a_dir}' is not a folder; folder:PATH expects"),
        "empty image folder": (run + ["--dataset", f"folder:{empty}"],
                               f"'{empty}' has no images; folder:PATH expects"),
        "missing celeba root": (run + ["--dataset", f"celeba:{tmp}/nope"],
                                f"'{tmp}/nope' does not exist; celeba:ROOT expects"),
        "out is a file": (["run", "--out", str(not_a_dir), "--steps", "3"], str(not_a_dir)),
        "cuda without a GPU": (run + ["--device", "cuda"], "cuda"),
        "bench on cuda without a GPU": (["bench", "involution", "--device", "cuda"], "cuda"),
        "unknown probe": (run + ["--probes", "penalty,bogus"], "bogus"),
        "unknown fault": (run + ["--fault", "melt@2"], "melt@2"),
        "fault without its factor": (run + ["--fault", "lr@2"], "factor"),
        "fault after the last step": (run + ["--fault", "nan@9"], "never act"),
        "kernel fault without involution in G": (run + ["--arch", "dcgan", "--fault",
                                                        "saturate@2:10"], "saturate@2:10"),
        "resume without name": (["run", "--out", str(finished), "--resume"], "--name"),
        "resume of a missing run": (["run", "--out", str(tmp), "--name", "ghost", "--resume"], "ghost"),
        "corrupt checkpoint": (["run", "--out", str(corrupt), "--name", "done", "--resume",
                                "--steps", "8"], "unreadable"),
        "resume with another model": (["run", "--out", str(finished), "--name", "done", "--resume",
                                       "--inv-layers", "2", "--steps", "8"], "inv-layers=2"),
        "resume below the saved step": (["run", "--out", str(finished), "--name", "done",
                                         "--resume", "--steps", "1"], "steps"),
        "existing run without resume": (["run", "--out", str(finished), "--name", "done"], "done"),
        "checkpoint of an earlier layout": (["run", "--out", str(old), "--name", "done",
                                             "--resume", "--steps", "8"], "earlier stabgan"),
        "sweep file with a syntax error": (sweep + ["--config", str(bad_sweep_file)], "night.toml"),
        "grid key with a typo": (sweep + ["--grid", "sed=0,1"], "'sed'"),
        "sweep out is a file": (["sweep", "--grid", "seed=0", "--out", str(not_a_dir)],
                                str(not_a_dir)),
        # /proc passes the permission bits for root, but no folder can be made in it
        "out in a folder nothing can be made in": (["run", "--out", "/proc/stabgan", "--steps",
                                                    "3"], "/proc"),
        "sweep out likewise": (["sweep", "--grid", "seed=0", "--out", "/proc/stabgan"], "/proc"),
        "report of a file": (["report", str(not_a_dir)], str(not_a_dir)),
        "report out below a file": (["report", str(finished), "-o", str(not_a_dir / "r.html")],
                                    str(not_a_dir)),
    }


def test_bad_inputs_fail_cleanly(tmp_path, finished_run):
    cases = _bad_inputs(tmp_path, finished_run)
    assert len(cases) >= 12
    before = {d: _snapshot(d) for d in (finished_run, tmp_path / "corrupt", tmp_path / "old")}
    for label, (args, named) in cases.items():
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, f"{label}: exit {result.exit_code}\n{result.output}"
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), label
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, f"{label}: {result.output}"
        assert named in errors[0], f"{label}: {errors[0]!r} does not name {named!r}"
        assert "Traceback" not in result.output, label
        assert not (tmp_path / "out").exists(), f"{label} left a run directory behind"
    assert {d: _snapshot(d) for d in before} == before, "a refused command touched a run"


def test_unreadable_images_are_skipped_with_a_warning(tmp_path):
    folder = tmp_path / "images" / "nested"
    folder.mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (40, 30), (i * 10, 100, 200)).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    result = CliRunner().invoke(cli, ["run", "--out", str(tmp_path / "out"), "--name", "f",
                                      "--dataset", f"folder:{tmp_path / 'images'}", *TINY,
                                      "--steps", "2", "--log-every", "1"])
    assert result.exit_code == 0, result.output
    assert "1 of 21 image files are unreadable" in result.output
    assert (tmp_path / "out" / "f" / "summary.json").is_file()
