"""`stabgan report`: real short runs plus broken run folders -> one self-contained, escaped page.

The session fixture trains two tiny real runs with the CLI (in parallel), copies them into the
broken shapes the report must survive, and renders the report once; most tests read that page.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape
from PIL import Image

from conftest import stabgan_cli
from probes.rundir.files import read_json, read_metrics
from reports import write_report
from reports.figures import downsample
from reports.html import CACHE_FILE

RUN_FLAGS = ["--width", "16", "--z-dim", "16", "--batch-size", "16", "--steps", "30",
             "--log-every", "3", "--sample-every", "10", "--ckpt-every", "30",
             "--threads", "1",  # two runs train side by side on 2 cores
             "--probes", "penalty,kernels,spectra",
             "--no-fid-final"]  # the report of a run's final quality: tests/test_newcomer.py
HTML_NAME = "<img src=x onerror=alert(1)>"       # a run folder whose name is HTML
HTML_CONFIG = "<script>alert('pwned')</script>"  # and a config string that is HTML
ROW = re.compile(r'<tr data-run="([^"]*)" data-verdict="([^"]*)">')
FAILED_ERROR = "OSError: [Errno 28] No space left on device"
FAILED_TRACEBACK = ('Traceback (most recent call last):\n  File "stabgan/runlog.py", line 35, in '
                    'atomic_write_bytes\n    f.write(data)\n' + FAILED_ERROR + "\n")


def _section(page: str, name: str) -> str:
    """The per-run section of the run named name (escaped as the page shows it)."""
    anchor = re.search(r'<tr data-run="%s"[^>]*>\s*<td[^>]*><a href="#([^"]+)"'
                       % re.escape(escape(name)), page).group(1)
    start = page.index(f'<section class="card run" id="{anchor}">')
    return page[start:page.index("</section>", start)]


def _make_runs(root: Path) -> dict[str, str]:
    """Real runs and broken copies under root; returns {relative name: what it is}."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    jobs = {name: subprocess.Popen(
        [sys.executable, "-m", "stabgan.cli", "run", *RUN_FLAGS, *extra,
         "--out", str(root / "sweep"), "--name", name],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, extra in {"dcgan": ["--arch", "dcgan"], "igan": ["--inv-layers", "1"]}.items()}
    for name, job in jobs.items():
        _, err = job.communicate(timeout=600)
        assert job.returncode == 0, f"{name}: {err}"
    real = root / "sweep" / "igan"

    # still being written: no summary.json, a half-written last line and sample, no diagnosis
    running = root / "broken" / "running"
    shutil.copytree(real, running)
    (running / "summary.json").unlink()
    (running / "diagnosis.json").unlink()
    with open(running / "metrics.jsonl", "a") as f:
        f.write('{"step": 33, "loss/critic": 1.2, "wgan/dist')
    (running / "samples" / "step_000040.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    # non-finite readings appended after the online diagnosis: the report must re-diagnose
    nan = root / "broken" / "nan"
    shutil.copytree(real, nan)
    os.utime(nan / "diagnosis.json", (time.time() - 3600, time.time() - 3600))
    with open(nan / "metrics.jsonl", "a") as f:
        for step, value in ((33, "nan"), (36, "inf"), (39, "-inf")):
            f.write(json.dumps({"step": step, "loss/critic": value, "loss/generator": value,
                                "wgan/distance": value}) + "\n")
        f.write('{"step": 42, "loss/critic": NaN, "wgan/distance": Infinity}\n')

    # metrics only; config only with an empty metrics file; garbled JSON everywhere
    (root / "broken" / "noconfig").mkdir(parents=True)
    shutil.copy(real / "metrics.jsonl", root / "broken" / "noconfig" / "metrics.jsonl")
    empty_metrics = root / "broken" / "empty-metrics"
    empty_metrics.mkdir()
    shutil.copy(real / "config.json", empty_metrics / "config.json")
    (empty_metrics / "metrics.jsonl").write_text("")
    garbled = root / "broken" / "garbled"
    garbled.mkdir()
    (garbled / "config.json").write_text("{not json")
    (garbled / "summary.json").write_text("[1, 2]")
    (garbled / "metrics.jsonl").write_text(
        'garbage\n{"step": "x"}\n{"step": 3, "loss/critic": "oops"}\n'
        '{"step": 6, "loss/critic": 0.5, "wgan/distance": {"a": 1}}\n')

    # failed: summary.json's one-line error, error.log's traceback
    failed = root / "broken" / "failed"
    shutil.copytree(real, failed)
    summary = read_json(failed / "summary.json")
    summary.update(status="failed", error=FAILED_ERROR, error_log="error.log")
    (failed / "summary.json").write_text(json.dumps(summary))
    (failed / "error.log").write_text(FAILED_TRACEBACK)

    # HTML in a folder name and in a config string
    hostile = root / HTML_NAME
    shutil.copytree(real, hostile)
    config = read_json(hostile / "config.json")
    config["config"]["dataset"] = HTML_CONFIG
    (hostile / "config.json").write_text(json.dumps(config))

    # not runs: an empty folder and a folder of notes
    (root / "empty").mkdir()
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a run")
    return {"sweep/dcgan": "real", "sweep/igan": "real", "broken/running": "running",
            "broken/nan": "nan", "broken/noconfig": "noconfig",
            "broken/empty-metrics": "empty-metrics", "broken/garbled": "garbled",
            "broken/failed": "failed", HTML_NAME: "real"}


@pytest.fixture(scope="session")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    kinds = _make_runs(root)
    path = write_report(root)
    return {"root": root, "kinds": kinds, "path": path, "page": path.read_text()}


def test_every_run_listed_with_the_verdict_of_its_diagnosis(report):
    root, page = report["root"], report["page"]
    rows = {html.unescape(name): verdict for name, verdict in ROW.findall(page)}
    assert set(rows) == set(report["kinds"])
    for name, verdict in rows.items():
        diagnosis = read_json(root / name / "diagnosis.json")
        assert verdict == (diagnosis["verdict"] if diagnosis else "none"), name
    # missing and stale diagnoses were recomputed from metrics.jsonl
    assert read_json(root / "broken/running/diagnosis.json") is not None
    nan = read_json(root / "broken/nan/diagnosis.json")
    assert nan["verdict"] == "collapsed" and nan["events"][0]["kind"] == "nan"
    assert rows["broken/empty-metrics"] == "none"
    # the skipped folders are named with a reason
    assert re.search(r"<code>empty</code>: empty folder", page)
    assert re.search(r"<code>notes</code>: not a run", page)


def test_broken_runs_carry_warnings_not_crashes(report):
    page = report["page"]
    expected = {"broken/running": ["no summary.json", "unreadable line",
                                   "step_000040.png could not be read"],
                "broken/nan": ["non-finite values"],
                "broken/noconfig": ["no config.json"],
                "broken/empty-metrics": ["no readable records"],
                "broken/garbled": ["config.json is unreadable", "summary.json is unreadable",
                                   "unreadable lines"]}
    for name, needles in expected.items():
        section = _section(page, name)
        assert 'class="badge warn"' in section, name
        for needle in needles:
            assert needle in section, (name, needle)
    nan = _section(page, "broken/nan")
    assert "Collapsed at step" in nan and "collapse · nan" in nan
    assert "before onset" in nan  # the grid just before the onset is shown
    assert 'class="badge warn"' not in _section(page, "sweep/dcgan")


def test_a_failed_run_shows_its_error_and_traceback(report):
    page, failed = report["page"], report["root"] / "broken" / "failed"
    assert f'<td title="{escape(FAILED_ERROR)}">failed</td>' in page
    section = _section(page, "broken/failed")
    assert f"<b>failed:</b> {escape(FAILED_ERROR)}" in section
    assert f"<code>{escape(str(failed / 'error.log'))}</code>" in section
    assert f"<pre>{escape(FAILED_TRACEBACK)}</pre>" in section
    assert "error.log" not in _section(page, "sweep/dcgan")


def test_a_run_with_first_signs_gets_a_timeline(tmp_path):
    from probes.collapse import diagnose_run
    from test_collapse import modify, transient_series, write_metrics

    series = modify(transient_series(3), "kernel/g.inv1/max_abs", 1600, lambda v, d: v * 6)
    series = modify(series, "wgan/distance", 1840, lambda v, d: v * 40)
    write_metrics(tmp_path / "run", series)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"config": {"arch": "igan"}}))
    diagnose_run(tmp_path / "run")
    page = write_report(tmp_path).read_text()
    section = _section(page, "run")
    assert "Timeline: first signs, then events" in section
    items = re.findall(r'<li class="(sign|warning|collapse)"><b>step ([\d,]+)</b>', section)
    assert items[0] == ("sign", "1,600") and ("collapse", "1,840") in items
    assert "layer <code>g.inv1</code> · 240 steps before the divergence collapse" in section
    assert re.search(r'<i class="sign" style="left:66.67%"', section)  # 1,600 of 2,400


