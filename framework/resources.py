"""Where relative file names are looked up: the working directory, then hltrun's shipped files.

Like cmsRun, a relative path is relative to the working directory. When nothing is there and the
path starts with one of the shipped folders (``configs/``, ``data/``), it is looked up once more in
the installed package (``hltrun.configs``, ``hltrun.data``, through ``importlib.resources``), so
``hltrun configs/path.yaml`` and the ``data/...`` names inside it work from any directory, from a
checkout (editable install) or a wheel alike. One rule, used by the configuration reader, the
source, the scorer and the filter.
"""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from .errors import ConfigError, FileOpenError, HltError

SHIPPED = ("configs", "data")  # checkout folders installed as hltrun.<name>


@lru_cache(maxsize=None)
def shipped_dir(name: str) -> Path:
    """The folder of the shipped package ``hltrun.<name>`` (a real directory: hltrun is never zipped)."""
    return Path(str(files(f"hltrun.{name}")))


def shipped_path(relative: str | Path) -> Path | None:
    """``configs/x.yaml`` → the installed ``hltrun.configs`` folder's ``x.yaml`` (None: not a shipped name)."""
    parts = Path(relative).parts
    if len(parts) < 2 or parts[0] not in SHIPPED:
        return None
    return shipped_dir(parts[0]).joinpath(*parts[1:])


