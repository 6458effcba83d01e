"""``hltcard``'s outputs: the model's entry merged into ``thresholds.json``, and its short card
(``<model>_card.md``, ``<model>_card.json``, ``<model>_scores.png``, ``<model>_pass_rate_vs_pt.png``).

Why its own module: computing the cuts (tools/physics/card.py, card_entry.py) and presenting them
are separate jobs. Every file is written to a temporary and renamed (framework/atomic.py), all of them
together: a failure leaves the previous card and thresholds.json as they were. The other models'
entries of thresholds.json are kept; an unreadable thresholds.json is not overwritten.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.errors import ConfigError
from hltrun.tools.physics.card_entry import MIN_EFFECTIVE_ABOVE
from hltrun.tools.physics.eval_card_wp import P_MIN as P_FLAT
from hltrun.tools.physics.eval_stats import PassRate, percent_text

NO_FLATNESS_TEST = "no test: events in one pT bin only"  # flatness' p None: nothing to compare a rate with


def _pct(v: float) -> str:
    return f"{100 * v:.3g}"


def _rate(v: float) -> str:
    return f"{v / 1e3:.3g} kHz" if abs(v) >= 1e3 else f"{v:.3g} Hz"


def _rate_text(a: PassRate, rate_hz: float) -> str:
    """The background rate at the cut and its error; no '0 Hz ± 0 Hz' where nothing (or everything) passed."""
    if a.n_pass in (0, a.n_events):
        return f"{_rate(a.rate * rate_hz)} ({a.n_pass} of {a.n_events} events)"
    return f"{_rate(a.rate * rate_hz)} ± {_rate(a.error * rate_hz)}"


def _bin_cell(x: dict[str, Any]) -> str:
    """A pT bin's pass rate and the events in it (the count already says them where none or all passed)."""
    if not x["n_events"]:
        return "—"
    return percent_text(x) + ("" if x["n_pass"] in (0, x["n_events"]) else f" ({x['n_events']})")


def _coefficients(entry: Any, key: str) -> str:
    """A fitted pT-dependent cut's coefficients ± their errors; without errors where fewer than
    MIN_EFFECTIVE_ABOVE effective events lie above the cut: the fit's covariance is a large-sample one,
    and '3.13 ± 0.05' with no event above the cut would read as a cut known to 2 %."""
    fit, above = entry.fits[key], entry.fit_above.get(key, math.inf)
    if above < MIN_EFFECTIVE_ABOVE:
        return (", ".join(f"{c:.4g}" for c in fit.coefficients) + f" (no error quoted: {above:.1f} effective "
                f"background events above the cut (at least {MIN_EFFECTIVE_ABOVE:g} needed for one))")
    return ", ".join(f"{c:.4g} ± {math.sqrt(v):.2g}" for c, v in zip(fit.coefficients, np.diag(fit.covariance)))


def merged_thresholds(path: Path, identity: str, entry: dict[str, Any]) -> str:
    """thresholds.json's new text: ``identity``'s entry replaced, every other model's kept."""
    table: dict[str, Any] = {}
    if path.exists():
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); not overwriting it (move it away or fix it)") from None
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: expected a mapping model -> cuts; not overwriting it")
    table[identity] = entry
    text = json.dumps(table, indent=1, allow_nan=False)  # a NaN cut can never be written
    return text + "\n"


def card_json(r: dict[str, Any], identity: str, command: str) -> dict[str, Any]:
    """Everything the card says, as data."""
    entry, rate_hz = r["entry"], r["input_rate_hz"]
    cuts = {}
    for key, st in entry.stats.items():
        row = st.to_json()
        if not key.startswith("jet_"):
            row.update(rate_hz=st.achieved.rate * rate_hz, rate_hz_error=st.achieved.error * rate_hz)
        cuts[key] = row
    plan = r["plan"]
    return {"model": identity, "model_file": str(r["model"]), "command": command,
            "path": {"config": plan.config, "path": plan.path, "modules": plan.modules, "scorer": plan.scorer,
                     "reduce": plan.reduce, "dropped": plan.dropped},
            "background": r["bkg_summary"], "input_rate_hz": rate_hz, "thresholds": r["table"], "cuts": cuts,
            "vs_leading_jet_pt_omitted": r["omitted"], "vs_leading_jet_pt_left_out_events": r["fit_left_out"],
            "vs_leading_jet_pt_all_events": {k: {"target": r["effs"][k], "target_of_events": r["fit_events"],
                                                 **a.to_json(), "rate_hz": a.rate * rate_hz,
                                                 "rate_hz_error": a.error * rate_hz}
                                             for k, a in r["pt_overall"].items()},
            "vs_leading_jet_pt_fits": {k: {**entry.fits[k].to_json(), "n_effective_above": entry.fit_above.get(k)}
                                       for k in r["pt_keys"]},
            "pt_edges_gev": r["pt_edges_gev"], "pt_edges_from": r["pt_edges_from"],
            "pt_pass_rates": r["pt_rates"], "pt_flatness": r["pt_flatness"],
            "signals": r["signal_rows"]}


