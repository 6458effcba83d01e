"""Where hltrun writes and how (issue 23, items 1-3 and 9): framework/destinations.py's policy and
framework/atomic.py's writing, through the real CLI.

* special files: a character device (``/dev/full``, ``/dev/null``) or a FIFO is written in place and
  stays what it was, a symlink stays a link and its target is replaced, a socket or a block device is
  refused before the first event, stdout (``/dev/stdout``) gets the bytes after what was printed there;
* a full disk, real (a filled tmpfs, where mounting is permitted) and injected (every written byte goes
  through ``hltrun.framework.atomic._raw``; the fake keeps write(2)'s contract: it writes what fits, returns
  that count, then raises ENOSPC): exit 4, one line naming the file, no temporary left, and the file
  (or report set) that was there before untouched.

These tests run as root in CI, as many containers do: a rename over a device node succeeds there.
So every special file written is made inside the test's folder (device nodes with mknod, a link to
/proc/self/fd/1 for /dev/stdout), never the machine's own /dev: a regression must break only the test.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import uproot

import hltrun.framework.atomic
from hltrun.framework.atomic import writing
from hltrun.framework.cli import main
from hltrun.framework.destinations import check_file_destination, destination
from hltrun.framework.errors import HltError, ModuleError
from hltrun.framework.interrupt import Interrupted, handle_signals, signals_held

JOB = """
process: DEST
source: {{type: TestCountingSource, n: {n}}}
modules:
  even: {{type: TestModuloFilter, divisor: 2}}
  {output}
paths: {{p: [even]}}
{endpath}
services: {{Timing: {{}}}}
"""
OUTPUT = "out: {type: RootOutputModule, file: __OUT__, basket_events: 3}"


@pytest.fixture(autouse=True)
def system_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system's temporary folder (where a destination written in place is staged), inside the
    test's folder, so that a temporary left there is seen."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _job(tmp_path: Path, out: Path | str | None = None, n: int = 40) -> Path:
    cfg = tmp_path / "job.yaml"
    output = OUTPUT.replace("__OUT__", str(out)) if out is not None else ""
    cfg.write_text(JOB.format(n=n, output=output, endpath="endpaths: {e: [out]}" if out is not None else ""))
    return cfg


def _run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """The CLI in this process: exit code, stdout, stderr's lines that are not informational."""
    code = main([*argv])
    out, err = capfd.readouterr()
    assert "Traceback" not in err, err
    return code, out, [line for line in err.splitlines() if "error" in line]


def _temporaries(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob("*") if p.name.endswith(".tmp")]


def _mknod(path: Path, kind: int, major: int, minor: int) -> Path:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD (root in CI)")
    return path


def _char_device(path: Path, name: str) -> Path:
    """A node of the kernel's /dev/null (1, 3) or /dev/full (1, 7), made in the test's folder."""
    return _mknod(path, stat.S_IFCHR, 1, {"null": 3, "full": 7}[name])


def _is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


# ------------------------------------------------------------------ the policy, one kind at a time

def test_each_kind_of_destination_is_classified(tmp_path: Path) -> None:
    regular = tmp_path / "r.xml"
    regular.write_text("x")
    (tmp_path / "link").symlink_to(regular)
    (tmp_path / "dangling").symlink_to(tmp_path / "later.xml")
    os.mkfifo(tmp_path / "fifo")
    new = destination(tmp_path / "new.xml", "w")
    assert (new.target, new.in_place) == (tmp_path / "new.xml", False)
    assert destination(regular, "w").target == regular and not destination(regular, "w").in_place
    link = destination(tmp_path / "link", "w")
    assert (link.target, link.in_place) == (regular, False)  # the temporary goes beside the target
    assert destination(tmp_path / "dangling", "w").target == tmp_path / "later.xml"
    fifo = destination(tmp_path / "fifo", "w")
    assert (fifo.in_place, fifo.fd) == (True, None)
    with pytest.raises(ModuleError, match=r"^w: .*/d is a folder, not a file name$"):
        (tmp_path / "d").mkdir()
        destination(tmp_path / "d", "w")


def test_a_descriptor_of_this_process_is_written_through(tmp_path: Path) -> None:
    """/dev/stdout, /dev/fd/N, /proc/self/fd/N and links to them name a descriptor of this process."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd here")
    with open(tmp_path / "log.txt", "wb") as fh:
        (tmp_path / "my-stdout").symlink_to(f"/proc/self/fd/{fh.fileno()}")
        names = [f"/proc/self/fd/{fh.fileno()}", f"/dev/fd/{fh.fileno()}", tmp_path / "my-stdout"]
        for name in names:
            dest = destination(name, "w")
            assert (dest.in_place, dest.fd) == (True, fh.fileno()), name
    if os.path.islink("/dev/stdout"):
        assert destination("/dev/stdout", "w").fd == 1


def test_sockets_and_block_devices_are_refused(tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        with pytest.raises(ModuleError, match=r"^--job-report: .*/sock is a socket; hltrun writes regular files"):
            check_file_destination(tmp_path / "sock", "--job-report")
    finally:
        sock.close()
    block = _mknod(tmp_path / "loop", stat.S_IFBLK, 7, 0)
    with pytest.raises(ModuleError, match="is a block device"):
        check_file_destination(block, "modules.out.file")


def test_a_writer_that_needs_a_regular_file_refuses_a_fifo(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ModuleError, match="^services.Memory.memray: .*fifo is not a regular file"):
        check_file_destination(tmp_path / "fifo", "services.Memory.memray", in_place=False)


def test_a_destination_that_became_a_fifo_during_the_job_is_not_renamed_over(tmp_path, system_tmp) -> None:
    """The policy holds at the rename too: a long job's output may have been replaced meanwhile."""
    path = tmp_path / "o.xml"
    with writing(path, "w") as staged:
        with staged.open() as fh:
            fh.write(b"<done/>")
        os.mkfifo(path)  # after begin_job's check, before the end
        reader, got = _fifo_reader(path)
    reader.join(60)  # a guard against a hang only
    assert stat.S_ISFIFO(os.lstat(path).st_mode) and got == [b"<done/>"]
    assert not _temporaries(tmp_path)


# ------------------------------------------------------------------ special files, through the CLI

@pytest.mark.parametrize("flag", ["output", "job report"])
def test_dev_full_fails_in_one_line_and_stays_a_device(flag, tmp_path, system_tmp, capfd) -> None:
    full = _char_device(tmp_path / "full", "full")
    argv = [str(_job(tmp_path, full))] if flag == "output" else [str(_job(tmp_path)), "-j", str(full)]
    code, out, errors = _run(capfd, *argv)
    assert code == 4
    assert len(errors) == 1 and f"cannot write {full} (No space left on device)" in errors[0], errors
    assert "TrigReport" not in out  # asked at begin_job (a write of no bytes): it failed after the whole job
    assert _is_char_device(full)
    assert not _temporaries(tmp_path, system_tmp)


