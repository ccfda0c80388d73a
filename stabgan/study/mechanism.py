"""The mechanism section of the doc: which ingredient of an involution layer breaks WGAN-GP
training, and does depth matter beyond it.

Its settings (sweeps.Setting) are the mechanism sweep's, and the seed study's runs of the same
settings (involution in G only, from the faithful, successive and norms sweeps, which are not
run again), each row saying which sweep and how many steps its runs trained. Settings without a
finished run are listed, not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stabgan.study.claims import FEW_TEXT, MIN_RUNS, Finding, Rate, rate_of
from stabgan.study.markdown import (fmt_mean, join, kinds, median_ms, not_run_line, onset_lines,
                                    onsets, sweep_status, table, verdicts)
from stabgan.study.records import BAD_VERDICTS, Point, Sweep, config_values, group
from stabgan.study.sweeps import SWEEP_TEXT, Setting

SOURCES = ("faithful", "successive", "norms", "mechanism")  # sweeps whose runs are rows
# The rows' order; their norms are the ones the mechanism asks about (not spectral, softmax).
ROW_ORDER = {"inv_where": ("both", "d", "g"), "inv_stack": ("stages", "successive"),
             "inv_layers": (1, 2), "norm": ("batch", "none")}
WHERE = {"g": "G", "d": "D", "both": "G and D"}
# The ablation starts from the setting with every ingredient of the hypothesis and depth, and
# switches one option at a time.
ABLATION_BASE = Setting("both", "stages", 2, "batch")
ABLATION = (("where", "both → g", ABLATION_BASE._replace(inv_where="g")),
            ("where", "both → d", ABLATION_BASE._replace(inv_where="d")),
            ("norm", "batch → none", ABLATION_BASE._replace(norm="none")),
            ("layers", "2 → 1", ABLATION_BASE._replace(inv_layers=1)),
            ("stack", "stages → successive", ABLATION_BASE._replace(inv_stack="successive")))
INGREDIENTS = {"M-BN-D": "BatchNorm in the critic's kernel generation",
               "M-BN-G": "BatchNorm in the generator's kernel generation alone",
               "M-INV-D": "involution in the critic without BatchNorm"}


@dataclass
class Row:
    """One setting: the sweep that plans its runs, their names, and its finished runs."""
    setting: Setting
    sweep: Sweep
    planned: list[str]
    point: Point | None

    def runs(self) -> str:
        """Finished of planned runs: "2 of 3"."""
        return f"{len(self.point.runs) if self.point else 0} of {len(self.planned)}"

    def source(self) -> str:
        """The sweep and the steps its runs trained."""
        configs = self.point.runs if self.point else []
        steps = config_values(configs, "steps") or sorted(
            {self.sweep.planned[n]["steps"] for n in self.planned})
        return f"{self.sweep.name} ({join(f'{s:,}' for s in steps)})"

    def rate(self) -> Rate:
        """The instability rate of its finished runs."""
        return rate_of([self.point] if self.point else [])


def label(setting: Setting) -> str:
    """A setting in words: "involution in G and D, stages, 2 layers, norm batch"."""
    layers = setting.inv_layers
    return (f"involution in {WHERE[setting.inv_where]}, {setting.inv_stack}, {layers} "
            f"layer{'s' * (layers != 1)}, norm {setting.norm}")


def mechanism_rows(sweeps: dict[str, Sweep]) -> dict[Setting, Row]:
    """Every setting of the mechanism sweep and of the seed sweeps' runs with the same norms,
    in ROW_ORDER."""
    rows = {}
    for name in SOURCES:
        sweep = sweeps[name]
        points = group(sweep.finished, Setting._fields)
        for key, names in sweep.planned_by(Setting._fields).items():
            setting = Setting(*key)
            if setting.norm in ROW_ORDER["norm"]:
                rows[setting] = Row(setting, sweep, names, points.get(key))
    def place(setting: Setting) -> tuple:
        return tuple(ROW_ORDER[f].index(v) for f, v in setting._asdict().items())

    return {setting: rows[setting] for setting in sorted(rows, key=place)}


def mechanism_points(rows: dict[Setting, Row]) -> dict[Setting, Point]:
    """The settings with finished runs, for the claims."""
    return {setting: row.point for setting, row in rows.items() if row.point}


def effect(base: Rate, flipped: Rate) -> str:
    """What switching one option did to the base's instability (claims.RULE_RATE's 1/3)."""
    if not base.judged or not flipped.judged:
        return "not measured yet"
    if not base.bad:
        return "none: the base is healthy"
    few = f" ({FEW_TEXT})" if min(base.judged, flipped.judged) < MIN_RUNS else ""
    if flipped.value <= base.value - 1 / 3:
        return ("removes the instability" if not flipped.bad else "reduces the instability") + few
    return "keeps the instability" + few


def ablation_lines(rows: dict[Setting, Row]) -> list[str]:
    """The ablation table: from ABLATION_BASE, one option switched at a time."""
    base = rows.get(ABLATION_BASE)
    base_rate = base.rate() if base else Rate(0, 0)
    cells = []
    for option, change, setting in (("—", "the base", ABLATION_BASE), *ABLATION):
        row = rows.get(setting)
        rate = row.rate() if row else Rate(0, 0)
        cells.append([option, change, label(setting), row.source() if row else "not planned",
                      row.runs() if row else "0", verdicts(row and row.point),
                      str(rate) if rate.judged else "–", onsets(row and row.point),
                      fmt_mean(row and row.point, "fid_min"),
                      "—" if setting == ABLATION_BASE else effect(base_rate, rate)])
    return ["### Ablation: one option at a time", "",
            f"From {label(ABLATION_BASE)} — every ingredient of the hypothesis, with two layers "
            "— each row switches one option. `effect`: the switch removes the instability when "
            "no run of the new setting went bad, reduces it when its instability rate is lower "
            "by at least 1/3, keeps it otherwise.", "",
            table(["option", "switch", "setting", "sweep (steps)", "runs", "verdicts",
                   "instability rate", "onset steps", "min FID", "effect"], cells), ""]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def mechanism_answer(found: dict[str, Finding]) -> str:
    """The mechanism in one paragraph from its claims' findings: which ingredient makes
    training unstable, and whether depth matters beyond BatchNorm in the critic."""
    cids = (*INGREDIENTS, "M-2L-BN", "M-2L")
    if not any(found[c].measured for c in cids):
        return ("No mechanism setting has finished runs on both sides of a comparison yet, so "
                "which ingredient breaks training is not measured.")
    makes = [INGREDIENTS[c] for c in INGREDIENTS if found[c].verdict == "supported"]
    head = (f"**{_capital(join(makes))} make{'s' * (len(makes) == 1)} the difference.**"
            if makes else "**No ingredient is shown to make the difference yet.**")
    parts = [f"{_capital(INGREDIENTS[c])} ({c}, {found[c].verdict}): {found[c].reading}"
             for c in INGREDIENTS]
    bn, other = found["M-2L-BN"], found["M-2L"]
    if "supported" in (bn.verdict, other.verdict):
        depth = "**Depth matters beyond BatchNorm in the critic.**"
    elif bn.verdict == "contradicted":
        depth = "**Depth does not matter beyond BatchNorm in the critic.**"
    else:
        depth = "**Whether depth matters beyond BatchNorm in the critic is not settled.**"
    return " ".join([head, *parts, depth,
                     f"With BatchNorm in the critic (M-2L-BN, {bn.verdict}): {bn.reading}",
                     f"Without it (M-2L, {other.verdict}): {other.reading}"])


def bad_setting_lines(rows: dict[Setting, Row], folder: Path) -> list[str]:
    """For each setting with unstable or collapsed runs: the seed's Fig. 7/8 analogue and each
    bad run's onset, kind, evidence and first signs."""
    lines = []
    for setting, row in rows.items():
        bad = [r for r in row.point.runs if r.verdict in BAD_VERDICTS] if row.point else []
        if bad:
            stem = f"{row.sweep.name}-" + "-".join(map(str, setting))
            lines += onset_lines(f"{label(setting)} — {row.source()}: verdicts healthy / "
                                 f"unstable / collapsed {verdicts(row.point)}", stem, bad, folder)
    return (["### Unstable and collapsed settings (the seed's Fig. 7 and 8)", "", *lines]
            if lines else [])


