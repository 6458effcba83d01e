"""ROOT output module: event ids, every path's decision and the kept products, per selected event.

Beside the ``Events`` tree, a ``LuminosityBlocks`` tree (as NanoAOD has one) lists every (run,
luminosityBlock) the job processed, with ``eventsProcessed``: the events of it the job saw, selected
or not (or skipped on error, ``TryToContinue``), and a ``Runs`` tree every run, with its
``eventsProcessed``. NanoAOD's own Runs branches beyond ``run`` (``genEventCount``, ``genEventSumw``...)
are not written: hltrun does not know the
generated events behind its input. An output that keeps accepted events only still says what was
read, so ``hltdiff`` can tell an event this job rejected from one it never read. Both trees are
sorted by run (and lumi); a distributed run's parts are merged, so a lumi section split across
work units is one row, as in a local run.

The file also names the process whose paths made its ``HLT_*`` bits (``Process``, a TObjString with the
job's ``process:``), as CMSSW's process history does for TriggerResults: ``hltdiff -O/-N`` checks it.
And it says what made them (``Provenance``, a TObjString of JSON, as CMSSW keeps the ParameterSets in
every file): hltrun's version, the validated configuration, each scorer's network with its sha256 and
each filter's cut as resolved (a card's threshold, not only the card's name); ``hltdiff`` names what
differs between two files' provenance.

Rows are buffered and written in input order (the framework tells which events are still in flight
on other streams), so the file is identical for any number of streams. The file is written under a
temporary name and renamed (or copied into a FIFO or device) only when the job ends cleanly, or is
stopped gracefully (SIGUSR2, SIGINT: the events finished before the stop, as cmsRun's graceful stop closes
its output files; framework/interrupt.py), by framework/atomic.py's policy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

import numpy as np

from hltrun.framework.atomic import Staged, writing
from hltrun.framework.context import StreamActivity
from hltrun.framework.destinations import check_file_destination
from hltrun.framework.errors import ConfigError
from hltrun.framework.event import Event
from hltrun.framework.provenance import merged_record, readable, stopped_early
from hltrun.framework.resources import refuse_remote_destination, user_path
from hltrun.framework.module import OutputModule
from hltrun.framework.schema import InputTag, limited

from .products import NANOAOD_NAMES
from .rootio import compression_codec, uproot_module, write_nanoaod

if TYPE_CHECKING:
    from hltrun.framework.context import ModuleContext, ProductInfo

log = logging.getLogger("hltrun")


@dataclass
class RootOutputParameters:
    file: str = "hltrun_output.root"
    tree: str = "Events"
    select_events: list[str] = field(default_factory=list)  # paths; empty: every event
    keep: list[InputTag] = field(default_factory=list)  # products to write, e.g. [vae]
    compression: Literal["zlib", "lzma", "lz4", "zstd", "none"] = "zlib"  # lzma: NanoAOD's, smallest, slowest
    # selected events buffered before they are written as one basket: bounds the module's memory
    # (~1 kB per buffered event) however long the job, and orders rows across streams
    basket_events: int = limited(1_000, 1, 1_000_000)

    def __post_init__(self) -> None:
        refuse_remote_destination(self.file, "file")
        if not Path(self.file).name or Path(self.file).name in (".", ".."):
            raise ValueError(f"file: expected a file name (e.g. output/out.root), got {self.file!r}")
        if self.tree in ("", LUMI_TREE, RUNS_TREE, PROCESS_KEY, PROVENANCE_KEY):  # the file's other keys
            raise ValueError(f"tree: expected a tree name other than {LUMI_TREE}, {RUNS_TREE}, {PROCESS_KEY} and "
                             f"{PROVENANCE_KEY} "
                             f"(the output's own keys), got {self.tree!r}")
        twice = next((tag for i, tag in enumerate(self.keep) if tag in self.keep[:i]), None)
        if twice is not None:
            raise ValueError(f"keep: {twice!r} is listed twice")


# the output's own branches and collections, which no kept product may write over (NanoAOD's names)
OWN_BRANCHES = ("run", "luminosityBlock", "event", "HLT", "HLTPrescaled")


def collection_of(name: str) -> str:
    """The NanoAOD collection a branch (or a kept tag, ':' read as '_') belongs to: its name up to the
    first '_', as coffea's NanoAODSchema splits it (``vae_score`` is ``vae.score``, counted by ``nvae``)."""
    return name.replace(":", "_").partition("_")[0]


