"""Run the seed study's sweeps (stabgan.study): resumable; see that module for what they are.

    python scripts/seed_study.py                    # every sweep, 5,000 steps a run
    python scripts/seed_study.py --only faithful    # one sweep
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stabgan.study import seed_study
from stabgan.sweep import format_table, run_sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/seed-study"))
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", action="append", help="run only these sweeps (repeatable)")
    args = parser.parse_args(argv)
    code = 0
    for name, spec in seed_study(args.out, args.steps, args.workers).items():
        if args.only and name not in args.only:
            continue
        print(f"== {name}: {spec.out}", file=sys.stderr, flush=True)
        result = run_sweep(spec)
        print(format_table(result.rows), flush=True)
        if result.signum:
            return result.exit_code
        code = max(code, result.exit_code)
    return code


if __name__ == "__main__":
    sys.exit(main())