def test_a_run_that_recovered_from_its_collapse_says_so(tmp_path):
    from probes.collapse import diagnose_run
    from test_collapse import ONSET, RECOVERED_AT, recovered_series, write_metrics

    write_metrics(tmp_path / "run", recovered_series())
    assert diagnose_run(tmp_path / "run")["verdict"] == "unstable"
    section = _section(write_report(tmp_path).read_text(), "run")
    assert (f"Unstable: collapsed at step {ONSET:,} (low_coverage), recovered: the sample "
            f"readings back in band from step {RECOVERED_AT:,} (") in section
    assert "collapse · low_coverage" in section  # the collapse is still listed
    # a diagnosis.json whose recovery is garbled is shown as a plain unstable run, no crash
    diagnosis = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    diagnosis["recovery"]["kinds"] = 3
    (tmp_path / "run" / "diagnosis.json").write_text(json.dumps(diagnosis))
    section = _section(write_report(tmp_path).read_text(), "run")
    assert "Unstable: warnings, no collapse" in section


def test_page_is_escaped(report):
    page = report["page"]
    assert HTML_NAME not in page and HTML_CONFIG not in page
    assert escape(HTML_NAME) in page and escape(HTML_CONFIG) in page
    assert page.count("<script") == 1  # only the inline table sorter
    assert "onerror=" not in page.replace(escape(HTML_NAME), "")


