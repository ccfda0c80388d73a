"""The failure zoo (stabgan.zoo, scripts/failure_zoo.py): ground truth and scoring on hand-made
run directories, and every realistic recipe run for real in CI size, its fault checked."""
from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from conftest import load_script
from probes.rundir.files import read_json
from probes.rundir.reader import RunDir, as_lists
from stabgan import zoo
from stabgan.sweep import SweepError, SweepSpec, run_sweep

CI_STEPS = 80
CI_BASE = {"width": 8, "z_dim": 16, "batch_size": 16, "log_every": 5, "diversity_every": 20,
           "fid_every": 0}
# one recipe of each family (the other schedule bug and λ differ only in their numbers)
CI_RECIPES = ("lr-raise", "gp-weak-0.1", "critic-bn", "g-overpowers", "softmax-saturated",
              "k-outputs", "data-corrupt")


def test_fid_onset_is_the_first_rise_over_the_best_so_far():
    steps = [40, 80, 120, 160, 200, 240]
    assert zoo.fid_onset(steps, [300, 120, 60, 50, 140, 400]) == 240  # 400 ≥ 3 × 50
    assert zoo.fid_onset(steps, [300, 120, 60, 50, 149, 100]) is None
    assert zoo.fid_onset(steps, [300, 120, math.nan, 50, 40, 30]) == 120
    series = {"loss/critic": ([10, 20, 30], [1.0, math.inf, 2.0]),
              "weights/nonfinite": ([25], [3.0]), "wgan/distance": ([5], [math.nan])}
    assert zoo.nonfinite_step(series) == 20
    assert zoo.nonfinite_step({"loss/critic": ([10], [1.0])}) is None


def test_a_run_that_never_learns_fails_against_its_healthy_twin(tmp_path):
    steps = [40, 80, 120, 160, 200, 240]
    twin = {40: 300, 80: 100, 120: 50, 160: 30, 200: 20, 240: 20}
    never_learns = [300, 200, 160, 100, 70, 80]
    assert zoo.fid_onset(steps, never_learns) is None  # it never rises over its own best
    assert zoo.twin_onset(steps, never_learns, twin) == 120  # 160 ≥ 3 × 50, then 2 more
    assert zoo.twin_onset(steps, [300, 200, 160, 80, 70, 80], twin) is None  # streak broken
    assert zoo.twin_onset(steps, [300, 200, math.inf, 100, 70, 80], {}) is None  # no twin
    by_name = {r.name: r for r in zoo.recipes()}
    over, healthy = by_name["g-overpowers"], by_name[by_name["g-overpowers"].twin]
    _run(tmp_path, healthy, 0, [], [300.0] + [20.0] * 49)
    _run(tmp_path, over, 0, [_event("mode_collapse", "warning", 120),
                             _event("mode_collapse", "collapse", 400)],
         [300.0] + [50.0] * 4 + [80.0] * 45)  # ≥ 3 × 20 from step 240 on: onset 240
    score = next(s for s in zoo.score_zoo(tmp_path, 2000) if s.recipe.name == over.name)
    assert (score.truth_onset, score.truth_from, score.fid_onset) == (240, "FID vs twin", 240)
    # a setting acts from step 0: the warning before the FID saw the failure is a catch ahead
    # of it (a fault recipe's early warning is not: see below)
    assert (score.caught["step"], score.latency, score.early) == (120, -120, [])


def _run(out: Path, recipe: zoo.Recipe, seed: int, events: list[dict], fid: list[float],
         steps: int = 2000, status: str = "completed") -> Path:
    run_dir = out / zoo.run_name(recipe, steps, seed)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"config": {"steps": steps}}))
    fid_steps = range(40, steps + 1, 40)
    (run_dir / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, zoo.FID_TAG: v}) + "\n" for s, v in zip(fid_steps, fid)))
    verdict = ("collapsed" if any(e["severity"] == "collapse" for e in events)
               else "unstable" if events else "healthy")
    (run_dir / "diagnosis.json").write_text(json.dumps({"verdict": verdict, "events": events}))
    (run_dir / "summary.json").write_text(json.dumps({"status": status, "wall_s": 400.0}))
    return run_dir


def _event(kind, severity, step, signs=()):
    return {"kind": kind, "severity": severity, "step": step, "evidence": {},
            "first_signs": [{"tag": t, "step": s, "lead": step - s, "layer": None,
                             "baseline": 1.0, "value": 5.0, "factor": 5.0, "z": 9.0}
                            for t, s in signs]}


