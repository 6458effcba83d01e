"""Import TensorFlow without its start-up log on the console, every error it prints kept.

Why: TensorFlow's native log obeys ``TF_CPP_MIN_LOG_LEVEL`` (hltrun sets 2 unless the user set it) only once its
logging is initialised; what its libraries print while they load comes first and ignores it. TF 2.21 printed, on
every ``hltrun ... backend=tensorflow -q``, "WARNING: All log messages before absl::InitializeLog() is called are
written to STDERR" and "I0000 ... port.cc:153] oneDNN custom operations are on ..." twice each. Those lines are
dropped as TensorFlow's own setting asks (INFO from level 1, WARNING from 2); an error or a fatal line is never
dropped, and a fatal one is still shown if the import aborts the process (``without_native_lines``).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from hltrun.framework.extras import need
from hltrun.framework.native_stderr import without_native_lines

# absl's line ("I0000 00:00:1796685192.562883    8970 port.cc:153] ...") and TSL's older one
# ("2024-01-30 22:44:42.456316: I tensorflow/core/util/port.cc:153] ...")
_ABSL = r"^{sev}\d{{4}} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]+\] "
_TSL = r"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: {sev} "
_PRE_INIT = r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"


def start_up_lines(level: int) -> str | None:
    """The pattern of the start-up lines that ``TF_CPP_MIN_LOG_LEVEL=level`` hides once TensorFlow reads it:
    None at 0 (the user asked for everything); never an error (E) or a fatal (F) line."""
    severities = "IW" if level >= 2 else "I" if level >= 1 else ""
    if not severities:
        return None
    sev = f"[{severities}]"
    return "|".join((_PRE_INIT, _ABSL.format(sev=sev), _TSL.format(sev=sev)))


def log_level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (a non-number: 0), hltrun's 2 unless the user set one."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
    except ValueError:
        return 0


def import_tensorflow(purpose: str) -> ModuleType:
    """``tensorflow`` (``need``'s one line if it is missing or broken), its start-up log hidden at the level set."""
    pattern = start_up_lines(log_level())
    if pattern is None or "tensorflow" in sys.modules:  # imported already: nothing more to print, no filter to start
        return need("tensorflow", purpose)
    with without_native_lines(pattern):
        return need("tensorflow", purpose)


__all__ = ["import_tensorflow", "start_up_lines"]