class _References(HTMLParser):
    """Every URL-bearing attribute of the page's real tags (not text that looks like a tag)."""
    ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background",
                  "xlink:href", "manifest", "ping", "cite"}

    def __init__(self):
        super().__init__()
        self.found, self.tags, self.styles = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name in self.ATTRIBUTES:
                self.found.append((tag, name, value or ""))
            if name == "style":
                self.styles.append(value or "")


def test_page_is_self_contained(report):
    parser = _References()
    parser.feed(report["page"])
    assert parser.found
    for tag, name, value in parser.found:
        assert value.startswith(("data:image/png;base64,", "data:image/jpeg;base64,", "#")), \
            (tag, name, value[:80])
    assert not {"link", "iframe", "object", "embed", "base", "frame"} & set(parser.tags)
    # CSS: no url(), no @import (inline styles included); no URL scheme anywhere in the file
    css = "".join(re.findall(r"<style>(.*?)</style>", report["page"], re.S))
    css += "".join(parser.styles)
    assert "url(" not in css and "@import" not in css
    assert not re.search(r"(?:https?|ftp|wss?):", report["page"], re.IGNORECASE)


def test_figures_and_samples_are_embedded(report):
    section = _section(report["page"], "sweep/igan")
    images = re.findall(r'<img src="data:(image/(?:png|jpeg));base64,([^"]+)"', section)
    pngs = [base64.b64decode(data) for kind, data in images if kind == "image/png"]
    assert len(pngs) >= 8  # losses, distance, GP band, kernels, spectra, ... and sample grids
    for png in pngs:
        with Image.open(io.BytesIO(png)) as image:
            assert image.width >= 200 and image.height >= 150
    for title in ("Losses", "GP: ‖∇D(x̂)‖ at interpolates", "kernel entropy"):
        assert f'alt="{escape(title)}' in section, title
    # the untrained grid (step 0, flat grey) is left out: the first trained, middle and last
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", section) == [
        "first · step 10", "middle · step 20", "end · step 30"]
    # titles, tick labels and legends are HTML text beside the (text-free) plot images
    losses = section[section.index("<figcaption"):].split("</figure>", 1)[0]
    assert "<figcaption" in losses and ">Losses</figcaption>" in losses
    assert len(re.findall(r'<span style="bottom:[\d.]+%">[^<]+</span>', losses)) >= 2
    assert len(re.findall(r'<span style="left:[\d.]+%">[^<]+</span>', losses)) >= 2
    assert re.search(r'<li><i class="solid" style="--c:#[0-9a-f]{6}"></i>loss/critic</li>', losses)
    assert "loss/generator</li>" in losses
    dcgan = _section(report["page"], "sweep/dcgan")
    assert 'alt="kernel' not in dcgan  # no involution layer: no kernel plot, not an empty one
    # overview figures
    overview = report["page"][:report["page"].index('<section class="card run"')]
    assert overview.count('<img src="data:image/png;base64,') >= 3