def test_runs_are_scored_against_their_ground_truth(tmp_path):
    by_name = {r.name: r for r in zoo.recipes()}
    flat = [300.0] + [20.0] * 49
    # a fault at 800 that the FID sees at 880: onset 800, caught at 830 (within 100 steps)
    # after a premature warning at 200
    lr = by_name["lr-raise"]
    broken = [300.0] + [20.0] * 20 + [90.0] * 29
    _run(tmp_path, lr, 0, [_event("gp_blowup", "warning", 200),
                           _event("divergence", "collapse", 830, [("grad/g.inv0", 780)])], broken)
    score = zoo.score_run(tmp_path / zoo.run_name(lr, 2000, 0), lr, 0)
    assert (score.fid_onset, score.truth_onset, score.caught["step"], score.latency) == (
        880, 800, 830, 30)
    assert [e["step"] for e in score.early] == [200] and score.first_sign["lead"] == 50
    # the same fault, harmless by the FID: no failure to catch
    _run(tmp_path, lr, 1, [], flat)
    assert not zoo.score_run(tmp_path / zoo.run_name(lr, 2000, 1), lr, 1).failed
    # the FID rule: 20 → 70 at step 1,240 (index 30); a collapse 150 steps later is missed
    weak = by_name["gp-weak-1"]
    fid = [300.0] + [20.0] * 29 + [70.0] * 20
    held_out = zoo.HELD_OUT_SEEDS[0]
    _run(tmp_path, weak, held_out, [_event("divergence", "collapse", 1390)], fid)
    score = zoo.score_run(tmp_path / zoo.run_name(weak, 2000, held_out), weak, held_out)
    assert (score.truth_onset, score.caught, score.held_out) == (1240, None, True)
    # a broken layer with the FID fine: no failure of the run, the layer warning is found
    layer = by_name["softmax-saturated"]
    _run(tmp_path, layer, 0, [_event("kernel_collapse", "warning", 810)], flat)
    score = zoo.score_run(tmp_path / zoo.run_name(layer, 2000, 0), layer, 0)
    assert not score.failed and score.layer_event["step"] == 810
    # healthy, with a warning
    healthy = by_name["healthy-dcgan"]
    _run(tmp_path, healthy, 0, [_event("gp_blowup", "warning", 600)], flat)
    # a setting the FID shrugs off, called collapsed: the alarm the truth denies is counted
    shrugged = by_name["gp-weak-0.1"]
    _run(tmp_path, shrugged, 0, [_event("gp_blowup", "collapse", 220)], flat)
    # a run interrupted part-way (the zoo resumes it) is not scored yet
    _run(tmp_path, by_name["healthy-igan"], 0, [], flat[:20], status="interrupted")
    summary = zoo.summarize(zoo.score_zoo(tmp_path, 2000))
    assert (summary["healthy"], summary["healthy_collapsed"], summary["failures"],
            summary["caught"], summary["signs"]) == (1, [], 2, 1, 1)
    # of the three runs the truth calls fine (harmless lr-raise, softmax, gp-weak), one collapsed
    assert (summary["unfailed_collapsed"], summary["unfailed"]) == (
        [zoo.run_name(shrugged, 2000, 0)], 3)
    assert [s.name for s in summary["healthy_warnings"]] == ["arch-dcgan_seed-0"]
    assert summary["per_recipe"]["lr-raise"]["median_latency"] == 30
    # the doc's timeline: one row per failure or broken layer
    figure = tmp_path / "timeline.png"
    assert load_script("failure_zoo").timeline_figure(zoo.score_zoo(tmp_path, 2000), figure)
    assert figure.stat().st_size > 5000


@pytest.fixture(scope="module")
def ci_zoo(tmp_path_factory):
    """A recipe of each family, seed 0, run for real through the zoo's sweep (tiny models)."""
    out = tmp_path_factory.mktemp("zoo")
    result = run_sweep(zoo.zoo_sweep(out, CI_STEPS, workers=2, only=CI_RECIPES, seeds=(0,),
                                     base=CI_BASE), echo=lambda message: None)
    assert result.exit_code == 0, result.rows
    return out


def _series(out: Path, name: str) -> dict:
    recipe = next(r for r in zoo.recipes() if r.name == name)
    return as_lists(RunDir(out / zoo.run_name(recipe, CI_STEPS, 0)).series())