def test_dev_null_takes_the_output_and_the_job_report(tmp_path, capfd) -> None:
    null = _char_device(tmp_path / "null", "null")
    code, _, errors = _run(capfd, str(_job(tmp_path, null)), "-j", str(null))
    assert (code, errors) == (0, [])
    assert _is_char_device(null)


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            got.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader, got


@pytest.mark.parametrize("flag", ["output", "job report"])
def test_a_fifo_reader_receives_the_file(flag, tmp_path, system_tmp, capfd) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader, got = _fifo_reader(fifo)
    argv = [str(_job(tmp_path, fifo))] if flag == "output" else [str(_job(tmp_path)), "-j", str(fifo)]
    code, _, errors = _run(capfd, *argv)
    reader.join(60)  # a guard against a hang only: the writer has closed the FIFO when main returns
    assert (code, errors) == (0, [])
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert len(got) == 1
    if flag == "output":
        assert uproot.open(io.BytesIO(got[0]))["Events"].num_entries == 40
    else:
        assert ET.fromstring(got[0]).tag == "FrameworkJobReport"
    assert not _temporaries(tmp_path, system_tmp)


def test_a_symlink_stays_a_link_and_its_target_is_replaced(tmp_path, capfd) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("o.root", "fjr.xml"):
        (elsewhere / name).write_text("old")
        (tmp_path / name).symlink_to(elsewhere / name)
    code, _, errors = _run(capfd, str(_job(tmp_path, tmp_path / "o.root")), "-j", str(tmp_path / "fjr.xml"))
    assert (code, errors) == (0, [])
    for name in ("o.root", "fjr.xml"):
        assert (tmp_path / name).is_symlink() and os.readlink(tmp_path / name) == str(elsewhere / name)
    assert uproot.open(elsewhere / "o.root")["Events"].num_entries == 40
    assert ET.parse(elsewhere / "fjr.xml").getroot().tag == "FrameworkJobReport"
    assert not _temporaries(tmp_path)


@pytest.mark.parametrize("flag", ["output", "job report"])
def test_a_socket_is_refused_before_the_first_event(flag, tmp_path, capfd) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        path = tmp_path / "sock"
        argv = [str(_job(tmp_path, path))] if flag == "output" else [str(_job(tmp_path)), "-j", str(path)]
        code, out, errors = _run(capfd, *argv)
    finally:
        sock.close()
    assert code == 4
    assert len(errors) == 1 and f"{path} is a socket" in errors[0], errors
    assert "TrigReport" not in out  # refused at begin_job: no event was read
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_stdout_gets_the_job_report_after_the_printed_report(tmp_path, capfd) -> None:
    """``-j /dev/stdout`` with stdout a regular file (here pytest's capture; ``> log.txt`` in a shell):
    the report is written after the text already printed, and the file is not renamed over. The link
    is made as /dev/stdout is, in the test's folder: a regression must not replace the machine's."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no /proc/self/fd here")
    stdout = tmp_path / "stdout"
    stdout.symlink_to("/proc/self/fd/1")
    code, out, errors = _run(capfd, str(_job(tmp_path)), "-j", str(stdout))
    assert (code, errors) == (0, [])
    text, _, xml = out.partition("<FrameworkJobReport>")
    assert "TrigReport Events total = 40" in text  # what was printed before is still there
    assert ET.fromstring("<FrameworkJobReport>" + xml).tag == "FrameworkJobReport"
    assert stdout.is_symlink()


# ------------------------------------------------------------------ read-only -j target (item 9)

def _mount_tmpfs(where: Path, options: str) -> None:
    """Mount a tmpfs on ``where``, or skip the test saying why it cannot be done here."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if done.returncode:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")


@pytest.fixture()
def read_only_folder(tmp_path: Path):
    """A folder nobody may write into: chmod 555 for a user, a read-only tmpfs for root."""
    where = tmp_path / "read-only"
    where.mkdir()
    if os.geteuid() != 0:
        where.chmod(0o555)
        yield where
        where.chmod(0o755)
        return
    _mount_tmpfs(where, "ro,size=64k")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_read_only_job_report_target_is_said_once(tmp_path, read_only_folder, capfd) -> None:
    code, _, errors = _run(capfd, str(_job(tmp_path)), "-j", str(read_only_folder / "fjr.xml"))
    assert code == 4
    assert len(errors) == 1, errors
    assert f"--job-report: cannot write into {read_only_folder}" in errors[0]


# ------------------------------------------------------------------ a real full disk (items 2, 3)

@pytest.fixture()
def full_disk(tmp_path: Path):
    """A 256 KiB tmpfs; ``fill()`` it once the files that were there before are in place."""
    where = tmp_path / "disk"
    where.mkdir()
    _mount_tmpfs(where, "size=256k")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def _fill(folder: Path) -> None:
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _previous_files(folder: Path, names: list[str]) -> dict[Path, bytes]:
    """Good files from an earlier run, which a failed write must leave as they are."""
    before = {}
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"previous {name}\n".encode())
        before[path] = path.read_bytes()
    return before


CASES = {  # what is written to the full disk -> (files there before, command line, the path named)
    "output": (["o.root"], lambda t, d: [str(_job(t, d / "o.root"))], "modules.out.file: cannot write {d}/o.root"),
    "job report": (["fjr.xml"], lambda t, d: [str(_job(t)), "-j", str(d / "fjr.xml")],
                   "--job-report: cannot write {d}/fjr.xml"),
    "report folder": (["rep/hltrun.json", "rep/resources.json"], lambda t, d: [str(_job(t)), "--report-dir", str(d / "rep")],
                      "report folder (--report-dir / options.reportDir): cannot write {d}/rep/hltrun.json"),
}


@pytest.mark.parametrize("what", list(CASES))
def test_a_full_disk_fails_in_one_line_and_leaves_what_was_there(what, tmp_path, full_disk, capfd) -> None:
    names, argv, message = CASES[what]
    before = _previous_files(full_disk, names)
    _fill(full_disk)
    code, _, errors = _run(capfd, *argv(tmp_path, full_disk))
    assert code == 4
    assert len(errors) == 1 and message.format(d=full_disk) in errors[0], errors
    assert "No space left on device" in errors[0]
    assert not _temporaries(tmp_path)
    left = {p: p.read_bytes() for p in full_disk.rglob("*") if p.is_file() and p.name != "filler"}
    assert left == before


@pytest.mark.parametrize("what", list(CASES))
def test_a_full_disk_under_an_output_is_said_before_the_first_event(what, tmp_path, full_disk, capfd) -> None:
    """The output's, the job report's and the report set's folder get a block written into a throw-away file at
    begin_job: a full disk showed only when the output's first basket, the job report or the report set was
    written, after the events."""
    _, argv, message = CASES[what]
    _fill(full_disk)
    code, out, errors = _run(capfd, *argv(tmp_path, full_disk))
    assert code == 4
    assert len(errors) == 1 and f"{message.format(d=full_disk)} (No space left on device)" in errors[0], errors
    assert "TrigReport" not in out
    assert not _temporaries(tmp_path)


