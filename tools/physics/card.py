"""``hltcard MODEL.onnx --background FILE``: a model's trigger thresholds, made by one command.

Runs the model over a background sample **through hltrun's own path** (tools/physics/card_run.py:
the user's configuration, default ``configs/path.yaml``, in-process), weights events by ``genWeight``
when the files have it, and computes the model's ``thresholds.json`` entry with the function
``evaluate_models`` uses for the shipped models (tools/physics/card_entry.py): event- and jet-level
cuts at each background efficiency and the pT-dependent cut (``vs_leading_jet_pt``). The entry is
merged into ``thresholds.json`` beside the model (other models' entries kept), where the scorer finds
it: ``hltrun configs/path.yaml modules.vae.model=MODEL.onnx`` then needs no threshold. A short card
is written with it (tools/physics/card_write.py): ``<model>_card.md``, ``<model>_card.json`` and two
plots (score distributions with the cuts; pass rate vs leading-jet pT), with the rate at the HLT
input rate and, for ``--signal`` files, the signal efficiency at each cut.

Exit codes (one line on stderr, no traceback unless ``--debug``): 0 written; 2 a usage or
configuration problem, or a cut that cannot be written (not finite, or resting on fewer than
``--min-events-above`` effective background events, or a background whose weights sum to 0 or less); 3 a sample that cannot be read (missing file,
missing branches); 4 a model the path cannot run; 1 an internal error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from hltrun.framework.resources import find_file, local_output_path, unreadable_reason
from hltrun.framework.stdio import entry_point
from hltrun.modules.working_point import efficiency_key
from hltrun.tools.physics.card_entry import MIN_EFFECTIVE_ABOVE, CardRefused, check_min_events_above

DEFAULT_CONFIG = "configs/path.yaml"
EXIT_CUTS = 2


def _eff(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number like 1e-2, got {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"a background efficiency is between 0 and 1 (exclusive), got {text}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hltcard", description="Thresholds for any anomaly-detection model: run it over a background sample "
        "through the HLT path, write its cuts into thresholds.json beside the model, and a short card.",
        epilog="example: hltcard mymodel.onnx --background data/qcd_dijet.root --bkg-eff 1e-2 "
               "--signal data/rsg_ww_3p5TeV.root",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="the model file (.onnx; its identity in thresholds.json is the file stem)")
    p.add_argument("--background", nargs="+", type=Path, required=True, metavar="FILE",
                   help="background (QCD) ROOT file(s), not used in training; events weighted by --weight-branch "
                        "when present")
    p.add_argument("--signal", nargs="+", type=Path, default=[], metavar="FILE",
                   help="signal ROOT file(s): the card gives the signal efficiency at each cut (each file its own row)")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="the hltrun configuration whose path scores the events (its batcher, scorer settings and the "
                        "filter's reduce; default %(default)s)")
    p.add_argument("--set", dest="sets", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="configuration overrides, as on the hltrun command line (e.g. modules.vae.backend=onnxruntime)")
    p.add_argument("--scorer", default=None, metavar="LABEL",
                   help="the VAEAnomalyScorer module to run (default: the configuration's only one)")
    p.add_argument("--bkg-eff", nargs="+", default=["1e-2", "1e-3"], metavar="EFF",
                   help="background efficiencies to cut at (keys bkg_eff_<EFF>, the filter's background_efficiency; "
                        "default 1e-2 1e-3)")
    p.add_argument("--input-rate-hz", type=float, default=None,
                   help="HLT input rate the background pass fraction is turned into a rate with "
                        "(default: the configuration's options.inputRateHz)")
    p.add_argument("--max-events", type=int, default=None, metavar="N", help="read at most N events per file")
    p.add_argument("--weight-branch", default="genWeight", help="per-event weight branch (absent from a file: its events weigh 1; default %(default)s)")
    p.add_argument("--min-events-above", type=float, default=MIN_EFFECTIVE_ABOVE, metavar="N",
                   help="refuse a cut resting on fewer effective background events above it (the relative "
                        "statistical error on its rate is about 1/sqrt(N); default %(default)g). At least 0: an "
                        "effective count is never negative, so 0 already accepts every finite cut (a negative N "
                        "would only hide that the check is off)")
    p.add_argument("--pt-edges", nargs="+", type=float, default=None, metavar="GEV",
                   help="lower edges of the leading-jet pT bins of the pass-rate-vs-pT table and its chi-square, "
                        "increasing (the first bin also takes the events below it, the last is open; e.g. the "
                        "shipped card's 600 700 850 1000 1300 1600); default: six bins of equal events of the "
                        "background sample")
    p.add_argument("--out-dir", type=local_output_path, default=None,
                   help="where thresholds.json and the card go (default: the model's folder, where the scorer reads "
                        "thresholds.json)")
    p.add_argument("--no-plots", action="store_true", help="skip the two PNG plots")
    p.add_argument("--debug", action="store_true", help="show tracebacks and the path's log")
    return p


def compute(args: argparse.Namespace) -> dict[str, Any]:
    """Score the samples through the path and compute the entry and the card's numbers."""
    from hltrun.framework.errors import ConfigError
    from hltrun.framework.weights import weight_sum
    from hltrun.modules.vae_scorer import model_identity
    from hltrun.tools.physics.card_entry import card_entry, weight_sum_refusal, with_pt_fits
    from hltrun.tools.physics.card_run import score_files
    from hltrun.tools.physics.eval_stats import effective_n, pass_rate, sample_pt_edges
    from hltrun.tools.physics.pt_quantile_fit import fit_events

    effs = {efficiency_key(e): float(e) for e in args.bkg_eff}
    if len(effs) != len(args.bkg_eff):
        raise ConfigError(f"--bkg-eff {' '.join(args.bkg_eff)}: the same efficiency twice")
    bkg, plan = score_files(args.config, args.sets, args.model, args.background, args.max_events,
                            args.weight_branch, args.scorer, "background")
    signals = [(f, score_files(args.config, args.sets, args.model, [f], args.max_events, args.weight_branch,
                               args.scorer, "signal")[0]) for f in args.signal]
    jet_weight = bkg.jet_weight  # a copy (the event weights, jet by jet): taken once
    why = weight_sum_refusal(bkg.weight, jet_weight, args.weight_branch)
    if why:
        raise CardRefused(why)
    entry = card_entry(bkg.event_score, bkg.weight, bkg.leading_pt, bkg.jet_score, jet_weight, effs,
                       fit_pt=False)  # the scalar cuts first: refuse before fitting on nothing
    why = entry.refusal(args.min_events_above, "a larger --background sample, fewer --bkg-eff, or --min-events-above")
    if why:
        raise CardRefused(why)
    fit_error = None
    try:
        entry = with_pt_fits(entry, bkg.event_score, bkg.weight, bkg.leading_pt, effs)
    except (np.linalg.LinAlgError, RuntimeError, ValueError) as exc:  # the scalar cuts stand without it
        fit_error = f"the pT fit failed ({type(exc).__name__}: {exc})"
    pt_keys, omitted = [], {}
    fitted = int(np.count_nonzero(fit_events(bkg.event_score, bkg.leading_pt)))  # no pT or no score: not fitted
    left_out = bkg.n_events - fitted
    for k in effs:
        fit = entry.fits.get(k)
        if fit is None:
            omitted[k] = fit_error or "no events to fit"
        elif not np.all(np.isfinite(fit.coefficients)) or not 0 < fit.pt_range_gev[0] < fit.pt_range_gev[1]:
            omitted[k] = (f"the fit gave coefficients {fit.coefficients.tolist()} over leading-jet pT "
                          f"{list(fit.pt_range_gev)} GeV")
        else:
            pt_keys.append(k)
    table = entry.to_json(pt_keys=pt_keys)
    if "vs_leading_jet_pt" in table:
        from hltrun.modules.working_point import parse_pt_cuts

        try:
            parse_pt_cuts(table["vs_leading_jet_pt"])  # what the scorer will check
        except ValueError as exc:
            omitted = {k: str(exc) for k in pt_keys}
            table.pop("vs_leading_jet_pt")
            pt_keys = []
    table["selection"] = dict(plan.selection)  # what the cuts hold for: the scorer compares its path's with it
    rate_hz = args.input_rate_hz
    if rate_hz is None:
        from hltrun.tools.physics.card_run import plan_config

        cfg, _ = plan_config(args.config, args.sets, args.model, args.background[0], 1, args.scorer)
        rate_hz = float(cfg.options.inputRateHz)
    from hltrun.tools.physics.eval_working_point import flatness

    edges = list(args.pt_edges) if args.pt_edges else sample_pt_edges(bkg.leading_pt)
    pt_rates: dict[str, Any] = {}
    pt_flatness: dict[str, Any] = {}
    for k in effs:
        cuts = {"inclusive": entry.scalar[k]}
        if k in pt_keys:
            cuts["vs_leading_jet_pt"] = entry.fits[k].cuts_at(bkg.leading_pt)
        pt_rates[k], pt_flatness[k] = {}, {}
        for kind, cut in cuts.items():
            # chi-square of the bins against one common rate (binomial errors at the pooled rate), and the bins'
            # rates it compares: the table's
            flat = flatness(bkg.event_score, bkg.weight, bkg.leading_pt, edges, cut)
            pt_rates[k][kind], pt_flatness[k][kind] = flat["rates"], flat["chi2"]
    # the fit keeps its target of the events it was fitted on; of all events (the inclusive cut's denominator) it
    # keeps less where events were left out: measured on the events, as the signal table sets the two side by side
    pt_overall = {k: pass_rate(bkg.event_score, bkg.weight, entry.fits[k].cuts_at(bkg.leading_pt)) for k in pt_keys}
    sig_rows = {}
    for f, s in signals:
        row: dict[str, Any] = {"events": s.n_events, "gen_weight": s.has_gen_weight, "accounting": s.accounting}
        for k in effs:
            row[k] = pass_rate(s.event_score, s.weight, entry.scalar[k]).to_json()
            row[f"jet_{k}"] = pass_rate(s.jet_score, s.jet_weight, entry.scalar[f"jet_{k}"]).to_json()
            if k in pt_keys:
                row[f"vs_leading_jet_pt_{k}"] = pass_rate(s.event_score, s.weight,
                                                          entry.fits[k].cuts_at(s.leading_pt)).to_json()
        sig_rows[str(f)] = row
    w = bkg.weight
    return {
        "model": args.model, "identity": model_identity(str(args.model), plan.precision),  # as the scorer reads it
        "effs": effs, "entry": entry, "table": table, "pt_keys": pt_keys, "omitted": omitted,
        "fit_left_out": left_out, "fit_events": fitted, "pt_overall": pt_overall,
        "plan": plan, "background": bkg, "signals": signals, "signal_rows": sig_rows, "pt_rates": pt_rates,
        "pt_flatness": pt_flatness, "pt_edges_gev": edges, "input_rate_hz": rate_hz,
        "pt_edges_from": "--pt-edges" if args.pt_edges else "the background sample (about equal events per bin)",
        "bkg_summary": {"files": [str(f) for f in args.background], "events": bkg.n_events,
                        "jets": int(len(bkg.jet_score)), "gen_weight": bkg.has_gen_weight,
                        "weight_branch": args.weight_branch, "sum_weights": weight_sum(w),
                        "n_effective": effective_n(w), "accounting": bkg.accounting},
    }


