"""Where a job writes, and how: the policy every writer follows, checked before the first event.

A destination that cannot be written (a folder where a file should go, a file where a folder should
go, a folder that cannot be created or written, a socket) must fail at begin_job, in one line, with the
module exit code (4): not after hours of events, in end_job.

What a file destination is decides how it is written (framework/atomic.py does the writing, and
looks again when the file is complete: a long job's destination may have changed meanwhile):

* absent, or a regular file: written to a temporary beside it, renamed over it when complete;
* a symbolic link: followed. The temporary goes beside the link's resolved target and replaces the
  target; the link stays a link (a dangling link creates its target);
* a FIFO or a character device (``/dev/null``, a terminal, ``/dev/full``): written in place, never
  renamed over: the bytes are staged in a temporary of the system's temporary folder, then copied in;
* a descriptor of this process (``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``): written in place
  through that descriptor, after what was already printed there (even when it is a regular file);
* anything else (a socket, a block device, a folder): refused.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TextIO

from .errors import HltError, ModuleError
from .leftovers import sweep, tag
from .resources import broken_link, refuse_remote_destination, user_path

REPORT_FOLDER = "report folder (--report-dir / options.reportDir)"  # who writes there, in messages
_LINK_LIMIT = 40  # the kernel's own limit on links followed in one lookup
_PROBE_BYTES = 4096  # one block of a file system: what a full one refuses even to a small file
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs, APFS): the shortest common limit


def fit_name(name: str, max_bytes: int) -> str:
    """``name`` cut to at most ``max_bytes`` bytes of UTF-8, never inside a character. A name hltrun
    makes from a user's (the temporary beside an output, a cache file named after the model) adds to
    it, so a user's name that is valid (up to 255 bytes) must be shortened there, not refused."""
    data = name.encode("utf-8", "surrogateescape")
    return name if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", "ignore")


@dataclass(frozen=True)
class Destination:
    """How ``path`` is written: ``target`` is the file the bytes end in (a link's resolved target);
    ``in_place`` when it must never be renamed over; ``fd`` when it names a descriptor of this process."""

    path: Path
    target: Path
    in_place: bool = False
    fd: int | None = None

    def staging_folder(self) -> Path:
        """Where the temporary goes: beside the target (same file system, so the rename is atomic), or
        the system's temporary folder for a destination written in place."""
        return Path(tempfile.gettempdir()) if self.in_place else self.target.parent


class _Job:
    """What one job reads and writes: its input files by identity (device, inode: a link or another name of
    the file is the same file) and, by resolved path, which of its writers claimed each file destination."""

    def __init__(self) -> None:
        self.inputs: dict[tuple[int, int], str] = {}
        self.writers: dict[str, str] = {}
        # the files the job will write, as named (target -> writer, path): an input read after its writer
        # claimed it (``-j`` is claimed before the configuration names the inputs) is compared with them
        self.written: dict[str, tuple[str, Path]] = {}
        self.refused: set[str] = set()  # the writers refused as over an input: never written at the end


# the job running in this thread (``one_job``); None: nothing is compared. A context variable, not a module
# global: a library user's two jobs in two threads each compare their own files (a global was shared, and
# reset to the wrong job when they ended in another order than they began)
_running: ContextVar[_Job | None] = ContextVar("hltrun_running_job", default=None)


@contextmanager
def one_job() -> Iterator[None]:
    """The block runs one job: its destinations are compared with each other and with its inputs. What a
    job claimed is forgotten at its end (a later job in the same process may write the same file)."""
    token = _running.set(_Job())
    try:
        yield
    finally:
        _running.reset(token)