def kept_name(tag: str, producer: "ProductInfo | None") -> str:
    """The name a kept product's branches start with: its label (``label_instance`` for ``label:instance``),
    or the NanoAOD name its producer gives the instance (the source's weight: ``genWeight``)."""
    names = producer.metadata.get(NANOAOD_NAMES, {}) if producer is not None else {}
    return names.get(tag.partition(":")[2]) or tag.replace(":", "_")


def check_kept_collections(keep: dict[str, str]) -> None:
    """Refuse kept products (tag -> the name they are written as) whose branches would collide: two in one
    collection (their jets zipped under one counter: a crash at the job's end, or one product's fields inside
    another's), one named like the output's own branches or like another's ``n<collection>`` counter (a
    branch silently replaced)."""
    owner: dict[str, str] = {}
    for tag, name in keep.items():
        c = collection_of(name)
        if c in OWN_BRANCHES:
            raise ValueError(f"keep: {tag!r} would write over the output's own {c!r} branch (run, luminosityBlock, "
                             "event, HLT_*, HLTPrescaled_*): rename the module")
        if c in owner:
            raise ValueError(f"keep: {owner[c]!r} and {tag!r} would share the NanoAOD collection {c!r} (branches "
                             "are <collection>_<field>, the collection ending at the first '_', as coffea reads "
                             "them): rename one of the modules")
        owner[c] = tag
    for c, tag in owner.items():
        if c.startswith("n") and c[1:] in owner:
            raise ValueError(f"keep: {tag!r} would share {c!r}, the counter of {owner[c[1:]]!r} "
                             "(n<collection>): rename one of the modules")
        if c.endswith(EVENT_SUFFIX) and c[:-len(EVENT_SUFFIX)] in owner:
            raise ValueError(f"keep: {tag!r} would share {c!r}, where the per-event values of "
                             f"{owner[c[:-len(EVENT_SUFFIX)]]!r} go (<collection>Event): rename one of the modules")


def product_columns(label: str, product: Any) -> dict[str, Any]:
    """Flatten a product into named columns: 1-D arrays become per-jet lists, scalars stay scalars."""
    if dataclasses.is_dataclass(product):
        items = []
        for f in dataclasses.fields(product):
            value = getattr(product, f.name)
            if not f.metadata.get("output", True):  # a field marked output: False is not written
                continue
            if f.metadata.get("expand") and value is not None:  # a mapping field: a column per key
                items += list(value.items())
            else:
                items.append((f.name, value))
    elif hasattr(type(product), "COLUMNS"):  # a product that is no dataclass names its columns
        items = [(name, getattr(product, name)) for name in type(product).COLUMNS]
    elif isinstance(product, dict):
        items = list(product.items())
    else:
        items = [("", product)]
    out = {}
    for name, value in items:
        key = f"{label}_{name}" if name else label
        if value is None or isinstance(value, (str, bytes)):
            continue
        arr = np.asarray(value)
        if arr.ndim <= 1 and arr.dtype.kind in "biuf":
            out[key] = arr
    if any(a.ndim == 1 for a in out.values()) and any(a.ndim == 0 for a in out.values()):
        # per-jet values make the collection <c> counted by n<c>, whose every <c>_* branch coffea's
        # NanoAODSchema zips under that counter (a per-event one beside them failed: KeyError 'content'):
        # the per-event values go to the singleton collection <c>Event (coffea: events.<c>Event.<field>)
        out = {k if a.ndim == 1 else per_event_name(k): a for k, a in out.items()}
    return out


EVENT_SUFFIX = "Event"


def per_event_name(key: str) -> str:
    """``batcher_truncated`` -> ``batcherEvent_truncated``: a per-event value of a product with per-jet ones."""
    collection, _, name = key.partition("_")
    return f"{collection}{EVENT_SUFFIX}_{name}"


PROCESS_KEY = "Process"  # TObjString: the process that wrote the file's HLT_* bits (hltdiff -O/-N)
PROVENANCE_KEY = "Provenance"  # TObjString, JSON: what made the bits (version, configuration, models, cuts)
LUMI_TREE = "LuminosityBlocks"  # NanoAOD's names
RUNS_TREE = "Runs"


