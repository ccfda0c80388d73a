"""Studies: stabgan sweeps that answer the seed's claims, and the document written from their runs.

  sweeps.py    what is run: the seed-faithful long sweeps and the first round's short ones
  records.py   what the runs left: one record per run directory, grid points over seeds
  claims.py    each claim of the seed judged by a stated rule
  markdown.py  tables, numbers and figures for the document
  doc.py       docs/reproduction.md, section by section

`scripts/reproduction_study.py` is the command line over them.
"""
