"""Validation of plain YAML data into typed dataclasses, in one place.

Every configurable thing (options, module parameters, services) declares a dataclass; this module
turns a ``dict`` from YAML into an instance of it, and reports the first problem as one line with the
key path (``modules.vae.threshold: expected float, got 'abc'``). Modules never validate by hand.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Callable, Literal, Sequence, Union, get_args, get_origin

from .errors import ConfigError


class InputTag(str):
    """A parameter naming another module's product: ``label`` or ``label:instance``.

    Declaring a field as ``InputTag`` lets the configuration check that the label exists and build
    the dependency graph (for cycle detection) without knowing any module by name.
    """

    @property
    def label(self) -> str:
        return self.split(":", 1)[0]

    @property
    def instance(self) -> str:
        return self.split(":", 1)[1] if ":" in self else ""


LIMITS = "hltrun_limits"  # dataclass field metadata key: (lowest, highest, hint)


def limits(lo: float, hi: float, hint: str = "") -> dict[str, tuple[float, float, str]]:
    """Field metadata: the value (every item of a list) must lie in ``lo``..``hi``. Every size-like
    setting (bins, chunk and batch sizes, threads, streams, queue depths) declares one: an extra digit
    or two is then one configuration error, not a request for gigabytes. README lists the limits."""
    return {LIMITS: (lo, hi, hint)}


def limited(default: Any, lo: float, hi: float, hint: str = "") -> Any:
    """A field with a default and ``limits`` (``histogram_bins: int = limited(50, 1, 10_000)``)."""
    return dataclasses.field(default=default, metadata=limits(lo, hi, hint))


CHOICES = "hltrun_choices"  # dataclass field metadata key: a callable giving the allowed names


def one_of(default: str, choices: Callable[[], Sequence[str]]) -> Any:
    """A string field whose allowed values are known only at run time (installed plugins:
    ``backend: str = one_of("auto", backend_names)``)."""
    return dataclasses.field(default=default, metadata={CHOICES: choices})


def _check_choices(value: Any, field: dataclasses.Field, where: str) -> None:
    if CHOICES in field.metadata and value not in (allowed := list(field.metadata[CHOICES]())):
        raise ConfigError(f"{where}.{field.name}: expected one of {allowed}, got {_show(value)}")


def _check_limits(value: Any, field: dataclasses.Field, where: str) -> None:
    """One line naming the key (``services.Timing: histogram_bins must be <= 10000, got ...``)."""
    if LIMITS not in field.metadata or value is None:
        return
    lo, hi, hint = field.metadata[LIMITS]
    hint = f" ({hint})" if hint else ""
    for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
        name = field.name if i is None else f"{field.name}[{i}]"
        if v < lo:
            raise ConfigError(f"{where}: {name} must be >= {lo}, got {_show(v)}{hint}")
        if v > hi:
            raise ConfigError(f"{where}: {name} must be <= {hi}, got {_show(v)}{hint}; the limit keeps memory "
                              f"bounded (README: Configuration)")


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is InputTag:
        return "module label"
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None)) + " or null" * (
            type(None) in get_args(tp)
        )
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _float_text(text: str) -> float | None:
    """``1e3``, ``5e-1`` as the numbers they are: PyYAML resolves floats by YAML 1.1's rule, which wants a
    dot (``1.0e3``), so a plain exponent reaches a float field as a string. None: not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def convert(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ConfigError naming ``where``."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        if isinstance(value, dict) and sum(dataclasses.is_dataclass(a) for a in args) == 1:
            # a mapping for an optional block: its own error (``block.key: ...``) says more than "expected mapping"
            return build(next(a for a in args if dataclasses.is_dataclass(a)), value, where)
        present = [a for a in args if a is not type(None)]
        if len(present) == 1 and get_origin(present[0]) in (list, tuple, dict) \
                and isinstance(value, (list, tuple, dict)) and not isinstance(value, str):
            return convert(value, present[0], where)  # an optional list's own error names the item at fault
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, where)
            except ConfigError:
                pass  # try the next alternative; the error below names them all
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
    if origin is Literal:
        if value in get_args(tp):
            return value
        raise ConfigError(f"{where}: expected one of {_type_name(tp)}, got {_show(value)}")
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}")
        (item_tp,) = get_args(tp)[:1] or (Any,)
        return [convert(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        key_tp, val_tp = get_args(tp) or (str, Any)
        return {str(k): convert(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:  # nan and inf are never a sensible setting (a nan threshold passes nothing)
        number = _float_text(value) if isinstance(value, str) else value
        if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
            return float(number)
    elif tp is InputTag:
        if isinstance(value, str) and value and not value.startswith(":"):
            return InputTag(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a programming error in a module's declaration
        raise TypeError(f"unsupported parameter type {tp!r} at {where}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {_show(value)}{_yaml_word_hint(value, tp)}")


def _yaml_word_hint(value: Any, tp: Any) -> str:
    """Why a name came as a boolean: YAML 1.1 (PyYAML's) reads an unquoted off/on/yes/no/true/false as one, so a
    prescale column named ``off`` was "expected str, got False" with nothing said of the quotes it needs."""
    if isinstance(value, bool) and tp in (str, InputTag):
        return (f" (YAML reads an unquoted {'on, yes or true' if value else 'off, no or false'} as a boolean: "
                f"quote the name, e.g. '{'on' if value else 'off'}')")
    return ""


def close_hint(name: str, known: Any) -> str:
    """``"; did you mean 'x'?"`` for the known name nearest a mistyped one (CMSSW's ``fileNames`` for
    ``files``), or nothing."""
    import difflib

    known = list(known)
    # two letters swapped (modle) is one slip, but difflib ranks a letter dropped nearer: 'mode' beside 'model'
    swapped = [k for k in known if len(k) == len(name) and sorted(k) == sorted(name)
               and sum(a != b for a, b in zip(k, name)) == 2]
    close = swapped or difflib.get_close_matches(name, known, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from mapping ``data``; unknown keys and missing required keys fail."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ConfigError(f"{where}.{key}: unknown key{close_hint(str(key), fields)} (allowed: {known})")
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = convert(data[name], hints[name], f"{where}.{name}")
            _check_limits(kwargs[name], field, where)
            _check_choices(kwargs[name], field, where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required key is missing ({_type_name(hints[name])})")
    try:
        obj = cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ checks of value ranges
        raise ConfigError(f"{where}: {exc}") from None
    return obj


def input_tags(obj: Any) -> list[InputTag]:
    """All InputTag values held by a parameters dataclass (also inside lists)."""
    return [tag for _, tag in input_tag_fields(obj)]


def input_tag_fields(obj: Any) -> list[tuple[str, InputTag]]:
    """Every InputTag with the key path it sits at (``.keep[1]``), so that an error about one tag names
    the key, and a command-line override of that key can be blamed for it."""
    found: list[tuple[str, InputTag]] = []

    def walk(value: Any, at: str) -> None:
        if isinstance(value, InputTag):
            found.append((at, value))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{at}[{i}]")
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{at}.{k}")
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name), f"{at}.{f.name}")

    walk(obj, "")
    return found


def to_plain(obj: Any) -> Any:
    """Dataclasses back to plain YAML-able data (for ``--dump``)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, str):
        return str(obj)
    return obj