def lumi_trees(lumis: dict[tuple[int, int], int]) -> dict[str, dict[str, np.ndarray]]:
    """The LuminosityBlocks and Runs trees' columns from {(run, lumi): events processed}, sorted."""
    rows = sorted(lumis.items())
    runs: dict[int, int] = {}
    for (run, _), n in rows:
        runs[run] = runs.get(run, 0) + n
    return {
        LUMI_TREE: {"run": np.array([r for (r, _), _ in rows], np.uint32),
                    "luminosityBlock": np.array([lumi for (_, lumi), _ in rows], np.uint32),
                    "eventsProcessed": np.array([n for _, n in rows], np.uint64)},
        RUNS_TREE: {"run": np.array(list(runs), np.uint32),
                    "eventsProcessed": np.array(list(runs.values()), np.uint64)}}


def decision_branches(paths: Sequence[str], label: str) -> list[tuple[str, str]]:
    """(path, branch) per path: NanoAOD names a trigger bit HLT_<path>, and a path already called HLT_X
    keeps its name. Paths X and HLT_X, which would share one branch (one path's bits lost), are a
    ConfigError naming both (checked with the configuration, and again at begin_job)."""
    out = [(p, p if p.startswith("HLT_") else f"HLT_{p}") for p in paths]
    written_as: dict[str, str] = {}
    for path, branch in out:
        if branch in written_as:
            raise ConfigError(f"modules.{label}: paths '{written_as[branch]}' and '{path}' would both be "
                              f"written as the branch {branch} (a path's bit is HLT_<path>): rename one of them")
        written_as[branch] = path
    return out


def kept_names(keep: list[str], consumed: Mapping[str, "ProductInfo"], label: str) -> dict[str, str]:
    """tag -> the name its branches start with, for every kept product; ConfigError if they would collide."""
    names = {tag: kept_name(tag, consumed.get(tag)) for tag in keep}
    try:
        check_kept_collections(names)
    except ValueError as exc:
        raise ConfigError(f"modules.{label}: {exc}") from None
    return names


PRESCALED_PREFIX = "HLTPrescaled_"


def prescaled_branch(trigger_branch: str) -> str:
    """HLT_X -> HLTPrescaled_X: the branch saying that X's HLTPrescaler stopped it."""
    return PRESCALED_PREFIX + trigger_branch[len("HLT_"):]


_ID_DTYPES = {"run": np.uint32, "luminosityBlock": np.uint32, "event": np.uint64}  # NanoAOD's types


def _nanoaod_dtype(key: str, dtype: np.dtype) -> np.dtype:
    """The branch type NanoAOD would use: ids unsigned, floating point as Float_t, the rest as is."""
    if key in _ID_DTYPES:
        return np.dtype(_ID_DTYPES[key])
    if dtype.kind == "f":
        return np.dtype(np.float32)
    return dtype