def _plotted(section: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(section title, [(caption, tags), ...])] of a run section's plots, as the page shows."""
    found = []
    for part in re.split(r'(?=<h3>)', section)[1:]:
        title = re.match(r'<h3>([^<]*)</h3>', part).group(1)
        figures = re.findall(r'<figcaption title="([^"]*)">([^<]*)</figcaption>', part)
        if figures:
            found.append((html.unescape(title), [(html.unescape(caption), html.unescape(tags))
                                                 for tags, caption in figures]))
    return found


def test_a_run_is_drawn_from_the_panels_its_monitor_wrote(report):
    from probes.objectives import WGAN_GP
    from probes.readings import KERNEL_PANELS, panels_from_json

    run_dir = report["root"] / "sweep" / "igan"
    declared = {p.title for p in panels_from_json(read_json(run_dir / "panels.json"))}
    assert {p.title for p in WGAN_GP.penalty_panels() + KERNEL_PANELS} <= declared  # --probes penalty,...
    assert "FID (lower is better)" not in declared  # the fid probe did not run
    plotted = dict(_plotted(_section(report["page"], "sweep/igan")))
    # no gradients probe ran: its panels are left out, and the heading does not promise them
    assert list(plotted) == ["Training", "Involution kernels", "Spectra"]
    captions = [caption for figures in plotted.values() for caption, _ in figures]
    assert "gp/frac_off" in captions and "kernel entropy · g.inv0" in captions
    band = dict(plotted["Training"])["GP: ‖∇D(x̂)‖ at interpolates"]
    assert band.split(", ") == ["gp/norm_mean", "gp/norm_p50", "gp/norm_p05", "gp/norm_p95",
                                "gp/norm_std"]


def test_a_run_without_panels_file_shows_the_same_panels(report, tmp_path):
    """Runs written before panels.json existed (or with a garbled one) get stabgan's own panels:
    the same plots as the run's own file gives."""
    real = report["root"] / "sweep" / "igan"
    for name in ("igan", "old", "garbled"):
        shutil.copytree(real, tmp_path / name, ignore=shutil.ignore_patterns(CACHE_FILE))
    (tmp_path / "old" / "panels.json").unlink()
    (tmp_path / "garbled" / "panels.json").write_text('{"panels": [{"title": 3}]}')
    page = write_report(tmp_path).read_text()
    own = _plotted(_section(page, "igan"))
    assert own and _plotted(_section(page, "old")) == own
    garbled = _section(page, "garbled")
    assert _plotted(garbled) == own and "panels.json is unreadable (not a panel" in garbled
    assert 'class="badge warn"' not in _section(page, "old")


