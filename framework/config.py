"""YAML configuration + command-line overrides -> one validated, typed ``ProcessConfig``.

All validation happens here, before anything is built: unknown keys, wrong types, duplicate
labels, paths naming undefined modules, products consumed from unknown labels and dependency cycles
are reported as one line ``<file>: <key.path>: <what was expected>``.
"""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from . import registry
from .resources import find_file, refuse_remote_destination
from .context import MODULE_SERVICES, ProductInfo
from .errors import CMSSW_CATEGORIES, ConfigError
from .module import Filter, Module, OutputModule, Source
from .provenance import FAILURE_KEY, STOPPED_KEY
from .schema import build, close_hint as _close, input_tag_fields, input_tags, limited, to_plain

SOURCE_LABEL = "source"
# the source's per-event weight (a weighted sample's genWeight), where its files carry one: what every weighted
# figure reads (the TriggerRates service's rates, the trigger filters' score histograms), absent: weight 1
WEIGHT_TAG = f"{SOURCE_LABEL}:weight"
# the marks a report file read alone carries of a job that did not end well (provenance.stop_marks): scores.root
# keeps them beside its one folder per filter label, so a filter labelled so would read as the mark
MARK_LABELS = (STOPPED_KEY, FAILURE_KEY)
TOP_LEVEL_KEYS = ("process", "options", "source", "modules", "paths", "endpaths", "services")
log = logging.getLogger("hltrun")


DASK_ONLY = ("address", "workers", "threadsPerWorker", "eventsPerTask", "retries")  # maxTimingRows: local too


@dataclass
class ExecutorOptions:
    """``options.executor``: where events run (docs/distributed.md). ``local``: this process, with streams;
    ``dask``: work units on Dask.distributed workers (a LocalCluster, or the scheduler at ``address``)."""

    type: Literal["local", "dask"] = "local"
    address: str | None = None  # tcp://host:8786 of a running scheduler; null: start a LocalCluster
    workers: int = limited(2, 1, 1024)  # LocalCluster process workers (ignored with an address)
    threadsPerWorker: int = limited(1, 1, 1024)  # Dask threads per worker: units run concurrently on one worker
    # a work unit is one file's entry range of at most this many events
    eventsPerTask: int = limited(20_000, 1, 1_000_000_000)
    retries: int = limited(2, 0, 100)  # times a unit may be lost with its worker and re-run elsewhere
    # per-event timing rows kept when merging; beyond: histograms
    maxTimingRows: int = limited(200_000, 1, 10_000_000)

    def __post_init__(self) -> None:
        if self.address is not None and "://" not in self.address:
            raise ValueError(f"executor.address must look like tcp://host:8786, got {self.address!r}")
        if self.type == "local":  # a scheduler's address without type: dask ran the job here, without a word
            defaults = {f.name: f.default for f in fields(self)}
            unread = [f"{key}: {getattr(self, key)}" for key in DASK_ONLY if getattr(self, key) != defaults[key]]
            if unread:
                log.warning("options.executor: %s: read by the Dask executor only; this job runs locally (type: "
                            "local), as without %s (set options.executor.type=dask, or hltrun --dask N)",
                            ", ".join(unread), "it" if len(unread) == 1 else "them", extra={"once": True})


