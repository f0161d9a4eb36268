"""Progress: bars with counts on stderr while a stage runs (only on a terminal, not with --quiet), the same events
through the API's callback, and the search counted against its bound."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time

import numpy as np
from helpers import ROOT

# the CLI with every ONNX Runtime call of the comparison slowed down: a stage that takes many seconds
SLOW = """
import os, time
from precdoctor.backends import ort
real = ort.run
def slow(*a, **k):
    if not os.path.exists(os.environ["SLOW_MARKER"]):
        with open(os.environ["SLOW_MARKER"], "w") as fh:
            fh.write(repr(time.time()))
    time.sleep(float(os.environ["SLOW_DELAY"]))
    return real(*a, **k)
ort.run = slow
from precdoctor.interface.cli import main
main(prog_name="precdoctor")
"""


def _in_pty(args: list[str], until: bytes | None, limit: float, delay: float, marker) -> tuple[bytes, float | None, subprocess.Popen]:
    """Run the slowed CLI with stderr on a terminal (120 columns); read it until ``until`` shows or ``limit`` s pass.
    Returns what was read, when ``until`` was seen, and the process (still running when it was seen early)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLOW_MARKER": str(marker), "SLOW_DELAY": str(delay)}
    p = subprocess.Popen([sys.executable, "-c", SLOW, *args], stdout=subprocess.PIPE, stderr=slave,
                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    os.close(slave)
    buf, seen, end = b"", None, time.time() + limit
    while time.time() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if until is not None and until in buf and seen is None:
                seen = time.time()
                break
        elif p.poll() is not None:
            break
    os.close(master)
    return buf, seen, p


def test_slow_stage_shows_progress_on_a_terminal_within_5s(planted_dir, tmp_path):
    marker = tmp_path / "started"
    args = ["compare", str(planted_dir / "ln_overflow.onnx"), "--inputs", str(planted_dir / "ln_overflow.npz")]
    buf, seen, p = _in_pty(args, b"fp16 comparison", limit=120, delay=20, marker=marker)
    try:
        assert seen is not None, buf.decode(errors="replace")
        for _ in range(600):  # the slow stage's first ORT call (its sessions are built before it)
            if marker.exists() or p.poll() is not None:
                break
            time.sleep(0.1)
        assert p.poll() is None  # the stage is still running (20 s per call): the bar came while it ran, not after
        started = float(marker.read_text())
        assert seen - started < 5, f"progress shown {seen - started:.1f} s after the stage began"
        assert b"0/1" in buf or b"0 pass" in buf  # a count, from the first moment
    finally:
        p.kill()
        p.wait()


def test_quiet_and_pipes_draw_no_bars(planted_dir, tmp_path):
    args = ["compare", str(planted_dir / "ln_overflow.onnx"), "--inputs", str(planted_dir / "ln_overflow.npz")]
    buf, _, p = _in_pty(args + ["--quiet"], None, limit=120, delay=0, marker=tmp_path / "m1")
    p.wait()
    assert b"comparison" not in buf and b"precdoctor compare" in p.stdout.read()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "precdoctor.interface.cli", *args], check=False, capture_output=True, env=env, cwd=ROOT)
    assert b"comparison:" not in r.stderr and b"%|" not in r.stderr  # stderr is a pipe: no bars


def test_api_reports_through_the_callback(planted_dir, tmp_path):
    import precdoctor
    from precdoctor.core.progress import Event

    events: list[Event] = []
    r = precdoctor.bisect(planted_dir / "two_culprits.onnx", tmp_path / "fix", inputs=[planted_dir / "two_culprits.npz"],
                          baselines=False, progress=events.append)
    names = {e.name for e in events}
    assert {"naive fp16 comparison", "FP32 ranges", "search"} <= names
    search = [e for e in events if e.name == "search"]
    # the search counts every evaluation, against the bound the evidence's suspects promise, not the budget
    assert max(e.done for e in search) == r.evaluations
    assert search[0].total is not None and search[0].total < r.budget
    assert search[-1].ended
    naive = [e for e in events if e.name == "naive fp16 comparison" and not e.ended]
    assert naive[-1].done == naive[-1].total >= 1


def test_api_shows_progress_where_someone_watches(planted_dir, capfd, monkeypatch):
    import io

    import precdoctor
    from precdoctor.core import progress

    data = dict(np.load(planted_dir / "ln_overflow.npz"))
    precdoctor.compare(planted_dir / "ln_overflow.onnx", inputs=[data], progress=False)
    precdoctor.compare(planted_dir / "ln_overflow.onnx", inputs=[data])  # the default, stderr not a terminal (a CI log)
    assert "comparison" not in capfd.readouterr().err

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    precdoctor.compare(planted_dir / "ln_overflow.onnx", inputs=[data])  # the default in a script run from a terminal
    assert "fp16 comparison" in term.getvalue()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    monkeypatch.setattr(progress, "in_notebook", lambda: True)  # a notebook: tqdm.auto's bar (text where no widget can show)
    assert isinstance(progress.for_api(True), progress.TqdmProgress) and progress.for_api(True).auto
