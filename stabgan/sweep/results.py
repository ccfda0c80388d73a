"""What a sweep ends with: SweepResult (its rows, failures and exit code), one table row per run
directory, the terminal table, and DIR/report.html.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probes.rundir.files import ERROR_LOG, SUMMARY, read_json
from probes.rundir.reader import RunDir, verdict_and_onset
from stabgan.sweep.plan import Job

FINISHED = ("completed", "stopped_on_collapse")


def run_ended(run_dir: Path) -> bool:
    """The run ended (finished, or failed with its traceback kept): not interrupted part-way,
    which a rerun of its sweep resumes, nor not started yet."""
    summary = read_json(Path(run_dir) / SUMMARY)
    return summary is not None and summary.get("status") in (*FINISHED, "failed")


@dataclass
class SweepResult:
    """What run_sweep returns: the jobs, one table row per point, and how the sweep ended."""
    out: Path
    jobs: list[Job]
    rows: list[dict]
    signum: int | None = None
    report: Path | None = None
    report_error: str | None = None

    @property
    def failed(self) -> list[str]:
        """Runs that did not finish for a reason other than being stopped."""
        return [r["name"] for r in self.rows if r["status"] not in (*FINISHED, "interrupted")]

    @property
    def exit_code(self) -> int:
        """128 + signal when stopped; 1 when a run failed or the report could not be written."""
        if self.signum:
            return 128 + self.signum
        return 1 if self.failed or self.report_error else 0


def run_row(run_dir: Path, job: Job | None = None) -> dict:
    """One table row from a run directory's summary.json and diagnosis.json. Given the job that
    just ran there, a run that exited without writing a summary shows `error (exit N)`: the
    summary on disk, if any, is an earlier attempt's, and so is its error."""
    run = RunDir(run_dir)
    summary = run.summary
    status = summary.get("status") or ("not started" if not run_dir.exists() else "no summary")
    error, error_log = summary.get("error"), summary.get("error_log")
    if job is not None and job.left_summary_unchanged(summary):
        status, error, error_log = f"error (exit {job.returncode})", None, None
    verdict, onset = verdict_and_onset(summary, run.diagnosis)
    return {"name": run_dir.name, "status": status, "verdict": verdict, "onset": onset,
            "steps": summary.get("steps"), "target_steps": summary.get("target_steps"),
            "wall_s": summary.get("wall_s"), "error": error,
            "error_log": str(run.path / ERROR_LOG) if error_log else None}


def format_table(rows: list[dict]) -> str:
    """The terminal table: name, status, verdict, onset, steps, wall s; then, for each run that
    failed, its one-line error and the file holding its traceback."""
    def cell(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    header = ("name", "status", "verdict", "onset", "steps", "wall s")
    body = [(r["name"], r["status"], cell(r["verdict"]), cell(r["onset"]),
             cell(r["steps"]) + (f"/{r['target_steps']}" if r.get("target_steps") and
                                 r["target_steps"] != r["steps"] else ""),
             cell(r["wall_s"], "{:.1f}")) for r in rows]
    widths = [max(len(str(line[i])) for line in (header, *body)) for i in range(len(header))]
    right = {3, 4, 5}
    lines = []
    for line in (header, *body):
        lines.append("  ".join(str(v).rjust(w) if i in right else str(v).ljust(w)
                               for i, (v, w) in enumerate(zip(line, widths))).rstrip())
    for r in rows:
        if r.get("error"):
            lines.append(f"{r['name']}: {r['error']}" +
                         (f" (traceback: {r['error_log']})" if r.get("error_log") else ""))
    return "\n".join(lines)


def write_sweep_report(out: Path) -> Path:
    """DIR/report.html over every run in DIR."""
    # imported here: reports loads matplotlib, which a sweep needs only at its end
    from reports import write_report
    return write_report(out, out / "report.html")
