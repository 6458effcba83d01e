"""framework.resources.why_not_readable: the one rule every reader of ROOT and model files asks first
(the source, the scorer before ``auto`` hashes the model, hltdiff, hltcard, hltinputs, hltbench)."""
from __future__ import annotations

from pathlib import Path


def test_why_not_readable_names_every_kind_of_path(tmp_path: Path) -> None:
    """One rule for every reader of ROOT and model files: regular files (through links) pass; anything
    that cannot be read by seeking is named, so a FIFO is refused before any library opens (and blocks on) it."""
    import os
    import socket

    from hltrun.framework.resources import why_not_readable

    regular = tmp_path / "a.root"
    regular.write_bytes(b"x")
    (tmp_path / "link.root").symlink_to(regular)
    os.mkfifo(tmp_path / "pipe.root")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock.root"))
        assert "is a socket, not a regular file" in why_not_readable(tmp_path / "sock.root")
    assert why_not_readable(regular) is None
    assert why_not_readable(tmp_path / "link.root") is None
    assert why_not_readable(tmp_path / "nope.root") == "not found"
    assert why_not_readable(regular / "below") == "not found"  # a file used as a folder
    assert why_not_readable(tmp_path) == "is a folder, not a file"
    assert why_not_readable(tmp_path / "pipe.root").startswith("is a FIFO, not a regular file")
    assert why_not_readable("/dev/null").startswith("is a character device, not a regular file")


def test_unreadable_reason_is_the_whole_sentence(tmp_path: Path) -> None:
    """Every reader (source, hltdiff, hltcard, hltinputs, hltbench) prints this sentence as it is: it names
    what the file is for and the path, in one wording for a missing file and one for a wrong kind."""
    import os

    from hltrun.framework.resources import unreadable_reason

    regular = tmp_path / "m.onnx"
    regular.write_bytes(b"x")
    os.mkfifo(tmp_path / "pipe.onnx")
    assert unreadable_reason(regular, "model file") is None
    assert unreadable_reason(tmp_path / "nope.onnx", "model file") == f"model file not found: {tmp_path / 'nope.onnx'}"
    assert unreadable_reason(tmp_path / "nope.root") == f"file not found: {tmp_path / 'nope.root'}"
    assert unreadable_reason(tmp_path, "input file") == f"input file {tmp_path} is a folder, not a file"
    assert unreadable_reason(tmp_path / "pipe.onnx", "model file").startswith(
        f"model file {tmp_path / 'pipe.onnx'} is a FIFO, not a regular file")


def test_a_link_into_a_folder_the_user_may_not_enter_is_not_said_to_lead_nowhere(tmp_path: Path, monkeypatch) -> None:
    """A link to a model in a folder the user may not enter (an AFS area without a token on lxplus) was said to
    be "a symbolic link to ..., which does not exist": the file is there. It is "cannot be examined (Permission
    denied)", as before links were named. Root enters every folder: there, ``os.stat`` through the link raises
    what the kernel raises for an unprivileged user (PermissionError, EACCES), ``os.lstat`` of the link works."""
    import errno
    import os

    from hltrun.framework.resources import unreadable_reason

    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "m.onnx").write_bytes(b"x")
    (tmp_path / "m.onnx").symlink_to(locked / "m.onnx")
    if os.geteuid() == 0:
        real_stat = os.stat

        def stat(path, *args, **kwargs):  # noqa: ANN001, ANN202 - os.stat's own signature
            if kwargs.get("follow_symlinks", True) and os.path.realpath(path).startswith(f"{locked}{os.sep}"):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
            return real_stat(path, *args, **kwargs)

        monkeypatch.setattr(os, "stat", stat)
    else:
        locked.chmod(0o000)
    try:
        said = unreadable_reason(tmp_path / "m.onnx", "model file")
    finally:
        locked.chmod(0o700)
    assert said == f"model file {tmp_path / 'm.onnx'} cannot be examined (Permission denied)", said