@pytest.mark.parametrize("what", list(CASES))
def test_a_file_system_that_refuses_at_the_sync_is_said_before_the_first_event(what, tmp_path, monkeypatch,
                                                                               capfd) -> None:
    """A file system that allocates late (NFS over its quota) takes the writes and refuses at the sync: the
    output and the job report failed only at their commit, after the whole job. Its fsync refused for every
    file in one folder, as such a mount does."""
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    sync = os.fsync

    def fsync(fd: int) -> None:
        if nfs in Path(os.readlink(f"/proc/self/fd/{fd}")).parents:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        sync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    _, argv, message = CASES[what]
    code, out, errors = _run(capfd, *argv(tmp_path, nfs))
    assert code == 4
    assert len(errors) == 1 and f"{message.format(d=nfs)} ({os.strerror(errno.EDQUOT)})" in errors[0], errors
    assert "TrigReport" not in out
    assert not _temporaries(tmp_path)
    assert list(nfs.iterdir()) == []


# ------------------------------------------------------------------ an injected full disk

class FullDisk:
    """A file system that fills up: the first ``after`` files written fit, then ``free`` bytes are left.
    Every file framework/atomic.py writes goes through ``raw``; its ``write`` keeps write(2)'s contract
    on a full disk: it writes what fits and returns that count; with nothing left it raises ENOSPC."""

    def __init__(self, free: int, after: int = 0) -> None:
        self.free, self.after, self.opened, self.refused = free, after, 0, 0

    def raw(self, file: str | int, mode: str) -> io.FileIO:
        disk = self
        limited = self.opened >= self.after
        self.opened += 1

        class Raw(io.FileIO):
            def write(self, data) -> int:  # noqa: ANN001 - bytes-like, as io.FileIO.write
                if not limited:
                    return super().write(data)
                view = memoryview(data).cast("B")
                if view.nbytes and not disk.free:
                    disk.refused += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                n = super().write(view[:disk.free])
                disk.free -= n
                return n

        return Raw(file, mode)


def _inject(monkeypatch: pytest.MonkeyPatch, disk: FullDisk) -> FullDisk:
    monkeypatch.setattr(hltrun.framework.atomic, "_raw", disk.raw)
    return disk


def test_output_fills_the_disk_mid_job(tmp_path, monkeypatch, capfd) -> None:
    out = tmp_path / "o.root"
    before = _previous_files(tmp_path, ["o.root"])
    disk = _inject(monkeypatch, FullDisk(free=6000))  # the file's header fits, a later basket does not
    code, out_text, errors = _run(capfd, str(_job(tmp_path, out, n=2000)))
    assert disk.refused and code == 4
    assert len(errors) == 1 and f"modules.out.file: cannot write {out} (No space left on device)" in errors[0]
    assert "TrigReport" in out_text  # it failed on an event, not at begin_job
    assert not _temporaries(tmp_path)
    assert out.read_bytes() == before[out]


def test_job_report_fills_the_disk(tmp_path, monkeypatch, capfd) -> None:
    fjr = tmp_path / "fjr.xml"
    before = _previous_files(tmp_path, ["fjr.xml"])
    disk = _inject(monkeypatch, FullDisk(free=100))
    code, _, errors = _run(capfd, str(_job(tmp_path)), "-j", str(fjr))
    assert disk.refused and code == 4
    assert errors == [f"hltrun: error: --job-report: cannot write {fjr} (No space left on device)"]
    assert not _temporaries(tmp_path)
    assert fjr.read_bytes() == before[fjr]


@pytest.mark.parametrize("after", range(4), ids=["resources.json", "hltrun.json", "timing.root", "report.html"])
def test_report_folder_is_written_whole_or_not_at_all(after, tmp_path, monkeypatch, capfd) -> None:
    """The disk fills while the report set's first, second, ... file is written: the folder keeps the
    previous set, with no file of the new one (item 3: it was rc 1, no path, a partial folder)."""
    pytest.importorskip("matplotlib")  # report.html is the fourth file
    rep = tmp_path / "rep"
    before = _previous_files(rep, ["hltrun.json", "resources.json", "report.html", "timing.root"])
    disk = _inject(monkeypatch, FullDisk(free=10, after=after))
    code, _, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
    assert disk.refused and code == 4
    assert len(errors) == 1 and "report folder (--report-dir / options.reportDir): cannot write" in errors[0]
    assert f"{rep}/" in errors[0] and "(No space left on device)" in errors[0]
    assert {p: p.read_bytes() for p in rep.iterdir()} == before


SET = ["hltrun.json", "resources.json", "timing.root"]


@pytest.mark.parametrize("link", ["to nowhere", "in a loop"])
@pytest.mark.parametrize("option", ["--report-dir", "hltcard --out-dir"])
def test_a_folder_that_is_a_broken_link_is_said_to_be_one(link, option, tmp_path, capfd) -> None:
    """``rep -> /eos/user/a/rep`` with EOS not mounted (or a link loop) as the report folder, or hltcard's
    --out-dir: mkdir said only ``cannot write into rep (File exists)`` of a folder that is not there."""
    rep = tmp_path / "rep"
    if link == "to nowhere":
        rep.symlink_to(tmp_path / "eos" / "rep")
        why = f"{rep} is a symbolic link to {tmp_path / 'eos' / 'rep'}, which does not exist"
    else:
        rep.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(rep)
        why = f"{rep} is a symbolic link in a loop: Too many levels of symbolic links"
    if option == "--report-dir":
        code, out, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
        assert code == 4 and "TrigReport" not in out
        assert errors == [f"hltrun: error: report folder (--report-dir / options.reportDir): cannot write into "
                          f"{rep} ({why})"]
    else:
        from hltrun.tools.physics.card import main as hltcard

        shipped = Path(__file__).resolve().parents[1] / "data"
        code = hltcard([str(shipped / "models" / "conv_vae.onnx"), "--background", str(shipped / "qcd_dijet.root"),
                        "--max-events", "20", "--no-plots", "--out-dir", str(rep)])
        assert code == 4
        assert capfd.readouterr().err.strip() == f"hltcard: error: --out-dir: cannot write into {rep} ({why})"
    assert not (tmp_path / "eos").exists()


def test_a_device_in_the_report_folder_is_refused_before_the_first_event(tmp_path, capfd) -> None:
    """``ln -s /dev/full rep/report.html``: the new hltrun.json, resources.json and timing.root were
    renamed into place, then report.html failed (exit 4): a folder of half the new set. A set is
    renamed into place whole, so a FIFO or device member is refused before the first event."""
    rep = tmp_path / "rep"
    before = _previous_files(rep, SET)
    (rep / "report.html").symlink_to(_char_device(tmp_path / "full", "full"))
    code, out, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
    assert code == 4 and "TrigReport" not in out
    assert errors == [f"hltrun: error: report folder (--report-dir / options.reportDir): cannot write "
                      f"{rep}/report.html: it is not a regular file (a FIFO, a device or a link to one), and "
                      f"the report set is renamed into place whole; remove it"]
    assert {p: p.read_bytes() for p in rep.iterdir() if p.name != "report.html"} == before
    assert (rep / "report.html").is_symlink() and _is_char_device(tmp_path / "full")
    assert not _temporaries(tmp_path)


