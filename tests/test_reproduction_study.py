"""scripts/reproduction_study.py --doc-only (stabgan.study) on hand-made run directories: no training.

The fixture writes run directories as the trainer leaves them (config.json, metrics.jsonl,
diagnosis.json, summary.json, sample grids) for the points the study's own sweeps plan, with
fates chosen so that every section has something to say: BatchNorm in the critic collapses,
its controls stay healthy, two layers with softmax-normalized kernels collapse in the long
runs, one mechanism run is still going and some settings have not started.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from conftest import load_script
from probes.collapse import Thresholds
from probes.rundir.reader import RunDir
from stabgan.config import resolve_config
from stabgan.study.claims import Finding, claim_flip, claim_norm, claim_two_layers
from stabgan.study.doc import conclusion
from stabgan.study.mechanism import mechanism_answer
from stabgan.study.records import Point, RunRecord
from stabgan.study.sweeps import Setting, StudyOptions, reproduction_sweeps
from stabgan.sweep import expand, point_name, run_ended

LONG, SHORT = 50, 40  # steps of the fixture's seed-sweep and mechanism/archs runs
T0 = 1_700_000_000.0  # start of the fake study
STACKED = {"inv_stack": "successive", "inv_block": "plain"}


study = load_script("reproduction_study")


def _collapse_event(onset: int) -> dict:
    """A critic-divergence collapse as the detector writes it."""
    return {"kind": "divergence", "step": onset, "severity": "collapse",
            "message": f"collapsed at step {onset}: critic divergence (wgan/distance 40 → 556 "
                       f"within 10 steps, gp/norm_p95 5.89); first sign at step {onset - 5}: "
                       "wgan/distance 40 → 556",
            "evidence": {"tag": "wgan/distance", "baseline": 40.0, "value": 556.0,
                         "detected_step": onset + 10},
            "first_signs": [
                {"tag": "wgan/distance", "layer": None, "step": onset - 5, "lead": 5,
                 "baseline": 40.0, "value": 556.0, "factor": None, "z": 44.0},
                {"tag": "update/d.body.2", "layer": "d.body.2", "step": onset - 5, "lead": 5,
                 "baseline": 0.0139, "value": 0.00085, "factor": 0.0612, "z": 22.0}]}


def _write_run(run_dir: Path, config: dict, onset: int | None, fid_end: float, start: float,
               finished: bool = True) -> None:
    """A run directory as the trainer leaves it (finished: with summary.json, started at start
    and ended 90 s later); onset None is a healthy run, else a collapse at that step."""
    steps = config["steps"]
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(
        {"config": {**config, "fid_every": 10, "threads": 1}, "versions": {}, "command": []}))
    records = [{"step": s, "loss/critic": -1.0 if onset is None or s < onset else -400.0,
                "wgan/distance": 1.0 if onset is None or s < onset else 500.0,
                "fid/domain": fid_end + (steps - s) * 2} for s in range(5, steps + 1, 5)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "samples").mkdir()
    for step in range(0, steps + 1, 10):
        Image.new("L", (16, 16), step).save(run_dir / "samples" / f"step_{step:06d}.png")
    verdict = "healthy" if onset is None else "collapsed"
    (run_dir / "diagnosis.json").write_text(json.dumps(
        {"verdict": verdict, "onset_step": onset, "last_step": steps,
         "events": [] if onset is None else [_collapse_event(onset)]}))
    if finished:
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "steps": steps, "target_steps": steps, "wall_s": 60.0,
             "step_s_median": 0.4, "verdict": verdict, "onset_step": onset,
             "started_at": _iso(start), "ended_at": _iso(start + 90)}))


def _iso(epoch: float) -> str:
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def _fate(sweep: str, c: dict) -> tuple[str, int | None, float] | None:
    """(state, onset, min FID) of a planned run in the fixture; None: not started."""
    seed = c["seed"]
    if sweep in ("successive", "table2") or (sweep == "archs" and seed == 2):
        return None
    if sweep == "mechanism":
        setting = Setting(c["inv_where"], c["inv_stack"], c["inv_layers"], c["norm"])
        if setting.inv_stack == "successive":
            if setting.norm == "none" or seed == 2:
                return None
            return ("running" if seed == 1 else "finished"), 20, 300.0
        bad = setting.inv_where != "g" and setting.norm == "batch"
        onset = (15 if setting.inv_layers == 2 else 25) if bad else None
        return "finished", onset, (300.0 if bad else 40.0) + seed
    if sweep == "norms" and c["norm"] == "softmax" and seed < 2:
        return "finished", 30, 90.0 + seed
    return "finished", None, 35.0 + seed + (20 if c["arch"] == "igan" and sweep == "archs" else 0)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """Every sweep's planned points, resolved as the sweep resolves them, written as _fate says;
    runs start two by two every 100 s."""
    out = tmp_path_factory.mktemp("study")
    started = 0
    for sweep, spec in reproduction_sweeps(StudyOptions(out=out)).items():
        for values in expand(spec.grid, spec.points):
            config = resolve_config(spec.preset or "quick", **spec.base, **values).to_dict()
            fate = _fate(sweep, config)
            if fate is None:
                continue
            state, onset, fid = fate
            config["steps"] = LONG if spec.preset == "paper-sagan" and sweep != "mechanism" else SHORT
            _write_run(spec.out / point_name(values), config, onset, fid,
                       start=T0 + 100 * (started // 2), finished=state == "finished")
            started += 1
    (out / "faithful" / ".sweep").mkdir()
    (out / "faithful" / ".sweep" / "sweep.json").write_text(json.dumps({"executor": "local"}))
    return out


@pytest.fixture(scope="module")
def doc(study_dir) -> dict:
    path = study_dir.parent / "docs" / "reproduction.md"
    assert study.main(["--doc-only", "--out", str(study_dir), "--doc", str(path)]) == 0
    return {"path": path, "text": path.read_text()}


def _section(text: str, title: str, level: str = "##") -> str:
    start = text.index(f"{level} {title}")
    end = text.find(f"\n{level} ", start + 1)
    return text[start:end if end >= 0 else None]


def _row(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_the_answer_names_batchnorm_in_the_critic_and_not_depth(doc):
    answer = _section(doc["text"], "The answer")
    assert "**BatchNorm in the critic's kernel generation makes the difference.**" in answer
    assert ("BatchNorm in the critic's kernel generation (M-BN-D, supported): 12 of 12 runs with "
            "BatchNorm in the critic's kernel generation were unstable or collapsed vs 0 of 12 "
            "with the same settings without it (rates 1.00 vs 0.00).") in answer
    assert "BatchNorm in the generator's kernel generation alone (M-BN-G, inconclusive): 0 of 6" \
        in answer
    assert "**Depth does not matter beyond BatchNorm in the critic.**" in answer
    assert ("With BatchNorm in the critic (M-2L-BN, contradicted): 6 of 6 runs with two layers "
            "were unstable or collapsed vs 6 of 6 with one layer (rates 1.00 vs 1.00), collapsing "
            "at a median step of 15 vs 25; runs with two layers were not less stable.") in answer
    # the long runs in the seed's layout answer first, with their own bad runs
    assert "\n**2 of 15 seed-study runs went bad** (50 steps): " in answer
    assert "`norms/norm-softmax_seed-0` collapsed at step 30 (divergence)" in answer


def test_mechanism_table_pools_the_seed_sweeps_and_lists_unfinished_settings(doc):
    mech = _section(doc["text"], "Mechanism: batch statistics in the critic")
    assert ("`mechanism`: 28 finished runs counted (33 planned); not counted, unfinished: "
            "`inv_layers-2_inv_where-both_inv_stack-successive_inv_block-plain_norm-batch_seed-1` "
            "(no summary.json); 4 not started.") in mech
    assert _row(mech, "| both | stages | 2 | batch |") == (
        "| both | stages | 2 | batch | mechanism (40) | 3 of 3 | 0 / 0 / 3 | 15, 15, 15 | "
        "divergence | 301.0 ± 1.0 | – | 400 |")
    # involution in G only: the seed sweeps' runs, with their steps
    assert _row(mech, "| g | stages | 2 | batch |").startswith(
        "| g | stages | 2 | batch | norms (50) | 3 of 3 | 3 / 0 / 0 |")
    assert _row(mech, "| g | stages | 1 | none |").startswith(
        "| g | stages | 1 | none | faithful (50) |")
    assert _row(mech, "| both | successive | 2 | batch |").startswith(
        "| both | successive | 2 | batch | mechanism (40) | 1 of 3 | 0 / 0 / 1 |")
    assert "| both | successive | 2 | none |" not in mech
    assert ("Not finished yet, not counted: involution in G and D, successive, 2 layers, norm "
            "none (mechanism: 0 of 3 finished); involution in G, successive, 1 layer, norm none "
            "(successive: 0 of 3 finished); involution in G, successive, 2 layers, norm none "
            "(successive: 0 of 3 finished).") in mech


def test_the_ablation_switches_one_option_at_a_time(doc):
    ablation = _section(doc["text"], "Ablation: one option at a time", "###")
    assert _row(ablation, "| — |").endswith("| 1.00 (3/3) | 15, 15, 15 | 301.0 ± 1.0 | — |")
    rows = [line for line in ablation.splitlines() if line.startswith("| ")][1:]
    effects = {cells[1]: cells[-1] for cells in (row.strip("| ").split(" | ") for row in rows)}
    assert effects == {"the base": "—",
                       "both → g": "removes the instability",
                       "both → d": "keeps the instability",
                       "batch → none": "removes the instability",
                       "2 → 1": "keeps the instability",
                       "stages → successive": "keeps the instability (fewer than 3 runs on a side)"}
    assert "| where | both → g | involution in G, stages, 2 layers, norm batch | norms (50) |" \
        in ablation


def test_bad_settings_show_evidence_first_signs_and_the_fig_7_8_analogue(doc):
    text = doc["text"]
    bad = _section(text, "Unstable and collapsed settings (the seed's Fig. 7 and 8)", "###")
    assert bad.count("**involution in") == 5  # both/d x 1/2 layers with batch, and stacked
    assert ("- `mechanism/inv_layers-2_inv_where-both_norm-batch_seed-1` — collapsed: collapsed "
            "at step 15: critic divergence (wgan/distance 40 → 556 within 10 steps, gp/norm_p95 "
            "5.89); first sign at step 10: wgan/distance 40 → 556; confirmed at step 25; first "
            "signs: step 10 wgan/distance 40 → 556; step 10 update/d.body.2 ÷16.3 [d.body.2]") \
        in bad
    stem = "onset-mechanism-both-stages-2-batch"
    # the samples before and after the onset at step 15, and the last grid
    assert (f"Samples of `inv_layers-2_inv_where-both_norm-batch_seed-0`, which went bad at step "
            f"15: ![step 10, before](reproduction/{stem}-step_000010.png) ![step 20, after]"
            f"(reproduction/{stem}-step_000020.png) ![step 40, last](reproduction/"
            f"{stem}-step_000040.png)") in bad
    assert f"![wgan/distance and loss/critic, onsets dashed](reproduction/{stem}-curves.png)" in bad
    # the long runs' bad setting gets its figure in the seed study's section
    long = _section(text, "The seed-faithful study (long runs)")
    assert "(reproduction/onset-norms-2-softmax-curves.png)" in long


def test_every_claim_gets_a_written_conclusion(doc):
    conclusions = _section(doc["text"], "Conclusions")
    bullets = [line for line in conclusions.splitlines() if line.startswith("- **")]
    assert len(bullets) == 15
    for bullet in bullets:
        assert re.match(r"- \*\*[\w-]+\*\* — \*\*(Supported|Contradicted|Inconclusive)\.\*\* \S",
                        bullet), bullet
    by_id = {b.split("**")[1]: b for b in bullets}
    assert by_id["L-softmax"].startswith("- **L-softmax** — **Supported.** With two layers, 2 of "
                                         "3 softmax-normalized runs were unstable or collapsed")
    assert by_id["M-BN-D"].startswith("- **M-BN-D** — **Supported.**")
    assert by_id["M-2L-BN"].startswith("- **M-2L-BN** — **Contradicted.**")
    # inconclusive for lack of any instability: the note on training length uses the claim's runs
    assert "Each run trained 50 steps" in by_id["L-2L"]
    assert "Each run trained" not in by_id["M-2L"]  # its runs trained 40 and 50 steps
    assert by_id["T2-K"].startswith("- **T2-K** — **Inconclusive.** Not measured")
    assert "igan minus dcgan is +20.0" in by_id["A-FID"]


def test_no_sweep_without_runs_gets_a_table(doc):
    text = doc["text"]
    table2 = _section(text, "Table 2")
    assert "|" not in table2
    assert ("_No finished run yet: `table2` trains 21 runs (the seed's seven (K, G, R) cases at "
            "width 64; seeds 0, 1, 2; 2,000 steps each)") in table2
    assert f"--doc {doc['path']} --only table2` runs them." in table2
    seed = _section(text, "The seed-faithful study (long runs)")
    assert "- `successive`: _No finished run yet: `successive` trains 6 runs" in seed
    assert "| successive |" not in seed
    assert "Not started" not in text


def test_limits_and_the_command_come_from_the_runs(doc, study_dir):
    text = doc["text"]
    limits = _section(text, "Limits of this study")
    assert "Each run trained 40, 50 steps" in limits and "`mnist5k` at 32×32 pixels" in limits
    assert "faithful 3, norms 3, mechanism 3, archs 2" in limits
    assert "`stabgan sweep --preset paper-sagan" in limits  # the seed's full scale, on a GPU
    assert (f"`python scripts/reproduction_study.py --out {study_dir} --seed-steps 50 --steps 40 "
            f"--doc {doc['path']}`") in text
    timing = _section(text, "Time taken")
    assert _row(timing, "| faithful |") == "| faithful | 6 | 5 min | 6 min | 400 |"
    assert "| table2 |" not in timing
    assert f"{os.cpu_count()} cores; local executor, at most 2 runs at once" in timing


def test_figures_are_written_and_referenced(doc):
    folder = doc["path"].parent / "reproduction"
    referenced = re.findall(r"!\[[^\]]+\]\(reproduction/([^)]+\.png)\)", doc["text"])
    written = sorted(p.name for p in folder.glob("*.png"))
    assert sorted(set(referenced)) == written
    assert "faithful-collapse-rate-by-inv-layers-norm.png" in written
    assert "archs-verdicts-by-arch.png" in written
    for name in written:
        assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_empty_study_gives_a_doc_of_lines(tmp_path):
    path = tmp_path / "doc.md"
    stale = tmp_path / "doc" / "onset-old-curves.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    assert study.main(["--doc-only", "--out", str(tmp_path / "none"), "--doc", str(path)]) == 0
    text = path.read_text()
    # no table but the claims' (each judged, if only as not measured), not even an empty one
    assert [line for line in text.splitlines() if line.startswith("|---")] == ["|---" * 5 + "|"]
    assert text.count("_No finished run yet: ") == 6
    assert "No seed-faithful run has finished yet" in text
    assert "No mechanism setting has finished runs on both sides" in text
    assert "No run has finished yet" in text
    assert "![" not in text and not stale.exists()


def _point(key: tuple, bad: int, fids: list) -> Point:
    """A grid point of finished runs, the first `bad` of them collapsed, with these min FIDs."""
    runs = [RunRecord(
        name=f"{key}-{i}", config={}, status="completed",
        verdict="collapsed" if i < bad else "healthy", onset=None, kinds=[], fid_min=fid,
        fid_tag="fid/domain" if fid is not None else None, coverage_last=None,
        coverage_best=None, ms_per_step=None, steps=400, wall_s=None, started=None, ended=None)
        for i, fid in enumerate(fids)]
    return Point(key, runs)


def test_two_layers_without_any_instability_are_inconclusive():
    def point(layers, bad):
        return _point((layers, "none"), bad, [None] * 3)

    assert claim_two_layers({(1, "none"): point(1, 0), (2, "none"): point(2, 0)}).verdict \
        == "inconclusive"
    assert claim_two_layers({(1, "none"): point(1, 1), (2, "none"): point(2, 1)}).verdict \
        == "contradicted"
    assert claim_two_layers({(1, "none"): point(1, 0), (2, "none"): point(2, 1)}).verdict \
        == "supported"


def test_a_flip_compares_only_settings_run_both_ways():
    # softmax ran only with two layers: it is not pooled into the two-layer side, which would
    # then weigh settings the one-layer side never ran
    one_side = {(1, "none"): _point((1, "none"), 0, [None] * 3),
                (2, "none"): _point((2, "none"), 0, [None] * 3),
                (2, "softmax"): _point((2, "softmax"), 3, [None] * 3)}
    finding = claim_two_layers(one_side)
    assert finding.verdict == "inconclusive"
    assert "with two layers 0.00 (0/3)" in finding.numbers
    # a control shared by two treated settings counts once
    g, d, both = (Setting(w, "stages", 1, "none") for w in ("g", "d", "both"))
    points = {g: _point(g, 0, [None] * 3), d: _point(d, 3, [None] * 3),
              both: _point(both, 3, [None] * 3)}
    finding = claim_flip(points, lambda s: s._replace(inv_where="g") if s.inv_where != "g"
                         else None, "involution in the critic", "involution in G only")
    assert finding.verdict == "supported"
    assert finding.numbers == ("instability rate with involution in the critic 1.00 (6/6), with "
                               "involution in G only 0.00 (0/3)")


def test_no_ingredient_named_when_none_is_supported():
    unmeasured = Finding("inconclusive", "n", "Not measured.", measured=False)
    calm = Finding("inconclusive", "n", "0 of 6 vs 0 of 6; no run became unstable.")
    found = {"M-BN-D": calm, "M-BN-G": calm, "M-INV-D": unmeasured, "M-2L-BN": unmeasured,
             "M-2L": calm}
    answer = mechanism_answer(found)
    assert answer.startswith("**No ingredient is shown to make the difference yet.**")
    assert "**Whether depth matters beyond BatchNorm in the critic is not settled.**" in answer
    assert mechanism_answer({cid: unmeasured for cid in found}).startswith("No mechanism setting")


def test_a_normalization_is_judged_at_two_layers():
    def point(layers, norm, bad, fids):
        return _point((layers, norm), bad, fids)

    calm = {(2, "none"): point(2, "none", 0, [30, 32, 34]),
            (2, "spectral"): point(2, "spectral", 0, [31, 33, 35]),
            (1, "none"): point(1, "none", 0, [30, 31, 32]),
            (1, "spectral"): point(1, "spectral", 0, [40, 41, 42])}
    finding = claim_norm(calm, "spectral")
    assert finding.verdict == "supported" and "made training worse" in finding.reading
    calm[(1, "spectral")] = point(1, "spectral", 0, [30, 31, 33])
    finding = claim_norm(calm, "spectral")
    assert finding.verdict == "inconclusive" and "no instability to fix" in finding.reading
    unstable = {**calm, (2, "none"): point(2, "none", 3, [90, 95, 99]),
                (2, "spectral"): point(2, "spectral", 3, [90, 91, 99])}
    finding = claim_norm(unstable, "spectral")
    assert finding.verdict == "supported" and "did not make two layers more stable" in finding.reading
    assert claim_norm({}, "spectral").measured is False


def test_inconclusive_measured_claims_say_how_short_the_runs_were():
    finding = Finding("inconclusive", "n", "Rates differ by less than 1/3.")
    text = conclusion("L-2L", finding, 400)
    assert "400 steps, 125× fewer than the seed's 50,000 on CelebA 64×64" in text


def test_rediagnose_judges_every_finished_run_with_todays_detector(study_dir, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study_dir, copy)
    before = {p: p.read_text() for p in copy.glob("*/*/diagnosis.json")}
    assert study.main(["--doc-only", "--rediagnose", "--out", str(copy),
                       "--doc", str(tmp_path / "doc.md")]) == 0
    judged = 0
    for path, text in before.items():
        now = json.loads(path.read_text())
        if run_ended(path.parent):
            judged += 1
            config = RunDir(path.parent).config  # today's thresholds, sized to the run
            today = Thresholds().for_run(config["steps"], config["log_every"]).to_dict()
            today = json.loads(json.dumps(today))  # tuples as JSON gives them back
            assert now["thresholds"] == today and now["last_step"] is not None, path
        else:  # a run still being written keeps what its own detector said
            assert path.read_text() == text
    assert judged > 0
