"""The provenance record an output file keeps of the job that made its trigger bits, and how two differ.

CMSSW keeps the ParameterSets and the process history in every file, so that a file read months later
still says which configuration made it. hltrun's record (JSON, the output's ``Provenance`` key) holds
hltrun's version, the validated configuration, each scorer's network (the file that ran and its sha256)
and each filter's cut as resolved: a card's threshold, not only the card's name, which may since have
been regenerated. ``hltdiff`` names what differs between two files' records, so that "outputs DIFFER"
comes with its likely cause.
"""

from __future__ import annotations

import math
from typing import Any, Mapping


def record(version: str, configuration: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """The record: ``producer``, ``configuration`` and the job's facts (``accelerators``, ``cuts``), each
    number finite (``strict_json``)."""
    return strict_json({"producer": f"hltrun {version}", "configuration": dict(configuration), **facts})


def strict_json(value: Any) -> Any:
    """``value`` with each non-finite float as None: ``json.dumps`` writes them as ``Infinity`` and ``NaN``,
    which strict JSON readers refuse (auto's ``max_rel_diff`` is inf for an engine that disagrees, which its
    row's ``agrees: false`` says), and the whole record would be unreadable outside Python. None, not a
    string: the field stays a number or null, as hltbench verdict's JSON writes the same figure."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def readable(record: Any) -> bool:
    """Whether ``record`` has the form ``record`` writes (``differences`` compares): an object whose
    ``accelerators`` and ``cuts``, where present, map labels to objects. A later version's or another
    tool's form is not read (a cut that is a number stopped hltdiff on a TypeError)."""
    if not isinstance(record, dict):
        return False
    by_label = [record.get(key, {}) for key in ("accelerators", "cuts")]
    return all(isinstance(entries, dict) and all(isinstance(e, dict) for e in entries.values()) for entries in by_label)


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per difference that can change trigger bits: a scorer's network or engine, a filter's
    cut, hltrun's version, a setting of the source, the modules or the paths; empty when the two
    records agree on all of them."""
    lines: list[str] = []
    if old.get("producer") != new.get("producer"):
        lines.append(f"made by {old.get('producer', '?')} (old) and {new.get('producer', '?')} (new)")
    lines += _by_label("scorer", old.get("accelerators") or {}, new.get("accelerators") or {}, _scorer_change)
    lines += _by_label("filter", old.get("cuts") or {}, new.get("cuts") or {}, _cut_change)
    changed = _setting_changes(old.get("configuration") or {}, new.get("configuration") or {})
    lines += [f"configuration: {line}" for line in changed[:MAX_SETTING_LINES]]
    if len(changed) > MAX_SETTING_LINES:
        lines.append(f"configuration: and {len(changed) - MAX_SETTING_LINES} more setting(s) that differ")
    return lines


MAX_SETTING_LINES = 6
# settings that say where data comes from or goes, or how fast it is processed, not which events pass;
# the network, the engine and the cut are named by the scorer and filter lines already
_NOT_DECIDING = frozenset({
    "files", "file", "compression", "basket_events", "chunk_size", "decompression_threads", "read_ahead",
    "threads", "engine_cache", "warm_up", "io_binding", "graph_optimization", "mode", "providers", "cuda_graphs",
    "model", "models_dir", "backend", "threshold", "skipBadFiles"})


def _setting_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``where value (old) and value (new)`` for each setting of the source, the modules and the paths
    that differs (the options and services say how the job ran, not what it decided)."""
    flat_old, flat_new = ({key: value for part in ("source", "modules", "paths", "endpaths")
                           for key, value in _flatten(config.get(part), part)} for config in (old, new))
    return [f"{key} {flat_old.get(key, '-')} (old) and {flat_new.get(key, '-')} (new)"
            for key in sorted(set(flat_old) | set(flat_new))
            if flat_old.get(key) != flat_new.get(key) and key.rsplit(".", 1)[-1] not in _NOT_DECIDING]


def _flatten(value: Any, where: str) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [item for key, sub in value.items() for item in _flatten(sub, f"{where}.{key}")]
    return [(where, value)]


def _by_label(kind: str, old: Mapping[str, Any], new: Mapping[str, Any], change) -> list[str]:  # noqa: ANN001
    lines = []
    for label in sorted(set(old) | set(new)):
        if label not in new or label not in old:
            side = "old" if label in old else "new"
            lines.append(f"{kind} '{label}' only in the {side} job")
            continue
        said = change(old[label], new[label])
        if said:
            lines.append(f"{kind} '{label}': {said}")
    return lines


def _scorer_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A scorer's network (its id, or on one engine the file's sha256) or engine, as they changed."""
    engine_old, engine_new = _engine(old), _engine(new)
    if old.get("model_id") != new.get("model_id"):
        return f"network {_network(old)} on {engine_old} (old) and {_network(new)} on {engine_new} (new)"
    if engine_old == engine_new:
        if old.get("model_sha256") != new.get("model_sha256"):
            return (f"network {_network(old)} (old) and {_network(new)} (new) on {engine_old}: another file "
                    f"(a retrained or re-exported network)")
        return ""
    # each engine runs its own file of the network (.onnx, .tflite...): their digests cannot be compared
    return (f"network {old.get('model_id')} on {engine_old} (old) and {engine_new} (new): the engines' "
            f"scores agree only within their tolerance")


def _engine(choice: Mapping[str, Any]) -> str:
    return f"{choice.get('backend', '?')} ({choice.get('device', '?')})"


def _network(choice: Mapping[str, Any]) -> str:
    digest = str(choice.get("model_sha256") or "")
    return f"{choice.get('model_id') or choice.get('model', '?')}{f' (sha256 {digest[:12]})' if digest else ''}"


def _cut_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return ", ".join(f"{key} {old.get(key, '-')} (old) and {new.get(key, '-')} (new)" for key in changed)
