"""``source.files`` entries to input files: names, globs, and text files listing files (CMSSW-style).

Apart from the checks: what a user may write in ``source.files`` (a glob, a ``files.txt`` made by
``ls`` or a catalogue query, a folder by mistake) is settled here, before any file is opened; the
checks then see plain file names only.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from hltrun.framework.errors import ConfigError, FileOpenError, SourceError
from hltrun.framework.resources import WEB_PAGE, glob_files, is_web_page, local_file_url, remote_url, user_path

# a text file listing input files, one per line, as CMSSW's FileUtils.loadListFromFile reads them
LIST_SUFFIXES = (".txt", ".list")


# CMSSW's name of a local file (a PFN: ``file:/data/x.root``, ``file:x.root``, ``file:///data/x.root``), as a
# cmsRun configuration and its file lists give every local file (a bare ``/store/...`` is a logical name)
def local_name(entry: str) -> str:
    """``entry`` without CMSSW's ``file:`` prefix (``resources.local_file_url``): the local path it names.
    Taken as written it was "not found: file:/d/x.root", or refused as a remote URL (``file:///``)."""
    return local_file_url(entry) or entry


def input_files(entries: "list[str]") -> list[str]:
    """The input files of ``source.files``, in order: globs expanded (sorted), a ``.txt``/``.list`` file
    replaced by the names it lists (one per line, globs allowed, ``#`` comments and blank lines skipped,
    relative names relative to the working directory as every other input); CMSSW's ``file:`` prefix read
    as the local path it names. A folder, a list that
    lists nothing or lists another list, and a pattern that matches nothing are one line each."""
    files: list[str] = []
    for given, entry in ((given, local_name(given)) for given in entries):
        _refuse_prefix_of_a_literal_file(given, entry)
        if _is_list(entry):
            names = _listed(entry)
            if not names:
                raise ConfigError(f"source.files: {entry} lists no input file (one name per line; '#' starts a comment)")
            for name in names:
                if name.endswith(LIST_SUFFIXES):
                    raise ConfigError(f"source.files: {entry} lists {name}, another list: list the ROOT files "
                                      f"themselves")
                files += _matches(name, f" (listed in {entry})")
        else:
            files += _matches(entry, "")
    return files


def list_files(entries: "list[str]") -> list[str]:
    """The text lists among ``source.files`` (``.txt``/``.list``): inputs of the job as the files they name are,
    so no output of it may replace one (a rerun of the same configuration would then read no input). Each as the
    path it names (``~`` expanded): the guard stats it, and ``~/files.txt`` taken literally named no file."""
    return [os.fspath(user_path(entry)) for entry in map(local_name, entries) if _is_list(entry)]


def _is_list(entry: str) -> bool:
    return remote_url(entry) is None and entry.endswith(LIST_SUFFIXES) and Path(user_path(entry)).is_file()


def _refuse_prefix_of_a_literal_file(given: str, entry: str) -> None:
    """``file:foo.root`` is CMSSW's name of ``foo.root``; when that is missing but a file named ``file:foo.root``
    is there, the user meant that one: one line saying how to name it, not a bare "not found: foo.root"."""
    if entry == given or remote_url(entry) is not None or glob.has_magic(entry):
        return
    if not os.path.lexists(user_path(entry)) and os.path.isfile(given):
        raise FileOpenError(f"source: input file not found: {entry} ('{given}' is CMSSW's file: prefix of a local "
                            f"path); to read the file named '{given}', write ./{given}")


def _listed(path: str) -> list[str]:
    """The names a list file holds: one per line, comments and blank lines left out. A web page saved as the list
    (a catalogue query behind a login) is said to be one: its first line was "input file not found: <!DOCTYPE html>"."""
    if is_web_page(user_path(path)):
        raise ConfigError(f"source.files: file list {path} {WEB_PAGE}")
    try:
        text = Path(user_path(path)).read_text(encoding="utf-8-sig")  # a Windows editor's BOM is no name
    except UnicodeDecodeError:
        raise ConfigError(f"source.files: {path} is not a text list of input files (not UTF-8 text); give "
                          f"ROOT files or a list of them, one name per line") from None
    except OSError as exc:
        raise SourceError(f"source: cannot read the file list {path}: {exc.strerror or exc}") from None
    return [local_name(line) for line in (raw.split("#", 1)[0].strip() for raw in text.splitlines()) if line]


def _matches(pattern: str, where: str) -> list[str]:
    matches = glob_files(pattern, "source: input file")
    if not matches:
        raise SourceError(f"source: no file matches {pattern!r}{where}")
    for path in matches:
        if os.path.isdir(path):
            raise ConfigError(f"source.files: {path}{where} is a folder: give its files, as "
                              f"'{os.path.join(path, '*.root')}'")
    return matches