@dataclass
class Options:
    """``options:`` block, in CMSSW's words (``process.options`` and ``process.maxEvents``); hltrun's own
    settings are named in the same lowerCamelCase. The old snake_case names are accepted only where YAML
    and overrides are read (OPTION_ALIASES, warned); the code reads one attribute name."""

    maxEvents: int = -1  # -1: all events
    skipEvents: int = 0
    # threads running streams: in hltrun each stream has its own thread
    numberOfThreads: int = limited(1, 1, 1024)
    # events in flight at once; 0: as many as numberOfThreads (CMSSW's default)
    numberOfStreams: int = limited(0, 0, 1024, "0: as many as numberOfThreads")
    budgetMs: float = 100.0  # per-event HLT time budget the reports compare against
    inputRateHz: float = 100_000.0  # L1 accept rate used for the farm projection
    TryToContinue: list[str] = field(default_factory=list)  # exception categories that skip the event
    accelerators: list[str] = field(default_factory=lambda: ["*"])  # "*", "gpu-nvidia", "cpu"
    reportDir: str | None = None
    wantSummary: bool = True
    executor: ExecutorOptions = field(default_factory=ExecutorOptions)

    def __post_init__(self) -> None:
        refuse_remote_destination(self.reportDir, "reportDir")
        if self.maxEvents < -1:
            raise ValueError(f"maxEvents must be -1 (all) or >= 0, got {self.maxEvents}")
        if self.skipEvents < 0:
            raise ValueError(f"skipEvents must be >= 0, got {self.skipEvents}")
        if self.numberOfStreams > self.numberOfThreads:
            raise ValueError(f"numberOfStreams ({self.numberOfStreams}) > numberOfThreads ({self.numberOfThreads}): "
                             f"hltrun runs each stream on its own thread; set options.numberOfThreads="
                             f"{self.numberOfStreams} (numberOfStreams 0, the default, follows it)")
        if self.budgetMs <= 0:
            raise ValueError(f"budgetMs must be > 0, got {self.budgetMs}")
        if self.inputRateHz <= 0:
            raise ValueError(f"inputRateHz must be > 0, got {self.inputRateHz}")
        bad = [a for a in self.accelerators if a not in ("*", "cpu", "gpu-nvidia")]
        if bad:
            raise ValueError(f"accelerators: unknown {bad} (allowed: '*', 'cpu', 'gpu-nvidia')")
        for category in self.TryToContinue:
            if category not in CMSSW_CATEGORIES:
                raise ValueError(f"TryToContinue: unknown exception category {category!r}{_close(category, CMSSW_CATEGORIES)}"
                                 f" (CMSSW's edm::errors names, e.g. ProductNotFound, StdException)")

    @property
    def streams_in_flight(self) -> int:
        """Events in flight: numberOfStreams, or numberOfThreads when it is 0 (as cmsRun)."""
        return self.numberOfStreams or self.numberOfThreads


# today's option names -> CMSSW-style names: accepted for one release, with a one-line warning
OPTION_ALIASES = {"streams": "numberOfThreads", "budget_ms": "budgetMs", "input_rate_hz": "inputRateHz",
                  "on_error": "TryToContinue", "report_dir": "reportDir", "want_summary": "wantSummary"}
EXECUTOR_ALIASES = {"threads_per_worker": "threadsPerWorker", "events_per_task": "eventsPerTask",
                    "max_timing_rows": "maxTimingRows"}
# on_error's values as TryToContinue lists: skip_event continued on any error, so on every category
ON_ERROR = {"stop": [], "skip_event": list(CMSSW_CATEGORIES)}


def _rename(raw: dict[str, Any], aliases: dict[str, str], where: str) -> dict[str, Any]:
    out = dict(raw)
    for old, new in aliases.items():
        if old not in out:
            continue
        if new in out:
            raise ConfigError(f"{where}.{old}: give {where}.{new} only ({old} is its old name)")
        value = out.pop(old)
        if old == "on_error":
            if value not in ON_ERROR:
                raise ConfigError(f"{where}.on_error: expected 'stop' or 'skip_event', got {value!r}")
            value = ON_ERROR[value]
            log.warning("%s.on_error is deprecated: use %s.TryToContinue: [ProductNotFound, ...] (the exception "
                        "categories that skip the event); accepted until the next release", where, where)
        else:  # streams: N is numberOfThreads: N with numberOfStreams 0 (one stream per thread), as before
            log.warning("%s.%s is deprecated: use %s.%s (accepted until the next release)", where, old, where, new)
        out[new] = value
    return out