def reading(paths: Iterable[str | os.PathLike[str]]) -> None:
    """The running job reads these files: a destination that is one of them is refused, as writing it
    would replace the data the job reads (``modules.out.file`` or ``-j`` naming the source's file)."""
    job = _running.get()
    if job is None:
        return
    written = _written_now(job)  # once per call: a source's thousands of files are compared with a few writers
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue  # its reader says why it cannot be read
        job.inputs[(info.st_dev, info.st_ino)] = os.fspath(path)
        claimed = written.get((info.st_dev, info.st_ino))
        if claimed is not None:  # before the first event, not when that writer replaces it after the job
            raise _over_input(job, *claimed, os.fspath(path))


class OverInput(HltError):
    """A destination of the job that is one of its input files (the same file, by any name): exit 4, as a
    destination's other refusals. Not a ModuleError: it can now be raised where an input is read (a model's
    check, a tool's), and the places that catch a model's ModuleError to say it in their own words (the
    scorer's "modules.vae: " prefix, hltbench's exit 2) must pass the output's own line on as it is."""

    exit_code = ModuleError.exit_code
    cmssw_code, cmssw_type = ModuleError.cmssw_code, ModuleError.cmssw_type


def _over_input(job: _Job, what: str, path: Path, source: str) -> OverInput:
    job.refused.add(what)
    return OverInput(f"{what}: {path} is an input file of this job ({source}); writing it would replace "
                     "what the job reads: give the output another name")


def _written_now(job: _Job) -> dict[tuple[int, int], tuple[str, Path]]:
    """The files the job's writers claimed (``-j`` before the configuration names the inputs, the report
    folder's), by identity as they are now, -> (writer, path as named); one not there yet is no input."""
    found: dict[tuple[int, int], tuple[str, Path]] = {}
    for target, claimed in job.written.items():
        try:
            info = os.stat(target)
        except OSError:
            continue
        found.setdefault((info.st_dev, info.st_ino), claimed)
    return found


def _not_an_input(path: Path, info: os.stat_result, what: str) -> None:
    job = _running.get()
    source = job.inputs.get((info.st_dev, info.st_ino)) if job is not None else None
    if job is not None and source is not None:
        raise _over_input(job, what, path, source)


def refused(what: str) -> bool:
    """Whether the running job refused ``what`` as a destination over one of its inputs (the CLI then does
    not try to write its job report there after the failed job, which would say it a second time)."""
    job = _running.get()
    return job is not None and what in job.refused


def _claim(dest: Destination, what: str, written: bool = True) -> None:
    """``what`` writes ``dest`` in the running job: a file another writer of the job claimed is refused
    (the last one written would silently replace the other). Devices and FIFOs take several writers.
    ``written``: it will be written (not only may be), so an input the job reads later may not be it."""
    job = _running.get()
    if job is None or dest.in_place:
        return
    first = job.writers.setdefault(os.fspath(dest.target), what)
    if first != what:
        raise ModuleError(f"{what}: {dest.path} is also written by {first}; two outputs of one job would "
                          "overwrite each other: give each its own name")
    if written:
        job.written.setdefault(os.fspath(dest.target), (what, dest.path))


def _own_descriptor(path: Path) -> int | None:
    """N when ``path`` leads, through links, to ``/proc/<this process>/fd/N`` (as /dev/stdout does)."""
    here = f"/proc/{os.getpid()}/fd"
    current = os.path.abspath(path)
    for _ in range(_LINK_LIMIT):
        folder, name = os.path.split(current)
        folder = os.path.realpath(folder)
        if folder == here and name.isdigit():
            return int(name)
        link = os.path.join(folder, name)
        if not os.path.islink(link):
            return None
        current = os.path.join(folder, os.readlink(link))  # a relative link is relative to its folder
    return None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISSOCK, "a socket"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _local_only(path: str | os.PathLike[str], what: str) -> None:
    """A URL as a destination is one ModuleError line (``resources.refuse_remote_destination``'s words)."""
    try:
        refuse_remote_destination(path, what)
    except ValueError as exc:
        raise ModuleError(str(exc)) from None


