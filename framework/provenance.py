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
from typing import Any, Mapping, Sequence


def record(version: str, configuration: Mapping[str, Any], facts: Mapping[str, Any]) -> dict[str, Any]:
    """The record: ``producer``, ``configuration`` and the job's facts (``accelerators``, ``cuts``), each
    number finite (``strict_json``)."""
    return strict_json({"producer": f"hltrun {version}", "configuration": dict(configuration), **facts})


STOPPED_KEY = "stopped_by_signal"  # as hltrun.json's job: the graceful signal a kept output's job stopped on
FAILURE_KEY = "failure"  # as hltrun.json's job: the one-line error (or signal) that ended the job early


def stop_marks(signame: str | None, failure: str | None = None) -> dict[str, str]:
    """What a report file read alone says of a job that did not end well: the signal that stopped it
    (``STOPPED_KEY``) and the one-line error that ended it (``FAILURE_KEY``: a bad input part-way, an output
    that failed), each only when there is one. A whole job's files have neither, so nothing tells them
    apart from a failed job's but these marks."""
    return {key: str(value) for key, value in ((STOPPED_KEY, signame), (FAILURE_KEY, failure)) if value}


def stopped_early(record: Mapping[str, Any], signame: str | None) -> dict[str, Any]:
    """``record`` for an output kept after a graceful stop (SIGUSR2, SIGINT: framework/interrupt.py) with the
    signal's name, so that the file says it holds only the events finished before it: its configuration
    still says ``maxEvents: -1``, and an output of the whole input looks the same. Unchanged for None."""
    return {**record, **stop_marks(signame)}


def stopped_by(record: Mapping[str, Any] | None) -> str | None:
    """The graceful signal the job that wrote a file stopped on (``stopped_early``); None for a whole job's
    file, or one that does not say (an older output)."""
    value = record.get(STOPPED_KEY) if isinstance(record, Mapping) else None
    return str(value) if value else None


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


# what of a scorer's recorded choice can change a score: the engine, the device, the network and its file's
# digest (not ``reason`` or auto's ``timings``, which differ between two workers that time the same choice,
# nor the path, relative or not by the worker's folder, where a digest says which file it was)
_CHOICE_DECIDES = ("backend", "device", "model_id", "model_sha256")


def network_digest(choice: Mapping[str, Any]) -> str:
    """The sha256 that says which network a scorer ran: of the file the user gave. A network imported into
    ONNX (``imported_from``) runs a cached file whose bytes hold the converter's version (a torch upgrade
    re-imports it), so its own digest would call one .pt two networks: the original's is the identity."""
    origin = choice.get("imported_from")
    if isinstance(origin, Mapping) and origin.get("sha256"):
        return str(origin["sha256"])
    return str(choice.get("model_sha256") or "")


def imported_text(origin: Mapping[str, Any]) -> str:
    """Where a network imported into ONNX came from, as the JobReport and report.html say it: the file the
    user gave, its format and sha256 (the network's identity), and the converter that made the ONNX file."""
    return (f"imported into ONNX from {origin.get('file')} ({origin.get('format')}, sha256 {origin.get('sha256')}) "
            f"with {origin.get('converter')}")


def mask_digest(facts: Mapping[str, Any]) -> str | None:
    """The sha256 of the certification JSON (``source.lumiMask``) that selected the job's lumi sections; None:
    no mask. Its contents, not its path, decide which events run (a worker's copy may sit elsewhere)."""
    mask = facts.get("lumi_mask")
    return str(mask.get("sha256")) if isinstance(mask, Mapping) and mask.get("sha256") else None


def deciding(facts: Mapping[str, Any]) -> dict[str, Any]:
    """What of a job's facts can change a decision or a score: each scorer's engine, device and network,
    each filter's cut as resolved, and the lumi mask's contents."""
    return {"producer": facts.get("producer"), "lumi_mask": mask_digest(facts),
            "accelerators": {label: {**{key: choice.get(key) for key in (*_CHOICE_DECIDES,
                                                                         *(() if choice.get("model_sha256")
                                                                           else ("model",)))},
                                     "model_sha256": network_digest(choice) or None}
                             for label, choice in sorted((facts.get("accelerators") or {}).items())},
            "cuts": dict(sorted((facts.get("cuts") or {}).items()))}


