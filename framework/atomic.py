"""Every file hltrun writes goes through here: written whole or not at all, never over a special file.

The output module (and its Dask parts), the job report, the report folder, ROOT histograms and the
tools' files all use ``writing`` (or ``write_bytes`` / ``write_text``). The bytes go to a temporary,
registered with framework/interrupt.py so that even an aborted job removes it. When the writer is
done, the temporary is renamed over the destination, or copied into it when the destination is
written in place (a FIFO, a character device, /dev/stdout: framework/destinations.py has the policy).
On every failure path, a full disk included, the temporary is removed, a destination that was there
is left untouched, and an OS error becomes one ModuleError line naming the destination (exit 4).

``together()`` groups files that must appear as a set (the report folder): each stays a temporary
until the group ends; all are flushed and synced (a full disk shows there), then all are renamed,
with signals held until the last rename. A set's file is renamed, never written in place: a FIFO or a
device among them is refused (the bytes copied into one cannot be taken back).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Iterator

from .destinations import NAME_MAX, check_set_member, destination, fit_name, make_refused
from .errors import ModuleError
from .interrupt import forget_temporary, register_temporary, signals_held
from .leftovers import sweep, tag


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_MODE = 0o666 & ~_umask()  # mkstemp makes 0600; a written file is as readable as any other the user makes
_RANDOM = 16  # room for mkstemp's random part of a temporary's name (8 characters today)
_group: ContextVar[list["Staged"] | None] = ContextVar("hltrun_atomic_group", default=None)


def _raw(file: str | int, mode: str) -> io.FileIO:
    """The unbuffered file every written byte goes through (the one place a test puts a full disk)."""
    return io.FileIO(file, mode)


class Staged:
    """One destination being written: ``tmp`` (or the file object ``open()`` returns) takes the bytes;
    ``commit()`` makes them the destination's, ``discard()`` removes them."""

    def __init__(self, path: str | os.PathLike[str], what: str, suffix: str = "") -> None:
        self.what = what
        self.dest = destination(path, what)
        self._file: io.BufferedRandom | None = None
        folder = self.dest.staging_folder()
        try:
            folder.mkdir(parents=True, exist_ok=True)
            sweep(folder)  # what killed jobs left there (framework/leftovers.py)
            writer = tag()  # who writes it, so that a later job can tell when it was left by a killed one
            room = NAME_MAX - _RANDOM - len(writer.encode()) - len(f".tmp{suffix}".encode())
            prefix = fit_name(self.dest.target.name, room) + writer
            fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp" + suffix, dir=folder)
        except OSError as exc:
            raise ModuleError(f"{what}: cannot write into {folder} ({make_refused(folder, exc)})") from None
        os.close(fd)
        self.tmp = Path(tmp)
        register_temporary(self.tmp)

    def open(self) -> io.BufferedRandom:
        """The temporary, open for reading and writing (uproot reads back what it wrote)."""
        self._file = io.BufferedRandom(_raw(str(self.tmp), "r+"))
        return self._file

    def error(self, exc: OSError) -> ModuleError:
        """The one line a failed write becomes: who wrote, which destination, why."""
        return ModuleError(f"{self.what}: cannot write {self.dest.path} ({exc.strerror or exc})")

    def owns(self, exc: OSError) -> bool:
        """Whether ``exc`` is about this file (a write names no file; another file's error names it)."""
        return exc.filename is None or Path(exc.filename) in (self.tmp, self.dest.path, self.dest.target)

    @contextmanager
    def guard(self) -> Iterator[None]:
        """Any error in the block discards the temporary; an OS error about this file becomes its line."""
        try:
            yield
        except OSError as exc:
            self.discard()
            if self.owns(exc):
                raise self.error(exc) from None
            raise
        except BaseException:
            self.discard()
            raise

    def done(self) -> None:
        """The bytes are all written: commit now, or with the rest of the enclosing ``together()``."""
        group = _group.get()
        if group is None:
            self.commit()
        else:
            group.append(self)

    def commit(self) -> Path:
        """Rename the temporary over the target, or copy it into a destination written in place."""
        self.prepare()
        return self.install()

    def prepare(self, in_a_set: bool = False) -> None:
        """All of the commit that can fail and that the destination does not show: the bytes flushed and on
        disk (a full disk found before the rename leaves the destination as it was: once per output file, a
        negligible wait), the destination looked at again. ``in_a_set``: a member of a ``together()`` set,
        which must be renamed into place (``destinations.check_set_member``)."""
        with self.guard():
            if self._file is not None:
                self._file.close()  # flushes: a full disk may show only here
            # what the destination is now: a long job's may have become a FIFO or a link since
            self.dest = check_set_member(self.dest.path, self.what) if in_a_set \
                else destination(self.dest.path, self.what)
            if not self.dest.in_place:
                fd = os.open(self.tmp, os.O_RDONLY)
                try:  # a file system that allocates late says a full disk here, not after the rename (README)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.chmod(self.tmp, _MODE)

    def install(self) -> Path:
        """The prepared bytes become the destination's: renamed over the target, or copied in."""
        with self.guard():
            if self.dest.in_place:
                self._copy_in()
            else:
                os.replace(self.tmp, self.dest.target)
        forget_temporary(self.tmp)
        return self.dest.path

    def _copy_in(self) -> None:
        if self.dest.fd is not None:  # after what this process already printed there
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            fd = os.dup(self.dest.fd)
        else:  # no O_TRUNC, no O_CREAT; a FIFO waits here for its reader, as a shell redirection does
            fd = os.open(self.dest.path, os.O_WRONLY)
        with io.BufferedWriter(_raw(fd, "w")) as out, open(self.tmp, "rb") as src:
            shutil.copyfileobj(src, out)
        self.tmp.unlink()

    def discard(self) -> None:
        """Remove the temporary; the destination is left as it was."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the flush of a failed write fails again; the descriptor is closed all the same
        self.tmp.unlink(missing_ok=True)
        forget_temporary(self.tmp)


@contextmanager
def writing(path: str | os.PathLike[str], what: str, suffix: str = "") -> Iterator[Staged]:
    """Stage ``path`` for the block: the block writes ``staged.open()`` or ``staged.tmp`` (``suffix``
    ends the temporary's name, for writers that choose the format by it). A clean exit commits, or
    leaves the commit to the enclosing ``together()``; any error discards."""
    staged = Staged(path, what, suffix)
    with staged.guard():
        yield staged
    staged.done()


def write_bytes(path: str | os.PathLike[str], data: bytes, what: str) -> Path:
    """``data`` into ``path``, whole or not at all; returns ``path``."""
    with writing(path, what) as staged:
        with staged.open() as fh:
            fh.write(data)
    return staged.dest.path


def write_text(path: str | os.PathLike[str], text: str, what: str) -> Path:
    """``text`` as UTF-8. A file name whose bytes are not UTF-8 (Python's lone surrogates, ``caf\\udce9.root``)
    is written as that escape: a report naming it stays a UTF-8 file, where encoding it failed the write."""
    return write_bytes(path, text.encode("utf-8", "backslashreplace"), what)


@contextmanager
def together() -> Iterator[None]:
    """Files written in the block appear together or not at all: each stays a temporary until the
    block ends; then everything that can fail is done for every file (flushed, on disk, its destination
    looked at again: a FIFO or a device cannot be part of a set, ``check_set_member``), and only then
    are all renamed into place, with signals held until the last rename. A failure before the first
    rename leaves every destination as it was."""
    staged: list[Staged] = []
    token = _group.set(staged)
    try:
        yield
        for s in staged:
            s.prepare(in_a_set=True)
    except BaseException:
        for s in staged:
            s.discard()
        raise
    finally:
        _group.reset(token)
    with signals_held():
        for i, s in enumerate(staged):
            try:
                s.install()
            except BaseException:
                for rest in staged[i + 1:]:
                    rest.discard()
                raise
