"""Where stabgan keeps what it builds once per machine: the compiled involution kernel (`ext/`),
domain classifiers (`domain/`) and real-data FID statistics (`stats/`)."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "STABGAN_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """cache_dir if given, else $STABGAN_CACHE, else $XDG_CACHE_HOME/stabgan, else
    ~/.cache/stabgan."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "stabgan"