def test_a_fifo_as_the_score_histograms_file_is_refused_before_the_first_event(tmp_path, capfd) -> None:
    """scores.root (the trigger filters' score histograms, new in the set) was not among the set's names: a
    FIFO there was found only when written, after the whole job, the rest of the set already in place."""
    from hltrun.framework.destinations import REPORT_SET_NAMES
    from hltrun.framework.report.root_histograms import SCORES_FILE

    assert SCORES_FILE in REPORT_SET_NAMES
    rep = tmp_path / "rep"
    rep.mkdir()
    os.mkfifo(rep / SCORES_FILE)
    code, out, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
    assert code == 4 and "TrigReport" not in out
    assert errors and f"{SCORES_FILE}: it is not a regular file" in errors[0]
    assert stat.S_ISFIFO(os.lstat(rep / SCORES_FILE).st_mode) and not (rep / "hltrun.json").exists()


def test_a_fifo_under_a_configured_report_name_is_refused_before_the_first_event(tmp_path, capfd) -> None:
    """services.Timing.resources_json names one of the set's files: a FIFO there is refused up front, not after
    a whole job (the names come from the services, not from a fixed list)."""
    from hltrun.framework.destinations import REPORT_SET_NAMES
    from hltrun.framework.report.root_histograms import FILE_NAME

    assert FILE_NAME in REPORT_SET_NAMES
    rep = tmp_path / "rep"
    rep.mkdir()
    os.mkfifo(rep / "my.json")
    cfg = _job(tmp_path)
    cfg.write_text(cfg.read_text().replace("Timing: {}", "Timing: {resources_json: my.json}"))
    code, out, errors = _run(capfd, str(cfg), "--report-dir", str(rep))
    assert code == 4 and "TrigReport" not in out
    assert errors and "my.json: it is not a regular file" in errors[0]


def test_the_users_own_fifo_in_the_report_folder_is_left_alone(tmp_path, capfd) -> None:
    """Only the report set's own names are refused before the first event: a FIFO of the user's beside them
    (``--report-dir .`` in a folder with a pipe) is none of the set's business."""
    rep = tmp_path / "rep"
    rep.mkdir()
    os.mkfifo(rep / "my.pipe")
    code, out, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
    assert code == 0 and errors == [] and (rep / "hltrun.json").is_file() and stat.S_ISFIFO(os.lstat(rep / "my.pipe").st_mode)


def test_a_member_that_became_a_device_during_the_job_leaves_the_previous_set(tmp_path, monkeypatch, capfd) -> None:
    """The same, when the device appears after the check (a long job): every file of the set is
    looked at, flushed and synced before the first rename, so the previous set stays whole."""
    rep = tmp_path / "rep"
    before = _previous_files(rep, SET)
    (rep / "timing.root").unlink()
    import hltrun.framework.report.files as report_files

    original = report_files.write_timing_root

    def becomes_a_device(report_dir, timing, *marks):  # noqa: ANN001, ANN002, ANN202 - hltrun.json and resources.json are staged
        _char_device(report_dir / "timing.root", "full")
        return original(report_dir, timing, *marks)

    monkeypatch.setattr(report_files, "write_timing_root", becomes_a_device)
    code, out, errors = _run(capfd, str(_job(tmp_path)), "--report-dir", str(rep))
    assert code == 4 and "TrigReport" in out
    assert len(errors) == 1 and f"cannot write {rep}/timing.root: it is not a regular file" in errors[0]
    del before[rep / "timing.root"]
    assert {p: p.read_bytes() for p in rep.iterdir() if p.name != "timing.root"} == before
    assert _is_char_device(rep / "timing.root") and not _temporaries(tmp_path)


def test_a_set_is_synced_before_its_first_rename(tmp_path, monkeypatch) -> None:
    """A full disk that shows only at fsync (a file system allocating late): no file of the set is
    renamed, the previous set stays."""
    before = _previous_files(tmp_path, ["a", "b"])
    synced = []

    def fsync(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ModuleError, match=r"^w: cannot write .*/b \(No space left on device\)$"):
        with hltrun.framework.atomic.together():
            hltrun.framework.atomic.write_text(tmp_path / "a", "new a", "w")
            hltrun.framework.atomic.write_text(tmp_path / "b", "new b", "w")
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.name != "system-tmp"} == before
    assert not _temporaries(tmp_path)


# ------------------------------------------------------------------ the renames of a set are not cut

def test_a_signal_waits_for_the_last_rename_of_a_set() -> None:
    """While a set of files is renamed into place, a signal is held until the step ends (without
    this, Ctrl-C between two renames would leave half a report set)."""
    steps = []
    with handle_signals(), pytest.raises(Interrupted):
        with signals_held():
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs at once, in this thread
            steps.append("renamed the rest")
    assert steps == ["renamed the rest"]


# ------------------------------------------------------------------ stdout itself cannot take the reports

@pytest.mark.parametrize("stdout", ["closed", "full"])
@pytest.mark.parametrize("dump", [False, True])
def test_stdout_closed_or_full_is_one_line_not_an_internal_error(stdout, dump, tmp_path, monkeypatch, capfd) -> None:
    """``hltrun cfg >&-`` (Python's sys.stdout is None) and ``hltrun cfg > /dev/full``: exit 4, one line
    naming stdout (it used to be ``internal error: AttributeError`` / ``OSError``, exit 1)."""
    if stdout == "closed":
        monkeypatch.setattr("sys.stdout", None)
    else:
        full = open(_char_device(tmp_path / "full", "full"), "w")
        monkeypatch.setattr("sys.stdout", full)
    argv = [str(_job(tmp_path)), *(["--dump"] if dump else [])]
    try:
        code = main(argv)
    finally:
        if stdout == "full":
            full.buffer.raw.close()  # what it still buffers would fail again at garbage collection
    err = capfd.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    reason = "stdout is closed" if stdout == "closed" else "No space left on device"
    what = "the configuration" if dump else "the reports"
    errors = [line for line in err.splitlines() if "error" in line]
    assert (code, errors) == (4, [f"hltrun: error: stdout: cannot print {what} ({reason})"])


# ------------------------------------------------------------------ names near the 255-byte limit