def test_a_new_probe_declares_its_plot_in_its_own_class(tmp_path):
    """One class is all a new probe needs: the Monitor writes its panel, TensorBoard and the
    report show it; a tag no panel declares still gets a plot, under Other readings."""
    import torch
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.custom_scalar import layout_pb2
    from torch import nn

    from probes import Monitor, Panel, Probe

    class Brightness(Probe):
        name = "brightness"
        panels = (Panel("mean pixel of the fakes", "Brightness", ("brightness/fake",),
                        target=0.0),)

        def on_step(self, state):
            return {"brightness/fake": state.fake.mean(), "contrast/fake": state.fake.std()}

    torch.manual_seed(0)
    generator, critic = nn.Sequential(nn.Linear(4, 4), nn.Tanh()), nn.Linear(4, 1)
    monitor = Monitor(tmp_path / "own", generator=generator, critic=critic,
                      probes=[Brightness(every=2)], log_every=2)
    for step in range(1, 9):
        with torch.no_grad():
            fake = generator(torch.randn(8, 4))
        monitor.step(step, fake=fake, loss_critic=torch.tensor(1.0 / step))
    monitor.close()

    plotted = _plotted(_section(write_report(tmp_path).read_text(), "own"))
    assert plotted == [("Training", [("Losses · loss/critic", "loss/critic")]),
                       ("Brightness", [("mean pixel of the fakes · brightness/fake",
                                        "brightness/fake")]),
                       ("Other readings", [("contrast · contrast/fake", "contrast/fake")])]
    acc = EventAccumulator(str(tmp_path / "own"), size_guidance={"tensors": 0})
    acc.Reload()
    layout = layout_pb2.Layout.FromString(
        acc.Tensors("custom_scalars__config__")[0].tensor_proto.string_val[0])
    charts = {(c.title, chart.title): list(chart.multiline.tag)
              for c in layout.category for chart in c.chart}
    assert charts[("Brightness", "mean pixel of the fakes")] == ["brightness/fake"]

    class OldStyle(Brightness):  # an earlier stabgan's declaration: refused, not dropped
        layout = {"Brightness": {"mean pixel": ["Multiline", ["brightness/fake"]]}}

    with pytest.raises(ValueError, match="OldStyle.layout is no longer read"):
        Monitor(tmp_path / "old", generator=generator, critic=critic, probes=[OldStyle()])
    assert not (tmp_path / "old").exists()


def test_committed_study_runs_keep_their_panels(tmp_path):
    """A failure-zoo run committed before panels.json: every tag it logged has its panel."""
    zoo = Path(__file__).resolve().parents[1] / "studies" / "zoo" / "arch-igan_seed-0"
    shutil.copytree(zoo, tmp_path / "run")  # the report caches into the run's folder
    plotted = _plotted(_section(write_report(tmp_path).read_text(), "run"))
    assert [title for title, _ in plotted] == ["Training", "FID", "Coverage and diversity",
                                               "Critic", "Involution kernels",
                                               "Spectra and gradients"]
    counts = {title: len(figures) for title, figures in plotted}
    assert counts == {"Training": 5, "FID": 1, "Coverage and diversity": 5, "Critic": 3,
                      "Involution kernels": 9, "Spectra and gradients": 5}
    critic = dict(dict(plotted)["Critic"])
    assert critic["D(real) and D(fake)"].split(", ") == [
        "critic/d_real_mean", "critic/d_fake_mean", "critic/d_real_std", "critic/d_fake_std"]


