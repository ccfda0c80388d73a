"""The failure zoo (stabgan.zoo): run it through stabgan's sweep, diagnose, write docs/collapse.md.

    python scripts/failure_zoo.py                       # runs what is missing (resumable), writes the doc
    python scripts/failure_zoo.py --doc-only            # re-diagnose the stored runs, rewrite the doc
    python scripts/failure_zoo.py --only healthy,lr-raise   # some recipes (or groups) only
    python scripts/failure_zoo.py --seeds 0             # the tuning seed only

Every run is a point of one `stabgan sweep` into OUT (2 at a time by default, one torch thread
each): running the script again skips finished runs and resumes interrupted ones, so the zoo
can be spread over several sessions. Each invocation's wall time is appended to
OUT/.zoo-sessions.json, and the doc states their sum. The doc re-diagnoses every run with the
current detector (`diagnose_run`), so `--doc-only` after a detector change rewrites it in
seconds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from probes.collapse import Thresholds, diagnose_run, sign_text  # noqa: E402
from probes.rundir.files import read_json, write_json  # noqa: E402
from stabgan import zoo  # noqa: E402
from stabgan.sweep import format_table, run_sweep  # noqa: E402
from stabgan.sweep.process import runs_import_from  # noqa: E402

SESSIONS = ".zoo-sessions.json"
BUDGET_H = 2  # the zoo's wall-time budget on one 2-core machine
# docs/collapse.md from this heading on is scripts/natural_zoo.py's; this script keeps it
NATURAL_HEADING = "## Natural failures: the toy zoo"


def repo_path(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def command_line(args) -> str:
    words = ["python scripts/failure_zoo.py", "--out", repo_path(args.out), "--steps", str(args.steps),
             "--workers", str(args.workers), "--threads", str(args.threads)]
    return " ".join(words + (["--only", args.only] if args.only else [])
                    + (["--seeds", args.seeds] if args.seeds != ",".join(map(str, zoo.SEEDS))
                       else []))


def record_session(out: Path, started: float, command: str) -> None:
    sessions = read_json(out / SESSIONS) or {"sessions": []}
    sessions["sessions"].append({"start": time.strftime("%Y-%m-%dT%H:%M:%S",
                                                        time.localtime(started)),
                                 "wall_s": round(time.time() - started, 1), "command": command})
    write_json(out / SESSIONS, sessions)


def run_recorded(specs: list, out: Path, command: str) -> tuple[int, bool]:
    """Run a zoo's sweeps in turn (this checkout's stabgan), append their wall time to OUT's
    sessions as one and print each table: (exit code, whether a signal stopped them)."""
    runs_import_from(ROOT)
    started, code, ran = time.time(), 0, False
    try:
        for spec in specs:
            result = run_sweep(spec)
            ran = True
            print(format_table(result.rows), flush=True)
            code = code or result.exit_code
            if result.signum:
                return code, True
    finally:
        if ran:  # a sweep refused before it ran anything leaves no session
            record_session(out, started, command)
    return code, False


# --------------------------------------------------------------------------- the doc

def plain_number(value) -> str:
    return "—" if value is None else f"{round(value):,}"


def signed_number(value) -> str:
    return "—" if value is None else f"{round(value):+,}"


def truth_cell(score: zoo.RunScore) -> str:
    if score.truth_onset is None:
        fault = f"; fault at {score.injected:,}" if score.injected is not None else ""
        return f"no failure{fault}"
    return f"{score.truth_onset:,} ({score.truth_from})"


def event_cell(event: dict | None) -> str:
    if event is None:
        return "—"
    evidence = event.get("evidence", {})
    how = ""
    if "graded" in evidence:
        how = " (graded)"
    elif "corroborated_by" in evidence:
        how = " (corroborated)"
    return f"{event['kind']} {event['severity']}{how} @ {event['step']:,}"


def shown_event(score: zoo.RunScore) -> dict | None:
    """The event a run's row and timeline show: the catch, else the layer's, else the first."""
    return score.caught or score.layer_event or (score.events[0] if score.events else None)


def sign_cell(event: dict | None) -> str:
    signs = (event or {}).get("first_signs") or []
    if not signs:
        return "—"
    sign = signs[0]
    layer = f" [{sign['layer']}]" if sign.get("layer") else ""
    return f"{sign['step']:,}: `{sign_text(sign)}`{layer}, lead {sign['lead']:,}"


def run_rows(scores: list[zoo.RunScore]) -> list[str]:
    rows = ["| recipe | seed | ground truth onset | FID rule | verdict | event (the catch, else "
            "the first) | latency (confirmed) | its first sign: step, tag, lead | other events | run |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for s in scores:
        split = "held out" if s.held_out else "tuning"
        shown = shown_event(s)
        others = [e for e in s.events if e is not shown]
        check = ""
        if s.recipe.group == "healthy":
            check = " ✓" if s.verdict != "collapsed" else " ✗"
        elif s.failed:
            check = (" ✓" if s.caught else " ✗ early" if s.early
                     else " ✗ late" if s.events else " ✗ missed")
        elif s.recipe.layer:
            check = " ✓" if s.layer_event and s.verdict != "collapsed" else " ✗"
        elif s.injected is not None:  # a fault the FID says did no harm: best said quietly
            check = " ✓" if s.verdict == "healthy" else " (no failure by the FID)"
        rows.append(
            f"| {s.recipe.name} | {s.seed} ({split}) | {truth_cell(s)} | {plain_number(s.fid_onset)} | "
            f"**{s.verdict}**{check} | {event_cell(shown)} | {signed_number(s.latency)}"
            f"{f' ({signed_number(s.confirmed_after)})' if s.confirmed_after is not None else ''} | "
            f"{sign_cell(shown)} | {'; '.join(event_cell(e) for e in others) or '—'} | "
            f"{s.status}, {(s.wall_s or 0) / 60:.0f} min |")
    return rows


def recipe_rows(scores: list[zoo.RunScore], summary: dict) -> list[str]:
    rows = ["| recipe | what | onset from | runs | failed (truth) | caught | recall | "
            "median latency | first signs | median lead |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for recipe in zoo.recipes():
        runs = [s for s in scores if s.recipe.name == recipe.name]
        if not runs or recipe.group == "healthy":
            continue
        r = summary["per_recipe"][recipe.name]
        recall = f"{r['caught'] / r['failed']:.0%}" if r["failed"] else "—"
        onset_from = ("fault step" if recipe.fault_at is not None
                      else f"FID, or FID vs {recipe.twin}" if recipe.twin else "FID")
        rows.append(f"| {recipe.name} | {recipe.what} | {onset_from} | {len(runs)} | "
                    f"{r['failed']} | {r['caught']} | {recall} | "
                    f"{signed_number(r['median_latency'])} | {r['signs']} of {r['caught']} | "
                    f"{plain_number(r['median_lead'])} |")
    return rows


def timeline_figure(scores: list[zoo.RunScore], path: Path) -> bool:
    """One row per run with a failure or a broken layer: its truth, every event, and the first
    sign of the event that caught it (else of its first event)."""
    rows = [s for s in scores if s.failed or s.layer_event]
    if not rows:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.28 * len(rows)), dpi=110)
    labels: set[str] = set()
    for y, s in enumerate(rows):
        ax.plot([0, s.steps or 0], [y, y], color="#dddddd", linewidth=1, zorder=0)
        truth = s.truth_onset if s.failed else s.injected  # a layer fault the FID shrugs off
        ax.plot(truth, y, "|", color="black", markersize=12, label="ground truth" if y == 0 else None)
        for event in s.events:
            color = "#d62728" if event["severity"] == "collapse" else "#ff7f0e"
            ax.plot(event["step"], y, "o", color=color, markersize=6, alpha=0.85)
        signs = (shown_event(s) or {}).get("first_signs") or []
        if signs:
            ax.plot(signs[0]["step"], y, "D", color="#e69f00", markersize=5,
                    markeredgecolor="black", markeredgewidth=0.5,
                    label="first sign" if "first sign" not in labels else None)
            labels.add("first sign")
    ax.plot([], [], "o", color="#d62728", label="collapse event")
    ax.plot([], [], "o", color="#ff7f0e", label="warning event")
    ax.set_yticks(range(len(rows)), [f"{s.recipe.name} s{s.seed}" for s in rows], fontsize=7)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Ground truth, first sign and detection of every failure and broken layer",
                 fontsize=9, loc="left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def report_figures(out: Path, folder: Path) -> list[str]:
    """The HTML report's overview figures over the zoo, as PNGs beside the doc."""
    from reports import figures, html

    return figures.save_figures(html.overview_figures(html.collect(out, progress=False)["runs"]),
                                folder, "zoo")


