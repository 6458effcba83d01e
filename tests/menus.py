"""The prescaled menus the rate tests run over the shipped QCD sample (lumis 1-10): a jet path, an HT path and a
path no QCD event passes, each behind its HLTPrescaler, in prescale columns c1, c2, ..."""

from __future__ import annotations

from pathlib import Path

QCD = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"

# path -> (its prescaler's label, its filter's label, the filter)
PATHS = {"HLT_J": ("preJ", "jet", "{type: JetPtFilter, min_pt: 500.0, eta_max: 2.5}"),
         "HLT_H": ("preH", "ht", "{type: HTFilter, min_ht: 1050.0, jet_pt_min: 30.0, eta_max: 2.5}"),
         "HLT_None": ("preN", "none", "{type: JetPtFilter, min_pt: 100000.0, eta_max: 2.5}")}


def prescaled_menu(config: Path, prescales: dict[str, list[int]], lumi_columns: str = "",
                   output: Path | None = None) -> Path:
    """``config`` written: the paths of ``prescales`` (names of ``PATHS``) with their prescale in each column, c1
    the default; ``lumi_columns`` the PrescaleService's entry, if any; ``output`` a RootOutputModule's file on an
    end path, if any."""
    labels = [f"c{i + 1}" for i in range(len(next(iter(prescales.values()))))]
    modules = [f"  {PATHS[p][0]}: {{type: HLTPrescaler}}" for p in prescales]
    modules += [f"  {PATHS[p][1]}: {PATHS[p][2]}" for p in prescales]
    modules += [f"  out: {{type: RootOutputModule, file: {output}}}"] if output is not None else []
    paths = [f"  {p}: [{PATHS[p][0]}, {PATHS[p][1]}]" for p in prescales]
    table = [f"      - {{pathName: {p}, prescales: [{', '.join(map(str, f))}]}}" for p, f in prescales.items()]
    config.write_text("\n".join([
        "options: {inputRateHz: 100000}",
        f"source: {{type: RootJetSource, files: [{QCD}]}}",
        "modules:", *modules,
        "paths:", *paths,
        *(["endpaths:", "  e: [out]"] if output is not None else []),
        "services:",
        "  PrescaleService:",
        f"    lvl1Labels: [{', '.join(labels)}]",
        "    lvl1DefaultLabel: c1",
        "    prescaleTable:", *table,
        *([f"    {lumi_columns}"] if lumi_columns else []),
        "  TriggerRates: {}", ""]))
    return config
