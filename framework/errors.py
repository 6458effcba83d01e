"""Errors a user can cause. Each one renders as a single line that names the culprit.

The CLI prints ``str(error)`` and exits non-zero; tracebacks are shown only with ``--debug``.
"""


import re


class HltError(Exception):
    """Base class for every error hltrun reports to the user as one line.

    ``cmssw_code`` / ``cmssw_type``: the edm::errors code cmsRun would give the same failure
    (FWCore/Utilities/interface/EDMException.h), for the FrameworkJobReport's FrameworkError."""

    exit_code = 1
    cmssw_code, cmssw_type = 8001, "OtherCMS"


class ConfigError(HltError):
    """The configuration (file or command-line override) is invalid."""

    exit_code = 2
    cmssw_code, cmssw_type = 8009, "Configuration"


class SourceError(HltError):
    """An input file, tree or branch is missing, unreadable or inconsistent. ``first_entry``: the
    first entry that could not be read, when the failure is in the middle of a file."""

    exit_code = 3
    cmssw_code, cmssw_type = 8021, "FileReadError"

    def __init__(self, message: str = "", first_entry: int | None = None) -> None:
        super().__init__(message)
        self.first_entry = first_entry


class FileOpenError(SourceError):
    """An input file is missing or cannot be opened as a ROOT file."""

    cmssw_code, cmssw_type = 8020, "FileOpenError"


class ModuleError(HltError):
    """A module failed while processing an event, or could not be set up."""

    exit_code = 4
    cmssw_code, cmssw_type = 8001, "OtherCMS"


class AcceleratorUnavailable(ModuleError):
    """The configuration asks for an accelerator (GPU, TensorRT) this machine does not offer."""

    cmssw_code, cmssw_type = 8035, "UnavailableAccelerator"


class ProductNotFound(ModuleError):
    """A module asked for a product that no module put into the event."""

    cmssw_code, cmssw_type = 8006, "ProductNotFound"


# CMSSW's exception categories (edm::errors::ErrorCodes names, FWCore/Utilities/interface/EDMException.h),
# the words options.TryToContinue takes. hltrun raises ProductNotFound, StdException (a Python exception
# from module code, as cmsRun wraps a std::exception), OtherCMS, UnavailableAccelerator, Configuration,
# FileOpenError and FileReadError; the others are accepted so that a CMSSW list validates.
CMSSW_CATEGORIES = {  # name -> code
    "OtherCMS": 8001, "StdException": 8002, "Unknown": 8003, "BadAlloc": 8004, "BadExceptionType": 8005,
    "ProductNotFound": 8006, "DictionaryNotFound": 8007, "InsertFailure": 8008, "Configuration": 8009,
    "LogicError": 8010, "UnimplementedFeature": 8011, "InvalidReference": 8012, "NullPointerError": 8013,
    "NoProductSpecified": 8014, "EventTimeout": 8015, "EventCorruption": 8016, "ScheduleExecutionFailure": 8017,
    "EventProcessorFailure": 8018, "FileInPathError": 8019, "FileOpenError": 8020, "FileReadError": 8021,
    "FatalRootError": 8022, "MismatchedInputFiles": 8023, "ProductDoesNotSupportViews": 8024,
    "ProductDoesNotSupportPtr": 8025, "NotFound": 8026, "FormatIncompatibility": 8027, "FallbackFileOpenError": 8028,
    "NoSecondaryFiles": 8029, "UnavailableAccelerator": 8035,
}


def category_of(exc: BaseException) -> str:
    """The CMSSW exception category an event failure is judged by (options.TryToContinue).

    A Python exception raised by module code reaches the loop wrapped in a ModuleError that names the
    module; its category is StdException, as cmsRun files a std::exception thrown by a module."""
    if type(exc) is ModuleError and exc.__cause__ is not None:
        if not isinstance(exc.__cause__, HltError):
            return "StdException"
        if type(exc.__cause__) is ModuleError:  # a wrapper that adds context (the dynamic batch) keeps its category
            return category_of(exc.__cause__)
    if isinstance(exc, HltError):
        return exc.cmssw_type
    return "StdException"


def one_line(exc: BaseException, default: str = "", limit: int = 400) -> str:
    """``exc``'s message as one complete line: libraries (uproot among them) break one sentence over
    several lines, so the lines are joined, not cut at the first (which may end mid-sentence, in a
    comma); a very long message is shortened at ``limit`` characters, visibly."""
    text = " ".join(str(exc).split())
    if not text:
        return default
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """``text`` with its control characters (newline, carriage return, tab, escape, Unicode line
    separators) written as escapes (``\\n``, ``\\x1b``): a message that quotes what the user wrote
    (a file name with a newline in it) stays one line, names it unambiguously, and cannot drive the terminal."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