@pytest.mark.parametrize("name", ["o" * 250 + ".root", "é" * 125 + "o.xml"], ids=["ascii-255", "utf8-255"])
def test_a_file_name_of_255_bytes_is_written_not_refused_for_its_temporary(name, tmp_path) -> None:
    """The temporary (``<name>.<random>.tmp``) used to exceed the limit the destination's own name is
    within: ``cannot write into <folder> (File name too long)`` for a valid file name."""
    assert len(name.encode()) == 255
    target = tmp_path / name
    hltrun.framework.atomic.write_bytes(target, b"x", "modules.out.file")
    assert target.read_bytes() == b"x" and not _temporaries(tmp_path)
    with writing(target, "modules.out.file", suffix=".root") as staged:  # a writer choosing its format by suffix
        assert len(staged.tmp.name.encode()) <= 255 and staged.tmp.name.endswith(".tmp.root")
        staged.tmp.write_bytes(b"y")
    assert target.read_bytes() == b"y" and not _temporaries(tmp_path)


def test_fit_name_never_cuts_a_character() -> None:
    from hltrun.framework.destinations import fit_name

    assert fit_name("short", 100) == "short"
    assert fit_name("é" * 10, 5) == "éé"  # 4 bytes: the third é would need 6
    assert fit_name("o" * 300, 255) == "o" * 255


# ------------------------------------------------------------------ ~ in a path no shell expanded

def test_tilde_in_the_yaml_or_an_override_means_the_home_folder(tmp_path, monkeypatch, capfd) -> None:
    """``modules.out.file=~/o.root`` (a word no shell expands), ``--report-dir=~/rep``, ``-j '~/j.xml'``:
    written into $HOME; they used to make a folder named ``~`` in the working directory."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    cfg = _job(tmp_path, Path("~/out/o.root"))
    code, _, errors = _run(capfd, str(cfg), "--report-dir", "~/rep", "-j", "~/j.xml")
    assert (code, errors) == (0, [])
    assert (home / "out" / "o.root").is_file() and (home / "j.xml").is_file() and (home / "rep" / "hltrun.json").is_file()
    assert list(work.iterdir()) == []


def test_tilde_in_an_input_path_or_pattern_means_the_home_folder(tmp_path, monkeypatch) -> None:
    from hltrun.framework.resources import find_file, glob_files

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "..")
    (tmp_path / "a.root").write_bytes(b"")
    assert find_file("~/a.root") == tmp_path / "a.root"
    assert glob_files("~/a.root") == glob_files("~/*.root") == [str(tmp_path / "a.root")]


class _FullStdout(io.StringIO):
    """stdout on a full disk: every write fails as ``> /dev/full`` does."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_printing_names_stdout_only_for_stdout_failures(tmp_path, monkeypatch) -> None:
    """An OSError of the printing block that is not stdout's (a file it reads) is what it is: it used to
    be reported as "stdout: cannot print ..." (a full disk, or a file not found, blamed on stdout)."""
    from hltrun.framework.destinations import printing

    with pytest.raises(FileNotFoundError, match="absent.txt"):
        with printing("the reports"):
            (tmp_path / "absent.txt").read_text()
    full = _FullStdout()
    monkeypatch.setattr("sys.stdout", full)
    with pytest.raises(ModuleError, match=r"^stdout: cannot print the reports \(No space left on device\)$"):
        with printing("the reports"):
            print("TrigReport")
    import sys

    assert sys.stdout is full  # the stream the block found, given back


@pytest.mark.parametrize("url", ["root://eos.cern.ch//store/job.xml", "https://host/reports/out.json"])
def test_a_remote_url_is_refused_by_every_writer(url, tmp_path, monkeypatch):
    """-j, memray and the tools' outputs all come here: as a local name the URL would land in ./root:/..."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ModuleError, match=f"--job-report: {url} is a remote URL; hltrun writes local files only"):
        check_file_destination(url, "--job-report")
    assert list(work.iterdir()) == []


def test_a_refused_job_leaves_no_report_folder_made_behind(tmp_path, capfd) -> None:
    """The report folder is made (probed) before the first event; a job then refused (its input missing)
    removes it again if nothing was written into it; a folder that was there stays."""
    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    missing = tmp_path / "nope.root"
    code, _, errors = _run(capfd, str(config), "-q", "--report-dir", str(tmp_path / "new" / "r"),
                           f"source.files=[{missing}]", "modules.vae.backend=onnxruntime")
    assert code == 3 and errors == [f"hltrun: error: source: input file not found: {missing}"]
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    assert _run(capfd, str(config), "-q", "--report-dir", str(tmp_path / "kept"), f"source.files=[{missing}]",
                "modules.vae.backend=onnxruntime")[0] == 3
    assert (tmp_path / "kept").is_dir()


# ------------------------------------------------------------------ an output over the job's own files

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "qcd_dijet.root"
ROOT_JOB = """
process: DEST
source: {{type: RootJetSource, files: [{source}]}}
modules:
  out: {{type: RootOutputModule, file: {out}}}