def _override_in_cmssw_words(text: str) -> str:
    """``options.streams=2`` -> ``options.numberOfThreads=2`` (warned), so that an old-name override
    replaces the new-name value of the file instead of clashing with it."""
    key, sep, raw = text.partition("=")
    parts = key.split(".")
    if not sep or parts[0] != "options" or len(parts) not in (2, 3) or (len(parts) == 3 and parts[1] != "executor"):
        return text
    aliases, where = (OPTION_ALIASES, "options") if len(parts) == 2 else (EXECUTOR_ALIASES, "options.executor")
    if parts[-1] not in aliases:
        return text
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    ((new, converted),) = _rename({parts[-1]: value}, aliases, where).items()
    return f"{where}.{new}={yaml.safe_dump(converted, default_flow_style=True, width=1 << 30).strip().removesuffix('...').strip()}"


def options_in_cmssw_words(raw: Any) -> Any:
    """``options`` with today's names (OPTION_ALIASES, EXECUTOR_ALIASES) replaced by the new ones."""
    if not isinstance(raw, dict):
        return raw
    out = _rename(raw, OPTION_ALIASES, "options")
    if isinstance(out.get("executor"), dict):
        out["executor"] = _rename(out["executor"], EXECUTOR_ALIASES, "options.executor")
    return out


@dataclass(frozen=True)
class PathEntry:
    """One module on a path: ``label``, ``~label`` (inverted) or ``-label`` (decision ignored)."""

    label: str
    mode: Literal["normal", "invert", "ignore"] = "normal"

    @classmethod
    def parse(cls, text: str) -> "PathEntry":
        if text.startswith("~"):
            return cls(text[1:], "invert")
        if text.startswith("-"):
            return cls(text[1:], "ignore")
        return cls(text)

    def __str__(self) -> str:
        return {"normal": "", "invert": "~", "ignore": "-"}[self.mode] + self.label


@dataclass
class PluginConfig:
    """A configured plugin: its label, registered type, class and validated parameters."""

    label: str
    type: str
    cls: type
    params: Any
    # per typed ``consumes`` field: what its producer declares (filled by validation; ModuleContext.inputs)
    inputs: dict[str, ProductInfo] = field(default_factory=dict, repr=False, compare=False)
    # per consumed tag, typed or not (an output's kept products): the same (ModuleContext.consumed)
    consumed: dict[str, ProductInfo] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class ProcessConfig:
    """The fully validated job description the Process is built from."""

    process: str
    options: Options
    source: PluginConfig
    modules: dict[str, PluginConfig]
    paths: dict[str, list[PathEntry]]
    endpaths: dict[str, list[PathEntry]]
    services: dict[str, PluginConfig]
    origin: str = "<config>"

    def to_dict(self) -> dict[str, Any]:
        """Plain data with every default filled in (what ``--dump`` prints)."""

        def plugin(p: PluginConfig) -> dict[str, Any]:
            return {"type": p.type, **to_plain(p.params)}

        return {
            "process": self.process,
            "options": to_plain(self.options),
            "source": plugin(self.source),
            "modules": {k: plugin(v) for k, v in self.modules.items()},
            "paths": {k: [str(e) for e in v] for k, v in self.paths.items()},
            "endpaths": {k: [str(e) for e in v] for k, v in self.endpaths.items()},
            "services": {k: to_plain(v.params) for k, v in self.services.items()},
        }

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


# --------------------------------------------------------------------------------------------
# Reading YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a duplicate module label must fail."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# a configuration is a few kB; more than this is not one (``hltrun /dev/zero`` read for ever, ate all memory)
MAX_CONFIG_BYTES = 4 << 20


# how long a FIFO given as the configuration may stay without a byte and without a writer before it is refused
FIFO_WRITER_WAIT_S = 10.0