def destination(path: str | os.PathLike[str], what: str) -> Destination:
    """Classify ``path`` by the policy above; a destination that is refused raises one ModuleError line."""
    _local_only(path, what)  # every writer: -j, memray, tools' outputs
    path = user_path(path)
    fd = _own_descriptor(path)
    if fd is not None:
        return Destination(path, path, in_place=True, fd=fd)
    try:
        info = os.stat(path)  # follows links
    except (FileNotFoundError, NotADirectoryError):  # a missing folder is made (or refused) by the probe
        return Destination(path, Path(os.path.realpath(path)))
    except OSError as exc:
        raise ModuleError(f"{what}: cannot use {path} ({exc.strerror or type(exc).__name__})") from None
    mode = info.st_mode
    if stat.S_ISREG(mode):
        _not_an_input(path, info, what)  # here, so that atomic.py's last look (before its rename) asks too
        return Destination(path, Path(os.path.realpath(path)))
    if stat.S_ISDIR(mode):
        raise ModuleError(f"{what}: {path} is a folder, not a file name")
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        return Destination(path, path, in_place=True)
    raise ModuleError(f"{what}: {path} is {_kind(mode)}; hltrun writes regular files, FIFOs and "
                      "character devices only")


# the folders ``_probe`` made inside a ``folders_made_undone`` block (deepest last), to remove if the command fails
_made: ContextVar[list[Path] | None] = ContextVar("hltrun_made_folders", default=None)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, outermost first: what ``mkdir(parents=True)`` makes."""
    missing: list[Path] = []
    current = folder
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    return missing[::-1]


@contextmanager
def folders_made_undone() -> Iterator[Callable[[], None]]:
    """A command that checks its output folders first (which makes the missing ones) and then refuses
    another argument must leave nothing behind: the folders the checks make inside this block are removed
    again, deepest first and only while still empty, when the block raises or when the caller calls the
    function it yields (a command that returns its failure's exit code instead of raising)."""
    made: list[Path] = []
    token = _made.set(made)

    def undo() -> None:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                pass  # something was written into it (or it is gone): not ours to remove
        made.clear()

    try:
        yield undo
    except BaseException:
        undo()
        raise
    finally:
        _made.reset(token)


def _probe(folder: Path, what: str, block_for: Path | None = None) -> None:
    """Create the folder if needed and write a throw-away file into it (works as root too). ``block_for``: the
    file that will be written there, whose writer puts a block into the throw-away file and syncs it, so that a
    full file system (or one that allocates late, NFS, saying so only at the sync) refuses it before the first
    event, in the words the end's write would use (``atomic.Staged.error``), not after the whole job."""
    if folder.exists() and not folder.is_dir():
        raise ModuleError(f"{what}: {folder} is a file, not a folder")
    try:
        made = _made.get()
        if made is not None:  # before mkdir: one that fails half-way has made some of them
            made.extend(_missing_folders(folder))
        folder.mkdir(parents=True, exist_ok=True)
        sweep(folder)  # before the first event: what killed jobs left where this one writes
        fd, probe = tempfile.mkstemp(prefix=".hltrun-probe" + tag(), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise ModuleError(f"{what}: cannot write into {folder} ({make_refused(folder, exc)})") from None
    try:
        if block_for is not None:
            os.write(fd, bytes(_PROBE_BYTES))
            os.fsync(fd)
    except OSError as exc:
        raise ModuleError(f"{what}: cannot write {block_for} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
        os.unlink(probe)


KERNEL_FILE_SYSTEMS = ("proc", "sysfs")  # the kernel's views: files that exist, none that can be made


def make_refused(folder: Path, exc: OSError) -> str:
    """Why making a file (or the folder) in ``folder`` failed, from its error. "No such file or directory" for a
    folder that exists (``/proc``) or whose parent does (``/proc/x``) is a special file system's refusal, not a
    missing folder, and "Permission denied" in /sys is one too (as root): said so, naming the file system
    (``/proc/self/mounts``)."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.EEXIST:
        return _link_refused(exc) or reason
    if exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
        return reason
    there = Path(os.path.abspath(folder))
    while not there.exists() and there.parent != there:
        there = there.parent
    kind = _file_system(there) if there.is_dir() else None
    if kind is None or (exc.errno != errno.ENOENT and kind not in KERNEL_FILE_SYSTEMS):  # a true 'Permission denied'
        return reason
    where = "" if there == Path(os.path.abspath(folder)) else f"{there} is "
    what = ": the kernel's view, not a disk" if kind in KERNEL_FILE_SYSTEMS else ""
    return f"{where}a '{kind}' file system, where no file can be made{what}; it said: {reason}"


def _link_refused(exc: OSError) -> str | None:
    """Why mkdir said "File exists" of a folder that is not there: its name (or a parent's) is a symbolic link to
    nowhere (``rep -> /eos/user/a/rep`` with EOS not mounted) or one of a loop; None for any other name."""
    link = exc.filename
    why = None if link is None else broken_link(link)
    return f"{link} {why}" if why else None


def _file_system(folder: Path) -> str | None:
    """The type of the file system ``folder`` is on (the longest mount point above it), or None where the mount
    table cannot be read (not Linux)."""
    try:
        with open("/proc/self/mounts") as mounts:
            table = [line.split()[1:3] for line in mounts if len(line.split()) > 2]
    except OSError:
        return None
    real = os.path.realpath(folder)
    best: tuple[int, str] | None = None
    for point, kind in table:
        point = point.replace("\\040", " ")  # the table writes a space in a mount point as \040
        if (real == point or real.startswith(point.rstrip("/") + "/")) and (best is None or len(point) > best[0]):
            best = (len(point), kind)
    return best[1] if best else None


def check_file_destination(path: str | os.PathLike[str], what: str, in_place: bool = True) -> Destination:
    """``path`` will be written as a file by framework/atomic.py; ``in_place=False`` for a writer that
    can only make a regular file of its own (memray), which refuses FIFOs and devices too."""
    dest = destination(path, what)
    if dest.in_place and not in_place:
        raise ModuleError(f"{what}: {dest.path} is not a regular file; this writer needs one")
    if dest.in_place and dest.fd is None and not os.access(dest.path, os.W_OK):
        raise ModuleError(f"{what}: cannot write to {dest.path} (permission denied)")
    _claim(dest, what)
    if dest.in_place:  # staged in the system's temporary folder, then copied into the device or FIFO
        _probe(dest.staging_folder(), what)
        _probe_device(dest, what)
    else:
        _probe(dest.staging_folder(), what, block_for=dest.path)
    return dest


def _probe_device(dest: Destination, what: str) -> None:
    """A character device written in place (``/dev/full``) refuses bytes only when written, at the end of the
    job: a write of no bytes asks it now, before the first event, in the end's words, and puts nothing there
    (``/dev/null``, a terminal). A FIFO is not opened: that waits for a reader, and closing it would end the
    reader's input; it is written at the end, as a shell redirection is."""
    try:
        info = os.fstat(dest.fd) if dest.fd is not None else os.stat(dest.path)
        if not stat.S_ISCHR(info.st_mode):
            return
        if dest.fd is not None:
            os.write(dest.fd, b"")
            return
        fd = os.open(dest.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            os.write(fd, b"")
        finally:
            os.close(fd)
    except OSError as exc:
        raise ModuleError(f"{what}: cannot write {dest.path} ({exc.strerror or exc})") from None


def check_set_member(path: str | os.PathLike[str], what: str) -> Destination:
    """``path`` will be one file of a set written whole (``atomic.together``: the report folder), so it
    must be renamed into place with the others: a FIFO, a device or a descriptor (or a link to one) is
    refused, as the bytes copied into it could not be taken back if another file of the set fails
    (a ``/dev/full`` member would fail after the others were replaced)."""
    dest = destination(path, what)
    if dest.in_place:
        raise ModuleError(f"{what}: cannot write {dest.path}: it is not a regular file (a FIFO, a device or "
                          "a link to one), and the report set is renamed into place whole; remove it")
    return dest


# the files of every report set (hltrun.json, the HTML page, the Timing service's ROOT file), checked before the
# first event with those the job's services name (``Service.report_files``: Timing's resources.json)
REPORT_SET_NAMES = ("hltrun.json", "report.html", "timing.root", "scores.root")
# timing.root only with a Timing service (it names it then), scores.root only with a trigger filter
ALWAYS_WRITTEN = ("hltrun.json", "report.html")


def check_folder_destination(path: str | os.PathLike[str], what: str, whole_set: bool = False,
                             names: tuple[str, ...] = ()) -> Path:
    """``path`` is a folder files will be written into; ``whole_set``: as one set (``check_set_member``),
    so a FIFO or a device already in it under a report file's name is refused now, before the first event
    (the user's other files in the folder, a FIFO of their own among them, are none of the set's business)."""
    _local_only(path, what)
    path = user_path(path)
    # a set's probe holds a block, synced: a full file system refuses hltrun.json now, not after the whole job
    _probe(path, what, block_for=path / ALWAYS_WRITTEN[0] if whole_set else None)
    if whole_set:
        written = ALWAYS_WRITTEN + names
        for name in dict.fromkeys(REPORT_SET_NAMES + names):
            entry = path / name
            try:
                dest = destination(entry, what)
            except OverInput:
                if name in written:  # an input the set replaces: before the first event
                    raise
                continue  # a file the job may not write (timing.root without a Timing service): its input
            except ModuleError:
                continue  # a folder or a socket of the user's: refused if a report is ever named so
            _claim(dest, what, written=name in written)
            if os.path.lexists(entry):
                check_set_member(entry, what)
    return path


@contextmanager
def printing(what: str, required: bool = True) -> Iterator[None]:
    """The block prints ``what`` to stdout, a destination like the others: one that fails (``> /dev/full``,
    a reader gone) is one ModuleError line, not a traceback or an internal error, and the block's text
    is flushed at its end, so the failure is found here and not by Python's flush at exit. A closed
    stdout (``>&-``: ``sys.stdout`` is None and print() writes nothing) is said the same way when the
    text is the product (``required``; hltdiff's answer is its exit code, its table may go nowhere).
    Only a failed write or flush of stdout is said so: ``sys.stdout`` is wrapped for the block (run when
    no other thread prints), and any other error of the block propagates as what it is."""
    if sys.stdout is None:
        if required:
            raise ModuleError(f"stdout: cannot print {what} (stdout is closed)")
        yield
        return
    stream = sys.stdout
    sys.stdout = _Guarded(stream)  # only its writes are stdout's failures: another OSError of the block is not
    try:
        yield
        sys.stdout.flush()
    except _StdoutFailed as failed:
        raise ModuleError(f"stdout: cannot print {what} ({failed.error.strerror or failed.error})") from None
    finally:
        if isinstance(sys.stdout, _Guarded) and sys.stdout.stream is stream:
            sys.stdout = stream


class _StdoutFailed(Exception):
    """An OSError of a write to stdout, told apart from the OSErrors of the rest of a ``printing`` block
    (a file it reads, a folder it lists), which must reach the user as what they are."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Guarded:
    """``sys.stdout`` during ``printing``: the same stream, whose write and flush failures are marked, and
    remembered (``failed``): a block inside the block already said the failure (tools' ``entry_point``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            self.failed = True
            raise _StdoutFailed(exc) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            self.failed = True
            raise _StdoutFailed(exc) from exc

    def __getattr__(self, name: str) -> object:
        return getattr(self.stream, name)