@entry_point("hltcard")  # stderr closed, or its reader gone: a refusal keeps its exit code
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hltcard`` (module docstring: exit codes)."""
    from hltrun.framework.cli import setup_logging
    from hltrun.framework.destinations import folders_made_undone

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(quiet=not args.debug, debug=args.debug)  # the path's warnings as hltrun prints them
    with folders_made_undone() as undo:  # a refused card leaves no --out-dir made by its check behind
        code = _card(args, argv)
        if code:
            undo()
    return code


def _card(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Check, score, write and print the card; a failure is one line and its exit code."""
    from hltrun.framework.errors import HltError
    from hltrun.framework.interrupt import exit_code_of, signal_behind

    try:
        if args.max_events is not None and args.max_events < 1:
            raise CardRefused(f"--max-events {args.max_events}: expected at least 1")
        why = check_min_events_above(args.min_events_above)
        if why:
            raise CardRefused(why)
        if args.input_rate_hz is not None and not (args.input_rate_hz > 0 and np.isfinite(args.input_rate_hz)):
            raise CardRefused(f"--input-rate-hz {args.input_rate_hz}: expected a positive number")
        for e in args.bkg_eff:
            _eff_checked(e)
        why = check_pt_edges(args.pt_edges)
        if why:
            raise CardRefused(why)
        why = unreadable_reason(args.model, "model file")
        if why is not None:
            raise CardRefused(why)
        from hltrun.tools.physics.card_run import ScoringFailed
        from hltrun.tools.physics.card_write import scorer_card, summary_lines, write_card

        out_dir = args.out_dir if args.out_dir is not None else scorer_card(args.model).absolute().parent
        check_out_dir(out_dir, card_identity(args), args.out_dir is not None)  # before the samples are scored
        args.background, args.signal = shipped_or_given(args.background), shipped_or_given(args.signal)
        check_samples([*args.background, *args.signal])  # a typo in the last --signal: before the first is scored
        try:
            result = compute(args)
        except ScoringFailed as exc:
            raise _Failed(str(exc), 4) from exc
        written = write_card(result, out_dir, not args.no_plots, _command(argv), out_dir_name(args.out_dir is not None))
    except CardRefused as exc:
        return _fail(str(exc), EXIT_CUTS, args.debug)
    except _Failed as exc:
        return _fail(str(exc), exc.code, args.debug)
    except HltError as exc:
        return _fail(str(exc), exc.exit_code, args.debug)
    except KeyboardInterrupt as exc:
        return _fail(str(exc) or "interrupted by the user (Ctrl-C)", exit_code_of(exc), args.debug)
    except Exception as exc:  # a bug: still one line unless --debug (Ctrl-C while the path runs: JobFailed)
        interrupt = signal_behind(exc)
        if interrupt is not None:
            return _fail(str(interrupt) or "interrupted by the user (Ctrl-C)", exit_code_of(interrupt), args.debug)
        if args.debug:
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1, False)
    return _print_summary(summary_lines(result), written, args.debug)