def _fifo_first_bytes(fd: int, path: Path) -> bytes:
    """What a FIFO opened without blocking holds at first, waiting up to FIFO_WRITER_WAIT_S for a byte: b"" when
    a writer is there (``<(slow command)``: the caller then waits for it as for any pipe). A named FIFO no
    program writes into blocked open() for ever (``mkfifo cfg.yaml; hltrun cfg.yaml``); it is refused."""
    import select

    # poll, not select: select refuses a descriptor of 1024 or more (ValueError), which a process holding many
    # files open (a notebook, a tool that loads configurations in a loop) is given
    waiting = select.poll()
    waiting.register(fd, select.POLLIN)
    if waiting.poll(FIFO_WRITER_WAIT_S * 1000):  # a byte, or a writer that came and left
        return b""
    try:
        first = os.read(fd, 1)
    except BlockingIOError:  # no byte yet, but a writer holds it open
        return b""
    if not first:
        raise ConfigError(f"{path}: a FIFO that no program wrote into in {FIFO_WRITER_WAIT_S:g} s (nor holds open "
                          f"to write): start its writer first, or give the configuration file itself")
    return first


def _read_capped(path: Path, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``path``; a FIFO opened without blocking (``_fifo_first_bytes``)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        raw = _fifo_first_bytes(fd, path) if stat.S_ISFIFO(os.fstat(fd).st_mode) else b""
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return raw + stream.read(limit - len(raw))
    finally:
        os.close(fd)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in the YAML file ``path``: read up to MAX_CONFIG_BYTES, so that a device or a huge
    file given by mistake is refused in one line; a pipe (``hltrun <(...)``) is read like a file, and a
    FIFO no program writes into is refused after FIFO_WRITER_WAIT_S (it waited for ever)."""
    path = Path(path)
    try:
        raw = _read_capped(path, MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: not a YAML configuration (more than {MAX_CONFIG_BYTES >> 20} MB, the most "
                              f"a configuration may hold)")
        text = raw.decode("utf-8")  # YAML is UTF-8 text, whatever the locale
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML configuration (not UTF-8 text: byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}")
    return data


_UNDECODED = range(0xDC80, 0xDD00)  # a byte that is not UTF-8, as Python hands it over (surrogateescape)
_STAND_IN = 0xF0000 - 0xDC80  # its stand-in for YAML: a private-use character of plane 15


def _override_value(raw: str) -> Any:
    """An override's value parsed as YAML (``3`` an int, ``[a, b]`` a list), or the text itself where YAML
    refuses it. A file name whose bytes are not UTF-8 (``bad$'\\xff'.root``) reaches Python with lone
    surrogates, which YAML refuses anywhere, so ``[bad\\udcff.root]`` was kept as text and then refused as
    not a list: they are parsed as private-use stand-ins, given back in every string of the value."""
    if raw == "":
        return ""
    undecoded = {ord(c) for c in raw if ord(c) in _UNDECODED}
    if undecoded and not any(ord(c) - _STAND_IN in _UNDECODED for c in raw):  # no stand-in already in it
        try:
            value = yaml.safe_load(raw.translate({c: c + _STAND_IN for c in undecoded}))
        except yaml.YAMLError:
            return raw
        return _restored(value, {c + _STAND_IN: c for c in undecoded})
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _restored(value: Any, table: dict[int, int]) -> Any:
    """``value`` with the stand-ins of ``_override_value`` turned back into the bytes they stood for."""
    if isinstance(value, str):
        return value.translate(table)
    if isinstance(value, list):
        return [_restored(v, table) for v in value]
    if isinstance(value, dict):
        return {_restored(k, table): _restored(v, table) for k, v in value.items()}
    return value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides; the value is parsed as YAML (``3`` is int, ``[a, b]`` a list)."""
    data = copy.deepcopy(data)
    for text in overrides:
        key, sep, raw = text.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"command line: override {text!r} is not of the form key.path=value")
        value = _override_value(raw)
        node: Any = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            here = ".".join(parts[: i + 1])
            if isinstance(node, list):
                node = node[_list_index(node, part, here, text)]
                continue
            if part not in node and isinstance(node, dict):
                close = _close(part, [k for k in node if isinstance(k, str)])
                if close:
                    parent = ".".join(parts[:i]) or "the configuration"
                    raise ConfigError(f"command line: override {text!r}: no '{part}' in {parent}{close} "
                                      f"(a new entry is given whole: {here}={{...}})")
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"command line: override {text!r}: {here} is a value, not a mapping")
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key, text)] = value
        else:
            node[last] = value
    return data