def _around(series: dict, prefix: str, at: int) -> tuple[float, float]:
    """Median over the tags under prefix of (mean before at, mean after at)."""
    ratios = []
    for tag, (steps, values) in series.items():
        if tag.startswith(prefix):
            before = [v for s, v in zip(steps, values) if s <= at]
            after = [v for s, v in zip(steps, values) if s > at]
            ratios.append((statistics.mean(before), statistics.mean(after)))
    assert ratios, prefix
    return tuple(statistics.median(r[i] for r in ratios) for i in (0, 1))


def test_detector_cost_is_the_online_detectors_per_logged_step(tmp_path):
    # diverging at step 310: the detector writes diagnosis.json then too (into a scratch folder)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lines = [{"step": s, "wgan/distance": 3.0 * (1 + 0.05 * (s % 3)) * (40 if s > 300 else 1),
              "loss/critic": -3.0 + 0.1 * (s % 4), "time/step_s": 0.1}
             for s in range(10, 401, 10)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cost = zoo.detector_cost([run_dir])
    assert (cost["updates"], cost["tags_median"], cost["tags_max"]) == (40, 3, 3)
    assert 0 < cost["median_ms"] <= cost["p99_ms"] <= cost["max_ms"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.jsonl"]  # the run untouched
    assert zoo.detector_cost([]) == {}


@pytest.mark.slow
def test_a_recipe_of_each_family_runs_and_its_fault_acts(ci_zoo):
    by_name = {r.name: r for r in zoo.recipes()}
    for name in CI_RECIPES:
        recipe = by_name[name]
        run_dir = ci_zoo / zoo.run_name(recipe, CI_STEPS, 0)
        assert read_json(run_dir / "summary.json")["status"] == "completed", name
        config = read_json(run_dir / "config.json")["config"]
        assert {k: config[k] for k in recipe.values(CI_STEPS, 0)} == recipe.values(CI_STEPS, 0)
    # a schedule bug: Adam's relative updates grow with the learning rate
    at = by_name["lr-raise"].fault_step(CI_STEPS)
    before, after = _around(_series(ci_zoo, "lr-raise"), "update/", at)
    assert after > 10 * before, (before, after)
    # the data stream: images in [0, 1], so real pairwise distances halve
    at = by_name["data-corrupt"].fault_step(CI_STEPS)
    before, after = _around(_series(ci_zoo, "data-corrupt"), "diversity/pairwise_real", at)
    assert 0.35 < after / before < 0.7
    # saturated softmax kernels: their entropy falls
    at = by_name["softmax-saturated"].fault_step(CI_STEPS)
    before, after = _around(_series(ci_zoo, "softmax-saturated"), "kernel/g.inv0/entropy", at)
    assert after < 0.5 * before
    # four outputs: every fixed-noise sample has a twin
    steps, values = _series(ci_zoo, "k-outputs")["diversity/dup_rate"]
    at = by_name["k-outputs"].fault_step(CI_STEPS)
    assert [v for s, v in zip(steps, values) if s > at] == [1.0, 1.0]
    assert all(v < 1.0 for s, v in zip(steps, values) if s <= at)
    # batch norm in the critic's involution layer
    assert "kernel/d.inv0/entropy" in _series(ci_zoo, "critic-bn")


@pytest.mark.slow
def test_the_doc_is_written_from_the_zoo_runs(ci_zoo, tmp_path):
    script = load_script("failure_zoo")
    doc = tmp_path / "docs" / "collapse.md"
    assert script.main(["--out", str(ci_zoo), "--steps", str(CI_STEPS), "--doc", str(doc),
                        "--doc-only"]) == 0
    text = doc.read_text()
    assert text.startswith("# Collapse detection: the failure zoo")
    assert "| lr-raise | schedule bug: both learning rates ×100 at 40 % | fault step | 1 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| k-outputs | 0 (tuning) |")]
    assert len(rows) == 1 and "| no failure; fault at 40 |" in rows[0]  # CI runs log no FID
    assert "![Verdicts by arch](collapse/zoo-verdicts-by-arch.png)" in text  # the report's
    assert (tmp_path / "docs" / "collapse" / "zoo-verdicts-by-arch.png").is_file()
    assert "ms CPU per logged step" in text
    budget, = [line for line in text.splitlines() if line.startswith("| the zoo in ≤ 2 h wall")]
    # the fixture ran its sweep directly, not through the script: no invocation recorded
    assert "✓ 0.00 h over 0 invocation(s)" in budget and " h (seed 0) at 2 run(s)" in budget