def _print_summary(lines: list[str], written: list[Path], debug: bool) -> int:
    """The card's summary and the files written, on stdout: a destination like the others (framework/destinations.py
    ``printing``), so ``> /dev/full`` or a reader gone (``| head -1``) is one line, exit 4, not a traceback (exit 1).
    The card is written by then: a closed stdout (``>&-``) loses nothing, and says nothing."""
    from hltrun.framework.destinations import printing
    from hltrun.framework.errors import HltError

    try:
        with printing("the card's summary", required=False):
            for line in lines:
                print(line)
            for path in written:
                print(f"wrote {path}")
    except HltError as exc:
        return _fail(str(exc), exc.exit_code, debug)
    return 0


def shipped_or_given(files: list[Path]) -> list[Path]:
    """Each sample as hltrun finds an input file (framework/resources.py): the name as given, else the shipped
    file of that name, so the documented ``--background data/qcd_dijet.root`` works from any folder, as
    ``hltrun configs/path.yaml`` and its ``data/...`` inputs do (it was "input file not found" outside the
    checkout). A file found nowhere stays as given, for check_samples' line."""
    from hltrun.framework.errors import SourceError

    return [find_file(f, "input file", SourceError) for f in files]


def check_samples(files: list[Path]) -> None:
    """Every --background and --signal file readable, as ``card_run.score_file`` checks each before it scores
    it, but all of them before the first is scored: a missing signal file was said only after the whole
    background had run through the path. The same line and exit code (the source's, 3)."""
    from hltrun.framework.errors import SourceError

    for path in files:
        why = unreadable_reason(path, "input file")
        if why is not None:
            raise SourceError(why)


