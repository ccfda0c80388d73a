"""The run directory: what a training loop writes and every later stage reads.

`files` holds the file names and formats (and safe single-file reads and writes), `writer`
the one writer (`RunWriter`, used by the Monitor), `reader` the one reader (`RunDir`).
"""