def test_cache_reused_and_invalidated_by_new_metrics(report, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(report["root"] / "sweep" / "dcgan", root / "dcgan")
    first = write_report(root).read_text()
    cached = sorted(root.rglob(CACHE_FILE))
    assert cached == [root / "dcgan" / CACHE_FILE]
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = write_report(root).read_text()
    assert [p.stat().st_mtime_ns for p in cached] == stamps  # nothing re-rendered
    write_report(tmp_path, tmp_path / "parent.html")  # the cache lives with the run: shared
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    strip = re.compile(r"generated [0-9: -]+")
    assert strip.sub("", again) == strip.sub("", first)
    # new readings make the diagnosis stale: re-diagnosed and re-rendered
    with open(root / "dcgan" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 33, "loss/critic": "nan", "wgan/distance": "nan"}) + "\n")
    page = write_report(root).read_text()
    rows = {html.unescape(n): v for n, v in ROW.findall(page)}
    assert rows["dcgan"] == "collapsed" == read_json(root / "dcgan/diagnosis.json")["verdict"]


def test_a_diagnosis_made_at_the_last_step_is_kept_whatever_its_time_stamp(report, tmp_path):
    """A clone or a copy stamps a run's files in any order: a diagnosis older than metrics.jsonl
    by its time stamp but made at its last step is the run's record, kept as it is (here one
    another detector's thresholds made); one made before the last step is recomputed."""
    run = tmp_path / "runs" / "dcgan"
    shutil.copytree(report["root"] / "sweep" / "dcgan", run)
    stored = read_json(run / "diagnosis.json")
    assert stored["last_step"] == read_metrics(run)[-1]["step"]
    other = {**stored, "thresholds": {**stored["thresholds"], "hold_share": 0.5}}
    past = time.time() - 3600
    for made_at in (stored["last_step"], stored["last_step"] - 1):
        (run / "diagnosis.json").write_text(json.dumps({**other, "last_step": made_at}))
        os.utime(run / "diagnosis.json", (past, past))
        write_report(run.parent)
        kept = read_json(run / "diagnosis.json")
        assert (kept == {**other, "last_step": made_at}) is (made_at == stored["last_step"])
    assert kept["thresholds"]["hold_share"] == stored["thresholds"]["hold_share"]
    assert kept["last_step"] == stored["last_step"]


def test_the_cache_key_covers_the_code_whose_text_is_cached():
    from probes import text
    from probes.collapse import state
    from reports.html import _code_files
    # a first sign's text (state.sign_text) and every number (text.number) are in the payload
    assert {Path(state.__file__), Path(text.__file__)} <= set(_code_files())


def test_logged_steps_are_counted_the_same_in_the_headline_and_the_footer(report):
    for name in ("sweep/igan", "sweep/dcgan"):
        section = _section(report["page"], name)
        records = len(read_metrics(report["root"] / name))
        assert records == 10  # 30 steps, logged every 3
        counts = re.findall(r"([\d,]+) logged steps \(up to step ([\d,]+)\)", section)
        assert counts and set(counts) == {("10", "30")}, (name, counts)
        assert f"{records} logged steps (up to step 30)</p>" in section  # the footer
        if read_json(report["root"] / name / "diagnosis.json")["verdict"] == "healthy":
            assert "Healthy: no event in 10 logged steps (up to step 30)" in section


def test_overview_figures_only_compare_runs(report, tmp_path):
    def overview(page: str) -> str:
        return page[:page.index('<section class="card run"')]

    many = overview(report["page"])  # two settings (dcgan, igan) among several runs
    assert 'alt="Collapse rate by inv-layers × norm"' in many and 'id="no-aggregates"' not in many
    shutil.copytree(report["root"] / "sweep" / "igan", tmp_path / "runs" / "igan",
                    ignore=shutil.ignore_patterns(CACHE_FILE))
    one = overview(write_report(tmp_path / "runs").read_text())
    assert "<img" not in one and 'class="aggregates"' not in one
    assert re.search(r'<p class="note" id="no-aggregates">No overview figures: they compare '
                     r'runs .*and this report has one', one)
    shutil.copytree(tmp_path / "runs" / "igan", tmp_path / "runs" / "igan-again")
    same_cell = overview(write_report(tmp_path / "runs").read_text())
    assert 'alt="Verdicts by arch"' in same_cell  # two runs: their verdicts compare
    assert 'alt="Collapse rate' not in same_cell  # one inv-layers × norm cell: nothing to compare


