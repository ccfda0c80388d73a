"""Collapse detection: synthetic series with known onsets, healthy noise, the run directory,
the trainer's online detection (a real tiny run with a NaN injected) and `stabgan diagnose`."""
from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from probes.base import Probe
from probes.objectives import WGAN_GP
from probes.collapse import (KINDS, SAMPLE_GRADED_KINDS, NONFINITE_WEIGHTS, DetectorState,
                             series_by_step, OnlineDetector, Thresholds, detect, diagnose_run,
                             format_diagnosis, judge_run, make_diagnosis, sign_text, verdict)
from probes.rundir.files import (CHECKPOINTS, DIAGNOSIS, METRICS, PRE_COLLAPSE_CHECKPOINT, SUMMARY,
                                 read_json, read_metrics, write_json)
from probes.text import number
from stabgan.cli import cli
from stabgan.faults import InjectNaN

LOG_EVERY = 10
STEPS = 1200
T = Thresholds()
# An abrupt change is dated exactly; a gradual one (exponential growth or decay) is dated when
# it has crossed the collapse threshold: within this many steps of the true onset.
GRADUAL_TOLERANCE = 200


# --------------------------------------------------------------------------- synthetic runs

def healthy_series(seed: int, steps: int = STEPS, every: int = LOG_EVERY) -> dict:
    """A noisy healthy WGAN-GP run with every detector's tags: an early transient, slow drifts,
    20% multiplicative noise and rare single-point spikes of 3×."""
    rng = random.Random(seed)

    def noisy(x, rel=0.2):
        spike = 3.0 if rng.random() < 0.02 else 1.0
        return x * spike * math.exp(rng.gauss(0, rel))

    series: dict[str, tuple[list, list]] = {}

    def add(tag, step, value):
        steps_, values = series.setdefault(tag, ([], []))
        steps_.append(step)
        values.append(value)

    for step in range(every, steps + 1, every):
        u = step / steps
        distance = 30 * min(1.0, step / 40) * (1 - 0.6 * u) + 2
        add("wgan/distance", step, noisy(distance))
        add("loss/critic", step, -noisy(distance) + noisy(1.0, 0.5))
        add("loss/generator", step, rng.gauss(0, 20) + 40 * u)  # drifts freely in WGAN
        add("gp/norm_mean", step, noisy(1.2, 0.15))
        add("gp/norm_p50", step, noisy(1.2, 0.15))
        add("gp/norm_p95", step, noisy(2.0, 0.25))
        add("coverage/modes", step, min(10, max(0, round(3 + 7 * u + rng.gauss(0, 1)))))
        add("coverage/kl", step, abs(noisy(1.5 * (1 - u) + 0.1, 0.15)))
        add("diversity/pairwise", step, noisy(8 - 2 * u, 0.1))
        add("diversity/dup_rate", step, min(1.0, abs(rng.gauss(0.02, 0.02))))
        for layer in ("g.inv0", "g.inv1"):
            add(f"kernel/{layer}/entropy", step, noisy(2.0 - 0.5 * u, 0.1))
            add(f"kernel/{layer}/spatial_var", step, noisy(0.3, 0.3))
            add(f"kernel/{layer}/near_zero", step, min(1.0, noisy(0.1, 0.3)))
            add(f"kernel/{layer}/max_abs", step, noisy(2.0 + 3 * u, 0.3))
        add("spectra/critic.conv1/sigma0", step, noisy(3.0 + 4 * u, 0.1))
        add("spectra/generator.deconv1/sigma0", step, noisy(5.0, 0.1))
        add("time/step_s", step, noisy(0.1))
    # the quality readings, from their own generator so the others stay as they were: the
    # samples reach the data within the first fifth of the run, FID falls to a floor
    quality = random.Random(seed + 1000)
    for step in range(every, steps + 1, every):
        u = step / steps
        reach = 0.1 + 0.8 * min(1.0, u / 0.2)
        add("diversity/coverage", step, min(1.0, max(0.0, reach + quality.gauss(0, 0.05))))
        if step % (4 * every) == 0:  # a sparse reading, as the FID probe's
            add("fid/domain", step, (20 + 180 * math.exp(-6 * u)) * math.exp(quality.gauss(0, 0.08)))
    return series


def modify(series: dict, tag: str, onset: int, f) -> dict:
    """series with tag's values from onset on replaced by f(old value, steps since onset)."""
    steps, values = series[tag]
    series[tag] = (steps, [f(v, s - onset) if s >= onset else v for s, v in zip(steps, values)])
    return series


def truncate(series: dict, last: int) -> dict:
    return {tag: ([s for s in steps if s <= last], [v for s, v in zip(steps, values) if s <= last])
            for tag, (steps, values) in series.items()}


def only(events, severity="collapse"):
    return [e for e in events if e["severity"] == severity]


def without_samples(series: dict) -> dict:
    """series without the sample readings (coverage, diversity): the samples are not measured."""
    return {tag: s for tag, s in series.items() if not tag.startswith(("coverage/", "diversity/"))}


# --------------------------------------------------------------------------- healthy: no event

@pytest.mark.parametrize("seed", range(12))
def test_noisy_healthy_series_raise_no_event(seed):
    events = detect(healthy_series(seed))
    assert events == [], [e["message"] for e in events]


def test_a_short_run_and_missing_tags_say_nothing():
    assert detect({}) == []
    assert detect({"time/step_s": ([10, 20], [0.1, 0.2])}) == []
    short = truncate(healthy_series(0), (T.warmup_points + T.baseline_min_points) * LOG_EVERY)
    assert detect(modify(short, "wgan/distance", 100, lambda v, d: v * 1000)) == []
    # only the core readings: the probe-based detectors stay silent
    core = {t: s for t, s in healthy_series(1).items() if t.split("/")[0] in ("loss", "wgan")}
    assert detect(core) == []


# --------------------------------------------------------------------------- every kind, known onset

ONSET = 700


def _nan(series):
    series = truncate(series, ONSET)  # the trainer stops at the first non-finite loss
    return modify(series, "loss/critic", ONSET, lambda v, d: math.nan)


def _nan_weights(series):
    series = truncate(series, ONSET)
    series[NONFINITE_WEIGHTS] = ([ONSET], [12.0])
    return series


