"""What compiled code and timing decisions depend on: the model's bytes (with its external data), this
machine's CPU, the engine versions, and where per-machine caches live (and, for this process, what they
could not keep: ``IN_MEMORY``)."""

from __future__ import annotations

import errno
import hashlib
import os
import platform
import threading
import time
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from hltrun.framework.errors import ModuleError
from hltrun.framework.resources import unreadable_reason, user_path, why_not_readable


CACHE_STEM_BYTES = 100  # of the model's name in a cache file's name: the key after it identifies the model


@lru_cache(maxsize=1)
def cpu_key() -> str:
    """A short hash of the CPU model and its feature flags (a cache written on another CPU is not used)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    return hashlib.sha256("\n".join([platform.machine(), *lines]).encode()).hexdigest()[:16]


def cache_root(kind: str) -> Path:
    """``$XDG_CACHE_HOME/hltrun/<kind>`` (``~/.cache`` by default): compiled engines and ``auto``'s
    decisions, one folder per kind. OSError when there is no home folder (no HOME and a user without a
    passwd entry, as ``docker run --user 12345`` gives): the callers then run without their cache."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # XDG: a relative value is invalid and ignored (not a cache in the cwd)
        try:
            base = str(Path.home() / ".cache")
        except RuntimeError:  # Path.home()'s "Could not determine home directory"
            raise OSError(errno.ENOENT, "no home folder (HOME unset, no passwd entry for this user): "
                                        "set XDG_CACHE_HOME to keep one") from None
    return Path(base) / "hltrun" / kind


def cache_entry(folder: Path, name: str) -> Path:
    """``folder / name`` of a per-machine cache, an entry there that is no regular file removed first: a FIFO
    blocked its reader (and an in-place write into it) for ever, a link to /dev/zero was read until memory ran
    out. The folder is hltrun's own cache, so such an entry is replaced as a damaged one is: compiled or timed
    again, then written."""
    path = folder / name
    if os.path.lexists(path) and why_not_readable(path, seeking=False) is not None and not path.is_dir():
        with suppress(OSError):
            path.unlink()
    return path


class MemoryCache:
    """The files a per-machine cache could not keep (no home folder; a read-only, full or non-folder
    cache path), held for the rest of this process under their folder and name (the on-disk key), so
    that the job's other streams, a Dask worker's other threads and later jobs in this process reuse an
    ``auto`` decision or a compiled module instead of timing (~2 s) or compiling (seconds per bucket)
    again. Only what the disk refused is held: with a writable cache nothing changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._files: dict[tuple[Path | None, str], bytes] = {}
        self._claims: dict[tuple[Path | None, str], threading.Lock] = {}

    def get(self, folder: Path | None, name: str) -> bytes | None:
        with self._lock:
            return self._files.get((folder, name))

    def put(self, folder: Path | None, name: str, data: bytes) -> None:
        with self._lock:
            self._files[(folder, name)] = data

    def read(self, folder: Path | None, name: str, parse: Callable[[bytes], Any] = bytes) -> Any:
        """The first of the cache file in ``folder`` and this process's copy of it that ``parse`` accepts (not
        None): a file the disk holds but cannot serve (unreadable, or junk another tool left) does not hide the
        copy kept in memory when the disk refused the write. None when neither has one."""
        if folder is not None:
            try:
                found = parse(cache_entry(folder, name).read_bytes())
            except OSError:
                found = None
            if found is not None:
                return found
        data = self.get(folder, name)
        return parse(data) if data is not None else None

    @contextmanager
    def claim(self, folder: Path | None, name: str) -> Iterator[None]:
        """Hold the work for one key: a second thread (streams of Dask workers begin in threads) waits
        for the first one's decision or module, then finds it, instead of timing or compiling beside it;
        so does a second process using the same cache folder (``process_claim``)."""
        with self._lock:
            lock = self._claims.setdefault((folder, name), threading.Lock())
        with lock, process_claim(folder, name):
            yield


IN_MEMORY = MemoryCache()
CLAIM_WAIT_S = 120.0  # the longest a process waits for another's claim (one that hangs must not stop this one)
_CLAIM_POLL_S = 0.02


@contextmanager
def process_claim(folder: Path | None, name: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold ``name`` in the cache ``folder`` against other processes (an advisory ``flock`` on the hidden
    file ``.<name>.lock`` beside it, removed when done): the workers of a LocalCluster begin their jobs
    together and each timed ``auto``'s engines (and compiled IREE's buckets) beside the others, on the
    same cores, each measuring the others' load, and the last one's table replaced the first's. The lock
    goes with its process, so a killed one leaves none held. Best effort: without a folder, where the lock
    file cannot be made (read-only, not a folder, no flock on that file system), or after ``wait_s``
    (CLAIM_WAIT_S), the work goes on unlocked, as before."""
    path = None if folder is None else folder / f".{name}.lock"
    handle = _locked(path, CLAIM_WAIT_S if wait_s is None else wait_s) if path is not None else None
    try:
        yield
    finally:
        if handle is not None:
            with suppress(OSError):
                path.unlink()  # type: ignore[union-attr] - before the release: a later claim makes a new file
            handle.close()  # closing releases the lock