class RootOutputModule(OutputModule):
    Parameters = RootOutputParameters
    concurrency = "one"
    # rows are written in event order up to the oldest event in flight; a failed job commits nothing, one
    # stopped gracefully (SIGUSR2, SIGINT: framework/interrupt.py) the events finished before the stop
    services = (StreamActivity.name,)

    def __init__(self, label: str, params: RootOutputParameters) -> None:
        super().__init__(label, params)
        self.path = user_path(params.file)  # ~ as the shell would: also for the Dask parts beside it
        self._what = f"modules.{label}.file"
        self._staged: Staged | None = None
        self._pending: dict[int, dict[str, Any]] = {}
        self._file = None
        self._written = 0
        self._unit_start = 0
        self._last_flush = 0  # event index of the last basket
        self._activity: StreamActivity | None = None
        self._process = ""  # the job's process name (begin_job)
        self._decision_branches: list[tuple[str, str]] = []
        self._prescaled_branches: list[tuple[str, str]] = []
        self._kept: dict[str, str] = {}  # kept tag -> the name its branches start with (begin_job)
        # a row with every kept product (the first seen, written or not): the branches of an empty output
        self._template: dict[str, Any] | None = None
        self._lumis: dict[tuple[int, int], int] = {}  # (run, lumi) -> events processed, selected or not
        # "run:lumi" -> events written, 0 for a lumi processed with none selected; job-wide (the job
        # report's <Runs> of this file: every lumi in the output, as CMSSW's OutputFile lists them)
        self._written_per_lumi: dict[str, int] = {}
        self._committed = True  # False once the file is dropped (a job stopped by an error, SIGTERM or SIGHUP)

    def begin_job(self, ctx: "ModuleContext") -> None:
        self._activity = ctx.service(StreamActivity.name)
        self._process = ctx.process
        self._provenance = ctx.provenance  # complete once every begin_job ran: asked when the file closes
        self._decision_branches = decision_branches(ctx.paths, self.label)
        self._kept = kept_names(self.params.keep, ctx.consumed, self.label)
        # hltrun's addition, for paths with an HLTPrescaler: HLTPrescaled_X is true when the prescaler
        # stopped HLT_X (hltDiff's 'prescaled' state; hltdiff ignores those differences unless -p)
        self._prescaled_branches = [(p, prescaled_branch(b)) for p, b in self._decision_branches
                                    if p in ctx.prescaled_paths]
        self.check_destination()  # again: the framework's early check may have run long before (auto)
        if not ctx.units:  # a distributed run writes one part per work unit (begin_unit)
            self._open(self.path)

    @classmethod
    def check_paths(cls, label: str, params: RootOutputParameters, paths: Sequence[str]) -> None:
        decision_branches(paths, label)

    @classmethod
    def check_products(cls, label: str, params: RootOutputParameters, consumed: Mapping[str, "ProductInfo"]) -> None:
        kept_names(params.keep, consumed, label)

    def check_destination(self) -> None:
        check_file_destination(self.path, self._what)

    def _open(self, path: Path) -> None:
        uproot = uproot_module(f"modules.{self.label}: writing ROOT files")
        self._staged = Staged(path, self._what)  # its temporary is removed even if a second signal aborts
        with self._staged.guard():
            self._file = uproot.recreate(self._staged.open(), compression=compression_codec(self.params.compression))

    def _end(self, failed: bool) -> bool:
        """Close the file: commit it, or discard it (a failed job or unit); whether it was committed."""
        staged = self._staged
        try:
            if failed:
                staged.discard()
                return False
            with staged.guard():
                self._close()
                self._file.close()  # flushes: a full disk may show here
            staged.commit()
            return True
        finally:
            self._file.close()  # after a discard or a commit: closed already, nothing to write
            self._file, self._staged = None, None

    def _close(self) -> None:
        """Write what is buffered (an empty but valid tree if nothing: "no event selected" is a result,
        with the branches and types a full output has, so that it merges with one) and the lumi
        sections processed."""
        self._flush(None)
        if self._written == self._unit_start:
            self._write_empty()
        for tree, columns in lumi_trees(self._lumis).items():
            write_nanoaod(self._file, tree, columns)
        self._lumis.clear()
        self._file[PROCESS_KEY] = self._process
        # a file kept after a graceful stop says so (its events stop where the job stopped)
        record = stopped_early(self._provenance(), self._activity.stopped_by())
        self._file[PROVENANCE_KEY] = json.dumps(record, default=str)

    # -- distributed runs: one part per work unit, assembled in input order by the client ---------

    def output_file(self) -> Path:
        return self.path

    def begin_unit(self, unit) -> None:  # noqa: ANN001
        self._pending.clear()
        self._lumis.clear()
        self._unit_start = self._written  # events_written stays a job total (the framework takes differences)
        self._last_flush = unit.first_index  # event indices are job-wide
        self._open(self.part_file(unit))

    def end_unit(self, unit, failed: bool) -> dict[str, Any] | None:  # noqa: ANN001
        # a re-run after a lost worker replaces the part, never duplicates it
        if not self._end(failed):
            return None
        return {"target": str(self.path), "part": str(self.part_file(unit)), "events": self._written - self._unit_start}

    @classmethod
    def assemble(cls, parts: list[Path], target: Path, params: RootOutputParameters,
                 stopped_by: str | None = None) -> int:
        from .rootio import concatenate_trees

        lumis = _merged_lumis(parts)  # a lumi split across units: one row, its counts added
        strings = {key: text for key in (PROCESS_KEY,) if parts and (text := read_string(parts[0], key)) is not None}
        records = [(unit_of(part, i), record) for i, part in enumerate(parts)
                   if (record := read_provenance(part)) is not None]
        if records:  # every part's, not the first one's: each worker chose its own engine (provenance.merged_record)
            strings[PROVENANCE_KEY] = json.dumps(stopped_early(merged_record(records), stopped_by), default=str)
        with writing(target, "output file") as staged:
            n = concatenate_trees(parts, staged.open(), params.tree, params.compression, add_trees=lumi_trees(lumis),
                                  add_strings=strings)
        return n

    def _row(self, event: Event) -> dict[str, Any]:
        """An event's row: its ids, every path's bit and the kept products' columns."""
        row: dict[str, Any] = {"run": event.id.run, "luminosityBlock": event.id.luminosityBlock,
                               "event": event.id.event}
        for path, branch in self._decision_branches:
            row[branch] = event.trigger_results.get(path, False)
        for path, branch in self._prescaled_branches:
            row[branch] = path in event.prescaled_paths
        for tag, name in self._kept.items():
            row.update(product_columns(name, event.get(tag)))
        return row

    def _write_empty(self) -> None:
        """An Events tree without entries, with the branches a full output has: the kept products' columns
        are those of a row seen (a rejected event whose products were made); if the job saw none, the
        ids and bits only, and a warning (a merge with a full output would lack those branches)."""
        row = self._template
        if row is None:
            row = {"run": 0, "luminosityBlock": 0, "event": 0,
                   **{b: False for _, b in (*self._decision_branches, *self._prescaled_branches)}}
            if self.params.keep:
                log.warning("output %s: no event selected, and no event had %s: the empty output lacks their "
                            "branches", self.path, ", ".join(repr(t) for t in self.params.keep))
        write_nanoaod(self._file, self.params.tree, {k: v[:0] for k, v in self._columns([row]).items()})

    def skip(self, event: Event) -> None:
        if self._template is None and all(event.has(tag) for tag in self.params.keep):
            self._learn(self._row(event))  # products already made: never made on demand for this
        self._count(event)

    def _learn(self, row: dict[str, Any]) -> None:
        """Keep a row's layout (a copy: not a view into the event's products) for an empty output."""
        self._template = {k: np.array(v) for k, v in row.items()}

    def _count(self, event: Event) -> None:
        """The event processed, in its lumi section."""
        key = (event.id.run, event.id.luminosityBlock)
        n = self._lumis.get(key)
        if n is None:  # a lumi section new to this file: listed in the job report, 0 written so far
            self._written_per_lumi.setdefault(f"{key[0]}:{key[1]}", 0)
            n = 0
        self._lumis[key] = n + 1

    def write(self, event: Event) -> None:
        self._count(event)  # processed, as every event is: counted in its lumi section
        row = self._row(event)
        if self._template is None:
            self._learn(row)
        self._pending[event.index] = row
        # written only now: a kept product that fails (on demand, TryToContinue) leaves the event out
        self._written_per_lumi[f"{event.id.run}:{event.id.luminosityBlock}"] += 1
        # a basket when it is full, or at least every 5 x basket_events events of the job: with a 1 %
        # selection rows would otherwise wait 100k events, and the writer's one-time set-up (~6 MB)
        # would land in the middle of a long job instead of near its start
        if len(self._pending) >= self.params.basket_events or \
                event.index - self._last_flush >= 5 * self.params.basket_events:
            self._last_flush = event.index
            in_flight = self._activity.in_flight()
            self._flush(min(in_flight) if in_flight else None)

    def _flush(self, below: int | None) -> None:
        """Write the buffered rows with index < ``below`` (all rows if None), in index order."""
        ready = sorted(i for i in self._pending if below is None or i < below)
        if not ready:
            return
        rows = [self._pending.pop(i) for i in ready]
        with self._staged.guard():  # a full disk: the line names the file, the temporary goes
            self._extend(rows)

    def _extend(self, rows: list[dict[str, Any]]) -> None:
        write_nanoaod(self._file, self.params.tree, self._columns(rows))
        self._written += len(rows)

    @staticmethod
    def _columns(rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rows as NanoAOD's columns: run/luminosityBlock UInt_t, event ULong64_t, floats as Float_t;
        per-jet values become jagged columns built from one flat array (no per-row Python lists)."""
        import awkward as ak

        columns: dict[str, Any] = {}
        jagged: dict[str, dict[str, Any]] = {}
        for key in rows[0]:
            values = [r.get(key) for r in rows]
            first = np.asarray(values[0])
            if first.ndim == 0:
                columns[key] = np.asarray(values, dtype=_nanoaod_dtype(key, first.dtype))
            else:
                parts = [np.asarray(v) for v in values]
                counts = np.fromiter((len(a) for a in parts), np.int64, len(parts))
                flat = np.concatenate(parts).astype(_nanoaod_dtype(key, first.dtype), copy=False)
                collection, name = collection_of(key), key.partition("_")[2]
                jagged.setdefault(collection, {})[name or "value"] = ak.unflatten(flat, counts)
        for collection, fields in jagged.items():
            # a named field keeps its name even alone (jets_score, njets), as NanoAOD names it
            columns[collection] = fields["value"] if list(fields) == ["value"] else ak.zip(fields)
        return columns

    def end_job(self) -> None:
        if self._file is None:
            return
        if not self._end(not self._activity.commit_outputs()):
            self._discarded()
            log.warning("output %s not written: the job stopped before its end", self.path)
            return
        early = " (the job was stopped: the events finished before it)" if self._activity.failed() else ""
        log.info("output: %d event(s) written to %s%s", self._written, self.path.resolve(), early)

    def _discarded(self) -> None:
        """The file was dropped (an error, SIGTERM or SIGHUP stopped the job): none of its events is written
        anywhere (``dropped``)."""
        self._committed = False

    @classmethod
    def dropped(cls, summary: dict[str, Any]) -> dict[str, Any]:
        """No event written, in no lumi section: the rows flushed to the temporary before the stop are not
        in any file (their number moved with the streams' timing: 999 of 1109 events at 1 stream, 995 of
        1002 at 4; in a Dask run the units done), and the job report listed that many in a missing file."""
        return {**summary, "events_written": 0, "lumis_written": {}, "committed": False}

    def summary(self) -> dict[str, Any]:
        """What is in the file; ``committed`` False: no file (the job report lists no output then)."""
        written = {"file": str(self.path), "events_written": self._written,
                   "lumis_written": dict(self._written_per_lumi), "committed": True}
        return written if self._committed else self.dropped(written)


def read_string(path: Any, key: str) -> str | None:
    """The TObjString ``key`` of a file; None where the file has none (an older output, another tool's)."""
    import uproot

    with uproot.open(path) as f:
        if key not in f or f.classname_of(key) != "TObjString":
            return None
        return str(f[key])


def unit_of(part: Path, position: int) -> int:
    """The work unit that wrote an output part (its name, ``_part``); ``position`` for another name."""
    match = re.search(r"\.unit(\d+)\.part$", part.name)
    return int(match.group(1)) if match else position


def read_process(path: Any) -> str | None:
    """The process that wrote an output's HLT_* bits (``Process``); None for a file that does not say."""
    return read_string(path, PROCESS_KEY)


def read_provenance(path: Any) -> dict[str, Any] | None:
    """What made an output's HLT_* bits (``Provenance``); None for a file that does not say (an older
    output) or says it in a form this version cannot read."""
    text = read_string(path, PROVENANCE_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if readable(record) else None


def _merged_lumis(parts: list[Path]) -> dict[tuple[int, int], int]:
    """{(run, lumi): events processed} summed over the parts' LuminosityBlocks trees."""
    import uproot

    lumis: dict[tuple[int, int], int] = {}
    for part in parts:
        with uproot.open(part) as f:
            if LUMI_TREE not in f:
                continue
            t = f[LUMI_TREE].arrays(["run", "luminosityBlock", "eventsProcessed"], library="np")
            for r, lumi, n in zip(t["run"].tolist(), t["luminosityBlock"].tolist(), t["eventsProcessed"].tolist()):
                lumis[(r, lumi)] = lumis.get((r, lumi), 0) + n
    return lumis