@pytest.mark.slow
def test_a_generator_collapsing_to_k_outputs_in_your_own_loop_is_caught(tmp_path, one_thread):
    """The README's bring-your-own loop with the Monitor, an OnlineDetector and the fault."""
    import torch
    from torch import nn

    import probes
    from probes.collapse import OnlineDetector
    from stabgan.data import load_dataset
    from stabgan.faults import CollapseToCodes

    torch.manual_seed(0)
    data = load_dataset("mnist5k", 32).tensors[0]
    z_dim, batch, at = 16, 16, 120
    G = nn.Sequential(nn.Linear(z_dim, 16 * 8 * 8), nn.Unflatten(1, (16, 8, 8)), nn.ReLU(),
                      nn.ConvTranspose2d(16, 8, 4, 2, 1), nn.ReLU(),
                      nn.ConvTranspose2d(8, 1, 4, 2, 1), nn.Tanh())
    G.z_dim = z_dim
    D = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1),
                      nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(16 * 8 * 8, 1), nn.Flatten(0))
    opt_g = torch.optim.Adam(G.parameters(), 1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), 4e-4, betas=(0.0, 0.9))
    detector = OnlineDetector()
    monitor = probes.Monitor(tmp_path, generator=G, critic=D, log_every=2, guard=detector,
                             probes=[*probes.build_probes("default", z_dim=z_dim, log_every=2),
                                     CollapseToCodes(at, codes=4)])
    for step in range(1, 171):
        real = data[torch.randint(len(data), (batch,))]
        fake = G(torch.randn(batch, z_dim)).detach()
        eps = torch.rand(batch, 1, 1, 1)
        x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
        d_real, d_fake, d_hat = D(torch.cat([real, fake, x_hat])).chunk(3)
        grad, = torch.autograd.grad(d_hat.sum(), x_hat, create_graph=True)
        gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
        loss_d = d_fake.mean() - d_real.mean() + 10 * gp
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = -D(G(torch.randn(batch, z_dim))).mean()
        opt_g.zero_grad()
        loss_g.backward(inputs=list(G.parameters()))
        opt_g.step()
        monitor.step(step, real=real, fake=fake, d_real=d_real, d_fake=d_fake,
                     penalty_points={"gp": x_hat}, penalty_grads={"gp": grad},
                     penalties={"gp": gp}, loss_critic=loss_d, loss_generator=loss_g)
    monitor.close()
    modes = [e for e in detector.events if e["kind"] == "mode_collapse"]
    assert modes and modes[0]["severity"] == "collapse", [e["message"] for e in detector.events]
    assert at < modes[0]["step"] <= at + 20  # the first diversity reading after the fault
    assert modes[0]["evidence"]["tag"] == "diversity/dup_rate"
    assert read_json(tmp_path / "diagnosis.json")["verdict"] == "collapsed"


def test_a_checkpoint_of_a_collapsed_run_samples_as_the_run_did(tmp_path, one_thread):
    """The collapse-to-k fault lives in a hook, not in the weights: `stabgan fid` (and every
    checkpoint reader through fid.checkpoint_generator) attaches it again in its saved state,
    so it measures the k outputs the run had, and a checkpoint from before the fault is whole."""
    import torch

    from conftest import TINY, stabgan_cli
    from stabgan.fid import checkpoint_generator
    from stabgan.train import load_checkpoint

    result = stabgan_cli("run", "--out", str(tmp_path), "--name", "k", *TINY, "--steps", "6",
                         "--ckpt-every", "2", "--fault", "collapse@3:2")
    assert result.returncode == 0, result.stderr
    z = torch.randn(16, 16)
    state = load_checkpoint(tmp_path / "k" / "checkpoints" / "last.pt")
    config, generator = checkpoint_generator(state)
    with torch.no_grad():
        outputs = generator.eval()(z).flatten(1)
    assert config.fault == "collapse@3:2" and state["step"] == 6
    assert len(torch.unique(outputs, dim=0)) == 2
    state["monitor"]["collapse_to_codes"] = {"active": False}  # as saved before step 3
    with torch.no_grad():
        whole = checkpoint_generator(state)[1].eval()(z).flatten(1)
    assert len(torch.unique(whole, dim=0)) == 16


def test_a_zoo_sweep_refused_before_it_runs_leaves_no_session(tmp_path):
    """A sweep the planner refuses (a point setting what the base sets) raises its one-line
    error and records no invocation of 0 minutes in OUT's sessions."""
    script = load_script("failure_zoo")
    refused = SweepSpec(points=({"steps": 20, "seed": 0},), base={"steps": 10},
                        preset="toy", out=tmp_path)
    with pytest.raises(SweepError, match="'steps' is both"):
        script.run_recorded([refused], tmp_path, "python scripts/failure_zoo.py")
    assert not (tmp_path / script.SESSIONS).exists()
