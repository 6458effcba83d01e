"""Errors a user can cause. Each one renders as a single line that names the culprit.

The CLI prints ``str(error)`` and exits non-zero; tracebacks are shown only with ``--debug``.
"""


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
    """An input file, tree or branch is missing, unreadable or inconsistent."""

    exit_code = 3
    cmssw_code, cmssw_type = 8021, "FileReadError"


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
CMSSW_CATEGORIES = (
    "OtherCMS", "StdException", "Unknown", "BadAlloc", "BadExceptionType", "ProductNotFound",
    "DictionaryNotFound", "InsertFailure", "Configuration", "LogicError", "UnimplementedFeature",
    "InvalidReference", "NullPointerError", "NoProductSpecified", "EventTimeout", "EventCorruption",
    "ScheduleExecutionFailure", "EventProcessorFailure", "FileInPathError", "FileOpenError", "FileReadError",
    "FatalRootError", "MismatchedInputFiles", "ProductDoesNotSupportViews", "ProductDoesNotSupportPtr",
    "NotFound", "FormatIncompatibility", "FallbackFileOpenError", "NoSecondaryFiles", "UnavailableAccelerator",
)


def category_of(exc: BaseException) -> str:
    """The CMSSW exception category an event failure is judged by (options.TryToContinue).

    A Python exception raised by module code reaches the loop wrapped in a ModuleError that names the
    module; its category is StdException, as cmsRun files a std::exception thrown by a module."""
    if type(exc) is ModuleError and exc.__cause__ is not None and not isinstance(exc.__cause__, HltError):
        return "StdException"
    if isinstance(exc, HltError):
        return exc.cmssw_type
    return "StdException"