def user_path(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` (or ``~user``) expanded, as a shell would have done. A path in the
    YAML file or in an override (``modules.out.file=~/o.root``: no shell expands that word) means the
    home folder; taken literally it made a folder named ``~`` in the working directory. A local
    ``file://`` URL is its path (``local_file_url``). A relative name that starts with ``file:`` after that
    (``./file:o.root``, a file named so) is made absolute: as a Path it loses its ``./``, and the next
    ``user_path`` of it read ``file:`` as CMSSW's prefix (an output asked for as ./file:o.root was o.root)."""
    found = Path(os.path.expanduser(local_file_url(path) or path))
    return Path(os.path.abspath(found)) if os.fspath(found)[:5].lower() == "file:" else found


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # root://host//f.root, https://..., s3://...
_FILE_URL = re.compile(r"//(localhost)?(/.*)", re.IGNORECASE | re.DOTALL)  # RFC 8089: no host is this one


def local_file_url(path: str | os.PathLike[str]) -> str | None:
    """The local path a ``file:`` name gives: ``file:///abs/f.root`` and ``file://localhost/abs/f.root``
    (URLs, as uproot reads them), ``file:/abs/f.root`` and ``file:f.root`` (CMSSW's prefix of a local
    file, as cmsRun configurations and file lists write it); else None. One rule for reading and writing
    alike, the path taken as written (no %-decoding, as uproot); ``file://otherhost/...`` stays remote."""
    text = os.fspath(path)
    if not isinstance(text, str) or text[:5].lower() != "file:":
        return None
    rest = text[5:]
    if rest.startswith("//"):
        match = _FILE_URL.fullmatch(rest)
        return match.group(2) if match else None
    return rest or None


def remote_url(path: str | os.PathLike[str]) -> str | None:
    """``path`` when it is a URL (``root://host//store/f.root``, ``https://...``), as written; else None.
    hltrun has no remote reader wired in (no XRootD, no fsspec-http): taken as a local name, the URL
    lost a slash of each ``//`` and read as "not found: root:/host/...". Ask before making it a Path.
    A local ``file://`` URL is no remote one (``local_file_url``)."""
    text = os.fspath(path)
    return text if isinstance(text, str) and _URL.match(text) and local_file_url(text) is None else None


def local_output_path(text: str) -> Path:
    """argparse ``type`` of every place a tool writes (--json, --csv, --out, --plots, --out-dir...): a remote
    URL is refused on the raw text, in argparse's one error line, before ``Path`` folds its ``//``
    (``root://h//x`` would become the local ``root:/h/x``)."""
    import argparse

    if remote_url(text) is not None:
        raise argparse.ArgumentTypeError(f"{text} is a remote URL; the tools write local files only: write to a "
                                         "local path and copy it (xrdcp, curl)")
    return Path(local_file_url(text) or text)


def refuse_remote_destination(path: str | os.PathLike[str] | None, what: str) -> None:
    """A URL where hltrun writes (an output file, the report folder): taken as a local name it would lose a
    slash of each ``//`` and land in ``./root:/...``; ValueError (a parameter check's error) naming it."""
    if path is not None and remote_url(path) is not None:
        raise ValueError(f"{what}: {os.fspath(path)} is a remote URL; hltrun writes local files only: write to a "
                         "local path and copy it (xrdcp, curl)")


def find_file(path: str | Path, what: str = "file", error: type[HltError] = ConfigError) -> Path:
    """``path`` if it exists (or is absolute), else the shipped file of that name if it exists, else
    ``path`` unchanged (so the caller's "not found" error names what the user wrote). A URL raises
    ``error`` naming ``what`` and the URL intact: hltrun reads local files only."""
    url = remote_url(path)
    if url is not None:
        raise error(f"{what} {url} is a remote URL; hltrun reads local files only (no XRootD or HTTP reader): "
                    f"copy it to a local disk first (xrdcp, curl) and give that path")
    given = user_path(path)
    if given.is_absolute() or given.exists():
        return given
    shipped = shipped_path(given)
    return shipped if shipped is not None and shipped.exists() else given


def beside_config(line: str, config: str | Path | None) -> str:
    """A hint for an error line that names a relative file not found (``model file not found: m.onnx``) when
    the configuration given from another folder has that file beside it: names are relative to the working
    directory, as cmsRun's, and a user who keeps a model beside their own YAML and runs it from elsewhere read
    only "not found" about a file they could see. "" when it does not apply."""
    match = re.search(r"not found: ([^\s()]+)", line)
    if match is None or config is None:
        return ""
    name, folder = Path(match.group(1)), Path(config).parent
    try:
        here = folder.resolve() == Path.cwd().resolve()
    except OSError:  # the working directory was removed (os.getcwd fails): a hint must not cost the error line
        here = False
    if name.is_absolute() or here or not (folder / name).exists():
        return ""
    return (f" (relative names are relative to the working directory, as in cmsRun: {folder / name} is beside the "
            f"configuration; give that path, or run from {folder})")


def glob_files(pattern: str, what: str = "input file", error: type[HltError] = FileOpenError) -> list[str]:
    """Sorted matches of a glob pattern (or the plain name), with the same fallback as ``find_file``
    (and its refusal of a URL, naming ``what``).

    A name that exists as written is that file, even when it holds glob characters (``a[1].root``,
    ``run*.root``): taken as a pattern, ``a[1].root`` matches ``a1.root`` or nothing."""
    literal = find_file(pattern, what, error)
    if not glob.has_magic(pattern) or os.path.lexists(literal):
        return [literal_name(str(literal))]
    pattern = str(user_path(pattern))
    matches = sorted(glob.glob(pattern))
    shipped = shipped_path(pattern) if not Path(pattern).is_absolute() else None
    if not matches and shipped is not None:
        matches = sorted(glob.glob(str(shipped)))
    return [literal_name(m) for m in matches]


def literal_name(name: str) -> str:
    """A found file's name as no reader can take for another: a relative name starting with ``file:`` (a file
    named ``file:foo.root``, found as ``./file:foo.root`` or by a glob) is ``./file:foo.root``. As the bare
    ``file:foo.root`` it was read as CMSSW's prefix of ``foo.root`` (by uproot too): "not found: foo.root"."""
    return os.path.join(os.curdir, name) if name[:5].lower() == "file:" else name


_SPECIAL = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
            (stat.S_ISSOCK, "a socket"))


def why_not_readable(path: str | Path, seeking: bool = True) -> str | None:
    """None when ``path`` is a regular file (through links); else why hltrun cannot read it, as the
    end of a sentence that names it. ROOT and model files are read by seeking (uproot, ONNX Runtime,
    the engine caches hash them whole), so a FIFO would block the job for ever and a device or a
    socket reads nothing useful: every reader of such files asks here first, before any library sees it.
    ``seeking=False``: a file read whole from its start (a JSON report), which a device such as /dev/zero
    never ends (read until memory runs out) and a FIFO without a writer blocks for ever; the reason
    says so instead of seeking."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except OSError as exc:
        return broken_link(path) or f"cannot be examined ({exc.strerror or type(exc).__name__})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    kind = next((name for test, name in _SPECIAL if test(mode)), "not a regular file")
    why = "it is read by seeking" if seeking else "it is read whole: a device may never end, a FIFO may never be written"
    return f"is {kind}, not a regular file ({why}: copy it into a file first)"


def broken_link(path: str | Path) -> str | None:
    """Why the symbolic link ``path`` leads nowhere, as the end of a sentence that names it ("is a symbolic link to
    /eos/m.onnx, which does not exist"); None where ``path`` is no link or its target is there. A link into an
    unmounted disk or a link loop was "model file not found" of a name ``ls`` lists."""
    try:
        if not os.path.islink(path):
            return None
        os.stat(path)
    except OSError as why:
        if why.errno == errno.ELOOP:
            return "is a symbolic link in a loop: Too many levels of symbolic links"
        if why.errno not in (errno.ENOENT, errno.ENOTDIR):  # there, but not to be looked at: EACCES in a folder
            return None  # the user may not enter (lxplus, AFS without a token), said by the caller as it is
        try:
            return f"is a symbolic link to {os.readlink(path)}, which does not exist"
        except OSError:
            return None
    return None


class NotRegularFile(ValueError):
    """A small file read whole (``read_regular_text``) that is a device, a FIFO or a folder; its text names the
    path and says why."""


def read_regular_text(path: str | Path) -> str:
    """The text of the small file ``path`` (a JSON card or report), read whole once it is known to be a regular
    file: FileNotFoundError where it is not there, NotRegularFile where it is no regular file. A link to
    /dev/zero was read until memory ran out (the kernel killed the job), a FIFO without a writer blocked the
    job for ever."""
    why = why_not_readable(path, seeking=False)
    if why == "not found":
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if why is not None:
        raise NotRegularFile(f"{path} {why}")
    return Path(path).read_text()


def unreadable_reason(path: str | Path, what: str = "file") -> str | None:
    """None when ``path`` is a regular file; else the whole sentence that says why, naming ``what`` it is
    and the path (``model file not found: m.onnx``, ``input file p.root is a FIFO, ...``), so that every
    reader reports a missing or unreadable file in the same words instead of rebuilding them. A web page
    saved under the file's name (``wget``/``curl`` of a link that answered with an error or login page) is
    said to be one: each library named it in its own words (``Protobuf parsing failed``, ``not a zip
    file``, ``File not found`` for a ``.keras`` that is there), none of them the cause."""
    why = why_not_readable(path)
    if why is None:
        return f"{what} {path} {WEB_PAGE}" if is_web_page(path) else None
    if why == "not found":
        link = broken_link(path)
        return f"{what} not found: {path}" + (f" ({path} {link})" if link else "")
    return f"{what} {path} {why}"


WEB_PAGE = ("is a web page (HTML), not the file itself: its download got a server's error or login page; "
            "download it again")
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")


def is_web_page(path: str | Path) -> bool:
    """Does the regular file ``path`` begin as an HTML document? No ROOT, ONNX, zip (``.keras``, ``.pt``),
    flatbuffer, JSON or YAML file does (a BOM and white space before the first tag are skipped)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_STARTS)
