"""hltbench sessions: the shared/per-thread session benchmark runs and reports each mode."""
from __future__ import annotations

import pytest

pytest.importorskip("onnxruntime", reason="ONNX Runtime (extra 'cpu') not installed")


def test_modes_make_the_calls_they_claim(capsys: pytest.CaptureFixture[str]) -> None:
    from hltrun.tools.bench import sessions as bench
    from hltrun.tools.bench.cli import main as hltbench
    from hltrun.tools.catalogue import models_dir, sample_path

    sessions_seen: list[int] = []

    class Counting:
        """Wraps a session to count the calls each mode really makes."""

        def __init__(self, sess) -> None:  # noqa: ANN001
            self.sess, self.calls = sess, 0

        def run(self, *args):  # noqa: ANN002, ANN201
            self.calls += 1
            return self.sess.run(*args)

    real = bench.make_session(models_dir() / "conv_vae.onnx")
    batches = bench.per_event_batches(sample_path("qcd_dijet"))[:20]
    assert all(b.shape[1:] == (100, 3) and 1 <= len(b) <= 2 for b in batches)
    shared = Counting(real)
    seconds = bench.timed_round([shared, shared], batches, 7)
    assert shared.calls == 14 and seconds > 0
    own = [Counting(real), Counting(real), Counting(real)]
    bench.timed_round(own, batches, 5)
    sessions_seen = [c.calls for c in own]
    assert sessions_seen == [5, 5, 5]

    assert hltbench(["sessions", "--threads", "2", "--events", "20", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip() for line in out.splitlines() if line.startswith("| ")}
    assert {"shared", "one per thread", "single thread"} <= rows


def _in_round(ident: int) -> bool:
    """Thread ``ident`` is inside ``timed_round``."""
    import sys

    frame = sys._current_frames().get(ident)
    while frame is not None and frame.f_code.co_name != "timed_round":
        frame = frame.f_back
    return frame is not None


def _asleep_in_round(ident: int) -> bool:
    """Thread ``ident`` is in a wait that ``timed_round`` called past its start barrier, and asleep in the
    kernel (blocked waiting for the callers, whatever it waits with); without /proc, in that wait is enough."""
    import sys
    import threading

    frame, names = sys._current_frames().get(ident), []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    if "timed_round" not in names or names[0] == "timed_round" \
            or {"_enter", "_wait", "_release"} & set(names[:names.index("timed_round")]):
        return False  # not in it, not in a wait it called, or still in its start barrier (Barrier.wait's steps)
    try:
        with open(f"/proc/self/task/{threading.main_thread().native_id}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"
    except OSError:
        return True


def test_an_interrupted_round_returns_only_after_every_call_has_ended() -> None:
    """Ctrl-C landing in ``Thread.join`` made the study exit while a caller was still inside
    ``InferenceSession.run``, and the process aborted at exit (134, ``terminate called without an active
    exception``): CPython 3.11's join, interrupted in its lock wait, marks the still-running thread
    stopped (bpo-45274's ``lock.locked()`` test sees the lock the running thread holds), so the second
    join returned at once and interpreter shutdown did not wait for it either. The round now waits for
    each caller's own 'done' event. (The session here blocks until released, to hold a call open.)"""
    import signal
    import sys
    import threading
    import time

    import numpy as np

    from hltrun.tools.bench.sessions import timed_round

    entered, release = threading.Event(), threading.Event()
    inside: list[bool] = []

    class Blocking:
        def run(self, *args):  # noqa: ANN002, ANN201
            inside.append(True)
            entered.set()
            release.wait(10)
            inside.pop()

    main = threading.main_thread().ident

    def interrupt() -> None:
        entered.wait(10)
        # the signal must land while the main thread waits for the caller (a fixed sleep let it land before,
        # on a busy machine: the old join was then never interrupted and the test passed without the bug)
        deadline = time.monotonic() + 60
        while not _asleep_in_round(main) and time.monotonic() < deadline:
            time.sleep(0.001)
        cut = sys._current_frames().get(main)  # the wait the signal must cut
        signal.pthread_kill(main, signal.SIGINT)
        # the call ends once the main thread has taken the signal: asleep in the round again (waiting for the
        # caller, as it must) or out of it (returned too early); a fixed sleep could end it before, under load
        while time.monotonic() < deadline and (sys._current_frames().get(main) is cut or (
                _in_round(main) and not _asleep_in_round(main))):
            time.sleep(0.001)
        del cut
        release.set()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=interrupt)
    try:
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            timed_round([Blocking()], [np.zeros((1, 100, 3), np.float32)], 1)
        assert not inside, "the round returned while a call was still running"
    finally:
        release.set()
        helper.join()
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_while_the_callers_start_leaves_none_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C landing while the callers were being started (``Thread.start`` waits, so it can be
    interrupted) left the ones already started waiting at the barrier for ever: interpreter shutdown
    waited for them and the study hung after its 'interrupted' line."""
    import threading

    import numpy as np

    from hltrun.tools.bench import sessions as bench

    started: list[threading.Thread] = []

    class InterruptedStart(threading.Thread):
        def start(self) -> None:
            super().start()
            started.append(self)
            if len(started) == 2:
                raise KeyboardInterrupt  # as if the signal arrived while this start() waited

    class NeverCalled:
        def run(self, *args):  # noqa: ANN002, ANN201
            pytest.fail("a call was made although the round was interrupted before it began")

    monkeypatch.setattr(bench.threading, "Thread", InterruptedStart)
    with pytest.raises(KeyboardInterrupt):
        bench.timed_round([NeverCalled()] * 3, [np.zeros((1, 100, 3), np.float32)], 1)
    for t in started:
        t.join(5)
    assert not any(t.is_alive() for t in started), "a caller is still waiting at the barrier"
