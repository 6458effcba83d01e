"""``hltrun.json`` checked against its published schema (``hltrun-report.schema.json``) as it is written.

A report that does not follow the schema is a bug in hltrun or in a service plugin's ``json_report``,
never the user's doing. What happens then (docs/report-schema.md):

* the file is written anyway: its numbers are still the job's, and tools reading it may cope;
* one error line names the first failing place (``services/Timing/event/real/p99: ...``) and the job
  exits non-zero (``ReportSchemaError``, exit code 1, as for any internal error), so CI and batch
  systems notice; ``--debug`` logs every failing place.

jsonschema is a core dependency for this (setup.cfg); the compiled validator is cached per process.
Per-event arrays (10 000 rows of every column by default) would cost jsonschema ~13 µs a number: over a
second at the end of a default job. Arrays whose items are plain numbers or integers (with at most a
``minimum``) are therefore checked in one Python pass, and handed to jsonschema's own ``items`` only if
that pass finds something, so the errors and their places are jsonschema's.
"""

from __future__ import annotations

import functools
import json
import logging
from importlib.resources import files
from typing import Any

from ..errors import HltError

log = logging.getLogger("hltrun")

SCHEMA_FILE = "hltrun-report.schema.json"
_MAX_MESSAGE = 200  # characters of jsonschema's message kept on the one line (it quotes the bad value)


class ReportSchemaError(HltError):
    """hltrun.json was written but does not follow its schema (a bug: see the module docstring)."""


def _numbers_pass(items: Any, instance: list[Any]) -> bool:
    """True when every item surely follows ``items`` = {type: number|integer[, minimum]}; False: look closer."""
    if not isinstance(items, dict) or not set(items) <= {"type", "minimum"} or items.get("type") not in (
            "number", "integer"):
        return False
    if items["type"] == "number":
        ok = all(type(x) is float or type(x) is int for x in instance)
    else:
        ok = all(type(x) is int or (type(x) is float and x.is_integer()) for x in instance)
    low = items.get("minimum")
    return ok and (low is None or not any(x < low for x in instance))


@functools.cache
def _validator() -> Any:
    import jsonschema
    from jsonschema.validators import extend

    plain_items = jsonschema.Draft202012Validator.VALIDATORS["items"]

    def items(validator: Any, items: Any, instance: Any, schema: dict[str, Any]) -> Any:
        if "prefixItems" not in schema and validator.is_type(instance, "array") and _numbers_pass(items, instance):
            return
        yield from plain_items(validator, items, instance, schema)

    schema = json.loads(files("hltrun.framework.report").joinpath(SCHEMA_FILE).read_text())
    return extend(jsonschema.Draft202012Validator, {"items": items})(schema)


def _where(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(the top level)"


def schema_problem(doc: Any) -> str | None:
    """None when ``doc`` follows the schema, else one line: the first failing place and why."""
    from jsonschema.exceptions import best_match

    errors = list(_validator().iter_errors(doc))
    if not errors:
        return None
    for e in errors:
        log.debug("hltrun.json vs %s: %s: %s", SCHEMA_FILE, _where(e), e.message)
    error = best_match(errors)
    message = error.message if len(error.message) <= _MAX_MESSAGE else error.message[:_MAX_MESSAGE] + "…"
    more = f" (and {len(errors) - 1} more; --debug lists them)" if len(errors) > 1 else ""
    return f"{_where(error)}: {message}{more}"