endpaths: {{e: [out]}}
"""


def _root_job(tmp_path: Path, out: Path) -> tuple[Path, Path]:
    """A job reading a copy of the shipped QCD sample, writing ``out``: (its configuration, its input)."""
    source = tmp_path / "in.root"
    source.write_bytes(SAMPLE.read_bytes())
    cfg = tmp_path / "job.yaml"
    cfg.write_text(ROOT_JOB.format(source=source, out=out))
    return cfg, source


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_an_output_that_is_an_input_of_the_job_is_refused_and_the_input_kept(how, tmp_path, capfd) -> None:
    """``modules.out.file`` naming the file the source reads (itself, a link to it, another name of it)
    replaced the input with the output, exit 0: the user's data gone. Refused before the first event."""
    out = tmp_path / "out.root"
    cfg, source = _root_job(tmp_path, out)
    if how == "same":
        out = source
    elif how == "symlink":
        out.symlink_to(source)
    else:
        os.link(source, out)
    cfg.write_text(ROOT_JOB.format(source=source, out=out))
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20")
    assert code == 4
    assert errors == [f"hltrun: error: modules.out.file: {out} is an input file of this job ({source}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert source.read_bytes() == SAMPLE.read_bytes()
    assert not _temporaries(tmp_path)


def test_a_job_report_over_an_input_of_the_job_is_refused_and_the_input_kept(tmp_path, capfd) -> None:
    """``-j`` is claimed before the configuration names the inputs; it was refused only when it was written,
    after the whole job. The input read later is compared with it: refused before the first event (no
    output written), in one line (the job report is not tried again at the end)."""
    cfg, source = _root_job(tmp_path, tmp_path / "out.root")
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20", "-j", str(source))
    assert code == 4
    assert errors == [f"hltrun: error: --job-report: {source} is an input file of this job ({source}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert source.read_bytes() == SAMPLE.read_bytes()
    assert not (tmp_path / "out.root").exists() and not _temporaries(tmp_path)


@pytest.mark.parametrize("which", ["model", "card"])
def test_a_job_report_over_the_scorers_model_or_card_is_refused_before_the_first_event(which, tmp_path,
                                                                                       capfd) -> None:
    """``-j`` naming the scorer's model or its thresholds card: refused as an output naming them is, in the
    output's own line (not inside the scorer's "modules.vae: " model-loading error), before any event."""
    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    models = config.parents[1] / "data" / "models"
    for name in ("conv_vae.onnx", "thresholds.json"):
        (tmp_path / name).write_bytes((models / name).read_bytes())
    named = tmp_path / ("conv_vae.onnx" if which == "model" else "thresholds.json")
    before = named.read_bytes()
    out = tmp_path / "o.root"
    code, _, errors = _run(capfd, str(config), "-q", "-n", "20", f"modules.vae.model={tmp_path / 'conv_vae.onnx'}",
                           "modules.vae.backend=onnxruntime", f"modules.out.file={out}", "-j", str(named))
    assert code == 4
    assert errors == [f"hltrun: error: --job-report: {named} is an input file of this job ({named}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert named.read_bytes() == before and not out.exists() and not _temporaries(tmp_path)


@pytest.mark.parametrize("name", ["hltrun.json", "timing.root"])
def test_a_report_folder_file_over_an_input_is_refused_before_the_first_event(name, tmp_path, capfd) -> None:
    """``--report-dir rep`` with the input at ``rep/timing.root`` (a Timing service runs) or ``rep/hltrun.json``:
    the report set replaced it after the whole job (or refused it then). Refused before the first event."""
    rep = tmp_path / "rep"
    rep.mkdir()
    source = rep / name
    source.write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "out.root"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(ROOT_JOB.format(source=source, out=out))
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20", "--report-dir", str(rep), "services.Timing={}")
    assert code == 4
    assert errors == [f"hltrun: error: report folder (--report-dir / options.reportDir): {source} is an input file "
                      f"of this job ({source}); writing it would replace what the job reads: give the output "
                      "another name"]
    assert source.read_bytes() == SAMPLE.read_bytes() and not out.exists() and not _temporaries(tmp_path)


@pytest.mark.parametrize("dask", [False, True], ids=["local", "dask"])
@pytest.mark.parametrize("named_as", ["input", "output"])
def test_scores_root_is_claimed_with_the_report_set(named_as, dask, tmp_path, capfd) -> None:
    """scores.root (each trigger filter's score histograms, written with the report set) was not claimed
    with the set's other files: ``rep/scores.root`` a hard link to the input ran every event, then was
    refused with exit 4 and no report at all; ``modules.out.file=rep/scores.root`` was silently replaced
    by the histograms, exit 0: the job's events gone. Both refused before the first event, as for
    timing.root, locally and on Dask."""
    if dask:
        pytest.importorskip("distributed")
    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    rep = tmp_path / "rep"
    rep.mkdir()
    source = tmp_path / "in.root"
    source.write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "out.root"
    if named_as == "input":
        os.link(source, rep / "scores.root")
        what, given = "report folder (--report-dir / options.reportDir)", rep / "scores.root"
        why = f"is an input file of this job ({source}); writing it would replace what the job reads"
    else:
        out = rep / "scores.root"
        what, given = "modules.out.file", out
        why = ("is also written by report folder (--report-dir / options.reportDir); two outputs of one job "
               "would overwrite each other")
    code, _, errors = _run(capfd, str(config), *(["--dask", "2"] if dask else []), "-q", "-n", "40",
                           f"source.files=[{source}]", "modules.vae.backend=onnxruntime", f"modules.out.file={out}",
                           "--report-dir", str(rep))
    assert code == 4
    assert errors == [f"hltrun: error: {what}: {given} {why}: give the output another name"
                      if named_as == "input" else f"hltrun: error: {what}: {given} {why}: give each its own name"]
    assert source.read_bytes() == SAMPLE.read_bytes() and not _temporaries(tmp_path)
    assert sorted(p.name for p in rep.iterdir()) == (["scores.root"] if named_as == "input" else [])
    assert not (tmp_path / "out.root").exists()  # before the first event: the job's own output not written


def test_an_input_named_as_a_report_file_the_job_does_not_write_is_read(tmp_path, capfd) -> None:
    """timing.root is written from a Timing service's histograms only: without one, an input of that name in
    the report folder is never replaced, so it is read, not refused."""
    rep = tmp_path / "rep"
    rep.mkdir()
    source = rep / "timing.root"
    source.write_bytes(SAMPLE.read_bytes())
    cfg = tmp_path / "job.yaml"
    cfg.write_text(ROOT_JOB.format(source=source, out=tmp_path / "out.root"))
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20", "--report-dir", str(rep))
    assert (code, errors) == (0, [])
    assert source.read_bytes() == SAMPLE.read_bytes() and (rep / "hltrun.json").is_file()


@pytest.mark.parametrize("writer", ["modules.out.file", "--job-report"])
def test_an_output_over_the_text_list_of_input_files_is_refused_and_the_list_kept(writer, tmp_path, capfd) -> None:
    """``source.files: [files.txt]`` (a list of the inputs) with ``modules.out.file: files.txt`` or
    ``-j files.txt``: the list was replaced by the ROOT output or the XML report, exit 0, and the next run of
    the same configuration read no input. The list is read by the job as its files are: refused, kept."""
    out = tmp_path / "out.root"
    cfg, source = _root_job(tmp_path, out)
    listed = tmp_path / "files.txt"
    listed.write_text(f"{source}\n{SAMPLE}\n")  # the second file is past -n 20: never opened (lazyopen)
    before = listed.read_text()
    target = str(listed) if writer == "modules.out.file" else str(out)
    cfg.write_text(ROOT_JOB.format(source=listed, out=target))
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20", *(["-j", str(listed)] if writer != "modules.out.file"
                                                                 else []))
    assert code == 4
    assert errors == [f"hltrun: error: {writer}: {listed} is an input file of this job ({listed}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert listed.read_text() == before and not _temporaries(tmp_path)


@pytest.mark.parametrize("named", ["~/files.txt", "file://{home}/files.txt"])
def test_the_text_list_named_with_a_tilde_or_a_file_url_is_an_input_too(named, tmp_path, capfd, monkeypatch) -> None:
    """``source.files: [~/files.txt]`` with ``-j ~/files.txt``: the list was compared with the output as the
    literal name ``~/files.txt`` (no such file, so skipped) and replaced by the XML report, exit 0. The path it
    names is compared: refused, kept."""
    monkeypatch.setenv("HOME", str(tmp_path))
    out = tmp_path / "out.root"
    cfg, source = _root_job(tmp_path, out)
    listed = tmp_path / "files.txt"
    listed.write_text(f"{source}\n")
    before = listed.read_text()
    cfg.write_text(ROOT_JOB.format(source=named.format(home=tmp_path), out=out))
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20", "-j", "~/files.txt")
    assert code == 4
    assert errors == [f"hltrun: error: --job-report: {listed} is an input file of this job ({listed}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert listed.read_text() == before and not _temporaries(tmp_path)


def test_a_memray_capture_named_as_the_input_is_refused_and_the_input_kept(tmp_path, capfd, monkeypatch) -> None:
    """``services.Memory.memray: in.root`` (no report folder: the working directory) with ``source.files:
    [in.root]``: the capture's old file is removed before the first module begins, and the source had not
    named its inputs yet, so the input was deleted and the job stopped on it as a bad ROOT file (the input
    replaced by the capture). The configured inputs are known when the source is made: refused, kept."""
    pytest.importorskip("memray")
    monkeypatch.chdir(tmp_path)
    cfg, source = _root_job(tmp_path, tmp_path / "out.root")
    cfg.write_text(cfg.read_text() + "services: {Memory: {memray: in.root}}\n")
    code, _, errors = _run(capfd, str(cfg), "-q", "-n", "20")
    assert code == 4
    assert errors == ["hltrun: error: services.Memory.memray: in.root is an input file of this job "
                      f"({source}); writing it would replace what the job reads: give the output another name"]
    assert source.read_bytes() == SAMPLE.read_bytes()
    assert not (tmp_path / "out.root").exists() and not _temporaries(tmp_path)


def test_two_outputs_of_one_job_with_the_same_name_are_refused(tmp_path, capfd) -> None:
    """``-j o.root`` with ``modules.out.file: o.root`` replaced the ROOT output with the XML job report,
    exit 0. The second writer to claim a file is refused before the first event."""
    out = tmp_path / "o.root"
    code, _, errors = _run(capfd, str(_job(tmp_path, out)), "-q", "-j", str(out))
    assert code == 4
    assert errors == [f"hltrun: error: modules.out.file: {out} is also written by --job-report; two outputs of "
                      "one job would overwrite each other: give each its own name"]
    assert not _temporaries(tmp_path)


def test_an_output_named_as_a_report_folder_file_is_refused(tmp_path, capfd) -> None:
    rep = tmp_path / "rep"
    code, _, errors = _run(capfd, str(_job(tmp_path, rep / "hltrun.json")), "-q", "--report-dir", str(rep))
    assert code == 4
    assert errors == [f"hltrun: error: modules.out.file: {rep / 'hltrun.json'} is also written by "
                      "report folder (--report-dir / options.reportDir); two outputs of one job would overwrite "
                      "each other: give each its own name"]


def test_the_same_output_in_two_jobs_of_one_process_is_written_twice(tmp_path, capfd) -> None:
    """What a job claims is its own: the next job (a test, a tool running several) may write it again."""
    out = tmp_path / "o.root"
    cfg = _job(tmp_path, out)
    assert _run(capfd, str(cfg), "-q")[0] == 0
    assert _run(capfd, str(cfg), "-q")[0] == 0


def test_a_job_report_over_the_jobs_configuration_is_refused_and_the_configuration_kept(tmp_path, capfd) -> None:
    """``hltrun job.yaml -j job.yaml`` replaced the user's configuration with the XML job report, exit 0."""
    cfg = _job(tmp_path)
    before = cfg.read_text()
    code, _, errors = _run(capfd, str(cfg), "-q", "-j", str(cfg))
    assert code == 4
    assert errors == [f"hltrun: error: --job-report: {cfg} is an input file of this job ({cfg}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert cfg.read_text() == before


def test_an_output_over_the_model_the_job_runs_is_refused_and_the_model_kept(tmp_path, capfd) -> None:
    """``modules.out.file`` naming the scorer's model (a slip of the tab key) replaced the model, exit 0."""
    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    model = tmp_path / "m.onnx"
    model.write_bytes((config.parents[1] / "data" / "models" / "conv_vae.onnx").read_bytes())
    before = model.read_bytes()
    code, _, errors = _run(capfd, str(config), "-q", "-n", "20", f"modules.vae.model={model}",
                           "modules.vae.backend=onnxruntime", "modules.anomalyFilter.threshold=0.5",
                           f"modules.out.file={model}")
    assert code == 4
    assert errors == [f"hltrun: error: modules.out.file: {model} is an input file of this job ({model}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert model.read_bytes() == before and not _temporaries(tmp_path)


def test_stdout_and_stderr_into_a_pipe_without_reader_is_exit_4_not_an_internal_error(tmp_path) -> None:
    """``hltrun cfg 2>&1 | head -1``: once head has left, stderr fails too, so the line saying stdout failed
    could not be written, and that failure became ``internal error: BrokenPipeError``, exit 1 (which a
    ``set -o pipefail`` script reads as hltrun's bug). Nothing can be said any more: the exit code says it."""
    import sys

    out = tmp_path / "o.root"
    cfg, _ = _root_job(tmp_path, out)  # a shipped source: the tests' plugins are not in a new process
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line (Python ignores SIGPIPE: writes get EPIPE)
    try:
        proc = subprocess.run([sys.executable, "-c", "import sys; from hltrun.framework.cli import main; "
                               "sys.exit(main(sys.argv[1:]))", str(cfg), "-n", "20"],
                              stdout=write, stderr=write, timeout=300)
    finally:
        os.close(write)
    assert proc.returncode == 4
    assert out.is_file() and not _temporaries(tmp_path)


def test_a_bad_output_path_is_refused_before_any_module_begins(write_config, tmp_path, monkeypatch):
    """The output's path is checked before any module's begin_job: a scorer's model loading and auto's
    engine timing (seconds) ran first, then the job stopped on the output's path."""
    from hltrun.framework.errors import ModuleError
    from tests.helpers import run_config
    from tests.plugins import Square

    began: list[str] = []
    monkeypatch.setattr(Square, "begin_job", lambda self, ctx: began.append(self.label), raising=False)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cfg = write_config(f"""
        process: T
        source: {{type: TestCountingSource, n: 5}}
        modules:
          sq: {{type: TestSquare}}
          out: {{type: RootOutputModule, file: {blocker}/o.root, keep: [sq]}}
        paths:
          p: [sq]
        endpaths:
          e: [out]
        """)
    with pytest.raises(ModuleError, match=r"modules\.out\.file: .*a_file is a file, not a folder"):
        run_config(cfg)
    assert began == []
    run_config(cfg, f"modules.out.file={tmp_path / 'o.root'}")
    assert began == ["sq"]  # the patched begin_job does run in a good job: the check above can fail


def test_two_jobs_in_two_threads_each_compare_their_own_files(tmp_path) -> None:
    """``one_job`` kept the running job in a module global: a library user's two jobs in two threads shared
    it, and the first to end set it back to none while the other still ran (its output over its own input
    no longer refused: the input replaced), then the other's end brought the first job back for good (every
    later job in the process refused a file the first had read). Each thread's job is its own."""
    from hltrun.framework.destinations import one_job, reading

    first_input, second_input = tmp_path / "a.root", tmp_path / "b.root"
    first_input.write_text("a")
    second_input.write_text("b")
    first_began, second_began, first_ended = threading.Event(), threading.Event(), threading.Event()
    said: dict[str, str] = {}

    def first() -> None:
        with one_job():
            reading([first_input])
            first_began.set()
            second_began.wait(30)
        first_ended.set()

    def second() -> None:
        first_began.wait(30)  # the jobs overlap, the first one began first
        with one_job():
            reading([second_input])
            second_began.set()
            first_ended.wait(30)  # the first job has ended: this one still runs
            try:
                check_file_destination(second_input, "modules.out.file")
                said["second"] = "written over its input"
            except HltError as exc:  # destinations.OverInput: exit 4, but no ModuleError (see there)
                said["second"] = str(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    threads[1].start()
    for thread in threads:
        thread.join(60)
    assert said["second"].startswith(f"modules.out.file: {second_input} is an input file of this job")
    check_file_destination(first_input, "modules.out.file")  # no job runs here: nothing is compared


def test_an_output_over_the_scorers_thresholds_card_is_refused_and_the_card_kept(tmp_path, capfd) -> None:
    """The card beside the model (thresholds.json) gives the filter its cut: the job reads it, at validation.
    ``modules.out.file`` naming it replaced the card with the ROOT output, exit 0, and the next job stopped
    on an unreadable card."""
    config = Path(__file__).resolve().parents[1] / "configs" / "path.yaml"
    models = config.parents[1] / "data" / "models"
    for name in ("conv_vae.onnx", "thresholds.json"):
        (tmp_path / name).write_bytes((models / name).read_bytes())
    card = tmp_path / "thresholds.json"
    before = card.read_bytes()
    code, _, errors = _run(capfd, str(config), "-q", "-n", "20", f"modules.vae.model={tmp_path / 'conv_vae.onnx'}",
                           "modules.vae.backend=onnxruntime", f"modules.out.file={card}")
    assert code == 4
    assert errors == [f"hltrun: error: modules.out.file: {card} is an input file of this job ({card}); writing "
                      "it would replace what the job reads: give the output another name"]
    assert card.read_bytes() == before and not _temporaries(tmp_path)


def test_local_file_urls_are_read_and_written_where_they_point(tmp_path, capfd, monkeypatch) -> None:
    """``file:///abs/x`` names a local file (uproot reads it so): the input, the model, the output, -j and
    --report-dir all land at that path; Path() used to fold it to ``./file:/abs/x`` or refuse it as remote."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    checkout = Path(__file__).resolve().parents[1]
    sample, model = checkout / "data" / "qcd_dijet.root", checkout / "data" / "models" / "conv_vae.onnx"
    code, _, errors = _run(capfd, str(checkout / "configs" / "path.yaml"), "-q", "-n", "5",
                           "-j", f"file://{tmp_path}/job.xml", "--report-dir", f"file://localhost{tmp_path}/rep",
                           f"source.files=[file://{sample}]", f"modules.vae.model=file://{model}",
                           "modules.vae.backend=onnxruntime", f"modules.out.file=file://{tmp_path}/o.root")
    assert (code, errors) == (0, [])
    assert list(work.iterdir()) == []  # no ./file:/... made
    assert (tmp_path / "rep" / "hltrun.json").is_file() and uproot.open(tmp_path / "o.root")
    pfns = [e.text for e in ET.parse(tmp_path / "job.xml").getroot().iter("PFN")]
    assert str(sample) in pfns and str(tmp_path / "o.root") in pfns


def test_files_literally_named_with_the_file_prefix_are_written_under_that_name(tmp_path, capfd, monkeypatch) -> None:
    """``./file:o.root`` is a file named ``file:o.root`` (``file:o.root`` as written is CMSSW's ``o.root``): the
    output, -j and --report-dir asked for so were written as o.root, j.xml and rep/, silently replacing any
    file of those names (the name lost its ``./`` and a second look read ``file:`` as the prefix)."""
    monkeypatch.chdir(tmp_path)
    code, _, errors = _run(capfd, str(_job(tmp_path, "./file:o.root")), "-q", "-j", "./file:j.xml",
                           "--report-dir", "./file:rep")
    assert (code, errors) == (0, [])
    assert uproot.open(tmp_path / "file:o.root") and (tmp_path / "file:j.xml").is_file()
    assert (tmp_path / "file:rep" / "hltrun.json").is_file()
    assert not [p for p in ("o.root", "j.xml", "rep") if os.path.lexists(tmp_path / p)]


def test_a_file_url_of_another_host_stays_remote(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModuleError, match="--job-report: file://elsewhere/x.xml is a remote URL"):
        check_file_destination("file://elsewhere/x.xml", "--job-report")


@pytest.mark.parametrize("name, local", [("file:///d/x.root", "/d/x.root"), ("file://localhost/d/x.root", "/d/x.root"),
                                         ("FILE:///d/x.root", "/d/x.root"), ("file:/d/x.root", "/d/x.root"),
                                         ("file:x.root", "x.root"), ("file://elsewhere/d/x.root", None),
                                         ("file:", None), ("root://host//d/x.root", None), ("x.root", None)])
def test_one_rule_for_a_local_file_name_with_a_file_prefix(name, local) -> None:
    """URLs (RFC 8089, as uproot reads them) and CMSSW's ``file:`` prefix of a local file name one path,
    for inputs, file lists and outputs alike (two rules, one per reader, disagreed on ``file:x.root``)."""
    from hltrun.framework.resources import local_file_url, remote_url
    from hltrun.modules.source.file_list import local_name

    assert local_file_url(name) == local
    assert local_name(name) == (local or name)
    assert (remote_url(name) is None) == (local is not None or "://" not in name)


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="no /proc (not Linux)")
@pytest.mark.parametrize("out", ["/proc/version", "/proc/hltrun-no-such/out.root"])
def test_an_output_in_proc_names_the_file_system_not_a_missing_folder(out, tmp_path, capfd) -> None:
    """``modules.out.file=/proc/version`` said ``cannot write into /proc (No such file or directory)``: /proc
    exists; it is the kernel's file system that makes no files (ENOENT is its answer)."""
    code, _, errors = _run(capfd, str(_job(tmp_path, out)))
    folder = Path(out).parent
    assert code == 4 and len(errors) == 1, errors
    assert errors[0].startswith(f"hltrun: error: modules.out.file: cannot write into {folder} (")
    assert "a 'proc' file system, where no file can be made: the kernel's view, not a disk" in errors[0]
    assert not os.path.exists("/proc/hltrun-no-such")


def test_a_refusal_to_make_a_file_names_the_file_system_only_where_the_folder_exists(tmp_path) -> None:
    """The same words for any file system that answers ENOENT in a folder that exists (a FUSE mount); a folder
    truly missing (its whole tree gone) and other errors keep the system's own words."""
    from hltrun.framework.destinations import make_refused

    gone = OSError(errno.ENOENT, "No such file or directory")
    said = make_refused(tmp_path, gone)
    assert said.startswith("a '") and said.endswith("file system, where no file can be made; it said: "
                                                   "No such file or directory")
    assert make_refused(tmp_path / "a" / "b", gone).startswith(f"{tmp_path} is a '")
    assert make_refused(tmp_path, OSError(errno.EROFS, "Read-only file system")) == "Read-only file system"
    assert make_refused(tmp_path, OSError(errno.EACCES, "Permission denied")) == "Permission denied"
