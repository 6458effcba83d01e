"""Errors a user can cause. Each one renders as a single line that names the culprit.

The CLI prints ``str(error)`` and exits non-zero; tracebacks are shown only with ``--debug``.
"""


class HltError(Exception):
    """Base class for every error hltrun reports to the user as one line."""

    exit_code = 1


class ConfigError(HltError):
    """The configuration (file or command-line override) is invalid."""

    exit_code = 2


class SourceError(HltError):
    """An input file, tree or branch is missing, unreadable or inconsistent."""

    exit_code = 3


class ModuleError(HltError):
    """A module failed while processing an event, or could not be set up."""

    exit_code = 4


class ProductNotFound(ModuleError):
    """A module asked for a product that no module put into the event."""
