"""Size-like settings (bins, chunk and batch sizes, threads, streams, queue depths) have an upper limit:
a value past it is one configuration error naming the key, before anything is built or allocated
(``services.Timing.histogram_bins`` with 11 digits used to ask for ~745 GiB)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterator

import pytest

from hltrun.framework import registry
from hltrun.framework.cli import main
from hltrun.framework.config import Options
from hltrun.framework.errors import ConfigError
from hltrun.framework.schema import LIMITS, build

# integer settings that are counts of events, not sizes: nothing is allocated in proportion to them
NOT_SIZES = {
    "options.maxEvents": "events to process (the loop stops at the end of the input)",
    "options.skipEvents": "entries passed over",
    "services.Memory.ignoreTotal": "events before the key-event statistics start",
    "services.Memory.leak_warmup": "events before the leak check's fit starts",
    "services.PrescaleService.prescaleTable.prescales": "prescale factors (checked >= 0 by the table)",
}
REQUIRED = {"files": ["x.root"]}  # RootJetSource's one required key


def _is_int(tp: Any) -> bool:
    """int, int | None, list[int]."""
    return tp is int or int in typing.get_args(tp)


def _settings(cls: type, where: str) -> Iterator[tuple[str, type, dataclasses.Field, Any]]:
    """(key path, dataclass, field, type) of every integer setting, nested blocks included."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        for block in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(block):
                yield from _settings(block, f"{where}.{f.name}")
        if _is_int(tp):
            yield f"{where}.{f.name}", cls, f, tp


def _all_settings() -> list[tuple[str, type, dataclasses.Field, Any]]:
    """Options, every built-in module's parameters (named by type) and every service's (not the
    tests' own plugins, named Test* or _*)."""
    out = list(_settings(Options, "options"))
    for name, cls in sorted(registry.known_modules().items()):
        if not name.startswith(("Test", "_")):
            out += list(_settings(cls.Parameters, name))
    seen: set[type] = set()
    for name, cls in sorted(registry.known_services().items(), key=lambda kv: (kv[1].__name__ != kv[0], kv[0])):
        if not name.startswith(("Test", "_")) and cls not in seen:  # an alias (FastTimerService) once, by its own name
            seen.add(cls)
            out += list(_settings(cls.Parameters, f"services.{name}"))
    return out


SETTINGS = _all_settings()
LIMITED = [s for s in SETTINGS if LIMITS in s[2].metadata]


def test_every_size_like_setting_has_a_limit_that_holds_its_default():
    unlimited = [where for where, _, f, _ in SETTINGS if LIMITS not in f.metadata and where not in NOT_SIZES]
    assert not unlimited, f"integer settings without limits (schema.limited), or add them to NOT_SIZES: {unlimited}"
    assert {"services.Timing.histogram_bins", "RootJetSource.chunk_size", "RootJetSource.read_ahead",
            "VAEAnomalyScorer.max_batch", "VAEAnomalyScorer.batching.max_batch", "options.numberOfThreads",
            "options.numberOfStreams", "RootOutputModule.basket_events"} <= \
        {where for where, *_ in LIMITED}
    for where, _, f, _ in LIMITED:
        lo, hi, _hint = f.metadata[LIMITS]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for value in default if isinstance(default, list) else [default]:
            assert value is None or lo <= value <= hi, (where, value)


@pytest.mark.parametrize("where, cls, f, tp", LIMITED, ids=[s[0] for s in LIMITED])
def test_a_value_past_a_limit_is_one_error_naming_the_key(where, cls, f, tp):
    lo, hi, _ = f.metadata[LIMITS]
    block = where.rsplit(".", 1)[0]
    for value, expected in ((hi + 1, f"{f.name} must be <= {hi}"), (10**11 + 1, f"{f.name} must be <= {hi}"),
                            (lo - 1, f"{f.name} must be >= {lo}")):
        given = [value] if typing.get_origin(tp) is list else value
        with pytest.raises(ConfigError) as err:
            build(cls, {**{k: v for k, v in REQUIRED.items() if k in cls.__dataclass_fields__}, f.name: given}, block)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{block}: ")
        assert (expected.replace(f.name, f"{f.name}[0]", 1) if isinstance(given, list) else expected) in message
    at_limit = [hi] if typing.get_origin(tp) is list else hi
    try:  # the limit itself is allowed (another check may still refuse the combination)
        build(cls, {**{k: v for k, v in REQUIRED.items() if k in cls.__dataclass_fields__}, f.name: at_limit}, block)
    except ConfigError as exc:
        assert "must be <=" not in str(exc), exc


BASE = """
process: LIMITS
source: {type: TestCountingSource, n: 5}
modules:
  sq: {type: TestSquare, src: source}
paths:
  p: [sq]
services:
  Timing: {}
"""


@pytest.mark.parametrize("override", ["services.Timing.histogram_bins=10001", "options.numberOfThreads=1025",
                                      "source.n=100001"])
def test_the_command_line_names_the_override_and_exits_2(write_config, capsys, override):
    code = main([str(write_config(BASE)), "-q", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"command line (override '{override}')" in err and "must be <=" in err