def mechanism_lines(sweeps: dict[str, Sweep], rows: dict[Setting, Row], folder: Path,
                    command: str) -> list[str]:
    """The mechanism section: its question, the table per setting, the ablation and the
    unstable and collapsed settings in detail."""
    sweep = sweeps["mechanism"]
    lines = ["## Mechanism: batch statistics in the critic", "",
             "The seed's instability did not appear in its layout (involution in G only). The "
             "hypothesis: BatchNorm inside the kernel generation of an involution layer in the "
             "WGAN-GP critic (involution in D or in both, norm batch) is what breaks training, "
             f"not depth. The `mechanism` sweep runs {SWEEP_TEXT['mechanism']} in the seed "
             "layout (and the stacked plain form for both); involution in G only comes from the "
             "faithful, successive and norms sweeps' runs, which are not run again. The claims "
             "M-* below judge it; the answer at the top sums them up.", ""]
    if not sweep.finished:
        return lines + [not_run_line(sweep, command), ""]
    shown = {s: r for s, r in rows.items() if r.point}
    waiting = [f"{label(s)} ({r.sweep.name}: {r.runs()} finished)"
               for s, r in rows.items() if not r.point]
    cells = [[setting.inv_where, setting.inv_stack, str(setting.inv_layers), setting.norm,
              row.source(), row.runs(), verdicts(row.point), onsets(row.point), kinds(row.point),
              fmt_mean(row.point, "fid_min"), fmt_mean(row.point, "coverage_last", 2),
              median_ms(row.point)] for setting, row in shown.items()]
    lines += [f"`mechanism`: {sweep_status(sweep)}", "",
              table(["inv where", "stack", "layers", "norm", "sweep (steps)", "runs",
                     "verdicts", "onset steps", "collapse kinds", "min FID", "coverage",
                     "ms/step"], cells), ""]
    if waiting:
        lines += ["Not finished yet, not counted: " + "; ".join(waiting) + ".", ""]
    return lines + ablation_lines(rows) + bad_setting_lines(shown, folder)