def variant(facts: Mapping[str, Any], units: Sequence[int], workers: Sequence[str] = ()) -> dict[str, Any]:
    """One way units ran (a distributed run): the facts one of them recorded, the units and the workers."""
    return {**facts, "units": sorted(units), "workers": list(dict.fromkeys(workers))}


def merge_variants(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``a`` and ``b`` as one list of variants: those whose ``deciding`` facts agree become one (their
    units and workers joined, the first one's reason and timings kept), in the order of their first
    unit, so that the result does not depend on the order in which units finished."""
    out: list[dict[str, Any]] = [dict(v) for v in a]
    for other in b:
        same = next((v for v in out if deciding(v) == deciding(other)), None)
        if same is None:
            out.append(dict(other))
            continue
        keep = dict(other) if min(other["units"], default=0) < min(same["units"], default=0) else same
        keep.update(units=sorted(set(same["units"]) | set(other["units"])),
                    workers=list(dict.fromkeys([*same["workers"], *other["workers"]])))
        out[out.index(same)] = keep
    return sorted(out, key=lambda v: min(v["units"], default=0))


def with_variants(variants: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A distributed job's facts from its units' variants: the first unit's, and where the units did not
    all run the same way, every variant under ``variants`` (CMSSW keeps each process history that went
    into a merged file)."""
    if not variants:
        return {}
    first = {key: value for key, value in variants[0].items() if key not in ("units", "workers")}
    return {**first, "variants": [dict(v) for v in variants]} if len(variants) > 1 else first


def variants_line(variants: Sequence[Mapping[str, Any]]) -> str:
    """One line naming what differs between the variants: per scorer its engines, per filter its cuts,
    each with its number of units and its workers."""
    def units(v: Mapping[str, Any]) -> str:
        workers = f" on {', '.join(v['workers'])}" if v.get("workers") else ""
        return f"{len(v['units'])} unit(s){workers}"

    said = []
    facts = [deciding(v) for v in variants]
    if any(f["producer"] != facts[0]["producer"] for f in facts):
        said.append("made by " + ", ".join(f"{f['producer']} in {units(v)}" for f, v in zip(facts, variants)))
    if any(f["lumi_mask"] != facts[0]["lumi_mask"] for f in facts):
        said.append("lumi mask " + ", ".join(f"{_mask(v)} in {units(v)}" for v in variants))
    for kind, key, show in (("scorer", "accelerators", _engine), ("filter", "cuts", _cut)):
        for label in sorted({label for f in facts for label in f[key]}):
            seen = [f[key].get(label) for f in facts]
            if any(s != seen[0] for s in seen):
                said.append(f"{kind} '{label}' " + ", ".join(
                    f"{show(s) if s is not None else 'absent'} in {units(v)}" for s, v in zip(seen, variants)))
    return "; ".join(said) or f"{len(variants)} variants"


def _mask(facts: Mapping[str, Any]) -> str:
    """``golden.json (sha256 0123456789ab)``, or ``none``."""
    digest = mask_digest(facts)
    return f"{facts['lumi_mask'].get('file')} (sha256 {digest[:12]})" if digest else "none"


def _cut(cut: Mapping[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(cut.items()))


def merged_record(records: Sequence[tuple[int, Mapping[str, Any]]]) -> dict[str, Any]:
    """One output's record from its parts' (unit, record) in unit order (a distributed run): the first
    part's, with every variant under ``variants`` where the parts were not all made the same way."""
    variants: list[dict[str, Any]] = []
    for unit, rec in records:
        variants = merge_variants(variants, [variant({k: v for k, v in rec.items() if k != "configuration"}, [unit])])
    first = records[0][1]
    return {"configuration": first.get("configuration", {}), **with_variants(variants)}


def readable(record: Any) -> bool:
    """Whether ``record`` has the form ``record`` writes (``differences`` compares): an object whose
    ``accelerators`` and ``cuts``, where present, map labels to objects. A later version's or another
    tool's form is not read (a cut that is a number stopped hltdiff on a TypeError)."""
    if not isinstance(record, dict):
        return False
    by_label = [record.get(key, {}) for key in ("accelerators", "cuts")]
    variants = record.get("variants", [])
    return all(isinstance(entries, dict) and all(isinstance(e, dict) for e in entries.values()) for entries in by_label) \
        and isinstance(variants, list) and all(readable(v) and "variants" not in v and isinstance(v.get("units"), list)
                                               and isinstance(v.get("workers", []), list) for v in variants)


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """One line per difference that can change trigger bits: a scorer's network or engine, a filter's
    cut, hltrun's version, a setting of the source, the modules or the paths; empty when the two
    records agree on all of them."""
    lines: list[str] = []
    if old.get("producer") != new.get("producer"):
        lines.append(f"made by {old.get('producer', '?')} (old) and {new.get('producer', '?')} (new)")
    if mask_digest(old) != mask_digest(new):
        lines.append(f"lumi mask {_mask(old)} (old) and {_mask(new)} (new)")
    lines += _by_label("scorer", old.get("accelerators") or {}, new.get("accelerators") or {}, _scorer_change)
    lines += [f"the {side} job's units were not all made the same way: {variants_line(record['variants'])}"
              for side, record in (("old", old), ("new", new)) if record.get("variants")]
    lines += _by_label("filter", old.get("cuts") or {}, new.get("cuts") or {}, _cut_change)
    changed = _setting_changes(old.get("configuration") or {}, new.get("configuration") or {})
    lines += [f"configuration: {line}" for line in changed[:MAX_SETTING_LINES]]
    if len(changed) > MAX_SETTING_LINES:
        lines.append(f"configuration: and {len(changed) - MAX_SETTING_LINES} more setting(s) that differ")
    return lines


MAX_SETTING_LINES = 6
# settings that say where data comes from or goes, or how fast it is processed, not which events pass;
# the network, the engine, the cut and the lumi mask's contents are named by their own lines already
_NOT_DECIDING = frozenset({
    "files", "file", "compression", "basket_events", "chunk_size", "decompression_threads", "read_ahead",
    "threads", "engine_cache", "warm_up", "io_binding", "graph_optimization", "mode", "providers", "cuda_graphs",
    "model", "models_dir", "backend", "threshold", "skipBadFiles", "lumiMask"})  # the mask: its own line, by digest


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
        if network_digest(old) != network_digest(new):
            return (f"network {_network(old)} (old) and {_network(new)} (new) on {engine_old}: another file "
                    f"(a retrained or re-exported network)")
        return _converter_change(old, new)
    # each engine runs its own file of the network (.onnx, .tflite...): their digests cannot be compared
    return (f"network {old.get('model_id')} on {engine_old} (old) and {engine_new} (new): the engines' "
            f"scores agree only within their tolerance")


def _engine(choice: Mapping[str, Any]) -> str:
    return f"{choice.get('backend', '?')} ({choice.get('device', '?')})"


def _converter_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The same network imported into ONNX by another converter (a torch or tf2onnx upgrade): not another
    network, but its scores agree with the native runtime's only within the import's tolerance."""
    was, now = (str((c.get("imported_from") or {}).get("converter") or "") for c in (old, new))
    if was == now or not (was and now):
        return ""
    was, now = (c.rsplit(", ", 1)[-1] for c in (was, now))  # "torch.onnx.export (...), torch 2.13.0": the version
    return (f"network {_network(old)} imported into ONNX by {was} (old) and {now} (new): the same network, each "
            f"import checked against its native runtime within its tolerance")


def _network(choice: Mapping[str, Any]) -> str:
    digest = network_digest(choice)
    return f"{choice.get('model_id') or choice.get('model', '?')}{f' (sha256 {digest[:12]})' if digest else ''}"


def _cut_change(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return ", ".join(f"{key} {old.get(key, '-')} (old) and {new.get(key, '-')} (new)" for key in changed)