def _figure(section: str, title: str) -> str:
    """The <figure> of the plot captioned title in a run section."""
    start = section.index(f">{escape(title)}</figcaption>")
    return section[section.rindex("<figure", 0, start):section.index("</figure>", start)]


def test_a_constant_reading_gets_an_axis_around_its_value(tmp_path):
    run = tmp_path / "flat"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"arch": "igan"}}))
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(10, 101, 10):
            once = {"diversity/pairwise": 0.26} if step == 100 else {}
            f.write(json.dumps({"step": step, "loss/critic": -step / 10, "diversity/dup_rate": 0.0,
                                "critic/loss_ema": 1.0, **once}) + "\n")
    section = _section(write_report(tmp_path).read_text(), "flat")
    for title, value, note in (("diversity/dup_rate", "0", "constant 0"),
                               ("critic/loss_ema", "1", "constant 1"),
                               ("diversity/pairwise", "0.26", "one reading: 0.26")):
        figure = _figure(section, title)
        yticks = re.search(r'<div class="ticks y">(.*?)</div>', figure).group(1)
        assert re.findall(r">([^<]+)</span>", yticks) == [value], title  # one tick, the value
        assert f'<span class="flat">{note}</span>' in figure, title
    losses = _figure(section, "Losses · loss/critic")
    assert 'class="flat"' not in losses and len(re.findall(r'bottom:', losses)) >= 3


def test_per_layer_lines_get_a_legend_ranked_by_their_last_value(report):
    figure = _figure(_section(report["page"], "sweep/igan"), "spectra σ0 (largest singular value)")
    tags = html.unescape(re.search(r'<figcaption title="([^"]*)"', figure).group(1)).split(", ")
    assert '<ul class="legend ranked"' in figure and len(tags) >= 4
    items = re.findall(r'<li><i class="(solid|dashed|dotted)" style="--c:(#[0-9a-f]{6})"></i>'
                       r'([^<]*) · ([^<]*)</li>', figure)
    assert len(items) == len(tags)  # every layer named once
    assert sorted(html.unescape(layer) for _, _, layer, _ in items) == sorted(
        tag.split("/")[1] for tag in tags)
    values = [float(value.replace(",", "")) for _, _, _, value in items]
    assert values == sorted(values, reverse=True)  # top entry: the top line end
    for (style, color, _, _), (next_style, next_color, _, _) in zip(items, items[1:]):
        assert style != next_style and color != next_color  # neighbours differ in both
    metrics = read_metrics(report["root"] / "sweep" / "igan")
    last = {tag: [r[tag] for r in metrics if tag in r][-1] for tag in tags}
    assert max(last, key=last.get).split("/")[1] == html.unescape(items[0][2])


def test_an_untrained_grid_alone_is_labelled_so(report, tmp_path):
    run = tmp_path / "runs" / "early"
    shutil.copytree(report["root"] / "sweep" / "igan", run,
                    ignore=shutil.ignore_patterns(CACHE_FILE))
    for grid in run.glob("samples/step_*.png"):
        if grid.name != "step_000000.png":
            grid.unlink()
    section = _section(write_report(tmp_path / "runs").read_text(), "early")
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", section) == ["untrained · step 0"]


def test_empty_folder_gives_a_page(tmp_path):
    page = write_report(tmp_path, tmp_path / "out" / "r.html").read_text()
    assert "No run directory" in page and "<table" not in page


