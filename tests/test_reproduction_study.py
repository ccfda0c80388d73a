"""scripts/reproduction_study.py --doc-only (stabgan.study) on hand-made run directories: no training."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from stabgan.study.claims import Finding, claim_norm, claim_two_layers
from stabgan.study.doc import conclusion
from stabgan.study.records import Point, RunRecord

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduction_study.py"
STEPS = 50
T0 = 1_700_000_000.0  # start of the fake study (file mtimes)
COLLAPSED = {(2, "none", 0), (2, "none", 1), (2, "batch", 0)}  # (inv_layers, norm, seed)


def _load_script():
    spec = importlib.util.spec_from_file_location("reproduction_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


study = _load_script()


def _write_run(run_dir: Path, config: dict, verdict: str, fid_end: float,
               start: float | None = None, finished: bool = True) -> None:
    """A run directory as the trainer leaves it (finished: with summary.json, started at start
    and ended 90 s later)."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(
        {"config": {"dataset": "mnist5k", "image_size": 32, "steps": STEPS, "width": 32,
                    "fid_every": 10, "fid_samples": 1000, "threads": 1, **config},
         "versions": {}, "command": []}))
    records = [{"step": s, "loss/critic": -1.0, "wgan/distance": 1.0,
                "fid/domain": fid_end + (STEPS - s) * 2} for s in range(10, STEPS + 1, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    onset = 30 if verdict == "collapsed" else None
    events = [{"kind": "divergence", "severity": "collapse", "step": onset}] if onset else []
    (run_dir / "diagnosis.json").write_text(json.dumps(
        {"verdict": verdict, "onset_step": onset, "events": events, "last_step": STEPS}))
    if finished:
        (run_dir / "summary.json").write_text(json.dumps(
            {"status": "completed", "steps": STEPS, "target_steps": STEPS, "wall_s": 60.0,
             "step_s_median": 0.4, "verdict": verdict, "onset_step": onset}))
        os.utime(run_dir / "metrics.jsonl", (start + 90, start + 90))  # the run's last write
    os.utime(run_dir / "config.json", (start, start))


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    """Stability (1 and 2 layers × none, batch × 3 seeds; 3 two-layer runs collapsed; one run
    still going) and archs (× 2 seeds); table2 not started. Runs go two at a time."""
    out = tmp_path_factory.mktemp("runs")
    jobs = []
    for layers in (1, 2):
        for norm in ("none", "batch"):
            for seed in range(3):
                verdict = "collapsed" if (layers, norm, seed) in COLLAPSED else "healthy"
                name = f"inv_layers-{layers}_norm-{norm}_seed-{seed}"
                jobs.append((out / "stability" / name,
                             {"arch": "igan", "inv_layers": layers, "norm": norm, "seed": seed,
                              "kernel_size": 3, "groups": 4, "reduction": 2}, verdict,
                             40.0 + seed + (5 if norm == "batch" else 0)))
    for arch in ("dcgan", "sagan", "igan"):
        for seed in range(2):
            jobs.append((out / "archs" / f"arch-{arch}_seed-{seed}",
                         {"arch": arch, "inv_layers": 1, "norm": "none", "seed": seed},
                         "healthy", 30.0 + seed + (20 if arch == "igan" else 0)))
    for i, (run_dir, config, verdict, fid) in enumerate(jobs):
        _write_run(run_dir, config, verdict, fid, start=T0 + 100 * (i // 2))
    _write_run(out / "stability" / "inv_layers-1_norm-spectral_seed-0",
               {"arch": "igan", "inv_layers": 1, "norm": "spectral", "seed": 0},
               "healthy", 40.0, start=T0 + 100 * len(jobs), finished=False)
    # the seed study (a sibling folder): 2 of 3 two-layer runs collapsed, none of the one-layer
    for i, (layers, seed) in enumerate((l, s) for l in (1, 2) for s in range(3)):
        run_dir = out / "seed-study" / "faithful" / f"inv_layers-{layers}_seed-{seed}"
        collapsed = layers == 2 and seed < 2
        _write_run(run_dir, {"arch": "igan", "inv_layers": layers, "norm": "none", "seed": seed,
                             "inv_stack": "stages", "spectral_norm": "both"},
                   "collapsed" if collapsed else "healthy", 35.0 + seed,
                   start=T0 + 100 * (9 + i // 2))
        (run_dir / "samples").mkdir()
        for step in (0, 20, 50):
            Image.new("L", (16, 16), step).save(run_dir / "samples" / f"step_{step:06d}.png")
    (out / "stability" / ".sweep").mkdir()
    (out / "stability" / ".sweep" / "sweep.json").write_text(json.dumps({"executor": "local"}))
    return out


@pytest.fixture(scope="module")
def doc(study_dir) -> dict:
    path = study_dir.parent / "docs" / "reproduction.md"
    assert study.main(["--doc-only", "--out", str(study_dir), "--doc", str(path),
                       "--seed-out", str(study_dir / "seed-study")]) == 0
    return {"path": path, "text": path.read_text()}


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else None]


def test_every_claim_gets_a_written_conclusion(doc):
    conclusions = _section(doc["text"], "Conclusions")
    assert "to be written" not in doc["text"]
    bullets = [line for line in conclusions.splitlines() if line.startswith("- **")]
    assert len(bullets) == 14
    for bullet in bullets:
        assert re.match(r"- \*\*[\w-]+\*\* — \*\*(Supported|Contradicted|Inconclusive)\.\*\* \S",
                        bullet), bullet
    assert ("**S-2L** — **Supported.** 3 of 6 two-layer runs were unstable or collapsed vs "
            "0 of 6 one-layer runs (rates 0.50 vs 0.00)") in conclusions
    assert "**T2-K** — **Inconclusive.** Not measured" in conclusions  # table2 not started
    batch = next(b for b in bullets if b.startswith("- **S-batch**"))
    assert batch == ("- **S-batch** — **Contradicted.** With two layers, 1 of 3 batch-normalized "
                     "runs were unstable or collapsed vs 2 of 3 without normalization: batch "
                     "normalization removed part of the instability.")
    arch = next(b for b in bullets if b.startswith("- **A-FID**"))
    assert arch.startswith("- **A-FID** — **Contradicted.**") and "igan minus dcgan is +20.0" in arch


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


def test_two_layers_are_compared_over_the_norms_run_at_both_depths():
    # the seed study's norm variants exist only with two layers: they are not pooled into the
    # two-layer side, which would then weigh settings the one-layer side never ran
    one_side = {(1, "none"): _point((1, "none"), 0, [None] * 3),
                (2, "none"): _point((2, "none"), 0, [None] * 3),
                (2, "softmax"): _point((2, "softmax"), 3, [None] * 3)}
    finding = claim_two_layers(one_side)
    assert finding.verdict == "inconclusive"
    assert "2 layers 0.00 (0/3)" in finding.numbers


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
    text = conclusion("S-2L", finding, 400)
    assert "400 steps, 125× fewer than the seed's 50,000 on CelebA 64×64" in text


def test_limits_come_from_the_runs(doc):
    limits = _section(doc["text"], "Limits of this study")
    assert f"Each run trained {STEPS} steps" in limits
    assert "`mnist5k` at 32×32 pixels" in limits
    assert "stability 3, archs 2" in limits
    assert "`fid/domain`" in limits and "not Inception" in limits


def test_time_taken_and_regeneration_command(doc, study_dir):
    text = doc["text"]
    timing = _section(text, "Time taken")
    total = next(line for line in timing.splitlines() if line.startswith("| total"))
    # 18 finished runs of 60 s each; started two by two every 100 s, 90 s each; one still going
    assert total == "| total | 25 | 20 min | 24 min | 400 |"
    assert f"{os.cpu_count()} cores; local executor, at most 2 runs at once" in timing
    assert "× 1 torch thread(s) per run" in timing
    assert (f"--out {study_dir} --seed-out {study_dir / 'seed-study'} --seed-steps {STEPS} "
            f"--doc {doc['path']} --steps {STEPS}`") in text


def test_partial_study_is_marked(doc):
    text = doc["text"]
    assert "_Not started: no runs in" in _section(text, "Table 2")
    stability = _section(text, "Stability")
    assert "12 finished runs counted (24 planned)" in stability
    assert "not counted, unfinished: `inv_layers-1_norm-spectral_seed-0` (no summary.json)" \
        in stability
    assert "| 1 | spectral | 0 | – |" in stability


def test_figures_are_written_and_referenced(doc):
    folder = doc["path"].parent / "reproduction"
    referenced = re.findall(r"!\[[^\]]+\]\(reproduction/([^)]+\.png)\)", doc["text"])
    written = sorted(p.name for p in folder.glob("*.png"))
    assert sorted(referenced) == written
    assert "stability-collapse-rate-by-inv-layers-norm.png" in written
    assert "archs-verdicts-by-arch.png" in written
    assert "stability-verdicts-by-arch.png" not in written  # figures that fit the sweep only
    assert any(n.startswith("stability-fid") for n in written)
    assert any(n.startswith("archs-fid") for n in written)
    for name in written:
        assert (folder / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "![Collapse rate" in _section(doc["text"], "Stability")


def test_empty_study_gives_a_doc(tmp_path):
    path = tmp_path / "doc.md"
    stale = tmp_path / "doc" / "stability-old.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    assert study.main(["--doc-only", "--out", str(tmp_path / "none"), "--doc", str(path),
                       "--seed-out", str(tmp_path / "none-seed")]) == 0
    text = path.read_text()
    assert text.count("_Not started: no runs in") == 6
    # only the first round's sweeps have earlier results in git history
    assert ("\nNot run here: `stability`, `archs`, `table2`. Results of earlier runs of the first "
            "round's sweeps (400 steps)") in text
    assert "No seed-faithful run has finished yet" in text
    assert "No run has finished yet" in text
    assert "![" not in text and not stale.exists()


def test_the_seed_study_answers_with_its_collapsed_runs(doc):
    text = doc["text"]
    answer = _section(text, "The answer")
    assert "\n**2 of 6 seed-study runs went bad** (50 steps): " in answer
    assert "`faithful/inv_layers-2_seed-0` collapsed at step 30 (divergence)" in answer
    long = _section(text, "The seed-faithful study (long runs)")
    assert "| faithful | 2 | none | seed layout" in long
    assert "| 3 | 1 / 0 / 2 | 30, 30 | divergence |" in long
    claim = next(line for line in text.splitlines() if line.startswith("| L-2L |"))
    assert "**supported**" in claim and "2 layers 0.67 (2/3)" in claim
    folder = doc["path"].parent / "reproduction"
    # Fig. 7/8: the curves with the onset, the grid before the onset (step 20) and the last
    for run in ("inv-layers-2-seed-0", "inv-layers-2-seed-1"):
        for part in ("curves.png", "step_000020.png", "step_000050.png"):
            assert (folder / f"collapse-faithful-{run}-{part}").is_file()
    assert "![curves](reproduction/collapse-faithful-inv-layers-2-seed-0-curves.png)" in long
