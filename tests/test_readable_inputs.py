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