def test_downsample_keeps_spikes_and_gaps():
    steps = np.arange(5000)
    values = np.zeros(5000)
    values[2777], values[10] = 100.0, -5.0
    values[4000:4100] = np.nan
    s, v = downsample(steps, values, 400)
    assert len(s) <= 400 and (np.diff(s) >= 0).all()
    assert np.nanmax(v) == 100.0 and s[np.nanargmax(v)] == 2777
    assert np.nanmin(v) == -5.0 and np.isnan(v).any()
    short = steps[:50]
    assert downsample(short, values[:50], 400)[0] is short  # short series are not touched


def test_a_downsampled_band_is_drawn_at_its_own_steps():
    from reports.canvas import Canvas
    from reports.panels import Band, Line, Plot
    rng = np.random.default_rng(0)
    steps = np.arange(10, 10_001, 10)
    mid = np.cumsum(rng.normal(0, 1, steps.size))
    lo, hi = mid - rng.uniform(0.1, 3, steps.size), mid + rng.uniform(0.1, 3, steps.size)
    canvas = Canvas()
    canvas.render(Plot("band", [Line("mid", steps, mid)], [Band(steps, lo, hi, "band")]),
                  None, None)
    [fill] = canvas.ax.collections
    vertices = fill.get_paths()[0].vertices  # start, the lo edge, end, the hi edge back, close
    n = (len(vertices) - 3) // 2
    lower, upper = vertices[1:n + 1], vertices[n + 2:2 * n + 2][::-1]
    assert (lower[:, 0] == upper[:, 0]).all() and (np.diff(lower[:, 0]) > 0).all()
    at = np.searchsorted(steps, lower[:, 0])
    assert (steps[at] == lower[:, 0]).all()
    assert (lower[:, 1] == lo[at]).all() and (upper[:, 1] == hi[at]).all()
    assert (lower[:, 1] <= upper[:, 1]).all()
    assert lower[:, 1].min() == lo.min() and upper[:, 1].max() == hi.max()


def test_bench_report_prints_cold_and_warm_medians(tmp_path):
    result = stabgan_cli("bench", "report", "--runs", "2", "--steps", "60", "--repeats", "2",
                         "--dir", str(tmp_path / "bench"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"report over 2 runs, median of 2: cold [\d.]+ s wall", result.stdout)
    assert (tmp_path / "bench" / "report.html").is_file()


def test_reports_never_import_the_trainer():
    code = ("import sys, reports, reports.bench\n"
            "bad = [m for m in ('stabgan.train', 'torch') if m in sys.modules]\n"
            "assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _chromium(url: str, shot: Path, size=(1280, 2000)) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}",
         f"--window-size={size[0]},{size[1]}", url],
        capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    """Chromium's console lines (console.*, uncaught errors, blocked loads) from --v=0 logging."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.slow
def test_cli_report_renders_in_chromium_without_console_errors(report, tmp_path):
    if not shutil.which("chromium"):
        pytest.fail("chromium is not installed (.ci/run installs it)")
    out = tmp_path / "report.html"
    result = stabgan_cli("report", str(report["root"]), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)

    # the harness sees console errors: a page with one must be caught
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><p>x</p><script>console.error('e'); missing();</script>")
    caught = _console(_chromium(bad.as_uri(), tmp_path / "b.png").stderr)
    assert any("Uncaught" in line for line in caught), caught

    shot = tmp_path / "shot.png"
    run = _chromium(out.as_uri(), shot)
    assert shot.is_file(), run.stderr
    assert _console(run.stderr) == []
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    ink = (pixels.astype(int).sum(axis=1) < 600).mean()  # text, lines, badges: not blank
    assert ink > 0.01 and len(np.unique(pixels @ np.array([65536, 256, 1]))) > 500
    collapsed_red = np.array([0xc6, 0x28, 0x28])
    assert (np.abs(pixels.astype(int) - collapsed_red).sum(axis=1) < 12).sum() > 50  # badges drawn
