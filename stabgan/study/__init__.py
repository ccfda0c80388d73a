"""Studies: stabgan sweeps that answer the seed's claims, and the document written from their runs.

  sweeps.py     what is run: the seed-faithful long sweeps, the mechanism, Table 2, the archs
  records.py    what the runs left: one record per run directory, grid points over seeds
  claims.py     each claim (the seed's, and the mechanism's) judged by a stated rule
  markdown.py   tables, numbers and figures for the document
  mechanism.py  the mechanism section: settings pooled over sweeps, the ablation, the answer
  doc.py        docs/reproduction.md, section by section

`scripts/reproduction_study.py` is the command line over them.
"""