def _locked(path: Path, wait_s: float) -> Any:
    """The open lock file ``path``, held (exclusive ``flock``), or None: not POSIX, the file cannot be made,
    the file system refuses locks, or another process held it for ``wait_s``. A file that its holder removed
    while this one waited is opened again (the usual lock-file loop), so two processes never hold two files."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+b")  # noqa: SIM115 - held until the claim ends
        except OSError:
            return None
        try:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.close()
                        return None
                    time.sleep(_CLAIM_POLL_S)
            if os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino:
                return handle
        except OSError:  # ENOLCK on some network file systems; the file removed under us: open it again
            if not path.exists() and time.monotonic() < deadline:
                handle.close()
                continue
            handle.close()
            return None
        handle.close()  # its holder removed it after we opened it: take the one now there


def folder_or_none(where: Callable[[], Path]) -> Path | None:
    """A cache folder, or None where there is none (``cache_root`` raises OSError without a home folder)."""
    try:
        return where()
    except OSError:
        return None


def engine_cache_dir(options: Any, default: Callable[[], Path]) -> Path:
    """Where an engine keeps what it compiled: ``engine_cache`` when set (``~`` expanded, as a shell
    would), else the engine's ``default()`` (called only then: ``cache_root`` raises OSError without a
    home folder). One rule for every backend, so that the option means the same on each."""
    return user_path(options.engine_cache) if options.engine_cache else default()


def dist_version(name: str) -> str:
    """An installed distribution's version ("unknown" if absent): a cache key part."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def model_digest(path: Path, extras: list[Path] | None = None) -> str:
    """sha256 of a model file and of every external-data file it names (an ONNX model saved with its
    weights beside it: a retrained model may change only those), so that a cache keyed by it (compiled
    modules, engines, ``auto``'s decisions) never serves an old network's weights. ``extras``: those files,
    where the caller has just listed them (``external_data_files`` parses the whole model)."""
    unreadable = unreadable_reason(path, "model file")
    if unreadable is not None:  # a FIFO would block the hash for ever: refused as every reader of models does
        raise ModuleError(unreadable)
    extras = external_data_files(path) if extras is None else extras
    return _MEMO.get("digest", [path, *extras], lambda: _digest(path, extras))


def _digest(path: Path, extras: list[Path]) -> str:
    h = hashlib.sha256()
    _hash_file(h, path)
    for extra in extras:
        h.update(f"\0{extra.name}\0".encode())
        if extra.is_file():
            _hash_file(h, extra)
    return h.hexdigest()


RACY_S = 2.0  # a file changed this recently is read again each time: a rewrite within one timestamp tick keeps its state