def _left_out_note(n: int) -> str:
    """What the pT fit left out (``pt_quantile_fit.fit_events``), or nothing."""
    return (f"fitted without the {n} events with no scored jet or a NaN score: they pass no cut at any pT" if n
            else "")


def _overall_note(r: dict[str, Any], key: str) -> str:
    """The pT cut ``key``'s background fraction above it of all events, beside its target, which is of the events
    fitted: the two differ where events were left out (30 % without a jet: 0.70 % of all events at a 1 % target)."""
    a = r["pt_overall"][key]
    return (f"background above {percent_text(a.to_json(), unit=' %')} of all {a.n_events} events, rate "
            f"{_rate_text(a, r['input_rate_hz'])} (target {_pct(r['effs'][key])} % of the {r['fit_events']} "
            "events fitted)")


def looser_note(cut: float) -> str:
    """Why a looser cut that also reaches the target was not taken (negative weights)."""
    return (f"the background fraction above a cut also falls to the target at the looser cut {cut:.6g}, but rises "
            "above it again at tighter cuts (negative weights): the cut given is the loosest at which it stays at "
            "or below the target for every tighter cut, so that raising the threshold never adds rate")


def _bins(edges: list[float]) -> list[str]:
    """Bin labels; the first bin also takes the events below its lower edge (working_point.bin_index)."""
    if len(edges) == 1:  # one bin: every event (a sample whose leading jets all share one pT)
        return ["all"]
    return ([f"< {edges[1]:.0f}"] + [f"{lo:.0f}–{hi:.0f}" for lo, hi in zip(edges[1:], edges[2:])]
            + [f"> {edges[-1]:.0f}"])


