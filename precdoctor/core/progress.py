"""Progress of the long stages (a comparison, the FP32 ranges, the search, a task's transcription, the crosschecks).

The library never prints: a pipeline opens a named ``stage`` at a stage boundary, and the code doing the work
under it says how many units it expects (``expect``) and when one is done (``step``); both act on the innermost
open stage, so a backend need not know which stage it serves; a stage opened with a total is counted by its
owner only (the search counts its evaluations, not the comparisons one of them runs). Every change goes to the
``Callback`` that ``reporting`` installed for the current context (none: nothing is reported, at no cost). ``TqdmProgress``
renders events as tqdm bars with counts, rate and ETA: the CLI installs it on stderr when stderr is a terminal
and ``--quiet`` is not given; the Python API does the same by default, and in a notebook installs ``tqdm.auto``'s
(a widget).
"""
from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TextIO


@dataclass(frozen=True)
class Event:
    """One change of one stage: its counts now, and whether it has ended."""

    stage: int  # identifies the stage among those open (nested stages have their own)
    name: str  # "naive comparison", "search", "task confirmation" ...
    done: int
    total: int | None  # None: not known yet
    unit: str
    note: str = ""  # the latest result, e.g. "7 pins -> PASS"
    depth: int = 0  # how many stages enclose this one
    ended: bool = False


class Callback(Protocol):
    def __call__(self, event: Event) -> None: ...


_sink: ContextVar[Callback | None] = ContextVar("precdoctor_progress_sink", default=None)
_open: ContextVar[tuple[Stage, ...]] = ContextVar("precdoctor_progress_open", default=())
_ids = itertools.count(1)


class Stage:
    """A stage's counts; changed through ``step``/``expect`` (innermost stage) or its own methods."""

    def __init__(self, name: str, total: int | None, unit: str, depth: int, sink: Callback | None):
        self.id, self.name, self.total, self.unit, self.depth, self._sink = next(_ids), name, total, unit, depth, sink
        self.done, self.note = 0, ""
        self.by_work = total is None  # counted by the work done under it (step/expect); else by its owner alone

    def _emit(self, ended: bool = False) -> None:
        if self._sink is not None:
            self._sink(Event(self.id, self.name, self.done, self.total, self.unit, self.note, self.depth, ended))

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        if self.total is not None and self.done > self.total:
            self.total = self.done  # a count past the expected one raises the total rather than showing 110 %
        self._emit()

    def expect(self, more: int) -> None:
        """``more`` units of work are coming (added: a stage may run several passes, each announcing its own)."""
        self.total = (self.total or 0) + more
        self._emit()

    def retotal(self, total: int) -> None:
        """The stage's total is now ``total`` (e.g. the search past its bound: the budget)."""
        self.total = max(total, self.done)
        self._emit()


@contextlib.contextmanager
def reporting(callback: Callback | None) -> Iterator[None]:
    """Send the progress of everything run inside to ``callback`` (None: to nobody)."""
    token = _sink.set(callback)
    try:
        yield
    finally:
        _sink.reset(token)
        close = getattr(callback, "close", None)
        if close is not None:
            close()


@contextlib.contextmanager
def stage(name: str, total: int | None = None, unit: str = "step") -> Iterator[Stage]:
    """A named stage; ``step``/``expect`` inside act on it unless a stage nested in it is open."""
    enclosing = _open.get()
    s = Stage(name, total, unit, len(enclosing), _sink.get())
    token = _open.set(enclosing + (s,))
    s._emit()
    try:
        yield s
    finally:
        _open.reset(token)
        s._emit(ended=True)


def current() -> Stage | None:
    """The innermost open stage when it is counted by the work under it (a stage its owner counts, such as the
    search's evaluations, is not advanced by the comparisons one evaluation runs)."""
    stages = _open.get()
    return stages[-1] if stages and stages[-1].by_work else None


def step(n: int = 1, note: str | None = None) -> None:
    """One unit of the innermost stage done (nothing when no stage is open)."""
    s = current()
    if s is not None:
        s.advance(n, note)


def expect(more: int) -> None:
    """``more`` units of the innermost stage are coming."""
    s = current()
    if s is not None:
        s.expect(more)


class TqdmProgress:
    """A ``Callback`` drawing one tqdm bar per open stage (count, rate, ETA), removed when its stage ends.

    ``auto``: tqdm.auto's bar (a widget in a notebook, text elsewhere). Messages printed meanwhile should go
    through ``write`` so that they land above the bars instead of through them.
    """

    def __init__(self, file: TextIO | None = None, auto: bool = False):
        self.file, self.auto = file, auto
        self.bars: dict[int, object] = {}

    def _tqdm(self):
        if self.auto:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        return tqdm

    def __call__(self, event: Event) -> None:
        bar = self.bars.get(event.stage)
        if event.ended:
            if bar is not None:
                bar.close()
                del self.bars[event.stage]
            return
        if bar is None:
            bar = self.bars[event.stage] = self._tqdm()(
                total=event.total, desc=event.name, unit=f" {event.unit}" if event.unit else "it", leave=False,
                file=self.file if self.file is not None else sys.stderr, position=event.depth, dynamic_ncols=True,
                mininterval=0.5)
        if bar.total != event.total:
            bar.total = event.total
        if event.note:
            bar.set_postfix_str(event.note, refresh=False)
        bar.n = event.done
        bar.refresh()

    def write(self, text: str) -> None:
        self._tqdm().write(text, file=self.file if self.file is not None else sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def for_terminal(quiet: bool, stream: TextIO | None = None) -> TqdmProgress | None:
    """The CLI's renderer: bars on ``stream`` (stderr) only when it is a terminal and progress is wanted."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return TqdmProgress(stream) if not quiet and isatty is not None and isatty() else None


def in_notebook() -> bool:
    """A Jupyter kernel runs this process (its stderr is no terminal, yet a widget shows)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001  (an IPython that cannot say: not a notebook)
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def for_api(progress) -> Callback | None:
    """The API's ``progress`` argument: True (default) tqdm.auto's bars where someone watches (a notebook: a widget;
    stderr a terminal: text), nothing in a pipe or a CI log; False/None nothing; or a callback of the caller's."""
    if progress is True:
        return TqdmProgress(auto=True) if in_notebook() else for_terminal(quiet=False)
    if progress is False or progress is None:
        return None
    if not callable(progress):
        from .errors import BadInput

        raise BadInput(f"progress must be True, False or a callable taking a precdoctor.core.progress.Event, not {progress!r}")
    return progress