def _list_index(node: list, part: str, here: str, text: str) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise ConfigError(f"command line: override {text!r}: {here} is not an index of a {len(node)}-item list")
    return int(part)


# --------------------------------------------------------------------------------------------
# Validation


def _plugin(label: str, data: Any, where: str, lookup) -> PluginConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with a 'type' key, got {data!r}")
    data = dict(data)
    type_name = data.pop("type", None)
    if not isinstance(type_name, str):
        raise ConfigError(f"{where}.type: required key is missing (the registered plugin type name)")
    cls = lookup(type_name, f"{where}.type")
    params = build(cls.Parameters, data, where)
    return PluginConfig(label, type_name, cls, params)


def _entries(items: Any, where: str) -> list[PathEntry]:
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip("~-") for i in items):
        raise ConfigError(f"{where}: expected a list of module labels, got {items!r}")
    return [PathEntry.parse(i) for i in items]


def validate(data: dict[str, Any], origin: str = "<config>") -> ProcessConfig:
    """Check everything and return the typed configuration; errors are prefixed with ``origin``."""
    try:
        return _validate(data, origin)
    except ConfigError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _validate(data: dict[str, Any], origin: str) -> ProcessConfig:
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{key}: unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    process = data.get("process", "HLTX")
    if not isinstance(process, str) or not process.isidentifier():
        raise ConfigError(f"process: expected a name (letters, digits, _), got {process!r}")
    options = build(Options, options_in_cmssw_words(data.get("options")), "options")
    if options.numberOfThreads > options.streams_in_flight:
        log.warning("options: numberOfThreads %d > numberOfStreams %d: hltrun runs no module concurrently within an "
                    "event, so the extra threads stay idle", options.numberOfThreads, options.streams_in_flight)

    if "source" not in data:
        raise ConfigError("source: required key is missing (e.g. type: RootJetSource)")
    source = _plugin(SOURCE_LABEL, data["source"], "source", registry.module_class)
    if not issubclass(source.cls, Source):
        raise ConfigError(f"source.type: {source.type} is not a Source")

    raw_modules = data.get("modules") or {}
    if not isinstance(raw_modules, dict):
        raise ConfigError("modules: expected a mapping label -> {type: ..., parameters}")
    modules: dict[str, PluginConfig] = {}
    for label, spec in raw_modules.items():
        where = f"modules.{label}"
        if not isinstance(label, str) or not label.isidentifier():
            raise ConfigError(f"{where}: a module label must be an identifier")
        if label == SOURCE_LABEL:
            raise ConfigError(f"{where}: the label '{SOURCE_LABEL}' is reserved for the source")
        if label in MARK_LABELS:
            raise ConfigError(f"{where}: the label '{label}' is reserved: scores.root, timing.root and resources.json "
                              f"use '{label}' to mark a job that did not end well")
        cfg = _plugin(label, spec, where, registry.module_class)
        if not issubclass(cfg.cls, Module):
            raise ConfigError(f"{where}.type: {cfg.type} is not a Producer, Filter, Analyzer or OutputModule")
        for name in cfg.cls.services:
            if name not in MODULE_SERVICES:
                raise ConfigError(f"{where}.type: {cfg.type} asks for service {name!r}, which the framework "
                                  f"does not offer (offered: {', '.join(MODULE_SERVICES)})")
        modules[label] = cfg

    paths = _read_paths(data, "paths")
    endpaths = _read_paths(data, "endpaths")
    for name in set(paths) & set(endpaths):
        raise ConfigError(f"endpaths.{name}: a path named '{name}' is already defined in paths")

    for block, table in (("paths", paths), ("endpaths", endpaths)):
        for name, entries in table.items():
            seen = set()
            for i, entry in enumerate(entries):
                where = f"{block}.{name}[{i}]"
                if entry.label not in modules:
                    raise ConfigError(f"{where}: '{entry.label}' is not a module label{_close(entry.label, modules)}")
                if entry.label in seen:
                    raise ConfigError(f"{where}: '{entry.label}' appears twice on the same path")
                seen.add(entry.label)
                cls = modules[entry.label].cls
                if entry.mode != "normal" and not issubclass(cls, Filter):
                    raise ConfigError(f"{where}: '{entry}' - only filters can be inverted (~) or ignored (-)")
                if block == "paths" and issubclass(cls, OutputModule):
                    raise ConfigError(f"{where}: output module '{entry.label}' belongs on an endpath")

    known = set(modules) | {SOURCE_LABEL}
    for label, cfg in [(SOURCE_LABEL, source), *modules.items()]:
        where = "source" if label == SOURCE_LABEL else f"modules.{label}"
        for at, tag in input_tag_fields(cfg.params):
            if tag.label not in known:
                raise ConfigError(f"{where}{at}: consumes '{tag}', but '{tag.label}' is not a module label"
                                  f"{_close(tag.label, known)}")
        if issubclass(cfg.cls, OutputModule):
            for path in cfg.params.select_events if hasattr(cfg.params, "select_events") else []:
                if path not in paths:
                    raise ConfigError(f"{where}.select_events: '{path}' is not a path{_close(path, paths)}")
            cfg.cls.check_paths(label, cfg.params, tuple(paths))
    _check_cycles(modules)
    _check_products(source, modules)

    services: dict[str, PluginConfig] = {}
    raw_services = data.get("services") or {}
    if not isinstance(raw_services, dict):
        raise ConfigError("services: expected a mapping ServiceName -> parameters")
    for name, params in raw_services.items():
        cls = registry.service_class(str(name), f"services.{name}")
        services[name] = PluginConfig(name, name, cls, build(cls.Parameters, params, f"services.{name}"))
        twin = next((other for other, pc in services.items() if pc.cls is cls and other != name), None)
        if twin is not None:  # CMSSW's names are aliases (FastTimerService for Timing): one of each
            raise ConfigError(f"services.{name}: the same service as services.{twin} ({cls.__name__}); list it once")
        cls.check_config(name, services[name].params, {p: [e.label for e in es] for p, es in paths.items()},
                         {label: m.cls for label, m in modules.items()})

    return ProcessConfig(process, options, source, modules, paths, endpaths, services, origin)