def card_markdown(r: dict[str, Any], identity: str, command: str, plots: list[str]) -> str:
    """The short card."""
    b, entry, rate_hz, plan = r["bkg_summary"], r["entry"], r["input_rate_hz"], r["plan"]
    acc = b["accounting"]
    L = [f"# {identity}: trigger thresholds\n",
         f"Generated by `{command}` — rerun it, do not edit: `thresholds.json` → `{identity}` holds the cuts the "
         "trigger filter reads.\n",
         f"**Path**: `{plan.config}`, path `{plan.path}` up to the scorer `{plan.scorer}` "
         f"({' → '.join(plan.modules)}); "
         f"event score = `reduce: {plan.reduce}` of the scored jets (the filter's function); dropped for this run: "
         f"{', '.join(plan.dropped) or 'nothing'}.\n",
         f"**Background**: {', '.join(b['files'])}: {b['events']} events read, {b['jets']} scored jets; "
         + (f"weighted by `{b['weight_branch']}` (effective events {b['n_effective']:.0f})" if b["gen_weight"]
            else f"no `{b['weight_branch']}` branch: every event weighs 1")
         + f". Without a score (never pass, counted in every denominator): {acc['events_without_scored_jet']} events "
           f"without a scored jet, {acc['events_not_scored']} stopped before the scorer, "
           f"{acc['events_with_nan_score']} with a NaN score; skipped by the source: {acc['events_duplicate']} "
           f"duplicates.\n",
         "## Cuts\n",
         f"The fraction of the background above each cut on this sample (± binomial error, weights included), the "
         f"effective events above it, and the rate at {_rate(rate_hz)} input. The cut lies halfway between the highest "
         f"failing and the lowest passing score; the fraction is at most the target there and at every tighter cut "
         f"(with negative weights it need not fall as the cut rises: the cut is the loosest the target holds from "
         f"on).\n",
         "| key | target | cut | background above [%] | events above (eff.) | rate |", "|---|---|---|---|---|---|"]
    for key, st in entry.stats.items():
        a = st.achieved
        rate = "—" if key.startswith("jet_") else _rate_text(a, rate_hz)
        L.append(f"| `{key}` | {_pct(st.target)} % | {st.cut:.6g} | {percent_text(a.to_json())} "
                 f"| {a.n_pass} ({st.effective_above:.1f}) | {rate} |")
    L.append("")
    for key, st in entry.stats.items():
        if st.looser_at_target is not None:
            L.append(f"**`{key}`**: {looser_note(st.looser_at_target)}.\n")
    if r["pt_keys"]:
        pt, note = r["table"]["vs_leading_jet_pt"], _left_out_note(r["fit_left_out"])
        L.append(f"**pT-dependent cut** (`vs_leading_jet_pt`, `working_point: vs_leading_jet_pt`): cut = Σ c_k x^k, "
                 f"x = ln(pT / {pt['pt_ref_gev']:.0f} GeV), pT held in [{pt['pt_range_gev'][0]:.0f}, "
                 f"{pt['pt_range_gev'][1]:.0f}] GeV; " + "; ".join(
                     f"`{k}`: {_coefficients(entry, k)}" for k in r["pt_keys"])
                 + " (tools/physics/pt_quantile_fit.py: fewer terms where the sample "
                 "cannot support them)" + (f"; {note}" if note else "")
                 + ". Not tested on an independent sample here: for that, `evaluate_models --closure`.\n")
    if r["fit_left_out"]:  # its target is not of the events the inclusive cuts' is: what it keeps of those
        L += [f"**`vs_leading_jet_pt.{k}` on all events** (the inclusive cuts' denominator, and the signal table's "
              f"beside it): {_overall_note(r, k)}.\n" for k in r["pt_keys"]]
    for k, why in r["omitted"].items():
        L.append(f"**`vs_leading_jet_pt.{k}` omitted**: {why}.\n")
    bins = _bins(r["pt_edges_gev"])
    L += ["## Background pass rate vs leading-jet pT\n",
          f"Per leading scored jet pT bin [GeV; edges from {r['pt_edges_from']}]: the pass rate (%) ± its "
          "statistical error (events in the bin), "
          "on the sample the cuts were derived from (not an independent test), and χ² of the bins against one common "
          f"rate (binomial errors at the pooled rate): p < {P_FLAT} means the rate is not flat in pT — a score that "
          "mostly measures jet pT is a jet-pT trigger in disguise.\n",
          "| cut | " + " | ".join(bins) + " | χ²/ndf, p |", "|---|" + "---|" * (len(bins) + 1)]
    for k, kinds in r["pt_rates"].items():
        for kind, rows in kinds.items():
            c = r["pt_flatness"][k][kind]
            verdict = (NO_FLATNESS_TEST if c["p"] is None else
                       f"{c['chi2']:.1f}/{c['ndf']}, {c['p']:.2g}" + (" **not flat**" if c["p"] < P_FLAT else ""))
            L.append(f"| `{k}` {kind} | " + " | ".join(_bin_cell(x) for x in rows)
                + f" | {verdict} |")
    L.append("")
    if r["signal_rows"]:
        keys = list(r["effs"])
        cols = keys + [f"jet_{k}" for k in keys] + [f"vs_leading_jet_pt_{k}" for k in r["pt_keys"]]
        L += ["## Signal efficiency\n", "Weighted fraction of each signal file's events (jets for `jet_*`) above the "
              "cut, ± binomial error.\n", "| signal | events | " + " | ".join(f"`{c}`" for c in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
        for f, row in r["signal_rows"].items():
            L.append(f"| {f} | {row['events']} | " + " | ".join(
                percent_text(row[c], unit=" %") for c in cols) + " |")
        L.append("")
    if plots:
        L += ["## Plots\n"] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(L)


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def plots(r: dict[str, Any], identity: str) -> dict[str, bytes]:
    """{file name: PNG}: score distributions with the event cuts; pass rate vs leading-jet pT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    bkg = r["background"]
    fig, ax = plt.subplots(figsize=(9, 4.5))  # room for the legend beside the frame
    finite = [bkg.event_score[np.isfinite(bkg.event_score)]] + [
        s.event_score[np.isfinite(s.event_score)] for _, s in r["signals"]]
    allv = np.concatenate(finite) if finite else np.zeros(0)
    if allv.size:
        lo, hi = np.percentile(allv, [0, 100])
        # log bins where every score is > 0: a signal's tail decades above the background (17.6 beside a
        # QCD bulk of 0.3-2.3 on a fresh G* sample; a VAE's outlier at 1e3) left the background and its
        # cut in a handful of the 60 linear bins, or in one
        log = lo > 0 and hi > lo
        edges = np.geomspace(lo, hi, 61) if log else np.linspace(lo, hi if hi > lo else lo + 1, 61)
        if log:
            ax.set_xscale("log")
        keep = np.isfinite(bkg.event_score)
        ax.hist(bkg.event_score[keep], edges, weights=bkg.weight[keep], density=True, histtype="stepfilled",
                alpha=0.4, label="background")
        for f, s in r["signals"]:
            k = np.isfinite(s.event_score)
            if k.any():
                ax.hist(s.event_score[k], edges, weights=s.weight[k], density=True, histtype="step", label=Path(f).stem)
    for i, key in enumerate(r["effs"]):  # each label a line lower: two close cuts' labels were printed over each other
        ax.axvline(r["entry"].scalar[key], ls="--", color="k", lw=1)
        ax.text(r["entry"].scalar[key], 0.97 - 0.07 * i, f" {key}", transform=ax.get_xaxis_transform(), va="top",
                fontsize=8)
    ax.set_yscale("log")
    out[f"{identity}_scores.png"] = _finish(fig, ax, f"event score ({r['plan'].reduce} over the scored jets)",
                                            "density (weighted)", f"{identity}: score distributions and cuts")

    fig, ax = plt.subplots(figsize=(9, 4.5))  # room for the legend beside the frame
    bins = _bins(r["pt_edges_gev"])
    x = np.arange(len(bins))
    shift = 0.0
    for k, kinds in r["pt_rates"].items():
        for kind, rows in kinds.items():
            rate, err = _error_bars(rows)
            ax.errorbar(x + shift, rate, err, fmt="o", capsize=3, label=f"{k} ({kind})")
            shift += 0.08
        ax.axhline(100 * r["effs"][k], ls=":", color="gray", lw=1)
    ax.set_xticks(x + (shift - 0.08) / 2, bins)
    out[f"{identity}_pass_rate_vs_pt.png"] = _finish(fig, ax, "leading scored jet pT [GeV]", "background pass rate [%]",
                                                     f"{identity}: background pass rate vs leading-jet pT")
    return out


def _error_bars(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Pass rates of pT bins (%) and their error bars' lengths below and above: the binomial error where some
    but not all events passed; where none or all did it is zero wide, and the plot drew '0 ± 0' (a rate known
    exactly, from a handful of events) beside the table's '0 (0 of 105)': the Wilson 68 % interval on the
    bin's effective events instead, as the report's turn-on plots draw it."""
    from hltrun.framework.rates import wilson_interval

    rate, below, above = [], [], []
    for row in rows:
        p, n, k = row["rate"], row["n_events"], row["n_pass"]
        if n and k in (0, n):
            n_eff = row["n_effective"]
            lo, hi = wilson_interval(n_eff if k else 0.0, n_eff)
            below.append(p - lo)
            above.append(hi - p)
        else:
            below.append(row["error"])
            above.append(row["error"])
        rate.append(p)
    return 100 * np.array(rate), 100 * np.array([below, above])


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str) -> bytes:
    """Label, lay out and render a card plot as PNG bytes, and free the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # inside it hid points
    fig.tight_layout()
    png = _png(fig)
    plt.close(fig)
    return png


def write_card(r: dict[str, Any], out_dir: Path, with_plots: bool, command: str,
               what: str = "--out-dir") -> list[Path]:
    """thresholds.json (merged) and the card, all together, once the entry is checked against what the scorer will
    read back: a refused entry never reaches thresholds.json (the next hltrun would cut on it). ``what``: the
    folder as the user named it, for a failed write's line (``--out-dir: cannot write …/m_card.md (…)``)."""
    from hltrun.framework.atomic import together, write_bytes, write_text

    identity = r["identity"]  # as the configured scorer reads it: ``<stem>_int8`` for an int8 run
    card = out_dir / "thresholds.json"
    text = merged_thresholds(card, identity, r["table"])
    check_read_back(r, identity, card, text)  # before any file is written
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = plots(r, identity) if with_plots else {}
    md = card_markdown(r, identity, command, list(pngs))
    data = json.dumps(card_json(r, identity, command), indent=1, default=str)
    written = [card, out_dir / f"{identity}_card.md", out_dir / f"{identity}_card.json"]
    with together():
        write_text(card, text, what)
        write_text(written[1], md + "\n", what)
        write_text(written[2], data + "\n", what)
        for name, blob in pngs.items():
            written.append(write_bytes(out_dir / name, blob, what))
    return written


def scorer_card(model: Path | str) -> Path:
    """The thresholds.json the scorer reads ``model``'s cuts from (modules/vae_scorer.py ``thresholds_card``):
    hltcard's default folder, so that a model given through a symbolic link gets its cut beside the link, where
    ``hltrun ... modules.vae.model=LINK`` looks, not beside the link's target."""
    from hltrun.modules.vae_scorer import VAEAnomalyScorerParameters, thresholds_card

    return thresholds_card(VAEAnomalyScorerParameters(model=str(model), backend="onnxruntime"))[1]


def check_read_back(r: dict[str, Any], identity: str, card: Path, text: str) -> None:
    """Where ``card`` is the one the scorer reads (``scorer_card``), the scorer's own reader (``card_thresholds``)
    must find exactly the cuts of ``r`` in ``text``, thresholds.json's new content: checked before it is written,
    so a refusal (CardRefused, exit 2) leaves thresholds.json as it was."""
    from hltrun.modules.vae_scorer import card_thresholds
    from hltrun.tools.physics.card_entry import CardRefused

    if scorer_card(r["model"]).resolve() != card.resolve():  # another --out-dir: the user places that card
        return
    got = card_thresholds(json.loads(text), identity, card)
    want = {k: v for k, v in r["table"].items() if k not in ("vs_leading_jet_pt", "selection")}
    if any(got.get(k) != v for k, v in want.items()):
        raise CardRefused(f"{card}: the scorer would read {identity} {got} back, not the cuts computed "
                          f"{identity} {want}; nothing written")


def summary_lines(r: dict[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    identity, b, rate_hz = r["identity"], r["bkg_summary"], r["input_rate_hz"]
    acc = b["accounting"]
    lines = [f"{identity}: background {b['events']} events ({b['jets']} scored jets), "
             + (f"weighted by {b['weight_branch']} (effective {b['n_effective']:.0f})" if b["gen_weight"]
                else "unweighted")
             + f"; without a scored jet {acc['events_without_scored_jet']}, not scored {acc['events_not_scored']}"]
    for key, st in r["entry"].stats.items():
        a = st.achieved
        tail = "" if key.startswith("jet_") else f", rate {_rate_text(a, rate_hz)}"
        lines.append(f"  {key:18s} cut {st.cut:.6g}: background above {percent_text(a.to_json(), unit=' %')} "
                     f"({a.n_pass} events, {st.effective_above:.1f} effective){tail}")
        if st.looser_at_target is not None:
            lines.append(f"  {'':18s} {looser_note(st.looser_at_target)}")
    if r["pt_keys"]:
        note = _left_out_note(r["fit_left_out"])
        lines.append(f"  vs_leading_jet_pt: {', '.join(r['pt_keys'])}" + (f" ({note})" if note else ""))
        if note:
            lines += [f"  vs_leading_jet_pt.{k}: {_overall_note(r, k)}" for k in r["pt_keys"]]
    for k, kinds in r["pt_flatness"].items():
        lines.append(f"  {k} pass rate vs leading-jet pT, chi2/ndf against one rate: " + "; ".join(
            f"{kind} {NO_FLATNESS_TEST}" if c["p"] is None else
            f"{kind} {c['chi2']:.1f}/{c['ndf']} (p = {c['p']:.2g}{', not flat' if c['p'] < P_FLAT else ''})"
            for kind, c in kinds.items()))
    for k, why in r["omitted"].items():
        lines.append(f"  vs_leading_jet_pt.{k} omitted: {why}")
    for f, row in r["signal_rows"].items():
        lines.append(f"  signal {f}: " + ", ".join(
            f"{k} {percent_text(row[k], unit=' %')}" for k in r["effs"]))
    return lines