CASES = {
    # kind: (build the failing series, gradual?)
    "nan": (_nan, False),
    "nan weights": (_nan_weights, False),
    "divergence": (lambda s: modify(s, "wgan/distance", ONSET, lambda v, d: v * 3 * 2 ** (d / 20)), True),
    "divergence (critic loss, abrupt)": (lambda s: modify(s, "loss/critic", ONSET, lambda v, d: v * 40), False),
    "gp_blowup": (lambda s: modify(s, "gp/norm_mean", ONSET, lambda v, d: v * 20), False),
    "gp_blowup (norms to 0)": (lambda s: modify(s, "gp/norm_p50", ONSET, lambda v, d: v * 0.02), False),
    "mode_collapse": (lambda s: modify(s, "coverage/modes", ONSET, lambda v, d: 2), False),
    "mode_collapse (duplicates)": (lambda s: modify(s, "diversity/dup_rate", ONSET, lambda v, d: 0.8), False),
    "mode_collapse (kl)": (lambda s: modify(s, "coverage/kl", ONSET, lambda v, d: 2.3), False),
    "mode_collapse (diversity)": (lambda s: modify(s, "diversity/pairwise", ONSET, lambda v, d: v * 0.2), False),
    "kernel_collapse": (lambda s: modify(s, "kernel/g.inv1/entropy", ONSET, lambda v, d: v * 0.5 ** (d / 20)), True),
    "kernel_collapse (spatial variance)": (lambda s: modify(s, "kernel/g.inv0/spatial_var", ONSET, lambda v, d: 1e-5), False),
    "kernel_collapse (dead taps)": (lambda s: modify(s, "kernel/g.inv0/near_zero", ONSET, lambda v, d: 0.999), False),
    "kernel_collapse (saturation)": (lambda s: modify(s, "kernel/g.inv0/max_abs", ONSET, lambda v, d: v * 500), False),
    "spectral_explosion": (lambda s: modify(s, "spectra/critic.conv1/sigma0", ONSET, lambda v, d: v * 2 ** (d / 20)), True),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_kind_is_detected_at_its_onset(case, seed):
    build, gradual = CASES[case]
    kind = case.split(" ")[0]
    series = healthy_series(seed)
    if kind in SAMPLE_GRADED_KINDS:  # with the samples unmeasured, it is the run's collapse
        series = without_samples(series)
    events = detect(build(series))
    collapses = only(events)
    assert [e["kind"] for e in collapses] == [kind], [e["message"] for e in events]
    event = collapses[0]
    if gradual:
        assert ONSET <= event["step"] <= ONSET + GRADUAL_TOLERANCE
    else:
        assert event["step"] == ONSET
    confirmed_after = event["evidence"]["detected_step"] - event["step"]
    if kind == "nan":
        assert confirmed_after == 0
    elif gradual:  # out-of-band points may be interrupted by sustain_gaps in-band ones
        assert confirmed_after <= (T.sustain_points + T.sustain_gaps - 1) * LOG_EVERY
    else:
        assert confirmed_after == (T.sustain_points - 1) * LOG_EVERY
    assert event["message"].startswith(f"collapsed at step {event['step']:,}: ")
    assert verdict(events) == ("collapsed", event["step"])


def test_a_run_that_never_covers_the_data_collapses_after_the_patience():
    """diversity/coverage starts low in every run: only a long stretch low is an event, and
    it needs no better past to fall from."""
    series = modify(healthy_series(4), "diversity/coverage", 0, lambda v, d: 0.12)
    [event] = detect(series)
    first_judged = (T.warmup_points + T.baseline_min_points + 1) * LOG_EVERY
    assert (event["kind"], event["severity"], event["step"]) == ("low_coverage", "collapse",
                                                                 first_judged)
    # confirmed once patience_share of the patience's points are low
    low_points = math.ceil(T.patience_share * T.cover_patience)
    assert event["evidence"]["detected_step"] == first_judged + (low_points - 1) * LOG_EVERY
    assert event["message"] == ("collapsed at step 120: low coverage of the data (diversity/"
                                f"coverage low at {low_points} readings in "
                                f"{low_points * LOG_EVERY} steps, down to 0.12; the data "
                                "itself: 1)")
    # a slow starter that reaches the data before that is healthy
    slow = modify(healthy_series(4), "diversity/coverage", 0,
                  lambda v, d: 0.2 if d < (low_points - 5) * LOG_EVERY else v)
    assert detect(slow) == []

    # and so is one that crosses the level every other reading (half of them low), however
    # long; a generator hopping between modes, above it one reading in three or five, is not
    def crossing(every):
        return modify(healthy_series(4), "diversity/coverage", 0,
                      lambda v, d: 0.6 if d // LOG_EVERY % every == 0 else 0.3)
    assert detect(crossing(2)) == []
    for every in (3, 5):
        [event] = detect(crossing(every))
        first_low = next(step for step in range(first_judged, 10 ** 6, LOG_EVERY)
                         if step // LOG_EVERY % every)
        assert (event["kind"], event["severity"], event["step"]) == ("low_coverage", "warning",
                                                                     first_low)


@pytest.mark.parametrize("coverage, steps, found", [
    # low at 65 readings of the stretch's 80, past patience_share: a warning (the run ends
    # before hold_share of it is)
    (lambda d: 0.4, 1350, [("warning", False)]),
    # low at every point of the stretch: stuck, a collapse
    (lambda d: 0.4, 2000, [("collapse", True), ("warning", False)]),
    # ... but at nine of every ten, rising past cover_warn once in a while, a warning: the
    # hold takes every point (stuck runs that hop fall to cover_collapse too, below)
    (lambda d: 0.6 if d // LOG_EVERY % 10 == 9 else 0.4, 2000, [("warning", False)]),
    # ... and at collapse level at most of them, rising past cover_warn now and then: a
    # collapse by its level
    (lambda d: 0.6 if d // LOG_EVERY % 4 == 3 else 0.1, 2000, [("collapse", False)]),
    # rising past cover_warn at one reading in five (learning, or hopping among many modes): a
    # warning
    (lambda d: 0.6 if d // LOG_EVERY % 5 == 4 else 0.4, 2000, [("warning", False)]),
    # below cover_collapse: a collapse as soon as a warning would be
    (lambda d: 0.1, 1400, [("collapse", False)])])
def test_coverage_lost_part_way_is_graded_by_its_level_and_how_long_it_holds(coverage, steps,
                                                                             found):
    series = modify(healthy_series(5, steps=steps), "diversity/coverage", ONSET,
                    lambda v, d: coverage(d))
    events = sorted((e for e in detect(series) if e["kind"] == "low_coverage"),
                    key=lambda e: e["severity"])
    assert [(e["severity"], e["evidence"]["held"]) for e in events] == found
    assert {e["step"] for e in events} == {ONSET}
    # the coverage is read every logged step here: the stretch is cover_patience readings
    detected = [e["evidence"]["detected_step"] for e in events]
    share = T.hold_share if events[0]["evidence"]["held"] else T.patience_share
    steady = len({coverage(d) for d in range(0, steps, LOG_EVERY)}) == 1
    assert not steady or detected[0] == ONSET + (math.ceil(share * T.cover_patience) - 1
                                                 ) * LOG_EVERY
    if events[0]["evidence"]["held"]:
        held = math.ceil(T.hold_share * T.cover_patience)
        assert f"held low at {held} readings in {held * LOG_EVERY} steps" in events[0][
            "message"] or not steady
        assert detected[0] > detected[1]  # after its warning


def test_coverage_low_since_judging_began_is_held_as_soon_as_it_is_warned():
    """A run that never covers the data, judged for fewer readings than its stretch (a short
    run): every reading judged so far low is a held collapse, confirmed when the warning
    would be, not once the whole stretch has passed."""
    t = T.for_run(500, LOG_EVERY)  # the stretch: 28 readings, the warning's count 21
    series = modify(healthy_series(5, steps=500), "diversity/coverage", 0, lambda v, d: 0.3)
    [held] = [e for e in detect(series, t) if e["kind"] == "low_coverage"]
    assert held["severity"] == "collapse" and held["evidence"]["held"]
    warned = held["step"] + (math.ceil(t.patience_share * t.cover_patience) - 1) * LOG_EVERY
    assert held["evidence"]["detected_step"] == warned
    assert f"held low at {math.ceil(t.patience_share * t.cover_patience)} readings" \
        in held["message"]


RECOVERED_AT = ONSET + 1200  # a slow learner's coverage: stuck from ONSET, back from here


def recovered_series(seed: int = 5) -> dict:
    """A run whose coverage stays at 0.1 from ONSET (a collapse) and is back at RECOVERED_AT."""
    return modify(healthy_series(seed, steps=2400), "diversity/coverage", ONSET,
                  lambda v, d: 0.1 if d < RECOVERED_AT - ONSET else v)


def test_a_run_whose_samples_come_back_after_its_collapse_has_recovered(tmp_path):
    series = recovered_series()
    online = OnlineDetector(tmp_path)
    verdicts = {}
    for step, scalars in series_by_step(series).items():
        online.update(step, scalars)
        verdicts[step] = (online.verdict, read_json(tmp_path / DIAGNOSIS)["verdict"])
    # collapsed until the samples have been back for most of the latest recover_points
    # readings, and the collapsed ones have left them (but recover_collapsed), then unstable
    told = RECOVERED_AT + (max(T.recover_needed, T.recover_points - T.recover_collapsed) - 1
                           ) * LOG_EVERY
    assert verdicts[told - LOG_EVERY] == ("collapsed", "collapsed")
    assert verdicts[told] == ("unstable", "unstable")
    online.close()
    diagnosis = read_json(tmp_path / DIAGNOSIS)
    assert diagnosis == _replayed(series)  # online as offline
    assert (diagnosis["verdict"], diagnosis["onset_step"]) == ("unstable", None)
    [collapse] = only(diagnosis["events"])
    assert (collapse["kind"], collapse["step"]) == ("low_coverage", ONSET)
    recovery = diagnosis["recovery"]
    assert (recovery["collapsed_at"], recovery["kinds"], recovery["step"],
            recovery["detected_step"]) == (ONSET, ["low_coverage"], RECOVERED_AT, told)
    assert set(recovery["readings"]) == {"coverage/modes", "coverage/kl", "diversity/pairwise",
                                         "diversity/dup_rate", "diversity/coverage"}
    assert f"unstable (collapsed at step {ONSET:,} (low_coverage), recovered: the sample " \
           f"readings back in band from step {RECOVERED_AT:,} (" in format_diagnosis(diagnosis)
    # the samples falling again end the recovery: collapsed at the first collapse's onset
    fell = _replayed(modify(series, "diversity/coverage", 2000, lambda v, d: 0.3))
    assert (fell["verdict"], fell["onset_step"], fell["recovery"]) == ("collapsed", ONSET, None)
    # a collapse the samples did not show is not over when they are in band
    diverged = _replayed(modify(dict(series), "loss/critic", 1000, lambda v, d: v * 100))
    assert {e["kind"] for e in only(diverged["events"])} == {"low_coverage", "divergence"}
    assert (diverged["verdict"], diverged["recovery"]) == ("collapsed", None)
    # too short a stretch back in band is no recovery
    brief = _replayed(truncate(series, told - LOG_EVERY))
    assert (brief["verdict"], brief["recovery"]) == ("collapsed", None)


@pytest.mark.parametrize("low, recovered", [(1, True), (3, True), (4, False)])
def test_a_generator_back_on_its_modes_but_hopping_has_recovered_while_some_readings_are_back(
        low, recovered):
    """Coverage back after the collapse but low again (above the collapse level) at `low` of
    every 5 readings (a generator hopping between modes, reading about the warning level on
    6 of 8): recovered while recover_share of the latest recover_points readings are in band
    (2 of 5), not while fewer are."""
    assert T.recover_needed == 2 and T.recover_points == 5
    series = recovered_series()
    steps, values = series["diversity/coverage"]
    back = [i for i, step in enumerate(steps) if step >= RECOVERED_AT]
    hopping = list(values)
    for n, i in enumerate(back):
        if n % 5 < low:
            hopping[i] = 0.3
    diagnosis = _replayed({**series, "diversity/coverage": (steps, hopping)})
    assert diagnosis["verdict"] == ("unstable" if recovered else "collapsed")
    assert (diagnosis["recovery"] is not None) == recovered


@pytest.mark.parametrize("collapsed, recovered", [(0, False), (1, True)])
def test_a_generator_back_on_its_modes_but_falling_to_one_or_two_has_not_recovered(
        collapsed, recovered):
    """Coverage back after the collapse but at collapse level again at one of every 5
    readings (a generator still falling onto a mode or two among good readings): most of the
    latest recover_points readings are in band, but one of them has collapsed, so the run is
    hopping, not back, unless recover_collapsed lets one in."""
    series = recovered_series()
    steps, values = series["diversity/coverage"]
    fallen = [0.1 if step >= RECOVERED_AT and step // LOG_EVERY % T.recover_points == 0
              else v for step, v in zip(steps, values)]
    diagnosis = _replayed({**series, "diversity/coverage": (steps, fallen)},
                          replace(T, recover_collapsed=collapsed))
    assert diagnosis["verdict"] == ("unstable" if recovered else "collapsed")
    assert (diagnosis["recovery"] is not None) == recovered
    assert diagnosis["thresholds"]["recover_collapsed"] == collapsed


@pytest.mark.parametrize("factor, severity", [(2.0, "warning"), (5.0, "collapse")])
def test_fid_rising_over_its_best_is_a_quality_regression(factor, severity):
    series = modify(healthy_series(6), "fid/domain", ONSET, lambda v, d: v * factor)
    [event] = detect(series)
    first_reading = next(s for s in series["fid/domain"][0] if s >= ONSET)
    assert (event["kind"], event["severity"], event["step"]) == ("quality_regression", severity,
                                                                 first_reading)
    assert event["evidence"]["detected_step"] == first_reading + 4 * LOG_EVERY  # 2 readings
    assert event["evidence"]["reference"] == "best_min"
    assert event["evidence"]["value"] / event["evidence"]["baseline"] >= factor * 0.8


def test_sparse_tags_are_judged_on_their_own_cadence():
    """σ0 and diversity are read every 100 steps by default: fewer points, same steps."""
    series = healthy_series(12)
    for tag in ("spectra/critic.conv1/sigma0", "diversity/pairwise"):
        steps, values = series[tag]
        series[tag] = (steps[9::10], values[9::10])
    assert detect(series) == []
    exploded = modify(dict(series), "spectra/critic.conv1/sigma0", 800, lambda v, d: v * 1000)
    [event] = detect(exploded)
    assert (event["kind"], event["step"], event["evidence"]["detected_step"]) == (
        "spectral_explosion", 800, 900)  # 2 sustained points
    collapsed = modify(dict(series), "diversity/pairwise", 800, lambda v, d: v * 0.1)
    assert [(e["kind"], e["step"]) for e in only(detect(collapsed))] == [("mode_collapse", 800)]


def test_divergence_message_names_tags_and_numbers():
    series = modify(healthy_series(3, steps=2400), "wgan/distance", 1840, lambda v, d: 412.0)
    series = modify(series, "gp/norm_p95", 1840, lambda v, d: 9.7)
    events = only(detect(series))
    divergence = [e for e in events if e["kind"] == "divergence"][0]
    assert divergence["step"] == 1840
    message = divergence["message"]
    assert message.startswith("collapsed at step 1,840: critic divergence (wgan/distance ")
    assert "→ 412 within " in message and "gp/norm_p95 9.7)" in message
    evidence = divergence["evidence"]
    assert evidence["tag"] == "wgan/distance" and evidence["value"] == 412.0
    assert evidence["context"]["gp/norm_p95"] == 9.7
    # the band at confirmation: the 10 points that had joined it, `baseline_lag` points behind
    last = evidence["detected_step"] - T.baseline_lag * LOG_EVERY
    assert evidence["baseline_steps"] == [last - (T.baseline_points - 1) * LOG_EVERY, last]


def test_a_moderate_sustained_excursion_is_a_warning_only():
    series = modify(healthy_series(4), "wgan/distance", 600, lambda v, d: v * 8)
    events = detect(series)
    assert [(e["kind"], e["severity"], e["step"]) for e in events] == [("divergence", "warning", 600)]
    assert verdict(events) == ("unstable", None)


def test_one_in_band_point_does_not_hide_a_sustained_excursion():
    dips = {730, 770}  # in band for one point in every sustain window
    series = modify(healthy_series(13), "loss/critic", ONSET,
                    lambda v, d: v if ONSET + d in dips else v * 50)
    [event] = only(detect(series))
    assert (event["kind"], event["step"]) == ("divergence", ONSET)
    assert event["evidence"]["detected_step"] == ONSET + T.sustain_points * LOG_EVERY
    strict = Thresholds(sustain_gaps=0)
    assert only(detect(series, strict))[0]["step"] == 780  # the first 5 uninterrupted points


def test_single_point_spikes_are_not_sustained():
    series = healthy_series(5)
    for at in (400, 700, 1000):
        series = modify(series, "wgan/distance", at, lambda v, d: v * 1000 if d == 0 else v)
    assert detect(series) == []


def test_thresholds_are_frozen_validated_and_used():
    with pytest.raises(Exception):
        T.sustain_points = 2
    with pytest.raises(ValueError, match="gp_warn"):
        Thresholds(gp_warn=20.0)
    with pytest.raises(ValueError, match="sustain_points"):
        Thresholds(sustain_points=0)
    with pytest.raises(ValueError, match="outpace_share"):
        Thresholds(outpace_share=0.0)
    with pytest.raises(ValueError, match="outpace_warn"):
        Thresholds(outpace_warn=2.0)  # above outpace_collapse
    with pytest.raises(ValueError, match="hold_share"):
        Thresholds(hold_share=1.5)
    with pytest.raises(ValueError, match="hold_share=0.5"):
        Thresholds(hold_share=0.5)  # below patience_share: a collapse before its warning
    with pytest.raises(ValueError, match="recover_points=0"):
        Thresholds(recover_points=0)
    with pytest.raises(ValueError, match="recover_share=0"):
        Thresholds(recover_share=0)
    with pytest.raises(ValueError, match="recover_collapsed=-1"):
        Thresholds(recover_collapsed=-1)
    with pytest.raises(ValueError, match="recover_collapsed=6"):
        Thresholds(recover_collapsed=6)  # more than the readings it is counted in
    assert (Thresholds(recover_share=1.0).recover_needed, T.recover_needed,
            Thresholds(recover_points=1).recover_needed) == (5, 2, 1)
    series = modify(healthy_series(6), "wgan/distance", 600, lambda v, d: v * 8)
    assert only(detect(series, Thresholds(divergence_warn=1.5, divergence_collapse=2.5)))
    assert set(KINDS) == {"nan", "divergence", "gp_blowup", "mode_collapse", "low_coverage",
                          "oscillation", "quality_regression", "kernel_collapse",
                          "spectral_explosion", "overfitting"}


# --------------------------------------------------------------------------- the tracking band

def transient_series(seed: int, steps: int = 2400) -> dict:
    """A quick run's shape: wgan/distance climbs to ~40 by step 50 and decays to ~3 by step
    1,000 (the critic loss mirrors it), GP norms settle from ~2 to ~1.1; 5 % noise."""
    rng = random.Random(seed)
    series: dict[str, tuple[list, list]] = {}

    def add(tag, step, value):
        steps_, values = series.setdefault(tag, ([], []))
        steps_.append(step)
        values.append(value * math.exp(rng.gauss(0, 0.05)))

    for step in range(LOG_EVERY, steps + 1, LOG_EVERY):
        level = 3 + 37 * min(1.0, step / 50) * math.exp(-max(0, step - 50) / 250)
        add("wgan/distance", step, level)
        add("loss/critic", step, -level)
        add("gp/norm_mean", step, 1.1 + 0.9 * math.exp(-step / 300))
        add("kernel/g.inv1/max_abs", step, 1.5)
        add("grad/d.body.1.0", step, 0.8)
    return series


@pytest.mark.parametrize("seed", range(4))
def test_the_band_follows_the_transient_and_judges_a_late_failure_against_the_run_before(seed):
    assert detect(transient_series(seed)) == []  # the transient itself raises nothing
    # late, the distance leaves ~3 for ~20: under 3× the transient's early level (the old
    # fixed baseline of points 2–11 saw nothing), ×6 of the run just before
    late = modify(transient_series(seed), "wgan/distance", 1800, lambda v, d: v * 6)
    [event] = detect(late)
    assert (event["kind"], event["severity"], event["step"]) == ("divergence", "warning", 1800)
    evidence = event["evidence"]
    assert 2.5 < evidence["baseline"] < 3.6  # the band the run had just before
    assert 1800 - 400 < evidence["baseline_steps"][0] < evidence["baseline_steps"][1] < 1800
    far = modify(transient_series(seed), "wgan/distance", 1800, lambda v, d: v * 15)
    assert verdict(detect(far)) == ("collapsed", 1800)


def test_first_signs_are_the_precursors_in_time_order_with_layer_lead_and_size():
    series = transient_series(5)
    series = modify(series, "kernel/g.inv1/max_abs", 1520, lambda v, d: v * 12)
    series = modify(series, "grad/d.body.1.0", 1700, lambda v, d: v * 5)
    series = modify(series, "wgan/distance", 1840, lambda v, d: v * 40)
    [collapse] = only(detect(series))
    assert (collapse["kind"], collapse["step"]) == ("divergence", 1840)
    signs = collapse["first_signs"]
    assert [(s["tag"], s["step"], s["layer"], s["lead"]) for s in signs] == [
        ("kernel/g.inv1/max_abs", 1520, "g.inv1", 320),
        ("grad/d.body.1.0", 1700, "d.body.1.0", 140),
        ("wgan/distance", 1840, None, 0)]
    assert signs[0]["factor"] == pytest.approx(12, rel=0.25)
    assert signs[1]["factor"] == pytest.approx(5, rel=0.25)
    assert collapse["message"].startswith("collapsed at step 1,840: critic divergence (")
    assert "; first sign at step 1,520: kernel/g.inv1/max_abs ×1" in collapse["message"]
    text = format_diagnosis(make_diagnosis(detect(series)))
    assert ("first signs: step 1,520 kernel/g.inv1/max_abs ×" in text
            and "[g.inv1], 320 steps before; step 1,700 grad/d.body.1.0 ×" in text)


def test_the_order_of_a_steps_tags_changes_nothing():
    series = transient_series(5)
    series = modify(series, "kernel/g.inv1/max_abs", 1520, lambda v, d: v * 12)
    series = modify(series, "grad/d.body.1.0", 1520, lambda v, d: v * 5)
    series = modify(series, "wgan/distance", 1840, lambda v, d: v * 40)
    reversed_tags = DetectorState()
    for step, scalars in series_by_step(series).items():
        reversed_tags.update(step, dict(reversed(scalars.items())))
    events = detect(series)
    assert [len(e["first_signs"]) for e in events] == [2, 2]  # two signs at the same step
    assert reversed_tags.events == events


def test_a_tag_back_in_band_or_at_a_new_level_is_no_first_sign():
    series = transient_series(6)
    # a blip that ended before the failure, and a level shift long before it
    series = modify(series, "kernel/g.inv1/max_abs", 1300, lambda v, d: v * 12 if d < 50 else v)
    series = modify(series, "grad/d.body.1.0", 900, lambda v, d: v * 5)
    series = modify(series, "wgan/distance", 1840, lambda v, d: v * 40)
    [collapse] = only(detect(series))
    assert [s["tag"] for s in collapse["first_signs"]] == ["wgan/distance"]
    assert "first sign" not in collapse["message"]  # its own tag at the onset: nothing new


@pytest.mark.parametrize("tag", ["kernel/g.inv0/max_abs", "spectra/g.inv0/sigma0",
                                 "grad/g.inv0"])
def test_a_magnitude_at_zero_is_an_excursion_and_never_the_band(tag):
    # judged on ln x: 40 points at 0 (ln 0 = −inf, longer than rebase_points) once re-based
    # the band onto −inf, and the next point divided by its zero centre
    rng = random.Random(0)
    state = DetectorState()
    for i in range(1, 131):
        level = 1.0 if i <= 40 or 80 < i <= 120 else 0.0 if i <= 80 else 20.0
        state.update(10 * i, {tag: level * math.exp(rng.gauss(0, 0.05))})
        if i == 80:
            sign = state.watching()
            assert (sign["tag"], sign["step"], sign["value"], sign["factor"]) == (tag, 410, 0, 0)
            assert sign_text(sign).endswith(" → 0")
    # the band is still the run's level of about 1: ×20 is judged against it
    sign = state.watching()
    assert (sign["step"], sign["factor"]) == (1210, pytest.approx(20, rel=0.2))
    if tag.startswith("grad/"):  # no rule
        assert state.events == []
    else:
        [event] = state.events
        assert (event["severity"], event["step"]) == ("warning", 1210)
        assert event["evidence"]["baseline"] == pytest.approx(1, rel=0.1)


def test_a_degenerate_layer_is_a_warning_while_the_samples_are_fine():
    series = modify(healthy_series(14), "kernel/g.inv0/near_zero", ONSET, lambda v, d: 0.999)
    [event] = detect(series)
    assert (event["kind"], event["severity"], event["step"]) == ("kernel_collapse", "warning",
                                                                 ONSET)
    assert event["evidence"]["layer"] == "g.inv0" and "graded" in event["evidence"]
    assert "kernel saturation in g.inv0 (" in event["message"] and "samples unaffected" in \
        event["message"]
    assert verdict([event]) == ("unstable", None)
    # the same layer while the samples lose their diversity: a collapse
    hurt = modify(dict(series), "diversity/pairwise", ONSET - 100, lambda v, d: v * 0.5)
    kinds = {(e["kind"], e["severity"]) for e in detect(hurt)}
    assert {("kernel_collapse", "collapse"), ("mode_collapse", "warning")} <= kinds


def test_a_first_sign_of_a_best_so_far_tag_is_sized_against_that_best():
    # coverage declining slowly (its band follows it down), then falling: the sign's baseline
    # is the best coverage, not the band's level just before the fall
    series = modify(healthy_series(2), "coverage/modes", 600,
                    lambda v, d: 2 if d >= 500 else max(2.0, 9 - d / 40))
    state = DetectorState()
    state.replay(series)
    signs = [s for e in state.events for s in e["first_signs"] if s["tag"] == "coverage/modes"]
    band = state._tracks["coverage/modes"].band.center
    assert signs and band < 7 and all(s["baseline"] >= 8 for s in signs), (band, signs)
    assert sign_text(signs[0]).startswith(f"coverage/modes {number(signs[0]['baseline'])} → ")


def test_a_penalty_that_does_not_hold_is_a_warning_while_the_samples_are_fine():
    # a too-weak λ: ‖∇D(x̂)‖ far from 1 from the start, the samples as healthy as ever
    series = modify(healthy_series(3), "gp/norm_mean", ONSET, lambda v, d: v * 20)
    [event] = detect(series)
    assert (event["kind"], event["severity"], event["step"]) == ("gp_blowup", "warning", ONSET)
    assert "critic's gradient penalty" in event["evidence"]["graded"]
    assert "samples unaffected" in event["message"] and "layer" not in event["message"]
    assert verdict([event]) == ("unstable", None)
    # the samples losing their classes as well: a collapse
    hurt = modify(dict(series), "coverage/modes", ONSET - 100, lambda v, d: 2)
    assert ("gp_blowup", "collapse") in {(e["kind"], e["severity"]) for e in detect(hurt)}


def test_a_penalty_off_from_the_first_step_is_flagged_before_the_band_window_fills():
    # critic batch norm, a too-weak λ: ‖∇D(x̂)‖ ~6 from the first step; the first band is made
    # of baseline_min_points points, and the absolute rule (far from 1) judges the next one
    series = modify(healthy_series(5), "gp/norm_mean", 0, lambda v, d: v * 5)
    [event] = detect(series)
    first_judged = (T.warmup_points + T.baseline_min_points + 1) * LOG_EVERY
    assert (event["kind"], event["step"]) == ("gp_blowup", first_judged)
    assert first_judged < (T.warmup_points + T.baseline_points) * LOG_EVERY
    # the window went on filling up: a later event's band is baseline_points points wide
    late = detect(modify(healthy_series(5), "wgan/distance", 1000, lambda v, d: v * 30))
    first, last = late[0]["evidence"]["baseline_steps"]
    assert last - first == (T.baseline_points - 1) * LOG_EVERY


def _spike(series: dict, at: int, points: int, samples: bool) -> dict:
    """A critic spike: `wgan/distance` ×12 for `points` logged points from `at` (shorter than
    sustain_points), then back; with samples, coverage drops to 1 class for one reading."""
    series = modify(series, "wgan/distance", at,
                    lambda v, d: v * 12 if d < points * LOG_EVERY else v)
    if samples:
        series = modify(series, "coverage/modes", at + LOG_EVERY,
                        lambda v, d: 1 if d == 0 else v)
    return series


@pytest.mark.parametrize("seed", range(6))
def test_a_short_critic_spike_is_reported_only_when_the_samples_feel_it(seed):
    assert T.corroborate_points < T.sustain_points
    spike = T.corroborate_points
    # late in the run: the transient is long over, coverage reached its level
    [event] = detect(_spike(healthy_series(seed), 1000, spike, samples=True))
    assert (event["kind"], event["severity"], event["step"]) == ("divergence", "warning", 1000)
    assert event["evidence"]["detected_step"] == 1000 + (spike - 1) * LOG_EVERY
    felt = event["evidence"]["corroborated_by"]
    assert (felt["tag"], felt["step"], felt["value"]) == ("coverage/modes", 1010, 1)
    assert "the samples felt it (coverage/modes" in event["message"]
    # the same spike the samples did not feel, or one point shorter, or the samples alone
    assert detect(_spike(healthy_series(seed), 1000, spike, samples=False)) == []
    assert detect(_spike(healthy_series(seed), 1000, spike - 1, samples=True)) == []
    no_spike = modify(healthy_series(seed), "coverage/modes", 1010, lambda v, d: 1 if d == 0 else v)
    assert detect(no_spike) == []
    # switched off
    off = Thresholds(corroborate_window=0)
    assert detect(_spike(healthy_series(seed), 1000, spike, samples=True), off) == []


def test_every_tag_is_tracked_at_a_cost_of_o_tags():
    series = healthy_series(15)
    for i in range(160):  # a `--probes all` run's per-layer readings
        steps, values = series["gp/norm_mean"]
        series[f"grad/g.layer{i}"] = (steps, [v * (1 + i) for v in values])
    state = DetectorState()
    started = time.thread_time()
    state.replay(series)
    per_update_ms = 1e3 * (time.thread_time() - started) / len(series_by_step(series))
    assert len(state._tracks) == len(series) - 1  # all but time/step_s
    assert per_update_ms < 10, per_update_ms  # measured ≈ 2 ms for 180 tags


def test_online_updates_equal_offline_detect_and_are_cheap():
    series = CASES["divergence"][0](healthy_series(7))
    by_step: dict[int, dict] = {}
    for tag, (steps, values) in series.items():
        for s, v in zip(steps, values):
            by_step.setdefault(s, {})[tag] = v
    online = OnlineDetector()
    seen, started = [], time.perf_counter()
    for step in sorted(by_step):
        seen += online.update(step, by_step[step])
    per_update_ms = 1e3 * (time.perf_counter() - started) / len(by_step)
    assert seen == detect(series) and online.collapsed
    assert per_update_ms < 5, per_update_ms  # measured ≈ 0.05 ms with ~20 tags


# --------------------------------------------------------------------------- run directories

def write_metrics(run_dir, series, truncated_tail: str = ""):
    by_step: dict[int, dict] = {}
    for tag, (steps, values) in series.items():
        for s, v in zip(steps, values):
            by_step.setdefault(s, {})[tag] = v if math.isfinite(v) else str(v)
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / METRICS, "w") as f:
        for step in sorted(by_step):
            f.write(json.dumps({"step": step, "time": step / 10, **by_step[step]}) + "\n")
        f.write(truncated_tail)


def test_diagnose_run_writes_diagnosis_and_summary(tmp_path):
    series = CASES["divergence (critic loss, abrupt)"][0](healthy_series(8))
    write_metrics(tmp_path, series, truncated_tail='{"step": 1210, "loss/cri')
    write_json(tmp_path / SUMMARY, {"status": "completed", "steps": 1200})
    diagnosis = diagnose_run(tmp_path)
    assert diagnosis["verdict"] == "collapsed" and diagnosis["onset_step"] == ONSET
    assert read_json(tmp_path / DIAGNOSIS) == json.loads(json.dumps(diagnosis))
    assert json.loads(json.dumps(diagnosis["thresholds"])) == json.loads(json.dumps(T.to_dict()))
    summary = read_json(tmp_path / SUMMARY)
    assert (summary["status"], summary["verdict"], summary["onset_step"]) == (
        "completed", "collapsed", ONSET)


def test_judge_run_tries_other_thresholds_and_writes_nothing(tmp_path):
    """What a run's diagnosis would be under other thresholds, with its files left as they
    were: the same diagnosis diagnose_run writes under the same thresholds."""
    series = CASES["divergence (critic loss, abrupt)"][0](healthy_series(8))
    write_metrics(tmp_path, series)
    write_json(tmp_path / SUMMARY, {"status": "completed", "steps": 1200})
    before = sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir())
    blunt = replace(T, divergence_warn=1e6, divergence_collapse=1e7)
    judged = judge_run(tmp_path, blunt)
    assert sorted((p.name, p.read_bytes()) for p in tmp_path.iterdir()) == before
    assert judge_run(tmp_path)["verdict"] == "collapsed" and judged["verdict"] != "collapsed"
    assert judged["thresholds"]["divergence_warn"] == 1e6
    assert diagnose_run(tmp_path, blunt) == judged


def test_diagnose_run_leaves_unchanged_files_untouched(tmp_path):
    # the report caches a run's rendering by its files' time stamps: re-diagnosing a run with
    # the same detector must not make every cached run look new
    write_metrics(tmp_path, healthy_series(8))
    write_json(tmp_path / SUMMARY, {"status": "completed", "steps": 1200})
    diagnose_run(tmp_path)
    past = time.time() - 3600
    for name in (DIAGNOSIS, SUMMARY):
        os.utime(tmp_path / name, (past, past))
    stamps = [(tmp_path / n).stat().st_mtime_ns for n in (DIAGNOSIS, SUMMARY)]
    assert diagnose_run(tmp_path)["verdict"] == "healthy"
    assert [(tmp_path / n).stat().st_mtime_ns for n in (DIAGNOSIS, SUMMARY)] == stamps
    with open(tmp_path / METRICS, "a") as f:  # new readings: a new diagnosis
        f.write(json.dumps({"step": 1210, "loss/critic": "nan"}) + "\n")
    assert diagnose_run(tmp_path)["verdict"] == "collapsed"
    assert [(tmp_path / n).stat().st_mtime_ns > s for n, s in zip((DIAGNOSIS, SUMMARY), stamps)] \
        == [True, True]


@pytest.mark.parametrize("garbled", ['"truncated"', "[1, 2]", "null"])
def test_diagnose_run_leaves_a_summary_that_is_not_an_object_alone(tmp_path, garbled):
    write_metrics(tmp_path, healthy_series(8))
    (tmp_path / SUMMARY).write_text(garbled)
    assert diagnose_run(tmp_path)["verdict"] == "healthy"
    assert read_json(tmp_path / SUMMARY) is None
    assert (tmp_path / SUMMARY).read_text() == garbled


def test_online_detector_resumes_from_the_run_directory(tmp_path):
    series = CASES["divergence (critic loss, abrupt)"][0](healthy_series(9))
    write_metrics(tmp_path, truncate(series, 500))  # a run resumed at step 500
    online = OnlineDetector(tmp_path)
    rest = {t: ([s for s in st if s > 500], [v for s, v in zip(st, vs) if s > 500])
            for t, (st, vs) in series.items()}
    for step in range(510, STEPS + 1, LOG_EVERY):
        online.update(step, {t: vs[st.index(step)] for t, (st, vs) in rest.items() if step in st})
    assert online.events == detect(series)
    assert read_json(tmp_path / DIAGNOSIS)["onset_step"] == ONSET


def _replayed(series, thresholds: Thresholds = T) -> dict:
    """The diagnosis a fresh detector gives the series (with these thresholds), as
    diagnosis.json holds it."""
    state = DetectorState(thresholds)
    state.replay(series)
    return json.loads(json.dumps(state.diagnosis()))


def test_online_diagnosis_is_written_when_it_changes_and_is_correct_when_killed(tmp_path):
    series = CASES["divergence (critic loss, abrupt)"][0](healthy_series(9))
    online = OnlineDetector(tmp_path)
    written = []  # (step, the file's last_step) whenever diagnosis.json was rewritten
    for step, scalars in series_by_step(series).items():
        online.update(step, scalars)
        on_disk = read_json(tmp_path / DIAGNOSIS)
        if not written or on_disk["last_step"] != written[-1][1]:
            written.append((step, on_disk["last_step"]))
        if step == 1000:  # killed here: a correct diagnosis of the metrics up to last_step
            assert on_disk == _replayed(truncate(series, on_disk["last_step"]))
            assert on_disk["events"] == json.loads(json.dumps(detect(truncate(series, 1000))))
    detected = [e["evidence"]["detected_step"] for e in online.events]
    assert [s for s, last in written] == [LOG_EVERY] + detected
    assert all(s == last for s, last in written)
    online.close()  # the final file: every step
    assert read_json(tmp_path / DIAGNOSIS) == _replayed(series)


# --------------------------------------------------------------------------- the CLI

@pytest.fixture
def runner():
    return CliRunner()


def test_cli_diagnose_human_json_and_fail_on_collapse(tmp_path, runner):
    write_metrics(tmp_path, CASES["divergence"][0](healthy_series(10)))
    result = runner.invoke(cli, ["diagnose", str(tmp_path)])
    assert result.exit_code == 0, result.output
    first, *rest = result.output.splitlines()
    assert first.startswith(f"{tmp_path}: collapsed (onset at step ")
    assert any("divergence" in line and "critic divergence (wgan/distance" in line for line in rest)
    result = runner.invoke(cli, ["diagnose", str(tmp_path), "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == read_json(tmp_path / DIAGNOSIS)
    assert runner.invoke(cli, ["diagnose", str(tmp_path), "--fail-on-collapse"]).exit_code == 1


def test_cli_diagnose_healthy_and_truncated(tmp_path, runner):
    write_metrics(tmp_path, healthy_series(11), truncated_tail='{"step": 1210, "wgan/dist')
    result = runner.invoke(cli, ["diagnose", str(tmp_path), "--fail-on-collapse"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{tmp_path}: healthy; 0 events")
    (tmp_path / METRICS).write_text('{"step": 10, "wgan/distance": 3.0}\n{"step": 20, "wgan')
    result = runner.invoke(cli, ["diagnose", str(tmp_path), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["verdict"] == "healthy"


def test_cli_diagnose_refuses_a_directory_that_is_not_a_run(tmp_path, runner):
    result = runner.invoke(cli, ["diagnose", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: Invalid value for RUN_DIR: {str(tmp_path)!r} is not a run directory "
        f"and holds none (no config.json or metrics.jsonl in it or below it)")
    assert runner.invoke(cli, ["diagnose", str(tmp_path / "missing")]).exit_code == 2
    assert not (tmp_path / DIAGNOSIS).exists()


# --------------------------------------------------------------------------- the trainer

TINY = dict(width=8, z_dim=16, batch_size=16, probes="none", fid_final=False, threads=1, log_every=5,
            ckpt_every=10, sample_every=100)


def test_a_real_run_stops_on_an_injected_nan_with_a_pre_collapse_checkpoint(tmp_path):
    from stabgan.train import load_checkpoint, prepare_run, train
    run_dir = tmp_path / "run"
    run = prepare_run(run_dir, dict(TINY, steps=30, stop_on_collapse=True))
    summary = train(run, [InjectNaN(13)])
    assert summary["status"] == "stopped_on_collapse" and summary["steps"] == 13
    assert (summary["verdict"], summary["onset_step"], summary["pre_collapse_step"]) == (
        "collapsed", 13, 10)
    assert read_json(run_dir / SUMMARY)["verdict"] == "collapsed"
    diagnosis = read_json(run_dir / DIAGNOSIS)
    assert [(e["kind"], e["step"], e["severity"]) for e in diagnosis["events"]] == [
        ("nan", 13, "collapse")]
    checkpoint = load_checkpoint(run_dir / CHECKPOINTS / PRE_COLLAPSE_CHECKPOINT)
    assert checkpoint["step"] == 10
    assert all(torch.isfinite(v).all() for v in checkpoint["generator"].values()
               if v.is_floating_point())
    assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == ["last.pt",
                                                                        "pre_collapse.pt"]
    assert diagnose_run(run_dir)["events"] == diagnosis["events"]  # offline agrees


class FakeDivergence(Probe):
    """Replaces the core readings by a flat series whose distance jumps ×1000 at one step."""

    name = "fake_divergence"

    def __init__(self, at: int):
        super().__init__(every=1)
        self.at = at

    def on_step(self, state):
        distance = 1000.0 if state.step >= self.at else 1.0
        return {"wgan/distance": distance, "loss/critic": -distance, "gp/norm_mean": 1.0}


def test_stop_on_collapse_ends_a_real_run_at_a_confirmed_divergence(tmp_path):
    from stabgan.train import load_checkpoint, prepare_run, train
    run_dir = tmp_path / "run"
    config = dict(TINY, steps=60, log_every=1, ckpt_every=5, stop_on_collapse=True)
    summary = train(prepare_run(run_dir, config), [FakeDivergence(24)])
    # onset 24, confirmed 4 logged steps later; last.pt (25) is after the onset, so the
    # checkpoint set aside while the excursion was watched (20) is the one kept
    assert (summary["status"], summary["steps"], summary["onset_step"]) == (
        "stopped_on_collapse", 24 + T.sustain_points - 1, 24)
    assert summary["pre_collapse_step"] == 20
    assert load_checkpoint(run_dir / CHECKPOINTS / PRE_COLLAPSE_CHECKPOINT)["step"] == 20
    [event] = read_json(run_dir / DIAGNOSIS)["events"]
    assert (event["kind"], event["severity"], event["step"]) == ("divergence", "collapse", 24)
    assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == ["last.pt",
                                                                        "pre_collapse.pt"]


def test_a_real_run_records_verdict_and_onset(tmp_path):
    from stabgan.train import prepare_run, train
    # --penalty-weight 0 (the study's "no gradient penalty" run) must train, not crash
    summary = train(prepare_run(tmp_path / "run", dict(TINY, steps=10, penalty_weight=0.0)))
    assert summary["status"] == "completed"
    saved = read_json(tmp_path / "run" / SUMMARY)
    assert (saved["verdict"], saved["onset_step"]) == ("healthy", None)
    assert read_json(tmp_path / "run" / DIAGNOSIS)["verdict"] == "healthy"


def test_monitor_feeds_a_detector_in_your_own_loop(tmp_path):
    from probes.monitor import Monitor
    g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    monitor = Monitor(tmp_path, g, d, log_every=1, guard=OnlineDetector())
    for step in range(1, 4):
        loss = torch.tensor(float("nan") if step == 3 else -1.0)
        monitor.step(step, loss_critic=loss, loss_generator=loss)
    assert [e["kind"] for e in monitor.events] == ["nan"]
    monitor.close()
    assert read_json(tmp_path / DIAGNOSIS)["onset_step"] == 3
    assert read_metrics(tmp_path)[-1]["loss/critic"] == "nan"


def test_the_progress_bar_shows_the_verdict_and_the_first_sign():
    from stabgan.train import _postfix
    series = modify(transient_series(7), "kernel/g.inv1/max_abs", 1520, lambda v, d: v * 6)
    detector = OnlineDetector()
    for step, scalars in series_by_step(truncate(series, 1600)).items():
        detector.update(step, scalars)
    postfix = _postfix(detector.state.latest, detector, WGAN_GP)
    assert postfix["verdict"] == "healthy"  # out of its band, under any rule's threshold
    assert postfix["D"] == f"{detector.state.latest['wgan/distance']:.3g}"
    # before any event, a tag a rule judges out of its band is one to watch, not a sign
    assert "sign" not in postfix and postfix["watch"].startswith("kernel/g.inv1/max_abs ×")
    assert postfix["watch"].endswith(" since 1,520")
    diverged = modify(series, "wgan/distance", 1760, lambda v, d: v * 40)
    for step, scalars in series_by_step(diverged).items():
        if step > 1600:
            detector.update(step, scalars)
    postfix = _postfix(detector.state.latest, detector, WGAN_GP)
    assert postfix["verdict"] == "collapsed" and postfix["sign"].endswith(" @1,520")
