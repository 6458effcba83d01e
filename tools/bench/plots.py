"""PNG figures of an hltbench run, drawn like the IML 2022 study's: latency vs batch size and memory vs
batch size / events, one line per backend configuration, the study's own numbers beside ours.

Why a module of its own: plotting needs matplotlib (extra 'cpu'), the timing loop does not; and the
series are built by pure functions (``latency_series``, ``memory_series``) that tests check against
the JSON cells, so a unit slip (µs drawn as ms) cannot hide in the drawing code.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hltrun.tools.figures import save_figure

STUDY_FILE = Path(__file__).resolve().with_name("study_reference.json")
STUDY_LABEL = "IML 2022 study"


def load_study(path: Path = STUDY_FILE) -> dict[str, Any]:
    """The study's transcribed numbers (tools/bench/study_reference.json), each with its line in the text."""
    return json.loads(path.read_text())


def _label(cell: dict[str, Any]) -> str:
    return cell["backend"] + (f" x{cell['threads']}" if cell.get("threads", 1) != 1 else "")


def latency_series(cells: list[dict[str, Any]], model: str) -> dict[str, list[tuple[int, float, float]]]:
    """{config label: [(batch, ms per call, µs per jet), ...] sorted by batch} for one model."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    for c in cells:
        if c["model"] == model:
            out.setdefault(_label(c), []).append((c["batch"], c["ms_per_call"], c["us_per_jet"]))
    return {k: sorted(v) for k, v in out.items()}


def memory_series(cells: list[dict[str, Any]], model: str, isolated: bool = False) -> dict[str, list[tuple[int, float]]]:
    """{config label: [(batch, MB), ...]} for one model. ``isolated`` (hltbench --isolate: a process per
    configuration): the process's peak RSS, comparable with the study's per-framework figure. Otherwise
    what the configuration added (peak RSS - RSS before its backend loaded), because every backend ran in
    one process (TensorFlow, once imported, stays); floored at 1 MB for the log axis."""
    out: dict[str, list[tuple[int, float]]] = {}
    for c in cells:
        if c["model"] == model:
            mb = c["rss_peak_MB"] if isolated else max(c["rss_peak_MB"] - c["rss_before_load_MB"], 1.0)
            out.setdefault(_label(c), []).append((c["batch"], mb))
    return {k: sorted(v) for k, v in out.items()}


def plot(data: dict[str, Any], out_dir: Path, study: dict[str, Any] | None = None, prefix: str = "") -> list[Path]:
    """Write <prefix>latency.png and <prefix>memory.png into ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = load_study() if study is None else study
    cells, events = data["cells"], data.get("memory_vs_events", [])
    models = list(dict.fromkeys(c["model"] for c in cells)) or ["(none)"]
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = data.get("machine", {})
    isolated = bool(machine.get("isolated"))
    title = f"hltbench on {machine.get('cpu', '?')} ({machine.get('gpu') or 'no GPU'})"
    paths = []

    fig, axes = plt.subplots(2, len(models), figsize=(6.2 * len(models), 9), squeeze=False,
                             layout="constrained")
    for j, model in enumerate(models):
        top, bottom = axes[0][j], axes[1][j]
        for label, pts in latency_series(cells, model).items():
            b = [p[0] for p in pts]
            line, = top.plot(b, [p[1] for p in pts], "o-", label=label)
            bottom.plot(b, [p[2] for p in pts], "o-", color=line.get_color(), label=label)
        for ref in study.get("latency", []):
            if ref["model"] == model and ref.get("batch"):
                kw = dict(marker="v", s=110, color="black", zorder=5,
                          label=f"{STUDY_LABEL}: {ref['backend']} ≤ {ref['ms_per_call']:g} ms at {ref['batch']}")
                top.scatter([ref["batch"]], [ref["ms_per_call"]], **kw)
                kw["label"] = f"{STUDY_LABEL}: {ref['backend']} ≤ {ref['ms_per_call'] * 1e3 / ref['batch']:.0f} µs/jet"
                bottom.scatter([ref["batch"]], [ref["ms_per_call"] * 1e3 / ref["batch"]], **kw)
        top.set(title=f"{model}: inference time per call", ylabel="ms per call (batch)")
        bottom.set(title=f"{model}: per jet", ylabel="µs per jet", xlabel="batch size (jets per call)")
        for ax in (top, bottom):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(title + ": latency (lines: this run; ▼: upper bounds the study states)", fontsize=10)
    paths.append(out_dir / f"{prefix}latency.png")
    save_figure(fig, paths[-1], "hltbench plots", dpi=110, bbox_inches="tight")
    plt.close(fig)

    fig, axes = plt.subplots(2, len(models), figsize=(6.2 * len(models), 9), squeeze=False,
                             layout="constrained")
    for j, model in enumerate(models):
        top, bottom = axes[0][j], axes[1][j]
        for label, pts in memory_series(cells, model, isolated).items():
            top.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
        devs = [(c["batch"], c["device_MB"]) for c in cells if c["model"] == model and c.get("device_MB") is not None]
        if devs:
            top.plot(*zip(*sorted(devs)), "s--", label="GPU memory in use")
        for ref in study.get("memory", []):
            if ref["model"] == model:
                ls = "--" if ref["backend"] == "tensorflow" else ":"
                top.axhline(ref["MB"], color="black", ls=ls, lw=1.2,
                            label=f"{STUDY_LABEL}: {ref['backend']} {ref['MB']:g} MB ({ref['tool']}, "
                                  f"{ref['events'] // 1000}k events, flat in batch)")
        for label in dict.fromkeys(_label(e) for e in events if e["model"] == model):
            pts = sorted((e["jets"], e["rss_MB"]) for e in events if e["model"] == model and _label(e) == label)
            bottom.plot([p[0] for p in pts], [p[1] for p in pts], ".-", label=label)
        if not events:
            bottom.text(0.5, 0.5, "not run (--mem-jets 0)", transform=bottom.transAxes, ha="center")
        top.set(title=f"{model}: " + ("peak RSS, one process per configuration" if isolated else
                                      "peak RSS added by each configuration"),
                ylabel="MB" + ("" if isolated else " (peak - before load)"), xlabel="batch size")
        top.set_xscale("log", base=2)
        bottom.set(title=f"{model}: process RSS vs jets processed (batch {events[0]['batch'] if events else '?'})",
                   ylabel="process RSS MB", xlabel="jets processed")
        bottom.set_xscale("log")
        for ax in (top, bottom):
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
    fig.suptitle(title + ": memory (RSS sampled every 1 ms; " + ("one process per configuration)" if isolated else
                 "backends run one after another in one process)"), fontsize=10)
    paths.append(out_dir / f"{prefix}memory.png")
    save_figure(fig, paths[-1], "hltbench plots", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths
