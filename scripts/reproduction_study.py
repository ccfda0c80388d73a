"""Reproduction study: the seed's claims, run as stabgan sweeps (stabgan.study); writes
docs/reproduction.md from the run directories.

    python scripts/reproduction_study.py                   # run what is missing, write the doc
    python scripts/reproduction_study.py --only faithful   # one sweep (repeatable)
    python scripts/reproduction_study.py --doc-only        # rewrite the doc from existing runs
    python scripts/reproduction_study.py --doc-only --rediagnose  # ... judged by today's detector
    python scripts/reproduction_study.py --quick-check     # tiny smoke test (runs/seed-study-check)

Sweeps, each into OUT/<sweep> (default studies/seed-study, kept in the repository); resumable:
re-running skips finished runs and resumes interrupted ones:
  faithful    the seed's layout (--preset paper-sagan at 32x32, width 32), inv_layers {1, 2} x 3 seeds
  successive  the same with the blocks stacked at one resolution, inv_layers {1, 2} x 3 seeds
  norms       kernel normalization {batch, spectral, softmax} on two faithful layers x 3 seeds
  mechanism   involution in G, D or both x 1, 2 layers x kernel BatchNorm or none x 3 seeds
  table2      the seed's seven (K, G, R) cases with --width 64 x 3 seeds
  archs       arch {dcgan, sagan, igan} x 3 seeds
The first three train 5,000 steps a run (--seed-steps), the others 2,000 (--steps).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's stabgan, not an installed copy of another

from probes.collapse import diagnose_run  # noqa: E402
from probes.rundir.files import SUMMARY  # noqa: E402
from stabgan.study.doc import write_doc  # noqa: E402
from stabgan.study.sweeps import (DEFAULT_DATASET, SWEEPS, StudyOptions,  # noqa: E402
                                  default_out, reproduction_sweeps)
from stabgan.sweep import format_table, run_ended, run_sweep  # noqa: E402
from stabgan.sweep.process import runs_import_from  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder of every sweep [default: studies/seed-study, kept in the "
                             "repository; with --quick-check: runs/seed-study-check]")
    parser.add_argument("--doc", type=Path, default=None,
                        help="markdown to write [default: docs/reproduction.md, or "
                             "OUT/reproduction.md with --quick-check]")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per mechanism, table2 and archs run [default: 2000]")
    parser.add_argument("--seed-steps", type=int, default=None,
                        help="steps per faithful, successive and norms run [default: 5000]")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset spec for every run")
    parser.add_argument("--quick-check", action="store_true",
                        help="tiny models, few steps, a subset of points, one seed: a smoke test")
    parser.add_argument("--doc-only", action="store_true", help="do not run; rewrite the doc")
    parser.add_argument("--rediagnose", action="store_true",
                        help="first re-diagnose every finished run with the current detector "
                             "(diagnosis.json; runs keep the one they trained with otherwise)")
    parser.add_argument("--only", choices=SWEEPS, action="append",
                        help="run only these sweeps (repeatable)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--no-report", action="store_true", help="skip each sweep's report.html")
    parsed = vars(parser.parse_args(argv))
    only, doc_only, rediagnose = parsed.pop("only"), parsed.pop("doc_only"), parsed.pop("rediagnose")
    parsed["out"] = parsed["out"] or default_out(parsed["quick_check"])
    args = StudyOptions(**parsed)
    doc = args.doc or (args.out / "reproduction.md" if args.quick_check
                       else ROOT / "docs" / "reproduction.md")
    code = 0
    if not doc_only:
        runs_import_from(ROOT)
        for name, spec in reproduction_sweeps(args).items():
            if only and name not in only:
                continue
            print(f"== {name}: {spec.out}", file=sys.stderr, flush=True)
            result = run_sweep(spec)
            print(format_table(result.rows), flush=True)
            if result.signum:
                return result.exit_code
            code = max(code, result.exit_code)
    if rediagnose:  # every finished run judged by this detector, whichever one it ran with
        for summary in sorted(Path(args.out).glob(f"*/*/{SUMMARY}")):
            if run_ended(summary.parent):
                diagnose_run(summary.parent)
    write_doc(args, doc)
    print(f"wrote {doc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