def _read_paths(data: dict[str, Any], block: str) -> dict[str, list[PathEntry]]:
    raw = data.get(block) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{block}: expected a mapping path name -> list of module labels")
    out = {}
    for name, items in raw.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigError(f"{block}.{name}: a path name must be an identifier")
        out[name] = _entries(items, f"{block}.{name}")
    return out



def _check_cycles(modules: dict[str, PluginConfig]) -> None:
    """Products are fetched on demand, so a consumes-cycle would recurse forever: refuse it."""
    deps = {label: [t.label for t in input_tags(cfg.params) if t.label in modules] for label, cfg in modules.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(label: str, trail: list[str]) -> None:
        if state.get(label) == 2:
            return
        if state.get(label) == 1:
            cycle = trail[trail.index(label):] + [label]
            raise ConfigError(f"modules: dependency cycle {' -> '.join(cycle)}")
        state[label] = 1
        for dep in deps[label]:
            visit(dep, trail + [label])
        state[label] = 2

    for label in modules:
        visit(label, [])


def _check_products(source: PluginConfig, modules: dict[str, PluginConfig]) -> None:
    """Typed consumes against typed produces (CMSSW's consumes<T>/produces<T>), then each module's own
    cross-module checks (``check_config``) on what its producers declare: all before anything is built."""
    producers = {SOURCE_LABEL: source, **modules}
    for label, cfg in modules.items():
        where = f"modules.{label}"
        inputs: dict[str, ProductInfo] = {}
        consumed: dict[str, ProductInfo] = {}
        for c in cfg.cls.declared_consumes(cfg.params):
            at = f"{where}{c.at or '.' + (c.field or 'consumes')}"
            producer = producers[c.tag.label]
            declared = producer.cls.produces
            made = None if declared is None else declared.get(c.tag.instance)
            what = f"'{c.tag.label}' ({producer.type})"
            if declared is not None and made is None:
                instance = f"instance '{c.tag.instance}'" if c.tag.instance else "main product"
                raise ConfigError(f"{at}: consumes '{c.tag}', but {what} produces no "
                                  f"{instance} (it produces: {', '.join(repr(k) for k in declared) or 'nothing'})")
            if made is not None and c.type is not None and not issubclass(made, c.type):
                raise ConfigError(f"{at}: '{label}' consumes a {c.type.__name__} from '{c.tag}', "
                                  f"but {what} produces a {made.__name__}")
            info = ProductInfo(c.tag.label, producer.type, made, producer.cls, producer.params)
            consumed[str(c.tag)] = info
            if c.field:
                inputs[c.field] = info
        cfg.cls.check_config(label, cfg.params, inputs)
        if issubclass(cfg.cls, OutputModule):
            cfg.cls.check_products(label, cfg.params, consumed)
        cfg.inputs, cfg.consumed = inputs, consumed


def find_config(path: str | os.PathLike[str]) -> Path:
    """``path``, or the shipped configuration of that name (``configs/path.yaml`` from anywhere):
    the rule file names inside a configuration follow too (``resources.find_file``)."""
    return find_file(path, "configuration file")


def _blame(message: str, given: list[tuple[str, str]]) -> str | None:
    """The command-line argument an error is about, if any: its key path is, or lies under, the
    error's key path (``options: maxEvents must be ...`` is about ``-n``)."""
    where, _, rest = message.partition(": ")
    for key, shown in reversed(given):  # the last override of a key wins, so it is the culprit
        if key == where or key.startswith(where + ".") and key.rsplit(".", 1)[-1] in rest \
                or where.startswith(key + ".") or where.startswith(key + "["):
            return shown
    return None


def load(path: str | os.PathLike[str], overrides: list[str] | None = None, max_events: int | None = None) -> ProcessConfig:
    """Read, override and validate a configuration file; relative file names stay relative to CWD.

    Errors caused by an override or by ``-n`` name the command line, not the file."""
    path = find_config(path)
    data = read_yaml(path)
    given = [(o.partition("=")[0], f"override {o!r}") for o in overrides or []]
    try:  # today's option names -> CMSSW's, in the file and in the overrides, before they meet
        if isinstance(data.get("options"), dict):
            data["options"] = options_in_cmssw_words(data["options"])
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    translated = []
    for o in overrides or []:
        try:
            translated.append(_override_in_cmssw_words(o))
        except ConfigError as exc:  # the culprit is on the command line, not in the file
            raise ConfigError(f"command line (override {o!r}): {exc}") from None
    named: dict[str, str] = {}
    for o, t in zip(overrides or [], translated):  # an old and a new name for one option: refuse, as in a file
        key = t.partition("=")[0]
        if key in named and (named[key] != key or o.partition("=")[0] != key):
            raise ConfigError(f"command line: overrides {named[key]!r} and {o.partition('=')[0]!r} set the same "
                              f"option ({key}); give {key} only")
        named[key] = o.partition("=")[0]
    given += [(t.partition("=")[0], f"override {o!r}") for o, t in zip(overrides or [], translated) if t != o]
    if overrides:
        data = apply_overrides(data, translated)
    if max_events is not None:
        data = apply_overrides(data, [f"options.maxEvents={max_events}"])
        given.append(("options.maxEvents", f"-n {max_events}"))
    try:
        return _validate(data, str(path))
    except ConfigError as exc:
        culprit = _blame(str(exc), given)
        origin = f"command line ({culprit})" if culprit else str(path)
        raise ConfigError(f"{origin}: {exc}") from None