def card_identity(args: argparse.Namespace) -> str:
    """The model's name in thresholds.json as the configured scorer reads it back (vae_scorer's ``model_identity``
    with the scorer's precision: ``--set modules.vae.precision=int8`` reads ``<stem>_int8``). The cuts were written
    under the file's stem, where such a run found none of its own and took them, with a warning, as "the fp32
    model's cuts". From the validated configuration, before any sample is read."""
    from hltrun.modules.vae_scorer import model_identity
    from hltrun.tools.physics.card_run import plan_config

    plan = plan_config(args.config, args.sets, args.model, args.background[0], 1, args.scorer)[1]
    return model_identity(str(args.model), plan.precision)


def check_out_dir(out_dir: Path, identity: str, given: bool = True) -> None:
    """The folder thresholds.json and the card go to, by hltrun's destination policy
    (framework/destinations.py): made if missing, probed for a write, and the set's files in it
    (``write_card`` renames them into place together; ``identity``: the model's name in them) checked as set
    members; an unusable one is one ModuleError line (exit 4), before the samples are scored."""
    from hltrun.framework.destinations import check_folder_destination, check_set_member

    what = out_dir_name(given)
    folder = check_folder_destination(out_dir, what)
    for name in ("thresholds.json", f"{identity}_card.md", f"{identity}_card.json"):
        check_set_member(folder / name, what)


def out_dir_name(given: bool) -> str:
    """The card's folder as its lines name it: the option the user gave, or where the card goes without it."""
    return "--out-dir" if given else "the model's folder (where thresholds.json and the card go)"


def check_pt_edges(edges: list[float] | None) -> str | None:
    """Why ``--pt-edges`` cannot bin the leading-jet pT (finite, at least 0, strictly increasing), or None."""
    if edges is None:
        return None
    if not all(np.isfinite(e) and e >= 0 for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
        given = " ".join(f"{e:g}" for e in edges)
        return f"--pt-edges {given}: expected finite pT values >= 0 GeV, strictly increasing"
    return None


class _Failed(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _eff_checked(text: str) -> float:
    try:
        return _eff(text)
    except argparse.ArgumentTypeError as exc:
        raise CardRefused(f"--bkg-eff {text}: {exc}") from None


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exc()
    from hltrun.framework.errors import printable

    sys.stderr.write(f"hltcard: error: {printable(message)}\n")  # a quoted file name with a newline stays one line
    return code


def _command(argv: list[str] | None) -> str:
    import shlex

    return "hltcard " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