def write_doc(args, command: str) -> str:
    scores = zoo.score_zoo(args.out, args.steps)
    summary = zoo.summarize(scores)
    cost = zoo.detector_cost([args.out / s.name for s in scores])
    sessions = (read_json(args.out / SESSIONS) or {}).get("sessions", [])
    wall_h = sum(s["wall_s"] for s in sessions) / 3600
    seed_h: dict[int, float] = {}  # each seed's runs, their own wall times summed
    for s in scores:
        seed_h[s.seed] = seed_h.get(s.seed, 0.0) + (s.wall_s or 0) / 3600
    run_h = sum(seed_h.values())
    slowest_seed_h = max(seed_h.values(), default=0) / args.workers
    planned = sum(len(zoo.SEEDS) for _ in zoo.recipes())
    folder = args.doc.parent / "collapse"
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    if timeline_figure(scores, folder / "zoo-timeline.png"):
        figures.append(f"![Ground truth, first sign and detection]({folder.name}/zoo-timeline.png)")
    try:
        figures += report_figures(args.out, folder)
    except Exception as error:  # the report package failing must not cost the doc
        figures.append(f"_Report figures could not be rendered: {type(error).__name__}: {error}_")
    failures = summary["failures"]
    warned = summary["healthy_warnings"]
    warned_events = "; ".join(f"{s.name}: " + ", ".join(event_cell(e) for e in s.events)
                              for s in warned)
    t = Thresholds()
    step_s: dict[int, float] = {s.seed: s.step_s for s in scores
                                if s.recipe.name == "healthy-igan" and s.step_s}
    speeds = ", ".join(f"{v:.2f} s on seed {seed}" for seed, v in sorted(step_s.items())) or "—"
    per_seed = ", ".join(f"{h / args.workers:.2f} h (seed {seed})"
                         for seed, h in sorted(seed_h.items())) or "—"
    lines = [
        "# Collapse detection: the failure zoo", "",
        f"Generated by `{command}` (scripts/failure_zoo.py, recipes in `stabgan/zoo.py`); rerun "
        f"it to run what is missing, or with `--doc-only` to re-diagnose the stored runs with "
        f"the current detector. Wall time of the script on 2-core machines so far: "
        f"{wall_h:.2f} h over {len(sessions)} invocation(s) (budget: {BUDGET_H:g} h); "
        f"{len(scores)} of {planned} runs finished, {run_h:.2f} h of training in all (each "
        f"run's own wall time).", "",
        f"Every run: the seed's Table 1 settings (`--preset paper`: batch 64, lr G 1e-4, D 4e-4) "
        f"on mnist5k at 32×32, width 32, for {args.steps:,} "
        f"steps, `--probes all` (every layer's kernel, spectra and gradient readings) logged "
        f"every 10 steps, domain FID on 1,000 samples every {max(1, args.steps // 50)} steps "
        f"(the ground truth), {args.threads} torch thread(s) a run, {args.workers} run(s) at a "
        f"time. Runs keep going "
        f"after a collapse so that the FID says what happened. Thresholds were tuned on seed "
        f"{', '.join(map(str, zoo.TUNE_SEEDS))} and are reported unchanged on held-out seed "
        f"{', '.join(map(str, zoo.HELD_OUT_SEEDS))}. The seeds ran on different 2-core machines "
        f"and beside different loads: healthy-igan's median step took {speeds} "
        f"(`time/step_s`; each run's wall time is in the last column).", "",
        "Ground truth never comes from the detector's own readings: a run failed when its FID "
        f"rises ×{zoo.FID_RISE:g} over its best so far or a loss goes non-finite, or (a setting "
        f"that trains badly: FID vs twin) when its FID is ×{zoo.FID_RISE:g} that of its healthy "
        f"twin, the same arch and seed with default settings, at {zoo.TWIN_READINGS} FID steps "
        "in a row: a run that never learns never rises over its own best. The onset is "
        "the fault's step for a recipe with a fault (the cause: the FID sees it a reading "
        "later), else that first FID step. A fault the FID shrugs off is no failure (the "
        "detector should stay quiet, or for a layer fault name the layer). A failure is caught "
        f"when an event (warning or collapse) starts within {zoo.ONSET_TOLERANCE:.0%} of the "
        "run length of the truth; a setting that trains badly acts from step 0, so there any "
        "event from step 0 on is a catch, one before the FID shows the failure a catch ahead "
        "of it (a negative latency): the run had no healthy stretch to raise a false alarm "
        "in. The quality_regression rule reads the FID itself, so it never counts as a catch: "
        f"it is scored apart ({summary['quality_caught']} of {summary['failures']} failures "
        "raised one within the tolerance).", "",
        "Invocations (each one's wall time; `--seeds` and `--only` say what it ran):", "",
        *[f"- {s['start']}: {s['wall_s'] / 3600:.2f} h, `{s['command']}`" for s in sessions], "",
        "## Targets", "",
        "| target | measured |", "|---|---|",
        f"| 0 collapse verdicts over the healthy runs | {len(summary['healthy_collapsed'])} of "
        f"{summary['healthy']} ({', '.join(summary['healthy_collapsed']) or 'none'}); warnings: "
        f"{len(warned)}{f' ({warned_events})' if warned else ''} |",
        f"| (reported beside the targets) no collapse verdict where a fault or setting did not "
        f"make the run fail | {len(summary['unfailed_collapsed'])} of {summary['unfailed']} "
        f"collapsed ({', '.join(summary['unfailed_collapsed']) or 'none'}) |",
        f"| every failure caught, onset within {zoo.ONSET_TOLERANCE:.0%} | {summary['caught']} "
        f"of {failures} (held out: {summary['caught_held_out']} of "
        f"{summary['failures_held_out']}); median latency "
        f"{signed_number(summary['median_latency'])} steps (onset), confirmed "
        f"{signed_number(summary['median_confirmed_after'])} steps after the truth |",
        f"| a first sign for ≥ 80 % of caught failures | {summary['signs']} of "
        f"{summary['caught']} ({summary['signs_ahead']} ahead of the onset) |",
        "| detector cost negligible | "
        + (f"{cost['median_ms']:.2f} ms CPU per logged step (median; p99 {cost['p99_ms']:.2f} ms, "
           f"max {cost['max_ms']:.2f} ms) with every tag tracked ({cost['tags_median']:.0f} tags "
           f"a step, up to {cost['tags_max']}), over {cost['updates']:,} logged steps |"
           if cost else "no runs yet |"),
        f"| the zoo in ≤ {BUDGET_H:g} h wall, resumable | {'✓' if wall_h <= BUDGET_H else '✗'} "
        f"{wall_h:.2f} h over {len(sessions)} invocation(s) (resumable: yes); one seed of "
        f"every recipe: {per_seed} at {args.workers} run(s) at a time (its runs' wall time / "
        f"{args.workers}) |", "",
        "## Budget", "",
        f"The zoo {'fits' if wall_h <= BUDGET_H else 'does not fit'} its {BUDGET_H:g}-hour "
        f"budget on one 2-core machine; one seed of every recipe "
        f"{'does' if slowest_seed_h <= BUDGET_H else 'does not either'}"
        f" (the Targets row). What it costs is the WGAN-GP "
        "step: `stabgan bench trainer --arch igan --arch sagan` puts the trainer's step within "
        "the noise of an independent minimal loop of the same models (×0.96 igan, ×1.04 "
        "SAGAN, one thread, median of 5), and a profile of the step (torch.profiler, one "
        "thread) puts 80 % of it in convolutions, forward and backward: the critic's five "
        "updates a step, each with the penalty's double backward, and the generator's. Probes "
        "and detector add 3–4 % (`stabgan bench monitor`). "
        "What would fit the budget changes the experiment: fewer seeds (no held-out seed, "
        "or no healthy runs on three seeds), shorter runs (the issue asks for 2,000 "
        "steps), or a narrower model (width 16 was tried and rejected, below). So the "
        "zoo runs a seed an invocation (`--seeds N`), each inside the budget, and resumes "
        "across sessions.", "",
        "## Recipes", "", *recipe_rows(scores, summary), "",
        "## Every run", "", *run_rows(scores), "",
        "## Figures", "", *[f"{f}\n" for f in figures], "",
        "## How the detector decides", "",
        f"Every logged tag but `time/` and `weights/` has a band that follows the run: the median "
        f"and MAD of its latest {t.baseline_points} in-band points (from its first "
        f"{t.baseline_min_points} on: the window fills as the run goes), each joining "
        f"{t.baseline_lag} logged points after it was read (ln x for positive magnitudes). A "
        f"point is out of band when it is {t.robust_z:g} robust standard deviations away *and* "
        f"×{t.band_factor:g} away (a tag of any sign: by its typical magnitude), or when a "
        f"rule finds it out of band; out-of-band points never join, so a failure after the "
        f"transient is judged against the run as it was just before, and the transient, "
        f"followed point by point, raises nothing. An excursion that lasts "
        f"{t.rebase_points} points without a rule minding it is the run's new level. The rules "
        f"(divergence, gp_blowup, mode_collapse, kernel_collapse, spectral_explosion) grade a "
        f"point by a size threshold with a meaning of its own on top of that band, and need "
        f"{t.sustain_points} such points (one in-band gap allowed); `nan` fires at once.", "",
        f"First signs: each event lists the tags that were out of their band at its onset and "
        f"since a step at or before it ({t.sign_points} out-of-band points at least), earliest "
        f"first, with step, lead, size and layer. A degenerate layer (kernel_collapse, "
        f"spectral_explosion) or a penalty that does not hold (gp_blowup) is a collapse of the "
        f"run only when the samples show it: with coverage and diversity logged and all in "
        f"band at its confirmation, it is a warning about that layer or penalty. A critic "
        f"excursion (divergence, gp_blowup) the samples felt is a warning before it is "
        f"sustained: {t.corroborate_points} of {t.corroborate_window} logged points out of band "
        f"and past the warning threshold, with a coverage or diversity reading at warning "
        f"level among them.", "",
        "## Tuning", "",
        "Three rounds, each tuned on some seeds and reported on another.", "",
        "- **Round 1** (width 32, the quick preset's, 28 runs; kept in the repository's history "
        "at commit c9f29b4): tuned on the seed-0 runs and synthetic series "
        "(tests/test_collapse.py), reported on held-out seed 1. Healthy: 0 collapse verdicts of "
        "10, no warning. Failures caught: 11 of 12, 5 of 6 on seed 1. The miss, "
        "`lr-raise-dcgan` seed 1, was a spike: FID 14.8 → 113 → 46 → 18 within 400 steps, "
        "coverage 10 → 1 → 7 → 9 classes, `wgan/distance` 3.8 → 18 → −33 → 1.5, never "
        "sustained for 5 points. And `gp-weak-0.1` was called collapsed on both seeds "
        "(‖∇D(x̂)‖ ~50 from step 220 on) while its FID said no failure.",
        "- **Round 2**, because of seed 1 (tuning data from then on): a gradient penalty "
        "that does not hold while coverage and diversity stay in band is a warning about the "
        "penalty, graded like a degenerate layer; a critic excursion the samples felt is a "
        "warning before it is sustained (corroboration: `corroborate_points` of "
        "`corroborate_window` points out of band and past the warning threshold, with a "
        "sample reading at warning level among them; 2 points raised false alarms on the "
        "synthetic healthy series, 3 none); and a first sign of coverage or pairwise diversity "
        "is sized against their best so far (a g-overpowers sign read `coverage/modes 2 → 2`). "
        "Reported on held-out seed 2 (commit 874060b): healthy 0 of 5 collapsed, no warning; "
        "failures caught 16 of 19, 4 of 7 on seed 2. The misses: `critic-bn` (FID ×3 its "
        "twin's from step 80, the first event at 220, the first step any band existed); "
        "`g-overpowers`, a run that never learned (coverage at most 4 classes, FID 64–145 "
        "against its twin's 15–46), warned at 280 while its twin rule fired at 600; "
        "`gp-weak-0.1`, warned about its penalty at 220 and its coverage at 720, its FID rule "
        "at 1,080 on one reading (27 → 82 → 38). The last two were scored \"early\".",
        "- Between rounds 2 and 3, a width-16 zoo, to fit three seeds in the budget, was "
        "stopped after 18 runs: at that width the runs were still learning when the faults "
        "hit (coverage reached 10 classes only at step 1,200, FID 46 at step 960 against 18 "
        "at width 32), and a generator collapsed to 4 outputs scored FID ~50, under ×3 its "
        "best: with these features a collapsed generator scores about 50, so the FID rule "
        "cannot see a collapse while the best FID is above ~17. Width 32 it is.",
        "- **Round 3**, because of seed 2 (tuning data now): a band exists from "
        "`baseline_min_points` (10) points and its window fills up to `baseline_points` (20), "
        "so a penalty off from the first step is flagged at step 120 instead of 220 (5 points "
        "made `g-overpowers` seed 1 raise a divergence warning at step 70, in the transient); "
        "and a setting's run is scored from step 0 (above). Seeds 0–2 under this detector: "
        "19 of 19 failures caught, healthy runs without a warning. Held-out seed "
        f"{', '.join(map(str, zoo.HELD_OUT_SEEDS))} was run after that (commit e93fa25) and is "
        "reported as it came out.", "",
        "Earlier tuning, kept: the band (`baseline_points` 20, `baseline_lag` 10, "
        "`band_factor` 2, `rebase_points` 30) replaces the fixed baseline of logged points "
        "2–11, which sat on the early transient (`wgan/distance` ~30–45 there, ~3 from step "
        "1,000 on). With 10 points and points leaving the band at z ≥ 4 alone, noise narrowed "
        "the band: the ×2 size condition stops that. `kernel_drop_warn` 0.2: saturated softmax "
        "taps took the entropy of `g.inv0` to 10.6 % of its band. `min_change` 1e-3: a fraction "
        "of dead taps of 1e-6 leaving a band at 0 was listed as a first sign. The schedule-bug "
        "recipe raises the learning rates ×100: ×10 at 40 % made the iGAN *better*.", "",
        "## Thresholds (defaults, `probes.collapse.Thresholds`)", "",
        "The tags the divergence, penalty and nan rules judge are the run's objective's "
        "(`probes/objectives.py`; every zoo run is WGAN-GP: `wgan/distance` and `loss/critic`; "
        "`gp/norm_mean`, `gp/norm_p95`, `gp/norm_p50` against 1; `wgan/*` and `gp/*` for nan).",
        "",
        "| field | default |", "|---|---|",
        *[f"| {k} | {', '.join(v) if isinstance(v, (list, tuple)) else v} |"
          for k, v in t.to_dict().items()], ""]
    text = "\n".join(lines)
    previous = args.doc.read_text() if args.doc.exists() else ""
    natural = previous.partition(NATURAL_HEADING)[1:]
    args.doc.write_text(text + ("\n" + "".join(natural) if natural[0] else ""))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # finished runs are the zoo's record, kept in the repository (see .gitignore for what is not)
    parser.add_argument("--out", type=Path, default=ROOT / "studies" / "zoo")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "collapse.md")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="runs at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--only", default="", help="comma-separated recipe names or groups")
    parser.add_argument("--seeds", default=",".join(map(str, zoo.SEEDS)),
                        help="comma-separated seeds to run (the doc covers every run found)")
    parser.add_argument("--doc-only", action="store_true", help="run nothing; rewrite the doc")
    args = parser.parse_args(argv)
    command = command_line(args)
    code = 0
    if not args.doc_only:
        code, stopped = run_recorded([zoo.zoo_sweep(
            args.out, args.steps, args.workers, tuple(n for n in args.only.split(",") if n),
            seeds=tuple(int(s) for s in args.seeds.split(",")),
            base={"threads": args.threads})], args.out, command)
        if stopped:
            return code
    for _, _, run_dir in zoo.found_runs(args.out, args.steps):
        diagnose_run(run_dir)
    write_doc(args, command)
    print(f"wrote {args.doc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