class _FileMemo:
    """What a job computes from a model file's bytes (its sha256, the ONNX external-data files it names), kept by
    the files' state (device, inode, size, modification and change times): the same file was hashed up to once per
    stream and once per user (the engine's load, ``auto``'s decision key, IREE's compiled check and load), and
    ONNX's protobuf parsed for its external data as often. A 200 MB ONNX model on 4 streams spent 2.9 s of a 10.6 s
    begin_job there (2026-12-08, load 6 on 2 cores): now once. As git's racily clean entries, a file whose state
    changed within ``RACY_S`` of the read is not kept: a rewrite in the same tick could keep size and times."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[tuple[str, str], tuple[list[tuple[int, ...] | None], Any]] = {}
        self._computing: dict[tuple[str, str], threading.Lock] = {}  # one computation per file at a time (streams)

    def get(self, kind: str, files: list[Path], compute: Callable[[], Any]) -> Any:
        key = (kind, os.path.realpath(files[0]))
        with self._lock:
            busy = self._computing.setdefault(key, threading.Lock())
        with busy:  # the job's streams load together: the first computes, the others take its value
            before = _state(files)
            with self._lock:
                kept = self._kept.get(key)
            if kept is not None and kept[0] == before:
                return kept[1]
            value = compute()
            newest = max((max(st[3], st[4]) for st in before if st is not None), default=None)
            if None not in before and newest is not None and time.time_ns() - newest > RACY_S * 1e9 \
                    and _state(files) == before:
                with self._lock:
                    self._kept[key] = (before, value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._kept.clear()


_MEMO = _FileMemo()


class ModelChanged(ModuleError):
    """A model file changed while an engine loaded it (``loaded_digest``): no other engine can be tried on it."""


def loaded_digest(path: Path, load: Callable[[], Any]) -> str:
    """``model_digest`` of the bytes ``load`` read from ``path``: the digest is taken before the load, with the
    files' state (device, inode, size, modification and change times); a state changed after the load (a file
    replaced or rewritten) is refused unless the bytes hash as before (a concurrent job refreshing a shared import
    cache with ``os.replace``, an rsync, a ``touch``: the same network either way), since the digest would then not
    be known to be of the network that runs. Read at the end of begin_job alone, it named whatever file was there
    by then (a retrain writing it). Not told apart: a file rewritten with other bytes and back to the hashed ones
    within one load (A-B-A), which would need the engines to load the very bytes hashed."""
    if not path.is_file():  # a FIFO or a missing file: the engine's load says so in its own words first
        load()
        return model_digest(path)
    extras = external_data_files(path)
    files = [path, *extras]
    before = _state(files)
    digest = model_digest(path, extras)  # the files whose state was taken: the model parsed once
    load()
    if _state(files) != before and model_digest(path) != digest:
        raise ModelChanged(f"model file {path} changed while it was loaded (replaced or rewritten): the network that "
                          f"runs is not known; start the job again once the file is written")
    return digest


def _state(files: list[Path]) -> list[tuple[int, ...] | None]:
    """What tells a file rewritten or replaced: device, inode, size, modification and change times (None: absent)."""
    out: list[tuple[int, ...] | None] = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return out


def _hash_file(h: Any, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def external_data_files(path: Path) -> list[Path]:
    """The files an ONNX model keeps tensors in (``location`` entries, relative to the model's folder),
    read without loading them; none for another format, or where ``onnx`` is not installed."""
    if path.suffix != ".onnx":
        return []
    return list(_MEMO.get("external", [path], lambda: _external_data_files(path)))


def _external_data_files(path: Path) -> list[Path]:
    try:
        import onnx
    except ImportError:
        return []
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not a model the engines could read either: they say so, in their own words
        return []
    locations = {entry.value for tensor in _tensors(model.graph) if tensor.data_location == onnx.TensorProto.EXTERNAL
                 for entry in tensor.external_data if entry.key == "location"}
    return [path.parent / loc for loc in sorted(locations)]


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of a graph: initializers and node attributes, subgraphs (If, Loop, Scan) included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)
