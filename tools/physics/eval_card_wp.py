"""The model card's pT-dependent working-point section, rendered from the evaluation's metrics only.

Why a module of its own: the section has its own story (how the cut is fitted, what it rests on,
whether it closes on independent QCD and whether the inclusive cut is flat there), and every verdict
in it ("closes", "not flat") is computed here from the numbers it sits next to, never typed.
"""
from __future__ import annotations

from typing import Any

from hltrun.tools.physics.card_entry import MIN_EFFECTIVE_ABOVE
from hltrun.tools.physics.eval_stats import percent_text
from hltrun.tools.physics.pt_quantile_fit import MIN_EVENTS_PER_TERM, RANGE_QUANTILES, SIGNIFICANCE

P_MIN = 0.05  # a chi-square p-value below this is reported as a failed closure / a rate that is not flat


def _pct(rate: float, digits: int = 3) -> str:
    return f"{100 * rate:.{digits}f}"


def _chi2(c: dict[str, float]) -> str:
    return f"χ²/ndf = {c['chi2']:.1f}/{c['ndf']}, p = {c['p']:.2g}"


def _cell(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def ratio_text(r: dict[str, Any]) -> str:
    """A max/min ratio: the value ± its error; ∞ where one bin passes nothing and another does, else '—' and why
    (no bins with events, nothing passing anywhere). metrics.json written before ``why`` existed has None only
    where a bin passed nothing."""
    if r["ratio"] is not None:
        return f"{r['ratio']:.2f} ± {r['error']:.2f}"
    why = r.get("why") or "a bin passes nothing"
    return f"∞ ({why})" if why == "a bin passes nothing" else f"— ({why})"


def flat_verdict(p: float, ratio: dict[str, Any]) -> str:
    """The inclusive cut's verdict on flatness: 'consistent with flat' only where there is a finite max/min to be
    consistent with (a χ² of 0 when nothing passes, or next to ∞, says nothing)."""
    if ratio["ratio"] is None:
        why = ratio.get("why") or "a bin passes nothing"
        return f"**not flat**: max/min {ratio_text(ratio)}" if p < P_MIN else (
            "untested: no event passes" if why == "nothing passes" else f"untested: {why}")
    return "consistent with flat" if p >= P_MIN else f"**not flat**: max/min {ratio_text(ratio)}"


def working_point_section(m: dict[str, Any], models: tuple[str, ...], effs: dict[str, float],
                          eff_label: dict[str, str], bins: list[str]) -> list[str]:
    """Markdown lines of the card's '## pT-dependent working point' section."""
    L: list[str] = ["## pT-dependent working point\n"]
    add = L.append
    first = m["models"][models[0]]
    fit0 = next(iter(first["wp_fit"].values()))
    lo, hi = fit0["pt_range_gev"]
    deriv = [m["background"]] + ([m["wp_background"]] if m.get("wp_background") else [])
    n_deriv = sum(d["n_events"] for d in deriv)
    add("`thresholds.json` → `<model>.vs_leading_jet_pt` (`AnomalyScoreFilter working_point: vs_leading_jet_pt`, "
        "`modules/working_point.py`): a score cut that depends on the event's leading-jet pT, "
        f"cut(pT) = c0 + c1·x + c2·x² with x = ln(pT / {fit0['pt_ref_gev']:.0f} GeV), pT held inside "
        f"[{lo:.0f}, {hi:.0f}] GeV (the {100 * RANGE_QUANTILES[0]:g}–{100 * RANGE_QUANTILES[1]:g} % quantiles of the fit "
        "sample's leading-jet pT; beyond them the cut at the nearer end applies). It is a weighted quantile regression over **all** the QCD events of "
        + " and ".join(f"`{d['file']}` ({d['n_events']} events)" for d in deriv)
        + f", {n_deriv} events in all: the weighted fraction above the cut is the target overall and uncorrelated "
        "with every power of x, so it is the same at every pT as far as a quadratic in ln pT can follow "
        f"(`tools/physics/pt_quantile_fit.py`; terms shown — were dropped: a term needs {MIN_EVENTS_PER_TERM} effective "
        f"events above the cut, and the highest term must differ from zero by more than {SIGNIFICANCE:g} σ on the fit "
        "sample, else the fit is repeated without it). No cut rests on the events of one bin; each bin's cut uncertainty comes from "
        "the fit's covariance.\n")
    add("| model | QCD eff. | c0 | c1 | c2 |\n|---|---|---|---|---|")
    for n in models:
        for k in effs:
            f = m["models"][n]["wp_fit"][k]
            above = f.get("n_effective_above")  # absent from metrics.json written before it was stored
            if above is not None and above < MIN_EFFECTIVE_ABOVE:  # the covariance is a large-sample one
                cells = [f"{c:.4g} (no error: {above:.1f} effective events above the cut)" for c in f["coefficients"]]
            else:
                errs = [c ** 0.5 for c in (f["covariance"][i][i] for i in range(len(f["coefficients"])))]
                cells = [f"{c:.4g} ± {e:.2g}" for c, e in zip(f["coefficients"], errs)]
            add(f"| {n} | {eff_label[k]} | " + " | ".join(cells + ["—"] * (3 - len(cells))) + " |")
    closure_sample = m.get("closure_sample")
    if closure_sample is None:
        add("\n**Closure: not tested.** No independent QCD sample was given (`--closure`, data/README.md), so "
            "nothing here shows that these cuts keep their target on events they were not derived from.\n")
        return L
    sl = closure_sample.get("slices") or {}
    slices = (", stitched from p̂T slices " + ", ".join(
        f"> {t:.0f} GeV ({n} events)" for t, n in zip(sl["pthat_min_gev"], sl["events"]))
        + " by each event's p̂T (`tools/physics/qcd_slices.py`: the slices' relative cross sections measured from their "
          "overlap, nothing typed in)") if sl else ""
    add(f"\n**Closure on an independent sample**: `{closure_sample['file']}` ({closure_sample['n_events']} QCD events, "
        f"`--closure`{slices}; it shares no event with the fit sample: other generator seeds, data/README.md), used for "
        "nothing but these tables. Per leading-jet pT bin: the sample's "
        "events (effective), its pass rate (%) under the cut above ± its statistical error, the target, the cut's "
        "own uncertainty as a pass-rate error (from the fit's covariance), and the pull = (rate − target) / "
        "√(binomial error at the target² + cut error²). Behind each bin's cut: the fit sample's events in that bin "
        "(effective), and how many events a cut made from that bin alone would need for the same precision "
        "(target·(1 − target) / cut error²; where the score density at the cut is low in a bin, its rate barely moves "
        "with the cut and this exceeds the bin's own events). χ² over the bins with the cut errors' correlations, and with the "
        "independent sample's errors alone.\n")
    for n in models:
        for k, eff in effs.items():
            c = m["models"][n]["closure"][k]
            add(f"**{n}, {eff_label[k]}**\n")
            add("| leading-jet pT [GeV] | events (eff.) | pass rate [%] | target [%] | cut error [%] | pull "
                "| fit events in bin (eff.) | bin-only events for the cut's precision |\n|---|---|---|---|---|---|---|---|")
            for b, r in zip(bins, c["bins"]):
                add(f"| {b} | {r['n_events']} ({r['n_effective']:.0f}) | {percent_text(r, '.3f')} "
                    f"| {_pct(eff)} | {_pct(r['cut_error'])} | {_cell(r['pull'], '+.2f')} "
                    f"| {r['derivation_events']} ({r['derivation_n_effective']:.0f}) "
                    f"| {_cell(r['equivalent_events'], '.0f')} |")
            worst = max((abs(r["pull"]) for r in c["bins"] if r["pull"] is not None), default=None)
            verdict = (f"closes (p ≥ {P_MIN})" if c["chi2"]["p"] >= P_MIN
                       else f"**does not close** (p < {P_MIN})")
            add(f"\n{verdict}: {_chi2(c['chi2'])} (independent sample's errors alone: {_chi2(c['chi2_stat'])}); "
                f"largest |pull| {_cell(worst, '.2f')}; all bins together {percent_text(c['inclusive'], '.3f', unit=' %')}.\n")
    add("### The inclusive cuts on the independent sample\n")
    add("The fixed event-level cuts of `thresholds.json` (`working_point: inclusive`) on the same independent sample: "
        "pass rate (%) per leading-jet pT bin, χ² against one common rate (binomial errors at the pooled rate, "
        f"ndf = bins − 1), and the largest / smallest rate between the bins between "
        f"{m['ratio_range_gev'][0]:.0f} and {m['ratio_range_gev'][1]:.0f} GeV. Consistent "
        f"with flat means p ≥ {P_MIN}; with few events passing, that is a weak statement (see the ratio's error).\n")
    add("| model | QCD eff. | " + " | ".join(bins) + " | χ², p | max/min | verdict |\n|---|---|"
        + "---|" * (len(bins) + 3))
    for n in models:
        for k in effs:
            f = m["models"][n]["closure_inclusive"][k]
            add(f"| {n} | {eff_label[k]} | " + " | ".join(percent_text(r, ".2f") for r in f["rates"])
                + (" | — | — | untested: events in one pT bin only |" if f["chi2"]["p"] is None else
                   f" | {f['chi2']['chi2']:.1f}/{f['chi2']['ndf']}, {f['chi2']['p']:.2g} | {ratio_text(f['ratio'])} | "
                   + flat_verdict(f["chi2"]["p"], f["ratio"]) + " |"))
    return L
