"""SIGINT/SIGTERM while a `with` block runs: what a run and a sweep do on Ctrl-C or a kill."""
from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Counts SIGINT/SIGTERM inside the block and keeps the first one (`signum`); the previous
    handlers come back at the end. With `second_raises` a second signal raises
    KeyboardInterrupt: the first asks a run to stop after its step, the second stops it now."""

    def __init__(self, second_raises: bool = False):
        self.count, self.signum, self._previous = 0, None, {}
        self._second_raises = second_raises

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self._second_raises and self.count:
            raise KeyboardInterrupt
        self.count += 1
        self.signum = self.signum or signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
