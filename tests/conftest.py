"""Shared fixtures: small real data and helpers to run the stabgan CLI in a subprocess."""
from __future__ import annotations

import stabgan  # noqa: F401  (first: sets OpenMP's wait policy before torch loads)

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probes.rundir.files import read_metrics

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# Tiny models and few steps keep every test run in seconds on 2 CPU cores.
TINY = ["--width", "8", "--z-dim", "16", "--batch-size", "16", "--probes", "none", "--no-fid-final"]


def stabgan_cli(*args: str, cwd: Path | None = None, timeout: float = 900,
                **popen) -> subprocess.CompletedProcess:
    """Run `python -m stabgan.cli ARGS` and capture its output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "stabgan.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **popen)


def load_script(name: str):
    """scripts/NAME.py as a module (the scripts are not a package), registered under NAME."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def metrics_without_time(run_dir: Path) -> list[dict]:
    """metrics.jsonl's records without their timings: what two equal runs share exactly."""
    return [{k: v for k, v in r.items() if not k.startswith("time")} for r in read_metrics(run_dir)]


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared machine idle OpenMP
    threads waiting for a busy core make each step many times slower; restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_classifier_cache(tmp_path_factory) -> Path:
    """A stabgan cache holding mnist5k's domain classifier, trained once for the whole session
    (about 30 s on 2 cores); tests use copies of it (`classifier_cache`)."""
    from stabgan import fid

    cache = tmp_path_factory.mktemp("trained-cache")
    fid.get_extractor("domain", "mnist5k", 32, cache_dir=cache)
    return cache


@pytest.fixture
def classifier_cache(trained_classifier_cache, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the trained cache, which the runs it starts read too (through
    the cache variable): nothing here trains a classifier again or touches the real cache."""
    from stabgan.cache import CACHE_ENV

    cache = shutil.copytree(trained_classifier_cache, tmp_path / "stabgan-cache")
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache
