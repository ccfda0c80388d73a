"""Imported only by the sweep's forkserver, before anything else (process.WARM_MODULES): it
leaves the sweep's process group, so a signal sent to that group (a terminal's Ctrl-C,
`kill -- -PGID`) reaches the sweep alone, which forwards exactly one to each run, as for a run
started fresh; the forkserver would otherwise die of it, and its runs, asked to stop when their
parent dies, would get a second signal (which skips the final checkpoint)."""
import os

os.setpgrp()
